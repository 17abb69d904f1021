"""Redis clients with a capped connection pool that shrinks when idle.

One client per target is shared by the poller, the pages and the controls. redis-py's default pool
opens a connection per concurrent command and keeps every one forever: 50 page requests at once
left 39 connections open (issue 11). Here a target gets at most `MAX_CONNECTIONS`; a request that
finds them all busy waits (up to `WAIT_SECONDS`) for one instead of failing (redis-py's
BlockingConnectionPool), and `trim()`, run by the poller after every cycle, closes connections idle for
`IDLE_SECONDS` beyond the `FLOOR` kept open for the poller and the next page.

`RESERVED` connections are the poller's alone (its task sets `POLLER`): a burst of page requests
waits for the others, and the target never looks down (`callboard_up 0`) because pages were busy.
Cost: a dict entry per connection, an O(connections) look under the pool's lock per trim, and an
O(waiters) wake-up per release.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection, Connection
from redis.exceptions import ResponseError

log = logging.getLogger("callboard")

#: Connections per target at most: a poll uses one, a page a few in turn; more only queue at Redis.
MAX_CONNECTIONS = 8
#: Idle connections kept open (the poller's, and one for the next page).
FLOOR = 2
#: A connection idle this long, beyond the floor, is closed.
IDLE_SECONDS = 5.0
#: Connections only the poller may take.
RESERVED = 1
#: How long a page or control waits for a free connection before a 503 (the poller never waits).
WAIT_SECONDS = 15.0
#: True in the poller's task (set by dashboard.poller): it may use the reserved connections.
POLLER: ContextVar[bool] = ContextVar("callboard_redis_poller", default=False)


class ShrinkingPool(BlockingConnectionPool):
    """A BlockingConnectionPool that remembers when each connection was released, and can close
    the ones idle for long (redis-py 5.3's pools never close an idle connection themselves)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._released_at: dict[AbstractConnection, float] = {}

    def can_get_connection(self) -> bool:
        # Called by the waiting task itself, so POLLER is that task's own flag.
        reserve = 0 if POLLER.get() else RESERVED
        return len(self._in_use_connections) < self.max_connections - reserve

    async def release(self, connection: AbstractConnection) -> None:
        self._released_at[connection] = time.monotonic()
        async with self._condition:
            await ConnectionPool.release(self, connection)
            # Every waiter looks again: the one woken alone might be a page that may not take the
            # poller's reserved connection, and the wake-up would be lost.
            self._condition.notify_all()

    def connected(self) -> int:
        """Connections open now (in use, or idle and connected)."""
        idle = sum(1 for c in self._available_connections if c.is_connected)
        return idle + len(self._in_use_connections)

    async def trim(self, floor: int = FLOOR, idle_seconds: float = IDLE_SECONDS) -> int:
        """Close idle connections beyond `floor` released more than `idle_seconds` ago; how many."""
        now = time.monotonic()
        closing: list[AbstractConnection] = []
        # The pool's own lock: nobody takes or returns a connection while we pick ours out of the
        # idle list. Connections are reused last-in first-out, so the front holds the oldest idle.
        async with self._condition:
            available = self._available_connections
            spare = len(available) - floor
            for connection in list(available):
                if spare <= 0:
                    break
                if now - self._released_at.get(connection, now) >= idle_seconds:
                    available.remove(connection)
                    self._released_at.pop(connection, None)
                    closing.append(connection)
                    spare -= 1
        for connection in closing:
            # Out of the pool: nobody else holds it, so closing outside the lock is safe.
            with contextlib.suppress(Exception):
                await connection.disconnect()
        return len(closing)


def redis_client(url: str, timeout: float, max_connections: int = MAX_CONNECTIONS) -> Redis:
    """A client of `url` (connect and read `timeout`) whose pool holds at most `max_connections`;
    past WAIT_SECONDS waiting for one, a ConnectionError ("No connection available": a 503)."""
    pool = ShrinkingPool.from_url(
        url,
        max_connections=max_connections,
        timeout=WAIT_SECONDS,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # Key names are not always UTF-8; surrogateescape keeps them round-trippable.
        encoding_errors="surrogateescape",
        health_check_interval=30,
        client_name="callboard",
        redis_connect_func=name_connection,
    )
    client: Redis = Redis.from_pool(pool)
    return client


async def name_connection(connection: Connection) -> None:
    """redis-py's handshake, with the client name set only where the ACL allows it.

    The name ("callboard" in CLIENT LIST) is a courtesy: a read-only user without
    +client|setname would otherwise fail every connection, and the target would look down."""
    name, connection.client_name = connection.client_name, None
    try:
        await connection.on_connect()
    finally:
        connection.client_name = name
    if name:
        await connection.send_command("CLIENT", "SETNAME", name)
        with contextlib.suppress(ResponseError):
            await connection.read_response()


async def trim_pools(clients: Iterable[Redis]) -> None:
    """Trim each client's pool once (the poller does it after every cycle of their target)."""
    for client in clients:
        pool = client.connection_pool
        if isinstance(pool, ShrinkingPool):
            try:
                await pool.trim()
            except Exception:  # a trim that fails leaves connections open, nothing worse
                log.exception("trimming a Redis connection pool failed")
