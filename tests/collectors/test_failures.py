"""Failure groups read from real Redis and Valkey: the Dramatiq dead-letter reader (budgeted, newest
first, follows arrivals and removals), the Arq results index feeding the same groups, stuck Arq
claims, and the "recover now" recipe for messages held by dead Dramatiq workers.

Layouts are written exactly as the frameworks write them (docs/dramatiq-redis.md, docs/arq-redis.md);
workers that produce them for real are in tests/integration/test_failure_groups.py.
"""

from __future__ import annotations

import json
import pickle
import time
from typing import Any

import redis
from redis.asyncio import Redis

from callboard.collectors.arq.config import ArqConfig
from callboard.collectors.arq.keys import in_progress_key, job_key, result_key
from callboard.collectors.arq.snapshot import ArqCollector
from callboard.collectors.dramatiq import controls as dramatiq_controls
from callboard.collectors.dramatiq.config import DramatiqConfig
from callboard.collectors.dramatiq.deadletters import DEAD_BUDGET
from callboard.collectors.dramatiq.keys import QueueKeys, acks_key, heartbeats_key
from callboard.collectors.dramatiq.snapshot import DramatiqCollector
from callboard.collectors.failures import NO_TRACEBACK
from callboard.collectors.flow import Series
from callboard.collectors.model import FailureGroup, Outcome, TargetSnapshot
from callboard.collectors.target import TargetCollector
from callboard.companion.recorder import Recorder, stage

NOW_MS = int(time.time() * 1000)


def dead_letter(
    client: redis.Redis, q: QueueKeys, rid: str, actor: str, error: str | None, score: int
) -> None:
    options: dict[str, Any] = {"redis_message_id": rid}
    if error is not None:
        options |= {"retries": 1, "traceback": f"Traceback (most recent call last):\n  ...\n{error}\n"}
    body = {
        "queue_name": q.queue,
        "actor_name": actor,
        "args": [rid],
        "kwargs": {},
        "options": options,
        "message_id": f"mid-{rid}",
        "message_timestamp": score - 5000,
    }
    client.hset(q.dead_msgs, rid, json.dumps(body))
    client.zadd(q.dead, {rid: score})


def listed(values: Any) -> list[str]:
    """Members of a sync client's reply (its stubs type replies as maybe-awaitable)."""
    return [v.decode() for v in values]


def registry(client: redis.Redis, namespace: str = "dramatiq") -> None:
    """A heartbeat registry, as every Dramatiq process writes: it makes the namespace known."""
    client.zadd(heartbeats_key(namespace), {"producer": NOW_MS})


async def settle(target: TargetCollector, cycles: int = 50) -> TargetSnapshot:
    """Collect until the failure groups stop changing (the reader reads a budget per cycle)."""
    snap = await target.collect()
    for _ in range(cycles):
        before = [(g.key, g.count) for g in snap.failures], snap.failures_missing
        snap = await target.collect()
        if (
            [(g.key, g.count) for g in snap.failures],
            snap.failures_missing,
        ) == before and not snap.failures_missing:
            return snap
    return snap


def by_pattern(snap: TargetSnapshot) -> dict[tuple[str | None, str, str], FailureGroup]:
    return {(g.name, g.exception, g.pattern): g for g in snap.failures}


async def test_dead_letters_are_grouped_by_cause_across_queues(
    sync_redis: redis.Redis, aredis: Redis
) -> None:
    registry(sync_redis)
    billing, emails = QueueKeys("dramatiq", "billing"), QueueKeys("dramatiq", "emails")
    for i in range(7):
        dead_letter(
            sync_redis,
            billing,
            f"b{i}",
            "charge",
            f"app.PaymentDeclined: card {4000 + i} declined",
            NOW_MS - i,
        )
    for i in range(3):
        dead_letter(
            sync_redis, emails, f"c{i}", "charge", f"app.PaymentDeclined: card {i} declined", NOW_MS - 100 - i
        )
    for i in range(4):
        dead_letter(
            sync_redis, emails, f"e{i}", "send", "OSError: [Errno 111] Connection refused", NOW_MS - 200 - i
        )
    dead_letter(sync_redis, emails, "first-try", "send", None, NOW_MS - 300)
    sync_redis.hset(emails.dead_msgs, "junk", "{not json")
    sync_redis.zadd(emails.dead, {"junk": NOW_MS - 400, "no-payload": NOW_MS - 500})
    target = TargetCollector("t", aredis, DramatiqCollector(DramatiqConfig(dead_message_ttl=3600)))
    snap = await settle(target)
    groups = by_pattern(snap)
    assert {k: g.count for k, g in groups.items()} == {
        ("charge", "app.PaymentDeclined", "card <n> declined"): 10,
        ("send", "OSError", "[Errno <n>] Connection refused"): 4,
        ("send", NO_TRACEBACK, ""): 1,
        (None, "(undecodable)", "not JSON: JSONDecodeError"): 1,
        (None, "(undecodable)", "missing payload"): 1,
    }
    charge = groups[("charge", "app.PaymentDeclined", "card <n> declined")]
    assert charge.queues == (("dramatiq:billing", 7), ("dramatiq:emails", 3))
    assert charge.example == ("dramatiq:billing", "b0")
    assert charge.last_seen == NOW_MS / 1000 and charge.first_seen == (NOW_MS - 102) / 1000
    # dead_message_ttl = 1 h: all of them are deleted by maintenance within the hour.
    assert charge.expiring_hour == 10
    assert snap.failures_missing == 0


async def test_the_reader_is_budgeted_and_follows_arrivals_and_removals(
    sync_redis: redis.Redis, aredis: Redis
) -> None:
    registry(sync_redis)
    q = QueueKeys("dramatiq", "default")
    total = DEAD_BUDGET * 2 + 50
    pipe = sync_redis.pipeline()
    for i in range(total):
        # Many share a score (one ms), as a burst of nacks can: ties must not stall the walk.
        dead_letter(pipe, q, f"m{i}", "work", f"ValueError: item {i}", NOW_MS - i // 300)
    pipe.execute()
    target = TargetCollector("t", aredis, DramatiqCollector())
    first = await target.collect()  # discovery finds the queue; the reader starts next cycle
    second = await target.collect()
    indexed = sum(g.count for g in second.failures)
    assert 0 < indexed <= DEAD_BUDGET, "one cycle reads at most DEAD_BUDGET payloads"
    assert first.failures_missing == 0 or first.failures_missing == total
    assert second.failures_missing == total - indexed
    snap = await settle(target)
    (group,) = snap.failures
    assert group.count == total
    # New dead letters arrive (newer scores); some old ones are requeued or expire behind our back.
    for i in range(5):
        dead_letter(sync_redis, q, f"new{i}", "work", f"ValueError: item {i}", NOW_MS + 1000 + i)
    sync_redis.zrem(q.dead, "m0", "m1", "m2")
    sync_redis.hdel(q.dead_msgs, "m0", "m1", "m2")
    snap = await settle(target)
    (group,) = snap.failures
    assert group.count == total + 5 - 3
    target.dramatiq.failures.remove("m10")  # a wrong guess (as after a changed compare-and-set)
    snap = await settle(target)
    assert snap.failures[0].count == total + 2, "the reader mends an index that lost a dead letter"
    # The queue empties: its groups go.
    sync_redis.delete(q.dead, q.dead_msgs)
    snap = await settle(target)
    assert snap.failures == ()


async def test_dead_letter_arrivals_are_dramatiqs_flow_estimate(
    sync_redis: redis.Redis, aredis: Redis
) -> None:
    """Failures per minute of dead-lettering, queue and actor, from what the reader reads: letters
    already dead at start count in their own minute if it is within the window; a letter deleted or
    read again still counts once; the companion on a queue takes the queue over."""
    registry(sync_redis)
    q, emails = QueueKeys("dramatiq", "default"), QueueKeys("dramatiq", "emails")
    now_ms = int(time.time() * 1000)
    now_minute, ago_minute = now_ms // 60_000, (now_ms - 30 * 60_000) // 60_000
    for i in range(3):
        dead_letter(sync_redis, q, f"now{i}", "charge", None, now_ms)
    dead_letter(sync_redis, q, "ago", "charge", "ValueError: x", now_ms - 30 * 60_000)
    dead_letter(sync_redis, q, "send", "send", None, now_ms)
    dead_letter(sync_redis, q, "too-old", "charge", None, now_ms - 61 * 60_000)  # before the window
    dead_letter(sync_redis, emails, "e", "charge", None, now_ms)
    sync_redis.hset(q.dead_msgs, "junk", "{not json")  # no actor to count it under
    sync_redis.zadd(q.dead, {"junk": now_ms})
    target = TargetCollector("t", aredis, DramatiqCollector())

    def estimated(snap: TargetSnapshot) -> dict[tuple[int, str, str], dict[str, int]]:
        assert snap.flow is not None
        return {
            (m, s.queue, s.actor): t.outcomes
            for m, tallies in snap.flow.estimated.items()
            for s, t in tallies.items()
        }

    snap = await settle(target)
    expected = {
        (now_minute, "default", "charge"): {"failed": 3},
        (ago_minute, "default", "charge"): {"failed": 1},
        (now_minute, "default", "send"): {"failed": 1},
        (now_minute, "emails", "charge"): {"failed": 1},
    }
    assert estimated(snap) == expected
    assert snap.flow is not None and snap.flow.series == ()  # no companion: nothing else
    tally = next(iter(snap.flow.estimated[ago_minute].values()))
    assert tally.runs == 0 and sum(tally.waits) == 0, "dead letters tell no run or wait time"
    # Deleted by an operator, or taken out of the index by a wrong guess and read again: still once.
    await dramatiq_controls.apply(aredis, q, "dead", "delete", ["now0"], failures=target.dramatiq.failures)
    target.dramatiq.failures.remove("now1")
    snap = await settle(target)
    assert sum(n for o in estimated(snap).values() for n in o.values()) == 6
    # A new arrival counts in its own minute.
    dead_letter(sync_redis, q, "new", "charge", None, now_ms + 1)
    snap = await settle(target)
    assert sum(n for o in estimated(snap).values() for n in o.values()) == 7
    # The companion reports on dramatiq:default: its estimate goes, emails' stays.
    covered = Series("dramatiq", "dramatiq", "default", "charge")
    recorder = Recorder()
    recorder.record(covered, "succeeded", time.time(), 0.01)
    with sync_redis.pipeline(transaction=False) as pipe:
        stage(pipe, recorder.take(), "test", 0)
        pipe.execute()
    await target.collect()  # the flow reader meets an unknown series id: it reads the names next
    snap = await target.collect()
    assert snap.flow is not None and snap.flow.series == (covered,)
    assert {(queue, actor) for _, queue, actor in estimated(snap)} == {("emails", "charge")}


async def test_arq_failed_results_form_groups(aredis: Redis, sync_redis: redis.Redis) -> None:
    now_ms = int(time.time() * 1000)
    for i in range(3):
        error = ValueError(f"malformed row {i} in 'contacts-{i}.csv'")
        result = {
            "t": 1, "f": "import_contacts", "a": (i,), "k": {}, "et": now_ms, "s": False,
            "r": error, "st": now_ms, "ft": now_ms + i, "q": "arq:queue",
        }  # fmt: skip
        sync_redis.set(result_key(f"j{i}"), pickle.dumps(result), px=600_000)
    ok = {"t": 1, "f": "import_contacts", "a": (), "k": {}, "et": now_ms, "s": True, "r": 1}
    sync_redis.set(result_key("fine"), pickle.dumps(ok), px=600_000)
    target = TargetCollector("t", aredis, arq=ArqCollector())
    snap = await settle(target)
    (group,) = snap.failures
    assert (group.name, group.exception, group.pattern, group.count) == (
        "import_contacts", "ValueError", "malformed row <n> in <str>", 3
    )  # fmt: skip
    assert group.expiring_hour == 3 and group.next_expiry is not None
    target.arq.results.remove("j1")  # what a re-run does
    assert (await target.collect()).failures[0].count == 2


async def test_stuck_arq_claims(sync_redis: redis.Redis, aredis: Redis) -> None:
    now_ms = int(time.time() * 1000)
    job = {"t": 1, "f": "render_report", "a": (), "k": {}, "et": now_ms}
    for job_id in ("stuck", "fresh", "cron"):
        sync_redis.set(job_key(job_id), pickle.dumps(job))
        sync_redis.set(in_progress_key(job_id), b"1", px=600_000)
        sync_redis.set(f"arq:retry:{job_id}", b"1")
    sync_redis.zadd(
        "arq:queue", {"stuck": now_ms - 120_000, "fresh": now_ms}
    )  # a cron claim has no queue entry
    collector = ArqCollector(ArqConfig(job_timeout=60))
    target = TargetCollector("t", aredis, arq=collector)
    await target.collect()
    # Pretend Callboard first saw two claims 100 s ago (the clock starts at first sight).
    collector.observe([in_progress_key("stuck"), in_progress_key("cron")], now=time.time() - 100)
    collector._claims["stuck"] = (time.time() - 100, None)
    collector._claims["cron"] = (time.time() - 100, None)
    collector._stuck_checked = 0.0
    snap = await target.collect()
    assert [(j.job_id, j.name, j.queue, j.tries) for j in snap.stuck] == [
        ("stuck", "render_report", "arq:queue", 1)
    ]
    assert snap.stuck[0].running_for >= 100 and 0 < (snap.stuck[0].claim_ttl or 0) <= 600
    # Another try of the same id (the retry counter moved) is a new run: its clock restarts.
    sync_redis.set("arq:retry:stuck", b"2")
    collector._stuck_checked = 0.0
    assert (await target.collect()).stuck == ()


async def test_recover_puts_back_what_a_dead_worker_holds(sync_redis: redis.Redis, aredis: Redis) -> None:
    q = QueueKeys("dramatiq", "default")
    now_ms = int(time.time() * 1000)
    sync_redis.zadd(heartbeats_key("dramatiq"), {"dead-worker": now_ms - 120_000, "live-worker": now_ms})
    for rid in ("r1", "r2", "acked"):
        sync_redis.sadd(acks_key("dramatiq", "dead-worker", "default"), rid)
    sync_redis.sadd(acks_key("dramatiq", "dead-worker", "default.DQ"), "d1")
    sync_redis.sadd(acks_key("dramatiq", "live-worker", "default"), "l1")
    for rid in ("r1", "r2", "l1"):
        sync_redis.hset(q.msgs, rid, "{}")
    sync_redis.hset(q.delay_msgs, "d1", "{}")
    sync_redis.rpush(q.ready, "waiting")
    target = TargetCollector("t", aredis, DramatiqCollector(DramatiqConfig(heartbeat_timeout=60)))
    snap = await settle(target)
    (stats,) = [s for s in snap.queues if s.key == "dramatiq:default"]
    assert stats.orphaned == 4
    acks = target.dramatiq.ack_keys(q)
    outcomes = await dramatiq_controls.recover(aredis, q, acks, 60)
    assert sorted((o.job_id, o.outcome) for o in outcomes) == [
        ("acked", Outcome.CHANGED), ("d1", Outcome.DONE), ("r1", Outcome.DONE), ("r2", Outcome.DONE)
    ]  # fmt: skip
    assert listed(sync_redis.lrange(q.ready, 0, -1))[0] == "waiting"
    assert sorted(listed(sync_redis.lrange(q.ready, 1, -1))) == ["r1", "r2"]
    assert listed(sync_redis.lrange(q.delay, 0, -1)) == ["d1"]
    assert not sync_redis.exists(acks_key("dramatiq", "dead-worker", "default"))
    assert sync_redis.smembers(acks_key("dramatiq", "live-worker", "default")) == {b"l1"}, (
        "live workers keep theirs"
    )
    # The heartbeat entry stays: Dramatiq's maintenance removes it once no ack set is left.
    assert sync_redis.zscore(heartbeats_key("dramatiq"), "dead-worker") is not None
    # Idempotent: a second run finds nothing to put back.
    assert await dramatiq_controls.recover(aredis, q, acks, 60) == []
    assert sync_redis.llen(q.ready) == 3


async def test_recover_refuses_a_worker_that_came_back(sync_redis: redis.Redis, aredis: Redis) -> None:
    q = QueueKeys("dramatiq", "default")
    sync_redis.zadd(heartbeats_key("dramatiq"), {"w": int(time.time() * 1000)})
    sync_redis.sadd(acks_key("dramatiq", "w", "default"), "r1")
    sync_redis.hset(q.msgs, "r1", "{}")
    target = TargetCollector("t", aredis, DramatiqCollector())
    await settle(target)
    # The caller thought it was dead (a stale snapshot); the script checks the heartbeat itself.
    assert await dramatiq_controls.recover(aredis, q, target.dramatiq.ack_keys(q), 60) == []
    assert sync_redis.llen(q.ready) == 0 and sync_redis.sismember(acks_key("dramatiq", "w", "default"), "r1")
