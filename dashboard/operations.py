"""Controls as operations: one background task per request, in batches, with progress and an audit.

A control on one job and "purge 100,000 dead letters" take the same path: the ids (or a selection
bounded at the start) go to the framework's write recipes in batches of `BATCH`, each batch one or
two Redis round trips, with a pause between batches so workers' commands interleave and Redis never
stalls. Progress is readable while it runs (`/api/v1/operations/{id}`, the UI polls a fragment); the
end is written to the audit log (Redis, under Callboard's own key, and the process log) and wakes
the poller so the numbers on screen move within one poll.

Idempotence has two layers: the recipes compare-and-set per job (a second attempt finds the job
gone or changed and says so), and an identical request while one is running (a double click) joins
the running operation instead of starting another.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from callboard.collectors import audit
from callboard.collectors.backend import Backend
from callboard.collectors.model import Bound, JobOutcome, Outcome
from callboard.collectors.target import TargetCollector
from callboard.dashboard import tasks
from callboard.dashboard.poller import Poller
from callboard.dashboard.tasks import Tasks
from callboard.dashboard.words import noun, plural

log = logging.getLogger("callboard.audit")

#: Jobs per Redis call: ~200 payloads are ~100 kB and a Lua call of well under a millisecond.
BATCH = 200
#: Between batches: lets workers' commands through and caps a bulk run's share of Redis.
PAUSE = 0.002
#: Outcomes kept per operation for display (the counts cover all).
KEEP_OUTCOMES = 200
#: Finished operations remembered for their progress URLs.
KEEP_OPERATIONS = 200
#: Ids accepted in one request; more is a bulk run over the whole state.
MAX_IDS = 10_000
#: (old id, new id) pairs kept per operation for its audit entry, which the page of a job that is
#: gone reads to lead to the job's new id (a requeued Dramatiq message); ~80 bytes each.
KEEP_MOVED = 100


class ControlError(ValueError):
    """A control that cannot be run as asked; the message says why (an HTTP 400)."""


class UnknownQueue(ControlError):
    """The queue is not one the target's collector knows for that framework (an HTTP 404)."""


def unknown_queue_message(target: str, framework: str, queue: str) -> str:
    return (
        f"No {framework} queue {queue!r} on target {target!r}: it is not configured and has not been "
        "discovered (yet). Callboard discovers Dramatiq queues by their keys (namespace:queue and its "
        ".DQ/.XQ/.msgs keys) in namespaces with a heartbeat registry (namespace:__heartbeats__), and "
        "Arq queues as sorted sets that hold Arq jobs, or that a health check or a stored result names. "
        "Discovery scans a bounded number of keys per poll, so on a large database a new queue appears "
        "within a few polls; to show a queue before it has keys, list it under [targets.dramatiq] or "
        "[targets.arq] `queues` in the config file."
    )


@dataclass(frozen=True, slots=True)
class ControlRequest:
    target: str
    framework: str
    queue: str
    state: str
    action: str
    #: None: every job of the queue in that state (bounded when the run starts).
    ids: tuple[str, ...] | None
    #: Arq re-run under a new id, keeping the old result.
    new_id: bool = False
    user: str = "anonymous"
    client: str = ""
    #: The failure group this request acts on (the failures page), for the audit and display.
    group: str | None = None
    #: What the operator saw and confirmed (a whole state or a group): act on no more than that.
    #: None (API clients that send none): the state as it is when the run starts.
    bound: Bound | None = None

    @property
    def dedupe_key(self) -> tuple[object, ...]:
        return (
            self.target,
            self.framework,
            self.queue,
            self.state,
            self.action,
            self.ids,
            self.new_id,
            self.bound,
        )


#: What a control refused by the ACL adds to its reason.
ACL_HINT = " Nothing more was changed; see README, Security, for the ACL controls need"


@dataclass(slots=True)
class Operation:
    id: str
    request: ControlRequest
    started_at: float
    expected: int | None = None
    visited: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    outcomes: list[JobOutcome] = field(default_factory=list)
    #: Jobs of the state (or the group) left alone because they came after what the run covered;
    #: None for a selection of ids, or until a whole-state run has ended.
    arrived: int | None = None
    #: (old id, new id) of jobs the control gave a new id, the first KEEP_MOVED.
    moved: list[tuple[str, str]] = field(default_factory=list)
    finished_at: float | None = None
    error: str | None = None
    #: The HTTP status a failed operation answers with: 403 when the Redis user's ACL refused a
    #: command (nothing of that batch was written), 503 when Redis failed, 500 for a bug.
    error_status: int | None = None
    task: asyncio.Task[None] | None = None

    @property
    def status(self) -> str:
        if self.finished_at is None:
            return "running"
        return "failed" if self.error else "finished"

    @property
    def dedupe_key(self) -> tuple[object, ...]:
        return self.request.dedupe_key

    def record(self, outcomes: Sequence[JobOutcome]) -> None:
        self.visited += len(outcomes)
        for o in outcomes:
            self.counts[o.outcome] += 1
            if o.new_id and len(self.moved) < KEEP_MOVED:
                self.moved.append((o.job_id, o.new_id))
        room = KEEP_OUTCOMES - len(self.outcomes)
        if room > 0:
            # Skipped and changed jobs are the ones an operator needs to see; keep them first.
            self.outcomes += sorted(outcomes, key=lambda o: o.outcome == Outcome.DONE)[:room]

    def summary(self) -> str | None:
        """ "acted on N; M arrived since and were left alone", once a whole-state or group run ended."""
        if self.arrived is None:
            return None
        bound = self.request.bound
        confirmed = (
            f" of the {bound.count:,} confirmed" if bound is not None and bound.count is not None else ""
        )
        were = noun(self.arrived, "was", "were")
        return f"acted on {self.visited:,}{confirmed}; {self.arrived:,} arrived since and {were} left alone"

    def view(self) -> dict[str, Any]:
        r = self.request
        return {
            "id": self.id,
            "status": self.status,
            "action": r.action,
            "target": r.target,
            "framework": r.framework,
            "queue": r.queue,
            "state": r.state,
            "scope": "all" if r.ids is None else ("group" if r.group else "selection"),
            "group": r.group,
            "requested": None if r.ids is None else len(r.ids),
            "bound": None if r.bound is None else {"count": r.bound.count, "before": r.bound.before},
            "expected": self.expected,
            "arrived": self.arrived,
            "summary": self.summary(),
            "visited": self.visited,
            "done": self.counts[Outcome.DONE],
            "skipped": self.counts[Outcome.SKIPPED],
            "changed": self.counts[Outcome.CHANGED],
            "outcomes": [
                {"job_id": o.job_id, "outcome": o.outcome.value, "detail": o.detail, "new_id": o.new_id}
                for o in self.outcomes
            ],
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "seconds": (self.finished_at or time.time()) - self.started_at,
            "error": self.error,
            "user": r.user,
        }


class Operations:
    def __init__(self, collectors: dict[str, TargetCollector], poller: Poller, audit_keep: int) -> None:
        self.collectors = collectors
        self.poller = poller
        self.audit_keep = audit_keep
        self.tasks: Tasks[Operation] = Tasks("control", KEEP_OPERATIONS)
        #: Operations ended (and audited) by this process: readers of the audit log key their
        #: caches on it, so an entry written here is seen at once.
        self.ended = 0

    def get(self, op_id: str) -> Operation | None:
        return self.tasks.get(op_id)

    def recent(self) -> list[Operation]:
        return self.tasks.recent()

    def start(self, request: ControlRequest) -> tuple[Operation, bool]:
        """The operation for `request`, and whether it joined an identical one already running."""
        collector = self.collectors.get(request.target)
        if collector is None:
            raise UnknownQueue(f"unknown target {request.target!r}")
        backend = collector.backend(request.framework)
        if backend is None or not backend.knows(request.queue):
            # Defence in depth: the HTTP layer refuses these first; nothing unknown is ever written.
            raise UnknownQueue(unknown_queue_message(request.target, request.framework, request.queue))
        if request.action not in backend.actions(request.state):
            allowed = ", ".join(backend.actions(request.state)) or "none"
            hint = (
                " (abort needs allow_abort_jobs = true under [targets.arq] in the config)"
                if request.action == "abort"
                else ""
            )
            raise ControlError(
                f"{request.action!r} does not apply to {request.state} {request.framework} jobs; "
                f"allowed: {allowed}{hint}"
            )
        if request.ids is not None and not request.ids:
            raise ControlError("no job ids given (leave `ids` out to act on every job in the state)")
        if request.ids is not None and len(request.ids) > MAX_IDS and request.group is None:
            raise ControlError(f"at most {MAX_IDS} ids per request; act on the whole state instead")
        joined = self.tasks.joinable(request.dedupe_key)
        if joined is not None:
            return joined, True
        op = Operation(uuid.uuid4().hex[:16], request, time.time())
        self.tasks.start(op, self._run(op, collector, backend))
        return op, False

    async def _run(self, op: Operation, collector: TargetCollector, backend: Backend) -> None:
        r = op.request

        async def work() -> None:
            if r.action == "recover":
                op.record(await backend.recover(r.queue))
                op.expected = op.visited
            elif r.ids is not None:
                op.expected = len(r.ids)
                for start in range(0, len(r.ids), BATCH):
                    batch = r.ids[start : start + BATCH]
                    op.record(await backend.apply(r.queue, r.state, r.action, batch, r.new_id))
                    await asyncio.sleep(PAUSE)
                if r.group is not None:
                    # Failures of the group on this queue the run did not cover: past its bound,
                    # or indexed since (acted-on ones left the index as they went).
                    now = backend.failures.members(r.group).get(r.queue, [])
                    op.arrived = len(set(now).difference(r.ids))
            else:
                selection = await backend.select_all(r.queue, r.state, r.bound)
                op.expected = selection.expected
                while ids := await selection.next(BATCH):
                    outcomes = await backend.apply(r.queue, r.state, r.action, ids, r.new_id)
                    op.record(outcomes)
                    selection.stayed(sum(1 for o in outcomes if o.in_place))
                    await asyncio.sleep(PAUSE)
                op.arrived = await selection.arrived()

        try:
            await tasks.run(op, work, log, lambda: f" after {plural(op.visited, 'job')}", ACL_HINT)
        finally:
            self.poller.refresh(r.target)
            await self._audit(op, collector)

    async def _audit(self, op: Operation, collector: TargetCollector) -> None:
        entry = {k: v for k, v in op.view().items() if k != "outcomes"}
        entry["client"] = op.request.client
        entry["ids"] = list(op.request.ids) if op.request.ids is not None else None
        entry["changed_ids"] = [o.new_id for o in op.outcomes if o.new_id][:50]
        entry["moved"] = [list(pair) for pair in op.moved]
        log.info(
            "%s %s %s on %s/%s/%s (%s): done %d, skipped %d, changed %d%s%s",
            op.request.user,
            op.request.action,
            entry["scope"],
            op.request.target,
            op.request.framework,
            op.request.queue,
            op.request.state,
            entry["done"],
            entry["skipped"],
            entry["changed"],
            f"; {op.summary()}" if op.arrived is not None else "",
            f"; error: {op.error}" if op.error else "",
        )
        try:
            await audit.append(collector.redis, entry, self.audit_keep)
        except (RedisError, OSError) as exc:
            log.warning("audit entry for %s not stored in Redis (%s); it is in this log", op.id, exc)
        finally:
            self.ended += 1
