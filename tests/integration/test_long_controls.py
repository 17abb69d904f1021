"""README: bulk controls answer "`202` + `Location: /api/v1/operations/{id}` when they take more than
5 s", and end with counts. A control is made to outlast `actions.WAIT` cheaply and exactly: our own
server pauses writes (`CLIENT PAUSE ... WRITE`) just before the POST, so the recipe's first write
waits past WAIT while reads go on. Callboard runs with a Redis timeout longer than the pause."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import redis

from callboard.dashboard.controls import WAIT
from tests.integration import dramatiq_app
from tests.integration.support import api_json, runs, start_worker, stop_worker, wait_for_queue
from tests.servers import Callboard, Process, wait_until

pytestmark = pytest.mark.integration

NS = "long"
QUEUE = "default"
KEY = f"{NS}:{QUEUE}"
TAGS = [f"long-{i}" for i in range(5)]
#: Writes are paused this long: past WAIT, well under the Redis timeout Callboard is given.
PAUSE_MS = int((WAIT + 2) * 1000)


@pytest.fixture
def worker(redis_url: str) -> Iterator[Process]:
    proc = start_worker(redis_url, NS, (QUEUE,))
    try:
        yield proc
    finally:
        stop_worker(proc)


def test_a_bulk_control_longer_than_wait_answers_202_with_location(
    worker: Process, redis_url: str, control: redis.Redis, tmp_path: Path
) -> None:
    _, actors = dramatiq_app.build(redis_url, NS, (QUEUE,))
    control.set(dramatiq_app.BROKEN, 1)
    for tag in TAGS:
        actors[f"flaky_{QUEUE}"].send(tag)
    wait_until(lambda: control.zcard(f"{KEY}.XQ") == len(TAGS), timeout=30, what="every message dead")
    # The worker made the dead letters; stopped now, so the requeued messages stay where the control
    # put them (the recipe stamps them with the time it was called, before the pause: a max_age actor
    # such as `flaky` would skip them after a 7 s pause).
    stop_worker(worker)
    dead = {rid.decode() for rid in cast(list[bytes], control.zrange(f"{KEY}.XQ", 0, -1))}

    config = tmp_path / "callboard.toml"
    config.write_text("redis_timeout = 30\n")
    board = Callboard([f"main={redis_url}"], extra=["--config", str(config)]).start(poll_interval=0.2)
    try:
        wait_for_queue(board, "dramatiq", KEY)
        control.client_pause(PAUSE_MS, all=False)  # writes only
        started = time.monotonic()
        status, body, headers = post_with_headers(board, f"/api/v1/queues/main/dramatiq/{NS}%3A{QUEUE}/retry")
        assert time.monotonic() - started >= WAIT
        assert status == 202, body
        assert headers["location"] == f"/api/v1/operations/{body['id']}"
        assert (body["status"], body["done"], body["scope"]) == ("running", 0, "all")

        final: dict[str, object] = {}

        def finished() -> bool:
            final.update(api_json(board, headers["location"]))
            return final["status"] != "running"

        wait_until(finished, timeout=PAUSE_MS / 1000 + 20, what="the operation to finish")
        assert (final["status"], final["done"], final["skipped"], final["changed"]) == (
            "finished",
            len(TAGS),
            0,
            0,
        ), final
        assert control.zcard(f"{KEY}.XQ") == 0
        assert control.llen(KEY) == len(TAGS)
        requeued = [json.loads(raw) for raw in cast(list[bytes], control.hvals(f"{KEY}.msgs"))]
        assert sorted(m["args"][0] for m in requeued) == TAGS
        assert not {m["options"]["redis_message_id"] for m in requeued} & dead  # requeued under new ids
        assert runs(control, TAGS) == [1] * len(TAGS)
    finally:
        control.client_unpause()
        board.stop()


def post_with_headers(board: Callboard, path: str) -> tuple[int, dict[str, object], dict[str, str]]:
    request = urllib.request.Request(
        board.url + path,
        data=json.dumps({"state": "dead"}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return (
            response.status,
            json.loads(response.read()),
            {k.lower(): v for k, v in response.headers.items()},
        )
