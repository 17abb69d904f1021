"""A crawl of everything Callboard shows about the hostile corpus, in plain HTTP and in Chromium.

`callboard serve` (under a memory cap) watches a Redis of ours loaded with tests/hostile/corpus.py.
Once discovery has found the corpus queues, the crawl follows every same-origin link and htmx GET
from `/` (plus a few searches over the corpus), and asks every GET route of /api/v1/openapi.json.
Nothing may answer 5xx or time out, nothing may leak a stack trace, every job the UI lists must open,
no URL the UI builds may be rewritten by a browser (dot segments, raw newlines), no page may carry an
unescaped script, and no code-executing payload may run. Chromium then opens every crawled page that
carries a script-bearing corpus string: no dialog, no `window.__pwned`, no console error but the
expected 404s.

The crawl only reads (GET): every corpus key must hold what was written afterwards.
"""

from __future__ import annotations

import html
import importlib
import json
import re
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urljoin, urlsplit

import pytest
import redis
from playwright.sync_api import ConsoleMessage, Dialog, Page

from callboard.dashboard import urls
from tests.hostile.conftest import (
    CappedBoard,
    Fetched,
    api_json,
    fetch,
    new_redis,
    start_board,
    wait_for_corpus,
)
from tests.hostile.corpus import TARGET, XSS, Manifest, write_corpus
from tests.hostile.http_support import whatwg_path
from tests.servers import RedisServer, wait_until

#: Safety bounds: the crawl of the corpus is ~1,000 requests; a stalled server ends it early.
MAX_FETCHES = 3000
CRAWL_SECONDS = 120.0
REQUEST_TIMEOUT = 15.0
#: Attributes that carry URLs, and those the crawl follows (GET only: the crawl never writes).
URL_ATTRIBUTES = {
    "href",
    "src",
    "action",
    "formaction",
    "hx-get",
    "hx-post",
    "hx-put",
    "hx-patch",
    "hx-delete",
}
FOLLOWED = {"href", "src", "hx-get"}
#: Searches started by the crawl (their pages and fragments link to job pages).
SEARCHES = ("window.__pwned", "report/2024", "bomb", "\udcff")
#: Where a server-side stack trace would show (the corpus's own tracebacks name no .py file).
SERVER_TRACE = re.compile(r'File "[^"\n]*\.py", line \d+|site-packages/')
#: GET routes of the OpenAPI document this module asks (with real parameters from the corpus).
GET_ROUTES = {
    "/api/v1/queues",
    "/api/v1/queues/{target}/{framework}/{queue}/jobs",
    "/api/v1/queues/{target}/{framework}/{queue}/depth",
    "/api/v1/jobs/{target}/{framework}/{queue}/{job_id}",
    "/api/v1/workers",
    "/api/v1/failures",
    "/api/v1/flow",
    "/api/v1/flow/overview",
    "/api/v1/tasks/{target}/{series_id}",
    "/api/v1/audit",
    "/api/v1/operations/{op_id}",
    "/api/v1/search",
    "/api/v1/searches/{search_id}",
}
#: What every script-bearing corpus string holds (tests/hostile/corpus.py XSS).
SCRIPT_MARKERS = ("__pwned", "{{7*7}}")
#: The row of a job table with no job (templates/partials/job_table.html).
EMPTY_TABLE = 'class="empty">No '
#: Default paging parameters: a link that only spells them out is the same page.
DEFAULT_PAGING = {("cursor", "0"), ("limit", "50")}


@dataclass
class Board:
    board: CappedBoard
    redis: RedisServer
    manifest: Manifest
    #: The corpus as written, to prove that reading it changed nothing.
    written: dict[bytes, Any]
    #: None once discovery listed every corpus queue, else what went wrong.
    discovery: str | None


@dataclass
class Crawl:
    pages: dict[str, Fetched] = field(default_factory=dict)
    #: (page, tag, attribute, value) of every URL-carrying attribute in every HTML answer.
    links: list[tuple[str, str, str, str]] = field(default_factory=list)
    #: Pages that linked to each job page (`data-job-link` anchors and search hits).
    job_links: dict[str, str] = field(default_factory=dict)
    #: Why the crawl ended early (a stall, the bound), else None.
    cut_short: str | None = None
    seconds: float = 0.0


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str, str]] = []
        self.job_links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        for name, value in attrs:
            if name in URL_ATTRIBUTES and value is not None:
                self.found.append((tag, name, value))
                if tag == "a" and name == "href" and "data-job-link" in names:
                    self.job_links.append(value)


def browser_path(page: str, link: str, base: str) -> str | None:
    """The same-origin path and query a browser requests for `link` on `page`, else None.

    As a browser does: tabs and newlines are dropped, the link is resolved (dot segments removed),
    spaces and non-ASCII are percent-encoded as UTF-8."""
    link = re.sub(r"[\t\n\r]", "", link).strip()
    if not link or link.startswith(("#", "data:", "mailto:", "javascript:")):
        return None
    absolute = urlsplit(urljoin(base + page, link))
    if f"{absolute.scheme}://{absolute.netloc}" != base:
        return None
    path = whatwg_path(quote(absolute.path, safe="/%:@!$&'()*+,;=-._~"))
    query = quote(absolute.query, safe="/%:@!$&'()*+,;=-._~?")
    return canonical(path + (f"?{query}" if query else ""))


def canonical(path: str) -> str:
    """One name per page: query parameters sorted, default paging dropped (bytes kept as they are)."""
    base, _, query = path.partition("?")
    pairs = [
        p for p in parse_qsl(query, keep_blank_values=True, encoding="latin-1") if p not in DEFAULT_PAGING
    ]
    return base + (f"?{urlencode(sorted(pairs), encoding='latin-1')}" if pairs else "")


def contents(client: redis.Redis, keys: list[bytes]) -> dict[bytes, Any]:
    """What each key holds, order-free where Redis keeps no order (DUMP is not: reads rehash)."""
    out: dict[bytes, Any] = {}
    c: Any = client  # redis-py annotates these commands with str keys; ours are bytes (not all UTF-8)
    for key in keys:
        kind = c.type(key)
        if kind == b"string":
            out[key] = c.get(key)
        elif kind == b"list":
            out[key] = c.lrange(key, 0, -1)
        elif kind == b"hash":
            out[key] = c.hgetall(key)
        elif kind == b"set":
            out[key] = c.smembers(key)
        elif kind == b"zset":
            out[key] = c.zrange(key, 0, -1, withscores=True)
        else:
            out[key] = kind
    return out


@pytest.fixture(scope="module")
def corpus_board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    server = new_redis()
    board: CappedBoard | None = None
    try:
        # Started empty, so it is up before the bombs arrive; then discovery finds the corpus.
        board = start_board(server, TARGET, poll_interval=0.5)
        with redis.Redis.from_url(server.url) as client:
            manifest = write_corpus(client, tmp_path_factory.mktemp("markers"))
            written = contents(client, manifest.keys)
        yield Board(board, server, manifest, written, wait_for_corpus(board.url, manifest))
    finally:
        if board is not None:
            board.stop()
        server.stop()


@pytest.fixture(scope="module")
def crawl(corpus_board: Board) -> Crawl:
    base = corpus_board.board.url
    out = Crawl()
    seeds = ["/"] + [
        f"/search?{urlencode({'q': q}, encoding='utf-8', errors='surrogateescape')}" for q in SEARCHES
    ]
    todo: deque[str] = deque(seeds)
    queued = set(seeds)
    started = time.monotonic()
    stalls = 0
    while todo:
        if len(out.pages) >= MAX_FETCHES or time.monotonic() - started > CRAWL_SECONDS:
            out.cut_short = f"stopped after {len(out.pages)} requests and {time.monotonic() - started:.0f} s"
            break
        path = todo.popleft()
        got = fetch(base, path, timeout=REQUEST_TIMEOUT)
        out.pages[path] = got
        stalls = stalls + 1 if got.error else 0
        if stalls >= 3:
            out.cut_short = f"three requests in a row got no answer, the last: {path!r}: {got.error}"
            break
        if not got.html:
            continue
        parser = _Links()
        parser.feed(got.text)
        for tag, attribute, value in parser.found:
            out.links.append((path, tag, attribute, value))
            target = browser_path(path, value, base) if attribute in FOLLOWED else None
            if target is not None and target not in queued:
                queued.add(target)
                todo.append(target)
        for value in parser.job_links:
            target = browser_path(path, value, base)
            if target is not None:
                out.job_links.setdefault(target, path)
    out.seconds = time.monotonic() - started
    return out


def _problems(pages: dict[str, Fetched]) -> list[str]:
    problems = []
    for path, got in pages.items():
        if got.error:
            problems.append(f"{path!r}: no answer ({got.error})")
        elif got.status >= 500:
            problems.append(f"{path!r}: {got.status} {got.text[:160]!r}")
        elif SERVER_TRACE.search(got.text):
            problems.append(f"{path!r}: a server stack trace in the answer")
    return problems


def test_discovery_lists_every_corpus_queue(corpus_board: Board) -> None:
    assert corpus_board.discovery is None, corpus_board.discovery


def test_crawl_meets_no_server_error_and_no_stall(crawl: Crawl, corpus_board: Board) -> None:
    print(f"crawl: {len(crawl.pages)} requests in {crawl.seconds:.1f} s")
    problems = _problems(crawl.pages)
    assert crawl.cut_short is None and not problems, (crawl.cut_short, problems[:40], len(problems))
    kinds = {urlsplit(p).path.split("/")[1] for p in crawl.pages}
    assert {"queues", "jobs", "workers", "failures", "fragments", "static", "search"} <= kinds, kinds


def test_every_job_the_ui_lists_opens(crawl: Crawl, corpus_board: Board) -> None:
    """A job link of a table or a search answers 200; 404 only for a job whose payload is missing."""
    missing = {j.job_id for j in corpus_board.manifest.jobs if not j.exists}
    listed = [j for j in corpus_board.manifest.jobs if j.state is not None and j.exists]
    assert len(crawl.job_links) >= len(listed), (len(crawl.job_links), len(listed))
    wrong = []
    for path, linked_from in crawl.job_links.items():
        got = crawl.pages.get(path)
        if got is None:
            continue  # beyond the crawl's bound: reported by the test above
        last = unquote(urlsplit(path).path.rsplit("/", 1)[-1], errors="surrogateescape")
        if got.status != 200 and not (got.status == 404 and last in missing):
            wrong.append(f"{path!r} (linked from {linked_from!r}): {got.status}")
    assert not wrong, wrong


def test_no_link_the_ui_builds_is_broken(crawl: Crawl, corpus_board: Board) -> None:
    """Every URL reached by following the UI's own links answers 2xx or 3xx (a job whose payload is
    missing: 404). The searches the crawl started are not links."""
    missing = {j.job_id for j in corpus_board.manifest.jobs if not j.exists}
    broken = []
    for path, got in crawl.pages.items():
        if path.startswith("/search?") or got.error or got.status < 400:
            continue
        last = unquote(urlsplit(path).path.rsplit("/", 1)[-1], errors="surrogateescape")
        if not (got.status == 404 and path.startswith("/jobs/") and last in missing):
            broken.append(f"{path!r}: {got.status} {got.text[:100]!r}")
    assert not broken, broken


def test_metrics_answer_with_the_target_up(corpus_board: Board) -> None:
    got = fetch(corpus_board.board.url, "/metrics")
    assert got.status == 200, (got.status, got.text[:300])
    assert re.search(rf'^callboard_up\{{target="{TARGET}"\}} 1(\.0)?$', got.text, re.M), got.text[:2000]


def _flow_answers(base: str) -> dict[str, Fetched]:
    """The flow report over odd windows, and the overview over every range and bad ones."""
    asked: dict[str, Fetched] = {}
    for minutes in ("", "5", "60", "0", "61", "x", "1e3"):
        path = f"/api/v1/flow?minutes={minutes}"
        asked[path] = fetch(base, path)
    for span in ("", "1h", "24h", "7d", "30d", "\n"):
        path = "/api/v1/flow/overview?" + urlencode({"range": span})
        asked[path] = fetch(base, path)
    return asked


def test_api_routes_without_parameters_answer_json(corpus_board: Board) -> None:
    base = corpus_board.board.url
    spec = api_json(base, "/api/v1/openapi.json")
    gets = {path for path, ops in spec["paths"].items() if "get" in ops}
    assert gets <= GET_ROUTES, f"GET routes this crawl does not ask yet: {gets - GET_ROUTES}"
    asked: dict[str, Fetched] = {}
    for path in ("/api/v1/queues", "/api/v1/workers", "/api/v1/failures", "/api/v1/audit"):
        asked[path] = fetch(base, path)
    for framework in ("dramatiq", "arq", "nope"):
        path = f"/api/v1/failures?framework={framework}"
        asked[path] = fetch(base, path)
    asked.update(_flow_answers(base))
    # Every task the flow lists (the corpus' odd names, ids whose name does not match are not among
    # them) over every range, a bad range, and ids that are not tasks.
    tasks = [urls.api_task_url(r["target"], r["series_id"]) for r in api_json(base, "/api/v1/flow")["series"]]
    for path in tasks:
        for span in ("", "?range=1h", "?range=24h", "?range=7d", "?range=nope"):
            asked[path + span] = fetch(base, path + span)
    for sid in ("ffffffffffff", "x", "no-such-task"):
        path = f"/api/v1/tasks/{urls.segment(TARGET)}/{sid}"
        asked[path] = fetch(base, path)
    for q in SEARCHES:
        path = "/api/v1/search?" + urlencode({"q": q}, encoding="utf-8", errors="surrogateescape")
        asked[path] = got = fetch(base, path)
        if got.status == 200:
            state = f"/api/v1/searches/{quote(json.loads(got.body)['id'], safe='')}"

            def ended(state: str = state) -> bool:
                asked[state] = polled = fetch(base, state)
                return polled.status != 200 or json.loads(polled.body)["status"] != "running"

            wait_until(ended, timeout=60, interval=0.2, what=f"search {q!r} to end")
    asked["/api/v1/operations/no-such-op"] = fetch(base, "/api/v1/operations/no-such-op")
    asked["/api/v1/searches/no-such-search"] = fetch(base, "/api/v1/searches/no-such-search")
    problems = _problems(asked)
    for path, got in asked.items():
        if not got.error and got.status < 500:
            try:
                json.loads(got.body)
            except ValueError:
                problems.append(f"{path!r}: {got.status} {got.content_type} is not JSON")
            if "no-such" in path and got.status != 404:
                problems.append(f"{path!r}: {got.status}, expected 404")
    assert not problems, problems


def test_every_corpus_queue_and_job_answers_by_its_url(corpus_board: Board) -> None:
    """Through the URL builder the UI uses (dashboard/urls.py): every corpus queue tab and job, as a
    page and in the API, with what each must show (escaped XSS, placeholders, the decode budget)."""
    # The URL builder of issue 11 item 2 (by name: it lands with that branch).
    urls = importlib.import_module("callboard.dashboard.urls")
    base = corpus_board.board.url
    manifest = corpus_board.manifest
    problems: list[str] = []
    for q in manifest.queues:
        for state in q.states:
            shown = fetch(base, urls.queue_url(manifest.target, q.framework, q.key, state))
            if shown.status != 200:
                problems.append(f"queue {q.key!r} {state}: page {shown.status or shown.error}")
            segments = (urls.segment(manifest.target), q.framework, urls.segment(q.key))
            got = fetch(base, "/api/v1/queues/{}/{}/{}/jobs?state=".format(*segments) + state)
            if got.status != 200 or not (json.loads(got.body).get("total") or 0) >= 1:
                problems.append(f"queue {q.key!r} {state}: API {got.status or got.error} {got.text[:120]!r}")
        for span in ("1h", "7d"):
            got = fetch(base, "/api/v1/queues/{}/{}/{}/depth?range=".format(*segments) + span)
            if got.status != 200 or json.loads(got.body).get("range") != span:
                problems.append(f"queue {q.key!r} depth {span}: {got.status or got.error} {got.text[:120]!r}")
    for job in manifest.jobs:
        shown = fetch(base, urls.job_url(manifest.target, job.framework, job.queue, job.job_id))
        api = fetch(base, urls.api_job_url(manifest.target, job.framework, job.queue, job.job_id))
        want = 200 if job.exists else 404
        label = f"{job.framework} {job.queue!r} {job.job_id!r} ({job.kind})"
        if shown.status != want or api.status != want:
            problems.append(f"{label}: page {shown.status or shown.error}, API {api.status or api.error}")
            continue
        text = html.unescape(shown.text)
        problems += [f"{label}: the page does not show {t!r}" for t in job.shows if t not in text]
        if job.exists and json.loads(api.body).get("job_id") != job.job_id:
            problems.append(f"{label}: the API shows job {json.loads(api.body).get('job_id')!r}")
    assert not problems, problems


def test_pages_carry_no_live_script_and_no_rewritable_url(crawl: Crawl) -> None:
    problems = []
    live = [x for x in XSS if x.startswith(("<", '"', "'"))]
    for path, got in crawl.pages.items():
        if got.html:
            problems += [f"{path!r}: unescaped {x!r}" for x in live if x in got.text]
    for page, tag, attribute, value in crawl.links:
        where = f"{page!r} <{tag} {attribute}={value!r}>"
        if value.strip().lower().startswith("javascript:"):
            problems.append(f"{where}: a javascript: URL")
        if re.search(r"[\t\n\r]", value):
            problems.append(f"{where}: a raw tab or newline (browsers drop it, changing the name)")
        segments = urlsplit(value).path.split("/")
        if any(unquote(s).lower() in (".", "..") for s in segments[1:]):
            problems.append(f"{where}: a dot segment (browsers resolve it to another path)")
    assert not problems, problems[:40]


def browser_pages(crawl: Crawl) -> list[str]:
    """The crawled pages (not fragments) that carry a script-bearing corpus string: a page without one
    cannot run one (names with `/`, `..` or newlines are the HTTP checks' business). A queue's tabs
    with an empty job list repeat its first tab. Chromium costs ~0.1 s per page: this keeps it to the
    pages that matter."""
    pages: list[str] = []
    seen_queues: set[str] = set()
    for path in sorted(crawl.pages):
        got = crawl.pages[path]
        if not got.html or path.startswith("/fragments/"):
            continue
        if not any(marker in html.unescape(got.text) for marker in SCRIPT_MARKERS):
            continue
        queue = path.partition("?")[0] if path.startswith("/queues/") else None
        if queue is not None and queue in seen_queues and EMPTY_TABLE in got.text:
            continue
        if queue is not None:
            seen_queues.add(queue)
        pages.append(path)
    return pages


@pytest.mark.browser
def test_chromium_opens_every_page_and_runs_no_injected_script(
    crawl: Crawl, corpus_board: Board, page: Page
) -> None:
    base = corpus_board.board.url
    pages = browser_pages(crawl)
    assert pages, "the crawl found no page"
    dialogs: list[str] = []
    console: list[tuple[str, str]] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(f"{page.url}: {dialog.type} {dialog.message!r}")
        dialog.dismiss()

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            console.append((msg.text, str(msg.location.get("url", ""))))

    page.on("dialog", on_dialog)
    page.on("console", on_console)
    page.on("pageerror", lambda exc: console.append((f"page error: {exc}", page.url)))
    problems: list[str] = []
    started = time.monotonic()
    for path in pages:
        console.clear()
        page.goto(base + path, wait_until="load")
        if page.evaluate("typeof window.__pwned") != "undefined":
            problems.append(f"{path!r}: an injected script ran (window.__pwned is set)")
        expected_404 = crawl.pages[path].status == 404
        for text, url in console:
            if not (expected_404 and "404" in text and url == base + path):
                problems.append(f"{path!r}: console error {text!r} ({url})")
    # The live parts swap in fresh fragments while a page is open: give them a few polls.
    for path in ("/", "/workers", "/failures", "/tasks"):
        page.goto(base + path, wait_until="load")
        page.wait_for_timeout(1200)
        if page.evaluate("typeof window.__pwned") != "undefined":
            problems.append(f"{path!r}: an injected script ran after a live update")
    print(f"chromium: {len(pages)} pages in {time.monotonic() - started:.1f} s")
    assert not dialogs and not problems, (dialogs, problems[:40])


def test_reading_the_corpus_ran_nothing_and_changed_nothing(corpus_board: Board, crawl: Crawl) -> None:
    manifest = corpus_board.manifest
    assert manifest.markers() == [], f"a hostile payload ran code: {manifest.markers()}"
    with redis.Redis.from_url(corpus_board.redis.url) as client:
        after = contents(client, manifest.keys)
    changed = [k for k, v in corpus_board.written.items() if after[k] != v]
    assert not changed, [raw_key.decode("utf-8", "surrogateescape") for raw_key in changed]
