"""Redis goes away and comes back: /metrics keeps answering, readiness follows, recovery needs nobody."""

from __future__ import annotations

import pytest
import redis

from tests.integration import dramatiq_app
from tests.integration.support import api_json, full, metric_counts, scrape, value, wait_for_counts
from tests.servers import Callboard, RedisServer, wait_until

pytestmark = pytest.mark.integration

TARGET = "main"


def test_redis_outage_and_recovery(own_server: RedisServer) -> None:
    producer, actors = dramatiq_app.build(own_server.url, "dramatiq")
    board = Callboard(redis=[f"{TARGET}={own_server.url}"])
    client = redis.Redis.from_url(own_server.url)
    try:
        actors["hold_default"].send("never", 1)
        actors["hold_default"].send("never", 2)
        board.start(poll_interval=0.2)
        wait_for_counts(
            board, client, TARGET, full({("dramatiq", "default"): {"ready": 2}}), "before the outage"
        )
        assert board.get("/readyz")[0] == 200

        own_server.stop()

        def down() -> bool:
            return value(scrape(board), "callboard_up", target=TARGET) == 0

        wait_until(down, timeout=15, what="callboard_up 0 while Redis is down")
        samples = scrape(board)  # still 200 (scrape asserts it)
        assert metric_counts(samples, TARGET) == {}  # no half picture: queue series are gone
        assert (value(samples, "callboard_collect_errors_total", target=TARGET) or 0) >= 1
        assert value(samples, "callboard_last_collect_timestamp_seconds", target=TARGET) is not None
        status, body = board.get("/readyz")
        assert status == 503
        assert TARGET in body
        assert board.get("/healthz")[0] == 200
        target = next(t for t in api_json(board, "/api/v1/queues")["targets"] if t["name"] == TARGET)
        assert target["up"] is False
        assert target["error"]
        assert target["down_since"] is not None

        own_server.start()  # same port, empty (no persistence)

        def up() -> bool:
            return value(scrape(board), "callboard_up", target=TARGET) == 1

        wait_until(up, timeout=15, what="callboard_up 1 after Redis is back")
        assert board.get("/readyz")[0] == 200
        # The queue is still listed (kept for idle_ttl after its keys vanished), now empty.
        wait_for_counts(board, client, TARGET, full({("dramatiq", "default"): {}}), "after restart")
        # And it keeps counting what happens next.
        actors["hold_default"].send("never", 3)
        wait_for_counts(board, client, TARGET, full({("dramatiq", "default"): {"ready": 1}}), "new traffic")
    finally:
        board.stop()
        client.close()
        producer.client.close()
