"""What `callboard serve` shows over HTTP is safe: no passwords, and hostile payloads never break it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest
import redis

from tests.integration import dramatiq_app
from tests.integration.support import api_json, full, wait_for_counts
from tests.servers import Callboard, RedisServer, wait_until

pytestmark = pytest.mark.integration

USERINFO_SECRET = "pw-userinfo-5f1c"
QUERY_SECRET = "pw-query-9b2e"
PAGES = (
    "/",
    "/workers",
    "/failures",
    "/readyz",
    "/metrics",
    "/api/v1/queues",
    "/api/v1/workers",
    "/api/v1/failures",
)


@pytest.fixture(scope="module")
def board_with_passwords(one_redis: RedisServer) -> Iterator[Callboard]:
    """Targets whose URLs carry passwords (our server has none set, so AUTH fails and they are down)."""
    base = f"redis://127.0.0.1:{one_redis.port}"
    board = Callboard(
        redis=[
            f"userinfo=redis://:{USERINFO_SECRET}@127.0.0.1:{one_redis.port}/0",
            f"query={base}/1?password={QUERY_SECRET}",
        ]
    ).start(poll_interval=0.2)
    try:
        wait_until(
            lambda: all(t["errors_total"] > 0 for t in api_json(board, "/api/v1/queues")["targets"]),
            timeout=15,
            what="both password targets to have tried and failed",
        )
        yield board
    finally:
        board.stop()


def exposed_text(board: Callboard) -> str:
    bodies = [board.get(path)[1] for path in PAGES]
    assert board.proc is not None
    return "\n".join([*bodies, board.proc.log()])


def test_userinfo_password_never_shown(board_with_passwords: Callboard) -> None:
    text = exposed_text(board_with_passwords)
    assert USERINFO_SECRET not in text
    target = next(
        t for t in api_json(board_with_passwords, "/api/v1/queues")["targets"] if t["name"] == "userinfo"
    )
    assert target["url"].startswith("redis://:***@127.0.0.1:")


def test_query_password_never_shown(board_with_passwords: Callboard) -> None:
    # redis-py takes `?password=` from the URL like the userinfo one: it must be redacted the same way.
    assert QUERY_SECRET not in exposed_text(board_with_passwords)


# -- hostile payloads over HTTP ------------------------------------------------------------------------

HOSTILE = {
    "pickle": b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.",
    "not-json": b"<script>alert(1)</script>",
    "truncated": b'{"queue_name":"hostile","actor_name":"wo',
    "json-list": b'["hostile", "work"]',
    "invalid-utf8": b'{"actor_name": "\xff"}',
    "deep-nesting": b"[" * 100_000,
    "huge": b'{"args": ["' + b"x" * 1_100_000 + b'"]}',
    "wrong-types": b'{"actor_name": 5, "args": "x", "kwargs": [1], "options": "o", "message_timestamp": "t"}',
    "nan": b'{"actor_name": "a", "args": [NaN, Infinity], "kwargs": {}, "options": {}}',
    "nested-500": b'{"actor_name": "a", "args": '
    + b"[" * 500
    + b"]" * 500
    + b', "kwargs": {}, "options": {}}',
    "html-in-args": (
        b'{"actor_name": "<b>x</b>", "args": ["<img src=x onerror=alert(1)>"], "kwargs": {}, "options": {}}'
    ),
}
UNDECODABLE = {
    "pickle",
    "not-json",
    "truncated",
    "json-list",
    "invalid-utf8",
    "deep-nesting",
    "nested-500",
    "huge",
}
HOSTILE_QUEUE = "dramatiq:hostile"


@dataclass
class HostileBoard:
    board: Callboard
    #: payload name -> (ready rid, dead rid)
    rids: dict[str, tuple[str, str]]


@pytest.fixture(scope="module")
def hostile_board(one_redis: RedisServer) -> Iterator[HostileBoard]:
    url0, url1 = f"redis://127.0.0.1:{one_redis.port}/0", f"redis://127.0.0.1:{one_redis.port}/1"
    client0, client1 = redis.Redis.from_url(url0), redis.Redis.from_url(url1)
    client0.flushall()
    brokers = []
    board = Callboard(redis=[f"main={url0}", f"infhead={url1}"])
    try:
        # DB 0: a normal message at the head (the snapshot reads only the head), then every hostile payload
        # once as a ready message and once as a dead letter, written the way Dramatiq writes them.
        broker, actors = dramatiq_app.build(url0, "dramatiq", ("hostile",))
        brokers.append(broker)
        actors["hold_hostile"].send("never", 0)
        # Dramatiq's own JSON encoder writes NaN and Infinity for such float arguments.
        nan_sent = actors["hold_hostile"].send_with_options(args=(float("nan"), float("inf")))
        assert b"NaN" in nan_sent.encode()
        rids: dict[str, tuple[str, str]] = {"sent-nan": (nan_sent.options["redis_message_id"], "")}
        for i, (name, raw) in enumerate(HOSTILE.items()):
            ready, dead = str(uuid.uuid4()), str(uuid.uuid4())
            client0.hset(f"{HOSTILE_QUEUE}.msgs", mapping={ready: raw})
            client0.rpush(HOSTILE_QUEUE, ready)
            client0.hset(f"{HOSTILE_QUEUE}.XQ.msgs", mapping={dead: raw})
            client0.zadd(f"{HOSTILE_QUEUE}.XQ", {dead: 1_700_000_000_000 + i})
            rids[name] = (ready, dead)
        # DB 1: a hostile payload at the head of a ready list, where the snapshot reads it.
        broker1, actors1 = dramatiq_app.build(url1, "dramatiq", ("other",))
        brokers.append(broker1)
        actors1["hold_other"].send("never", 0)
        inf = b'{"message_timestamp": 1e999, "options": {"retries": 1e999}}'
        client1.hset("dramatiq:infhead.msgs", mapping={"inf-rid": inf})
        client1.rpush("dramatiq:infhead", "inf-rid")
        board.start(poll_interval=0.2)
        n = len(HOSTILE)
        wait_for_counts(
            board,
            client0,
            "main",
            full({("dramatiq", "hostile"): {"ready": n + 2, "dead": n}}),
            "hostile seeded",
        )
        yield HostileBoard(board, rids)
    finally:
        board.stop()
        for b in brokers:
            b.client.close()
        client0.close()
        client1.close()


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_payload_in_job_lists_and_details(hostile_board: HostileBoard, name: str) -> None:
    board = hostile_board.board
    queue = quote(HOSTILE_QUEUE, safe="")
    for state, rid in zip(("ready", "dead"), hostile_board.rids[name], strict=True):
        page = api_json(board, f"/api/v1/queues/main/dramatiq/{queue}/jobs?state={state}&limit=100")
        row = next(item for item in page["items"] if item["job_id"] == rid)
        assert (row["undecodable"] is not None) == (name in UNDECODABLE)

        status, body = board.get(f"/api/v1/jobs/main/dramatiq/{queue}/{rid}")
        assert status == 200, body[:300]
        detail = json.loads(body)
        assert (detail["job_id"], detail["state"]) == (rid, state)
        assert (detail["undecodable"] is not None) == (name in UNDECODABLE)

        status, html = board.get(f"/jobs/main/dramatiq/{queue}/{rid}")
        assert status == 200, html[:300]
        assert "Traceback" not in html
        assert "<script>alert(1)</script>" not in html
        assert "<img src=x onerror" not in html


def reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def test_nan_argument_sent_by_dramatiq_gives_valid_json(hostile_board: HostileBoard) -> None:
    """`actor.send(float("nan"))` is legal Dramatiq; the job's detail must still be valid (strict) JSON."""
    rid = hostile_board.rids["sent-nan"][0]
    status, body = hostile_board.board.get(
        f"/api/v1/jobs/main/dramatiq/{quote(HOSTILE_QUEUE, safe='')}/{rid}"
    )
    assert status == 200, body[:300]
    detail = json.loads(body, parse_constant=reject_constant)
    assert (detail["job_id"], detail["state"], detail["name"]) == (rid, "ready", "hold_hostile")


def test_hostile_head_payload_keeps_the_target_up(hostile_board: HostileBoard) -> None:
    """The snapshot decodes each ready list's head for its age: a hostile head must not take it down."""
    board = hostile_board.board

    def collected() -> bool:
        return any(
            t["name"] == "infhead" and (t["up"] or t["errors_total"])
            for t in api_json(board, "/api/v1/queues")["targets"]
        )

    wait_until(collected, timeout=10, what="a collection of the infhead target")
    data = api_json(board, "/api/v1/queues")
    target = next(t for t in data["targets"] if t["name"] == "infhead")
    assert target["up"] is True, target["error"]
    queues = {q["key"]: q for q in data["queues"] if q["target"] == "infhead"}
    assert queues["dramatiq:infhead"]["counts"]["ready"] == 1
