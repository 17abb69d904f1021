"""The URL builder and its inverse (dashboard/urls.py): every URL the templates and the API hand out.

tests/hostile/test_urls.py holds the hostile names (dot segments, slashes, bytes that are not UTF-8)
and follows the links through a real server; here each builder's exact output, and the edge cases
of reading a path back.
"""

from __future__ import annotations

from typing import Any

import pytest

from callboard.dashboard import urls


def test_page_and_fragment_urls() -> None:
    assert urls.queue_url("main", "dramatiq", "dramatiq:default") == "/queues/main/dramatiq/dramatiq:default"
    assert urls.queue_url("main", "arq", "arq:queue", "ready", cursor=0, limit=50) == (
        "/queues/main/arq/arq:queue?state=ready&cursor=0&limit=50"
    )
    assert urls.queue_url("main", "arq", "q", cursor=100) == "/queues/main/arq/q?cursor=100"
    assert urls.job_url("main", "arq", "q", "j 1") == "/jobs/main/arq/q/j%201"
    assert urls.queue_fragment_url("main", "arq", "q") == "/fragments/queues/main/arq/q"
    assert (
        urls.queue_fragment_url("main", "arq", "q", "failed") == "/fragments/queues/main/arq/q?state=failed"
    )
    assert urls.jobs_fragment_url("main", "arq", "q/x", "ready", cursor=25, limit=25) == (
        "/fragments/jobs/main/arq/q%2Fx?state=ready&cursor=25&limit=25"
    )
    assert urls.jobs_fragment_url("main", "arq", "q") == "/fragments/jobs/main/arq/q"
    assert urls.task_url("a/b", "0123456789ab") == "/tasks/a%2Fb/0123456789ab"
    assert urls.task_url("main", "0123456789ab", "24h") == "/tasks/main/0123456789ab?range=24h"
    # The breadcrumb's target and framework: the overview filtered to them.
    assert urls.overview_url("main") == "/?q=main"
    assert urls.overview_url("jobs host", "arq") == "/?q=jobs+host+arq"
    assert urls.overview_url() == "/"


def test_api_and_control_urls() -> None:
    assert urls.api_jobs_url("main", "arq", "a/b") == "/api/v1/queues/main/arq/a%2Fb/jobs"
    assert urls.api_job_url("main", "arq", "q", "..") == "/api/v1/jobs/main/arq/q/~.."
    assert urls.api_task_url("main", "0123456789ab", "7d") == "/api/v1/tasks/main/0123456789ab?range=7d"
    assert urls.queue_action_url("main", "dramatiq", "dramatiq:q", "purge") == (
        "/api/v1/queues/main/dramatiq/dramatiq:q/purge"
    )
    assert urls.job_action_url("main", "arq", "q", "id?x", "retry") == "/api/v1/jobs/main/arq/q/id%3Fx/retry"
    assert urls.group_action_url("main", "arq", "3fa9", "delete") == "/api/v1/failures/main/arq/3fa9/delete"


def test_search_url_renames_field_to_in_and_drops_what_is_none() -> None:
    assert urls.search_url() == "/search"
    assert urls.search_url(q="card 42", field="message", target=None) == "/search?q=card+42&in=message"
    assert urls.search_url(q="x", target="main") == "/search?q=x&target=main"


def test_query_keeps_zero_and_empty_values_and_encodes_bytes_that_are_not_utf8() -> None:
    assert urls.query() == "" and urls.query(a=None) == ""
    assert urls.query(cursor=0, state="") == "?cursor=0&state="
    assert urls.query(q="a&b=c") == "?q=a%26b%3Dc"
    assert urls.query(queue="\udcff") == "?queue=%FF"


def test_key_bytes_are_the_bytes_redis_holds() -> None:
    assert urls.key_bytes("caf\u00e9") == b"caf\xc3\xa9"
    assert urls.key_bytes("\udcff") == b"\xff"  # surrogateescape: the byte read from Redis
    assert urls.key_bytes("\ud800") == b"\xed\xa0\x80"  # no key holds it; still a URL


@pytest.mark.parametrize(
    ("name", "segment"),
    [
        ("~~", "~~~"),
        ("~.", "~~."),
        ("~..", "~~.."),
        ("~x", "~x"),
        ("x~", "x~"),
        ("...", "..."),
        (".x", ".x"),
    ],
)
def test_only_names_browsers_would_rewrite_get_a_tilde(name: str, segment: str) -> None:
    assert urls.segment(name) == segment
    assert urls.unsegment(segment) == name


def test_unsegment_takes_one_tilde_off_only_what_segment_gave_one() -> None:
    assert urls.unsegment("~") == ""
    assert urls.unsegment("~~~") == "~~"
    assert urls.unsegment("~x") == "~x"
    assert urls.unsegment(b"a%2Fb") == "a/b"


@pytest.mark.parametrize(
    ("scope", "skip", "names"),
    [
        ({"path": "/queues/t/arq/q", "raw_path": b"/queues/t/arq/q"}, 1, ["t", "arq", "q"]),
        ({"path": "/queues/t/arq/q", "raw_path": b"/queues/t/arq/q"}, 0, ["queues", "t", "arq", "q"]),
        (
            {"path": "/api/v1/jobs/t/arq/q/j", "raw_path": b"/api/v1/jobs/t/arq/q/j"},
            3,
            ["t", "arq", "q", "j"],
        ),
        # Mounted under a root path that the raw path holds: its segments are skipped...
        ({"path": "/a/b/q/x", "raw_path": b"/a/b/q/x", "root_path": "/a/b"}, 1, ["x"]),
        ({"path": "/a/b/q/x", "raw_path": b"/a/b/q/x", "root_path": "/a/b/"}, 1, ["x"]),
        ({"path": "/caf\u00e9/q/x", "raw_path": b"/caf%C3%A9/q/x", "root_path": "/caf\u00e9"}, 1, ["x"]),
        # ... only when it holds all of them, in order.
        ({"path": "/a/q/x", "raw_path": b"/a/q/x", "root_path": "/a/b"}, 1, ["q", "x"]),
        ({"path": "/b/a/q", "raw_path": b"/b/a/q", "root_path": "/a/b"}, 1, ["a", "q"]),
        ({"path": "/a/a/q", "raw_path": b"/a/a/q", "root_path": "/a/b"}, 1, ["a", "q"]),
        ({"path": "/q/x", "raw_path": b"/q/x", "root_path": ""}, 1, ["x"]),
        ({"path": "/q/x", "raw_path": b"/q/x", "root_path": None}, 1, ["x"]),
        # Without raw_path the decoded path is re-encoded: "%" and names stay themselves.
        ({"path": "/q/100%/caf\u00e9"}, 1, ["100%", "caf\u00e9"]),
    ],
)
def test_path_segments(scope: dict[str, Any], skip: int, names: list[str]) -> None:
    assert urls.path_segments(scope, skip) == names


def test_builders_are_the_template_globals() -> None:
    assert set(urls.BUILDERS) == {
        "overview_url",
        "queue_url",
        "job_url",
        "api_depth_url",
        "queue_fragment_url",
        "jobs_fragment_url",
        "task_url",
        "search_url",
        "api_jobs_url",
        "api_job_url",
        "api_task_url",
        "queue_action_url",
        "job_action_url",
        "group_action_url",
    }
    assert all(urls.BUILDERS[name] is getattr(urls, name) for name in urls.BUILDERS)
