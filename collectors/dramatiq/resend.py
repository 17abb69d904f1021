"""Copy as code for Dramatiq: a snippet that re-sends a message through RedisBroker (no task code)."""

from __future__ import annotations

from callboard.collectors import payloads
from callboard.collectors.model import JobDetail
from callboard.collectors.snippets import (
    IND,
    Snippet,
    block,
    comment,
    first_id,
    import_lines,
    item,
    todo_notes,
    url_lines,
    utc,
)

#: Options Dramatiq's broker and middleware write while a message lives, none of which the user set.
DRAMATIQ_DROPPED_OPTIONS = ("retries", "traceback", "requeue_timestamp", "redis_message_id", "eta")


def write(job: JobDetail, redis_url: str) -> Snippet:
    if not isinstance(job.args, list) or not isinstance(job.kwargs, dict):
        return Snippet(None, ("No code: the message's args are not a list or its kwargs not an object.",))
    namespace, _, queue = job.queue_key.rpartition(":")
    options = {k: v for k, v in job.options.items() if k not in DRAMATIQ_DROPPED_OPTIONS}
    parts = [
        block("args=[", [item(v) for v in job.args], "],", 1),
        block("kwargs={", [item(v, f"{k!r}: ") for k, v in job.kwargs.items()], "},", 1),
        block("options={", [item(v, f"{k!r}: ") for k, v in options.items()], "},", 1),
    ]
    url_comments, url = url_lines(redis_url)
    broker_args = f"url={url}" + (f", namespace={namespace!r}" if namespace != "dramatiq" else "")
    imports = set().union(*(p.imports for p in parts))
    lines = [
        f"# Re-send Dramatiq message {comment(first_id(job))}: actor {comment(job.name or '')},"
        f" queue {comment(queue)}.",
        "# Needs dramatiq[redis]. Imports no task code: a worker that has the actor runs it. It is a new",
        "# message (new message_id and timestamp); pass message_id=... to keep the old id (and result key).",
        *url_comments,
        *import_lines({"os"} | imports),
        "import dramatiq",
        "from dramatiq.brokers.redis import RedisBroker",
        "",
        f"broker = RedisBroker({broker_args})",
        "message = dramatiq.Message(",
        f"{IND}queue_name={queue!r},",
        f"{IND}actor_name={job.name!r},",
        parts[0].code,
        parts[1].code,
        # Why these go: the retry count and tracebacks are the Retries middleware's record of failed
        # attempts (kept, this run would have fewer retries left); enqueue() gives every message a new
        # redis_message_id; eta is when a delayed message was due (enqueue's delay= sets a new one).
        f"{IND}# Not carried over: retries, traceback, requeue_timestamp, redis_message_id and eta.",
        parts[2].code,
        ")",
        f"broker.enqueue(message){_delay_comment(job)}",
        'print("enqueued message", message.message_id)',
    ]
    return Snippet("\n".join(lines) + "\n", todo_notes(parts))


def _delay_comment(job: JobDetail) -> str:
    eta = payloads.as_int(job.options.get("eta"))
    if job.state != "delayed" or eta is None:
        return ""
    return f"  # it was delayed until {utc(eta / 1000)}: enqueue(message, delay=ms) delays it again"
