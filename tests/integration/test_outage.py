"""Redis goes away and comes back: /metrics keeps answering, readiness follows, recovery needs nobody.
A target that never answered says so on every page, instead of an empty state that pretends all is
well, and the log says it once."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import quote

import pytest
import redis

from tests.integration import dramatiq_app
from tests.integration.support import api_json, full, metric_counts, scrape, value, wait_for_counts
from tests.servers import Callboard, RedisServer, free_port, wait_until

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


class _MainText(HTMLParser):
    """The text a reader sees inside <main> (the page itself, not the health banner above it)."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.depth += tag == "main"

    def handle_endtag(self, tag: str) -> None:
        self.depth -= tag == "main"

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.parts.append(data)


def main_text(html: str) -> str:
    parser = _MainText()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


#: Each page, and the empty states it showed for a target it could not read (issue 14, item 4).
MISLEADING = {
    "/": ("No queues found yet", "No flow recorded yet", "processed 0"),
    "/workers": ("No worker heartbeats",),
    "/failures": (
        "No failures",
        "No dead letters or failed results",
        "Nothing orphaned or stuck",
        "0 failures",
    ),
    "/tasks": ("No flow recorded yet",),
    "/audit": ("No controls have been used yet",),
    "/search?q=order": ("Finished in", "No match.", "0 matches"),
}


def test_a_target_unreachable_from_the_start_says_so_on_every_page() -> None:
    """A typo'd port: every page names the target, says it is unreachable and since when, and shows
    none of the empty states that would claim there is nothing; queue and job pages answer 503 naming
    it; the log says so once, at WARNING, with the URL minus its password."""
    port = free_port()
    name = f"127.0.0.1:{port}/0"  # named host:port/db: no NAME= given
    board = Callboard([f"redis://:hunter2@127.0.0.1:{port}/0"])
    try:
        board.start(poll_interval=0.2)
        wait_until(lambda: "Error" in board.get("/readyz")[1], what="a failed cycle")
        for path, misleading in MISLEADING.items():
            status, body = board.get(path)
            text = main_text(body)
            assert status == 200, (path, body)
            assert f"Redis target “{name}” is unreachable, down since " in text, (path, text)
            assert " UTC (" in text and " ago)" in text, (
                path,
                text,
            )  # since when: the time, and how long ago
            for words in misleading:
                assert words not in text, (path, words, text)
            assert "hunter2" not in body
        # The health banner above every page says it too, in whole sentences.
        banner = board.get("/workers")[1].split('<div id="banner"', 1)[1].split("<main>", 1)[0]
        assert f"Redis target “{name}” is unreachable" in banner and "down since" in banner
        assert ").." not in banner
        segment = quote(name, safe=":")
        for path in (f"/queues/{segment}/dramatiq/dramatiq:default", f"/jobs/{segment}/arq/arq:queue/j1"):
            status, body = board.get(path)
            assert status == 503, (path, status)
            assert f"Redis target “{name}” is unreachable, down since " in main_text(body), path
        search = api_json(board, "/api/v1/search?q=order")
        assert search["unreachable"] == [name] and search["in_scope"] == 1
        assert api_json(board, "/api/v1/audit")["unreachable"] == [f"{name}: ConnectionError"]
    finally:
        board.stop()
    log = board.proc.log() if board.proc else ""
    warnings = [line for line in log.splitlines() if " WARNING callboard.poller: " in line]
    assert len(warnings) == 1, log
    assert f"target {name} (redis://:***@127.0.0.1:{port}/0) is unreachable: ConnectionError" in warnings[0]
    assert "hunter2" not in log


def test_one_target_down_leaves_the_others_figures_and_names_itself(redis_url: str) -> None:
    """Two targets, one unreachable: the reachable one's queues and empty states show as usual, and
    the page adds which target is missing, instead of presenting a part as the whole."""
    producer, actors = dramatiq_app.build(redis_url, "dramatiq")
    board = Callboard([f"{TARGET}={redis_url}", f"gone=redis://127.0.0.1:{free_port()}/0"])
    try:
        actors["hold_default"].send("never", 1)
        board.start(poll_interval=0.2)
        wait_until(lambda: "dramatiq:default" in board.get("/")[1], what="the reachable target's queue")
        overview = main_text(board.get("/")[1])
        assert "default" in overview
        workers = main_text(board.get("/workers")[1])
        assert "Redis target “gone” is unreachable, down since " in workers
        # "main" was read: its one heartbeat (the producer's broker) shows; only "gone" is unknown.
        assert workers.count(" alive ") == 1 and workers.count("Not known") == 1
        tasks = main_text(board.get("/tasks")[1])
        assert tasks.count("No flow recorded yet") == 1 and "Redis target “gone” is unreachable" in tasks
    finally:
        board.stop()
        producer.client.close()
