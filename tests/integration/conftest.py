from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.conftest import flushed
from tests.servers import Callboard, RedisServer


@pytest.fixture
def redis_url(one_redis: RedisServer) -> str:
    """The session's integration server (ours), emptied for this test."""
    return flushed(one_redis)


@pytest.fixture
def control(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the test's database, for the truth and for steering the test actors."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def board(redis_url: str) -> Iterator[Callboard]:
    """`callboard serve` on the test's database as target `main`, polling every 0.2 s."""
    board = Callboard([f"main={redis_url}"]).start(poll_interval=0.2)
    try:
        yield board
    finally:
        board.stop()
