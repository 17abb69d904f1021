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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from callboard.collectors.credentials import redact
from callboard.collectors.literals import Literal, literal
from callboard.collectors.model import JobDetail

#: The variable a snippet reads the Redis URL from. Not `REDIS_URL`: that name often points at an
#: app's cache or another database, and a job sent there would silently never run.
URL_VARIABLE = "RESEND_REDIS_URL"


#: A longer snippet is not put on the page (a payload is at most 1 MB; escapes can make it 4x that).
MAX_CHARS = 1_000_000


IND = "    "


@dataclass(frozen=True, slots=True)
class Snippet:
    #: Python source that re-sends the job; None when it cannot be written (the notes say why).
    code: str | None
    #: What the operator must know before running it: values it could not rebuild, clashes.
    notes: tuple[str, ...] = ()


def resend_snippet(job: JobDetail, redis_url: str, write: Callable[[JobDetail, str], Snippet]) -> Snippet:
    """The snippet that re-sends `job` to the Redis at `redis_url` (its password is never written)."""
    if job.undecodable is not None:
        return Snippet(None, (f"No code: the payload could not be decoded ({job.undecodable.reason}).",))
    if not job.name:
        return Snippet(None, ("No code: the payload names no actor or function.",))
    snippet = write(job, redis_url)  # the backend's own writer (collectors/<backend>/resend.py)
    if snippet.code is not None and len(snippet.code) > MAX_CHARS:
        return Snippet(None, (f"No code: it would be over {MAX_CHARS:,} characters.",))
    return snippet


def url_lines(redis_url: str) -> tuple[list[str], str]:
    """Comments and the expression for the Redis URL. The password never appears: with one, the URL
    must come from the environment; without, the target's URL is the default."""
    safe = redact(redis_url)  # the caller passes a safe URL already; this makes sure of it
    if "***" in safe:  # where redact() removed a password
        example = comment(safe.replace("***", "PASSWORD"))
        return [f"# Run with {URL_VARIABLE}={example} (Callboard never shows passwords)."], (
            f"os.environ[{URL_VARIABLE!r}]"
        )
    return [f"# Redis: the target's URL; set {URL_VARIABLE} to send elsewhere."], (
        f"os.environ.get({URL_VARIABLE!r}, {safe!r})"
    )


def item(value: Any, head: str = "", tail: str = ",") -> Literal:
    """One line of a call or a literal block (`value,`, `'key': value,`, `key=value,`), with its TODOs
    in a comment at the end of the line: `...` may sit deep inside the value, so the line is the unit."""
    rendered = literal(value)
    code = head + rendered.code + tail + todo_suffix(rendered.todos)
    return Literal(code, rendered.imports, rendered.todos)


def todo_suffix(todos: tuple[str, ...]) -> str:
    if not todos:
        return ""
    return "  # TODO: " + comment("; ".join(f"{t} cannot be rebuilt from Redis" for t in todos))


def comment_line(text: str) -> Literal:
    return Literal("# " + comment(text), frozenset(), ())


def block(opening: str, items: list[Literal], closing: str, indent: int) -> Literal:
    """`opening`, one item per line one level deeper, `closing`; `opening + closing` when empty."""
    imports: frozenset[str] = frozenset().union(*(i.imports for i in items))
    todos = tuple(t for i in items for t in i.todos)
    pad = IND * indent
    if not items:
        return Literal(f"{pad}{opening}{closing}", imports, todos)
    body = [f"{pad}{IND}{i.code}" for i in items]
    return Literal("\n".join([f"{pad}{opening}", *body, f"{pad}{closing}"]), imports, todos)


def todo_notes(parts: list[Literal]) -> tuple[str, ...]:
    todos = [t for p in parts for t in p.todos]
    if not todos:
        return ()
    return (
        f"{len(todos)} value(s) cannot be rebuilt from Redis and are left as `...` with a TODO comment: "
        "replace them before running. " + "; ".join(comment(t)[:200] for t in todos[:5]),
    )


def import_lines(modules: set[str]) -> list[str]:
    return [f"import {m}" for m in sorted(modules)] + [""]


def comment(text: str, limit: int = 300) -> str:
    """Text safe inside a `#` comment: ASCII with escapes, so no line break (or NUL) from Redis gets in."""
    return ascii(text[:limit])[1:-1]


def first_id(job: JobDetail) -> str:
    return job.ids[0][1] if job.ids else job.job_id


def utc(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="seconds")


def datetime_code(seconds: float) -> str:
    return repr(datetime.datetime.fromtimestamp(seconds, datetime.UTC))
