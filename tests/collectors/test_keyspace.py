"""KeyspaceScanner: discovery's bounded, resumable SCAN, on a real Redis and Valkey.

A step makes at most `budget` SCAN calls and resumes from the saved cursor, so a large keyspace takes
several cycles; a pass that ends stops the step early, and the next pass starts after a pause that
`rescan_soon()` cuts short.
"""

from __future__ import annotations

import math
import time

import redis
from redis.asyncio import Redis

from callboard.collectors.keyspace import KeyspaceScanner, ScanBatch


def seed(control: redis.Redis, n: int, prefix: str = "k") -> set[str]:
    names = {f"{prefix}:{i}" for i in range(n)}
    control.mset(dict.fromkeys(names, "x"))
    return names


async def rest_of_pass(scanner: KeyspaceScanner, aredis: Redis) -> list[ScanBatch]:
    """Steps until one ends the pass (bounded: a pass that never ends fails the test)."""
    batches: list[ScanBatch] = []
    for _ in range(1000):
        batches.append(await scanner.step(aredis))
        if batches[-1].pass_complete:
            return batches
    raise AssertionError("the pass did not end in 1000 steps")


def keys_of(batches: list[ScanBatch]) -> set[str]:
    return {k for b in batches for k in b.keys}


async def test_a_pass_that_fits_the_budget_is_one_call(aredis: Redis, sync_redis: redis.Redis) -> None:
    """50 keys, COUNT 1000: one SCAN ends the pass, and the step stops there, budget or not."""
    names = seed(sync_redis, 50)
    scanner = KeyspaceScanner(budget=5)
    assert scanner.status().complete is False and scanner.status().last_pass_at is None
    before = time.time()
    batch = await scanner.step(aredis)
    assert batch.pass_complete and batch.round_trips == 1
    assert set(batch.keys) == names and len(batch.keys) == 50
    status = scanner.status()
    assert status.complete and status.passes == 1 and status.scanned_in_pass == 0
    assert status.last_pass_at is not None and before <= status.last_pass_at <= time.time()


async def test_a_budgeted_pass_spreads_over_steps(aredis: Redis, sync_redis: redis.Redis) -> None:
    """300 keys, COUNT 10, budget 3: every step but the last makes exactly 3 calls and says the pass
    is partial (with the keys seen so far); the last one ends it; together they saw every key."""
    n, count, budget = 300, 10, 3
    names = seed(sync_redis, n)
    scanner = KeyspaceScanner(budget=budget, count=count)
    batches = await rest_of_pass(scanner, aredis)
    *partial, last = batches
    assert partial, "300 keys at 10 per call cannot fit one step of 3 calls"
    assert all(b.round_trips == budget and not b.pass_complete for b in partial)
    assert last.pass_complete and 1 <= last.round_trips <= budget
    assert keys_of(batches) == names
    calls = sum(b.round_trips for b in batches)
    # SCAN returns at least COUNT keys per call until the last: at most n // count + 1 calls.
    assert calls <= n // count + 1
    assert len(batches) == math.ceil(calls / budget)


async def test_status_reports_a_partial_pass(aredis: Redis, sync_redis: redis.Redis) -> None:
    seed(sync_redis, 300)
    scanner = KeyspaceScanner(budget=2, count=10)
    first = await scanner.step(aredis)
    second = await scanner.step(aredis)
    assert not first.pass_complete and not second.pass_complete
    status = scanner.status()
    assert status.complete is False and status.passes == 0 and status.last_pass_at is None
    assert status.scanned_in_pass == len(first.keys) + len(second.keys) >= 2 * 2 * 10
    await rest_of_pass(scanner, aredis)
    status = scanner.status()
    assert status.complete and status.passes == 1 and status.scanned_in_pass == 0


async def test_note_db_size_is_reported_by_status(aredis: Redis, sync_redis: redis.Redis) -> None:
    seed(sync_redis, 7)
    scanner = KeyspaceScanner()
    assert scanner.status().db_size is None
    scanner.note_db_size(await aredis.dbsize())
    assert scanner.status().db_size == 7
    await scanner.step(aredis)
    assert scanner.status().db_size == 7  # a step does not forget it
    scanner.note_db_size(None)  # DBSIZE not read (a failed cycle): unknown, not a stale number
    assert scanner.status().db_size is None


async def test_the_next_pass_starts_after_one_completes(aredis: Redis, sync_redis: redis.Redis) -> None:
    """With no pause, the step after a completed pass starts over from cursor 0 and sees every key
    again; while it is in progress the status stays complete (one pass finished) and counts the new one."""
    names = seed(sync_redis, 300)
    scanner = KeyspaceScanner(budget=1, count=10, rescan_interval=0)
    assert keys_of(await rest_of_pass(scanner, aredis)) == names
    started = await scanner.step(aredis)
    assert started.round_trips == 1 and started.keys and not started.pass_complete
    status = scanner.status()
    assert status.complete and status.passes == 1 and status.scanned_in_pass == len(started.keys)
    assert keys_of([started, *await rest_of_pass(scanner, aredis)]) == names
    assert scanner.status().passes == 2


async def test_after_a_long_pass_the_scanner_rests_until_rescan_soon(
    aredis: Redis, sync_redis: redis.Redis
) -> None:
    """A pass of many calls pauses the next one (0.25 s per call, up to `rescan_interval`, 15 s):
    steps in between cost no round trip. `rescan_soon()` (after a write) ends the pause."""
    names = seed(sync_redis, 1000)
    scanner = KeyspaceScanner(budget=2000, count=1)
    batch = await scanner.step(aredis)
    assert batch.pass_complete and batch.round_trips >= 60  # so the pause is the full 15 s
    resting = await scanner.step(aredis)
    assert resting == ScanBatch((), False, 0)
    assert scanner.status().passes == 1
    scanner.rescan_soon()
    again = await scanner.step(aredis)
    assert again.pass_complete and set(again.keys) == names
    assert scanner.status().passes == 2


async def test_keys_written_mid_pass_are_seen_by_the_next_pass(
    aredis: Redis, sync_redis: redis.Redis
) -> None:
    """SCAN promises the keys present for a whole pass; keys written during one may be missed by it,
    but the next pass sees them."""
    names = seed(sync_redis, 300)
    scanner = KeyspaceScanner(budget=1, count=10, rescan_interval=0)
    first = await scanner.step(aredis)
    assert not first.pass_complete
    late = seed(sync_redis, 100, prefix="late")
    assert keys_of([first, *await rest_of_pass(scanner, aredis)]) >= names
    assert keys_of(await rest_of_pass(scanner, aredis)) == names | late


async def test_key_names_that_are_not_utf8_round_trip(aredis: Redis, sync_redis: redis.Redis) -> None:
    sync_redis.set(b"q:\xff\xfe", "x")
    sync_redis.set("q:é", "x")
    batch = await KeyspaceScanner().step(aredis)
    assert set(batch.keys) == {"q:\udcff\udcfe", "q:é"}
    # Encoded back the way the clients encode names, each one is the key Redis holds.
    assert await aredis.exists(*(k.encode("utf-8", "surrogateescape") for k in batch.keys)) == 2
