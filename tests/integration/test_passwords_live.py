"""README: "Passwords in Redis URLs never appear in pages, logs or metrics", while the target is **up**.

Our own Redis requires a password (`requirepass`) and has an ACL user with another one; Callboard
watches it through both, with each password in its target's URL. Real workers leave real data behind:
a `dramatiq` worker dead-letters `flaky` messages (with tracebacks), an `arq` worker stores a failed
and a succeeded result. Then every page, fragment and API answer is fetched, a control is run and a
search made, and neither password may appear in any answer, nor in the server's log. Each fetch
must also show the data it is about, so an empty answer cannot pass.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import redis
from arq import create_pool
from arq.connections import RedisSettings

from tests.integration import dramatiq_app
from tests.integration.support import api_json, post_json, start_worker, stop_worker
from tests.servers import Callboard, Process, RedisServer, child_env, wait_until

pytestmark = pytest.mark.integration

SECRET = "pw-requirepass-7d41c9"
ACL_SECRET = "pw-acluser-e02b6a"
SECRETS = (SECRET, ACL_SECRET)
NS = "dramatiq"
QUEUE = "default"
KEY = f"{NS}:{QUEUE}"
ARQ_QUEUE = "arq:queue"
TAGS = ("needle-a1", "needle-b2", "needle-c3")
TARGETS = ("main", "ops")


@pytest.fixture
def locked(own_server: RedisServer) -> Iterator[RedisServer]:
    """Our server, now requiring SECRET for the default user and ACL_SECRET for the user `ops`."""
    with redis.Redis(port=own_server.port) as client:
        client.acl_setuser("ops", enabled=True, passwords=[f"+{ACL_SECRET}"], keys=["*"], commands=["+@all"])
        client.config_set("requirepass", SECRET)
    yield own_server


async def _arq_jobs(port: int) -> dict[str, str]:
    pool = await create_pool(RedisSettings(host="127.0.0.1", port=port, password=SECRET))
    try:
        failed = await pool.enqueue_job("fail_value", "needle-arq")
        ok = await pool.enqueue_job("succeed", 21)
        later = await pool.enqueue_job("succeed", 4, _defer_by=600)
        assert failed is not None and ok is not None and later is not None
        return {"failed": failed.job_id, "succeeded": ok.job_id, "deferred": later.job_id}
    finally:
        await pool.aclose()


def fetch(board: Callboard, path: str, must_show: str) -> str:
    status, body = board.get(path)
    assert status == 200, (path, status, body[:300])
    assert must_show in body, (path, must_show, body[:500])
    return body


def test_passwords_never_appear_while_the_target_is_up(locked: RedisServer) -> None:
    port = locked.port
    url = f"redis://:{SECRET}@127.0.0.1:{port}/0"
    acl_url = f"redis://ops:{ACL_SECRET}@127.0.0.1:{port}/0"
    control = redis.Redis.from_url(url)
    dramatiq_worker = start_worker(url, NS, (QUEUE,))
    arq_worker = Process(
        [sys.executable, "-m", "arq", "tests.integration.arq_app.WorkerSettings"],
        child_env(ITEST_REDIS_PORT=str(port), ITEST_REDIS_PASSWORD=SECRET),
        "arq-password",
    ).start()
    board: Callboard | None = None
    try:
        _, actors = dramatiq_app.build(url, NS, (QUEUE,))
        control.set(dramatiq_app.BROKEN, 1)
        for tag in TAGS:
            actors[f"flaky_{QUEUE}"].send(tag)
        arq_ids = asyncio.run(_arq_jobs(port))
        wait_until(lambda: control.zcard(f"{KEY}.XQ") == len(TAGS), timeout=30, what="dead letters")
        results = [f"arq:result:{arq_ids['failed']}", f"arq:result:{arq_ids['succeeded']}"]
        wait_until(lambda: control.exists(*results) == 2, timeout=30, what="both arq results")
        dead = sorted(r.decode() for r in control.zrange(f"{KEY}.XQ", 0, -1))  # type: ignore[union-attr]

        board = Callboard([f"main={url}", f"ops={acl_url}"]).start(poll_interval=0.2)
        check_everything(board, port, dead, arq_ids)
    finally:
        if board is not None:
            board.stop()
        stop_worker(dramatiq_worker)
        arq_worker.stop()
        control.close()
    assert board.proc is not None
    log = board.proc.log()
    assert f"watching main=redis://:***@127.0.0.1:{port}/0, ops=redis://ops:***@127.0.0.1:{port}/0" in log
    assert f"anonymous retry selection on main/dramatiq/{KEY} (dead): done 1," in log, log[-2000:]
    for secret in SECRETS:
        assert secret not in log, f"a password is in the log: {log[-2000:]}"


def check_everything(board: Callboard, port: int, dead: list[str], arq_ids: dict[str, str]) -> None:
    """Fetch everything (and run one control and one search); no password in any answer."""

    def ready() -> bool:
        data = api_json(board, "/api/v1/queues")
        up = {t["name"]: t["up"] for t in data["targets"]}
        dead_counts = {
            (q["target"], q["key"]): q["counts"].get("dead")
            for q in data["queues"]
            if q["framework"] == "dramatiq"
        }
        groups = api_json(board, "/api/v1/failures")["groups"]
        by_target = {t: {g["framework"] for g in groups if g["target"] == t} for t in TARGETS}
        return (
            up == {"main": True, "ops": True}
            and all(dead_counts.get((t, KEY)) == len(dead) for t in TARGETS)
            and all(by_target[t] == {"dramatiq", "arq"} for t in TARGETS)
        )

    wait_until(ready, timeout=30, what="both targets up, with the dead letters and both failure groups")
    bodies: list[str] = []
    targets = api_json(board, "/api/v1/queues")["targets"]
    assert sorted(t["url"] for t in targets) == sorted(
        [
            f"redis://:***@127.0.0.1:{port}/0",
            f"redis://ops:***@127.0.0.1:{port}/0",
        ]
    )

    q = quote(KEY, safe="")
    aq = quote(ARQ_QUEUE, safe="")
    for target in TARGETS:
        bodies.append(fetch(board, f"/queues/{target}/dramatiq/{q}", KEY))
        for state in ("ready", "in_flight", "delayed", "dead"):
            bodies.append(fetch(board, f"/queues/{target}/dramatiq/{q}?state={state}", KEY))
            bodies.append(fetch(board, f"/fragments/jobs/{target}/dramatiq/{q}?state={state}", ""))
            shows = dead[0] if state == "dead" else f'"state": "{state}"'
            bodies.append(fetch(board, f"/api/v1/queues/{target}/dramatiq/{q}/jobs?state={state}", shows))
        bodies.append(fetch(board, f"/fragments/queues/{target}/dramatiq/{q}", KEY))
        for state in ("ready", "deferred", "in_progress", "failed", "succeeded"):
            bodies.append(fetch(board, f"/queues/{target}/arq/{aq}?state={state}", ARQ_QUEUE))
            shows = arq_ids.get(state, f'"state": "{state}"')
            bodies.append(fetch(board, f"/api/v1/queues/{target}/arq/{aq}/jobs?state={state}", shows))
        for rid in dead:
            page = fetch(board, f"/jobs/{target}/dramatiq/{q}/{rid}", rid)
            assert "RESEND_REDIS_URL" in page  # the Copy as code panel is there
            bodies.append(page)
            job = json.loads(fetch(board, f"/api/v1/jobs/{target}/dramatiq/{q}/{rid}", rid))
            assert "RESEND_REDIS_URL" in job["resend_code"]
            bodies.append(job["resend_code"])
        for label, job_id in arq_ids.items():
            bodies.append(fetch(board, f"/jobs/{target}/arq/{aq}/{job_id}", job_id))
            job = json.loads(fetch(board, f"/api/v1/jobs/{target}/arq/{aq}/{job_id}", job_id))
            assert "RESEND_REDIS_URL" in job["resend_code"], label
            bodies.append(job["resend_code"])

    # One control, through the password-holding target: requeue one dead letter.
    status, op = post_json(board, f"/api/v1/jobs/main/dramatiq/{q}/{dead[0]}/retry", {"state": "dead"})
    assert status == 200 and op["done"] == 1, op
    bodies.append(json.dumps(op))
    bodies.append(fetch(board, f"/api/v1/operations/{op['id']}", op["id"]))
    bodies.append(fetch(board, f"/fragments/operations/{op['id']}", ""))
    bodies.append(fetch(board, "/audit", KEY))
    bodies.append(fetch(board, "/api/v1/audit", op["id"]))

    # A search over both targets, by its page, its API, its state and its fragment.
    bodies.append(fetch(board, "/search?q=needle&in=args", "needle"))
    search = json.loads(fetch(board, "/api/v1/search?q=needle&in=args", '"id"'))
    progress: dict[str, Any] = {}

    def finished() -> bool:
        progress.update(api_json(board, f"/api/v1/searches/{search['id']}"))
        return bool(progress["status"] != "running")

    wait_until(finished, timeout=30, what="the search to end")
    found = {h["job_id"] for h in progress["hits"]}
    assert set(dead[1:]) <= found and arq_ids["failed"] in found, progress
    bodies.append(json.dumps(progress))
    bodies.append(fetch(board, f"/fragments/searches/{search['id']}", "needle"))

    for path, must_show in (
        ("/", KEY),
        ("/fragments/overview", KEY),
        ("/fragments/banner", ""),
        ("/workers", "Workers"),
        ("/fragments/workers", ""),
        ("/failures", "ValueError"),
        ("/fragments/failures", "ValueError"),
        ("/api/v1/queues", KEY),
        ("/api/v1/workers", "workers"),
        ("/api/v1/failures", "ValueError"),
        ("/api/v1/openapi.json", "openapi"),
        ("/metrics", f'queue="{QUEUE}"'),
        ("/readyz", ""),
        ("/healthz", ""),
    ):
        bodies.append(fetch(board, path, must_show))

    everything = "\n".join(bodies)
    assert 'callboard_up{target="main"} 1.0' in everything
    for secret in SECRETS:
        assert secret not in everything, secret
