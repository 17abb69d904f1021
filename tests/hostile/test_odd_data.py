"""Issue 11, item 7: odd but legal data renders (it was a 500: the response's UTF-8 encoding failed).

- Lone surrogates in arguments: what `os.listdir` returns for file names that are not UTF-8
  (`\\udcff`) and what JSON's `"\\ud800"` decodes to; in Dramatiq messages (sent by a real broker)
  and Arq jobs (enqueued by arq's client, pickled) and results (arq's serializer).
- Dramatiq redis message ids that are not UTF-8 (list members and hash fields `b"\\xff\\xfe"`),
  written in Dramatiq's exact layout.

Pages show surrogates as `\\udcff` escapes; the JSON API keeps them exact (as `\\u` escapes), and URLs
carry the id's bytes, so a control reaches exactly that message.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import redis
from arq.jobs import serialize_job, serialize_result

from tests.conftest import flushed
from tests.hostile.http_support import (
    api,
    arq_enqueue,
    attribute_values,
    dramatiq_actor,
    dramatiq_broker,
    eventually,
    get_ok,
    post_json,
    request,
)
from tests.integration.support import wait_for_queue
from tests.servers import Callboard, RedisServer

KEY = "dramatiq:odd"
SHOWN_RID = b"\xff\xfe"  # listed, shown, searched
GONE_RID = b"\xfa\xfb"  # deleted through its page's control
DEAD_RID = b"\xfd\xfc"  # a dead letter: /failures
DEAD_GONE_RID = b"\xf0\xf1"  # a dead letter deleted through the tab's selection form
ODD_ARGS = ["\ud800", "file-\udcff.txt"]
#: An Arq queue (a sorted set) whose name is not UTF-8, holding one job.
ODD_QUEUE = b"queue-\xff"


def text(rid: bytes) -> str:
    """The id as Callboard (and any redis client with surrogateescape) holds it."""
    return rid.decode("utf-8", "surrogateescape")


def shown(rid: bytes) -> str:
    """The id as a page shows it: each byte that is not UTF-8 as a `\\udcXX` escape."""
    return text(rid).encode("utf-8", "backslashreplace").decode()


@dataclass
class Board:
    board: Callboard
    control: redis.Redis
    #: The rid of the message sent by the broker with ODD_ARGS.
    sent_rid: str


@pytest.fixture(scope="module")
def seeded(one_redis: RedisServer) -> Iterator[Board]:
    url = flushed(one_redis)
    control = redis.Redis.from_url(url)
    broker = dramatiq_broker(url)
    actor = dramatiq_actor(broker, "odd", "odd_work")
    actor.send(*ODD_ARGS, name="caf\u00e9 \udcfe")
    [sent] = control.lrange(KEY, 0, -1)  # type: ignore[misc]
    now_ms = int(time.time() * 1000)
    ready: list[tuple[bytes, tuple[str, ...]]] = [
        (SHOWN_RID, ("rid-not-utf8",)),
        (GONE_RID, ("rid-to-delete",)),
    ]
    for rid, args in ready:
        control.rpush(KEY, rid)
        control.hset(f"{KEY}.msgs", rid, actor.message(*args).encode())  # type: ignore[arg-type]
    dead: list[tuple[bytes, tuple[str, ...]]] = [
        (DEAD_RID, ("dead-not-utf8", "\ud800")),
        (DEAD_GONE_RID, ("dead-to-delete",)),
    ]
    for rid, args in dead:
        failed = actor.message(*args).copy(
            options={
                "retries": 3,
                "traceback": "Traceback (most recent call last):\nOSError: bad name \udcff",
            }
        )
        control.zadd(f"{KEY}.XQ", {rid: now_ms})
        control.hset(f"{KEY}.XQ.msgs", rid, failed.encode())  # type: ignore[arg-type]
    arq_enqueue(one_redis.port, "odd_task", *ODD_ARGS, _job_id="arq-odd", where="\udcfe")
    result = serialize_result(
        "odd_task",
        ("\udcff",),
        {},
        1,
        now_ms - 2000,
        False,
        OSError("cannot open \ud800"),
        now_ms - 1000,
        now_ms,
        "arq-failed-odd:odd_task",
        "arq:queue",
        "arq-failed-odd",
    )
    assert result is not None
    control.set("arq:result:arq-failed-odd", result, px=3_600_000)
    board = Callboard([f"t={url}"]).start(poll_interval=0.2)
    try:
        wait_for_queue(board, "dramatiq", KEY)
        wait_for_queue(board, "arq", "arq:queue")
        yield Board(board, control, sent.decode())
    finally:
        board.stop()
        broker.client.close()
        control.close()


def _links(page: str) -> dict[str, str]:
    """data-job -> the job link, as shown in a job list."""
    rows = re.findall(r'<tr data-job="([^"]*)".*?data-job-link href="([^"]+)"', page, re.S)
    return {html.unescape(job): html.unescape(href) for job, href in rows}


def test_dramatiq_tabs_list_odd_messages_and_their_pages_render(seeded: Board) -> None:
    board = seeded.board
    ready = get_ok(board, f"/queues/t/dramatiq/{KEY}?state=ready")
    links = _links(ready)
    assert links[shown(SHOWN_RID)].endswith("/%FF%FE")  # the id's bytes, not U+FFFD
    assert "\\udcff\\udcfe" in ready  # shown as escapes
    job = get_ok(board, links[shown(SHOWN_RID)])
    assert "rid-not-utf8" in job and "\\udcff\\udcfe" in job
    sent = get_ok(board, links[seeded.sent_rid])
    assert "\\ud800" in sent and "file-\\udcff.txt" in sent and "caf\u00e9 \\udcfe" in sent
    dead = get_ok(board, f"/queues/t/dramatiq/{KEY}?state=dead")
    assert "OSError: bad name \\udcff" in dead
    get_ok(board, _links(dead)[shown(DEAD_RID)])
    get_ok(board, f"/fragments/jobs/t/dramatiq/{KEY}?state=dead")


def test_the_api_keeps_odd_strings_exact(seeded: Board) -> None:
    board = seeded.board
    page = api(board, f"/api/v1/queues/t/dramatiq/{KEY}/jobs?state=ready")
    ids = [item["job_id"] for item in page["items"]]
    assert text(SHOWN_RID) in ids and seeded.sent_rid in ids
    detail = api(board, f"/api/v1/jobs/t/dramatiq/{KEY}/%FF%FE")
    assert detail["job_id"] == text(SHOWN_RID) and detail["args"] == ["rid-not-utf8"]
    sent = api(board, f"/api/v1/jobs/t/dramatiq/{KEY}/{seeded.sent_rid}")
    assert sent["args"] == ODD_ARGS and sent["kwargs"] == {"name": "caf\u00e9 \udcfe"}
    arq_job = api(board, "/api/v1/jobs/t/arq/arq:queue/arq-odd")
    assert arq_job["args"] == ODD_ARGS and arq_job["kwargs"] == {"where": "\udcfe"}
    dead = api(board, f"/api/v1/queues/t/dramatiq/{KEY}/jobs?state=dead")
    assert text(DEAD_RID) in [item["job_id"] for item in dead["items"]]


def test_arq_pages_render_odd_arguments_and_results(seeded: Board) -> None:
    board = seeded.board
    page = get_ok(board, "/jobs/t/arq/arq:queue/arq-odd")
    assert "\\ud800" in page and "file-\\udcff.txt" in page
    assert "arq-odd" in get_ok(board, "/queues/t/arq/arq:queue?state=ready")
    eventually(lambda: board.get("/queues/t/arq/arq:queue?state=failed")[1].count("arq-failed-odd"), "result")
    failed = get_ok(board, "/jobs/t/arq/arq:queue/arq-failed-odd")
    assert "cannot open \\ud800" in failed


def test_failures_render_odd_errors_and_ids(seeded: Board) -> None:
    board = seeded.board

    def grouped() -> bool:
        groups = api(board, "/api/v1/failures")["groups"]
        return {g["framework"] for g in groups} == {"dramatiq", "arq"}

    eventually(grouped, "both frameworks' failures grouped")
    page = get_ok(board, "/failures")
    assert "bad name \\udcff" in page and "cannot open \\ud800" in page
    get_ok(board, "/fragments/failures")
    groups = api(board, "/api/v1/failures")["groups"]
    assert any("bad name \udcff" in json.dumps(g, ensure_ascii=False) for g in groups)
    for href in attribute_values(page, "href"):
        if href.startswith("/jobs/"):
            get_ok(board, href)  # every example link routes back to its job


def _search(board: Callboard, query: str) -> dict[str, Any]:
    started = api(board, f"/api/v1/search?q={quote(query)}")
    found: dict[str, Any] = {}

    def done() -> bool:
        found.update(api(board, f"/api/v1/searches/{started['id']}"))
        return bool(found["status"] != "running")

    eventually(done, f"the search for {query!r}")
    return found


def test_search_finds_and_shows_odd_messages(seeded: Board) -> None:
    board = seeded.board
    assert "search-progress" in get_ok(board, "/search?q=rid-not-utf8")
    result = _search(board, "rid-not-utf8")
    [hit] = result["hits"]
    assert hit["job_id"] == text(SHOWN_RID) and hit["url"].endswith("/%FF%FE")
    assert "rid-not-utf8" in get_ok(board, hit["url"])
    result = _search(board, "odd_work")
    assert {h["job_id"] for h in result["hits"]} >= {seeded.sent_rid, text(SHOWN_RID), text(DEAD_RID)}
    progress = get_ok(board, f"/fragments/searches/{result['id']}")
    assert "\\udcff\\udcfe" in progress


def test_controls_reach_exactly_the_message_whose_id_is_not_utf8(seeded: Board) -> None:
    board, control = seeded.board, seeded.control
    ready = get_ok(board, f"/queues/t/dramatiq/{KEY}?state=ready")
    job = get_ok(board, _links(ready)[shown(GONE_RID)])
    [delete] = [html.unescape(u) for u in re.findall(r'data-action="delete" hx-post="([^"]+)"', job)]
    status, answer = post_json(board, delete, {"state": "ready"})
    assert status == 200 and answer["done"] == 1, answer
    assert GONE_RID not in control.lrange(KEY, 0, -1)  # type: ignore[operator]
    assert not control.hexists(f"{KEY}.msgs", GONE_RID)  # type: ignore[arg-type]
    assert control.hexists(f"{KEY}.msgs", SHOWN_RID)  # type: ignore[arg-type]

    # The dead tab's selection form posts the checkbox's value: it must name the same bytes.
    dead = get_ok(board, f"/queues/t/dramatiq/{KEY}?state=dead")
    boxes = re.findall(r'<tr data-job="([^"]*)".*?name="ids" value="([^"]*)"', dead, re.S)
    value = next(html.unescape(v) for job_id, v in boxes if html.unescape(job_id) == shown(DEAD_GONE_RID))
    url = next(
        html.unescape(u)
        for u in re.findall(r'data-action="delete" data-scope="selection"[^>]*?hx-post="([^"]+)"', dead, re.S)
    )
    status, _, answer_text = request(
        board,
        "POST",
        url,
        f"state=dead&scope=selection&ids={quote(value)}".encode(),
        {"Content-Type": "application/x-www-form-urlencoded", "HX-Request": "true"},
    )
    assert status == 200, answer_text
    assert "<code>\\udcf0\\udcf1</code>: done" in answer_text  # the operation partial renders it
    assert control.zscore(f"{KEY}.XQ", DEAD_GONE_RID) is None
    assert not control.hexists(f"{KEY}.XQ.msgs", DEAD_GONE_RID)  # type: ignore[arg-type]
    assert control.zscore(f"{KEY}.XQ", DEAD_RID) is not None

    # The audit log keeps both ids exactly, and its page renders them.
    entries = api(board, "/api/v1/audit")["entries"]
    logged = {i for e in entries for i in e["ids"] or ()}
    assert {text(GONE_RID), text(DEAD_GONE_RID)} <= logged
    audit_page = get_ok(board, "/audit")
    assert "<code>\\udcfa\\udcfb</code>" in audit_page and "<code>\\udcf0\\udcf1</code>" in audit_page


def test_a_queue_whose_name_is_not_utf8_is_listed_linked_and_exported(seeded: Board) -> None:
    board, control = seeded.board, seeded.control
    # arq's own layout, written by hand: its client cannot name a queue with bytes that are not UTF-8.
    now_ms = int(time.time() * 1000)
    control.set("arq:job:in-odd-queue", serialize_job("odd_task", (), {}, None, now_ms), px=3_600_000)
    control.zadd(ODD_QUEUE, {"in-odd-queue": now_ms})
    eventually(lambda: "queue-\\udcff" in board.get("/")[1], "the queue on the overview")
    overview = get_ok(board, "/")
    assert "/queues/t/arq/queue-%FF" in attribute_values(overview, "href")  # its bytes, one segment
    page = get_ok(board, "/queues/t/arq/queue-%FF")
    assert "in-odd-queue" in page
    status, metrics = board.get("/metrics")
    assert status == 200 and 'queue="queue-\\\\udcff"' in metrics, metrics[-1500:]
    # Its "Delete all" reaches exactly that sorted set.
    [delete_all] = [
        html.unescape(u)
        for u in re.findall(r'data-action="delete" data-scope="all"[^>]*?hx-post="([^"]+)"', page, re.S)
    ]
    status, answer = post_json(board, delete_all, {"state": "ready"})
    assert status == 200 and answer["done"] == 1, answer
    assert control.zcard(ODD_QUEUE) == 0


def test_nothing_failed_on_the_way(seeded: Board) -> None:
    """No collection, render or control logged a traceback while all of the above ran."""
    assert seeded.board.proc is not None
    log = seeded.board.proc.log()
    assert "Traceback" not in log, log[-3000:]
    assert api(seeded.board, "/api/v1/queues")["targets"][0]["errors_total"] == 0
