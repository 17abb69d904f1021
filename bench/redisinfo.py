"""Server-side counters from INFO: commands processed, and per-command calls and microseconds.

A probe is one `INFO stats commandstats` call. Redis counts a command after it runs, so a window
between two probes contains the first probe itself (one INFO), which `Window` subtracts. Commands a
Lua script runs are counted too (in `total_commands_processed` and in their own `cmdstat_*`), and
the script's own `cmdstat_evalsha` time includes them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis


@dataclass(frozen=True, slots=True)
class Probe:
    at: float
    total_commands: int
    #: command name -> (calls, usec)
    commands: dict[str, tuple[int, int]]


async def probe(redis: Redis) -> Probe:
    # One INFO with two sections (Redis >= 7). redis-py annotates the extra sections as list[str], but
    # passes them through as plain arguments, which is what the server wants.
    raw: dict[str, Any] = await redis.info("stats", "commandstats")  # type: ignore[arg-type]
    commands: dict[str, tuple[int, int]] = {}
    for key, value in raw.items():
        if key.startswith("cmdstat_") and isinstance(value, dict):
            commands[key[len("cmdstat_") :]] = (int(value.get("calls", 0)), int(value.get("usec", 0)))
    return Probe(time.perf_counter(), int(raw["total_commands_processed"]), commands)


@dataclass(frozen=True, slots=True)
class Window:
    """What the server did between two probes, without the first probe's own INFO."""

    start: Probe
    end: Probe

    @property
    def seconds(self) -> float:
        return self.end.at - self.start.at

    @property
    def total_commands(self) -> int:
        return self.end.total_commands - self.start.total_commands - 1

    def calls(self, command: str) -> int:
        before = self.start.commands.get(command, (0, 0))[0]
        after = self.end.commands.get(command, (0, 0))[0]
        return after - before - (1 if command == "info" else 0)

    def usec(self, command: str) -> int:
        """Server time in `command` (for `info`, including the first probe's own, a few µs)."""
        before = self.start.commands.get(command, (0, 0))[1]
        return self.end.commands.get(command, (0, 0))[1] - before

    def by_command(self) -> dict[str, dict[str, int]]:
        names = sorted(set(self.start.commands) | set(self.end.commands))
        rows = {n: {"calls": self.calls(n), "usec": self.usec(n)} for n in names}
        return {n: row for n, row in rows.items() if row["calls"]}


async def server_facts(redis: Redis) -> dict[str, Any]:
    info: dict[str, Any] = await redis.info("server")
    version = info.get("valkey_version") or info.get("redis_version")
    kind = "valkey" if "valkey_version" in info or info.get("server_name") == "valkey" else "redis"
    return {"server": kind, "version": str(version), "redis_compat_version": str(info.get("redis_version"))}
