"""Controls proven by a real Dramatiq worker: requeued dead letters run (once), deletes are honest.

The worker runs `tests.integration.dramatiq_app` (`flaky` fails while the test's `broken` key exists
and has a 1.5 s max_age; `hold` blocks on a gate); Callboard runs as `callboard serve`; the test
posts to the JSON API as a script would and checks the truth in Redis and in the actors' run counts.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest
import redis

from tests.integration import dramatiq_app
from tests.integration.support import (
    PREFETCH,
    api_counts,
    api_json,
    control_int,
    finished_operation,
    open_gate,
    post_json,
    runs,
    start_worker,
    stop_worker,
    wait_for_queue,
)
from tests.servers import Callboard, Process, wait_until

pytestmark = pytest.mark.integration

NS = "ctl"
QUEUE = "default"
KEY = f"{NS}:{QUEUE}"
API = f"/api/v1/queues/main/dramatiq/{NS}%3A{QUEUE}"
JOBS = f"/api/v1/jobs/main/dramatiq/{NS}%3A{QUEUE}"


@pytest.fixture
def worker(redis_url: str) -> Iterator[Process]:
    proc = start_worker(redis_url, NS, (QUEUE,))
    try:
        yield proc
    finally:
        stop_worker(proc)


def barrier(control: redis.Redis, redis_url: str) -> None:
    """Send a `flaky` message behind everything queued and wait until it ran: by then the worker has
    fetched whatever was queued before it (a requeued message queued twice would have run twice)."""
    _, actors = dramatiq_app.build(redis_url, NS, (QUEUE,))
    tag = f"barrier-{uuid.uuid4().hex}"
    actors[f"flaky_{QUEUE}"].send(tag)
    wait_until(lambda: runs(control, [tag]) == [1], timeout=20, what="the barrier message run")


def make_dead(control: redis.Redis, redis_url: str, tags: list[str]) -> None:
    """Each tag's `flaky` message fails once and is dead-lettered, then ages past its max_age."""
    _, actors = dramatiq_app.build(redis_url, NS, (QUEUE,))
    control.set(dramatiq_app.BROKEN, 1)
    for tag in tags:
        actors[f"flaky_{QUEUE}"].send(tag)
    wait_until(lambda: control.zcard(f"{KEY}.XQ") == len(tags), timeout=30, what="every message dead")
    # The scenario itself: the dead letters must be older than the actor's max_age.
    time.sleep(dramatiq_app.FLAKY_MAX_AGE_MS / 1000 + 0.2)
    control.delete(dramatiq_app.BROKEN)


def test_bulk_requeue_runs_every_dead_letter_exactly_once_even_when_submitted_twice(
    worker: Process, board: Callboard, control: redis.Redis, redis_url: str
) -> None:
    tags = [f"bulk-{i}" for i in range(40)]
    make_dead(control, redis_url, tags)
    assert runs(control, tags) == [1] * 40

    # Two operators (or a double click) press "requeue all" at the same moment.
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: post_json(board, API + "/retry", {"state": "dead"}), range(2)))
    assert all(status == 200 for status, _ in answers), answers
    operations = {body["id"]: body for _, body in answers}  # a joined request reports the same operation
    assert sum(op["done"] for op in operations.values()) == 40
    assert all(op["skipped"] == 0 and op["scope"] == "all" for op in operations.values())

    # The message timestamp was reset: max_age would otherwise dead-letter them unrun.
    wait_until(lambda: runs(control, tags) == [2] * 40, timeout=30, what="every requeued message run")
    wait_until(lambda: control.zcard(f"{KEY}.XQ") == 0 and control.hlen(f"{KEY}.msgs") == 0, timeout=10)
    barrier(control, redis_url)
    assert runs(control, tags) == [2] * 40, "a requeued message ran twice"

    audit = api_json(board, "/api/v1/audit")["entries"]
    mine = [e for e in audit if e["id"] in operations]
    assert len(mine) == len(operations)
    assert {(e["action"], e["state"], e["queue"], e["status"]) for e in mine} == {
        ("retry", "dead", KEY, "finished")
    }
    assert sum(e["done"] for e in mine) == 40 and all(e["user"] == "anonymous" for e in mine)


def test_requeue_of_one_message_twice_runs_it_once(
    worker: Process, board: Callboard, control: redis.Redis, redis_url: str
) -> None:
    make_dead(control, redis_url, ["single"])
    rid = control.zrange(f"{KEY}.XQ", 0, -1)[0].decode()  # type: ignore[index]
    job_path = f"/api/v1/jobs/main/dramatiq/{NS}%3A{QUEUE}/{rid}/retry"
    status, first = post_json(board, job_path, {})
    assert status == 200 and (first["done"], first["changed"]) == (1, 0)
    new_rid = first["outcomes"][0]["new_id"]
    status, second = post_json(board, job_path, {"state": "dead"})
    assert status == 200 and (second["done"], second["changed"]) == (0, 1)
    assert "gone" in second["outcomes"][0]["detail"]
    wait_until(lambda: runs(control, ["single"]) == [2], timeout=20, what="the requeued message run")
    # The job page of the old id says it is gone; the new id is what the worker ran.
    assert board.get(f"/api/v1/jobs/main/dramatiq/{NS}%3A{QUEUE}/{rid}")[0] == 404
    barrier(control, redis_url)
    assert runs(control, ["single"]) == [2]
    assert new_rid != rid


def test_deleting_pending_messages_reports_those_a_worker_already_holds(
    worker: Process, board: Callboard, control: redis.Redis, redis_url: str
) -> None:
    _, actors = dramatiq_app.build(redis_url, NS, (QUEUE,))
    gate = "pending"
    for n in range(8):
        actors[f"hold_{QUEUE}"].send(gate, n)
    started = dramatiq_app.started_key(gate)
    wait_until(lambda: control_int(control, started) == 2, timeout=20, what="two held messages running")
    wait_until(
        lambda: int(control.hlen(f"{KEY}.msgs")) - int(control.llen(KEY)) == PREFETCH,  # type: ignore[arg-type]
        timeout=10,
        what="the worker's prefetch filled",
    )
    listed = [r.decode() for r in control.lrange(KEY, 0, -1)]  # type: ignore[union-attr]
    fetched = sorted({r.decode() for r in control.hkeys(f"{KEY}.msgs")} - set(listed))  # type: ignore[union-attr]
    assert listed and fetched
    # Controls act on known queues only (issue 11): this one appeared just now, so let discovery see it.
    wait_until(lambda: (NS, QUEUE) in api_counts(board, "main"), timeout=10, what="the queue discovered")

    status, body = post_json(board, API + "/delete", {"state": "ready", "ids": [fetched[0], *listed]})
    assert status == 200
    by_id = {o["job_id"]: o for o in body["outcomes"]}
    assert by_id[fetched[0]]["outcome"] == "skipped"
    assert "already fetched" in by_id[fetched[0]]["detail"]
    assert body["done"] == len(listed) and body["skipped"] == 1
    assert control.llen(KEY) == 0

    # Only what the worker held runs; the deleted messages never do.
    open_gate(control, gate, 8)
    wait_until(lambda: control.hlen(f"{KEY}.msgs") == 0, timeout=20, what="held messages finished")
    barrier(control, redis_url)
    assert control_int(control, started) == len(fetched)


def dead_letters(control: redis.Redis) -> dict[str, str]:
    """rid -> tag of each dead letter of the queue, read from its stored payload."""
    stored = cast(dict[bytes, bytes], control.hgetall(f"{KEY}.XQ.msgs"))
    return {rid.decode(): json.loads(raw)["args"][0] for rid, raw in stored.items()}


def ended(board: Callboard, answer: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    """An operation's final view: the answer itself (200), or followed to its end (a 202)."""
    status, body = answer
    assert status in (200, 202), answer
    assert body["status"] == ("running" if status == 202 else "finished"), answer
    return body if status == 200 else finished_operation(board, body["id"])


def done_ids(op: dict[str, Any]) -> set[str]:
    assert len(op["outcomes"]) == op["visited"], "every outcome is kept (fewer than KEEP_OUTCOMES)"
    return {o["job_id"] for o in op["outcomes"] if o["outcome"] == "done"}


def test_requeue_all_against_single_requeues_of_the_same_letters(
    worker: Process, board: Callboard, control: redis.Redis, redis_url: str
) -> None:
    tags = [f"race-{i}" for i in range(30)]
    make_dead(control, redis_url, tags)
    letters = dead_letters(control)
    assert sorted(letters.values()) == sorted(tags)
    contested = sorted(letters)[:10]
    wait_for_queue(board, "dramatiq", KEY)

    def post(path: str) -> tuple[int, dict[str, Any]]:
        return post_json(board, path, {"state": "dead"})

    # "Requeue all" and a requeue of each of ten of the same letters, all sent at the same moment.
    paths = [API + "/retry"] + [f"{JOBS}/{rid}/retry" for rid in contested]
    with ThreadPoolExecutor(len(paths)) as pool:
        answers = list(pool.map(post, paths))
    every, singles = ended(board, answers[0]), [ended(board, a) for a in answers[1:]]
    assert (every["scope"], every["skipped"]) == ("all", 0)
    assert [(s["scope"], s["done"] + s["changed"], s["skipped"]) for s in singles] == [
        ("selection", 1, 0)
    ] * 10
    # Each letter was requeued by exactly one of them; the other found it gone.
    by_single = {rid for rid, s in zip(contested, singles, strict=True) if s["done"] == 1}
    assert done_ids(every) | by_single == set(letters)
    assert done_ids(every) & by_single == set()
    assert every["done"] + sum(s["done"] for s in singles) == len(letters)
    # What "requeue all" visited and did not requeue, a single requeue had taken: changed, not skipped.
    assert every["changed"] == every["visited"] - every["done"]

    wait_until(lambda: runs(control, tags) == [2] * 30, timeout=30, what="every requeued letter run")
    wait_until(lambda: control.zcard(f"{KEY}.XQ") == 0 and control.hlen(f"{KEY}.msgs") == 0, timeout=10)
    barrier(control, redis_url)
    assert runs(control, tags) == [2] * 30, "a letter was requeued twice"


def test_requeue_all_against_delete_all_of_the_same_letters(
    worker: Process, board: Callboard, control: redis.Redis, redis_url: str
) -> None:
    tags = [f"duel-{i}" for i in range(60)]
    make_dead(control, redis_url, tags)
    letters = dead_letters(control)
    wait_for_queue(board, "dramatiq", KEY)

    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(lambda a: post_json(board, f"{API}/{a}", {"state": "dead"}), ("retry", "delete"))
        )
    requeued, deleted = (ended(board, a) for a in answers)
    assert (requeued["skipped"], deleted["skipped"]) == (0, 0)
    # Each letter was either requeued or deleted: never both, never twice.
    assert done_ids(requeued) & done_ids(deleted) == set()
    assert done_ids(requeued) | done_ids(deleted) == set(letters)
    assert requeued["done"] + deleted["done"] == len(letters)
    assert requeued["changed"] + deleted["changed"] == (requeued["visited"] + deleted["visited"]) - len(
        letters
    )

    ran_again = sorted(letters[rid] for rid in done_ids(requeued))
    expected = [2 if tag in ran_again else 1 for tag in tags]
    wait_until(lambda: runs(control, tags) == expected, timeout=30, what="the requeued letters run")
    wait_until(lambda: control.zcard(f"{KEY}.XQ") == 0 and control.hlen(f"{KEY}.msgs") == 0, timeout=10)
    barrier(control, redis_url)
    assert runs(control, tags) == expected, "a deleted letter ran, or a requeued one ran twice"
    assert control.hlen(f"{KEY}.XQ.msgs") == 0


#: The dead letters `seen_dead` writes (before Callboard starts, so discovery finds the queue at once).
SEEN = [f"seen-{i}" for i in range(4)]


@pytest.fixture
def seen_dead(control: redis.Redis) -> float:
    """Four dead letters, written as Dramatiq's nack writes them, dead 10 s ago and after; and a
    heartbeat, as a worker's (discovery looks for queues in namespaces that have one). Returns a time
    between the third and the fourth death: what a page drawn then showed (3 dead)."""
    now_ms = int(time.time() * 1000)
    control.zadd(f"{NS}:__heartbeats__", {"worker-that-was": now_ms})
    for i, rid in enumerate(SEEN):
        body = {"queue_name": QUEUE, "actor_name": "flaky", "args": [rid], "kwargs": {},
                "options": {"redis_message_id": rid}, "message_id": f"m-{rid}",
                "message_timestamp": now_ms}  # fmt: skip
        control.hset(f"{KEY}.XQ.msgs", rid, json.dumps(body))
        control.zadd(f"{KEY}.XQ", {rid: now_ms - 10_000 + i * 1_000})
    return (now_ms - 7_500) / 1000


def test_a_bound_in_the_body_holds_delete_all_to_what_the_caller_saw(
    seen_dead: float, board: Callboard, control: redis.Redis
) -> None:
    """`count` and `before` (what the UI sends): the letter that died after `before` stays, and the
    answer and the audit entry say it arrived since and was left alone. Bad bounds are refused."""
    wait_for_queue(board, "dramatiq", KEY)
    for bad in ({"count": -1}, {"count": True}, {"count": 2.5}, {"count": "many"}, {"before": "nan"}):
        status, answer = post_json(board, API + "/delete", {"state": "dead", **bad})
        assert status == 400 and "must be" in answer["error"], (bad, answer)
    status, answer = post_json(board, API + "/delete", {"state": "dead", "ids": ["seen-0"], "count": 1})
    assert status == 400 and "bound by its `ids`" in answer["error"], answer
    assert control.zcard(f"{KEY}.XQ") == len(SEEN)

    status, body = post_json(board, API + "/delete", {"state": "dead", "count": 3, "before": seen_dead})
    assert status == 200, body
    assert (body["done"], body["expected"], body["arrived"]) == (3, 3, 1)
    assert body["bound"] == {"count": 3, "before": seen_dead}
    assert body["summary"] == "acted on 3 of the 3 confirmed; 1 arrived since and was left alone"
    assert [r.decode() for r in cast(list[bytes], control.zrange(f"{KEY}.XQ", 0, -1))] == SEEN[3:]
    [entry] = [e for e in api_json(board, "/api/v1/audit")["entries"] if e["id"] == body["id"]]
    assert (entry["bound"], entry["arrived"], entry["summary"]) == (body["bound"], 1, body["summary"])
