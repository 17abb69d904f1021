from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import RedisServer, redis_binaries

SERVERS = redis_binaries()


@pytest.fixture(scope="session", params=sorted(SERVERS))
def redis_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """Every Redis-compatible server available (Redis 7 and Valkey when both exist), started by us."""
    server = RedisServer(SERVERS[request.param], kind=request.param).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def one_redis() -> Iterator[RedisServer]:
    """One server for slower tests (integration, browser): redis-server when present, else Valkey."""
    kind = "redis" if "redis" in SERVERS else "valkey"
    server = RedisServer(SERVERS[kind], kind=kind).start()
    yield server
    server.stop()
