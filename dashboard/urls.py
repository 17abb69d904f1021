"""Callboard's URLs: the one place that builds them, and the inverse that reads a request's path.

A queue name or job id is any string Redis holds (`report/2024/07`, `..`, a newline, bytes that are
not UTF-8), so each one becomes exactly one path segment, percent-encoded from its bytes:

- `segment(name)` encodes `name.encode("utf-8", "surrogateescape")` (keys that are not UTF-8 reach us
  decoded with surrogateescape) and keeps only `A-Za-z0-9-._~:@`, so `/ % ? # \\n` and everything
  else are escaped and can never add, end or leave a segment;
- browsers (WHATWG URL) remove the dot segments `.` and `..`, even written `%2e`/`%2e%2e`, and an
  empty segment is fragile: a name made of tildes and then nothing, `.` or `..` gets one more
  leading `~` (`..` -> `~..`, `~` -> `~~`, `` -> `~`), which `unsegment` takes off again;
- routes read the raw path (`scope["raw_path"]`), split on a literal `/`, because Starlette decodes
  `%2F` before matching (see dashboard.routing).

Query strings go through `urllib.parse.urlencode`. Nothing here reads Redis; every function is O(len).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, quote_from_bytes, unquote_to_bytes, urlencode

#: Besides letters, digits and `-._~` (always kept by `quote`): what a segment may hold unescaped.
SAFE = ":@"
_NEEDS_TILDE = re.compile(r"~*(|\.|\.\.)")
_HAS_TILDE = re.compile(r"~+(|\.|\.\.)")


def key_bytes(name: str) -> bytes:
    """The bytes Redis holds for `name`, as the clients encode it (UTF-8, surrogateescape).

    A surrogate that surrogateescape cannot encode (`\ud800`: no key read from Redis holds one) is
    written as its UTF-8-like bytes (surrogatepass), so building a URL never fails."""
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogatepass")


def segment(name: str) -> str:
    """`name` as one path segment: every byte outside `A-Za-z0-9-._~:@` percent-encoded."""
    encoded = quote_from_bytes(key_bytes(name), safe=SAFE)
    return "~" + encoded if _NEEDS_TILDE.fullmatch(name) else encoded


def unsegment(raw_segment: str | bytes) -> str:
    """The name a raw (still percent-encoded) segment stands for: the inverse of `segment`."""
    name = unquote_to_bytes(raw_segment).decode("utf-8", "surrogateescape")
    return name[1:] if _HAS_TILDE.fullmatch(name) else name


def path_segments(scope: Mapping[str, Any], skip: int) -> list[str]:
    """The request path's segments after the first `skip`, each one `unsegment`ed.

    Read from `raw_path` (uvicorn and Starlette's TestClient set it) so an encoded `/` stays inside
    its segment; segments of a `root_path` the app is mounted under are skipped when the raw path
    holds them. Without `raw_path`, the decoded path is all there is (a `%2F` is then a `/`)."""
    raw = scope.get("raw_path")
    if raw is None:
        raw = quote(key_bytes(str(scope["path"])), safe="/" + SAFE).encode()
    parts = bytes(raw).split(b"/")[1:]
    root = [p for p in str(scope.get("root_path") or "").split("/") if p]
    if root and [unquote_to_bytes(p).decode("utf-8", "surrogateescape") for p in parts[: len(root)]] == root:
        parts = parts[len(root) :]
    return [unsegment(p) for p in parts[skip:]]


def query(**params: str | int | None) -> str:
    """`?a=1&b=x` of the parameters that are not None (names as given), or "" when none are."""
    # Values as bytes: a name that is not UTF-8 keeps its bytes (surrogateescape), as in segment().
    kept = {k: key_bytes(str(v)) for k, v in params.items() if v is not None}
    return "?" + urlencode(kept) if kept else ""


def _path(*literal: str, names: tuple[str, ...] = ()) -> str:
    return "/" + "/".join([*literal, *(segment(n) for n in names)])


# -- pages and fragments ---------------------------------------------------------------------------


def queue_url(
    target: str,
    framework: str,
    queue: str,
    tab: str | None = None,
    *,
    cursor: int | None = None,
    limit: int | None = None,
) -> str:
    """The queue page, on the tab of `tab` (a state), optionally at a page of its job list."""
    return _path("queues", names=(target, framework, queue)) + query(state=tab, cursor=cursor, limit=limit)


def overview_url(*words: str) -> str:
    """The overview filtered (`?q=`) to the rows that match every word: a target, a framework."""
    return "/" + query(q=" ".join(words) or None)


def job_url(target: str, framework: str, queue: str, job_id: str) -> str:
    return _path("jobs", names=(target, framework, queue, job_id))


def queue_fragment_url(target: str, framework: str, queue: str, tab: str | None = None) -> str:
    return _path("fragments", "queues", names=(target, framework, queue)) + query(state=tab)


def jobs_fragment_url(
    target: str,
    framework: str,
    queue: str,
    tab: str | None = None,
    *,
    cursor: int | None = None,
    limit: int | None = None,
) -> str:
    names = (target, framework, queue)
    return _path("fragments", "jobs", names=names) + query(state=tab, cursor=cursor, limit=limit)


def task_url(target: str, series_id: str, span: str | None = None) -> str:
    """A task's page (one flow series), over `span` (`?range=`: 1h, 24h, 7d)."""
    return _path("tasks", names=(target, series_id)) + query(range=span)


def search_url(**params: str | None) -> str:
    """The search page; `in` is a keyword, so pass `field=` for it."""
    if "field" in params:
        params["in"] = params.pop("field")
    return "/search" + query(**params)


# -- the JSON API and the controls -----------------------------------------------------------------


def api_jobs_url(target: str, framework: str, queue: str) -> str:
    return _path("api", "v1", "queues", names=(target, framework, queue)) + "/jobs"


def api_depth_url(target: str, framework: str, queue: str) -> str:
    """A queue's depth over a chart range (`?range=` added by the page's script)."""
    return _path("api", "v1", "queues", names=(target, framework, queue)) + "/depth"


def api_job_url(target: str, framework: str, queue: str, job_id: str) -> str:
    return _path("api", "v1", "jobs", names=(target, framework, queue, job_id))


def api_task_url(target: str, series_id: str, span: str | None = None) -> str:
    return _path("api", "v1", "tasks", names=(target, series_id)) + query(range=span)


def queue_action_url(target: str, framework: str, queue: str, action: str) -> str:
    return _path("api", "v1", "queues", names=(target, framework, queue, action))


def job_action_url(target: str, framework: str, queue: str, job_id: str, action: str) -> str:
    return _path("api", "v1", "jobs", names=(target, framework, queue, job_id, action))


def group_action_url(target: str, framework: str, group: str, action: str) -> str:
    return _path("api", "v1", "failures", names=(target, framework, group, action))


#: Jinja globals: templates build every URL with these.
BUILDERS = {
    f.__name__: f
    for f in (
        overview_url,
        queue_url,
        job_url,
        queue_fragment_url,
        jobs_fragment_url,
        task_url,
        search_url,
        api_jobs_url,
        api_depth_url,
        api_job_url,
        api_task_url,
        queue_action_url,
        job_action_url,
        group_action_url,
    )
}
