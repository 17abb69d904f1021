"""Issue 11, item 3: pages, job lists, job pages and controls act only on queues the target knows.

A queue is known when it is configured, or discovered with its framework's own layout. Next to a real
Arq queue and a real Dramatiq queue, an app's own keys (a sorted set `leaderboard`, a list
`app:cache` with a `app:cache.msgs` hash) must answer 404 everywhere, stay untouched, and leave no
audit entry. A job control on a queue that does not exist is a 404, not "already gone".
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis

from tests.conftest import flushed
from tests.hostile.http_support import (
    arq_enqueue,
    dramatiq_actor,
    dramatiq_broker,
    get_ok,
    post_json,
    request,
)
from tests.integration.support import wait_for_queue
from tests.servers import Callboard, RedisServer

AUDIT = "callboard:audit"
LEADERBOARD = {"alice": 30.0, "bob": 20.0, "carol": 10.0}
CACHE = [b"page:1", b"page:2"]
NOT_KNOWN = "not configured and has not been discovered"


@dataclass
class Board:
    board: Callboard
    control: redis.Redis


@pytest.fixture(scope="module")
def seeded(one_redis: RedisServer) -> Iterator[Board]:
    url = flushed(one_redis)
    control = redis.Redis.from_url(url)
    broker = dramatiq_broker(url)  # namespace "dramatiq": discovered through its heartbeats
    dramatiq_actor(broker, "default", "work").send(1)
    arq_enqueue(one_redis.port, "work", _job_id="real-job")
    # An application's own keys, shaped like queues of each framework.
    control.zadd("leaderboard", LEADERBOARD)
    control.rpush("app:cache", *CACHE)
    control.hset("app:cache.msgs", mapping={c: b"{}" for c in CACHE})
    config = Path(tempfile.mkdtemp(prefix="callboard-known-")) / "callboard.toml"
    config.write_text(
        f'[[targets]]\nname = "t"\nurl = "{url}"\n'
        '[targets.arq]\nqueues = ["arq:configured"]\n'
        '[targets.dramatiq]\nqueues = ["dramatiq:configured"]\n'
    )
    board = Callboard([], extra=["--config", str(config)]).start(poll_interval=0.2)
    try:
        wait_for_queue(board, "dramatiq", "dramatiq:default")
        wait_for_queue(board, "arq", "arq:queue")
        yield Board(board, control)
    finally:
        board.stop()
        broker.client.close()
        control.close()


def _untouched(control: redis.Redis) -> None:
    scores = control.zrange("leaderboard", 0, -1, withscores=True)
    assert isinstance(scores, list)
    assert dict(scores) == {k.encode(): v for k, v in LEADERBOARD.items()}
    assert control.lrange("app:cache", 0, -1) == CACHE
    assert control.hlen("app:cache.msgs") == len(CACHE)
    assert control.llen(AUDIT) == 0, control.lrange(AUDIT, 0, -1)


def test_queue_controls_on_unrelated_keys_are_404_and_change_nothing(seeded: Board) -> None:
    board, control = seeded.board, seeded.control
    for path in (
        "/api/v1/queues/t/arq/leaderboard/delete",
        "/api/v1/queues/t/dramatiq/app:cache/delete",
    ):
        for body in ({"state": "ready"}, {"state": "ready", "ids": ["alice", "page:1"]}):
            status, answer = post_json(board, path, body)
            assert status == 404, (path, answer)
            assert NOT_KNOWN in answer["error"]
    status, answer = post_json(board, "/api/v1/queues/t/dramatiq/app:cache/recover", {"state": "orphaned"})
    assert status == 404, answer
    # The form the page would post, too.
    status, _, text = request(
        board,
        "POST",
        "/api/v1/queues/t/arq/leaderboard/delete",
        b"state=ready&scope=all",
        {"Content-Type": "application/x-www-form-urlencoded", "HX-Request": "true"},
    )
    assert status == 404, text
    _untouched(control)


def test_pages_and_lists_of_unknown_queues_are_404_that_explain_discovery(seeded: Board) -> None:
    board, control = seeded.board, seeded.control
    for path in (
        "/queues/t/arq/leaderboard",
        "/queues/t/dramatiq/app:cache?state=ready",
        "/fragments/queues/t/arq/leaderboard",
        "/fragments/jobs/t/dramatiq/app:cache?state=ready",
        "/api/v1/queues/t/arq/leaderboard/jobs",
        "/api/v1/queues/t/dramatiq/app:cache/jobs",
        "/jobs/t/arq/leaderboard/alice",
        "/api/v1/jobs/t/dramatiq/app:cache/page:1",
    ):
        status, text = board.get(path)
        assert status == 404, (path, status, text[:300])
        assert NOT_KNOWN in text and "heartbeat" in text, (path, text[:500])
    _untouched(control)
    # Known queues still show: discovered ones, and configured ones even while they have no keys.
    for path in (
        "/queues/t/arq/arq:configured",
        "/queues/t/dramatiq/dramatiq:configured?state=dead",
        "/api/v1/queues/t/arq/arq:configured/jobs",
        "/queues/t/arq/arq:queue",
        "/queues/t/dramatiq/dramatiq:default",
    ):
        get_ok(board, path)
    assert "real-job" in get_ok(board, "/api/v1/queues/t/arq/arq:queue/jobs")


def test_a_job_control_on_a_queue_that_does_not_exist_is_404_not_already_gone(seeded: Board) -> None:
    board, control = seeded.board, seeded.control
    status, answer = post_json(board, "/api/v1/jobs/t/arq/no-such-queue/real-job/delete", {})
    assert status == 404 and NOT_KNOWN in answer["error"], answer
    status, answer = post_json(board, "/api/v1/jobs/t/arq/leaderboard/alice/delete", {"state": "ready"})
    assert status == 404, answer
    assert control.zscore("arq:queue", "real-job") is not None
    _untouched(control)
    # On a known queue, a job that is gone is still "nothing to do" (idempotent), not an error.
    status, answer = post_json(board, "/api/v1/jobs/t/arq/arq:queue/never-existed/delete", {})
    assert status == 200 and "already gone" in answer["message"], answer


async def test_operations_refuse_unknown_queues_themselves(one_redis: RedisServer) -> None:
    """Defence in depth: the control layer refuses too, whatever the HTTP layer let through."""
    from callboard.collectors.target import TargetCollector
    from callboard.dashboard.operations import ControlError, ControlRequest, Operations
    from callboard.dashboard.poller import Poller
    from callboard.dashboard.store import SnapshotStore

    client = Redis.from_url(one_redis.url)
    try:
        collectors = {"t": TargetCollector("t", client)}
        poller = Poller(SnapshotStore([("t", one_redis.url)]), collectors, 1.0, timeout=1.0)
        ops = Operations(collectors, poller, 10)
        for framework, queue in (("arq", "leaderboard"), ("dramatiq", "app:cache")):
            with pytest.raises(ControlError, match=NOT_KNOWN):
                ops.start(ControlRequest("t", framework, queue, "ready", "delete", None))
        assert ops.recent() == []
    finally:
        await client.aclose()
