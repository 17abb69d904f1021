"""Issue 11, item 1 (and item 7's big ints): tiny hostile payloads cost at most their decode budget.

Each payload is written into a real Redis as Arq jobs and results and as Dramatiq messages, and read
by everything that decodes: the results index, the stuck check, the dead-letter reader, job lists,
job pages, search, and (over HTTP) `callboard serve`. Each must show as undecodable with
"exceeds decode budget" (a big int must render), every read must finish, the event loop of the
process that reads must keep ticking, and that process must not grow by hundreds of MB.

The payloads, all built by hand from pickle opcodes (none is ever unpickled by this file):
    DECIMAL_INT   52 bytes, `int(Decimal('1e1000000'))`: ~40 s of CPU
    HUGE_MEMO     LONG_BINPUT 2**26: the unpickler's memo grows to 512 MB (1.1 GB seen)
    HUGE_LIST     `list(range(10**8))`: ~4 GB
    SHARED_LIST   ~210 bytes, a list of 2 references to one list, 23 levels: 8M items when walked
    BIG_INT       an int of 5,000 digits: str() and json.dumps() refuse it (sys.get_int_max_str_digits)
"""

from __future__ import annotations

import asyncio
import json
import pickle
import re
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from callboard.collectors import decoding
from callboard.collectors.arq import browse as arq_browse
from callboard.collectors.arq import codec as arq_codec
from callboard.collectors.arq import keys as arq_keys
from callboard.collectors.arq import results as arq_results
from callboard.collectors.arq import search as arq_search
from callboard.collectors.arq.config import ArqConfig
from callboard.collectors.arq.snapshot import ArqCollector
from callboard.collectors.dramatiq import browse as dramatiq_browse
from callboard.collectors.dramatiq import search as dramatiq_search
from callboard.collectors.dramatiq.keys import QueueKeys
from callboard.collectors.failures import UNDECODABLE
from callboard.collectors.model import Framework, JobDetail, JobSummary
from callboard.collectors.search import Query, Scan, Source
from callboard.collectors.target import TargetCollector
from tests.conftest import flushed
from tests.servers import Callboard, RedisServer, wait_until

BUDGET = "exceeds decode budget"
#: The poller's default cycle timeout (2 x the default redis_timeout): a cycle must stay under it.
CYCLE_LIMIT = 4.0
#: The event loop's largest allowed pause while hostile payloads decode.
MAX_GAP = 0.3
#: Peak RSS growth allowed to the reading process (main grew by 1 to 4 GB).
MAX_GROWTH_MB = 100


def _pickle_str(text: str) -> bytes:
    data = text.encode()
    return b"X" + len(data).to_bytes(4, "little") + data  # BINUNICODE


def decimal_int(exponent: int = 1_000_000) -> bytes:
    """GLOBAL builtins int, GLOBAL decimal Decimal, '1e<exponent>', TUPLE1, REDUCE, TUPLE1, REDUCE."""
    body = b"cbuiltins\nint\ncdecimal\nDecimal\n" + _pickle_str(f"1e{exponent}") + b"\x85R\x85R"
    return b"\x80\x02" + body + b"."


def huge_memo(index: int = 2**26) -> bytes:
    """EMPTY_LIST, LONG_BINPUT index."""
    return b"\x80\x02]r" + index.to_bytes(4, "little") + b"."


def huge_list(n: int = 10**8) -> bytes:
    """GLOBAL builtins list, GLOBAL builtins range, BININT n, TUPLE1, REDUCE, TUPLE1, REDUCE."""
    return b"\x80\x02cbuiltins\nlist\ncbuiltins\nrange\nJ" + n.to_bytes(4, "little") + b"\x85R\x85R."


def shared_list_ops(levels: int = 23) -> bytes:
    """Opcodes that push one list: level i holds level i-1 twice (BINGET of its memo slot)."""
    ops = b"]q\x000"  # EMPTY_LIST, BINPUT 0, POP
    for i in range(1, levels + 1):
        previous = b"h" + bytes([i - 1])
        ops += b"(" + previous + previous + b"lq" + bytes([i])  # MARK, BINGET x2, LIST, BINPUT i
        ops += b"0" if i < levels else b""  # POP: only the last level stays on the stack
    return ops


def shared_list(levels: int = 23) -> bytes:
    return b"\x80\x02" + shared_list_ops(levels) + b"."


def arq_job_with_shared_args(levels: int = 23) -> bytes:
    """An Arq job dict {'f': 'fn', 'a': <shared list>, 'k': {}} by hand (memo slots 0-levels, then more)."""
    f, a, k, fn = _pickle_str("f"), _pickle_str("a"), _pickle_str("k"), _pickle_str("fn")
    return b"\x80\x02}q\xf0(" + f + fn + a + shared_list_ops(levels) + k + b"}u."  # EMPTY_DICT, SETITEMS


BIG_INT = 10**4999  # 5,000 digits, 16,607 bits
BIG_INT_TEXT = "<int of 16,607 bits>"

HOSTILE = {"decimal": decimal_int(), "memo": huge_memo(), "range": huge_list()}


# -- probes ------------------------------------------------------------------------------------------


@dataclass
class Probe:
    """The largest pause of this process's event loop, and its peak RSS growth, over a block."""

    max_gap: float = 0.0
    growth_mb: float = 0.0


@asynccontextmanager
async def probe() -> AsyncIterator[Probe]:
    result = Probe()
    stop = asyncio.Event()

    async def tick() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            result.max_gap = max(result.max_gap, now - last)
            last = now

    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # resets VmHWM (peak RSS) to the current RSS
    start = _status_kb("VmRSS")
    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.02)
    try:
        yield result
    finally:
        stop.set()
        await ticker
        result.growth_mb = (_status_kb("VmHWM") - start) / 1024


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        found = re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.MULTILINE)
    assert found, field
    return int(found.group(1))


def assert_calm(p: Probe) -> None:
    assert p.max_gap < MAX_GAP, f"the event loop stalled for {p.max_gap:.2f} s"
    assert p.growth_mb < MAX_GROWTH_MB, f"the process grew by {p.growth_mb:.0f} MB"


def over_budget(item: JobSummary | JobDetail) -> str:
    assert item.undecodable is not None, f"{item.job_id} decoded: {item}"
    assert BUDGET in item.undecodable.reason, item.undecodable.reason
    return item.undecodable.reason


# -- the data ----------------------------------------------------------------------------------------

NOW_MS = int(time.time() * 1000)
Q = "arq:queue"
DQ = QueueKeys("dramatiq", "default")


def job(args: list[Any], kwargs: dict[str, Any] | None = None) -> bytes:
    return pickle.dumps({"t": 1, "f": "fn", "a": args, "k": kwargs or {}, "et": NOW_MS - 60_000})


def result(ok: bool, value: Any) -> bytes:
    record: dict[str, Any] = {
        "t": 1,
        "f": "fn",
        "a": [1],
        "k": {},
        "et": NOW_MS - 60_000,
        "s": ok,
        "r": value,
    }
    record |= {"st": NOW_MS - 50_000, "ft": NOW_MS - 40_000, "q": Q}
    return pickle.dumps(record)


def message(rid: str, args: list[Any]) -> bytes:
    body: dict[str, Any] = {
        "queue_name": "default",
        "actor_name": "act",
        "args": args,
        "kwargs": {},
        "options": {},
    }
    body |= {"message_id": f"m-{rid}", "message_timestamp": NOW_MS - 60_000}
    return json.dumps(body).encode()


#: Dramatiq JSON cannot hold a 5,000-digit int for Python's json module: written as text.
BIG_JSON = b'{"actor_name": "act", "args": [1' + b"0" * 4999 + b'], "kwargs": {}, "options": {}}'


def seed(url: str) -> None:
    """Arq: jobs (ready) and results; an old claim on `decimal` (the stuck check); Dramatiq: the same
    payloads ready and dead, in a namespace with a heartbeat."""
    with redis.Redis.from_url(url) as r:
        jobs = {
            **HOSTILE,
            "shared": arq_job_with_shared_args(),
            "bigint": job([BIG_INT, "x"], {"n": -BIG_INT}),
        }
        jobs["ok"] = job([1, "builtins"])
        for job_id, raw in jobs.items():
            r.set(arq_keys.job_key(job_id), raw)
            r.zadd(Q, {job_id: NOW_MS - 60_000})
        results = {f"r-{k}": v for k, v in HOSTILE.items()}
        results |= {"r-bigint": result(False, ValueError(BIG_INT)), "r-ok": result(True, 2)}
        for job_id, raw in results.items():
            r.set(arq_keys.result_key(job_id), raw)
        r.set(arq_keys.in_progress_key("decimal"), b"1")
        messages = {
            "d-pickle": HOSTILE["decimal"],
            "d-bigjson": BIG_JSON,
            "d-ok": message("d-ok", ["builtins"]),
        }
        r.zadd("dramatiq:__heartbeats__", {"worker": NOW_MS})
        for rid, raw in messages.items():
            r.hset(DQ.msgs, rid, raw)
            r.rpush(DQ.ready, rid)
            r.hset(DQ.dead_msgs, f"x{rid}", raw)
            r.zadd(DQ.dead, {f"x{rid}": NOW_MS - 30_000})


@pytest.fixture
def redis_url(one_redis: RedisServer) -> str:
    decoding.forget_strikes()  # each test measures the first decode of each payload
    url = flushed(one_redis)
    seed(url)
    return url


@pytest.fixture
async def target(aredis: Redis) -> TargetCollector:
    """A target collector, its decoder processes started as `callboard serve` starts them (lifespan)."""
    decoding.start()
    for lane in decoding.Lane:
        await decoding.run(arq_codec.decode, [(pickle.dumps(1), "auto")], lambda call, why: None, lane=lane)
    return TargetCollector("t", aredis, arq=ArqCollector(ArqConfig(job_timeout=0.0)))


# -- the poller's reads ------------------------------------------------------------------------------


async def test_the_poller_pays_each_hostile_payload_once_within_its_cycle_timeout(
    target: TargetCollector,
) -> None:
    """Results index, stuck check, dead-letter reader and queue heads: every cycle stays under the
    poller's timeout (a hostile result no longer makes the target flap down), the index completes,
    and the hostile results are indexed as undecodable over budget."""
    assert len(decimal_int()) == 52 and 200 <= len(shared_list()) <= 220 and BIG_INT.bit_length() == 16_607
    cycles: list[float] = []
    async with probe() as p:
        for _ in range(12):
            started = time.monotonic()
            snapshot = await target.collect()
            cycles.append(time.monotonic() - started)
            if target.arq.results.complete and len(target.dramatiq.failures) == 3:
                break
    assert_calm(p)
    assert max(cycles) < CYCLE_LIMIT, cycles
    index = target.arq.results
    assert index.complete, f"still pending: {sorted(index.pending)}"
    for name in HOSTILE:
        entry = index.entries[f"r-{name}"]
        assert entry.exception == UNDECODABLE and entry.error is not None and BUDGET in entry.error, entry
    assert index.entries["r-ok"].ok
    bigint = index.entries["r-bigint"]
    assert bigint.exception == "ValueError" and bigint.error == f"ValueError: {BIG_INT_TEXT}"
    # The stuck check read the claimed job's payload (over budget: no function name) and went on.
    assert [(s.job_id, s.name) for s in snapshot.stuck] == [("decimal", None)]
    groups = {(g.exception, g.name) for g in snapshot.failures if g.framework == "dramatiq"}
    assert groups == {(UNDECODABLE, None), ("(no traceback)", "act")}
    assert snapshot.queues and all(q.total >= 0 for q in snapshot.queues)


async def test_a_hostile_result_is_decoded_once_then_remembered(target: TargetCollector) -> None:
    await target.collect()
    await target.collect()
    started = time.monotonic()
    [entry] = await decoding.run(
        arq_results.result_entry_of,
        [(HOSTILE["decimal"], "auto", -1, time.time())],
        arq_results.unreadable_result,
        lane=decoding.Lane.BACKGROUND,
    )
    assert entry.error is not None and BUDGET in entry.error
    assert time.monotonic() - started < 0.5


# -- pages -------------------------------------------------------------------------------------------


async def test_job_lists_and_job_pages_show_hostile_payloads_over_budget(
    aredis: Redis, target: TargetCollector
) -> None:
    async with probe() as p:
        page = await arq_browse.list_jobs(aredis, target.arq, Q, "ready", 0, 50)
        rows = {item.job_id: item for item in page.items}
        details = {
            j: await arq_browse.get_job(aredis, target.arq, Q, j) for j in [*rows, "r-decimal", "r-bigint"]
        }
        dq_rows = {
            state: await dramatiq_browse.list_jobs(aredis, DQ, state, 0, 50, [])
            for state in ("ready", "dead")
        }
        dq_details = {
            rid: await dramatiq_browse.get_job(aredis, DQ, rid, [])
            for rid in ("d-pickle", "d-bigjson", "d-ok")
        }
    assert_calm(p)
    for name in HOSTILE:
        over_budget(rows[name])
        detail = details[name]
        assert detail is not None
        over_budget(detail)
    assert details["r-decimal"] is not None
    over_budget(details["r-decimal"])
    # The shared list: a short preview walks a few items only; the page, which shows it all, cannot.
    assert rows["shared"].name == "fn" and rows["shared"].call_preview.startswith("fn([[")
    shared = details["shared"]
    assert shared is not None
    over_budget(shared)
    # The big int renders: folded in previews, as text on the page, exactly in "copy as code".
    assert BIG_INT_TEXT in rows["bigint"].call_preview
    bigint = details["bigint"]
    assert bigint is not None and bigint.undecodable is None
    assert bigint.args == [BIG_INT_TEXT, "x"] and bigint.kwargs == {"n": "<negative int of 16,607 bits>"}
    assert bigint.call is not None and bigint.call.args == (BIG_INT, "x")
    json.dumps([bigint.args, bigint.kwargs, bigint.raw])  # what the API and the page render
    failed = details["r-bigint"]
    assert failed is not None and failed.result is not None
    assert failed.result.exception_message == BIG_INT_TEXT
    ok = details["ok"]
    assert ok is not None and ok.args == [1, "builtins"]
    # Dramatiq: the same bytes are not JSON; every tab and page answers.
    for state, dq_page in dq_rows.items():
        assert len(dq_page.items) == 3, state
    reasons = {rid: d.undecodable.reason if d and d.undecodable else None for rid, d in dq_details.items()}
    assert reasons["d-ok"] is None
    assert reasons["d-pickle"] is not None and "pickle payload" in reasons["d-pickle"]
    assert reasons["d-bigjson"] is not None and "not JSON" in reasons["d-bigjson"]


async def test_a_page_of_hostile_payloads_takes_seconds_not_one_per_payload(
    redis_url: str, aredis: Redis, target: TargetCollector
) -> None:
    """Ten distinct 40-second payloads on one page: two pay their budget, the rest are skipped."""
    with redis.Redis.from_url(redis_url) as r:
        for i in range(10):
            r.set(arq_keys.job_key(f"slow{i}"), decimal_int(1_000_000 + i))
            r.zadd("arq:slow", {f"slow{i}": NOW_MS - 1000 + i})
    started = time.monotonic()
    async with probe() as p:
        page = await arq_browse.list_jobs(aredis, target.arq, "arq:slow", "ready", 0, 50)
    elapsed = time.monotonic() - started
    assert_calm(p)
    reasons = [item.undecodable.reason if item.undecodable else None for item in page.items]
    assert reasons[:2] == [decoding.OVER_TIME] * 2
    assert set(reasons[2:]) == {decoding.SKIPPED}
    assert elapsed < 2 * decoding.BUDGET_SECONDS + 2.0, elapsed


# -- search ------------------------------------------------------------------------------------------


def search_plan() -> list[Source]:
    """What `sources()` makes of the seeded target once discovery has run (built here by hand)."""
    results = tuple(f"r-{name}" for name in [*HOSTILE, "bigint", "ok"])
    return [
        Source("t", Framework.DRAMATIQ, DQ.ready, dramatiq_search.PAYLOADS, DQ.msgs, "ready"),
        Source(
            "t",
            Framework.DRAMATIQ,
            DQ.ready,
            dramatiq_search.PAYLOADS,
            DQ.dead_msgs,
            "dead",
            dead_times=DQ.dead,
        ),
        Source("t", Framework.ARQ, Q, arq_search.QUEUE, Q, "queued"),
        Source("t", Framework.ARQ, Q, arq_search.RESULTS, "", "results", ids=results),
    ]


async def test_search_over_hostile_payloads_finishes_and_finds_the_rest(
    aredis: Redis, target: TargetCollector
) -> None:
    """The word "builtins" is in the bytes of the hostile pickles (and of the failed result that holds
    a big int): they are candidates, decoded. Each costs its budget; the search goes on, finds the rest."""
    started = time.monotonic()
    async with probe() as p:
        scan = Scan(aredis, Query("builtins"), search_plan())
        await scan.measure()
        hits = []
        while not scan.done:
            hits += await scan.step()
        lookup = await Scan(aredis, Query("decimal"), search_plan()).lookup()
    assert_calm(p)
    assert time.monotonic() - started < 20
    assert {(h.framework.value, h.job.job_id) for h in hits} >= {("dramatiq", "d-ok"), ("arq", "ok")}
    assert all(h.job.undecodable is None or BUDGET in h.job.undecodable.reason for h in hits)
    [found] = [h for h in lookup if h.framework == "arq"]
    assert found.job.job_id == "decimal" and found.matched == "id"
    over_budget(found.job)


# -- HTTP: callboard serve ---------------------------------------------------------------------------


def test_big_ints_render_over_http_and_healthz_answers_during_hostile_decodes(redis_url: str) -> None:
    board = Callboard([f"t={redis_url}"]).start(poll_interval=0.25)
    try:
        wait_until(
            lambda: any(q["key"] == Q for q in json.loads(board.get("/api/v1/queues")[1])["queues"]),
            timeout=20,
            what="the Arq queue on the board",
        )
        queue = urllib.parse.quote(Q, safe="")
        slowest = _healthz_while(board, lambda: board.get(f"/jobs/t/arq/{queue}/decimal"))
        assert slowest < MAX_GAP + 0.2, f"/healthz took {slowest:.2f} s while a hostile job page decoded"
        status, body = board.get(f"/queues/t/arq/{queue}?state=ready")
        assert status == 200 and "&lt;int of 16,607 bits&gt;" in body
        status, body = board.get(f"/jobs/t/arq/{queue}/bigint")
        assert status == 200 and "int of 16,607 bits" in body
        status, body = board.get(f"/api/v1/jobs/t/arq/{queue}/bigint")
        assert status == 200, body
        data = json.loads(body)
        assert data["args"] == [BIG_INT_TEXT, "x"]
        assert data["resend_code"] is not None and hex(BIG_INT) in data["resend_code"]
        status, body = board.get(f"/api/v1/queues/t/arq/{queue}/jobs?state=ready")
        assert status == 200 and BIG_INT_TEXT in body
        status, body = board.get(f"/jobs/t/arq/{queue}/r-bigint")
        assert status == 200 and "int of 16,607 bits" in body
        status, body = board.get(f"/jobs/t/arq/{queue}/shared")
        assert status == 200 and BUDGET in body
    finally:
        board.stop()


def _healthz_while(board: Callboard, slow: Callable[[], Any]) -> float:
    """The slowest /healthz answer while `slow()` runs in another thread."""
    thread = threading.Thread(target=slow)
    thread.start()
    slowest = 0.0
    while thread.is_alive():
        started = time.monotonic()
        status, _ = board.get("/healthz")
        assert status == 200
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.02)
    thread.join()
    return slowest
