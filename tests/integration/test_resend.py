"""Copy as code, end to end: a real worker fails a job, a real `callboard serve` shows the job page, the
snippet copied from that page runs with this venv's Python (in an empty directory, without our code on
its path), and the real worker runs the job again with the same arguments.
"""

from __future__ import annotations

import datetime
import decimal
import json
import subprocess
import sys
import urllib.parse
import uuid
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from arq import create_pool
from arq.connections import RedisSettings

from callboard.collectors.arq.keys import result_key
from callboard.collectors.unpickler import loads
from tests.integration import resend_app as app
from tests.integration.support import wait_for_queue
from tests.servers import Callboard, Process, RedisServer, child_env, wait_until

pytestmark = pytest.mark.integration

#: Strings that would break out of a naive literal, comment or page.
HOSTILE = "quote ' \" ''' \"\"\" \\ \\' \n\r\x00 </pre></code><script>alert(1)</script> {{ 1 }} é🎉 \u202e"


class CodeBlock(HTMLParser):
    """The text of `<code id="resend-code">`, entities decoded, as the Copy button copies it."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.found = 0
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "code" and ("id", "resend-code") in attrs:
            self.inside, self.found = True, self.found + 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "code":
            self.inside = False

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.text += data


def page_snippet(board: Callboard, framework: str, queue: str, job_id: str) -> str:
    """The snippet from the job page, checked to equal the JSON API's `resend_code`."""
    wait_for_queue(board, framework, queue)
    path = f"{framework}/{urllib.parse.quote(queue, safe='')}/{urllib.parse.quote(job_id, safe='')}"
    status, body = board.get(f"/jobs/main/{path}")
    assert status == 200, body[:500]
    block = CodeBlock()
    block.feed(body)
    assert block.found == 1 and "<script>alert" not in body
    status, api = board.get(f"/api/v1/jobs/main/{path}")
    assert status == 200, api[:500]
    data = json.loads(api)
    assert data["resend_code"] == block.text and data["resend_notes"] == []
    assert "call" not in data  # the typed arguments are for the server only
    return block.text


def run_snippet(code: str, cwd: Path) -> str:
    """Run `code` as a user would: the venv's Python in a directory of its own; -I (isolated mode) keeps
    the repository and PYTHONPATH off its path, so the task code cannot be imported."""
    env = {k: v for k, v in child_env().items() if k not in ("PYTHONPATH", "RESEND_REDIS_URL")}
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n--- snippet ---\n{code}"
    return done.stdout


def start(args: list[str], url: str, name: str) -> Process:
    return Process(
        [sys.executable, "-m", *args], child_env(ITEST_REDIS_URL=url, dramatiq_worker_timeout="200"), name
    ).start()


def test_dramatiq_dead_letter_resent_from_its_page_runs_again_with_the_same_args(
    redis_url: str, control: redis.Redis, board: Callboard, tmp_path: Path
) -> None:
    args = [HOSTILE, 10**30, 0.1, float("nan"), -float("inf"), True, None, {"nested": [1, {"deep": "x"}]}]
    kwargs = {"plain": 1, "not an id": [2], "class": "kw", "quote'\"": HOSTILE}
    control.set(app.BROKEN, 1)
    worker = start(
        ["dramatiq", "tests.integration.resend_app", "--processes", "1", "--threads", "1"],
        redis_url,
        "dramatiq-resend",
    )
    producer, echo = app.build(redis_url)
    try:
        echo.send_with_options(args=tuple(args), kwargs=kwargs, time_limit=30_000)
        dead = f"{app.NAMESPACE}:{app.QUEUE}.XQ"
        wait_until(lambda: control.zcard(dead) == 1, timeout=30, what=f"a dead letter: {worker.log()[-800:]}")
        [rid] = [m.decode() for m in cast(list[bytes], control.zrange(dead, 0, -1))]

        code = page_snippet(board, "dramatiq", f"{app.NAMESPACE}:{app.QUEUE}", rid)
        assert "namespace='resend'" in code and "'time_limit': 30000" in code
        control.delete(app.BROKEN)
        assert run_snippet(code, tmp_path).startswith("enqueued message ")

        wait_until(
            lambda: control.llen(app.DRAMATIQ_CALLS) == 2,
            timeout=30,
            what=f"the re-run: {worker.log()[-800:]}",
        )
        first, second = (json.loads(c) for c in cast(list[bytes], control.lrange(app.DRAMATIQ_CALLS, 0, -1)))
        # NaN != NaN, so compare the JSON the actor wrote (Dramatiq's own encoding of the same values).
        assert json.dumps(second) == json.dumps(first) == json.dumps([args, kwargs])
        wait_until(lambda: control.hlen(f"{app.NAMESPACE}:{app.QUEUE}.msgs") == 0, what="the re-run acked")
        assert control.zcard(dead) == 1  # the re-run succeeded; the old dead letter is left as it was
    finally:
        worker.stop()
        producer.client.connection_pool.disconnect()


async def test_arq_failed_job_resent_from_its_page_runs_again_with_the_same_args(
    redis_url: str, one_redis: RedisServer, control: redis.Redis, board: Callboard, tmp_path: Path
) -> None:
    args = (
        HOSTILE,
        10**30,
        float("nan"),
        -float("inf"),
        (1, (2,)),
        {3},
        b"\x00\xff'",
        datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        decimal.Decimal("1.10"),
        uuid.UUID(int=42),
        {"nested": [None, True]},
    )
    kwargs: dict[str, Any] = {"plain": 1, "not an id": [2], "class": "kw"}
    control.set(app.BROKEN, 1)
    worker = start(["arq", "tests.integration.resend_app.WorkerSettings"], redis_url, "arq-resend")
    pool = await create_pool(RedisSettings(host="127.0.0.1", port=one_redis.port))
    try:
        job = await pool.enqueue_job("arq_echo", *args, _queue_name=app.ARQ_QUEUE, **kwargs)
        assert job is not None
        wait_until(
            lambda: control.exists(result_key(job.job_id)),
            timeout=30,
            what=f"a result: {worker.log()[-800:]}",
        )

        code = page_snippet(board, "arq", app.ARQ_QUEUE, job.job_id)
        assert f"_queue_name={app.ARQ_QUEUE!r}," in code and "**{'not an id': [2]}," in code
        control.delete(app.BROKEN)
        assert run_snippet(code, tmp_path).startswith("enqueued job ")

        wait_until(
            lambda: control.llen(app.ARQ_CALLS) == 2, timeout=30, what=f"the re-run: {worker.log()[-800:]}"
        )
        first, second = (loads(c) for c in cast(list[bytes], control.lrange(app.ARQ_CALLS, 0, -1)))
        # repr shows types (tuple, set, bytes, Decimal('1.10'), datetime) and writes NaN as nan.
        assert repr(second) == repr(first) == repr((args, kwargs))
    finally:
        await pool.aclose()
        worker.stop()
