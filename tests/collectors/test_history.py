"""History that outlives Callboard, against a real server: the flow reader reading a week of hour
hashes back a few per cycle, and each queue's depth pushed to Redis at minute, 5-minute and hour steps."""

from __future__ import annotations

from typing import Any

import dramatiq
import redis
from redis.asyncio import Redis

from callboard.collectors import depth
from callboard.collectors.flow import Series, hour_key
from callboard.collectors.flowreader import HOUR_BUDGET, HOURS, FlowReader
from callboard.collectors.model import Framework, QueueStats
from callboard.companion.recorder import Recorder, stage
from tests.collectors.conftest import BrokerFactory, CollectorFactory

HOUR = 500_000
NOW = HOUR * 3600 + 1800.0
QUICK = Series("dramatiq", "dramatiq", "default", "quick")
OTHER = Series("arq", "arq", "arq:queue", "report")


async def cycle(reader: FlowReader, aredis: Redis, now: float) -> Any:
    async with aredis.pipeline(transaction=False) as pipe:
        count = reader.stage(pipe, now)
        replies = await pipe.execute(raise_on_error=False)
    assert len(replies) == count
    return reader.parse(replies, now)


async def test_the_reader_reads_the_week_back_a_few_hours_a_cycle_and_each_hour_once(
    aredis: Redis, sync_redis: redis.Redis
) -> None:
    recorder = Recorder()
    for hours_ago, series, n in (
        (1, QUICK, 3),
        (1, OTHER, 2),
        (30, QUICK, 5),
        (160, OTHER, 7),
        (200, QUICK, 9),
    ):
        for _ in range(n):
            recorder.record(series, "succeeded", NOW - hours_ago * 3600, 0.03)
    recorder.record(QUICK, "failed", NOW - 3600, 0.03)
    with sync_redis.pipeline(transaction=False) as pipe:
        stage(pipe, recorder.take(), "test", 0)
        pipe.execute()
    # Someone else's field in an hour hash, with an id no companion named: left out, not re-read forever.
    sync_redis.hset(hour_key(HOUR - 2), "s:abcdefabcdef", "99")
    reader = FlowReader()
    cycles = 0
    snap = await cycle(reader, aredis, NOW)
    missing = [snap.hours_missing]
    while snap.hours_missing:
        snap = await cycle(reader, aredis, NOW)
        missing.append(snap.hours_missing)
        cycles += 1
        assert cycles < HOURS
    # HOUR_BUDGET hashes per cycle, no more, newest first.
    assert missing == list(range(HOURS - HOUR_BUDGET, -1, -HOUR_BUDGET))
    assert len(snap.hours) == HOURS
    summed = {h: (t.outcomes.get("succeeded", 0), t.outcomes.get("failed", 0)) for h, t in snap.hours.items()}
    assert summed[HOUR - 1] == (5, 1)  # both series of that hour, summed
    assert summed[HOUR - 30] == (5, 0) and summed[HOUR - 160] == (7, 0)
    assert summed[HOUR - 2] == (0, 0)  # the foreign field counted nothing
    assert HOUR - 200 not in snap.hours  # older than a week
    # Once complete, a cycle reads no hour hash; the next hour, one.
    async with aredis.pipeline(transaction=False) as pipe:
        before = reader.stage(pipe, NOW)
        await pipe.execute()
    async with aredis.pipeline(transaction=False) as pipe:
        after = reader.stage(pipe, NOW + 3600 + 60)
        await pipe.execute()
    assert after - before >= 1


async def test_the_hour_just_ended_waits_for_late_flushes() -> None:
    reader = FlowReader()

    class Pipe:
        def __init__(self) -> None:
            self.keys: list[str] = []

        def hgetall(self, key: str) -> None:
            self.keys.append(key)

    early, late = Pipe(), Pipe()
    reader.stage(early, HOUR * 3600 + 5.0)  # type: ignore[arg-type]
    reader.stage(late, HOUR * 3600 + 20.0)  # type: ignore[arg-type]
    assert hour_key(HOUR - 1) not in early.keys and hour_key(HOUR - 2) in early.keys
    assert late.keys.index(hour_key(HOUR - 1)) < late.keys.index(hour_key(HOUR - 2))  # newest first


def queue(key: str, ready: int) -> QueueStats:
    counts = {"ready": ready, "in_flight": 1, "delayed": 2, "dead": 3}
    return QueueStats(Framework.DRAMATIQ, "dramatiq", key, f"dramatiq:{key}", counts, 0.0)


async def test_depth_is_pushed_once_per_step_of_each_tier_and_read_back(aredis: Redis) -> None:
    recorder = depth.DepthRecorder()
    odd = "we/ird\n..:q\udcff"  # any queue name: the key holds its hash only
    start = HOUR * 3600.0  # on every tier's boundary
    for second in range(0, 3 * 3600 + 1, 30):
        recorder.observe(start + second, [queue("default", second), queue(odd, 1)])
        async with aredis.pipeline(transaction=False) as pipe:
            sent = recorder.stage(pipe)
            replies = await pipe.execute(raise_on_error=False)
        assert len(replies) == sent
        recorder.parse(replies)
    assert recorder.error is None
    minutes = await depth.read(aredis, Framework.DRAMATIQ, "dramatiq:default", "1h")
    fives = await depth.read(aredis, Framework.DRAMATIQ, "dramatiq:default", "24h")
    hours = await depth.read(aredis, Framework.DRAMATIQ, "dramatiq:default", "7d")
    assert len(minutes) == 60 and len(fives) == 3 * 12 + 1 and len(hours) == 4
    assert minutes[-1] == (start + 3 * 3600, {"ready": 3 * 3600, "in_flight": 1, "delayed": 2, "dead": 3})
    assert [t for t, _ in hours] == [start + h * 3600 for h in range(4)]
    assert all(b[0] - a[0] == 60 for a, b in zip(minutes, minutes[1:], strict=False))
    assert len(await depth.read(aredis, Framework.DRAMATIQ, f"dramatiq:{odd}", "7d")) == 4
    ttl = await aredis.ttl(depth.depth_key(depth.TIERS["7d"], Framework.DRAMATIQ, "dramatiq:default"))
    assert 0 < ttl <= 169 * 3600


async def test_a_refused_write_is_a_note_and_junk_entries_are_skipped(
    aredis: Redis, sync_redis: redis.Redis, collectors: CollectorFactory, brokers: BrokerFactory
) -> None:
    key = depth.depth_key(depth.TIERS["1h"], Framework.DRAMATIQ, "dramatiq:default")
    sync_redis.rpush(key, "1800000000 1 2 3 4", "junk", "1 2", "1800000060 x 2 3 4", "1800000120 5 6 7 8")
    points = await depth.read(aredis, Framework.DRAMATIQ, "dramatiq:default", "1h")
    assert [p[1]["ready"] for p in points] == [1, 5]
    # A replica, or an ACL without LPUSH: collection goes on, and says why the history is not kept.
    broker = brokers()
    broker.enqueue(dramatiq.Message(queue_name="default", actor_name="a", args=(), kwargs={}, options={}))
    collector = collectors()
    await collector.collect()  # discovers the queue
    sync_redis.acl_setuser("default", enabled=True, commands=["-lpush"])
    try:
        await collector.collect()
        snap = await collector.collect()  # the first cycle's pushes are sent by the second
    finally:
        sync_redis.acl_setuser("default", enabled=True, commands=["+lpush"])
    assert any("Depth history is not being kept" in n and "lpush" in n.lower() for n in snap.notes), (
        snap.notes
    )
