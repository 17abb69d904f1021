"""One collection cycle for one Redis target: a budgeted discovery step, then one pipelined round trip.

The counters of every framework and queue, the heartbeats and the server facts travel in a single
pipeline (a read-only Lua script per framework, plus INFO and DBSIZE), so a cycle costs the same
whether a queue holds ten messages or a million. Discovery SCANs at most `scan_budget` calls per
cycle and is the only part that grows with the keyspace, by design bounded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoPermissionError, NoScriptError, RedisError, ResponseError

from callboard.collectors import backends
from callboard.collectors.arq.snapshot import ArqCollector
from callboard.collectors.backend import Backend
from callboard.collectors.depth import DepthRecorder
from callboard.collectors.dramatiq.snapshot import DramatiqCollector
from callboard.collectors.flow import Series, Tally
from callboard.collectors.flowreader import WINDOW, FlowReader, FlowSnapshot
from callboard.collectors.keyspace import KeyspaceScanner
from callboard.collectors.model import (
    FailureGroup,
    Parser,
    QueueStats,
    ServerInfo,
    StuckJob,
    TargetSnapshot,
    WorkerStats,
)
from callboard.collectors.search import Source


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
        results_redis: Redis | None = None,
        depth_history: bool = True,
    ) -> None:
        self.name = name
        self.redis = redis
        self.dramatiq = dramatiq or DramatiqCollector()
        self.arq = arq or ArqCollector()
        #: What pages, controls and search use, by name (collectors/backend.py).
        self.backends = backends.for_target(redis, self.dramatiq, self.arq, results_redis)
        self.frameworks: tuple[DramatiqCollector | ArqCollector, ...] = (self.dramatiq, self.arq)
        self.scanner = KeyspaceScanner(budget=scan_budget)
        self._sha = {src: script_sha(src) for fw in self.frameworks for src in fw.scripts}
        #: The workers' companions' figures (collectors/flow.py), read in the cycle's pipeline.
        self.flow_reader = FlowReader()
        self.flow: FlowSnapshot | None = None
        #: Each queue's depth, pushed to Redis at minute, 5-minute and hour steps (collectors/depth.py).
        self.depth = DepthRecorder(depth_history)
        #: What this target's ACL lets Callboard run, learned from NOPERM replies.
        self.scripts_allowed = True
        self.info_allowed = True
        self._acl_recheck_at = 0.0

    def backend(self, name: str) -> Backend | None:
        """The backend called `name` in URLs ("dramatiq", "arq"), if this target has one."""
        return self.backends.get(name)

    def search_sources(self, framework: str | None = None, queue: str | None = None) -> list[Source]:
        """What a search of this target walks: every known queue of every backend, or of one, or one
        queue."""
        return [s for b in self._chosen(framework) for s in b.search_sources(self.name, queue)]

    def search_notes(self, framework: str | None = None) -> list[str]:
        """What a search of this target started now cannot see yet, each note naming the target."""
        return [f"{self.name}: {note}" for b in self._chosen(framework) for note in b.search_notes()]

    def _chosen(self, framework: str | None) -> list[Backend]:
        return [b for name, b in self.backends.items() if framework in (None, name)]

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
        info, db_size, parts, trips = await self._counters()
        round_trips += trips
        self.scanner.note_db_size(int(db_size))
        queues: list[QueueStats] = []
        workers: list[WorkerStats] = []
        notes: list[str] = list(self._acl_notes())
        failures: list[FailureGroup] = []
        missing = 0
        stuck: list[StuckJob] = []
        for parse, reply in parts:
            parsed = parse(reply)  # Dramatiq's decodes the head messages off the loop: awaited
            part = await parsed if inspect.isawaitable(parsed) else parsed
            queues += part.queues
            workers += part.workers
            notes += part.notes
            failures += part.failures
            missing += part.failures_missing
            stuck += part.stuck
        collected_at = time.time()
        self.depth.observe(collected_at, queues)
        if self.depth.note:
            notes.append(self.depth.note)
        return TargetSnapshot(
            target=self.name,
            collected_at=collected_at,
            duration=time.perf_counter() - started,
            round_trips=round_trips,
            queues=tuple(queues),
            workers=tuple(workers),
            server=_server_info(info) if info is not None else None,
            discovery=self.scanner.status(),
            notes=tuple(notes),
            failures=tuple(sorted(failures, key=lambda g: (-g.count, -(g.last_seen or 0.0), g.key))),
            failures_missing=missing,
            stuck=tuple(stuck),
            flow=self._flow_with_estimates(),
        )

    def _flow_with_estimates(self) -> FlowSnapshot | None:
        """The companions' flow, plus the backends' estimates for queues no companion reports on."""
        if self.flow is None:
            return None
        since = int(time.time() // 60) - WINDOW + 1
        covered = {(s.framework, s.namespace, s.queue) for s in self.flow.series}
        estimated: dict[int, dict[Series, Tally]] = {}
        for backend in self.backends.values():
            for minute, tallies in backend.estimated_flow(since).items():
                kept = {
                    s: t for s, t in tallies.items() if (s.framework, s.namespace, s.queue) not in covered
                }
                if kept:
                    estimated.setdefault(minute, {}).update(kept)
        return dataclasses.replace(self.flow, estimated=estimated)

    async def _counters(self) -> tuple[dict[str, Any] | None, int, list[tuple[Parser, Any]], int]:
        """The one pipeline: INFO, DBSIZE and each framework's snapshot script.

        On NOSCRIPT (a restarted or flushed server) load the scripts and retry once. A user whose ACL
        refuses INFO gets no server facts; one that refuses scripts gets the same counters from
        plain read commands (`read_plain`: two or three round trips per framework instead of one
        for all). Refusals are remembered, and tried again every ACL_RECHECK seconds."""
        trips = 0
        now = time.monotonic()
        if now >= self._acl_recheck_at:
            self.scripts_allowed = self.info_allowed = True
        for attempt in (1, 2, 3):
            scripts, want_info = self.scripts_allowed, self.info_allowed
            async with self.redis.pipeline(transaction=False) as pipe:
                if want_info:
                    pipe.info()
                pipe.dbsize()
                flow_count = self.flow_reader.stage(pipe)
                depth_count = self.depth.stage(pipe)
                staged = [fw.stage(pipe, self._sha) for fw in self.frameworks] if scripts else []
                replies = await pipe.execute(raise_on_error=False)
            trips += 1
            _refuse_cluster(replies)
            info = self._info(replies.pop(0)) if want_info else None
            db_size, flow_replies = replies[0], replies[1 : 1 + flow_count]
            self.depth.parse(replies[1 + flow_count : 1 + flow_count + depth_count])
            script_replies = replies[1 + flow_count + depth_count :]
            self.flow = self.flow_reader.parse(flow_replies)
            if isinstance(db_size, Exception):
                raise db_size
            if any(isinstance(r, NoPermissionError) for r in script_replies):
                self._refused("scripts")
                continue
            if attempt == 1 and any(isinstance(r, NoScriptError) for r in script_replies):
                try:
                    for source in self._sha:
                        await self.redis.script_load(source)
                        trips += 1
                except NoPermissionError:
                    self._refused("scripts")
                continue
            for reply in script_replies:
                if isinstance(reply, Exception):
                    raise reply
            # Each framework's parser gets the replies of the script calls it staged.
            parts: list[tuple[Parser, Any]] = []
            at = 0
            for parse, count in staged:
                parts.append((parse, script_replies[at : at + count]))
                at += count
            if not scripts:
                plain, used = await self._read_plain()
                parts += plain
                trips += used
            return info, int(db_size), parts, trips
        raise RedisError("the snapshot scripts keep failing to load (NOSCRIPT after SCRIPT LOAD)")

    async def _read_plain(self) -> tuple[list[tuple[Parser, Any]], int]:
        """Every framework's counters with plain commands (an ACL refusing scripts), and the round
        trips that took."""
        parts: list[tuple[Parser, Any]] = []
        trips = 0
        for fw in self.frameworks:
            try:
                reply, parse, used = await fw.read_plain(self.redis)
            except ResponseError as exc:
                _refuse_cluster([exc])
                raise
            parts.append((parse, [reply]))  # shaped like one script call's reply
            trips += used
        return parts, trips

    def _info(self, reply: Any) -> dict[str, Any] | None:
        """INFO's reply, None when the ACL refuses it; a cluster node is refused here."""
        if isinstance(reply, NoPermissionError):
            self._refused("info")
            return None
        if isinstance(reply, Exception):
            raise reply
        assert isinstance(reply, dict)
        if str(reply.get("cluster_enabled", "0")) == "1":
            raise ClusterUnsupported(CLUSTER_UNSUPPORTED)
        return reply

    def _refused(self, what: str) -> None:
        if what == "info":
            self.info_allowed = False
        else:
            self.scripts_allowed = False
        self._acl_recheck_at = time.monotonic() + ACL_RECHECK

    def _acl_notes(self) -> list[str]:
        notes = []
        if not self.scripts_allowed:
            notes.append(
                "This Redis user may not run scripts (EVALSHA): counters are read with plain commands, "
                "in a few round trips per cycle instead of one. Grant +evalsha +script|load to save them."
            )
        if not self.info_allowed:
            notes.append("This Redis user may not run INFO: server version and memory are not shown.")
        return notes


#: Seconds before commands an ACL refused are tried again (the ACL may have been widened).
ACL_RECHECK = 600.0
_CLUSTER_ERRORS = ("MOVED ", "ASK ", "CROSSSLOT", "CLUSTERDOWN")
CLUSTER_UNSUPPORTED = (
    "this Redis runs in cluster mode, which Callboard does not support (nor do Dramatiq and Arq: "
    "their scripts and key layouts need one server); point Callboard at the standalone Redis "
    "your workers use"
)


class ClusterUnsupported(RedisError):
    """The target is a Redis Cluster node: reading it would show one node's share of the keys."""


def _refuse_cluster(replies: list[Any]) -> None:
    for reply in replies:
        if isinstance(reply, ResponseError) and str(reply).startswith(_CLUSTER_ERRORS):
            raise ClusterUnsupported(CLUSTER_UNSUPPORTED)


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
