"""The Arq collector against real Arq 0.28 writes: enqueue with arq's API, run arq's own Worker in-process.

Each test gets its own flushed server (Redis 7 and Valkey, `redis_url`). Collections run a few times:
discovery needs a SCAN pass, and the results index is filled by `after_scan`.
"""

from __future__ import annotations

import inspect
import os
import pickle
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job
from arq.worker import Worker
from redis.asyncio import Redis

from callboard.collectors.arq import browse as arq_browse
from callboard.collectors.arq import keys as arq_keys
from callboard.collectors.arq import snapshot as arq_snapshot
from callboard.collectors.arq.config import ArqConfig
from callboard.collectors.arq.snapshot import ArqCollector
from callboard.collectors.model import CollectedPart, QueueStats, TargetSnapshot, Undecodable
from callboard.collectors.target import TargetCollector
from tests.collectors.conftest import FrozenTime
from tests.servers import RedisServer

CUSTOM = "custom"


class CustomError(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"custom {code}: {detail}")
        self.code = code
        self.detail = detail


async def succeed(ctx: dict[str, Any], x: int, *, mult: int = 2) -> int:
    return x * mult


async def fail_value(ctx: dict[str, Any], tag: str) -> None:
    raise ValueError(f"bad {tag}")


async def fail_custom(ctx: dict[str, Any], code: int, detail: str) -> None:
    raise CustomError(code, detail)


FUNCTIONS: list[Callable[..., Any]] = [succeed, fail_value, fail_custom]


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
async def pool(redis_url: str, redis_server: RedisServer) -> AsyncIterator[ArqRedis]:
    p = await create_pool(RedisSettings(host="127.0.0.1", port=redis_server.port))
    yield p
    await p.aclose()


def target(aredis: Redis, **config: Any) -> TargetCollector:
    return TargetCollector("t", aredis, arq=ArqCollector(ArqConfig(**config)))


async def settle(tc: TargetCollector, cycles: int = 4) -> TargetSnapshot:
    """Collect until a discovery pass is done and every found result is read; then one more cycle."""
    snap = await tc.collect()
    for _ in range(cycles):
        if snap.discovery.complete and tc.arq.results.complete:
            break
        snap = await tc.collect()
    assert snap.discovery.complete and tc.arq.results.complete, snap
    return await tc.collect()


def queue(snap: TargetSnapshot, name: str) -> QueueStats:
    found = [q for q in snap.queues if q.name == name]
    assert len(found) == 1, [q.name for q in snap.queues]
    return found[0]


def enqueued(job: Job | None) -> Job:
    assert job is not None, "arq refused the enqueue"
    return job


async def run_worker(pool: ArqRedis, queue_name: str = arq_keys.DEFAULT_QUEUE, **kw: Any) -> Worker:
    options: dict[str, Any] = {"health_check_interval": 10, **kw}
    worker = Worker(
        functions=FUNCTIONS,
        redis_pool=pool,
        queue_name=queue_name,
        burst=True,
        poll_delay=0,
        handle_signals=False,
        **options,
    )
    await worker.async_run()  # not close(): that would delete the health-check key
    return worker


async def test_counts_results_workers_and_browse(pool: ArqRedis, aredis: Redis, clock: FrozenTime) -> None:
    # Finished jobs: 2 succeed, 1 ValueError, 1 CustomError on the default queue; 1 success on "custom".
    ok1 = await pool.enqueue_job("succeed", 3)
    ok2 = await pool.enqueue_job("succeed", 4, mult=10)
    bad = await pool.enqueue_job("fail_value", "v1")
    custom = await pool.enqueue_job("fail_custom", 42, "tag c1")
    other = await pool.enqueue_job("succeed", 5, _queue_name=CUSTOM)
    assert ok1 and ok2 and bad and custom and other
    worker = await run_worker(pool)
    assert (worker.jobs_complete, worker.jobs_failed) == (2, 2)
    await run_worker(pool, queue_name=CUSTOM, health_check_interval=3600)

    # Waiting jobs: 3 due (one of which a worker claimed), 2 deferred, 1 deferred on "custom".
    due = [enqueued(await pool.enqueue_job("succeed", i)) for i in range(3)]
    deferred = [enqueued(await pool.enqueue_job("succeed", 10 + i, _defer_by=600)) for i in range(2)]
    await pool.enqueue_job("succeed", 99, _queue_name=CUSTOM, _defer_by=600)
    running = due[0]
    await aredis.set(arq_keys.in_progress_key(running.job_id), b"1", px=310_000)
    # Due 50, 40 and 20 s before the collector's clock; the oldest is claimed: the oldest ready waited 40 s.
    for job, ago in zip(due, (50, 40, 20), strict=True):
        await aredis.zadd(arq_keys.DEFAULT_QUEUE, {job.job_id: (clock.now - ago) * 1000})

    tc = target(aredis, health_check_interval=10)
    snap = await settle(tc)
    default = queue(snap, "arq:queue")
    assert default.counts == {"ready": 2, "deferred": 2, "in_progress": 1}
    assert default.results == {"succeeded": 2, "failed": 2}
    assert default.oldest_ready_age == 40.0
    mine = queue(snap, CUSTOM)  # discovered: not configured
    assert mine.counts == {"ready": 0, "deferred": 1, "in_progress": 0}
    assert mine.results == {"succeeded": 1, "failed": 0}
    assert {q.name for q in snap.queues} == {"arq:queue", CUSTOM}

    workers = {w.worker_id: w for w in snap.workers}
    assert set(workers) == {"arq:queue:health-check", "custom:health-check"}
    hc = workers["arq:queue:health-check"]
    assert hc.queues == ("arq:queue",) and hc.alive and hc.role == "health check"
    # Arq writes the key once per interval, with its counters at that moment: compare with the key itself.
    raw_hc = (await aredis.get("arq:queue:health-check") or b"").decode()
    assert hc.details["raw"] == raw_hc
    fields = dict(pair.split("=") for pair in raw_hc.split()[2:])
    assert set(fields) == {"j_complete", "j_failed", "j_retried", "j_ongoing", "queued"}
    assert {k: hc.details[k] for k in fields} == fields
    assert hc.in_flight == int(fields["j_ongoing"])
    assert abs(hc.last_seen - time.time()) < 10
    assert "liveness" not in hc.details
    assert workers["custom:health-check"].queues == (CUSTOM,)

    # Browse every state.
    async def ids(q: str, state: str) -> list[str]:
        page = await arq_browse.list_jobs(aredis, tc.arq, q, state, 0, 50)
        assert page.total == len(page.items)
        return sorted(i.job_id for i in page.items)

    ready_page = await arq_browse.list_jobs(aredis, tc.arq, "arq:queue", "ready", 0, 50)
    states = {i.job_id: i.state for i in ready_page.items}
    assert states == {due[0].job_id: "in_progress", due[1].job_id: "ready", due[2].job_id: "ready"}
    assert {i.name for i in ready_page.items} == {"succeed"}
    assert await ids("arq:queue", "deferred") == sorted(j.job_id for j in deferred)
    assert await ids("arq:queue", "failed") == sorted([bad.job_id, custom.job_id])
    assert await ids("arq:queue", "succeeded") == sorted([ok1.job_id, ok2.job_id])
    assert await ids(CUSTOM, "succeeded") == [other.job_id]
    assert await ids(CUSTOM, "failed") == []
    # in_progress comes from discovered in-progress keys: discovery saw the key in the pass above.
    assert await ids("arq:queue", "in_progress") == [running.job_id]

    failed_page = await arq_browse.list_jobs(aredis, tc.arq, "arq:queue", "failed", 0, 50)
    errors = {i.job_id: i.error for i in failed_page.items}
    assert errors[bad.job_id] == "ValueError: bad v1"
    assert errors[custom.job_id] == f"{__name__}.CustomError: custom 42: tag c1"
    # Results say when the worker started and finished each job (the list shows finish and run time),
    # newest first.
    ok_page = await arq_browse.list_jobs(aredis, tc.arq, "arq:queue", "succeeded", 0, 50)
    for item in (*failed_page.items, *ok_page.items):
        assert item.enqueued_at is not None and item.started_at is not None and item.finished_at is not None
        assert item.enqueued_at <= item.started_at <= item.finished_at <= time.time()
    finished = [i.finished_at or 0.0 for i in ok_page.items]
    assert finished == sorted(finished, reverse=True)
    assert [i.failed_at for i in failed_page.items] == [i.finished_at for i in failed_page.items]

    # Job details.
    detail = await arq_browse.get_job(aredis, tc.arq, "arq:queue", custom.job_id)
    assert detail is not None
    assert detail.state == "failed" and detail.name == "fail_custom"
    assert detail.args == [42, "tag c1"] and detail.kwargs == {}
    assert detail.options["try"] == 1
    labels = [label for label, _ in detail.timestamps]
    assert labels == ["enqueued", "started", "finished"]
    stamps = dict(detail.timestamps)
    assert stamps["enqueued"] <= stamps["started"] <= stamps["finished"] <= time.time()
    assert detail.result is not None and not detail.result.ok
    assert detail.result.exception_type == f"{__name__}.CustomError"
    assert detail.result.exception_message == "custom 42: tag c1"
    assert detail.result.value == {"code": 42, "detail": "tag c1"}
    assert detail.result.ttl_seconds is not None and 3500 < detail.result.ttl_seconds <= 3600

    ok_detail = await arq_browse.get_job(aredis, tc.arq, "arq:queue", ok2.job_id)
    assert ok_detail is not None and ok_detail.state == "succeeded"
    assert ok_detail.kwargs == {"mult": 10} and ok_detail.args == [4]
    assert ok_detail.result is not None and ok_detail.result.ok and ok_detail.result.value == 40

    value_detail = await arq_browse.get_job(aredis, tc.arq, "arq:queue", bad.job_id)
    assert value_detail is not None and value_detail.result is not None
    assert (value_detail.result.exception_type, value_detail.result.exception_message) == (
        "ValueError",
        "bad v1",
    )

    deferred_detail = await arq_browse.get_job(aredis, tc.arq, "arq:queue", deferred[0].job_id)
    assert deferred_detail is not None and deferred_detail.state == "deferred"
    assert deferred_detail.args == [10] and deferred_detail.result is None
    due_at = dict(deferred_detail.timestamps)["due"]
    assert 590 < due_at - time.time() <= 600

    running_detail = await arq_browse.get_job(aredis, tc.arq, "arq:queue", running.job_id)
    assert running_detail is not None and running_detail.state == "in_progress"
    assert await arq_browse.get_job(aredis, tc.arq, "arq:queue", "no-such-job") is None


async def test_result_written_by_serialize_result_is_indexed(pool: ArqRedis, aredis: Redis) -> None:
    from arq.jobs import serialize_result

    now = int(time.time() * 1000)
    raw = serialize_result(
        "fail_custom", (7, "x"), {}, 3, now - 50, False, CustomError(7, "x"), now - 20, now, "ref", "q2", "j1"
    )
    assert raw is not None
    await aredis.set(arq_keys.result_key("j1"), raw, px=60_000)
    tc = target(aredis)
    snap = await settle(tc)
    assert queue(snap, "q2").results == {"succeeded": 0, "failed": 1}
    assert queue(snap, "q2").counts == {"ready": 0, "deferred": 0, "in_progress": 0}
    detail = await arq_browse.get_job(aredis, tc.arq, "q2", "j1")
    assert detail is not None and detail.retries == 3 and detail.result is not None
    assert detail.result.exception_message == "custom 7: x"


async def test_hostile_payloads_run_nothing(pool: ArqRedis, aredis: Redis, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    now = int(time.time() * 1000)
    # A job payload that is itself a reduce, and one with a hostile arg.
    await aredis.set(arq_keys.job_key("evil-job"), pickle.dumps(Evil(marker)))
    await aredis.zadd("arq:queue", {"evil-job": now - 1000})
    job = {"t": 1, "f": "succeed", "a": (Evil(marker),), "k": {}, "et": now}
    await aredis.set(arq_keys.job_key("evil-arg"), pickle.dumps(job))
    await aredis.zadd("arq:queue", {"evil-arg": now - 500})
    # A result whose exception is a reduce to os.system, and one that is not a pickle at all.
    result = {"t": 1, "f": "x", "a": (), "k": {}, "et": now, "s": False, "r": Evil(marker)}
    result |= {"st": now, "ft": now, "q": "arq:queue", "id": "evil-result"}
    await aredis.set(arq_keys.result_key("evil-result"), pickle.dumps(result), px=60_000)
    await aredis.set(arq_keys.result_key("garbage"), b"\x80\x05garbage", px=60_000)

    tc = target(aredis)
    snap = await settle(tc)
    assert not marker.exists()
    assert queue(snap, "arq:queue").counts["ready"] == 2
    assert queue(snap, "arq:queue").results == {"succeeded": 0, "failed": 1}
    # An unreadable result names no queue: it is counted in the index and invents no queue "?".
    assert [q.name for q in snap.queues] == ["arq:queue"]
    assert tc.arq.results.counts[(arq_keys.UNKNOWN_QUEUE, "failed")] == 1

    page = await arq_browse.list_jobs(aredis, tc.arq, "arq:queue", "ready", 0, 10)
    by_id = {i.job_id: i for i in page.items}
    assert by_id["evil-job"].undecodable is not None and by_id["evil-job"].name is None
    assert by_id["evil-arg"].name == "succeed"
    assert by_id["evil-arg"].call_preview.startswith("succeed({'__class__': 'posix.system'")
    arg_detail = await arq_browse.get_job(aredis, tc.arq, "arq:queue", "evil-arg")
    assert arg_detail is not None and arg_detail.state == "ready"
    assert arg_detail.args == [{"__class__": "posix.system", "repr": f"posix.system('touch {marker}')"}]

    failed = await arq_browse.list_jobs(aredis, tc.arq, "arq:queue", "failed", 0, 10)
    assert [i.error for i in failed.items] == [f"posix.system: touch {marker}"]

    detail = await arq_browse.get_job(aredis, tc.arq, "arq:queue", "evil-job")
    assert detail is not None and detail.undecodable is not None and detail.state == "unknown"
    res = await arq_browse.get_job(aredis, tc.arq, "arq:queue", "evil-result")
    assert res is not None and res.result is not None
    assert res.result.exception_type == "posix.system"
    garbage = await arq_browse.get_job(aredis, tc.arq, "arq:queue", "garbage")
    assert garbage is not None and isinstance(garbage.undecodable, Undecodable)
    assert not marker.exists()


async def test_msgpack_jobs_and_results_decode(
    redis_url: str, redis_server: RedisServer, aredis: Redis
) -> None:
    def packb(obj: Any) -> bytes:
        data: bytes = msgpack.packb(obj, datetime=True)
        return data

    def unpackb(raw: bytes) -> Any:
        return msgpack.unpackb(raw, timestamp=3)

    settings = RedisSettings(host="127.0.0.1", port=redis_server.port)
    mp = await create_pool(settings, job_serializer=packb, job_deserializer=unpackb)
    try:
        done = await mp.enqueue_job("succeed", 6, mult=7)
        failed = await mp.enqueue_job("fail_value", "m")
        assert done and failed
        await run_worker(mp, job_serializer=packb, job_deserializer=unpackb)
        waiting = await mp.enqueue_job("succeed", 1, _defer_by=300)
        assert waiting
    finally:
        await mp.aclose()
    assert (await aredis.get(arq_keys.job_key(waiting.job_id)) or b"")[:1] == b"\x85"

    tc = target(aredis)
    snap = await settle(tc)
    q = queue(snap, "arq:queue")
    assert q.counts == {"ready": 0, "deferred": 1, "in_progress": 0}
    assert q.results == {"succeeded": 1, "failed": 1}  # msgpack: arq cannot store the exception
    page = await arq_browse.list_jobs(aredis, tc.arq, "arq:queue", "deferred", 0, 10)
    assert [(i.name, i.call_preview) for i in page.items] == [("succeed", "succeed(1)")]
    detail = await arq_browse.get_job(aredis, tc.arq, "arq:queue", done.job_id)
    assert detail is not None and detail.result is not None
    assert detail.result.value == 42 and detail.kwargs == {"mult": 7}
    bad = await arq_browse.get_job(aredis, tc.arq, "arq:queue", failed.job_id)
    assert bad is not None and bad.result is not None and not bad.result.ok
    assert bad.result.exception_message == "unable to serialize result"


async def test_round_trips_do_not_grow_with_queued_jobs(pool: ArqRedis, aredis: Redis) -> None:
    async def steady_round_trips(tc: TargetCollector) -> set[int]:
        await settle(tc)
        # After a full pass the scanner rests (rescan_interval): these cycles are steady state.
        return {(await tc.collect()).round_trips for _ in range(3)}

    for i in range(10):
        await pool.enqueue_job("succeed", i)
    small = await steady_round_trips(target(aredis))
    async with aredis.pipeline(transaction=False) as pipe:
        for i in range(1990):
            pipe.set(
                arq_keys.job_key(f"bulk-{i}"), pickle.dumps({"t": None, "f": "succeed", "a": (i,), "k": {}})
            )
            pipe.zadd("arq:queue", {f"bulk-{i}": int(time.time() * 1000)})
        await pipe.execute()
    tc = target(aredis)
    large = await steady_round_trips(tc)
    assert queue(await tc.collect(), "arq:queue").counts["ready"] == 2000
    assert small == large == {1}


async def test_a_discovered_queue_is_forgotten_idle_ttl_after_its_keys_go(
    pool: ArqRedis, aredis: Redis, clock: FrozenTime
) -> None:
    tc = target(aredis, idle_ttl=60.0, queues=("arq:pinned",))
    job = enqueued(await pool.enqueue_job("add", 1, 2, _queue_name="arq:brief"))
    assert "arq:brief" in {q.name for q in (await settle(tc)).queues}
    await aredis.delete("arq:brief", arq_keys.job_key(job.job_id))
    gone_at = clock.now

    async def listed() -> bool:
        return "arq:brief" in {q.name for q in (await tc.collect()).queues}

    clock.now = gone_at + 60.0  # exactly its idle_ttl: kept
    assert [await listed(), await listed()] == [True, True]
    clock.now = gone_at + 60.001  # past it: this cycle still shows it, then it is forgotten
    assert [await listed(), await listed()] == [True, False]
    # A configured queue is never forgotten.
    clock.now = gone_at + 86_400
    assert "arq:pinned" in {q.name for q in (await tc.collect()).queues}


# -- the parser on exact layouts, without discovery (what mutation testing found unchecked) --------------


async def snapshot_of(collector: ArqCollector, aredis: Redis) -> CollectedPart:
    """One cycle's snapshot script and parser, as TargetCollector runs them, without its discovery."""
    sha = await aredis.script_load(arq_snapshot.SNAPSHOT_LUA)
    async with aredis.pipeline(transaction=False) as pipe:
        parse, calls = collector.stage(pipe, {arq_snapshot.SNAPSHOT_LUA: sha})
        replies = await pipe.execute()
    assert len(replies) == calls == 1
    part = parse(replies)
    assert not inspect.isawaitable(part)
    return part


async def test_ready_ages_counts_and_idle_queues_on_a_frozen_clock(
    pool: ArqRedis, aredis: Redis, clock: FrozenTime
) -> None:
    now_ms = int(clock.now * 1000)
    jobs = {
        # queue: [(job, due ms)]
        "arq:queue": [("waited", now_ms - 42_500), ("claimed", now_ms - 50_000), ("soon", now_ms + 60_000)],
        "brief": [("just", now_ms - 250)],
        "later": [("deferred", now_ms + 600_000)],
        "emptied": [("gone", now_ms - 1_000)],
    }
    for name, entries in jobs.items():
        for job_id, due in entries:
            assert await pool.enqueue_job("succeed", 1, _job_id=job_id, _queue_name=name)
            await aredis.zadd(name, {job_id: due})
    await aredis.set(arq_keys.in_progress_key("claimed"), b"1", px=300_000)
    collector = ArqCollector()
    collector.observe([k.decode() async for k in aredis.scan_iter(count=1000)])
    await collector.after_scan(aredis)  # the queues are found among the sorted sets, as discovery does
    assert collector.queue_names() == ["arq:queue", "brief", "emptied", "later"]
    await aredis.zrem("emptied", "gone")

    first = {q.name: q for q in (await snapshot_of(collector, aredis)).queues}
    assert first["arq:queue"].counts == {"ready": 1, "deferred": 1, "in_progress": 1}
    assert first["arq:queue"].oldest_ready_age == 42.5
    assert first["brief"].oldest_ready_age == 0.25
    assert (first["later"].counts["ready"], first["later"].oldest_ready_age) == (0, 0.0)
    assert first["emptied"].counts == {"ready": 0, "deferred": 0, "in_progress": 0}

    clock.now += 3601  # an hour on, with no discovery pass: queues that hold jobs are still listed
    await snapshot_of(collector, aredis)
    later = await snapshot_of(collector, aredis)
    assert [q.name for q in later.queues] == ["arq:queue", "brief", "later"]


async def test_a_partial_results_index_says_so_until_a_pass_has_read_every_result(aredis: Redis) -> None:
    collector = ArqCollector()
    (note,) = (await snapshot_of(collector, aredis)).notes
    assert note == (
        "Arq results index is partial: 0 result keys not read yet, 0 full scans so far; "
        "failed/succeeded counts are still growing."
    )
    collector.end_pass()  # what TargetCollector does when a SCAN pass ends
    assert (await snapshot_of(collector, aredis)).notes == ()


@pytest.mark.parametrize(
    ("pttl", "age"),
    [
        (11_000, 0.0),  # just written: arq sets a TTL of interval + 1 s
        (4_000, 7.0),
        (1_234, 9.766),
        (0, 11.0),
        (12_500, 0.0),  # a longer interval than configured: never a negative age
        (-1, None),  # no TTL: the age is unknown, the key is there
    ],
)
def test_health_check_age_comes_from_the_keys_ttl(pttl: int, age: float | None) -> None:
    collector = ArqCollector(ArqConfig(health_check_interval=10))
    value = "Mar-01 12:00:00 j_complete=2 j_failed=1 j_retried=0 j_ongoing=3 queued=5"
    worker = collector._health_worker("arq:queue", value, pttl, 1000.0)
    assert worker.last_seen == pytest.approx(1000.0 - (age or 0.0))
    assert (worker.worker_id, worker.alive, worker.in_flight) == ("arq:queue:health-check", True, 3)
    assert worker.details["raw"] == value and worker.details["queued"] == "5"
    assert "liveness" not in worker.details


@pytest.mark.parametrize(("interval", "coarse"), [(599, False), (600, True), (3600, True)])
def test_health_checks_ten_minutes_apart_or_more_are_called_coarse(interval: float, coarse: bool) -> None:
    worker = ArqCollector(ArqConfig(health_check_interval=interval))._health_worker("q", "", 1000, 0.0)
    note = f"coarse: workers refresh this key every {interval:.0f} s (Arq's health_check_interval)"
    assert worker.details.get("liveness") == (note if coarse else None)
