"""Copy as code: the Python that re-sends a job by hand with the framework's own API.

Pure functions, no I/O. A snippet imports only the framework (Dramatiq sends a `Message` by actor
name, Arq enqueues by function name), never the user's task code, and never holds a secret: it reads
the Redis URL from `RESEND_REDIS_URL`, with the target's URL as the default only when that URL has no
password (Callboard shows no password, so a page cannot offer a working one).

Every value is a Python literal that evaluates to exactly what was stored (dashboard/literals.py).
A value that cannot be rebuilt from Redis (an instance of a user class, which Callboard never
imports) becomes `...` with a TODO comment on its line and a note, so the operator fills it in
before running.

Hostile payloads: text from Redis reaches the code only through `repr` (a string literal it cannot
end early) and comments only through `ascii` (no line break can end the comment); the page escapes
the whole snippet (Jinja autoescape), so it cannot leave its `<pre>` either.
"""

from __future__ import annotations

import datetime
import keyword
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from callboard.collectors import payloads
from callboard.collectors.model import Framework, JobDetail, StoredCall
from callboard.dashboard.literals import Literal, literal
from callboard.dashboard.settings import redact

#: The variable a snippet reads the Redis URL from. Not `REDIS_URL`: that name often points at an
#: app's cache or another database, and a job sent there would silently never run.
URL_VARIABLE = "RESEND_REDIS_URL"
#: A longer snippet is not put on the page (a payload is at most 1 MB; escapes can make it 4x that).
MAX_CHARS = 1_000_000
#: Options Dramatiq's broker and middleware write while a message lives, none of which the user set.
DRAMATIQ_DROPPED_OPTIONS = ("retries", "traceback", "requeue_timestamp", "redis_message_id", "eta")
#: Names `ArqRedis.enqueue_job` takes for itself: a job kwarg with one of them cannot be passed through.
ARQ_OWN_NAMES = frozenset(
    {"self", "function", "_job_id", "_queue_name", "_defer_until", "_defer_by", "_expires", "_job_try"}
)
_IND = "    "


@dataclass(frozen=True, slots=True)
class Snippet:
    #: Python source that re-sends the job; None when it cannot be written (the notes say why).
    code: str | None
    #: What the operator must know before running it: values it could not rebuild, clashes.
    notes: tuple[str, ...] = ()


def resend_snippet(job: JobDetail, redis_url: str) -> Snippet:
    """The snippet that re-sends `job` to the Redis at `redis_url` (its password is never written)."""
    if job.undecodable is not None:
        return Snippet(None, (f"No code: the payload could not be decoded ({job.undecodable.reason}).",))
    if not job.name:
        return Snippet(None, ("No code: the payload names no actor or function.",))
    snippet = _dramatiq(job, redis_url) if job.framework is Framework.DRAMATIQ else _arq(job, redis_url)
    if snippet.code is not None and len(snippet.code) > MAX_CHARS:
        return Snippet(None, (f"No code: it would be over {MAX_CHARS:,} characters.",))
    return snippet


# -- Dramatiq ------------------------------------------------------------------------------------------


def _dramatiq(job: JobDetail, redis_url: str) -> Snippet:
    if not isinstance(job.args, list) or not isinstance(job.kwargs, dict):
        return Snippet(None, ("No code: the message's args are not a list or its kwargs not an object.",))
    namespace, _, queue = job.queue_key.rpartition(":")
    options = {k: v for k, v in job.options.items() if k not in DRAMATIQ_DROPPED_OPTIONS}
    parts = [
        _block("args=[", [_item(v) for v in job.args], "],", 1),
        _block("kwargs={", [_item(v, f"{k!r}: ") for k, v in job.kwargs.items()], "},", 1),
        _block("options={", [_item(v, f"{k!r}: ") for k, v in options.items()], "},", 1),
    ]
    url_comments, url = _url(redis_url)
    broker_args = f"url={url}" + (f", namespace={namespace!r}" if namespace != "dramatiq" else "")
    imports = set().union(*(p.imports for p in parts))
    lines = [
        f"# Re-send Dramatiq message {_comment(_first_id(job))}: actor {_comment(job.name or '')},"
        f" queue {_comment(queue)}.",
        "# Needs dramatiq[redis]. Imports no task code: a worker that has the actor runs it. It is a new",
        "# message (new message_id and timestamp); pass message_id=... to keep the old id (and result key).",
        *url_comments,
        *_imports({"os"} | imports),
        "import dramatiq",
        "from dramatiq.brokers.redis import RedisBroker",
        "",
        f"broker = RedisBroker({broker_args})",
        "message = dramatiq.Message(",
        f"{_IND}queue_name={queue!r},",
        f"{_IND}actor_name={job.name!r},",
        parts[0].code,
        parts[1].code,
        # Why these go: the retry count and tracebacks are the Retries middleware's record of failed
        # attempts (kept, this run would have fewer retries left); enqueue() gives every message a new
        # redis_message_id; eta is when a delayed message was due (enqueue's delay= sets a new one).
        f"{_IND}# Not carried over: retries, traceback, requeue_timestamp, redis_message_id and eta.",
        parts[2].code,
        ")",
        f"broker.enqueue(message){_delay_comment(job)}",
        'print("enqueued message", message.message_id)',
    ]
    return Snippet("\n".join(lines) + "\n", _todo_notes(parts))


def _delay_comment(job: JobDetail) -> str:
    eta = payloads.as_int(job.options.get("eta"))
    if job.state != "delayed" or eta is None:
        return ""
    return f"  # it was delayed until {_utc(eta / 1000)}: enqueue(message, delay=ms) delays it again"


# -- Arq -----------------------------------------------------------------------------------------------


def _arq(job: JobDetail, redis_url: str) -> Snippet:
    call = job.call
    if call is None:
        return Snippet(None, ("No code: the job's args are not a list or its kwargs not a dict.",))
    items, skipped = _enqueue_items(job, call)
    enqueue = _block("job = await redis.enqueue_job(", items, ")", 2)
    pool_args, pool_imports = _arq_serializer(call.serializer)
    url_comments, url = _url(redis_url)
    lines = [
        f"# Re-send Arq job {_comment(job.job_id)}: function {_comment(job.name or '')},"
        f" queue {_comment(job.queue_key)}.",
        "# Needs arq. Imports no task code: a worker that has the function runs it. It is a new job under",
        "# a new id; uncomment _job_id= to reuse this one (once its result is gone, e.g. deleted).",
        *url_comments,
        *_imports({"asyncio", "os"} | pool_imports | enqueue.imports),
        "from arq import create_pool",
        "from arq.connections import RedisSettings",
        "",
        "",
        "async def main() -> None:",
        f"{_IND}redis = await create_pool(RedisSettings.from_dsn({url}){pool_args})",
        f"{_IND}try:",
        enqueue.code,
        f'{_IND * 2}print("enqueued job", job.job_id if job else None)',
        f"{_IND}finally:",
        f"{_IND * 2}await redis.aclose()",
        "",
        "",
        "asyncio.run(main())",
    ]
    notes = list(_todo_notes([enqueue]))
    notes += [f"The kwarg {_comment(str(k))} is left out: it {why}." for k, why in skipped]
    return Snippet("\n".join(lines) + "\n", tuple(notes))


def _enqueue_items(job: JobDetail, call: StoredCall) -> tuple[list[Literal], list[tuple[Any, str]]]:
    """The lines of the enqueue_job(...) call, and the kwargs it cannot pass (with why)."""
    positional = [_item(v) for v in call.args]
    keywords, skipped = _arq_kwargs(call.kwargs)
    items = [Literal(f"{job.name!r},", frozenset(), ()), *positional]
    items.append(Literal(f"_queue_name={job.queue_key!r},", frozenset(), ()))
    # ascii(): a valid literal with no line break in it, so the comment cannot end early.
    reuse = f"# _job_id={ascii(job.job_id)},  # arq refuses an id whose job or result key exists"
    items.append(Literal(reuse, frozenset(), ()))
    due = next((t for label, t in job.timestamps if label == "due"), None)
    if job.state == "deferred" and due is not None:
        defer = f"# _defer_until={_datetime_code(due)},  # when it was due"
        items.append(Literal(defer, frozenset({"datetime"}), ()))
    items += keywords
    items += [_comment_line(f"TODO: kwarg {k!r} {why}") for k, why in skipped]
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
            out.append(_item(value, f"{key}="))
        else:
            out.append(_item(value, f"**{{{key!r}: ", "},"))
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


# -- shared parts -------------------------------------------------------------------------------------


def _url(redis_url: str) -> tuple[list[str], str]:
    """Comments and the expression for the Redis URL. The password never appears: with one, the URL
    must come from the environment; without, the target's URL is the default."""
    safe = redact(redis_url)  # the caller passes a safe URL already; this makes sure of it
    if "***" in safe:  # where redact() removed a password
        example = _comment(safe.replace("***", "PASSWORD"))
        return [f"# Run with {URL_VARIABLE}={example} (Callboard never shows passwords)."], (
            f"os.environ[{URL_VARIABLE!r}]"
        )
    return [f"# Redis: the target's URL; set {URL_VARIABLE} to send elsewhere."], (
        f"os.environ.get({URL_VARIABLE!r}, {safe!r})"
    )


def _item(value: Any, head: str = "", tail: str = ",") -> Literal:
    """One line of a call or a literal block (`value,`, `'key': value,`, `key=value,`), with its TODOs
    in a comment at the end of the line: `...` may sit deep inside the value, so the line is the unit."""
    rendered = literal(value)
    code = head + rendered.code + tail + _todo_suffix(rendered.todos)
    return Literal(code, rendered.imports, rendered.todos)


def _todo_suffix(todos: tuple[str, ...]) -> str:
    if not todos:
        return ""
    return "  # TODO: " + _comment("; ".join(f"{t} cannot be rebuilt from Redis" for t in todos))


def _comment_line(text: str) -> Literal:
    return Literal("# " + _comment(text), frozenset(), ())


def _block(opening: str, items: list[Literal], closing: str, indent: int) -> Literal:
    """`opening`, one item per line one level deeper, `closing`; `opening + closing` when empty."""
    imports: frozenset[str] = frozenset().union(*(i.imports for i in items))
    todos = tuple(t for i in items for t in i.todos)
    pad = _IND * indent
    if not items:
        return Literal(f"{pad}{opening}{closing}", imports, todos)
    body = [f"{pad}{_IND}{i.code}" for i in items]
    return Literal("\n".join([f"{pad}{opening}", *body, f"{pad}{closing}"]), imports, todos)


def _todo_notes(parts: list[Literal]) -> tuple[str, ...]:
    todos = [t for p in parts for t in p.todos]
    if not todos:
        return ()
    return (
        f"{len(todos)} value(s) cannot be rebuilt from Redis and are left as `...` with a TODO comment: "
        "replace them before running. " + "; ".join(_comment(t)[:200] for t in todos[:5]),
    )


def _imports(modules: set[str]) -> list[str]:
    return [f"import {m}" for m in sorted(modules)] + [""]


def _comment(text: str, limit: int = 300) -> str:
    """Text safe inside a `#` comment: ASCII with escapes, so no line break (or NUL) from Redis gets in."""
    return ascii(text[:limit])[1:-1]


def _first_id(job: JobDetail) -> str:
    return job.ids[0][1] if job.ids else job.job_id


def _utc(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="seconds")


def _datetime_code(seconds: float) -> str:
    return repr(datetime.datetime.fromtimestamp(seconds, datetime.UTC))
