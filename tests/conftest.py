from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from redis.asyncio import Redis

from tests.servers import RedisServer, redis_binaries

SERVERS = redis_binaries()
#: The server for tests that need only one: redis-server when present, else Valkey (always present).
PREFERRED = "redis" if "redis" in SERVERS else "valkey"


@pytest.fixture(scope="session", params=sorted(SERVERS))
def redis_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """Every Redis-compatible server available (Redis 7 and Valkey when both exist), started by us."""
    server = RedisServer(SERVERS[request.param], kind=request.param).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def one_redis() -> Iterator[RedisServer]:
    """One server for slower tests (integration, browser), shared by the session."""
    server = RedisServer(SERVERS[PREFERRED], kind=PREFERRED).start()
    yield server
    server.stop()


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server for one test alone: the test may stop and restart it."""
    server = RedisServer(SERVERS[PREFERRED], kind=PREFERRED).start()
    yield server
    server.stop()


def flushed(server: RedisServer) -> str:
    """The URL of `server` (ours), emptied for the test about to use it."""
    with redis.Redis.from_url(server.url) as client:
        client.flushall()
    return server.url


@pytest.fixture
def redis_url(one_redis: RedisServer) -> str:
    """The session's shared server (ours), emptied for this test; tests/collectors/ overrides it with
    every server kind in turn."""
    return flushed(one_redis)


@pytest.fixture
def control(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the test's database, for the truth and for steering the test actors."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
async def aredis(redis_url: str) -> AsyncIterator[Redis]:
    """An asyncio client on the test's `redis_url` (each test folder says which server that is)."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()
