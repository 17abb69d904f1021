"""One collection cycle for one Redis target: a budgeted discovery step, then one pipelined round trip.

The counters of every framework and queue, the heartbeats and the server facts travel in a single
pipeline (a read-only Lua script per framework, plus INFO and DBSIZE), so a cycle costs the same
whether a queue holds ten messages or a million. Discovery SCANs at most `scan_budget` calls per
cycle and is the only part that grows with the keyspace, by design bounded.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from collectors.arq import ArqCollector
from collectors.dramatiq import DramatiqCollector
from collectors.keyspace import KeyspaceScanner
from collectors.model import (
    CollectedPart,
    FailureGroup,
    QueueStats,
    ServerInfo,
    StuckJob,
    TargetSnapshot,
    WorkerStats,
)


def script_sha(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()


class TargetCollector:
    """Owns the discovery state of one target; `collect()` returns a fresh snapshot or raises."""

    def __init__(
        self,
        name: str,
        redis: Redis,
        dramatiq: DramatiqCollector | None = None,
        arq: ArqCollector | None = None,
        scan_budget: int = 20,
    ) -> None:
        self.name = name
        self.redis = redis
        self.dramatiq = dramatiq or DramatiqCollector()
        self.arq = arq or ArqCollector()
        self.frameworks: tuple[DramatiqCollector | ArqCollector, ...] = (self.dramatiq, self.arq)
        self.scanner = KeyspaceScanner(budget=scan_budget)
        self._sha = {src: script_sha(src) for fw in self.frameworks for src in fw.scripts}

    async def discover(self) -> int:
        """One budgeted discovery step; returns the round trips it used."""
        batch = await self.scanner.step(self.redis)
        for framework in self.frameworks:
            framework.observe(batch.keys)
        if batch.pass_complete:
            self.arq.end_pass()
        # Follow-up reads, each with a budget: Arq's key types, result payloads and old claims;
        # Dramatiq's dead letters for the failure groups.
        trips = await self.arq.after_scan(self.redis) + await self.dramatiq.after_scan(self.redis)
        return batch.round_trips + trips

    async def collect(self) -> TargetSnapshot:
        started = time.perf_counter()
        round_trips = await self.discover()
        replies, parsers, trips = await self._counters()
        round_trips += trips
        info, db_size = replies[0], replies[1]
        self.scanner.note_db_size(int(db_size))
        queues: list[QueueStats] = []
        workers: list[WorkerStats] = []
        notes: list[str] = []
        failures: list[FailureGroup] = []
        missing = 0
        stuck: list[StuckJob] = []
        for parse, reply in zip(parsers, replies[2:], strict=True):
            part: CollectedPart = parse(reply)
            queues += part.queues
            workers += part.workers
            notes += part.notes
            failures += part.failures
            missing += part.failures_missing
            stuck += part.stuck
        return TargetSnapshot(
            target=self.name,
            collected_at=time.time(),
            duration=time.perf_counter() - started,
            round_trips=round_trips,
            queues=tuple(queues),
            workers=tuple(workers),
            server=_server_info(info),
            discovery=self.scanner.status(),
            notes=tuple(notes),
            failures=tuple(sorted(failures, key=lambda g: (-g.count, -(g.last_seen or 0.0), g.key))),
            failures_missing=missing,
            stuck=tuple(stuck),
        )

    async def _counters(self) -> tuple[list[Any], list[Callable[[Any], CollectedPart]], int]:
        """The one pipeline. On NOSCRIPT (a restarted or flushed server) load the scripts and retry once."""
        trips = 0
        for attempt in (1, 2):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.info()
                pipe.dbsize()
                parsers = [fw.stage(pipe, self._sha) for fw in self.frameworks]
                replies = await pipe.execute(raise_on_error=False)
            trips += 1
            if attempt == 1 and any(isinstance(r, NoScriptError) for r in replies):
                for source in self._sha:
                    await self.redis.script_load(source)
                    trips += 1
                continue
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            return replies, parsers, trips
        raise AssertionError("unreachable")


def _server_info(info: dict[str, Any]) -> ServerInfo:
    version = info.get("valkey_version") or info.get("redis_version") or "?"
    server = "valkey" if "valkey_version" in info or info.get("server_name") == "valkey" else "redis"
    used = info.get("used_memory")
    uptime = info.get("uptime_in_seconds")
    return ServerInfo(
        version=f"{server} {version}",
        used_memory=int(used) if used is not None else None,
        uptime_seconds=int(uptime) if uptime is not None else None,
    )
