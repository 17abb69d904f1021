"""dashboard/operations.py on real Redis and Valkey: which controls it starts, joins or refuses, and
what a run leaves behind (the jobs acted on, progress, the audit entry, a wake-up of the poller)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, cast

import pytest
import redis
from redis.asyncio import Redis

from callboard.collectors import audit
from callboard.collectors.dramatiq.config import DramatiqConfig
from callboard.collectors.dramatiq.keys import QueueKeys
from callboard.collectors.dramatiq.snapshot import DramatiqCollector
from callboard.collectors.model import Bound
from callboard.collectors.target import TargetCollector
from callboard.dashboard.operations import ControlError, ControlRequest, Operation, Operations, UnknownQueue
from callboard.dashboard.poller import Poller
from callboard.dashboard.store import SnapshotStore
from tests.collectors.conftest import CollectorFactory

Q = QueueKeys("dramatiq", "default")


def dead_letters(client: redis.Redis, count: int) -> list[str]:
    """`count` dead letters of Q, dead-lettered a second ago, written as Dramatiq writes them."""
    now_ms = int(time.time() * 1000)
    rids = [f"rid-{n}" for n in range(count)]
    for rid in rids:
        body = {"queue_name": "default", "actor_name": "charge", "args": [], "kwargs": {},
                "options": {"redis_message_id": rid, "retries": 3}, "message_id": f"m-{rid}",
                "message_timestamp": now_ms - 60_000}  # fmt: skip
        client.hset(Q.dead_msgs, rid, json.dumps(body))
        client.zadd(Q.dead, {rid: now_ms - 1000})
    return rids


@pytest.fixture
def board(collectors: CollectorFactory) -> tuple[Operations, TargetCollector, Poller]:
    target = collectors(queues=(Q.ready,))
    store = SnapshotStore([("test", "redis://test")], 10)
    poller = Poller(store, {"test": target}, interval=60.0, timeout=5.0)
    return Operations({"test": target}, poller, audit_keep=100), target, poller


def request(**changes: Any) -> ControlRequest:
    base: dict[str, Any] = dict(target="test", framework="dramatiq", queue=Q.ready, state="dead",
                                action="delete", ids=None, user="alice", client="127.0.0.1")  # fmt: skip
    return ControlRequest(**{**base, **changes})


async def ended(op: Operation) -> Operation:
    assert op.task is not None
    await asyncio.wait_for(asyncio.shield(op.task), timeout=20)
    return op


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"target": "elsewhere"}, UnknownQueue, "unknown target 'elsewhere'"),
        ({"queue": "dramatiq:nowhere"}, UnknownQueue, "No dramatiq queue 'dramatiq:nowhere'"),
        ({"framework": "celery"}, UnknownQueue, "No celery queue"),
        (
            {"action": "abort"},
            ControlError,
            "'abort' does not apply to dead dramatiq jobs; allowed: retry, delete",
        ),
        ({"state": "in_flight", "action": "retry"}, ControlError, "allowed: none"),
        ({"ids": ()}, ControlError, "no job ids given"),
        ({"ids": tuple(str(n) for n in range(10_001))}, ControlError, "at most 10000 ids"),
    ],
)
def test_a_control_that_cannot_run_is_refused_before_anything_starts(
    board: tuple[Operations, TargetCollector, Poller], changes: dict[str, Any], error: type, message: str
) -> None:
    operations, _, _ = board
    with pytest.raises(error, match=message):
        operations.start(request(**changes))
    assert operations.recent() == []


async def test_a_bulk_delete_acts_on_each_dead_letter_once_and_is_audited(
    board: tuple[Operations, TargetCollector, Poller], aredis: Redis, sync_redis: redis.Redis
) -> None:
    operations, _, poller = board
    rids = dead_letters(sync_redis, 450)  # three batches of 200
    op, joined = operations.start(request())
    again, joined_again = operations.start(request())  # a double click while it runs
    assert (joined, joined_again, again) == (False, True, op)
    await ended(op)
    view = op.view()
    assert (view["status"], view["expected"], view["visited"], view["done"]) == ("finished", 450, 450, 450)
    assert sync_redis.zcard(Q.dead) == 0 and sync_redis.hlen(Q.dead_msgs) == 0
    assert poller._wake["test"].is_set()  # the numbers move within one poll
    [entry] = await audit.recent(aredis, 10)
    assert (entry["user"], entry["action"], entry["scope"], entry["done"]) == ("alice", "delete", "all", 450)
    assert entry["client"] == "127.0.0.1" and entry["ids"] is None
    # Ended: the same request now starts a new operation, which finds nothing left to do.
    second, joined = operations.start(request(ids=tuple(rids[:2])))
    await ended(second)
    assert (joined, second.view()["done"], second.view()["changed"]) == (False, 0, 2)
    assert [o.id for o in operations.recent()] == [second.id, op.id]


async def test_an_unreachable_redis_fails_the_operation_with_503_and_the_log_keeps_the_audit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "callboard.audit")
    nowhere = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)  # nothing listens there
    target = TargetCollector("test", nowhere, DramatiqCollector(DramatiqConfig(queues=(Q.ready,))))
    poller = Poller(SnapshotStore([("test", "redis://test")], 10), {"test": target}, 60.0, 5.0)
    operations = Operations({"test": target}, poller, audit_keep=100)
    try:
        op, _ = operations.start(request())
        await ended(op)
    finally:
        await nowhere.aclose()
    assert (op.status, op.error_status) == ("failed", 503)
    assert op.error is not None and op.error.startswith("Redis failed after 0 jobs: ConnectionError")
    logged = [r.getMessage() for r in caplog.records]
    assert any("alice delete all on test/dramatiq/dramatiq:default (dead)" in m for m in logged), logged
    assert any("not stored in Redis" in m for m in logged)


async def test_a_bounded_run_acts_on_what_was_confirmed_and_says_what_arrived_since(
    board: tuple[Operations, TargetCollector, Poller], aredis: Redis, sync_redis: redis.Redis
) -> None:
    """ "Delete all (5)" confirmed on a page drawn at T: two letters that died after T are left alone,
    and the operation, its JSON and its audit entry say so."""
    operations, _, _ = board
    dead_letters(sync_redis, 5)  # died a second ago
    seen_at = time.time() - 0.5
    for rid in ("after-1", "after-2"):
        sync_redis.hset(Q.dead_msgs, rid, json.dumps({"queue_name": "default", "options": {}}))
        sync_redis.zadd(Q.dead, {rid: int(time.time() * 1000)})
    op, _ = operations.start(request(bound=Bound(count=5, before=seen_at)))
    await ended(op)
    view = op.view()
    assert (view["done"], view["expected"], view["arrived"]) == (5, 5, 2)
    assert view["bound"] == {"count": 5, "before": seen_at}
    assert view["summary"] == "acted on 5 of the 5 confirmed; 2 arrived since and were left alone"
    assert sorted(cast(list[bytes], sync_redis.zrange(Q.dead, 0, -1))) == [b"after-1", b"after-2"]
    [entry] = await audit.recent(aredis, 10)
    assert (entry["bound"], entry["arrived"], entry["summary"]) == (view["bound"], 2, view["summary"])


async def test_a_requeue_records_old_and_new_ids_so_the_old_link_finds_the_new_job(
    board: tuple[Operations, TargetCollector, Poller], aredis: Redis, sync_redis: redis.Redis
) -> None:
    operations, _, _ = board
    rids = dead_letters(sync_redis, 2)
    op, _ = operations.start(request(action="retry", ids=(rids[0],)))
    await ended(op)
    [outcome] = op.outcomes
    assert outcome.new_id and op.moved == [(rids[0], outcome.new_id)]
    assert op.view()["arrived"] is None  # a selection of ids has nothing that could arrive
    entries = await audit.recent(aredis, 10)
    assert entries[0]["moved"] == [[rids[0], outcome.new_id]]
    move = audit.find_move(entries, "dramatiq", Q.ready, rids[0])
    assert move is not None and (move.new_id, move.user, move.action) == (outcome.new_id, "alice", "retry")
    assert audit.find_move(entries, "dramatiq", Q.ready, rids[1]) is None
    assert audit.find_move(entries, "dramatiq", "dramatiq:other", rids[0]) is None
    assert (
        audit.find_move(
            [{"framework": "dramatiq", "queue": Q.ready, "moved": "junk"}], "dramatiq", Q.ready, "x"
        )
        is None
    )
