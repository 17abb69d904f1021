"""Issue 11, item 2: every URL encodes each name as exactly one path segment, and routes read it back.

Unit tests of `dashboard.urls.segment`/`unsegment`, then `callboard serve` over a real Redis with names
that broke it: an Arq job id `report/2024/07` (real arq client), an Arq queue named
`x/../../../t/dramatiq/dramatiq:victim` next to a real Dramatiq queue `dramatiq:victim`, and queues
named `..`, `a/b`, with a newline. Links are read from the pages and sent as a browser would send
them (dot segments removed), never rebuilt by the test.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from tests.conftest import flushed
from tests.hostile.http_support import (
    api,
    arq_enqueue,
    attribute_values,
    dramatiq_actor,
    dramatiq_broker,
    get_ok,
    post_json,
    whatwg_path,
)
from tests.integration.support import wait_for_queue
from tests.servers import Callboard, RedisServer

# -- segment / unsegment -------------------------------------------------------------------------------

NAMES = [
    "",
    ".",
    "..",
    "...",
    "~",
    "~.",
    "~..",
    "~~",
    "~foo",
    "/",
    "%",
    "%2e%2e",
    "?",
    "#",
    "\n",
    "a/b",
    "report/2024/07",
    "x/../../../t/dramatiq/dramatiq:victim",
    "dramatiq:default",
    "user@example.com",
    "\udcff\udcfe",  # bytes ff fe as redis clients decode them (surrogateescape)
    "caf\u00e9 \u65e5\u672c \U0001f600",
    "a b+c&d=e",
    "\x00\r\t",
]


@pytest.mark.parametrize("name", NAMES)
def test_segment_round_trips_and_is_one_safe_segment(name: str) -> None:
    from callboard.dashboard.urls import segment, unsegment

    seg = segment(name)
    assert unsegment(seg) == name
    assert re.fullmatch(r"[A-Za-z0-9\-._~:@%]+", seg), seg  # never empty, nothing that ends a segment
    assert seg not in (".", "..") and not re.fullmatch(r"(?i)(%2e|\.){1,2}", seg)  # no dot segment
    assert seg.lower().replace("%2e", ".") not in (".", "..")


def test_segment_escapes_what_ends_or_changes_a_path() -> None:
    from callboard.dashboard.urls import segment, unsegment

    assert segment("a/b") == "a%2Fb"
    assert segment("%") == "%25" and segment("?") == "%3F" and segment("#") == "%23"
    assert segment("\n") == "%0A"
    assert segment("dramatiq:default") == "dramatiq:default"  # plain names stay readable
    assert segment("..") == "~.." and segment(".") == "~." and segment("") == "~"
    assert segment("~") == "~~" and segment("~foo") == "~foo"
    assert segment("\udcff") == "%FF"  # the byte, not U+FFFD
    assert unsegment("%7E%2E%2E") == ".."  # a decoded `~..` is the escaped `..`, however written
    assert unsegment("%FF%FE") == "\udcff\udcfe"
    # A lone surrogate no key can hold still makes a URL (its bytes reach Redis unchanged).
    assert segment("\ud800") == "%ED%A0%80"


def test_path_segments_read_the_raw_path_and_skip_root_path() -> None:
    from callboard.dashboard.urls import path_segments

    scope = {"path": "/jobs/t/arq/q/report/2024/07", "raw_path": b"/jobs/t/arq/q/report%2F2024%2F07"}
    assert path_segments(scope, 1) == ["t", "arq", "q", "report/2024/07"]
    mounted = {
        "path": "/cb/jobs/t/arq/q/~..",
        "raw_path": b"/cb/jobs/t/arq/q/~..",
        "root_path": "/cb",
    }
    assert path_segments(mounted, 1) == ["t", "arq", "q", ".."]
    # A proxy that strips the prefix: the raw path no longer holds it.
    stripped = {"path": "/cb/jobs/t/arq/q/x", "raw_path": b"/jobs/t/arq/q/x", "root_path": "/cb"}
    assert path_segments(stripped, 1) == ["t", "arq", "q", "x"]
    assert path_segments({"path": "/jobs/t/arq/q/a b"}, 1) == ["t", "arq", "q", "a b"]  # no raw_path


def test_builders_make_one_segment_per_name() -> None:
    from callboard.dashboard import urls

    q = "x/../../../t/dramatiq/dramatiq:victim"
    assert urls.queue_action_url("t", "arq", q, "delete") == (
        "/api/v1/queues/t/arq/x%2F..%2F..%2F..%2Ft%2Fdramatiq%2Fdramatiq:victim/delete"
    )
    assert (
        urls.job_url("t", "arq", "arq:queue", "report/2024/07") == "/jobs/t/arq/arq:queue/report%2F2024%2F07"
    )
    assert urls.queue_url("t", "arq", "..", "ready", cursor=50, limit=25) == (
        "/queues/t/arq/~..?state=ready&cursor=50&limit=25"
    )
    assert (
        urls.api_job_url("t", "dramatiq", "dramatiq:q", "\udcff") == "/api/v1/jobs/t/dramatiq/dramatiq:q/%FF"
    )
    assert urls.group_action_url("t", "arq", "g/1", "retry") == "/api/v1/failures/t/arq/g%2F1/retry"
    assert urls.search_url(q="a&b", field="id") == "/search?q=a%26b&in=id"


# -- a real server -------------------------------------------------------------------------------------

VICTIM_QUEUE = "x/../../../t/dramatiq/dramatiq:victim"
ODD_QUEUES = ("..", ".", "a/b", "with\nnewline", "%2e%2e", "q?x=1#frag")
SLASH_ID = "report/2024/07"
NEIGHBOURS = ("07", "report", "2024")


@dataclass
class Board:
    board: Callboard
    control: redis.Redis
    victims: int


@pytest.fixture(scope="module")
def seeded(one_redis: RedisServer) -> Iterator[Board]:
    url = flushed(one_redis)
    control = redis.Redis.from_url(url)
    broker = dramatiq_broker(url)
    victim = dramatiq_actor(broker, "victim", "victim_work")
    for i in range(3):
        victim.send(i)
    for job_id in (SLASH_ID, *NEIGHBOURS):
        arq_enqueue(one_redis.port, "report", _job_id=job_id)
    arq_enqueue(one_redis.port, "bait", _queue_name=VICTIM_QUEUE)
    for name in ODD_QUEUES:
        arq_enqueue(one_redis.port, "odd", name, _queue_name=name)
    board = Callboard([f"t={url}"]).start(poll_interval=0.2)
    try:
        wait_for_queue(board, "dramatiq", "dramatiq:victim")
        for key in ("arq:queue", VICTIM_QUEUE, *ODD_QUEUES):
            wait_for_queue(board, "arq", key)
        yield Board(board, control, 3)
    finally:
        board.stop()
        broker.client.close()
        control.close()


def _row_link(page: str, job_id: str) -> str:
    match = re.search(
        rf'<tr data-job="{re.escape(html.escape(job_id))}".*?data-job-link href="([^"]+)"', page, re.S
    )
    assert match, f"no row for {job_id!r}"
    return html.unescape(match.group(1))


def _button_url(page: str, action: str, scope: str | None = None) -> str:
    pattern = (
        rf'data-action="{action}"' + (rf' data-scope="{scope}"' if scope else "") + r'[^>]*?hx-post="([^"]+)"'
    )
    match = re.search(pattern, page, re.S)
    assert match, f"no {action} button"
    return html.unescape(match.group(1))


def test_a_job_id_with_slashes_has_a_page_and_its_delete_acts_on_exactly_it(seeded: Board) -> None:
    board, control = seeded.board, seeded.control
    queue_page = get_ok(board, "/queues/t/arq/arq:queue")  # a plain URL keeps working
    link = whatwg_path(_row_link(queue_page, SLASH_ID))
    job_page = get_ok(board, link)
    assert f"› {SLASH_ID}</nav>" in job_page
    assert api(board, "/api/v1/jobs/t/arq/arq:queue/report%2F2024%2F07")["job_id"] == SLASH_ID

    status, answer = post_json(board, whatwg_path(_button_url(job_page, "delete")), {"state": "ready"})
    assert status == 200, answer
    assert answer["done"] == 1 and answer["queue"] == "arq:queue", answer
    assert [o["job_id"] for o in answer["outcomes"]] == [SLASH_ID]
    assert control.zscore("arq:queue", SLASH_ID) is None
    assert control.exists(f"arq:job:{SLASH_ID}") == 0
    for other in NEIGHBOURS:  # the job `07` (and the others the old split could pick) untouched
        assert control.zscore("arq:queue", other) is not None, other
        assert control.exists(f"arq:job:{other}") == 1, other


def test_a_queue_named_like_a_path_never_reaches_another_queue(seeded: Board) -> None:
    board, control = seeded.board, seeded.control
    before = (control.llen("dramatiq:victim"), control.hlen("dramatiq:victim.msgs"))
    assert before == (seeded.victims, seeded.victims)
    page = get_ok(
        board, "/queues/t/arq/" + "%2F".join(["x", "..", "..", "..", "t", "dramatiq", "dramatiq:victim"])
    )
    assert f"<strong>{html.escape(VICTIM_QUEUE)}</strong>" in page

    # The "Delete all" button, sent as a browser sends it (dot segments removed).
    delete_all = whatwg_path(_button_url(page, "delete", "all"))
    status, answer = post_json(board, delete_all, {"state": "ready"})
    assert (control.llen("dramatiq:victim"), control.hlen("dramatiq:victim.msgs")) == before, delete_all
    assert status == 200, answer
    assert answer["framework"] == "arq" and answer["queue"] == VICTIM_QUEUE and answer["done"] == 1, answer
    assert control.zcard(VICTIM_QUEUE) == 0  # it acted on exactly its own queue
    # No URL the page holds leads to a Dramatiq queue.
    for value in attribute_values(page, "hx-post") + attribute_values(page, "hx-get"):
        path = whatwg_path(value)
        assert not path.startswith(("/api/v1/queues/t/dramatiq", "/fragments/jobs/t/dramatiq")), value


def _routes_back(board: Callboard, links: dict[str, str], name: str) -> None:
    assert name in links, sorted(links)
    page = get_ok(board, whatwg_path(links[name]))
    crumb = re.search(r'<nav class="crumbs"[^>]*>.*?<strong>(.*?)</strong>', page, re.S)
    assert crumb and html.unescape(crumb.group(1)) == name
    # Its live fragments and its job links route back to it too.
    for url in attribute_values(page, "hx-get"):
        if url.startswith("/fragments/"):
            assert get_ok(board, whatwg_path(url))
    [job_link] = attribute_values(page, "data-job-link href")
    job_page = get_ok(board, whatwg_path(job_link))
    assert f"<tr><th>queue</th><td><code>{html.escape(name)}</code></td></tr>" in job_page


def test_odd_queue_names_route_back_to_themselves(seeded: Board) -> None:
    board = seeded.board
    overview = get_ok(board, "/")
    links = {
        html.unescape(text): html.unescape(href)
        for href, text in re.findall(r'<a href="(/queues/t/arq/[^"?]*)">([^<]*)</a>', overview)
    }
    failed: dict[str, str] = {}
    for name in ODD_QUEUES:
        try:
            _routes_back(board, links, name)
        except AssertionError as exc:
            failed[name] = str(exc)[:300]
    assert not failed, failed
