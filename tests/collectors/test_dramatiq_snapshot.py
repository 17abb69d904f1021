"""TargetCollector.collect() on layouts written by the real Dramatiq API, on Redis and Valkey."""

from __future__ import annotations

import inspect
import json
import time
import uuid
from typing import Any, cast

import dramatiq
import pytest
import redis
from redis.asyncio import Redis

from callboard.collectors.dramatiq import snapshot as dramatiq_snapshot
from callboard.collectors.dramatiq.config import DramatiqConfig
from callboard.collectors.dramatiq.keys import QueueKeys, acks_key, heartbeats_key
from callboard.collectors.dramatiq.snapshot import HEARTBEAT_LIMIT, SNAPSHOT_LUA, DramatiqCollector
from callboard.collectors.model import CollectedPart, QueueStats, TargetSnapshot, WorkerStats
from tests.collectors.conftest import BrokerFactory, CollectorFactory, FrozenTime, make_actor

STATES = ("ready", "in_flight", "delayed", "dead")


def by_key(snapshot: TargetSnapshot) -> dict[str, QueueStats]:
    return {q.key: q for q in snapshot.queues}


def counts(snapshot: TargetSnapshot) -> dict[str, dict[str, int]]:
    return {q.key: dict(q.counts) for q in snapshot.queues}


def fetch(consumer: Any, n: int) -> list[Any]:
    """Take `n` messages like a worker's consumer does (LPOP + SADD to its ack set, up to its prefetch)."""
    taken = [next(consumer) for _ in range(n)]
    assert all(m is not None for m in taken)
    return taken


async def test_counts_per_state_are_exact(
    brokers: BrokerFactory, collectors: CollectorFactory, sync_redis: redis.Redis, clock: FrozenTime
) -> None:
    producer = brokers()
    work = make_actor(producer, "default")
    emails = make_actor(producer, "emails", name="send_email")
    for i in range(7):
        work.send(i)
    for i in range(3):
        work.send_with_options(args=(i,), delay=60_000)
    emails.send("a@example.com")
    emails.send("b@example.com")
    acme = brokers("acme-tasks")
    make_actor(acme, "reports", name="report").send(2024)

    # A worker process: fetches 3 from the queue (running + prefetched), acks one, dead-letters one.
    worker = brokers()
    consumer = worker.consume("default", prefetch=3, timeout=100)
    first, second, _third = fetch(consumer, 3)
    consumer.ack(first)
    consumer.nack(second)
    # Its delay-queue consumer holds one delayed message in memory: .DQ shrinks, .DQ.msgs does not.
    delay_consumer = worker.consume("default.DQ", prefetch=1, timeout=100)
    fetch(delay_consumer, 1)

    q = QueueKeys("dramatiq", "default")
    assert sync_redis.llen(q.delay) == 2  # the layout the collector must see through
    assert sync_redis.hlen(q.delay_msgs) == 3
    # Dead-lettered 42 s before the collector's clock (the score is the ms when it died).
    (dead_rid,) = cast(list[bytes], sync_redis.zrange(q.dead, 0, -1))
    sync_redis.zadd(q.dead, {dead_rid: (clock.now - 42) * 1000})

    snapshot = await collectors().collect()
    assert counts(snapshot) == {
        "dramatiq:default": {"ready": 4, "in_flight": 1, "delayed": 3, "dead": 1},
        "dramatiq:emails": {"ready": 2, "in_flight": 0, "delayed": 0, "dead": 0},
        "acme-tasks:reports": {"ready": 1, "in_flight": 0, "delayed": 0, "dead": 0},
    }
    default = by_key(snapshot)["dramatiq:default"]
    assert (default.namespace, default.name) == ("dramatiq", "default")
    assert default.total == 9
    assert default.orphaned == 0  # the worker is alive
    assert default.oldest_dead_age == 42.0
    assert by_key(snapshot)["dramatiq:emails"].oldest_dead_age is None
    assert snapshot.target == "test"
    assert snapshot.server is not None and snapshot.server.version.split()[0] in ("redis", "valkey")
    assert snapshot.discovery.complete


async def test_oldest_ready_age(
    brokers: BrokerFactory, collectors: CollectorFactory, clock: FrozenTime
) -> None:
    producer = brokers()
    now_ms = int(clock.now * 1000)
    old: dramatiq.Message[Any] = dramatiq.Message(
        queue_name="slow",
        actor_name="work",
        args=(),
        kwargs={},
        options={},
        message_timestamp=now_ms - 30_000,
    )
    producer.enqueue(old)  # at the head: it has waited 30 s
    make_actor(producer, "slow").send()
    # Sent 100 s ago and retried 10 s ago: runnable for 10 s (the retry's backoff included).
    retried: dramatiq.Message[Any] = dramatiq.Message(
        queue_name="retried",
        actor_name="work",
        args=(),
        kwargs={},
        options={"retries": 1, "requeue_timestamp": now_ms - 10_000},
        message_timestamp=now_ms - 100_000,
    )
    producer.enqueue(retried)
    make_actor(producer, "idle").send_with_options(delay=60_000)  # nothing ready: 0

    queues = by_key(await collectors().collect())
    assert queues["dramatiq:slow"].oldest_ready_age == 30.0
    assert queues["dramatiq:retried"].oldest_ready_age == 10.0
    assert queues["dramatiq:idle"].oldest_ready_age == 0.0


async def test_discovery_finds_custom_namespaces_and_queues_without_config(
    brokers: BrokerFactory, collectors: CollectorFactory, sync_redis: redis.Redis
) -> None:
    acme = brokers("acme-tasks")
    make_actor(acme, "alpha").send(1)  # ready only
    make_actor(acme, "beta").send_with_options(delay=600_000)  # delayed only
    make_actor(acme, "gamma.v2").send()
    worker = brokers("acme-tasks")
    consumer = worker.consume("gamma.v2", prefetch=1, timeout=100)
    consumer.nack(fetch(consumer, 1)[0])  # dead only
    make_actor(brokers(), "default").send()
    # Keys that are not Dramatiq's, or not in a namespace that has Dramatiq heartbeats.
    sync_redis.set("session:abc", "x")
    sync_redis.hset("cache:thing.msgs", "f", "v")
    sync_redis.zadd("other:jobs.XQ", {"m": 1})
    sync_redis.rpush("0cc175b9c0f1b6a831c399e269772661", '{"result": 1}')

    snapshot = await collectors().collect()
    assert counts(snapshot) == {
        "acme-tasks:alpha": {"ready": 1, "in_flight": 0, "delayed": 0, "dead": 0},
        "acme-tasks:beta": {"ready": 0, "in_flight": 0, "delayed": 1, "dead": 0},
        "acme-tasks:gamma.v2": {"ready": 0, "in_flight": 0, "delayed": 0, "dead": 1},
        "dramatiq:default": {"ready": 1, "in_flight": 0, "delayed": 0, "dead": 0},
    }
    assert {(q.namespace, q.name) for q in snapshot.queues} == {
        ("acme-tasks", "alpha"),
        ("acme-tasks", "beta"),
        ("acme-tasks", "gamma.v2"),
        ("dramatiq", "default"),
    }
    assert {w.namespace for w in snapshot.workers} == {"acme-tasks", "dramatiq"}


async def test_configured_queues_show_before_they_exist(collectors: CollectorFactory) -> None:
    snapshot = await collectors(namespaces=("dramatiq",), queues=("dramatiq:later",)).collect()
    assert counts(snapshot) == {"dramatiq:later": {"ready": 0, "in_flight": 0, "delayed": 0, "dead": 0}}


async def test_discovery_is_budgeted_and_resumes(
    brokers: BrokerFactory, collectors: CollectorFactory, sync_redis: redis.Redis, aredis: Redis
) -> None:
    with sync_redis.pipeline(transaction=False) as pipe:
        for chunk in range(10):
            pipe.mset({f"noise:{chunk}:{i}": "x" for i in range(500)})
        pipe.execute()
    make_actor(brokers(), "needle").send()
    collector = collectors(scan_budget=1)

    async def scan_calls() -> int:
        stats = await aredis.info("commandstats")
        return int(stats.get("cmdstat_scan", {}).get("calls", 0))

    before = await scan_calls()
    first = await collector.collect()
    assert await scan_calls() - before == 1  # the budget: one SCAN call per cycle
    assert not first.discovery.complete
    assert first.discovery.scanned_in_pass > 0
    assert first.discovery.db_size is not None and first.discovery.db_size >= 5000
    cycles = 1
    snapshot = first
    while not snapshot.discovery.complete:
        before = await scan_calls()
        snapshot = await collector.collect()
        assert await scan_calls() - before <= 1
        cycles += 1
        assert cycles < 50
    assert cycles >= 2
    assert "dramatiq:needle" in by_key(snapshot)
    assert snapshot.discovery.passes == 1


async def test_stale_worker_ack_sets_count_as_orphaned(
    brokers: BrokerFactory, collectors: CollectorFactory, sync_redis: redis.Redis
) -> None:
    producer = brokers()
    work = make_actor(producer, "default")
    for i in range(8):
        work.send(i)
    dead_worker, live_worker = brokers(), brokers()
    fetch(dead_worker.consume("default", prefetch=3, timeout=100), 3)
    fetch(live_worker.consume("default", prefetch=2, timeout=100), 2)
    # The dead worker's last heartbeat was two minutes ago (Dramatiq writes ms).
    sync_redis.zadd(heartbeats_key("dramatiq"), {dead_worker.broker_id: int(time.time() * 1000) - 120_000})
    assert sync_redis.scard(acks_key("dramatiq", dead_worker.broker_id, "default")) == 3

    snapshot = await collectors(heartbeat_timeout=60).collect()
    default = by_key(snapshot)["dramatiq:default"]
    assert default.counts == {"ready": 3, "in_flight": 5, "delayed": 0, "dead": 0}
    assert default.orphaned == 3
    workers = {w.worker_id: w for w in snapshot.workers}
    dead, live = workers[dead_worker.broker_id], workers[live_worker.broker_id]
    assert (dead.alive, dead.role, dead.in_flight, dead.queues) == (False, "consumer", 3, ("default",))
    assert (live.alive, live.role, live.in_flight, live.queues) == (True, "consumer", 2, ("default",))
    assert workers[producer.broker_id].role == "producer or idle"

    # With a longer timeout nobody is stale, so nothing is orphaned.
    relaxed = await collectors(heartbeat_timeout=600).collect()
    assert by_key(relaxed)["dramatiq:default"].orphaned == 0


async def test_ack_sets_of_a_worker_without_a_heartbeat_read_count_as_orphaned(
    brokers: BrokerFactory, collectors: CollectorFactory, sync_redis: redis.Redis
) -> None:
    """A worker whose heartbeat the collector does not read (gone from __heartbeats__, or older than
    the HEARTBEAT_LIMIT newest) is not known to be alive: what its ack sets hold is orphaned."""
    producer = brokers()
    for queue in ("default", "beyond"):
        work = make_actor(producer, queue)
        for i in range(6):
            work.send(i)
    gone, hidden, live = brokers(), brokers(), brokers()
    fetch(gone.consume("default", prefetch=3, timeout=100), 3)
    fetch(hidden.consume("beyond", prefetch=2, timeout=100), 2)
    fetch(live.consume("default", prefetch=1, timeout=100), 1)
    beats = heartbeats_key("dramatiq")
    sync_redis.zrem(beats, gone.broker_id)  # as after a crash and the broker's maintenance
    # HEARTBEAT_LIMIT other processes beat (a minute ago) after `hidden` did (two minutes ago), and
    # before `live`: the HEARTBEAT_LIMIT newest read hold `live` but not `hidden`.
    now_ms = int(time.time() * 1000)
    sync_redis.zadd(beats, {hidden.broker_id: now_ms - 120_000})
    sync_redis.zadd(beats, {f"other-{i}": now_ms - 60_000 for i in range(HEARTBEAT_LIMIT)})
    assert sync_redis.zscore(beats, gone.broker_id) is None

    snapshot = await collectors(heartbeat_timeout=600).collect()
    queues = by_key(snapshot)
    assert (queues["dramatiq:default"].counts["in_flight"], queues["dramatiq:default"].orphaned) == (4, 3)
    assert (queues["dramatiq:beyond"].counts["in_flight"], queues["dramatiq:beyond"].orphaned) == (2, 2)


async def test_workers_alive_or_stale_by_heartbeat_timeout(
    brokers: BrokerFactory, collectors: CollectorFactory, sync_redis: redis.Redis
) -> None:
    recent, older = brokers(), brokers()
    make_actor(recent, "default").send()
    make_actor(older, "default").send()
    now_ms = int(time.time() * 1000)
    sync_redis.zadd(
        heartbeats_key("dramatiq"), {recent.broker_id: now_ms - 5_000, older.broker_id: now_ms - 30_000}
    )

    def states(workers: tuple[WorkerStats, ...]) -> dict[str, bool]:
        return {w.worker_id: w.alive for w in workers}

    strict = await collectors(heartbeat_timeout=10).collect()
    assert states(strict.workers) == {recent.broker_id: True, older.broker_id: False}
    seen = {w.worker_id: w.last_seen for w in strict.workers}
    assert abs(seen[recent.broker_id] - (now_ms - 5_000) / 1000) < 0.01
    relaxed = await collectors(heartbeat_timeout=60).collect()
    assert states(relaxed.workers) == {recent.broker_id: True, older.broker_id: True}


async def test_queue_stays_listed_for_idle_ttl_after_it_empties(
    brokers: BrokerFactory, collectors: CollectorFactory, sync_redis: redis.Redis, clock: FrozenTime
) -> None:
    producer = brokers()
    brief = make_actor(producer, "brief")
    brief.send()
    brief.send()
    collector = collectors(idle_ttl=1.0, queues=("dramatiq:pinned",))
    assert "dramatiq:brief" in by_key(await collector.collect())

    worker = brokers()
    consumer = worker.consume("brief", prefetch=2, timeout=100)
    for message in fetch(consumer, 2):
        consumer.ack(message)
    assert not sync_redis.exists(*[getattr(QueueKeys("dramatiq", "brief"), k) for k in ("ready", "msgs")])

    emptied = await collector.collect()  # last seen with messages at the previous cycle: clock.now
    assert by_key(emptied)["dramatiq:brief"].counts == {s: 0 for s in STATES}
    emptied_at = clock.now

    async def listed() -> bool:
        return "dramatiq:brief" in by_key(await collector.collect())

    clock.now = emptied_at + 1.0  # exactly its idle_ttl: kept
    assert [await listed(), await listed()] == [True, True]
    clock.now = emptied_at + 1.001  # past it: this cycle still shows it, then it is forgotten
    assert [await listed(), await listed()] == [True, False]
    # A configured queue is never forgotten.
    clock.now = emptied_at + 3600
    assert "dramatiq:pinned" in by_key(await collector.collect())


async def test_default_idle_ttl_keeps_an_emptied_queue(
    brokers: BrokerFactory, collectors: CollectorFactory
) -> None:
    producer = brokers()
    make_actor(producer, "once").send()
    collector = collectors()
    assert by_key(await collector.collect())["dramatiq:once"].counts["ready"] == 1
    consumer = brokers().consume("once", prefetch=1, timeout=100)
    consumer.ack(fetch(consumer, 1)[0])
    assert by_key(await collector.collect())["dramatiq:once"].counts == {s: 0 for s in STATES}


async def test_round_trips_do_not_grow_with_messages(
    brokers: BrokerFactory, collectors: CollectorFactory
) -> None:
    producer = brokers()
    work = make_actor(producer, "bulk")
    for i in range(10):
        work.send(i)
    await collectors().collect()  # loads the scripts, so no collection below pays for NOSCRIPT

    async def measure() -> tuple[int, int, int]:
        """(ready count, round trips of a first cycle with its discovery pass, of the cycle right after)."""
        collector = collectors()
        first = await collector.collect()
        second = await collector.collect()  # within the rescan pause: counters only
        return by_key(second)["dramatiq:bulk"].counts["ready"], first.round_trips, second.round_trips

    ready_small, first_small, second_small = await measure()
    for i in range(10, 5_000):
        work.send(i)
    ready_big, first_big, second_big = await measure()

    assert (ready_small, ready_big) == (10, 5_000)
    assert first_small == first_big
    assert second_small == second_big == 1


async def test_collect_after_script_flush_reloads_the_script(
    brokers: BrokerFactory, collectors: CollectorFactory, aredis: Redis
) -> None:
    make_actor(brokers(), "default").send()
    collector = collectors()
    await collector.collect()
    await aredis.script_flush()
    again = await collector.collect()
    assert by_key(again)["dramatiq:default"].counts["ready"] == 1


async def test_the_collector_is_not_a_dramatiq_worker(
    brokers: BrokerFactory, collectors: CollectorFactory, sync_redis: redis.Redis
) -> None:
    """Collecting never writes: no heartbeat of its own, no ack sets, no changed key."""
    producer = brokers()
    make_actor(producer, "default").send()
    before = {k: sync_redis.dump(k) for k in cast(list[bytes], list(sync_redis.scan_iter(count=1000)))}
    beats_before = sync_redis.zrange(heartbeats_key("dramatiq"), 0, -1, withscores=True)
    await collectors().collect()
    assert {
        k: sync_redis.dump(k) for k in cast(list[bytes], list(sync_redis.scan_iter(count=1000)))
    } == before
    assert sync_redis.zrange(heartbeats_key("dramatiq"), 0, -1, withscores=True) == beats_before


async def test_hostile_head_payload_does_not_break_the_snapshot(
    brokers: BrokerFactory, collectors: CollectorFactory, sync_redis: redis.Redis
) -> None:
    """The head payload of a ready list is read for the oldest age; whatever it holds, collect() works."""
    make_actor(brokers(), "other").send()  # the namespace has heartbeats, as with any real producer
    hostile = {
        "inf": b'{"message_timestamp": 1e999, "options": {"requeue_timestamp": 1e999}}',
        "huge": b'{"message_timestamp": 1' + b"0" * 400 + b"}",
        "nan": b'{"message_timestamp": NaN}',
        "garbage": b"\x80\x04not a pickle",
        "list": b"[1, 2]",
        "big": b'{"a": "' + b"x" * 100_000 + b'"}',
    }
    for name, raw in hostile.items():
        q = QueueKeys("dramatiq", f"hostile_{name}")
        rid = str(uuid.uuid4())
        sync_redis.hset(q.msgs, mapping={rid: raw})
        sync_redis.rpush(q.ready, rid)

    snapshot = await collectors().collect()
    queues = by_key(snapshot)
    for name in hostile:
        stats = queues[f"dramatiq:hostile_{name}"]
        assert stats.counts["ready"] == 1
        # Unknown rather than wrong: no time can be read from any of them.
        assert (name, stats.oldest_ready_age) == (name, None)


# -- the parser on exact layouts, without discovery (what mutation testing found unchecked) --------------


async def snapshot_of(collector: DramatiqCollector, aredis: Redis) -> CollectedPart:
    """One cycle's snapshot script and parser, as TargetCollector runs them, without its discovery: the
    keys the collector knows are those the test showed it with `observe`."""
    sha = await aredis.script_load(SNAPSHOT_LUA)
    async with aredis.pipeline(transaction=False) as pipe:
        parse, calls = collector.stage(pipe, {SNAPSHOT_LUA: sha})
        replies = await pipe.execute()
    assert len(replies) == calls
    part = parse(replies)
    assert inspect.isawaitable(part)
    return await part


def observe_all(collector: DramatiqCollector, client: redis.Redis) -> None:
    """What a discovery pass shows the collector: every key of the server."""
    collector.observe(k.decode() for k in cast(list[bytes], list(client.scan_iter(count=1000))))


def stats_of(part: CollectedPart) -> dict[str, QueueStats]:
    return {q.key: q for q in part.queues}


async def test_a_queue_holding_messages_in_any_one_state_stays_listed_past_idle_ttl(
    brokers: BrokerFactory, aredis: Redis, sync_redis: redis.Redis, clock: FrozenTime
) -> None:
    """Each cycle that counts a message refreshes its queue, whatever the state: fetched and not acked,
    delayed and held by a worker, or dead. Only a queue that counts nothing is forgotten."""
    producer, worker = brokers(), brokers()
    make_actor(producer, "running").send()
    fetch(worker.consume("running", prefetch=1, timeout=100), 1)
    make_actor(producer, "later").send_with_options(delay=60_000)
    fetch(worker.consume("later.DQ", prefetch=1, timeout=100), 1)  # .DQ empty, .DQ.msgs holds it
    make_actor(producer, "failed").send()
    consumer = worker.consume("failed", prefetch=1, timeout=100)
    consumer.nack(fetch(consumer, 1)[0])
    make_actor(producer, "emptied").send()
    expected = {
        "dramatiq:running": {"ready": 0, "in_flight": 1, "delayed": 0, "dead": 0},
        "dramatiq:later": {"ready": 0, "in_flight": 0, "delayed": 1, "dead": 0},
        "dramatiq:failed": {"ready": 0, "in_flight": 0, "delayed": 0, "dead": 1},
    }
    collector = DramatiqCollector(DramatiqConfig(idle_ttl=60.0))
    observe_all(collector, sync_redis)
    consumer = worker.consume("emptied", prefetch=1, timeout=100)
    consumer.ack(fetch(consumer, 1)[0])  # after discovery saw it: Redis now holds no key of it
    first = stats_of(await snapshot_of(collector, aredis))
    assert {k: dict(first[k].counts) for k in expected} == expected
    assert first["dramatiq:emptied"].total == 0
    clock.now += 3600  # no discovery pass meanwhile: only the snapshot says what still holds messages
    await snapshot_of(collector, aredis)
    later = stats_of(await snapshot_of(collector, aredis))
    assert {k: dict(q.counts) for k, q in later.items()} == expected


async def test_ack_sets_one_message_ones_emptied_and_the_timeout_boundary(
    brokers: BrokerFactory, aredis: Redis, sync_redis: redis.Redis, clock: FrozenTime
) -> None:
    """A worker whose heartbeat is exactly `heartbeat_timeout` old is dead, and what it holds is
    orphaned, down to a single message. An ack set Redis removed (the worker acked everything) is
    no longer read, and holds nothing; the worker stays a consumer."""
    producer, worker = brokers(), brokers()
    for queue in ("a_done", "b_held"):
        make_actor(producer, queue).send()
    done = worker.consume("a_done", prefetch=1, timeout=100)
    taken = fetch(done, 1)
    holding = worker.consume("b_held", prefetch=1, timeout=100)
    held_message = fetch(holding, 1)[0]
    collector = DramatiqCollector(DramatiqConfig(heartbeat_timeout=30.0))
    observe_all(collector, sync_redis)
    done.ack(taken[0])  # its ack set is now empty, so Redis deleted it
    beats = heartbeats_key("dramatiq")
    sync_redis.zadd(beats, {worker.broker_id: int((clock.now - 30) * 1000)})
    sync_redis.zadd(beats, {producer.broker_id: int((clock.now - 29.999) * 1000)})
    assert len(collector.ack_keys()) == 2

    part = await snapshot_of(collector, aredis)
    queues = stats_of(part)
    assert (queues["dramatiq:b_held"].orphaned, queues["dramatiq:b_held"].counts["in_flight"]) == (1, 1)
    assert queues["dramatiq:a_done"].orphaned == 0
    workers = {w.worker_id: w for w in part.workers}
    held = workers[worker.broker_id]
    assert (held.alive, held.role, held.in_flight, held.queues) == (False, "consumer", 1, ("b_held",))
    assert workers[producer.broker_id].alive
    assert [a.queue for a in collector.ack_keys()] == ["b_held"]

    holding.ack(held_message)  # its last ack set is gone too
    assert not sync_redis.exists(acks_key("dramatiq", worker.broker_id, "b_held"))
    (held,) = [w for w in (await snapshot_of(collector, aredis)).workers if w.worker_id == worker.broker_id]
    assert (held.role, held.in_flight, held.queues) == ("consumer", 0, ())


async def test_ages_are_never_negative_and_keep_their_milliseconds(
    aredis: Redis, sync_redis: redis.Redis, clock: FrozenTime
) -> None:
    """A producer or a broker whose clock runs ahead stamps messages in the future: they are 0 s old.
    A ready id whose payload is missing has no age and is not a negative in-flight count."""
    now_ms = int(clock.now * 1000)
    ahead = QueueKeys("dramatiq", "ahead")
    future = json.dumps({"message_timestamp": now_ms + 10_000, "options": {}})
    sync_redis.hset(ahead.msgs, "r1", future)
    sync_redis.rpush(ahead.ready, "r1")
    sync_redis.zadd(ahead.dead, {"d1": now_ms + 5_000})
    precise = QueueKeys("dramatiq", "precise")
    sync_redis.zadd(precise.dead, {"d2": now_ms - 42_500})
    orphan = QueueKeys("dramatiq", "orphan")
    sync_redis.rpush(orphan.ready, "no-payload")
    # A bare list is no sign of a queue to discovery (any list could be), so this one is configured.
    collector = DramatiqCollector(DramatiqConfig(namespaces=("dramatiq",), queues=("dramatiq:orphan",)))
    observe_all(collector, sync_redis)

    queues = stats_of(await snapshot_of(collector, aredis))
    assert (queues["dramatiq:ahead"].oldest_ready_age, queues["dramatiq:ahead"].oldest_dead_age) == (0.0, 0.0)
    assert queues["dramatiq:precise"].oldest_dead_age == 42.5
    assert queues["dramatiq:orphan"].counts == {"ready": 1, "in_flight": 0, "delayed": 0, "dead": 0}
    assert queues["dramatiq:orphan"].oldest_ready_age is None


async def test_failures_missing_counts_dead_letters_not_yet_indexed_and_never_goes_negative(
    brokers: BrokerFactory, collectors: CollectorFactory, sync_redis: redis.Redis
) -> None:
    producer, worker = brokers(), brokers()
    failing = make_actor(producer, "failing")
    for i in range(4):
        failing.send(i)
    consumer = worker.consume("failing", prefetch=4, timeout=100)
    for message in fetch(consumer, 4):
        consumer.nack(message)
    collector = collectors()
    first = await collector.collect()  # the dead letters are read after this cycle counted them
    second = await collector.collect()
    assert (first.failures_missing, second.failures_missing) == (4, 0)
    assert sum(g.count for g in second.failures) == 4
    # Two expire (as Dramatiq's maintenance deletes them): the index holds more until it checks.
    q = QueueKeys("dramatiq", "failing")
    gone = [m.decode() for m in cast(list[bytes], sync_redis.zrange(q.dead, 0, 1))]
    sync_redis.zrem(q.dead, *gone)
    sync_redis.hdel(q.dead_msgs, *gone)
    third = await collector.collect()
    assert (by_key(third)["dramatiq:failing"].counts["dead"], third.failures_missing) == (2, 0)


async def test_consumers_per_queue_are_remembered_and_producers_never_count(
    brokers: BrokerFactory, aredis: Redis, sync_redis: redis.Redis, clock: FrozenTime
) -> None:
    """A broker id seen holding an ack set of a queue consumes it for as long as its heartbeat stays in
    the registry, even once its ack set is gone (an idle consumer holds none); alive or stale by its
    heartbeat. A producer, though its heartbeat is fresh, consumes nothing."""
    producer, busy, idle = brokers(), brokers(), brokers()
    work = make_actor(producer, "a")
    for i in range(3):
        work.send(i)
    make_actor(producer, "b").send()
    fetch(busy.consume("a", prefetch=1, timeout=100), 1)
    idle_consumer = idle.consume("a", prefetch=1, timeout=100)
    taken = fetch(idle_consumer, 1)[0]
    collector = DramatiqCollector(DramatiqConfig(heartbeat_timeout=30.0))
    observe_all(collector, sync_redis)  # discovery saw both ack sets
    idle_consumer.ack(taken)  # then `idle` finished its message: Redis removed its ack set
    beats = heartbeats_key("dramatiq")
    fresh = int(clock.now * 1000)
    sync_redis.zadd(beats, {producer.broker_id: fresh, busy.broker_id: fresh, idle.broker_id: fresh})

    def workers_of(part: CollectedPart) -> dict[str, dict[str, int] | None]:
        return {q.name: dict(q.workers) if q.workers is not None else None for q in part.queues}

    part = await snapshot_of(collector, aredis)
    assert workers_of(part) == {"a": {"alive": 2, "stale": 0}, "b": {"alive": 0, "stale": 0}}
    roles = {w.worker_id: (w.role, w.consumes, w.queues) for w in part.workers}
    assert roles == {
        producer.broker_id: ("producer or idle", (), ()),
        busy.broker_id: ("consumer", ("a",), ("a",)),
        idle.broker_id: ("consumer", ("a",), ()),
    }

    # `busy` dies: its heartbeat ages past the timeout, its ack set stays (awaiting recovery).
    sync_redis.zadd(beats, {busy.broker_id: fresh - 30_000})
    assert workers_of(await snapshot_of(collector, aredis))["a"] == {"alive": 1, "stale": 1}

    # Dramatiq's maintenance removes `idle` from the registry: it is gone for good.
    sync_redis.zrem(beats, idle.broker_id)
    assert workers_of(await snapshot_of(collector, aredis))["a"] == {"alive": 0, "stale": 1}
    sync_redis.zadd(beats, {idle.broker_id: fresh})
    part = await snapshot_of(collector, aredis)
    assert workers_of(part)["a"] == {"alive": 0, "stale": 1}
    assert {w.worker_id: w.role for w in part.workers}[idle.broker_id] == "producer or idle"


async def test_many_queues_and_ack_sets_are_read_in_short_script_calls_with_the_same_result(
    brokers: BrokerFactory, collectors: CollectorFactory, clock: FrozenTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Split over several calls of the script in one pipeline (no call holds Redis long), the snapshot
    is the one a single call gives: every queue, heartbeat and ack set in its place."""
    producer = brokers()
    for name in ("a", "b", "c", "d", "e"):
        actor = make_actor(producer, name, name=f"work_{name}")
        for i in range(3):
            actor.send(i)
    workers = [brokers(), brokers()]
    for worker, queue in zip(workers, ("a", "c"), strict=True):
        fetch(worker.consume(queue, prefetch=2, timeout=100), 2)
    collector = collectors()

    def seen(part: Any) -> tuple[Any, ...]:
        queues = sorted((q.key, tuple(sorted(q.counts.items())), q.oldest_ready_age) for q in part.queues)
        workers = sorted((w.worker_id, w.alive, w.role, w.in_flight) for w in part.workers)
        return tuple(queues), tuple(workers)

    await collector.collect()  # discovery: every queue and ack set known
    whole = seen(await collector.collect())
    monkeypatch.setattr(dramatiq_snapshot, "QUEUE_CHUNK", 2)
    monkeypatch.setattr(dramatiq_snapshot, "ACK_CHUNK", 1)
    async with collector.redis.pipeline(transaction=False) as pipe:
        _, calls = collector.dramatiq.stage(pipe, {SNAPSHOT_LUA: "0" * 40})  # counted, never sent
    assert calls == 3 + 1  # 5 queues by 2 (the first with the heartbeats and one ack set), one more ack set
    split = seen(await collector.collect())
    assert split == whole
    assert dict(whole[0][0][1])["in_flight"] == 2 and len(whole[1]) >= 3  # a, held; producer and workers
