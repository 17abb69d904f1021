"""collectors/flowhistory.py against a real server: one series' hours, its fields only, one pipeline."""

from __future__ import annotations

from typing import Any

import redis
from redis.asyncio import Redis

from callboard.collectors.flow import Series, bucket
from callboard.collectors.flowhistory import read_hours
from callboard.companion.recorder import Recorder, stage

HOUR = 500_000
ASKED = Series("dramatiq", "dramatiq", "default", "resize")
OTHER = Series("arq", "arq", "arq:queue", "report")


def calls(client: redis.Redis, command: str) -> int:
    stats: dict[str, Any] = client.info("commandstats")  # type: ignore[assignment]
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_the_hours_of_one_series_are_read_with_one_hmget_each_and_nothing_else(
    aredis: Redis, sync_redis: redis.Redis
) -> None:
    recorder = Recorder()
    for hours_ago, runs in ((0, 3), (2, 5)):
        for _ in range(runs):
            at = (HOUR - hours_ago) * 3600 + 10.0
            recorder.record(ASKED, "succeeded", at, 0.03, 0.2)
            recorder.record(OTHER, "failed", at, 4.0)  # the same hashes hold another series
    recorder.record(ASKED, "retried", (HOUR - 1) * 3600.0, None)
    with sync_redis.pipeline(transaction=False) as pipe:
        stage(pipe, recorder.take(), "test", 0)
        pipe.execute()
    before = {c: calls(sync_redis, c) for c in ("hmget", "hgetall", "hget", "hkeys", "hscan")}

    hours = range(HOUR - 4, HOUR + 1)
    found = await read_hours(aredis, ASKED, hours)

    assert sorted(found) == [HOUR - 2, HOUR - 1, HOUR]
    assert found[HOUR].outcomes == {"succeeded": 3} and found[HOUR - 2].outcomes == {"succeeded": 5}
    assert found[HOUR - 1].outcomes == {"retried": 1} and found[HOUR - 1].runs == 0
    assert found[HOUR - 2].durations[bucket(0.03)] == 5 and found[HOUR - 2].runs == 5
    assert sum(found[HOUR].waits) == 3 and round(found[HOUR].wait_sum, 6) == 0.6
    after = {c: calls(sync_redis, c) for c in before}
    # One HMGET per hour of the range, hours with no hash included; never a read of every series.
    assert {c: after[c] - before[c] for c in before} == {
        "hmget": len(hours), "hgetall": 0, "hget": 0, "hkeys": 0, "hscan": 0
    }  # fmt: skip
