from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import Callboard


@pytest.fixture
def board(redis_url: str) -> Iterator[Callboard]:
    """`callboard serve` on the test's database as target `main`, polling every 0.2 s."""
    board = Callboard([f"main={redis_url}"]).start(poll_interval=0.2)
    try:
        yield board
    finally:
        board.stop()
