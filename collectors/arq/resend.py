"""Copy as code for Arq: a snippet that re-sends a job with enqueue_job and the workers' serializer."""

from __future__ import annotations

import keyword
from collections.abc import Mapping
from typing import Any

from callboard.collectors.literals import Literal
from callboard.collectors.model import JobDetail, StoredCall
from callboard.collectors.snippets import (
    IND,
    Snippet,
    block,
    comment,
    comment_line,
    datetime_code,
    import_lines,
    item,
    todo_notes,
    url_lines,
)

#: Names `ArqRedis.enqueue_job` takes for itself: a job kwarg with one of them cannot be passed through.
ARQ_OWN_NAMES = frozenset(
    {"self", "function", "_job_id", "_queue_name", "_defer_until", "_defer_by", "_expires", "_job_try"}
)


def write(job: JobDetail, redis_url: str) -> Snippet:
    call = job.call
    if call is None:
        return Snippet(None, ("No code: the job's args are not a list or its kwargs not a dict.",))
    items, skipped = _enqueue_items(job, call)
    enqueue = block("job = await redis.enqueue_job(", items, ")", 2)
    pool_args, pool_imports = _arq_serializer(call.serializer)
    url_comments, url = url_lines(redis_url)
    lines = [
        f"# Re-send Arq job {comment(job.job_id)}: function {comment(job.name or '')},"
        f" queue {comment(job.queue_key)}.",
        "# Needs arq. Imports no task code: a worker that has the function runs it. It is a new job under",
        "# a new id; uncomment _job_id= to reuse this one (once its result is gone, e.g. deleted).",
        *url_comments,
        *import_lines({"asyncio", "os"} | pool_imports | enqueue.imports),
        "from arq import create_pool",
        "from arq.connections import RedisSettings",
        "",
        "",
        "async def main() -> None:",
        f"{IND}redis = await create_pool(RedisSettings.from_dsn({url}){pool_args})",
        f"{IND}try:",
        enqueue.code,
        f'{IND * 2}print("enqueued job", job.job_id if job else None)',
        f"{IND}finally:",
        f"{IND * 2}await redis.aclose()",
        "",
        "",
        "asyncio.run(main())",
    ]
    notes = list(todo_notes([enqueue]))
    notes += [f"The kwarg {comment(str(k))} is left out: it {why}." for k, why in skipped]
    return Snippet("\n".join(lines) + "\n", tuple(notes))


def _enqueue_items(job: JobDetail, call: StoredCall) -> tuple[list[Literal], list[tuple[Any, str]]]:
    """The lines of the enqueue_job(...) call, and the kwargs it cannot pass (with why)."""
    positional = [item(v) for v in call.args]
    keywords, skipped = _arq_kwargs(call.kwargs)
    items = [Literal(f"{job.name!r},", frozenset(), ()), *positional]
    items.append(Literal(f"_queue_name={job.queue_key!r},", frozenset(), ()))
    # ascii(): a valid literal with no line break in it, so the comment cannot end early.
    reuse = f"# _job_id={ascii(job.job_id)},  # arq refuses an id whose job or result key exists"
    items.append(Literal(reuse, frozenset(), ()))
    due = next((t for label, t in job.timestamps if label == "due"), None)
    if job.state == "deferred" and due is not None:
        defer = f"# _defer_until={datetime_code(due)},  # when it was due"
        items.append(Literal(defer, frozenset({"datetime"}), ()))
    items += keywords
    items += [comment_line(f"TODO: kwarg {k!r} {why}") for k, why in skipped]
    return items, skipped


def _arq_kwargs(kwargs: Mapping[Any, Any]) -> tuple[list[Literal], list[tuple[Any, str]]]:
    """`name=value` lines, `**{"not an identifier": value}` lines, and the kwargs that cannot be passed."""
    out: list[Literal] = []
    skipped: list[tuple[Any, str]] = []
    for key, value in kwargs.items():
        if not isinstance(key, str):
            skipped.append((key, "is not a string, so no function can take it"))
        elif key in ARQ_OWN_NAMES:
            skipped.append((key, "is a parameter of enqueue_job() itself, so arq cannot pass it on"))
        elif key.isascii() and key.isidentifier() and not keyword.iskeyword(key):
            # ASCII only: Python NFKC-normalises identifiers, so a non-ASCII name could change.
            out.append(item(value, f"{key}="))
        else:
            out.append(item(value, f"**{{{key!r}: ", "},"))
    return out, skipped


def _arq_serializer(serializer: str) -> tuple[str, set[str]]:
    """create_pool() arguments that write the job the way the workers read it (pickle is arq's default)."""
    if serializer == "msgpack":
        # datetime=True: a msgpack payload that held a datetime was packed that way.
        return (
            ", job_serializer=functools.partial(msgpack.packb, datetime=True),"
            " job_deserializer=functools.partial(msgpack.unpackb, raw=False)",
            {"functools", "msgpack"},
        )
    if serializer == "json":
        return ", job_serializer=lambda d: json.dumps(d).encode(), job_deserializer=json.loads", {"json"}
    return "", set()
