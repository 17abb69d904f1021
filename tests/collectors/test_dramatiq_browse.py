"""list_jobs / get_job on layouts written by the real Dramatiq API and RedisBackend, Redis and Valkey."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, cast

import dramatiq
import pytest
import redis
from dramatiq.results.backends.redis import RedisBackend
from redis.asyncio import Redis

from callboard.collectors.dramatiq.browse import get_job, list_jobs
from callboard.collectors.dramatiq.config import ResultsConfig
from callboard.collectors.dramatiq.keys import QueueKeys
from callboard.collectors.model import JobDetail, JobPage
from tests.collectors.conftest import BrokerFactory, CollectorFactory, make_actor

DEFAULT = QueueKeys("dramatiq", "default")


def now_ms() -> int:
    return int(time.time() * 1000)


def fetch(consumer: Any, n: int) -> list[Any]:
    taken = [next(consumer) for _ in range(n)]
    assert all(m is not None for m in taken)
    return taken


def ids(page: JobPage) -> list[str]:
    return [item.job_id for item in page.items]


def dead_letter(sync_redis: redis.Redis, q: QueueKeys, message: Any, at_ms: int) -> str:
    """Write a dead letter exactly as Dramatiq's nack leaves it: the payload as stored, scored by time."""
    rid = str(uuid.uuid4())
    stored = message.copy(options={"redis_message_id": rid})
    sync_redis.zadd(q.dead, {rid: at_ms})
    sync_redis.hset(q.dead_msgs, mapping={rid: stored.encode()})
    return rid


# -- pages -----------------------------------------------------------------------------------------


async def test_ready_pages_are_fifo(brokers: BrokerFactory, aredis: Redis) -> None:
    work = make_actor(brokers(), "default")
    sent = [work.send(i, tag=f"t{i}") for i in range(7)]
    rids = [m.options["redis_message_id"] for m in sent]

    first = await list_jobs(aredis, DEFAULT, "ready", 0, 3, [])
    assert ids(first) == rids[:3]
    assert (first.total, first.next_cursor, first.prev_cursor) == (7, "3", None)
    assert first.order.startswith("FIFO")
    row = first.items[0]
    assert (row.state, row.name, row.call_preview) == ("ready", "work_default", "work_default(0, tag='t0')")
    assert row.enqueued_at == sent[0].message_timestamp / 1000
    assert row.undecodable is None

    middle = await list_jobs(aredis, DEFAULT, "ready", 3, 3, [])
    assert ids(middle) == rids[3:6]
    assert (middle.next_cursor, middle.prev_cursor) == ("6", "0")
    last = await list_jobs(aredis, DEFAULT, "ready", 6, 3, [])
    assert ids(last) == rids[6:]
    assert (last.next_cursor, last.prev_cursor) == (None, "3")
    beyond = await list_jobs(aredis, DEFAULT, "ready", 50, 3, [])
    assert (beyond.items, beyond.total) == ((), 7)


async def test_dead_pages_are_newest_first(
    brokers: BrokerFactory, aredis: Redis, sync_redis: redis.Redis
) -> None:
    producer = brokers()
    work = make_actor(producer, "default")
    # One dead letter made by Dramatiq itself (fetch + nack), to check the hand-written ones match it.
    real = work.send("real")
    consumer = brokers().consume("default", prefetch=1, timeout=100)
    consumer.nack(fetch(consumer, 1)[0])
    real_rid = real.options["redis_message_id"]
    real_score = cast(float | None, sync_redis.zscore(DEFAULT.dead, real_rid))
    assert real_score is not None
    stored = cast(bytes, sync_redis.hget(DEFAULT.dead_msgs, real_rid))
    assert json.loads(stored) == json.loads(real.encode())

    base = int(real_score) - 100_000
    written = []
    for i in range(5):
        message = work.message_with_options(
            args=(i,), retries=3, traceback=f"Traceback (most recent call last):\nValueError: attempt {i}\n"
        )
        written.append(dead_letter(sync_redis, DEFAULT, message, base + i * 1000))
    newest_first = [real_rid, *reversed(written)]

    page = await list_jobs(aredis, DEFAULT, "dead", 0, 4, [])
    assert ids(page) == newest_first[:4]
    assert (page.total, page.next_cursor) == (6, "4")
    assert page.items[0].failed_at == real_score / 1000
    second = page.items[1]
    assert (second.state, second.retries, second.error) == ("dead", 3, "ValueError: attempt 4")
    assert second.failed_at == (base + 4000) / 1000
    rest = await list_jobs(aredis, DEFAULT, "dead", 4, 4, [])
    assert ids(rest) == newest_first[4:]
    assert rest.next_cursor is None


async def test_delayed_pages_are_sorted_by_eta(brokers: BrokerFactory, aredis: Redis) -> None:
    work = make_actor(brokers(), "default")
    sent = {
        delay: work.send_with_options(args=(delay,), delay=delay)
        for delay in (50_000, 10_000, 30_000, 20_000)
    }
    page = await list_jobs(aredis, DEFAULT, "delayed", 0, 3, [])
    order = [sent[d].options["redis_message_id"] for d in (10_000, 20_000, 30_000, 50_000)]
    assert ids(page) == order[:3]
    assert [item.eta for item in page.items] == [
        sent[d].options["eta"] / 1000 for d in (10_000, 20_000, 30_000)
    ]
    assert page.total == 4
    assert page.next_cursor == "3"
    assert ids(await list_jobs(aredis, DEFAULT, "delayed", 3, 3, [])) == order[3:]


async def test_in_flight_page_lists_what_workers_hold(
    brokers: BrokerFactory, aredis: Redis, collectors: CollectorFactory
) -> None:
    work = make_actor(brokers(), "default")
    sent = [work.send(i) for i in range(5)]
    worker = brokers()
    consumer = worker.consume("default", prefetch=3, timeout=100)
    held = {m.options["redis_message_id"] for m in fetch(consumer, 3)}
    collector = collectors()
    await collector.collect()  # discovery finds the worker's ack set
    page = await list_jobs(aredis, DEFAULT, "in_flight", 0, 10, collector.dramatiq.ack_keys(DEFAULT))
    assert set(ids(page)) == held
    assert page.total == 3
    assert {item.state for item in page.items} == {"in_flight"}
    ready = await list_jobs(aredis, DEFAULT, "ready", 0, 10, [])
    assert ids(ready) == [m.options["redis_message_id"] for m in sent[3:]]


async def test_unknown_state_is_refused(aredis: Redis) -> None:
    with pytest.raises(ValueError, match="unknown state"):
        await list_jobs(aredis, DEFAULT, "running", 0, 10, [])


# -- details ---------------------------------------------------------------------------------------


async def test_dead_job_detail_has_every_field(
    brokers: BrokerFactory, aredis: Redis, sync_redis: redis.Redis, redis_url: str
) -> None:
    producer = brokers()
    charge = make_actor(producer, "default", name="charge_card", max_retries=2)
    first_sent = now_ms() - 60_000
    failed_at = now_ms() - 5_000
    traceback = 'Traceback (most recent call last):\n  File "app.py", line 3\nValueError: card declined\n'
    # What Dramatiq's Retries middleware enqueues after the second failure, then the final nack.
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name="default",
        actor_name="charge_card",
        args=(42, "eur"),
        kwargs={"customer": {"id": 7, "tags": ["vip"]}},
        options={"max_retries": 2, "retries": 2, "traceback": traceback, "requeue_timestamp": failed_at},
        message_timestamp=first_sent,
    )
    stored = producer.enqueue(message)
    rid = stored.options["redis_message_id"]
    consumer = brokers().consume("default", prefetch=1, timeout=100)
    consumer.nack(fetch(consumer, 1)[0])
    backend = RedisBackend(url=redis_url)  # type: ignore[no-untyped-call]
    backend.store_exception(stored, ValueError("card declined"), 60_000)
    assert charge.actor_name == "charge_card"

    detail = await get_job(aredis, DEFAULT, rid, [], ResultsConfig())
    assert isinstance(detail, JobDetail)
    assert (detail.state, detail.name, detail.job_id, detail.queue_key) == (
        "dead",
        "charge_card",
        rid,
        "dramatiq:default",
    )
    assert ("message id", stored.message_id) in detail.ids
    assert ("redis message id", rid) in detail.ids
    assert detail.args == [42, "eur"]
    assert detail.kwargs == {"customer": {"id": 7, "tags": ["vip"]}}
    assert detail.options["max_retries"] == 2
    assert detail.options["redis_message_id"] == rid
    assert "traceback" not in detail.options  # shown on its own
    assert detail.retries == 2
    assert detail.traceback == traceback
    stamps = dict(detail.timestamps)
    assert stamps["enqueued"] == first_sent / 1000
    assert stamps["last failure"] == failed_at / 1000
    assert abs(stamps["dead-lettered"] - time.time()) < 30
    assert [label for label, _ in detail.timestamps].index("enqueued") == 0
    assert any("attempt before the last" in note for note in detail.notes)
    assert detail.raw is not None and detail.raw["message_id"] == stored.message_id
    assert detail.size == len(stored.encode())
    assert detail.undecodable is None

    result = detail.result
    assert result is not None
    assert result.key == backend.build_message_key(stored)
    assert (result.ok, result.exception_type, result.exception_message) == (
        False,
        "ValueError",
        "card declined",
    )
    assert result.ttl_seconds is not None and 0 < result.ttl_seconds <= 60


async def test_dead_job_without_traceback_says_why(brokers: BrokerFactory, aredis: Redis) -> None:
    sent = make_actor(brokers(), "default", max_retries=0).send()
    consumer = brokers().consume("default", prefetch=1, timeout=100)
    consumer.nack(fetch(consumer, 1)[0])
    detail = await get_job(aredis, DEFAULT, sent.options["redis_message_id"], [])
    assert detail is not None
    assert (detail.state, detail.traceback, detail.retries) == ("dead", None, None)
    assert any("No traceback stored" in note for note in detail.notes)


async def test_ready_in_flight_and_delayed_details(
    brokers: BrokerFactory, aredis: Redis, collectors: CollectorFactory
) -> None:
    work = make_actor(brokers(), "default")
    running = work.send("running")
    waiting = work.send("waiting")
    later = work.send_with_options(args=("later",), delay=60_000)
    worker = brokers()
    consumer = worker.consume("default", prefetch=1, timeout=100)
    fetch(consumer, 1)
    collector = collectors()
    await collector.collect()
    acks = collector.dramatiq.ack_keys(DEFAULT)

    held = await get_job(aredis, DEFAULT, running.options["redis_message_id"], acks)
    assert held is not None
    assert held.state == "in_flight"
    assert ("held by worker", worker.broker_id) in held.ids

    ready = await get_job(aredis, DEFAULT, waiting.options["redis_message_id"], acks)
    assert ready is not None
    assert (ready.state, ready.args) == ("ready", ["waiting"])
    assert all(label != "held by worker" for label, _ in ready.ids)

    delayed = await get_job(aredis, DEFAULT, later.options["redis_message_id"], acks)
    assert delayed is not None
    assert delayed.state == "delayed"
    assert dict(delayed.timestamps)["eta"] == later.options["eta"] / 1000

    assert await get_job(aredis, DEFAULT, str(uuid.uuid4()), acks) is None


async def test_results_with_default_md5_keys(brokers: BrokerFactory, aredis: Redis, redis_url: str) -> None:
    work = make_actor(brokers(), "default", name="add")
    ready = work.send(1, 2)
    # Default namespace, MD5 keys, same database.
    backend = RedisBackend(url=redis_url)  # type: ignore[no-untyped-call]
    backend.store_result(ready, {"sum": 3, "items": [1, 2]}, 60_000)
    detail = await get_job(aredis, DEFAULT, ready.options["redis_message_id"], [], ResultsConfig())
    assert detail is not None and detail.result is not None
    assert detail.result.key == backend.build_message_key(ready)
    assert (detail.result.ok, detail.result.value) == (True, {"sum": 3, "items": [1, 2]})
    # Without results configured nothing is read.
    plain = await get_job(aredis, DEFAULT, ready.options["redis_message_id"], [])
    assert plain is not None and plain.result is None


async def test_result_of_a_delayed_message_uses_the_canonical_queue(
    brokers: BrokerFactory, aredis: Redis, redis_url: str
) -> None:
    later = make_actor(brokers(), "default", name="later").send_with_options(args=(1,), delay=60_000)
    assert later.queue_name == "default.DQ"
    backend = RedisBackend(url=redis_url)  # type: ignore[no-untyped-call]
    backend.store_result(later, "done", 60_000)
    detail = await get_job(aredis, DEFAULT, later.options["redis_message_id"], [], ResultsConfig())
    assert detail is not None and detail.result is not None
    assert (detail.result.ok, detail.result.value) == (True, "done")


async def test_results_with_prefix_keys_in_another_database(
    brokers: BrokerFactory, aredis: Redis, redis_url: str
) -> None:
    results_url = redis_url.rsplit("/", 1)[0] + "/3"
    work = make_actor(brokers(), "default", name="report")
    sent = work.send("q3")
    backend = RedisBackend(  # type: ignore[no-untyped-call]
        url=results_url, namespace="acme-results", use_namespace_prefix_keys=True
    )
    backend.store_result(sent, [1, "two"], 60_000)
    results_redis = Redis.from_url(results_url)
    try:
        config = ResultsConfig(namespace="acme-results", prefix_keys=True)
        detail = await get_job(aredis, DEFAULT, sent.options["redis_message_id"], [], config, results_redis)
        assert detail is not None and detail.result is not None
        assert detail.result.key == f"acme-results:default:report:{sent.message_id}"
        assert (detail.result.ok, detail.result.value) == (True, [1, "two"])
        # The same config against the broker's database (wrong place) finds nothing, and says so.
        elsewhere = await get_job(aredis, DEFAULT, sent.options["redis_message_id"], [], config)
        assert elsewhere is not None and elsewhere.result is None
        # MD5 keys when the app uses prefix keys: not found either.
        md5 = await get_job(
            aredis, DEFAULT, sent.options["redis_message_id"], [], ResultsConfig(), results_redis
        )
        assert md5 is not None and md5.result is None
    finally:
        await results_redis.aclose()
        backend.client.close()


# -- hostile payloads ------------------------------------------------------------------------------

UNDECODABLE = {
    "pickle": b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.",
    "not json": b"<html>oops</html>",
    "truncated": b'{"queue_name":"default","actor_name":"wo',
    "json list": b'["default", "work"]',
    "invalid utf-8": b'{"actor_name": "\xff"}',
    "deep nesting": b"[" * 100_000,
    "huge": b'{"args": ["' + b"x" * 1_100_000 + b'"]}',
}
ODD = {
    "wrong types": b'{"actor_name": 5, "args": "x", "kwargs": [1], "options": "o", "message_timestamp": "t"}',
    "nan": b'{"actor_name": "a", "args": [NaN], "message_timestamp": NaN}',
    "infinite": (
        b'{"actor_name": "a", "message_timestamp": 1e999, "options": {"retries": 1e999, "eta": 1e999}}'
    ),
    "huge ints": b'{"actor_name": "a", "message_timestamp": 1' + b"0" * 400 + b"}",
    "500 deep": b'{"actor_name": "a", "args": ' + b"[" * 500 + b"]" * 500 + b"}",
}


def write_hostile(
    sync_redis: redis.Redis, q: QueueKeys, payloads: dict[str, bytes]
) -> dict[str, tuple[str, str]]:
    """Each payload once as a ready message (HSET .msgs + RPUSH) and once as a dead letter (.XQ)."""
    placed: dict[str, tuple[str, str]] = {}
    for i, (name, raw) in enumerate(payloads.items()):
        ready_rid, dead_rid = f"ready-{name}", f"dead-{name}"
        sync_redis.hset(q.msgs, mapping={ready_rid: raw})
        sync_redis.rpush(q.ready, ready_rid)
        sync_redis.hset(q.dead_msgs, mapping={dead_rid: raw})
        sync_redis.zadd(q.dead, {dead_rid: now_ms() - i})
        placed[name] = (ready_rid, dead_rid)
    return placed


async def test_undecodable_payloads_show_as_undecodable(
    brokers: BrokerFactory, aredis: Redis, sync_redis: redis.Redis, collectors: CollectorFactory
) -> None:
    make_actor(brokers(), "other").send()  # a namespace with heartbeats
    q = QueueKeys("dramatiq", "hostile")
    placed = write_hostile(sync_redis, q, UNDECODABLE)

    for state in ("ready", "dead"):
        page = await list_jobs(aredis, q, state, 0, 50, [])
        assert page.total == len(UNDECODABLE)
        for item in page.items:
            assert item.undecodable is not None, item
            assert item.name is None
            assert item.undecodable.size > 0
    for name, (ready_rid, dead_rid) in placed.items():
        for rid, state in ((ready_rid, "ready"), (dead_rid, "dead")):
            detail = await get_job(aredis, q, rid, [], ResultsConfig())
            assert detail is not None, name
            assert detail.state == state
            assert detail.undecodable is not None, name
            assert detail.undecodable.size == len(UNDECODABLE[name])
            assert len(detail.undecodable.head) < 300
            assert ("redis message id", rid) in detail.ids

    snapshot = await collectors().collect()
    stats = {s.key: s for s in snapshot.queues}[q.ready]
    assert (stats.counts["ready"], stats.counts["dead"]) == (len(UNDECODABLE), len(UNDECODABLE))


@pytest.mark.parametrize("name", sorted(ODD))
async def test_odd_payloads_never_raise(
    brokers: BrokerFactory, aredis: Redis, sync_redis: redis.Redis, name: str
) -> None:
    q = QueueKeys("dramatiq", "odd")
    ready_rid, dead_rid = write_hostile(sync_redis, q, {name: ODD[name]})[name]
    for state, rid in (("ready", ready_rid), ("dead", dead_rid)):
        page = await list_jobs(aredis, q, state, 0, 10, [])
        assert ids(page) == [rid]
        detail = await get_job(aredis, q, rid, [], ResultsConfig())
        assert detail is not None
        assert detail.state == state
        assert detail.retries is None or isinstance(detail.retries, int)


async def test_missing_payload_shows_as_undecodable(aredis: Redis, sync_redis: redis.Redis) -> None:
    """A list entry whose payload is gone (a race with an ack, or a broken app) is shown, not an error."""
    sync_redis.rpush(DEFAULT.ready, "orphan-rid")
    page = await list_jobs(aredis, DEFAULT, "ready", 0, 10, [])
    assert ids(page) == ["orphan-rid"]
    assert page.items[0].undecodable is not None
    assert page.items[0].undecodable.reason == "missing payload"


async def test_a_job_fetched_into_an_ack_set_discovery_has_not_found_yet_shows_in_flight(
    brokers: BrokerFactory, collectors: CollectorFactory, sync_redis: redis.Redis
) -> None:
    """A worker's new ack set waits for the next SCAN pass (15 s and more apart); a job's page asks
    every live broker's set of its queue, so the job shows in flight at once, with its holder."""
    producer = brokers()
    message = make_actor(producer).send(1)
    worker = brokers()
    worker.consume("other", prefetch=1, timeout=100)  # the worker is a live broker...
    target = collectors()
    await target.collect()  # ...and this pass found no ack set of `default`
    # On a big database the next pass is up to 15 s away (a small one is rescanned at once).
    target.scanner._resume_at = time.monotonic() + 60
    fetch(worker.consume("default", prefetch=1, timeout=100), 1)
    assert sync_redis.exists(f"dramatiq:__acks__.{worker.broker_id}.default")
    await target.collect()  # the heartbeat read: the worker lives
    assert target.dramatiq.ack_keys(DEFAULT) == []  # discovery has not seen the new set
    backend = target.backend("dramatiq")
    assert backend is not None
    job = await backend.get_job("dramatiq:default", message.options["redis_message_id"])
    assert job is not None and job.state == "in_flight"
    assert worker.broker_id in repr(job.ids) + repr(job.notes)  # and who holds it
