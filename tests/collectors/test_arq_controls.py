"""Arq write controls against exact layouts on a real server (Redis 7 and Valkey), seeded as arq writes them.

Results are written with arq's own `serialize_result` (pickle by default, msgpack or json when given a
serializer, as arq users configure them); what a re-run writes is read back with arq's own
`deserialize_job`, so the test proves a worker can read it.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import json
import pickle
import time
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from arq.jobs import deserialize_job_raw, serialize_result
from redis.asyncio import Redis
from redis.exceptions import WatchError

from callboard.collectors.arq.config import ArqConfig
from callboard.collectors.arq.controls import actions, apply, select_all
from callboard.collectors.arq.keys import ABORT_KEY, in_progress_key, job_key, result_key, retry_key
from callboard.collectors.arq.results import ResultEntry
from callboard.collectors.arq.snapshot import ArqCollector
from callboard.collectors.model import Bound, JobOutcome, Outcome, Selection

Q = "arq:queue"
CUSTOM = "custom"
Serializer = Callable[[dict[str, Any]], bytes]


class Point:
    """A user class: its instances in args become placeholders, which are never written back."""

    def __init__(self, x: int) -> None:
        self.x = x


def now_ms() -> int:
    return int(time.time() * 1000)


def packb(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, datetime=True)
    return data


def unpackb(raw: bytes) -> Any:
    return msgpack.unpackb(raw, timestamp=3)


def json_dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


async def seed_result(
    aredis: Redis,
    job_id: str,
    *,
    args: tuple[Any, ...] = (7,),
    kwargs: dict[str, Any] | None = None,
    ok: bool = False,
    queue: str = Q,
    function: str = "work",
    serializer: Serializer | None = None,
) -> bytes:
    """A finished job as arq's worker stores it: result key (1 h), retry counter and a stale abort entry."""
    now = now_ms()
    result: Any = 14 if ok else ValueError("boom")
    raw = serialize_result(
        function, args, kwargs or {}, 2, now - 100, ok, result, now - 50, now, "ref", queue, job_id,
        serializer=serializer,
    )  # fmt: skip
    assert raw is not None
    await aredis.set(result_key(job_id), raw, px=3_600_000)
    await aredis.set(retry_key(job_id), b"2", ex=88_400)
    await aredis.zadd(ABORT_KEY, {job_id: now - 120_000})
    return raw


def collector(**config: Any) -> ArqCollector:
    return ArqCollector(ArqConfig(**config))


def index(c: ArqCollector, job_id: str, queue: str = Q, ok: bool = False) -> None:
    c.results.add(job_id, ResultEntry(queue, "work", ok, time.time(), None, None if ok else "ValueError"))


async def queued_job(aredis: Redis, job_id: str, score: int, queue: str = Q) -> None:
    job: dict[str, Any] = {"t": None, "f": "work", "a": (1,), "k": {}, "et": now_ms()}
    await aredis.psetex(job_key(job_id), 86_400_000, pickle.dumps(job))
    await aredis.zadd(queue, {job_id: score})


def read_job(raw: bytes | None, deserializer: Callable[[bytes], Any] | None = None) -> tuple[Any, ...]:
    """What arq's worker reads from a job key: (function, args, kwargs, try, enqueue ms)."""
    assert raw is not None
    parts: tuple[Any, ...] = deserialize_job_raw(raw, deserializer=deserializer)
    return parts


def one(outcomes: list[JobOutcome]) -> JobOutcome:
    assert len(outcomes) == 1
    return outcomes[0]


# -- actions -----------------------------------------------------------------------------------------


async def test_actions_per_state_and_refusals(aredis: Redis) -> None:
    assert actions("ready", ArqConfig()) == ("delete",)
    assert actions("deferred", ArqConfig()) == ("delete",)
    assert actions("failed", ArqConfig()) == ("retry", "delete")
    assert actions("succeeded", ArqConfig()) == ("retry", "delete")
    assert actions("in_progress", ArqConfig()) == ()
    assert actions("in_progress", ArqConfig(allow_abort_jobs=True)) == ("abort",)
    assert actions("nonsense", ArqConfig()) == ()
    with pytest.raises(ValueError, match="abort"):
        await apply(aredis, collector(), Q, "in_progress", "abort", ["x"])
    with pytest.raises(ValueError, match="retry"):
        await apply(aredis, collector(), Q, "ready", "retry", ["x"])
    assert await apply(aredis, collector(), Q, "failed", "retry", []) == []


# -- retry: re-run under the same id (A1) ------------------------------------------------------------


async def test_rerun_same_id_writes_what_arq_enqueues(aredis: Redis) -> None:
    await seed_result(aredis, "j1", args=(7, "x"), kwargs={"mult": 3})
    c = collector()
    index(c, "j1")
    before = now_ms()
    out = one(await apply(aredis, c, Q, "failed", "retry", ["j1"]))
    assert (out.outcome, out.in_place, out.new_id) == (Outcome.DONE, False, None)

    raw = await aredis.get(job_key("j1"))
    assert raw is not None and raw[:1] == b"\x80"
    function, args, kwargs, job_try, enqueued = read_job(raw)  # arq's own reader
    assert (function, args, kwargs, job_try) == ("work", (7, "x"), {"mult": 3}, None)
    assert before <= enqueued <= now_ms()
    score = await aredis.zscore(Q, "j1")
    assert score is not None and before <= score <= now_ms()
    assert 86_300_000 < await aredis.pttl(job_key("j1")) <= 86_400_000
    assert await aredis.exists(result_key("j1"), retry_key("j1"), in_progress_key("j1")) == 0
    assert await aredis.zscore(ABORT_KEY, "j1") is None  # a stale abort would cancel the re-run
    assert "j1" not in c.results.entries and c.results.counts[(Q, "failed")] == 0


async def test_rerun_goes_to_the_results_queue_else_the_pages(aredis: Redis) -> None:
    await seed_result(aredis, "c1", queue=CUSTOM, ok=True)
    # A result written before arq 0.20 has no `q`: the page's queue is the only hint.
    old = {"t": 1, "f": "work", "a": (1,), "k": {}, "et": 1, "s": True, "r": 2, "st": 1, "ft": 2}
    await aredis.set(result_key("old"), pickle.dumps(old))
    outs = await apply(aredis, collector(), CUSTOM, "succeeded", "retry", ["c1"])
    outs += await apply(aredis, collector(), "other", "succeeded", "retry", ["old"])
    assert [o.outcome for o in outs] == [Outcome.DONE, Outcome.DONE]
    assert await aredis.zscore(CUSTOM, "c1") is not None and await aredis.zscore(Q, "c1") is None
    assert await aredis.zscore("other", "old") is not None


async def test_double_rerun_runs_once(aredis: Redis) -> None:
    await seed_result(aredis, "twice")
    first = one(await apply(aredis, collector(), Q, "failed", "retry", ["twice"]))
    second = one(await apply(aredis, collector(), Q, "failed", "retry", ["twice"]))
    assert (first.outcome, second.outcome) == (Outcome.DONE, Outcome.CHANGED)
    assert "already gone" in second.detail and not second.in_place
    assert await aredis.zcard(Q) == 1

    # Two operators at the same moment: WATCH lets exactly one through.
    await aredis.delete(job_key("twice"), Q)
    await seed_result(aredis, "twice")
    both = await asyncio.gather(
        *(apply(aredis, collector(), Q, "failed", "retry", ["twice"]) for _ in range(2))
    )
    assert sorted(one(o).outcome for o in both) == [Outcome.CHANGED, Outcome.DONE]
    assert await aredis.zcard(Q) == 1


@pytest.mark.parametrize(
    ("key", "why"), [(job_key, "queued again"), (in_progress_key, "running again")], ids=["queued", "running"]
)
async def test_rerun_refused_while_queued_or_running(
    aredis: Redis, key: Callable[[str], str], why: str
) -> None:
    raw = await seed_result(aredis, "busy")
    await aredis.set(key("busy"), b"1")
    out = one(await apply(aredis, collector(), Q, "failed", "retry", ["busy"]))
    assert (out.outcome, out.in_place) == (Outcome.SKIPPED, True) and why in out.detail
    assert await aredis.get(result_key("busy")) == raw and await aredis.zcard(Q) == 0


@pytest.mark.parametrize("new_id", [False, True], ids=["same-id", "new-id"])
async def test_rerun_refuses_args_with_user_objects(aredis: Redis, new_id: bool) -> None:
    raw = await seed_result(aredis, "obj", args=(1, [Point(3)]), kwargs={"p": {"k": Point(4)}})
    out = one(await apply(aredis, collector(), Q, "failed", "retry", ["obj"], new_id=new_id))
    assert (out.outcome, out.in_place, out.new_id) == (Outcome.SKIPPED, True, None)
    assert out.detail == (
        f"args hold objects of classes Callboard does not import ({__name__}.Point): re-send it from your app"
    )
    assert await aredis.get(result_key("obj")) == raw and await aredis.zcard(Q) == 0


async def test_rerun_refuses_unreadable_and_functionless_results(aredis: Redis) -> None:
    await aredis.set(result_key("garbage"), b"\x80\x05garbage")
    # arq's "job expired" failure names no function: nothing to re-run.
    await seed_result(aredis, "expired", function="<unknown>", args=())
    outs = await apply(aredis, collector(), Q, "failed", "retry", ["garbage", "expired", "missing"])
    assert [(o.outcome, o.in_place) for o in outs] == [
        (Outcome.SKIPPED, True),
        (Outcome.SKIPPED, True),
        (Outcome.CHANGED, False),
    ]
    assert "not readable" in outs[0].detail and "names no function" in outs[1].detail
    assert await aredis.exists(result_key("garbage"), result_key("expired")) == 2


async def test_rerun_as_copy_keeps_the_result(aredis: Redis) -> None:
    raw = await seed_result(aredis, "orig", args=(5,), kwargs={"mult": 2})
    out = one(await apply(aredis, collector(), Q, "failed", "retry", ["orig"], new_id=True))
    assert out.outcome == Outcome.DONE and out.new_id is not None
    assert len(out.new_id) == 32 and int(out.new_id, 16) >= 0  # uuid4().hex, as arq makes ids
    assert await aredis.get(result_key("orig")) == raw  # history stays
    assert await aredis.zrange(Q, 0, -1) == [out.new_id.encode()]
    copy = await aredis.get(job_key(out.new_id))
    assert copy is not None
    assert read_job(copy)[:4] == ("work", (5,), {"mult": 2}, None)


async def test_rerun_rewrites_builtin_values_faithfully(aredis: Redis) -> None:
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    args = (when, decimal.Decimal("1.50"), b"\x00bytes", {"nested": [1, (2, 3)]})
    await seed_result(aredis, "values", args=args, ok=True)
    out = one(await apply(aredis, collector(), Q, "succeeded", "retry", ["values"]))
    assert out.outcome == Outcome.DONE
    raw = await aredis.get(job_key("values"))
    assert raw is not None and read_job(raw)[1] == args


@pytest.mark.parametrize("configured", ["auto", "msgpack"])
async def test_rerun_msgpack(aredis: Redis, configured: str) -> None:
    when = datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC)
    await seed_result(aredis, "mp", args=(1, when), kwargs={"k": "v"}, serializer=packb)
    out = one(await apply(aredis, collector(serializer=configured), Q, "failed", "retry", ["mp"]))
    assert out.outcome == Outcome.DONE
    raw = await aredis.get(job_key("mp"))
    assert raw is not None and raw[:1] == b"\x85"  # a 5-field fixmap, like arq's own msgpack jobs
    function, args, kwargs, job_try, _ = read_job(raw, unpackb)
    assert (function, args, kwargs, job_try) == ("work", [1, when], {"k": "v"}, None)


@pytest.mark.parametrize("configured", ["auto", "json"])
async def test_rerun_json(aredis: Redis, configured: str) -> None:
    await seed_result(aredis, "js", args=(1, "two"), kwargs={"k": [3]}, ok=True, serializer=json_dumps)
    out = one(await apply(aredis, collector(serializer=configured), Q, "succeeded", "retry", ["js"]))
    assert out.outcome == Outcome.DONE
    raw = await aredis.get(job_key("js"))
    assert raw is not None
    job = json.loads(raw)
    assert {k: v for k, v in job.items() if k != "et"} == {
        "t": None,
        "f": "work",
        "a": [1, "two"],
        "k": {"k": [3]},
    }
    assert abs(job["et"] - now_ms()) < 10_000


# -- delete ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("state", "defer"), [("ready", -1000), ("deferred", 600_000)])
async def test_delete_queued_leaves_nothing(aredis: Redis, state: str, defer: int) -> None:
    await queued_job(aredis, "q1", now_ms() + defer)
    await aredis.set(retry_key("q1"), b"1")
    await aredis.zadd(ABORT_KEY, {"q1": now_ms()})
    await queued_job(aredis, "keep", now_ms() + defer)
    out = one(await apply(aredis, collector(), Q, state, "delete", ["q1"]))
    assert (out.outcome, out.detail) == (Outcome.DONE, "deleted")
    assert await aredis.exists(job_key("q1"), retry_key("q1"), in_progress_key("q1")) == 0
    assert await aredis.zscore(ABORT_KEY, "q1") is None
    assert await aredis.zrange(Q, 0, -1) == [b"keep"]
    again = one(await apply(aredis, collector(), Q, state, "delete", ["q1"]))
    assert (again.outcome, again.in_place) == (Outcome.CHANGED, False)


async def test_delete_fences_a_claim_in_flight(aredis: Redis) -> None:
    """A worker past its checks, about to claim, gets a WatchError (skips) instead of "job expired"."""
    await queued_job(aredis, "claimed", now_ms() - 1000)
    progress = in_progress_key("claimed")
    async with aredis.pipeline(transaction=True) as worker:  # arq's Worker.start_jobs, step by step
        await worker.watch(progress)
        assert not await worker.exists(progress)
        assert await worker.zscore(Q, "claimed") is not None
        out = one(await apply(aredis, collector(), Q, "ready", "delete", ["claimed"]))
        assert out.outcome == Outcome.DONE
        worker.multi()  # type: ignore[no-untyped-call]
        worker.psetex(progress, 310_000, b"1")
        with pytest.raises(WatchError):
            await worker.execute()
    assert await aredis.exists(progress, job_key("claimed")) == 0


async def test_delete_running_is_refused(aredis: Redis) -> None:
    await queued_job(aredis, "run", now_ms() - 1000)
    await aredis.set(in_progress_key("run"), b"1", px=310_000)
    out = one(await apply(aredis, collector(), Q, "ready", "delete", ["run"]))
    assert (out.outcome, out.in_place, out.detail) == (Outcome.SKIPPED, True, "running: abort it instead")
    assert await aredis.exists(job_key("run"), in_progress_key("run")) == 2
    assert await aredis.zscore(Q, "run") is not None


@pytest.mark.parametrize("state", ["failed", "succeeded"])
async def test_delete_result(aredis: Redis, state: str) -> None:
    await seed_result(aredis, "r1", ok=state == "succeeded")
    c = collector()
    index(c, "r1", ok=state == "succeeded")
    assert c.results.counts[(Q, state)] == 1
    out = one(await apply(aredis, c, Q, state, "delete", ["r1"]))
    assert out.outcome == Outcome.DONE
    assert await aredis.exists(result_key("r1")) == 0 and c.results.counts[(Q, state)] == 0
    again = one(await apply(aredis, c, Q, state, "delete", ["r1"]))
    assert (again.outcome, again.in_place) == (Outcome.CHANGED, False)


# -- abort (A2) --------------------------------------------------------------------------------------


async def test_abort_only_running_and_never_moves_the_score(aredis: Redis) -> None:
    score = now_ms() - 5000
    await queued_job(aredis, "run", score)
    await aredis.set(in_progress_key("run"), b"1", px=310_000)
    await queued_job(aredis, "idle", score)
    c = collector(allow_abort_jobs=True)
    before = now_ms()
    outs = await apply(aredis, c, Q, "in_progress", "abort", ["run", "idle"])
    assert [o.outcome for o in outs] == [Outcome.DONE, Outcome.CHANGED]
    assert outs[1].detail == "no longer running"
    requested = await aredis.zscore(ABORT_KEY, "run")
    assert requested is not None and before <= requested <= now_ms()  # now: arq drops future entries
    assert await aredis.zscore(ABORT_KEY, "idle") is None
    assert await aredis.zscore(Q, "run") == score and await aredis.zscore(Q, "idle") == score


# -- selections --------------------------------------------------------------------------------------


async def test_select_ready_is_bounded_and_steps_past_skipped(aredis: Redis) -> None:
    now = now_ms()
    for i in range(5):
        await queued_job(aredis, f"r{i}", now - 5000 + i)
    for i in range(3):
        await queued_job(aredis, f"d{i}", now + 600_000 + i)
    await aredis.set(in_progress_key("r0"), b"1")  # running: skipped, stays first in the range
    await aredis.set(in_progress_key("r3"), b"1")
    selection = await select_all(aredis, collector(), Q, "ready")
    assert selection.expected == 5
    await queued_job(aredis, "late", now_ms() + 1)  # due after the selection started

    seen: list[str] = []
    outcomes: list[Outcome] = []
    while batch := await selection.next(2):
        outs = await apply(aredis, collector(), Q, "ready", "delete", batch)
        selection.stayed(sum(o.in_place for o in outs))
        seen += batch
        outcomes += [o.outcome for o in outs]
    assert seen == [f"r{i}" for i in range(5)]
    assert outcomes == [Outcome.SKIPPED, Outcome.DONE, Outcome.DONE, Outcome.SKIPPED, Outcome.DONE]
    assert sorted(await aredis.zrange(Q, 0, -1)) == sorted(b"r0 r3 late d0 d1 d2".split())


async def test_select_deferred_is_bounded_by_the_last_score_at_start(aredis: Redis) -> None:
    now = now_ms()
    await queued_job(aredis, "due", now - 1000)
    for i in range(3):
        await queued_job(aredis, f"d{i}", now + 600_000 + i)
    selection = await select_all(aredis, collector(), Q, "deferred")
    assert selection.expected == 3
    await queued_job(aredis, "later", now + 900_000)
    outs = []
    while batch := await selection.next(2):
        outs += await apply(aredis, collector(), Q, "deferred", "delete", batch)
        selection.stayed(sum(o.in_place for o in outs[-len(batch) :]))
    assert [(o.job_id, o.outcome) for o in outs] == [(f"d{i}", Outcome.DONE) for i in range(3)]
    assert sorted(await aredis.zrange(Q, 0, -1)) == [b"due", b"later"]
    empty = await select_all(aredis, collector(), CUSTOM, "deferred")
    assert empty.expected == 0 and await empty.next(10) == []


async def test_select_in_progress_lists_this_queues_running_ids_at_start(aredis: Redis) -> None:
    c = collector(allow_abort_jobs=True)
    await queued_job(aredis, "mine", now_ms() - 1000)
    await queued_job(aredis, "theirs", now_ms() - 1000, queue=CUSTOM)
    for job_id in ("mine", "theirs"):
        await aredis.set(in_progress_key(job_id), b"1")
    c.observe([in_progress_key("mine"), in_progress_key("theirs")])  # what discovery's SCAN finds
    selection = await select_all(aredis, c, Q, "in_progress")
    assert selection.expected == 1
    await queued_job(aredis, "new", now_ms() - 1000)
    c.observe([in_progress_key("new")])
    assert await selection.next(10) == ["mine"]
    selection.stayed(1)  # a list moves on regardless
    assert await selection.next(10) == []
    outs = await apply(aredis, c, Q, "in_progress", "abort", ["mine"])
    assert one(outs).outcome == Outcome.DONE


@pytest.mark.parametrize("state", ["failed", "succeeded"])
async def test_select_results_from_the_index_at_start(aredis: Redis, state: str) -> None:
    ok = state == "succeeded"
    c = collector()
    for i in range(3):
        await seed_result(aredis, f"x{i}", ok=ok)
        index(c, f"x{i}", ok=ok)
    index(c, "other-status", ok=not ok)
    index(c, "other-queue", queue=CUSTOM, ok=ok)
    selection = await select_all(aredis, c, Q, state)
    assert selection.expected == 3
    index(c, "after", ok=ok)
    outs = await drain_selection(selection, aredis, c, state)
    assert sorted(o.job_id for o in outs) == ["x0", "x1", "x2"]
    assert all(o.outcome == Outcome.DONE for o in outs)
    assert set(c.results.entries) == {"other-status", "other-queue", "after"}
    with pytest.raises(ValueError, match="unknown"):
        await select_all(aredis, c, Q, "nonsense")


async def drain_selection(
    selection: Selection, aredis: Redis, c: ArqCollector, state: str
) -> list[JobOutcome]:
    outs: list[JobOutcome] = []
    while batch := await selection.next(2):
        done = await apply(aredis, c, Q, state, "delete", batch)
        selection.stayed(sum(o.in_place for o in done))
        outs += done
    return outs


async def test_select_results_of_exactly_this_queue_newest_first(aredis: Redis) -> None:
    """As the page lists them; results of a queue whose name sorts before this one are not mixed in."""
    c = collector()
    finished = {"mid": 2_000.0, "old": 1_000.0, "unknown": None, "new": 3_000.0}
    for job_id, at in finished.items():
        c.results.add(job_id, ResultEntry(Q, "work", False, at, None, "ValueError"))
    c.results.add("elsewhere", ResultEntry("arq:alpha", "work", False, 4_000.0, None, "ValueError"))
    selection = await select_all(aredis, c, Q, "failed")
    assert selection.expected == 4
    assert await selection.next(10) == ["new", "mid", "old", "unknown"]


# -- bounded by what the operator saw ----------------------------------------------------------------


async def test_a_bounded_ready_run_takes_the_n_ready_jobs_seen_and_not_running_ones(aredis: Redis) -> None:
    """The page said "ready 3" as of T (a running job is not ready, so it is not in the 3): the run
    deletes the 3 ready jobs due by T, steps past the running one without counting it, and leaves a
    job that came due after T, and one enqueued during the run, counting both as arrived."""
    now = now_ms()
    seen_at = now - 2_000
    await queued_job(aredis, "running", seen_at - 5_000)
    await aredis.set(in_progress_key("running"), b"1")
    for i in range(3):
        await queued_job(aredis, f"r{i}", seen_at - 4_000 + i)
    await queued_job(aredis, "due-after-look", seen_at + 500)
    selection = await select_all(aredis, collector(), Q, "ready", Bound(count=3, before=seen_at / 1000))
    await queued_job(aredis, "during-run", now_ms() - 1)
    outs = await drain_selection(selection, aredis, collector(), "ready")
    assert [(o.job_id, o.outcome) for o in outs] == [(f"r{i}", Outcome.DONE) for i in range(3)]
    assert sorted(await aredis.zrange(Q, 0, -1)) == [b"due-after-look", b"during-run", b"running"]
    assert await selection.arrived() == 2


async def test_a_bounded_results_run_takes_results_finished_by_the_bound_at_most_n(aredis: Redis) -> None:
    """Failed results finished after the page's time are left alone, and so are any past its count
    (the newest first, as the page lists them); the index's newcomers count as arrived."""
    c = collector()
    for job_id, at in {"a": 1_000.0, "b": 2_000.0, "c": 3_000.0, "after": 9_000.0}.items():
        await seed_result(aredis, job_id)
        c.results.add(job_id, ResultEntry(Q, "work", False, at, None, "ValueError"))
    selection = await select_all(aredis, c, Q, "failed", Bound(count=2, before=5_000.0))
    assert selection.expected == 2
    c.results.add("indexed-meanwhile", ResultEntry(Q, "work", False, 9_500.0, None, "ValueError"))
    outs = await drain_selection(selection, aredis, c, "failed")
    assert [(o.job_id, o.outcome) for o in outs] == [("c", Outcome.DONE), ("b", Outcome.DONE)]
    assert set(c.results.entries) == {"a", "after", "indexed-meanwhile"}
    assert await selection.arrived() == 3
