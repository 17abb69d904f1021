"""dashboard/tasks.py: the bookkeeping of background controls and searches, and how a task ends."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError

from callboard.dashboard import tasks
from callboard.dashboard.tasks import Tasks

log = logging.getLogger("test.tasks")


@dataclass(slots=True)
class Job:
    id: str
    key: str
    finished_at: float | None = None
    error: str | None = None
    error_status: int | None = None
    task: asyncio.Task[None] | None = None

    @property
    def status(self) -> str:
        return "running" if self.finished_at is None else ("failed" if self.error else "finished")

    @property
    def dedupe_key(self) -> str:
        return self.key


async def finish(job: Job, gate: asyncio.Event | None = None) -> None:
    async def work() -> None:
        if gate is not None:
            await gate.wait()

    await tasks.run(job, work, log)


async def test_an_identical_running_request_is_joined_and_an_ended_one_is_not() -> None:
    registry: Tasks[Job] = Tasks("t", keep=10)
    gate = asyncio.Event()
    first = Job("1", "same")
    registry.start(first, finish(first, gate))
    assert registry.joinable("same") is first
    assert registry.joinable("other") is None
    gate.set()
    assert first.task is not None
    await first.task
    assert first.status == "finished"
    assert registry.joinable("same") is None  # ended: a new request starts a new task
    assert registry.get("1") is first  # and the ended one still answers its progress URL


async def test_ended_records_beyond_keep_are_forgotten_oldest_first_running_ones_never() -> None:
    registry: Tasks[Job] = Tasks("t", keep=2)
    gate = asyncio.Event()
    long = Job("long", "long")
    registry.start(long, finish(long, gate))
    for n in range(4):
        job = Job(str(n), str(n))
        registry.start(job, finish(job))
        assert job.task is not None
        await job.task
    last = Job("last", "last")
    registry.start(last, finish(last, gate))
    ids = [j.id for j in registry.recent()]
    # Newest first; "0".."1" dropped (ended, oldest); the running ones kept whatever their age.
    assert ids == ["last", "3", "2", "long"]
    assert [j.id for j in registry.running()] == ["long", "last"]
    gate.set()
    await registry.close()


async def test_close_cancels_what_runs() -> None:
    registry: Tasks[Job] = Tasks("t", keep=2)
    job = Job("1", "1")
    registry.start(job, finish(job, asyncio.Event()))
    await registry.close()
    assert job.task is not None and job.task.cancelled()


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        (NoPermissionError("NOPERM no rights"), 403, "the Redis user may not do this"),
        (RedisConnectionError("gone"), 503, "Redis failed after 7: ConnectionError: gone"),
        (OSError("reset"), 503, "Redis failed after 7: OSError: reset"),
        (KeyError("bug"), 500, "internal error after 7: KeyError"),
    ],
)
async def test_how_a_task_ends_is_captured_with_its_status(
    error: Exception, status: int, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    job = Job("1", "1")

    async def work() -> None:
        raise error

    await tasks.run(job, work, log, lambda: " after 7", " (hint)")
    assert job.status == "failed" and job.error_status == status
    assert job.error is not None and job.error.startswith(reason)
    assert job.finished_at is not None
    # Only a bug is logged with its traceback; Redis trouble is the operator's, said in the reason.
    assert any(r.exc_info for r in caplog.records) == (status == 500)
    if status == 403:
        assert job.error.endswith("(hint)")


async def test_a_task_that_works_ends_finished_with_no_error() -> None:
    job = Job("1", "1")
    await finish(job)
    assert (job.status, job.error, job.error_status) == ("finished", None, None)
