"""Dramatiq write recipes against real Redis and Valkey: what each control changes, and what it refuses.

Layouts are written exactly as Dramatiq 2.x writes them (docs/dramatiq-redis.md §1), or produced by
a real RedisBroker where a producer suffices (delayed messages). Workers are in tests/integration.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

import pytest
import redis
from redis.asyncio import Redis

from callboard.collectors.dramatiq import controls as controls
from callboard.collectors.dramatiq.keys import QueueKeys
from callboard.collectors.model import Bound, Outcome
from tests.collectors.conftest import BrokerFactory

Q = QueueKeys("dramatiq", "default")
NOW_MS = 1_800_000_000_000


def listed(values: Any) -> list[str]:
    """Members of a sync client's reply (its stubs type replies as maybe-awaitable)."""
    return [v.decode() for v in values]


def fetched(client: redis.Redis, key: str, field: str) -> dict[str, Any]:
    raw = cast(bytes | None, client.hget(key, field))
    assert raw is not None, f"{key}[{field}] is missing"
    payload: dict[str, Any] = json.loads(raw)
    return payload


def message(rid: str, **options: Any) -> dict[str, Any]:
    return {
        "queue_name": "default",
        "actor_name": "charge",
        "args": [42, "eur"],
        "kwargs": {"retry": True},
        "options": {"redis_message_id": rid, **options},
        "message_id": f"mid-{rid}",
        "message_timestamp": NOW_MS - 3_600_000,
    }


def dead_letter(client: redis.Redis, rid: str, score: int = NOW_MS - 1000, raw: bytes | None = None) -> bytes:
    body = (
        raw
        or json.dumps(
            message(rid, retries=3, traceback="Traceback...\nValueError: no", requeue_timestamp=NOW_MS - 5000)
        ).encode()
    )
    client.hset(Q.dead_msgs, rid, body)  # type: ignore[arg-type]
    client.zadd(Q.dead, {rid: score})
    return body


def pending(client: redis.Redis, rid: str) -> None:
    client.hset(Q.msgs, rid, json.dumps(message(rid)))
    client.rpush(Q.ready, rid)


async def test_requeue_moves_a_dead_letter_back_with_retries_reset_and_a_fresh_timestamp(
    aredis: Redis, sync_redis: redis.Redis
) -> None:
    dead_letter(sync_redis, "r1")
    [outcome] = await controls.apply(aredis, Q, "dead", "retry", ["r1"], now_ms=NOW_MS)
    assert outcome.outcome is Outcome.DONE and outcome.new_id
    new = outcome.new_id
    assert sync_redis.zcard(Q.dead) == 0 and sync_redis.hlen(Q.dead_msgs) == 0
    assert listed(sync_redis.lrange(Q.ready, 0, -1)) == [new]
    moved = fetched(sync_redis, Q.msgs, new)
    # The hash field, the list entry and options.redis_message_id agree, as Dramatiq's ack needs.
    assert moved["options"] == {"redis_message_id": new}
    assert moved["message_timestamp"] == NOW_MS and moved["queue_name"] == "default"
    assert (moved["args"], moved["kwargs"], moved["message_id"]) == ([42, "eur"], {"retry": True}, "mid-r1")
    # A second click finds nothing to do and says so.
    [again] = await controls.apply(aredis, Q, "dead", "retry", ["r1"], now_ms=NOW_MS)
    assert again.outcome is Outcome.CHANGED and "gone" in again.detail
    assert sync_redis.llen(Q.ready) == 1


async def test_requeue_compares_and_sets_the_payload(aredis: Redis, sync_redis: redis.Redis) -> None:
    """A payload changed between the read and the write is left alone (the script answers -1)."""
    stale = dead_letter(sync_redis, "r1")
    sync_redis.hset(Q.dead_msgs, "r1", stale + b" ")  # type: ignore[arg-type]
    codes = await aredis.eval(  # type: ignore[misc]
        controls.REQUEUE_LUA,
        4,
        Q.dead,
        Q.dead_msgs,
        Q.msgs,
        Q.ready,
        "r1",
        stale,  # type: ignore[arg-type]
        "r2",
        "{}",
    )
    assert codes == [-1]
    assert sync_redis.zcard(Q.dead) == 1 and sync_redis.llen(Q.ready) == 0


async def test_undecodable_dead_letters_are_skipped_in_place_and_bulk_runs_step_past_them(
    aredis: Redis, sync_redis: redis.Redis
) -> None:
    dead_letter(sync_redis, "bad", score=NOW_MS - 9000, raw=b"\x80\x04not json")
    for i in range(5):
        dead_letter(sync_redis, f"ok{i}", score=NOW_MS - 8000 + i)
    selection = await controls.select_all(aredis, Q, "dead", now_ms=NOW_MS)
    assert selection.expected == 6
    seen: list[str] = []
    outcomes = []
    while ids := await selection.next(2):  # tiny batches: the skipped one must not loop forever
        batch = await controls.apply(aredis, Q, "dead", "retry", ids, now_ms=NOW_MS)
        selection.stayed(sum(o.in_place for o in batch))
        seen += ids
        outcomes += batch
    assert sorted(seen) == ["bad", "ok0", "ok1", "ok2", "ok3", "ok4"]
    by_id = {o.job_id: o for o in outcomes}
    assert by_id["bad"].outcome is Outcome.SKIPPED and "not a JSON message" in by_id["bad"].detail
    assert sum(o.outcome is Outcome.DONE for o in outcomes) == 5
    assert listed(sync_redis.zrange(Q.dead, 0, -1)) == ["bad"]


async def test_bulk_selection_of_dead_letters_ignores_letters_that_die_after_it_started(
    aredis: Redis, sync_redis: redis.Redis
) -> None:
    dead_letter(sync_redis, "old", score=NOW_MS - 1)
    selection = await controls.select_all(aredis, Q, "dead", now_ms=NOW_MS)
    dead_letter(sync_redis, "new", score=NOW_MS + 5)  # e.g. a requeued message that failed again
    assert await selection.next(100) == ["old"]


async def test_delete_dead_and_pending(aredis: Redis, sync_redis: redis.Redis) -> None:
    dead_letter(sync_redis, "d1")
    outcomes = await controls.apply(aredis, Q, "dead", "delete", ["d1", "d1", "nope"])
    assert [(o.job_id, o.outcome) for o in outcomes] == [("d1", Outcome.DONE), ("nope", Outcome.CHANGED)]
    assert not sync_redis.exists(Q.dead, Q.dead_msgs)

    for rid in ("p1", "p2"):
        pending(sync_redis, rid)
    # p2 was fetched by a worker: gone from the list, its payload still in Q.msgs (and an ack set).
    sync_redis.lrem(Q.ready, 1, "p2")
    outcomes = await controls.apply(aredis, Q, "ready", "delete", ["p1", "p2", "p3"])
    assert [o.outcome for o in outcomes] == [Outcome.DONE, Outcome.SKIPPED, Outcome.CHANGED]
    assert "already fetched" in outcomes[1].detail and not outcomes[1].in_place
    assert sync_redis.llen(Q.ready) == 0
    assert listed(sync_redis.hkeys(Q.msgs)) == ["p2"]  # the held one is untouched


async def test_ready_selection_is_bounded_by_the_length_at_its_start(
    aredis: Redis, sync_redis: redis.Redis
) -> None:
    for i in range(3):
        pending(sync_redis, f"p{i}")
    selection = await controls.select_all(aredis, Q, "ready")
    pending(sync_redis, "late")
    visited: list[str] = []
    while ids := await selection.next(2):
        await controls.apply(aredis, Q, "ready", "delete", ids)
        visited += ids
    assert visited == ["p0", "p1", "p2"]
    assert listed(sync_redis.lrange(Q.ready, 0, -1)) == ["late"]


async def test_run_now_and_delete_for_delayed_messages_no_worker_holds(
    aredis: Redis, sync_redis: redis.Redis, brokers: BrokerFactory
) -> None:
    import dramatiq

    broker = brokers()
    actor = dramatiq.actor(broker=broker, queue_name="default", actor_name="later")(lambda n: n)
    first = actor.send_with_options(args=(1,), delay=60_000)
    second = actor.send_with_options(args=(2,), delay=60_000)
    rids = listed(sync_redis.lrange(Q.delay, 0, -1))
    assert len(rids) == 2 and sync_redis.hlen(Q.delay_msgs) == 2

    [moved] = await controls.apply(aredis, Q, "delayed", "retry", [rids[0]])
    assert moved.outcome is Outcome.DONE
    assert listed(sync_redis.lrange(Q.ready, 0, -1)) == [rids[0]]
    payload = fetched(sync_redis, Q.msgs, rids[0])
    assert payload["queue_name"] == "default" and "eta" not in payload["options"]
    assert payload["message_id"] == first.message_id
    assert payload["options"]["redis_message_id"] == rids[0]

    # A delayed message a worker has fetched (gone from the DQ list, kept in DQ.msgs) cannot be
    # touched from Redis: it is skipped with the reason, and nothing changes.
    sync_redis.lrem(Q.delay, 1, rids[1])
    for action in ("retry", "delete"):
        [held] = await controls.apply(aredis, Q, "delayed", action, [rids[1]])
        assert held.outcome is Outcome.SKIPPED and "in memory" in held.detail
    assert sync_redis.hexists(Q.delay_msgs, rids[1])

    sync_redis.rpush(Q.delay, rids[1])
    [deleted] = await controls.apply(aredis, Q, "delayed", "delete", [rids[1]])
    assert deleted.outcome is Outcome.DONE and not sync_redis.exists(Q.delay, Q.delay_msgs)
    assert second.message_id not in str(listed(sync_redis.hvals(Q.msgs)))


async def test_in_flight_messages_have_no_controls(aredis: Redis) -> None:
    assert controls.actions("dead") == ("retry", "delete")
    assert controls.actions("in_flight") == ()
    with pytest.raises(ValueError, match="in_flight"):
        await controls.apply(aredis, Q, "in_flight", "delete", ["x"])


async def test_delayed_selection_reads_the_delay_list_a_batch_at_a_time(
    aredis: Redis, sync_redis: redis.Redis, brokers: BrokerFactory
) -> None:
    import dramatiq

    broker = brokers()
    actor = dramatiq.actor(broker=broker, queue_name="default", actor_name="later")(lambda n: n)
    for i in range(3):
        actor.send_with_options(args=(i,), delay=60_000)
    for rid in ("p0", "p1"):
        pending(sync_redis, rid)  # ready messages: not in this selection
    delayed = listed(sync_redis.lrange(Q.delay, 0, -1))
    selection = await controls.select_all(aredis, Q, "delayed")
    assert selection.expected == 3
    batches = []
    while ids := await selection.next(2):
        outcomes = await controls.apply(aredis, Q, "delayed", "retry", ids)
        selection.stayed(sum(o.in_place for o in outcomes))
        batches.append(ids)
    assert batches == [delayed[:2], delayed[2:]]
    assert listed(sync_redis.lrange(Q.ready, 0, -1)) == ["p0", "p1", *delayed]


async def test_ready_batches_hold_at_most_the_limit(aredis: Redis, sync_redis: redis.Redis) -> None:
    for i in range(5):
        pending(sync_redis, f"p{i}")
    selection = await controls.select_all(aredis, Q, "ready")
    batches = []
    while ids := await selection.next(2):
        batches.append(ids)
        selection.stayed(len(ids))  # nothing acted on: the next batch starts past them
    assert batches == [["p0", "p1"], ["p2", "p3"], ["p4"]]


async def test_dead_selection_is_bounded_by_the_time_it_starts(
    aredis: Redis, sync_redis: redis.Redis
) -> None:
    now_ms = int(time.time() * 1000)
    dead_letter(sync_redis, "before", score=now_ms - 1_000)
    dead_letter(sync_redis, "after", score=now_ms + 60_000)  # dead-lettered once the run had begun
    selection = await controls.select_all(aredis, Q, "dead")
    assert selection.expected == 1
    assert await selection.next(10) == ["before"]


# -- bounded by what the operator saw (issue 14: "Delete all 36" deleted 37) ------------------------


async def test_a_bounded_dead_run_acts_on_the_n_letters_seen_while_more_keep_dying(
    aredis: Redis, sync_redis: redis.Redis
) -> None:
    """The page showed N dead letters as of its snapshot time T and the operator confirmed N. Letters
    keep dying throughout, written as Dramatiq's nack writes them: one that died before T but after
    the count was read, and more after T, between every batch of the run. The run deletes exactly the
    N that were there, leaves every newcomer, and counts them as arrived."""
    seen_at_ms = NOW_MS - 10_000
    seen = [f"seen{i:03}" for i in range(250)]  # more than one batch of 200
    for i, rid in enumerate(seen):
        dead_letter(sync_redis, rid, score=seen_at_ms - 60_000 + i)
    dead_letter(sync_redis, "late-but-before-t", score=seen_at_ms - 1)  # died after the count was read
    arrivals = ["late-but-before-t"]
    bound = Bound(count=len(seen), before=seen_at_ms / 1000)
    selection = await controls.select_all(aredis, Q, "dead", now_ms=NOW_MS, bound=bound)
    assert selection.expected == len(seen)

    deleted: list[str] = []
    while ids := await selection.next(100):
        for _ in range(3):  # meanwhile workers dead-letter more, stamped with their (later) time
            rid = f"new{len(arrivals):03}"
            dead_letter(sync_redis, rid, score=seen_at_ms + 1_000 + len(arrivals))
            arrivals.append(rid)
        outcomes = await controls.apply(aredis, Q, "dead", "delete", ids)
        assert all(o.outcome is Outcome.DONE for o in outcomes)
        selection.stayed(sum(o.in_place for o in outcomes))
        deleted += ids

    assert sorted(deleted) == seen
    assert sorted(listed(sync_redis.zrange(Q.dead, 0, -1))) == sorted(arrivals)
    assert sorted(listed(sync_redis.hkeys(Q.dead_msgs))) == sorted(arrivals)
    assert await selection.arrived() == len(arrivals) == 10


async def test_a_bounded_requeue_never_takes_a_letter_that_died_again_or_one_past_the_count(
    aredis: Redis, sync_redis: redis.Redis
) -> None:
    """Requeued letters that a worker dead-letters again score after the bound, and a count lower than
    what died before the bound stops at the oldest: nothing is requeued twice, nothing unseen moves.
    An undecodable letter, skipped in place, still counts against the N the operator confirmed."""
    dead_letter(sync_redis, "bad", score=NOW_MS - 9_000, raw=b"\x80\x04not json")
    for i in range(4):
        dead_letter(sync_redis, f"ok{i}", score=NOW_MS - 8_000 + i)
    bound = Bound(count=3, before=(NOW_MS - 1_000) / 1000)
    selection = await controls.select_all(aredis, Q, "dead", now_ms=NOW_MS, bound=bound)
    assert selection.expected == 3
    seen: list[str] = []
    while ids := await selection.next(2):
        outcomes = await controls.apply(aredis, Q, "dead", "retry", ids, now_ms=NOW_MS)
        for o in outcomes:
            if o.new_id:  # the worker fails it again at once: a new letter, dead after the bound
                dead_letter(sync_redis, o.new_id, score=NOW_MS + 1)
        selection.stayed(sum(o.in_place for o in outcomes))
        seen += ids
    assert seen == ["bad", "ok0", "ok1"]
    assert sync_redis.llen(Q.ready) == 2
    # Left: the undecodable one (stepped past), ok2 and ok3 (past the count), two that died again.
    assert sync_redis.zcard(Q.dead) == 5
    assert await selection.arrived() == 4


async def test_a_bounded_purge_takes_at_most_n_from_the_head(aredis: Redis, sync_redis: redis.Redis) -> None:
    """Ready messages have no time: the count bounds them, taken from the head (the oldest, which
    were there when the operator looked); what was sent since stays, and is counted."""
    for i in range(5):
        pending(sync_redis, f"p{i}")
    selection = await controls.select_all(aredis, Q, "ready", bound=Bound(count=3, before=1.0))
    assert selection.expected == 3
    pending(sync_redis, "sent-meanwhile")
    visited: list[str] = []
    while ids := await selection.next(2):
        await controls.apply(aredis, Q, "ready", "delete", ids)
        visited += ids
    assert visited == ["p0", "p1", "p2"]
    assert listed(sync_redis.lrange(Q.ready, 0, -1)) == ["p3", "p4", "sent-meanwhile"]
    assert await selection.arrived() == 3


async def test_without_a_bound_a_run_acts_as_before_and_still_counts_arrivals(
    aredis: Redis, sync_redis: redis.Redis
) -> None:
    """Old API clients send no bound: every letter dead at the start of the run is acted on."""
    for i in range(3):
        dead_letter(sync_redis, f"d{i}", score=NOW_MS - 5_000 + i)
    selection = await controls.select_all(aredis, Q, "dead", now_ms=NOW_MS)
    dead_letter(sync_redis, "after-start", score=NOW_MS + 10)
    deleted = []
    while ids := await selection.next(200):
        await controls.apply(aredis, Q, "dead", "delete", ids)
        deleted += ids
    assert deleted == ["d0", "d1", "d2"]
    assert await selection.arrived() == 1
