"""README: "discovery uses a bounded background `SCAN` (never `KEYS`)", proven by the server's own
count of the commands it ran (`INFO commandstats`, which counts commands run inside scripts too).

Dramatiq messages are sent, consumed and dead-lettered through real RedisBrokers, Arq jobs and
results are written with arq's own serializers, so every follow-up read of discovery (Arq key types,
result index, claims, Dramatiq dead letters) has something to do.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, cast

import redis
from arq.constants import default_queue_name, in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job, serialize_result
from redis.asyncio import Redis

from callboard.collectors.arq.snapshot import ArqCollector
from callboard.collectors.dramatiq.keys import QueueKeys
from callboard.collectors.dramatiq.snapshot import DramatiqCollector
from callboard.collectors.search import Query, Scan
from callboard.collectors.target import TargetCollector
from tests.collectors.conftest import BrokerFactory, make_actor

DEFAULT = QueueKeys("dramatiq", "default")
PASSES = 3


def seed(brokers: BrokerFactory, sync_redis: redis.Redis) -> str:
    """Dramatiq: ready, in flight, delayed and one dead letter; Arq: a due job, one in progress, one
    failed result, one succeeded. Returns the dead letter's id."""
    charge = make_actor(brokers(), "default", name="charge")
    charge.send("in-flight")
    held = next(brokers().consume("default", prefetch=1, timeout=100))
    assert held is not None
    charge.send("alice@example.com")
    charge.send_with_options(args=("later",), delay=600_000)
    dead = charge.message_with_options(args=("erin@example.com",), retries=3)
    rid = str(uuid.uuid4())
    sync_redis.zadd(DEFAULT.dead, {rid: int(time.time() * 1000)})
    sync_redis.hset(DEFAULT.dead_msgs, rid, dead.copy(options={"redis_message_id": rid}).encode())

    now = int(time.time() * 1000)
    for job_id in ("due", "running"):
        sync_redis.set(job_key_prefix + job_id, serialize_job("parse", (job_id,), {}, 1, now))
        sync_redis.zadd(default_queue_name, {job_id: now - 1000})
    sync_redis.set(in_progress_key_prefix + "running", b"1", px=60_000)
    for job_id, ok in (("failed", False), ("done", True)):
        value: Any = ValueError("not an amount: 'x'") if not ok else 42
        raw = serialize_result(
            "parse", (job_id,), {}, 1, now - 50, ok, value, now - 20, now, "ref", default_queue_name, job_id
        )
        assert raw is not None
        sync_redis.set(result_key_prefix + job_id, raw, px=3_600_000)
    return rid


def command_calls(sync_redis: redis.Redis) -> dict[str, int]:
    """{command: calls} from INFO commandstats (`cmdstat_scan` -> `scan`)."""
    stats = cast(dict[str, dict[str, Any]], sync_redis.info("commandstats"))
    return {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}


async def test_discovery_and_search_never_send_keys(
    brokers: BrokerFactory, sync_redis: redis.Redis, aredis: Redis
) -> None:
    """Several full discovery passes (each over several SCAN steps) and a search over every queue
    run SCAN and never KEYS; the check itself can fail: a KEYS sent by us is counted."""
    dead = seed(brokers, sync_redis)
    tc = TargetCollector("main", aredis, DramatiqCollector(), ArqCollector())
    tc.scanner.count = 3  # a pass over these ~12 keys takes several SCAN calls
    sync_redis.config_resetstat()
    assert "keys" not in command_calls(sync_redis) and "scan" not in command_calls(sync_redis)

    cycles = 0
    while tc.scanner.status().passes < PASSES:
        snap = await tc.collect()
        tc.scanner.rescan_soon()
        cycles += 1
        assert cycles < 50, "discovery does not finish its passes"
    assert snap.discovery.passes == PASSES
    assert tc.arq.results.complete
    counts = {(q.framework, q.key): dict(q.counts) for q in snap.queues}
    assert counts == {
        ("dramatiq", "dramatiq:default"): {"ready": 1, "in_flight": 1, "delayed": 1, "dead": 1},
        ("arq", default_queue_name): {"ready": 1, "deferred": 0, "in_progress": 1},
    }

    scan = Scan(aredis, Query("erin@example", "any"), tc.search_sources())
    await scan.measure()
    hits = await scan.lookup()
    while not scan.done:
        hits += await scan.step()
    assert [(h.job.job_id, h.job.state) for h in hits] == [(dead, "dead")]

    calls = command_calls(sync_redis)
    assert "keys" not in calls, calls
    assert calls["scan"] >= cycles, calls  # every cycle stepped discovery with SCAN

    sync_redis.keys("arq:*")  # the assertion above can fail: KEYS is counted when sent
    assert command_calls(sync_redis)["keys"] == 1
