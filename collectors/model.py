"""The data every layer shares: snapshots (aggregates) and browse results (pages, job details).

Both frameworks produce these same types, so the UI, the JSON API and `/metrics` treat Dramatiq and
Arq alike. A value a framework cannot provide is `None` (shown as "—", not exported), never a fake 0.
Times are epoch seconds (float); ages and durations are seconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from callboard.collectors.flowreader import FlowSnapshot


class Framework(StrEnum):
    DRAMATIQ = "dramatiq"
    ARQ = "arq"


#: The states each framework can count, in display order. `callboard_queue_messages{state}`.
QUEUE_STATES: Mapping[Framework, tuple[str, ...]] = {
    Framework.DRAMATIQ: ("ready", "in_flight", "delayed", "dead"),
    Framework.ARQ: ("ready", "deferred", "in_progress"),
}


#: The worker states each framework can count per queue, in display order. `callboard_queue_workers{state}`.
#: Arq has no stale state: its one health-check key per queue expires with the last worker that wrote it.
QUEUE_WORKER_STATES: Mapping[Framework, tuple[str, ...]] = {
    Framework.DRAMATIQ: ("alive", "stale"),
    Framework.ARQ: ("alive",),
}


@dataclass(frozen=True, slots=True)
class QueueStats:
    framework: Framework
    namespace: str
    #: The name the framework's API uses: Dramatiq `default`, Arq `arq:queue`.
    name: str
    #: The queue's Redis key, unique within a target; what URLs carry (`dramatiq:default`).
    key: str
    #: state -> messages now; every state of QUEUE_STATES[framework] is present.
    counts: Mapping[str, int]
    #: Seconds the oldest ready message has waited since it became runnable; 0 when none is ready.
    oldest_ready_age: float | None
    #: Seconds since the oldest dead letter / failure was recorded; None when there is none.
    oldest_dead_age: float | None = None
    #: Messages held in ack sets of workers whose heartbeat is stale ("orphaned, awaiting recovery").
    orphaned: int | None = None
    #: Retained job results by status (`succeeded` / `failed`); None when not known.
    results: Mapping[str, int] | None = None
    #: Workers consuming this queue by state, every state of QUEUE_WORKER_STATES[framework] present;
    #: None when not known yet. Dramatiq: broker processes seen holding an ack set of this queue, by
    #: heartbeat freshness (producers never count). Arq: `alive` is 1 while the queue's health-check key
    #: exists, i.e. at least one worker wrote it within its interval (one key, whatever the number).
    workers: Mapping[str, int] | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class WorkerStats:
    framework: Framework
    namespace: str
    #: Dramatiq broker id (one per process), Arq health-check key.
    worker_id: str
    #: When it last showed a sign of life (epoch seconds).
    last_seen: float
    alive: bool
    #: Dramatiq: `consumer` once it has been seen holding an ack set; `producer or idle` otherwise
    #: (Redis cannot tell a producer from a consumer that has fetched nothing since Callboard started).
    #: Arq: `health check`.
    role: str
    #: Messages it holds now (running + prefetched), summed over its ack sets.
    in_flight: int | None = None
    #: Queues it holds messages from now.
    queues: tuple[str, ...] = ()
    #: Queues it consumes: Dramatiq, every queue it has been seen holding messages from while its
    #: heartbeat stayed in the registry (a process never stops consuming a queue); Arq, the health
    #: check's queue.
    consumes: tuple[str, ...] = ()
    #: Free-form facts a framework reports (Arq's health-check counters).
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ServerInfo:
    version: str
    used_memory: int | None
    uptime_seconds: int | None


@dataclass(frozen=True, slots=True)
class DiscoveryStatus:
    """How complete the background key discovery is: it SCANs a budget of keys per cycle."""

    #: At least one full SCAN pass has finished.
    complete: bool
    #: Keys looked at in the current (unfinished) pass.
    scanned_in_pass: int
    #: Full passes finished since start.
    passes: int
    #: When the last full pass finished.
    last_pass_at: float | None
    #: Keys in the database (DBSIZE), for "scanned N of M".
    db_size: int | None = None


@dataclass(frozen=True, slots=True)
class FailureGroup:
    """Failed or dead jobs of one target that broke the same way (see collectors/failures.py)."""

    #: Stable short hash of the fingerprint, for URLs and controls.
    key: str
    framework: Framework
    #: Actor or function; None when the payloads were undecodable.
    name: str | None
    #: Exception type as stored (`ValueError`, `app.errors.PaymentDeclined`), or a marker in
    #: parentheses when there is none: "(no traceback)", "(undecodable)".
    exception: str
    #: The message with numbers, ids and quoted values replaced by <n>, <id>, <str>.
    pattern: str
    #: One real message of the group, as stored.
    sample: str
    count: int
    first_seen: float | None
    last_seen: float | None
    #: (queue key, failures) by count, largest first.
    queues: tuple[tuple[str, int], ...]
    #: (queue key, job id) of the newest failure in the group.
    example: tuple[str, str]
    #: Failures per bar over `spark_span` seconds ending at the report's time, oldest bar first.
    spark: tuple[int, ...]
    spark_span: float
    #: Failures that expire (are deleted by Redis or by Dramatiq's maintenance) within 1 h and 24 h.
    expiring_hour: int
    expiring_day: int
    next_expiry: float | None


@dataclass(frozen=True, slots=True)
class StuckJob:
    """A job a worker claimed long ago and never finished (Arq), seen from its in-progress key."""

    framework: Framework
    queue: str
    job_id: str
    name: str | None
    #: At least this long in progress: since Callboard first saw the claim with this try.
    running_for: float
    #: Seconds until the claim expires and another worker may run the job again; None: no TTL.
    claim_ttl: float | None
    tries: int | None


@dataclass(frozen=True, slots=True)
class CollectedPart:
    """What one framework contributes to a target's snapshot."""

    queues: tuple[QueueStats, ...]
    workers: tuple[WorkerStats, ...]
    notes: tuple[str, ...] = ()
    failures: tuple[FailureGroup, ...] = ()
    #: Failures the counters know of that the groups do not cover yet (index still filling, or full).
    failures_missing: int = 0
    stuck: tuple[StuckJob, ...] = ()


#: A framework's parser of its part of the snapshot pipeline's replies; one that decodes payloads does
#: it in a decoder process (collectors/decoding.py) and returns an awaitable.
Parser = Callable[[Any], "CollectedPart | Awaitable[CollectedPart]"]


@dataclass(frozen=True, slots=True)
class TargetSnapshot:
    """Everything one collection cycle read from one Redis target."""

    target: str
    collected_at: float
    duration: float
    #: Redis round trips the cycle used (counters, discovery, server info).
    round_trips: int
    queues: tuple[QueueStats, ...]
    workers: tuple[WorkerStats, ...]
    server: ServerInfo | None
    discovery: DiscoveryStatus
    #: Notes the UI should show (e.g. "Arq liveness is coarse").
    notes: tuple[str, ...] = ()
    #: Failure groups of every framework, largest first.
    failures: tuple[FailureGroup, ...] = ()
    failures_missing: int = 0
    stuck: tuple[StuckJob, ...] = ()
    #: Flow recorded by the workers' companions (None: not read yet).
    flow: FlowSnapshot | None = None


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A payload that could not be decoded; shown as such, never as an error page."""

    reason: str
    size: int
    #: The first bytes, escaped for display.
    head: str


@dataclass(frozen=True, slots=True)
class JobSummary:
    job_id: str
    state: str
    #: Actor (Dramatiq) or function (Arq) name; None when undecodable.
    name: str | None
    #: One line: the call as Python-ish text, folded.
    call_preview: str
    enqueued_at: float | None = None
    eta: float | None = None
    failed_at: float | None = None
    #: Dramatiq: retries so far (0 on the first attempt); Arq: the try (1 on the first run).
    #: Pages label it with the backend's `Words.attempts`.
    retries: int | None = None
    #: Last line of the traceback, or the exception, when failed.
    error: str | None = None
    undecodable: Undecodable | None = None
    #: When a worker started and finished the job, where the framework records it (Arq's results).
    started_at: float | None = None
    finished_at: float | None = None


@dataclass(frozen=True, slots=True)
class JobPage:
    state: str
    items: tuple[JobSummary, ...]
    #: Jobs in this state now, when known in O(1).
    total: int | None
    offset: int
    limit: int
    next_cursor: str | None
    prev_cursor: str | None
    #: The order the items are in, e.g. "FIFO: next to run first".
    order: str
    #: Anything the operator should know about this page (partial, unsorted...).
    note: str | None = None


def page_of(
    state: str,
    items: list[JobSummary],
    total: int,
    offset: int,
    limit: int,
    order: str,
    note: str | None = None,
) -> JobPage:
    """A JobPage with offset cursors (pages are bounded reads; the cursor is where the next one starts)."""
    return JobPage(
        state=state,
        items=tuple(items),
        total=total,
        offset=offset,
        limit=limit,
        next_cursor=str(offset + limit) if offset + limit < total else None,
        prev_cursor=str(max(0, offset - limit)) if offset > 0 else None,
        order=order,
        note=note,
    )


@dataclass(frozen=True, slots=True)
class JobResult:
    """A stored result: a value, or an exception (type + message)."""

    key: str
    ok: bool
    value: Any = None
    exception_type: str | None = None
    exception_message: str | None = None
    ttl_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class StoredCall:
    """A call's arguments as decoded, with their Python types: what "copy as code" re-sends.

    `JobDetail.args`/`kwargs` are JSON-able renderings for display, where an Arq pickle's datetime,
    tuple, set or bytes becomes a string or a list; re-sending those would change the call.
    """

    args: tuple[Any, ...]
    #: Keys as stored (a hostile payload may hold non-string keys).
    kwargs: Mapping[Any, Any]
    #: The serializer that wrote the payload (Arq: pickle | msgpack | json), which a re-send must use.
    serializer: str


@dataclass(frozen=True, slots=True)
class JobDetail:
    framework: Framework
    queue_key: str
    job_id: str
    state: str
    name: str | None
    #: Every id the framework has: (label, value).
    ids: tuple[tuple[str, str], ...]
    args: Any = None
    kwargs: Any = None
    #: Options/metadata as stored (JSON-able).
    options: Mapping[str, Any] = field(default_factory=dict)
    retries: int | None = None
    traceback: str | None = None
    #: (label, epoch seconds), in lifecycle order.
    timestamps: tuple[tuple[str, float], ...] = ()
    result: JobResult | None = None
    #: Where the failure text comes from, and its limits.
    notes: tuple[str, ...] = ()
    size: int | None = None
    undecodable: Undecodable | None = None
    #: The whole decoded payload, for the "raw" view.
    raw: Any = None
    #: The arguments with their Python types, when `args`/`kwargs` are a lossy rendering (Arq);
    #: None for Dramatiq, whose JSON args are exact. Holds placeholders: never sent as JSON.
    call: StoredCall | None = field(default=None, metadata={"json": False})


# -- controls ----------------------------------------------------------------------------------------


class Outcome(StrEnum):
    #: The control did what it says.
    DONE = "done"
    #: Refused by a rule, and the job is untouched: held by a worker, running, not re-encodable.
    SKIPPED = "skipped"
    #: Nothing to do any more: already gone or changed by someone else (a double click, a worker,
    #: another operator). This is what makes every control idempotent.
    CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class JobOutcome:
    job_id: str
    outcome: Outcome
    #: Why it was skipped or changed, or what was done ("requeued as <rid>").
    detail: str = ""
    #: The id the job has now, when the control gave it a new one (a requeued Dramatiq message).
    new_id: str | None = None
    #: True when the job is still where it was (skipped in place): a bulk run steps past it.
    in_place: bool = False


@dataclass(frozen=True, slots=True)
class Bound:
    """What an operator saw when confirming a bulk control, sent with it ("Delete all 36"): the run
    acts on at most `count` jobs, and, where the state has a time, only on jobs that reached it at or
    before `before` (Unix seconds: a dead letter's death, an Arq job's due or finish time). So jobs
    that arrive between the look and the click are left alone, and reported (`Selection.arrived`)."""

    count: int | None = None
    before: float | None = None

    def __post_init__(self) -> None:
        if self.count is not None and self.count < 0:
            raise ValueError("a bound's count is never negative")

    def cap(self, n: int) -> int:
        """`n`, or the count when it is lower."""
        return n if self.count is None else min(n, self.count)

    def until(self, at_ms: int) -> int:
        """`at_ms` (ms), or the time bound when it is earlier (a bound before 1970 selects nothing)."""
        if self.before is None or self.before * 1000 >= at_ms:
            return at_ms
        return int(max(self.before * 1000, -1.0))


class Selection(Protocol):
    """The jobs a bulk control works through ("all dead letters of this queue").

    Bounded when it starts (a count, a time or a list of ids), so it ends, and jobs that arrive
    or come back during the run are not acted on twice. Each `next` is one cheap Redis read.
    With a `Bound` it also stops at what the operator saw.
    """

    #: How many jobs it expects to visit, for progress; None when unknown.
    expected: int | None

    async def next(self, limit: int) -> list[str]:
        """Up to `limit` more ids; [] when it is done."""
        ...

    def stayed(self, count: int) -> None:
        """`count` ids of the last batch are still in place (skipped): the next read steps past them."""
        ...

    async def arrived(self) -> int | None:
        """After the run: jobs in the state now that it did not reach, not counting those it stepped
        past (skipped in place): they arrived after its bound (or came back, like a requeued message
        that died again) and were left alone. One cheap count; None when it cannot be told."""
        ...
