"""Helpers for the hostile tests of routing, limits and odd data: seed real layouts, speak HTTP.

Seeding uses the frameworks' own clients (a Dramatiq RedisBroker, arq's ArqRedis) or writes their
exact layout where a client cannot produce the case (a redis message id that is not UTF-8). HTTP goes
through urllib as a script would; links are taken from the pages, never rebuilt, so a test checks the
URLs the UI really builds.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import dramatiq
from arq import create_pool
from arq.connections import RedisSettings
from dramatiq.brokers.redis import RedisBroker

from tests.servers import Callboard, wait_until


def request(
    board: Callboard,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, str], str]:
    """(status, headers, text) of one request; errors are answers too."""
    req = urllib.request.Request(board.url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def post_json(board: Callboard, path: str, data: Any) -> tuple[int, Any]:
    status, _, text = request(
        board, "POST", path, json.dumps(data).encode(), {"Content-Type": "application/json"}
    )
    return status, json.loads(text)


def get_ok(board: Callboard, path: str) -> str:
    status, text = board.get(path)
    assert status == 200, (path, status, text[:800])
    return text


def api(board: Callboard, path: str) -> Any:
    return json.loads(get_ok(board, path))


def attribute_values(page: str, attribute: str) -> list[str]:
    """Every value of `attribute` in the HTML, unescaped (as a browser reads it)."""
    return [html.unescape(v) for v in re.findall(rf'{attribute}="([^"]*)"', page)]


def whatwg_path(path: str) -> str:
    """The path as a browser sends it: WHATWG URL parsing removes `.` and `..` segments, also when
    written `%2e` (any case), before the request leaves."""
    path, sep, query = path.partition("?")
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        low = seg.lower()
        if low in ("..", ".%2e", "%2e.", "%2e%2e"):
            if out:
                out.pop()
            if last:
                out.append("")
        elif low in (".", "%2e"):
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out) + sep + query


def dramatiq_broker(url: str, namespace: str = "dramatiq") -> Any:
    return RedisBroker(url=url, namespace=namespace, maintenance_chance=0)  # type: ignore[no-untyped-call]


def _noop(*args: Any, **kwargs: Any) -> None:
    """Test actors are never run: no worker consumes these queues."""


def dramatiq_actor(broker: Any, queue: str, name: str) -> Any:
    return dramatiq.actor(broker=broker, queue_name=queue, actor_name=name)(_noop)


def arq_enqueue(port: int, function: str, *args: Any, **kwargs: Any) -> str:
    """Enqueue with arq's own client (ArqRedis.enqueue_job); the job id."""

    async def run() -> str:
        pool = await create_pool(RedisSettings(host="127.0.0.1", port=port))
        try:
            job = await pool.enqueue_job(function, *args, **kwargs)
            assert job is not None, "arq refused the enqueue (the id exists)"
            return str(job.job_id)
        finally:
            await pool.aclose()

    return asyncio.run(run())


def eventually(predicate: Callable[[], object], what: str, timeout: float = 15) -> None:
    wait_until(predicate, timeout=timeout, what=what)
