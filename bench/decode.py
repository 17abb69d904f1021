"""The decode budget's cost: decoding in decoder processes against decoding in process (issue 11).

The same payloads, decoded both ways by the same pure builders:
* Arq results as arq's `serialize_result` pickles them (successes and failures, one in three a user
  exception, decoded as a placeholder), into results-index entries (`arq_index.result_entry_of`): in
  process, as main did on the event loop, and through the `background` lane in runs of 1,000, as the
  results index reads them;
* Dramatiq messages as Dramatiq 2.x encodes them (compact JSON), into job-list rows
  (`dramatiq_codec.summary`): in process, and through the `interactive` lane in runs of 50 (a page).
Ratios (pool / in process) are of the best of ROUNDS rounds each, measured in the same run. While the
pool decodes, a 1 ms ticker measures the event loop's pauses (p99 and max: the max is mostly the
garbage collector's full collections, which pause a process in any design); in process, the loop is
blocked for the whole batch by construction (reported too).
Then hostile payloads (tests/hostile/test_decode_budget.py): the time until each one's fallback, as a
ratio of the budget, and the same payload again (remembered: not decoded again).
"""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from bench.arqseed import result_payload
from bench.report import Check
from bench.seed import payload
from bench.stats import percentile
from callboard.collectors import decoding
from callboard.collectors.arq import codec as arq_codec
from callboard.collectors.arq import results as arq_index
from callboard.collectors.arq.results import ResultEntry
from callboard.collectors.decoding import Lane
from callboard.collectors.dramatiq import codec as dramatiq_codec
from callboard.collectors.model import JobSummary, Undecodable
from callboard.collectors.payloads import undecodable
from tests.hostile.test_decode_budget import decimal_int, huge_list, huge_memo

ROUNDS = 3
#: Calls per run: what the results index reads per MGET, and a page of a job list.
RESULTS_RUN = 1000
PAGE_RUN = 50
#: Invariants: a hostile payload costs at most this many budgets (the kill, and the spare taking
#: over); the loop's p99 pause while the pool decodes stays under this.
HOSTILE_BUDGETS = 1.5
MAX_LOOP_GAP_MS = 50.0


def _now() -> float:
    return time.time()


def arq_results(n: int) -> list[bytes]:
    now_ms = int(_now() * 1000)
    return [result_payload("arq:queue", uuid.uuid4().hex, i, i % 4 != 0, now_ms - i) for i in range(n)]


def dramatiq_messages(n: int) -> list[tuple[str, bytes]]:
    now_ms = int(_now() * 1000)
    rids = [str(uuid.uuid4()) for _ in range(n)]
    return [(rid, payload("default", rid, i, now_ms).encode()) for i, rid in enumerate(rids)]


def _unreadable_entry(call: decoding.Call, reason: str) -> ResultEntry:
    return arq_index.result_entry(undecodable(call[0], reason), call[2], call[3])


def _unreadable_row(call: decoding.Call, reason: str) -> JobSummary:
    return JobSummary(call[0], call[1], None, "undecodable payload", undecodable=undecodable(call[2], reason))


def _fallback(call: decoding.Call, reason: str) -> Undecodable:
    return undecodable(call[0], reason)


async def _pool(
    fn: Callable[..., Any], calls: list[tuple[Any, ...]], fallback: Any, lane: Lane, size: int
) -> tuple[list[Any], float, list[float]]:
    """(results, seconds, the event loop's pauses meanwhile: every wake-up's delay past 1 ms)."""
    gaps: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    out: list[Any] = []
    for start in range(0, len(calls), size):
        out += await decoding.run(fn, calls[start : start + size], fallback, lane=lane)
    seconds = time.perf_counter() - started
    stop.set()
    await ticker
    return out, seconds, gaps


def _best(samples: Sequence[float]) -> float:
    return min(samples)


async def _compare(
    name: str, fn: Callable[..., Any], calls: list[tuple[Any, ...]], fallback: Any, lane: Lane, size: int
) -> dict[str, Any]:
    old_s: list[float] = []
    new_s: list[float] = []
    gaps: list[float] = []
    same = True
    for _ in range(ROUNDS):
        # The inputs live on: out of the collector's sight, so that a full collection (~100 ms over
        # 20,000 payloads and their results, in any design) does not show as a pause of the pool's.
        gc.collect()
        gc.freeze()
        started = time.perf_counter()
        old = [fn(*c) for c in calls]
        old_s.append(time.perf_counter() - started)
        gc.freeze()  # and the results to compare with
        new, seconds, pauses = await _pool(fn, calls, fallback, lane, size)
        new_s.append(seconds)
        gaps += pauses
        same = same and new == old
        del old, new
        gc.unfreeze()
    old_best, new_best = _best(old_s), _best(new_s)
    return {
        "workload": name,
        "payloads": len(calls),
        "run_size": size,
        "lane": lane.value,
        "in_process_seconds": old_best,
        "pool_seconds": new_best,
        "ratio": new_best / old_best if old_best else None,
        "in_process_us_per_payload": old_best / len(calls) * 1e6,
        "pool_us_per_payload": new_best / len(calls) * 1e6,
        "loop_max_gap_ms": max(gaps) * 1000,
        "loop_p99_gap_ms": percentile(gaps, 99) * 1000,
        "loop_blocked_in_process_ms": old_best * 1000,
        "same_results": same,
    }


async def _hostile() -> list[dict[str, Any]]:
    out = []
    for name, raw in (
        ("int(Decimal('1e1000000')), 52 bytes", decimal_int()),
        ("memo index 2**26", huge_memo()),
        ("list(range(10**8))", huge_list()),
    ):
        decoding.forget_strikes()
        calls = [(raw, "auto")]
        started = time.perf_counter()
        [first] = await decoding.run(arq_codec.decode, calls, _fallback)
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        [again] = await decoding.run(arq_codec.decode, calls, _fallback)
        remembered = time.perf_counter() - started
        reason = first.reason if isinstance(first, Undecodable) else "decoded?!"
        out.append(
            {
                "payload": name,
                "bytes": len(raw),
                "reason": reason,
                "seconds": seconds,
                "budget_ratio": seconds / decoding.BUDGET_SECONDS,
                "again_seconds": remembered,
                "again_reason": again.reason if isinstance(again, Undecodable) else None,
            }
        )
    return out


async def bench_decode(n: int) -> dict[str, Any]:
    started = time.perf_counter()
    decoding.start()  # as `callboard serve` does at startup
    for lane in Lane:  # the zygote imports, each lane forks its decoders: not what is measured
        await decoding.run(arq_codec.decode, [(b"\x80\x04K\x01.", "auto")], _fallback, lane=lane)
    warm = time.perf_counter() - started
    now = _now()
    arq_calls: list[tuple[Any, ...]] = [(raw, "auto", 3_600_000, now) for raw in arq_results(n)]
    dq_calls: list[tuple[Any, ...]] = [(rid, "ready", raw) for rid, raw in dramatiq_messages(n)]
    workloads = [
        await _compare(
            "Arq results -> results index entries",
            arq_index.result_entry_of,
            arq_calls,
            _unreadable_entry,
            Lane.BACKGROUND,
            RESULTS_RUN,
        ),
        await _compare(
            "Dramatiq messages -> job list rows",
            dramatiq_codec.summary,
            dq_calls,
            _unreadable_row,
            Lane.INTERACTIVE,
            PAGE_RUN,
        ),
    ]
    hostile = await _hostile()
    return {
        "payloads": n,
        "rounds": ROUNDS,
        "budget_seconds": decoding.BUDGET_SECONDS,
        "startup_seconds": warm,
        "workloads": workloads,
        "hostile": hostile,
    }


def decode_checks(r: dict[str, Any]) -> list[Check]:
    checks = []
    for w in r["workloads"]:
        checks.append(
            Check(
                f"decode: {w['workload']}: the pool returns what decoding in process returns",
                bool(w["same_results"]),
                f"{w['payloads']:,} payloads, {r['rounds']} rounds",
            )
        )
        checks.append(
            Check(
                f"decode: {w['workload']}: p99 event loop pause while decoding < {MAX_LOOP_GAP_MS:g} ms",
                w["loop_p99_gap_ms"] < MAX_LOOP_GAP_MS,
                f"p99 {w['loop_p99_gap_ms']:.1f} ms, max {w['loop_max_gap_ms']:.1f} ms "
                f"(in process: blocked {w['loop_blocked_in_process_ms']:.0f} ms)",
            )
        )
    for h in r["hostile"]:
        checks.append(
            Check(
                f"decode: hostile {h['payload']} costs ≤ {HOSTILE_BUDGETS:g} budgets, then nothing",
                h["budget_ratio"] <= HOSTILE_BUDGETS
                and "exceeds decode budget" in h["reason"]
                and h["again_reason"] == h["reason"]
                and h["again_seconds"] < 0.1 * r["budget_seconds"],
                f"{h['seconds']:.2f} s = {h['budget_ratio']:.2f} budgets ({h['reason']}); "
                f"again {h['again_seconds'] * 1000:.1f} ms",
            )
        )
    return checks


def decode_text(r: dict[str, Any]) -> str:
    lines = [
        f"   {r['payloads']:,} payloads per workload, best of {r['rounds']} rounds; decoders ready after "
        f"{r['startup_seconds']:.2f} s (zygote import + forks, at server start)"
    ]
    for w in r["workloads"]:
        lines.append(
            f"   {w['workload']}: in process {w['in_process_seconds'] * 1000:.0f} ms "
            f"({w['in_process_us_per_payload']:.1f} µs each, loop blocked throughout), pool "
            f"{w['pool_seconds'] * 1000:.0f} ms in runs of {w['run_size']:,} "
            f"({w['pool_us_per_payload']:.1f} µs each; loop pauses p99 {w['loop_p99_gap_ms']:.1f} ms, "
            f"max {w['loop_max_gap_ms']:.1f} ms): "
            f"ratio {w['ratio']:.2f}"
        )
    for h in r["hostile"]:
        lines.append(
            f"   hostile {h['payload']} ({h['bytes']} bytes): fallback after {h['seconds']:.2f} s = "
            f"{h['budget_ratio']:.2f} x the {r['budget_seconds']:g} s budget ({h['reason']}); "
            f"again: {h['again_seconds'] * 1000:.1f} ms"
        )
    return "\n".join(lines)
