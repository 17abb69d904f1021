"""Flow from the worker companion, against the truth made by real workers.

Two Dramatiq worker groups and two Arq worker processes run jobs of known run times, known failures
and retries, and delayed jobs; the companions' figures must equal that truth exactly: counts, the
bucket of every run time, waits that leave the delay out, and the same through /metrics and the API.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import Iterator
from typing import Any, cast

import dramatiq
import pytest
import redis
from arq import create_pool
from arq.connections import RedisSettings
from dramatiq.brokers.redis import RedisBroker

from callboard.collectors.arq.keys import health_key
from callboard.collectors.dramatiq.keys import heartbeats_key
from callboard.collectors.flow import (
    BUCKETS,
    SERIES_KEY,
    TOTAL_KEY,
    Series,
    Tally,
    bucket,
    series_names,
    tallies,
)
from callboard.companion.recorder import Recorder, stage
from callboard.dashboard.urls import api_task_url, task_url
from tests.integration import dramatiq_app, flow_app
from tests.integration.support import api_json, scrape, start_flow_worker, start_worker, stop_worker
from tests.servers import Callboard, Process, RedisServer, child_env, wait_until

QUICK_BUCKET, SLOW_BUCKET = bucket(flow_app.QUICK), bucket(flow_app.SLOW)
#: A wait measured from the enqueue would include the 1.5 s delay: at least the 2.5 s bucket.
DELAY_MS = 1500


def only(index: int, count: int) -> list[int]:
    return [count if i == index else 0 for i in range(len(BUCKETS))]


def totals(client: redis.Redis) -> dict[Series, Tally]:
    names = series_names(client.hgetall(SERIES_KEY))  # type: ignore[arg-type]
    found, unknown = tallies(client.hgetall(TOTAL_KEY), names)  # type: ignore[arg-type]
    assert not unknown, "every id in the totals is named in the series hash"
    return found


def dramatiq_series(actor: str) -> Series:
    return Series("dramatiq", flow_app.NAMESPACE, "work", actor)


def arq_series(function: str) -> Series:
    return Series("arq", "arq", flow_app.ARQ_QUEUE, function)


@pytest.fixture
def workers(redis_url: str, one_redis: RedisServer) -> Iterator[list[Process]]:
    started: list[Process] = []
    env = child_env(ITEST_REDIS_URL=redis_url, ITEST_REDIS_PORT=str(one_redis.port))
    env["dramatiq_worker_timeout"] = "100"  # an idle consumer polls every 100 ms: delays end promptly
    for group in ("a", "b"):
        args = [sys.executable, "-m", "dramatiq", "tests.integration.flow_app"]
        args += ["--processes", "1", "--threads", "2"]
        started.append(Process(args, env, f"flow-dramatiq-{group}").start())
        arq = [sys.executable, "-m", "arq", "tests.integration.flow_app.ArqSettings"]
        started.append(Process(arq, env, f"flow-arq-{group}").start())
    yield started
    for process in started:
        process.stop()


def send_dramatiq(url: str) -> None:
    """From a producer without the companion, as most apps' web processes are."""
    producer = RedisBroker(url=url, namespace=flow_app.NAMESPACE)  # type: ignore[no-untyped-call]
    sends = (("quick", 10, None), ("slow", 4, None), ("broken", 3, None), ("quick", 2, DELAY_MS))
    try:
        for actor, count, delay in sends:
            for _ in range(count):
                message: dramatiq.Message[None] = dramatiq.Message(
                    queue_name="work", actor_name=actor, args=(), kwargs={}, options={}
                )
                producer.enqueue(message, delay=delay)
    finally:
        producer.client.close()


async def send_arq(port: int) -> None:
    pool = await create_pool(RedisSettings(host="127.0.0.1", port=port))
    try:
        q = flow_app.ARQ_QUEUE
        for _ in range(8):
            await pool.enqueue_job("arq_quick", _queue_name=q)
        for _ in range(3):
            await pool.enqueue_job("arq_slow", _queue_name=q)
        for _ in range(2):
            await pool.enqueue_job("arq_retry_once", _queue_name=q)
        for _ in range(3):
            await pool.enqueue_job("arq_boom", _queue_name=q)
        for _ in range(2):
            await pool.enqueue_job("arq_quick", _queue_name=q, _defer_by=DELAY_MS / 1000)
    finally:
        await pool.aclose()


def test_the_companions_count_exactly_what_real_workers_did(
    redis_url: str, one_redis: RedisServer, control: redis.Redis, workers: list[Process]
) -> None:
    # Sent once every worker polls: a job sent while a worker still starts would wait for it, and
    # the waits below must be the queue's, not the start-up's.
    wait_until(
        lambda: (
            cast(int, control.zcard(heartbeats_key(flow_app.NAMESPACE))) >= 2
            and control.exists(health_key(flow_app.ARQ_QUEUE))
        ),
        timeout=30,
        what="both worker groups polling",
    )
    send_dramatiq(redis_url)
    asyncio.run(send_arq(one_redis.port))

    expected = {
        dramatiq_series("quick"): {"succeeded": 12},
        dramatiq_series("slow"): {"succeeded": 4},
        dramatiq_series("broken"): {"retried": 3, "failed": 3},
        arq_series("arq_quick"): {"succeeded": 10},
        arq_series("arq_slow"): {"succeeded": 3},
        arq_series("arq_retry_once"): {"retried": 2, "succeeded": 2},
        arq_series("arq_boom"): {"failed": 3},
    }

    def outcomes() -> dict[Series, dict[str, int]]:
        return {s: t.outcomes for s, t in totals(control).items()}

    try:
        wait_until(lambda: outcomes() == expected, timeout=40, what=f"the truth in {TOTAL_KEY}")
    finally:
        assert outcomes() == expected, "\n".join(w.log()[-800:] for w in workers)
    found = totals(control)

    # Every run time in its bucket; every attempt that ran has one.
    assert found[dramatiq_series("quick")].durations == only(QUICK_BUCKET, 12)
    assert found[dramatiq_series("slow")].durations == only(SLOW_BUCKET, 4)
    assert found[arq_series("arq_quick")].durations == only(QUICK_BUCKET, 10)
    assert found[arq_series("arq_slow")].durations == only(SLOW_BUCKET, 3)
    assert found[dramatiq_series("broken")].runs == 6 and found[arq_series("arq_retry_once")].runs == 4
    # Waits leave the delay out: the 1.5 s-delayed jobs waited well under a second once runnable.
    for series in (dramatiq_series("quick"), arq_series("arq_quick")):
        waits = found[series].waits
        assert sum(waits) == found[series].runs
        assert sum(waits[: bucket(1.0) + 1]) == found[series].runs, (series, waits)
    # Several processes added up (both groups ran jobs) and nothing was dropped.
    assert control.hlen("callboard:flow:dropped") == 0

    # The same through /metrics and the API of a real callboard serve.
    board = Callboard([f"main={redis_url}"]).start()
    try:

        def metric(name: str, **labels: str) -> float | None:
            for (n, ls), value in scrape(board).items():
                if n == name and all(dict(ls).get(k) == v for k, v in labels.items()):
                    return value
            return None

        wait_until(
            lambda: metric("callboard_jobs_total", actor="broken", status="failed") == 3,
            timeout=15,
            what="flow in /metrics",
        )
        assert metric("callboard_jobs_total", actor="quick", status="succeeded") == 12
        assert metric("callboard_jobs_total", actor="arq_retry_once", status="retried") == 2
        assert metric("callboard_job_duration_seconds_bucket", actor="slow", le="0.25") == 0
        assert metric("callboard_job_duration_seconds_bucket", actor="slow", le="0.5") == 4
        assert metric("callboard_job_duration_seconds_count", actor="arq_slow") == 3
        assert metric("callboard_job_wait_seconds_bucket", actor="quick", le="1.0") == 12
        flow = api_json(board, "/api/v1/flow")
        rows = {(r["framework"], r["actor"]): r for r in flow["series"]}
        assert rows[("dramatiq", "broken")]["total"] == {
            "succeeded": 0,
            "failed": 3,
            "retried": 3,
            "skipped": 0,
        }
        assert rows[("arq", "arq_slow")]["total_runs"] == 3
        assert rows[("arq", "arq_slow")]["p95_run_seconds"] == 0.5
        # The tasks page, sorted by p95 run time: the 350 ms tasks first, then the 65 ms ones.
        status, page = board.get("/tasks?sort=p95")
        assert status == 200
        assert re.findall(r'data-task="([^"]+)"', page)[:4] == ["arq_slow", "slow", "arq_quick", "quick"]
        assert "≤ 500 ms" in page and "≤ 100 ms" in page
        assert board.get("/tasks?sort=nope")[0] == 400
    finally:
        board.stop()


def dropped(client: redis.Redis) -> int:
    values = cast(list[bytes], client.hvals("callboard:flow:dropped"))
    return sum(int(v) for v in values)


def test_a_failed_flush_loses_only_what_the_companion_reports_dropped(
    redis_url: str, control: redis.Redis
) -> None:
    """Redis refusing the companion's writes (here its ACL, a stand-in for an outage the worker
    survives) costs the figures of the jobs in the failed flushes, counted; nothing else, and the jobs
    themselves run."""
    worker = start_flow_worker(redis_url, "flow-outage")
    queue = f"{flow_app.NAMESPACE}:work"
    try:
        beats = f"{flow_app.NAMESPACE}:__heartbeats__"
        wait_until(lambda: bool(control.zcard(beats)), timeout=20, what="the worker to boot")
        control.acl_setuser("default", enabled=True, commands=["-hincrby"])
        try:
            send(redis_url, "quick", 20)
            wait_until(lambda: control.hlen(f"{queue}.msgs") == 0, timeout=30, what="the 20 to run")
            # The flushes of those 20 fail (NOPERM): every one of them is counted as dropped.
            wait_until(lambda: worker_dropped(worker) >= 20, timeout=10, what="a failed flush")
        finally:
            control.acl_setuser("default", enabled=True, commands=["+hincrby"])
        send(redis_url, "quick", 10)

        def settled() -> bool:
            succeeded = totals(control).get(dramatiq_series("quick"))
            return (
                succeeded is not None and succeeded.outcomes.get("succeeded") == 10 and dropped(control) == 20
            )

        wait_until(settled, timeout=30, what="the 10 recorded and the 20 reported dropped")
    finally:
        control.acl_setuser("default", enabled=True, commands=["+@all"])
        worker.stop()


def worker_dropped(worker: Process) -> int:
    """The worker's own log says what it could not record (the Redis write of the count waits for
    the next successful flush)."""
    found = re.findall(r"callboard flow: (\d+) jobs not recorded", worker.log())
    return sum(int(n) for n in found)


def send(url: str, actor: str, count: int) -> None:
    producer = RedisBroker(url=url, namespace=flow_app.NAMESPACE)  # type: ignore[no-untyped-call]
    try:
        for _ in range(count):
            message: dramatiq.Message[None] = dramatiq.Message(
                queue_name="work", actor_name=actor, args=(), kwargs={}, options={}
            )
            producer.enqueue(message)
    finally:
        producer.client.close()


def test_restarting_callboard_keeps_the_flow_history(redis_url: str, control: redis.Redis) -> None:
    """The figures live in Redis, not in Callboard: a new process shows the same totals and minutes."""
    recorder_series = dramatiq_series("quick")
    recorder = Recorder()
    now = time.time()
    for minutes_ago in (0, 5, 30):
        for _ in range(3):
            recorder.record(recorder_series, "succeeded", now - minutes_ago * 60, 0.03, 0.1)
    with control.pipeline(transaction=False) as pipe:
        stage(pipe, recorder.take(), "test", 0)
        pipe.execute()
    for _ in range(4):  # and 3 hours ago: in the overview's 24 h range, not in its 1 h one
        recorder.record(recorder_series, "failed", now - 3 * 3600, 0.03)
    with control.pipeline(transaction=False) as pipe:
        stage(pipe, recorder.take(), "test", 0)
        pipe.execute()
    seen = []
    for _ in range(2):
        board = Callboard([f"main={redis_url}"]).start()
        try:
            wait_until(lambda b=board: api_json(b, "/api/v1/flow")["series"], timeout=15, what="flow read")
            [row] = api_json(board, "/api/v1/flow")["series"]
            wait_until(
                lambda b=board: not api_json(b, "/api/v1/flow/overview?range=7d")["hours_missing"],
                timeout=30,
                what="the week of hours read back",
            )
            ranges = [api_json(board, f"/api/v1/flow/overview?range={r}") for r in ("1h", "24h", "7d")]
        finally:
            board.stop()
        seen.append((row["total"]["succeeded"], row["window"]["succeeded"], len(row["per_minute"])))
        assert [(r["succeeded"], r["failed"]) for r in ranges] == [(9, 0), (9, 4), (9, 4)]
        assert ranges[1]["failure_rate"] == 4 / 13 and ranges[1]["sources"] == ["companion"]
    assert seen == [(9, 9, 3), (9, 9, 3)]


def test_without_the_companion_arq_results_tell_the_flow(
    redis_url: str, one_redis: RedisServer, control: redis.Redis
) -> None:
    """Source 1: a real Arq worker without the companion; what its results say equals what it did."""
    queue = "arq:plain"
    env = child_env(ITEST_REDIS_PORT=str(one_redis.port), ITEST_ARQ_QUEUE=queue)
    worker = Process(
        [sys.executable, "-m", "arq", "tests.integration.arq_app.WorkerSettings"], env, "arq-plain"
    )
    worker.start()

    async def enqueue() -> None:
        pool = await create_pool(RedisSettings(host="127.0.0.1", port=one_redis.port))
        try:
            for n in range(3):
                await pool.enqueue_job("succeed", n, _queue_name=queue)
            for tag in ("a", "b"):
                await pool.enqueue_job("fail_value", tag, _queue_name=queue)
        finally:
            await pool.aclose()

    board = Callboard([f"main={redis_url}"])
    try:
        asyncio.run(enqueue())
        board.start()

        def rows() -> dict[str, Any]:
            series = api_json(board, "/api/v1/flow")["series"]
            return {r["actor"]: r for r in series if r["queue"] == queue}

        expected = {
            "succeed": {"succeeded": 3, "failed": 0, "retried": 0, "skipped": 0},
            "fail_value": {"succeeded": 0, "failed": 2, "retried": 0, "skipped": 0},
        }

        def told() -> bool:
            return {actor: row["window"] for actor, row in rows().items()} == expected

        wait_until(told, timeout=30, what="the results index to tell 3 succeeded and 2 failed")
        found = rows()
        assert {r["source"] for r in found.values()} == {"arq-results"}
        assert found["succeed"]["total_runs"] == 3
        page = board.get("/tasks?sort=name")[1]
        assert "Arq results" in page and 'data-task="fail_value"' in page
        # Nothing estimated is exported as a counter: Prometheus sees the companion's figures only.
        assert "arq:plain" not in board.get("/metrics")[1].split("callboard_jobs_total", 1)[-1]
    finally:
        board.stop()
        worker.stop()


def test_without_the_companion_dramatiq_dead_letters_tell_the_failures(
    redis_url: str, control: redis.Redis
) -> None:
    """Source 1 for Dramatiq: a real worker without the companion; the dead letters it makes are the
    failures per minute and actor, final failures only (a retried attempt is not one), and nothing of
    its successes. Then a worker with the companion on the same queue takes the queue over."""
    ns, queue = "dlflow", "default"
    key = f"{ns}:{queue}"
    flaky, doomed, fine = (f"{name}_{queue}" for name in ("flaky", "doomed", "fine"))
    control.set(dramatiq_app.BROKEN, "1")  # flaky fails, max_retries=0: dead at once
    worker = start_worker(redis_url, ns, (queue,))
    _, actors = dramatiq_app.build(redis_url, ns, (queue,))
    board = Callboard([f"main={redis_url}"]).start(poll_interval=0.2)
    try:
        for i in range(5):
            actors[flaky].send(f"f{i}")
        for i in range(2):
            actors[doomed].send(f"d{i}")  # one retry each, then dead: 2 final failures, not 4
        for i in range(4):
            actors[fine].send(f"ok{i}")
        wait_until(
            lambda: control.zcard(f"{key}.XQ") == 7 and control.hlen(f"{key}.msgs") == 0,
            timeout=30,
            what="7 dead letters and nothing left to run",
        )
        scores = cast(list[tuple[bytes, float]], control.zrange(f"{key}.XQ", 0, -1, withscores=True))
        payloads = cast(list[bytes], control.hmget(f"{key}.XQ.msgs", [rid for rid, _ in scores]))
        truth: dict[str, dict[int, int]] = {}
        for (_, score), raw in zip(scores, payloads, strict=True):
            actor = json.loads(raw)["actor_name"]
            minute = int(score // 60_000) * 60
            truth.setdefault(actor, {})[minute] = truth.setdefault(actor, {}).get(minute, 0) + 1

        def rows() -> dict[str, Any]:
            series = api_json(board, "/api/v1/flow")["series"]
            return {r["actor"]: r for r in series if r["namespace"] == ns and r["queue"] == queue}

        def told() -> bool:
            return {a: {t: f for t, _, f in r["per_minute"]} for a, r in rows().items()} == truth

        wait_until(told, timeout=20, what=f"the dead letters per minute in /api/v1/flow: {truth}")
        found = rows()
        assert set(found) == {flaky, doomed}, "successes leave no dead letter: no row"
        for actor, failed in ((flaky, 5), (doomed, 2)):
            row = found[actor]
            assert row["source"] == "dramatiq-deadletters" and row["counted"] == ["failed"]
            assert row["window"] == {"succeeded": 0, "failed": failed, "retried": 0, "skipped": 0}
            assert row["total_runs"] == 0 and row["p95_run_seconds"] is None
            assert row["p95_wait_seconds"] is None
        # The page says what the numbers are: failures counted, runs and failure % unknown.
        page = board.get("/tasks?sort=name")[1]
        cell = r'<td class="num[^"]*" data-field="(\w+)">([^<]*)</td>'
        cells = dict(re.findall(cell, row_html(page, flaky)))
        assert cells == {"runs": "—", "failed": "5", "failure": "—", "p95": "—"}, cells
        assert 'data-source="dramatiq-deadletters"' in row_html(page, flaky) and "dead letters only" in page
        # Its task page names the same source, and says what the source covers.
        status, task_page = board.get(task_url("main", found[flaky]["series_id"]) + "?range=24h")
        assert status == 200 and "estimated: dead letters only" in task_page and "Arq" not in task_page
        assert "Estimated from dead letters only" in task_page  # no hourly history for an estimate
        # Nothing estimated is exported as a counter.
        assert f'actor="{flaky}"' not in board.get("/metrics")[1]

        # The companion on that queue: its figures only, the estimate for the queue goes.
        stop_worker(worker)
        worker = start_worker(redis_url, ns, (queue,), flow=True)
        actors[fine].send("with-companion")

        def companion_only() -> bool:
            found = rows()
            return bool(found) and {r["source"] for r in found.values()} == {"companion"}

        try:
            wait_until(companion_only, timeout=30, what="the companion to take the queue over")
        except AssertionError:  # say what was there instead, and what the worker said
            print("rows:", {a: (r["source"], r["window"]) for a, r in rows().items()})
            print("worker log:", worker.log()[-3000:])
            raise
        assert rows()[fine]["window"]["succeeded"] == 1
    finally:
        board.stop()
        stop_worker(worker)


def row_html(page: str, task: str) -> str:
    """The Tasks page's row of one task."""
    match = re.search(rf'<tr data-task="{re.escape(task)}">(.*?)</tr>', page, re.S)
    assert match, f"no row for {task}"
    return match.group(1)


def test_a_queue_drained_by_a_real_worker_shows_its_time_to_drain(redis_url: str) -> None:
    """Backlog first, then a worker: the queue page says it drains, and how fast (from its depth)."""
    send(redis_url, "quick", 500)  # 65 ms each, 2 threads: about 1,850 a minute, ~16 s of work
    board = Callboard([f"main={redis_url}"]).start(poll_interval=0.25)
    worker: Process | None = None
    seen: list[str] = []
    try:
        path = f"/fragments/queues/main/dramatiq/{flow_app.NAMESPACE}:work?state=ready"
        wait_until(lambda: board.get(path)[0] == 200, timeout=20, what="the queue to be discovered")
        worker = start_flow_worker(redis_url, "flow-drain")

        def draining() -> bool:
            found = re.findall(r'data-field="drain">(.*?)</span>\n', board.get(path)[1], re.S)
            seen.append(found[0] if found else "")
            return "drains in ~" in seen[-1]

        wait_until(draining, timeout=30, what="a drain estimate")
        net = int(re.findall(r"\(([\d,]+)/min net\)", seen[-1])[0].replace(",", ""))
        # The rate the worker can reach, 2 / 65 ms = 1,846 a minute, less its overhead per message.
        assert 1000 <= net <= 1900, seen[-1]
        assert seen[0].startswith("rate: collecting"), seen[0]  # no estimate before 5 s of history
    finally:
        if worker is not None:
            worker.stop()
        board.stop()


def task_cells(page: str) -> dict[int, int]:
    """Runs per bucket over the columns of a task page's heatmap (templates/macros/heatmap.html)."""
    found: dict[int, int] = {}
    for b, count in re.findall(r'data-bucket="(\d+)" data-step="\d+" data-count="(\d+)"', page):
        found[int(b)] = found.get(int(b), 0) + int(count)
    return found


def test_a_task_page_shows_what_real_workers_did_by_minute_and_by_hour(
    redis_url: str, control: redis.Redis
) -> None:
    """The last hour from memory and the last 24 h from the hour hashes the companion wrote: both
    exact, every run in its bucket, in the page's cells and in its JSON twin."""
    worker = start_flow_worker(redis_url, "flow-task-page")
    board = Callboard([f"main={redis_url}"])
    expected = {
        dramatiq_series("quick"): {"succeeded": 5},
        dramatiq_series("slow"): {"succeeded": 2},
        dramatiq_series("broken"): {"retried": 2, "failed": 2},
    }
    try:
        for actor, count in (("quick", 5), ("slow", 2), ("broken", 2)):
            send(redis_url, actor, count)

        def recorded() -> bool:
            return {s: t.outcomes for s, t in totals(control).items()} == expected

        wait_until(recorded, timeout=30, what="the 9 jobs recorded")
        board.start()
        wait_until(lambda: len(api_json(board, "/api/v1/flow")["series"]) == 3, timeout=15, what="flow read")
        tasks = board.get("/tasks")[1]
        for series in expected:
            assert f'href="{task_url("main", series.id)}"' in tasks
        quick, slow, broken = (s.id for s in expected)
        for span in ("1h", "24h"):
            report = api_json(board, api_task_url("main", quick, span))
            assert (report["shown"], report["error"], report["source"]) == (span, None, "companion")
            assert report["totals"] == {"succeeded": 5, "failed": 0, "retried": 0, "skipped": 0}
            steps = report["steps"]
            assert [sum(s["durations"][i] for s in steps) for i in range(len(BUCKETS))] == only(
                QUICK_BUCKET, 5
            )
            assert report["p95_run_seconds"] == BUCKETS[QUICK_BUCKET]
            failing = api_json(board, api_task_url("main", broken, span))
            assert failing["totals"] == {"succeeded": 0, "failed": 2, "retried": 2, "skipped": 0}
            assert failing["failure_rate"] == 1.0 and failing["runs"] == 4
            status, page = board.get(task_url("main", quick, span))
            assert status == 200 and "from the companion" in page
            assert task_cells(page) == {QUICK_BUCKET: 5}
            assert task_cells(board.get(task_url("main", slow, span))[1]) == {SLOW_BUCKET: 2}
        assert board.get(task_url("main", "0123456789ab"))[0] == 404
        assert board.get(task_url("main", "not-an-id"))[0] == 404
        assert board.get(task_url("main", quick, "2d"))[0] == 400
    finally:
        board.stop()
        worker.stop()


def test_a_redis_outage_leaves_the_task_page_up_with_the_last_hour(own_server: RedisServer) -> None:
    """The 24 h history needs Redis; without it the page says so and shows the hour it holds."""
    series = dramatiq_series("quick")
    recorder = Recorder()
    for _ in range(3):
        recorder.record(series, "succeeded", time.time(), flow_app.QUICK, 0.1)
    with redis.Redis.from_url(own_server.url) as client, client.pipeline(transaction=False) as pipe:
        stage(pipe, recorder.take(), "test", 0)
        pipe.execute()
    board = Callboard([f"main={own_server.url}"]).start()
    try:
        wait_until(lambda: board.get(task_url("main", series.id))[0] == 200, timeout=15, what="the task page")
        own_server.stop()
        status, page = board.get(task_url("main", series.id, "24h"))
        assert status == 200
        assert "The history of the last 24 hours could not be read from Redis" in page
        assert task_cells(page) == {QUICK_BUCKET: 3}
        report = api_json(board, api_task_url("main", series.id, "7d"))
        assert (report["range"], report["shown"], report["totals"]["succeeded"]) == ("7d", "1h", 3)
        assert "could not be read from Redis" in report["error"]
    finally:
        board.stop()
