"""Dramatiq results kept in another database (`[targets.dramatiq.results] url`), read through the job
API of a real `callboard serve`: the setting reaches the backend that reads job details."""

from __future__ import annotations

import uuid
from pathlib import Path

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results.backends.redis import RedisBackend

from tests.integration.support import api_json, wait_for_queue
from tests.servers import Callboard


def noop() -> None:
    """Never run: the message only has to exist, with a stored result."""


def test_a_result_in_another_database_shows_on_the_job(redis_url: str, tmp_path: Path) -> None:
    results_url = redis_url.rsplit("/", 1)[0] + "/5"
    namespace = f"results-{uuid.uuid4().hex[:8]}"
    broker = RedisBroker(url=redis_url, namespace="dramatiq", maintenance_chance=0)  # type: ignore[no-untyped-call]
    backend = RedisBackend(  # type: ignore[no-untyped-call]
        url=results_url, namespace=namespace, use_namespace_prefix_keys=True
    )
    try:
        actor = dramatiq.actor(broker=broker, queue_name="default", actor_name="report")(noop)
        sent = actor.send()
        backend.store_result(sent, {"rows": 3}, 60_000)
    finally:
        broker.client.close()
        backend.client.close()
    config = tmp_path / "callboard.toml"
    config.write_text(
        f'[[targets]]\nname = "main"\nurl = "{redis_url}"\n'
        '[targets.dramatiq]\nqueues = ["dramatiq:default"]\n'
        f'[targets.dramatiq.results]\nnamespace = "{namespace}"\nprefix_keys = true\nurl = "{results_url}"\n'
    )
    board = Callboard([], extra=["--config", str(config)]).start()
    try:
        wait_for_queue(board, "dramatiq", "dramatiq:default")
        rid = sent.options["redis_message_id"]
        job = api_json(board, f"/api/v1/jobs/main/dramatiq/dramatiq:default/{rid}")
    finally:
        board.stop()
    assert job["result"] is not None, job
    assert job["result"]["key"] == f"{namespace}:default:report:{sent.message_id}"
    assert (job["result"]["ok"], job["result"]["value"]) == (True, {"rows": 3})
