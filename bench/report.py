"""Invariant checks, the stdout tables and the JSON file."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: The cycle at the large queue may take at most this many times the cycle at the small one.
LARGE_QUEUE_FACTOR = 3.0
#: Under load the poller must keep at least this share of its idle rate (else the Redis-rate check
#: passes vacuously, and every page shows stale numbers).
POLL_PACE = 0.10


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


def fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [[fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        out = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


# -- checks ------------------------------------------------------------------------------------------


def snapshot_checks(results: list[dict[str, Any]]) -> list[Check]:
    by = {r["scenario"]: r for r in results}
    checks = []
    for r in results:
        d = r["discovery_first_pass"]
        checks.append(
            Check(
                f"{r['scenario']}: discovery completed a full pass",
                bool(d["complete"]),
                f"{d['cycles']} cycle(s), {d['round_trips']} round trips",
            )
        )
        # Every cycle: its counters in exactly one round trip; each cycle that also took budgeted
        # background steps (discovery, dead-letter walk) is listed, never hidden behind a mode.
        odd = r["round_trips"]["not_one"]
        counters = [f"cycle {i}: {t - b}" for i, t, b in odd if t - b != 1]
        extra = ", ".join(f"#{i} {t} ({b} background)" for i, t, b in odd)
        checks.append(
            Check(
                f"{r['scenario']}: counters in one round trip in every steady cycle",
                r["cycles"] > 0 and not counters,
                "; ".join(counters)
                or f"{r['cycles']} cycles; {len(odd)} with background steps{': ' + extra if odd else ''}",
            )
        )
        bad = r["count_mismatches"]
        checks.append(
            Check(
                f"{r['scenario']}: snapshot counts equal the seeded counts",
                not bad,
                "; ".join(bad) if bad else f"{r['queues_in_snapshot']:,} queues match",
            )
        )
    # Round trips: one in every cycle of every scenario (checked above), whatever the queue's length
    # or the number of queues; not "the most common value is the same in two scenarios".
    small, large = by.get("small"), by.get("large")
    if small and large:
        ms, ml = small["wall_ms"]["median"], large["wall_ms"]["median"]
        checks.append(
            Check(
                f"cycle median with the large queue < {LARGE_QUEUE_FACTOR:g}x the small queue's",
                ml < LARGE_QUEUE_FACTOR * ms,
                f"{ml:.3f} ms vs {ms:.3f} ms = {ml / ms:.2f}x",
            )
        )
    return checks


def arq_checks(results: list[dict[str, Any]], head_window: int) -> list[Check]:
    """Per Arq scenario: the index pass and its budgets, counts, one round trip; then large vs baseline."""
    checks = []
    for r in results:
        name, x = r["scenario"], r["index_pass"]
        checks.append(
            Check(
                f"{name}: results index finished a full pass within {x['cycle_limit']} cycles",
                bool(x["complete"]),
                f"{x['cycles']} cycles, {x['seconds']:.2f} s of cycles, {x['index_entries']:,} indexed",
            )
        )
        checks.append(
            Check(
                f"{name}: index reads ≤ {x['result_budget']:,} result keys per cycle, each key once per pass",
                x["keys_read_per_cycle_max"] <= x["result_budget"] and x["keys_read"] == x["results_seeded"],
                f"max {x['keys_read_per_cycle_max']:,}/cycle; {x['keys_read']:,} read, "
                f"{x['results_seeded']:,} seeded",
            )
        )
        y = r["rescan_pass"]
        scans = max(x["scan_per_cycle_max"], y["scan_per_cycle_max"])
        checks.append(
            Check(
                f"{name}: discovery ≤ {x['scan_budget']} SCAN calls per cycle (first pass, re-scan)",
                scans <= x["scan_budget"],
                f"max {scans}; {x['scan_calls']} and {y['scan_calls']} for the two passes",
            )
        )
        checks.append(
            Check(
                f"{name}: a re-scan pass ends within {y['cycle_limit']} cycles, re-reading no result key",
                bool(y["complete"]) and y["keys_read"] == 0,
                f"{y['cycles']} cycles, {y['scan_calls']} SCAN calls, {y['keys_read']:,} result keys read",
            )
        )
        bad = [f"after the pass: {m}" for m in r["pass_count_mismatches"]]
        bad += [f"steady: {m}" for m in r["count_mismatches"]]
        bad += [f"after the re-scan: {m}" for m in r["rescan_count_mismatches"]]
        checks.append(
            Check(
                f"{name}: queue, result and health-check counts equal the seeded ones (3 times)",
                not bad,
                "; ".join(bad) if bad else f"{r['queues_in_snapshot']} queues match",
            )
        )
        rt = r["round_trips"]
        checks.append(Check(f"{name}: 1 round trip per steady cycle", rt["steady"] == 1, _trips_text(rt)))
    by = {r["scenario"]: r for r in results}
    small, large = by.get("arq-small"), by.get("arq-large")
    if small and large:
        ms, ml = small["wall_ms"]["median"], large["wall_ms"]["median"]
        checks.append(
            Check(
                f"Arq cycle median with {large['jobs']:,} jobs + {large['results']:,} results "
                f"< {LARGE_QUEUE_FACTOR:g}x the baseline's ({small['jobs']} + {small['results']})",
                ml < LARGE_QUEUE_FACTOR * ms,
                f"{ml:.3f} ms vs {ms:.3f} ms = {ml / ms:.2f}x",
            )
        )
        cs, cl = small["redis_commands_per_cycle"], large["redis_commands_per_cycle"]
        allowed = cs + large["queues"] * head_window
        checks.append(
            Check(
                f"Arq Redis commands per steady cycle ≤ baseline + queues x head window ({head_window})",
                cl <= allowed,
                f"{cl:,.0f} vs {cs:,.0f} (allowed {allowed:,.0f})",
            )
        )
    return checks


def _trips_text(rt: dict[str, Any]) -> str:
    extra = (
        f", {rt['cycles_with_discovery']} cycle(s) with a SCAN step" if rt["cycles_with_discovery"] else ""
    )
    return f"{rt['steady']} ({rt['min']}-{rt['max']}){extra}"


def http_checks(result: dict[str, Any], required: tuple[str, ...], margin: float) -> list[Check]:
    checks = []
    status = result["status_before_load"]
    for path in required:
        checks.append(Check(f"{path} answers 200", status.get(path) == 200, f"HTTP {status.get(path)}"))
    sustained = result["sustained"]
    failed = [
        f"{row['path']} c={row['concurrency']}: {row['errors']}"
        for row in [*result["levels"], sustained]
        if row["errors"]
    ]
    checks.append(Check("no failed requests under load", not failed, "; ".join(failed) or "none"))
    idle, load = result["idle_redis"], sustained["redis"]
    clients = sustained["concurrency"]
    # One poll round of slack: a window can hold one round more than its length implies.
    allowed = idle["commands_per_s"] * margin + idle["commands_per_round"] / load["seconds"]
    checks.append(
        Check(
            f"Redis commands/s with {clients} clients ≈ idle (≤ {margin:g}x idle + one poll round)",
            load["commands_per_s"] <= allowed,
            f"{load['commands_per_s']:,.0f}/s under load vs {idle['commands_per_s']:,.0f}/s idle "
            f"(allowed {allowed:,.0f}/s)",
        )
    )
    pace = load["poll_rounds_per_s"] / idle["poll_rounds_per_s"] if idle["poll_rounds_per_s"] else 0.0
    effective = f"{result['poll_interval'] / pace:.1f} s" if pace else "no round completed"
    checks.append(
        Check(
            f"poller kept collecting with {clients} clients (≥ {POLL_PACE:.0%} of its idle rounds/s)",
            pace >= POLL_PACE,
            f"{load['poll_rounds_per_s']:.2f} rounds/s under load vs {idle['poll_rounds_per_s']:.2f}/s idle "
            f"({pace:.0%}; effective interval {effective} "
            f"for {result['poll_interval']:g} s configured)",
        )
    )
    return checks


# -- output ------------------------------------------------------------------------------------------


def snapshot_table(results: list[dict[str, Any]]) -> str:
    headers = [
        "scenario", "keys", "cycles", "RT/cycle", "median ms", "p95 ms", "floor ms",
        "x floor", "p95 x floor", "server µs", "evalsha µs", "cmds/cycle", "1st pass",
    ]  # fmt: skip
    rows = []
    for r in results:
        rt = r["round_trips"]
        trips = str(rt["steady"]) + (f" ({rt['min']}-{rt['max']})" if rt["min"] != rt["max"] else "")
        d = r["discovery_first_pass"]
        rows.append(
            [
                r["label"],
                r["keys"],
                r["cycles"],
                trips,
                r["wall_ms"]["median"],
                r["wall_ms"]["p95"],
                r["floor_ms"]["median"],
                r["ratio_median"],
                r["ratio_p95"],
                r["server_usec_per_cycle"]["total"],
                r["server_usec_per_cycle"]["evalsha"],
                r["redis_commands_per_cycle"],
                f"{d['cycles']} cyc/{d['round_trips']} RT/{d['seconds'] * 1000:.1f} ms",
            ]
        )
    return table(headers, rows)


def index_table(results: list[dict[str, Any]]) -> str:
    headers = [
        "scenario", "result keys", "cycles", "s of cycles", "s at poll", "cycle median ms", "cycle max ms",
        "keys/cycle max", "budget", "SCAN/cycle max", "MGET/cycle max", "server µs median", "server µs max",
    ]  # fmt: skip
    rows = []
    for r, x, label in [
        (r, r[part], r["label"] + suffix)
        for r in results
        for part, suffix in (("index_pass", ""), ("rescan_pass", ", re-scan"))
    ]:
        rows.append(
            [
                label,
                r["results"],
                x["cycles"],
                x["seconds"],
                x["seconds_at_default_poll"],
                x["wall_ms"]["median"],
                x["wall_ms"]["max"],
                x["keys_read_per_cycle_max"],
                r["index_pass"]["result_budget"],
                x["scan_per_cycle_max"],
                x["mget_per_cycle_max"],
                x["server_usec_per_cycle"]["median"],
                x["server_usec_per_cycle"]["max"],
            ]
        )
    return table(headers, rows)


def http_table(result: dict[str, Any]) -> str:
    headers = [
        "path", "clients", "requests", "errors", "p50 ms", "p95 ms", "req/s",
        "p50 x healthz", "p95 x healthz", "req/s x healthz", "KiB",
    ]  # fmt: skip
    rows = []
    for r in [*result["levels"], result["sustained"]]:
        rows.append(
            [
                r["path"],
                r["concurrency"],
                r["requests"],
                sum(r["errors"].values()),
                r["latency_ms"]["median"],
                r["latency_ms"]["p95"],
                r["throughput_rps"],
                r.get("ratio_p50"),
                r.get("ratio_p95"),
                r.get("throughput_ratio"),
                r["body_bytes"] / 1024,
            ]
        )
    return table(headers, rows)


def checks_text(checks: list[Check]) -> str:
    return "\n".join(f"  [{'PASS' if c.ok else 'FAIL'}] {c.name}: {c.detail}" for c in checks)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, data: dict[str, Any], checks: list[Check]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = _clean({**data, "checks": [asdict(c) for c in checks], "ok": all(c.ok for c in checks)})
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
