"""dashboard.poller against real servers: each cycle lands in the store, `refresh` wakes a target early,
a target that is down or hung is marked down and recovers by itself, and never holds up another.

Targets that must not poll on their own use an interval of an hour, so every cycle the test sees is
the first one or one it asked for."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from callboard.collectors.credentials import redact
from callboard.collectors.target import TargetCollector
from callboard.dashboard.poller import Poller
from callboard.dashboard.redispool import redis_client
from callboard.dashboard.store import SnapshotStore, TargetState
from tests.collectors.conftest import BrokerFactory, make_actor
from tests.servers import RedisServer, async_wait_until, free_port

HOUR = 3600.0
QUEUE = "dramatiq:default"


@asynccontextmanager
async def polling(
    urls: dict[str, str], interval: float, timeout: float = 5.0
) -> AsyncIterator[tuple[Poller, SnapshotStore]]:
    """A started Poller over one app-style client per target (as create_app builds them); stopped and
    closed on exit."""
    clients = {name: redis_client(url, timeout=HOUR) for name, url in urls.items()}
    collectors = {name: TargetCollector(name, client) for name, client in clients.items()}
    store = SnapshotStore((name, redact(url)) for name, url in urls.items())  # as create_app does
    pools = {name: [client] for name, client in clients.items()}
    poller = Poller(store, collectors, interval, timeout=timeout, pools=pools)
    poller.start()
    try:
        yield poller, store
    finally:
        await poller.stop()
        for client in clients.values():
            await client.aclose()


def state(store: SnapshotStore, name: str) -> TargetState:
    found = store.get(name)
    assert found is not None
    return found


async def until(
    store: SnapshotStore, name: str, what: str, test: Callable[[TargetState], bool]
) -> TargetState:
    """Wait until the target's state passes `test`; returns that state."""

    async def check() -> TargetState | None:
        current = state(store, name)
        return current if test(current) else None

    found = await async_wait_until(check, timeout=15, what=f"{name}: {what}")
    assert isinstance(found, TargetState)
    return found


def ready(count: int) -> Callable[[TargetState], bool]:
    """The target is up and its last snapshot counts `count` ready messages in the default queue."""

    def test(current: TargetState) -> bool:
        snapshot = current.snapshot
        found = [q for q in snapshot.queues if q.key == QUEUE] if snapshot and current.up else []
        return bool(found) and found[0].counts["ready"] == count

    return test


async def test_a_cycle_stores_a_snapshot(
    redis_url: str, redis_server: RedisServer, brokers: BrokerFactory
) -> None:
    work = make_actor(brokers())
    work.send(1)
    work.send(2)
    async with polling({"main": redis_url}, interval=HOUR) as (_, store):
        main = await until(store, "main", "first snapshot", lambda s: s.snapshot is not None)
        snapshot = main.snapshot
        assert snapshot is not None
        assert main.up and main.ready and main.error is None and main.errors_total == 0
        assert main.last_attempt_at == snapshot.collected_at
        assert snapshot.target == "main" and snapshot.discovery.complete
        assert ready(2)(main)
        assert snapshot.server is not None and snapshot.server.version.split()[0] == redis_server.kind
        assert [counts["ready"] for _, counts in store.history("main", QUEUE)] == [2]
        assert store.version == 1  # one cycle, then it sleeps for the interval


async def test_refresh_wakes_the_target_it_names(redis_url: str, brokers: BrokerFactory) -> None:
    """Two targets on one server, polled hourly: a message sent shows on a target only once it is
    refreshed; `refresh("a")` leaves "b" asleep, `refresh()` wakes both."""
    work = make_actor(brokers())
    work.send(1)
    async with polling({"a": redis_url, "b": redis_url}, interval=HOUR) as (poller, store):
        await until(store, "a", "first snapshot", ready(1))
        b_first = (await until(store, "b", "first snapshot", ready(1))).snapshot
        work.send(2)
        poller.refresh("a")
        await until(store, "a", "the second message, after refresh('a')", ready(2))
        assert state(store, "b").snapshot is b_first  # not collected again
        assert len(store.history("a", QUEUE)) == 2 and len(store.history("b", QUEUE)) == 1
        poller.refresh()
        await until(store, "b", "the second message, after refresh()", ready(2))


async def test_a_target_that_goes_down_is_marked_down_and_recovers(own_server: RedisServer) -> None:
    """Redis stops: the target is down with the reason, keeps its last good snapshot, and its
    `down_since` stays at the first failure; Redis starts again on the same port: up again, by itself."""
    async with polling({"main": own_server.url}, interval=0.05) as (_, store):
        good = (await until(store, "main", "first snapshot", lambda s: s.up)).snapshot
        own_server.stop()
        down = await until(store, "main", "down", lambda s: not s.up)
        assert down.error is not None and down.error.startswith("Connection")  # refused, or closed mid-cycle
        assert down.down_since is not None and not down.ready
        assert down.snapshot is good  # "figures as of": the last good one is kept
        later = await until(store, "main", "three failed cycles", lambda s: s.errors_total >= 3)
        assert later.down_since == down.down_since and not later.up
        own_server.start()
        back = await until(store, "main", "up again", lambda s: s.up)
        assert back.error is None and back.down_since is None and back.ready
        assert back.snapshot is not good and back.errors_total >= 3  # the count of failures stays


async def test_a_target_that_is_down_does_not_stop_another(redis_url: str, brokers: BrokerFactory) -> None:
    """ "gone" is a port nobody listens on: it fails every cycle while "main" keeps being collected."""
    make_actor(brokers()).send(1)
    gone = f"redis://127.0.0.1:{free_port()}/0"
    async with polling({"main": redis_url, "gone": gone}, interval=0.05) as (_, store):
        await until(store, "gone", "three failed cycles", lambda s: s.errors_total >= 3)
        await until(store, "main", "three cycles", lambda s: len(store.history("main", QUEUE)) >= 3)
        main, down = state(store, "main"), state(store, "gone")
        assert ready(1)(main) and main.errors_total == 0
        assert not down.up and down.snapshot is None and down.error is not None


async def test_a_target_down_from_the_start_logs_it_once_and_its_recovery_once(
    own_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A target that never answered (a typo in its URL, Redis not started yet) is logged at WARNING on
    its first failed cycle, with its URL minus the password and the reason, and not again on the
    cycles after; once Redis answers, one INFO line."""
    own_server.stop()  # its port now refuses connections
    secret = f"redis://:hunter2@127.0.0.1:{free_port()}/0"  # never answers
    caplog.set_level(logging.INFO, logger="callboard.poller")
    async with polling({"late": own_server.url, "secret": secret}, interval=0.05) as (_, store):
        await until(store, "late", "three failed cycles", lambda s: s.errors_total >= 3)
        await until(store, "secret", "three failed cycles", lambda s: s.errors_total >= 3)
        own_server.start()
        back = await until(store, "late", "up", lambda s: s.up)
        await until(store, "late", "another good cycle", lambda s: s.up and s.snapshot is not back.snapshot)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "callboard.poller"]
    late = [(level, text) for level, text in lines if "target late " in text]
    assert [level for level, _ in late] == [logging.WARNING, logging.INFO], late
    assert late[0][1].startswith(f"target late ({own_server.url}) is unreachable: Connection"), late
    assert late[1][1].startswith(f"target late ({own_server.url}) is reachable again after"), late
    hidden = [text for level, text in lines if "target secret " in text]
    assert len(hidden) == 1 and "hunter2" not in hidden[0], hidden
    assert hidden[0].startswith(f"target secret ({redact(secret)}) is unreachable: "), hidden


def stopped(server: RedisServer) -> None:
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)


def resumed(server: RedisServer) -> None:
    if server.process is not None:
        os.kill(server.process.pid, signal.SIGCONT)


async def test_a_hung_target_times_out_without_holding_up_another(
    redis_url: str, own_server: RedisServer, brokers: BrokerFactory
) -> None:
    """A server that accepts connections but never answers (stopped with SIGSTOP): its cycle is cut
    off by the poller's timeout and marked down, the other target keeps its cycles, and once the
    server runs again the next cycle, on a fresh connection, brings it back."""
    make_actor(brokers()).send(1)
    urls = {"main": redis_url, "hung": own_server.url}
    async with polling(urls, interval=0.05, timeout=0.5) as (_, store):
        await until(store, "hung", "first snapshot", lambda s: s.up)
        try:
            stopped(own_server)
            down = await until(store, "hung", "timed out", lambda s: not s.up)
            assert down.error == "timed out waiting for Redis"
            polled = len(store.history("main", QUEUE))
            await until(
                store, "main", "more cycles", lambda s: len(store.history("main", QUEUE)) > polled + 2
            )
            assert state(store, "main").up
        finally:
            resumed(own_server)
        back = await until(store, "hung", "up again", lambda s: s.up)
        assert back.error is None


async def unread(port: int) -> int:
    """Bytes clients have sent to the server on `port` that it has not read yet (Linux /proc/net/tcp:
    the receive queue of each socket whose local end is that port)."""
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, queues = fields[1], fields[4]
        if int(local.split(":")[1], 16) == port:
            total += int(queues.split(":")[1], 16)
    return total


async def test_a_refresh_during_a_cycle_runs_one_more_cycle(own_server: RedisServer) -> None:
    """A control calls `refresh` after its write; if a cycle is in flight then, that cycle may have
    read before the write, so one more must follow, or the numbers wait for the next interval."""
    async with polling({"main": own_server.url}, interval=HOUR, timeout=HOUR) as (poller, store):
        await until(store, "main", "first snapshot", lambda s: s.up)
        assert store.version == 1
        try:
            stopped(own_server)
            poller.refresh("main")  # the second cycle starts, and waits on the stopped server
            await async_wait_until(
                lambda: unread(own_server.port), what="the second cycle's command at the stopped server"
            )
            assert store.version == 1
            poller.refresh("main")  # arrives during the second cycle
        finally:
            resumed(own_server)
        await until(store, "main", "the second cycle", lambda s: store.version >= 2)
        await until(
            store, "main", "a third cycle, for the refresh during the second", lambda s: store.version >= 3
        )
