"""Decoding untrusted payloads under a budget, in decoder processes, off the event loop.

Why: a payload in Redis is written by whoever can reach Redis. A 52-byte pickle of
`int(Decimal('1e1000000'))` costs 40 s of CPU, a memo index of 2**26 costs 1 GB, `list(range(10**8))`
4 GB, and a 209-byte list of shared references takes minutes to walk. In the server's event loop any
of them stalls every page, `/healthz` and the poller. No restricted unpickler can refuse them all
without refusing real payloads, and a thread cannot be stopped: the decode runs in a process that
can be, with limits the kernel enforces.

Mechanism: `run(fn, calls, fallback)` hands the calls to a thread of a *lane* (never the loop's
default executor), which streams them to a decoder process (collectors/decoder_process.py: forked
from a zygote that imported the decoders once, with `RLIMIT_AS` = its size + 256 MiB) and reads one
reply per call as soon as it is done. A call gets BUDGET_SECONDS of wall time from the previous
reply; past it the decoder is killed and a spare takes over, and `fallback(call, "exceeds decode
budget (time)")` stands in for the result; a MemoryError answers "(memory)", a result over 8 MiB
"(output)". `fn` must be a module-level function marked `@decoder` in one of DECODER_MODULES: a
decoder resolves it from that registry only. Calls and results cross as pickles read by the
transport unpickler (collectors/transport.py); nothing is ever `pickle.loads`-ed. The builders that
run there are pure functions of raw bytes and plain arguments, in the framework modules.

Lanes: `interactive` (pages, API, controls: 3 threads and decoders, plus a spare), `background` (the
poller's reads: results index, dead letters, stuck check, queue heads: one, plus a spare) and
`search` (one, started on demand), so that a hostile payload costs its own lane only: a page never
waits behind the poller, and the poller (whose cycle has a timeout) never behind a search. Idle
decoders beyond the spares are closed after IDLE_SECONDS.
A `partial` run (the poller's) stops after the first payload over its time budget and returns the
prefix it has: the caller leaves the rest for the next cycle, so a cycle pays for at most one.
Other runs stop decoding after KILL_CAP of them (the rest show as skipped), so a page full of
hostile payloads takes a few seconds, not one per payload. A payload over budget is remembered for
STRIKE_TTL seconds (by digest): shown again, it costs nothing.

Costs: the zygote is one more process (~35 MB, ~0.5 s of CPU at start); a decoder ~40 MB of address
space, mostly shared with the zygote, and ~5 ms to fork; a call ~20 µs (idle box) to ~100 µs (loaded
2-core box) more than decoding in process: pickling both ways, a pipe write per reply, a thread hop
per run. bench/decode.py measures it: 3-6x in-process time for small payloads, while the event loop
stays free (in process, it is blocked for the whole batch).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import hashlib
import logging
import pickle
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from callboard.collectors import transport
from callboard.collectors.decoder_process import (
    BUDGET_SECONDS,
    DIED,
    LIVE,
    OK,
    OVER_MEMORY,
    OVER_OUTPUT,
    OVER_TIME,
    REGISTRY,
    STARTUP_SECONDS,
    ZYGOTE,
    Decoder,
    decoder,
    frame,
    key,
)

__all__ = [
    "BUDGET_SECONDS",
    "DIED",
    "OVER_MEMORY",
    "OVER_OUTPUT",
    "OVER_TIME",
    "SKIPPED",
    "UNAVAILABLE",
    "Call",
    "Lane",
    "close",
    "decoder",
    "forget_strikes",
    "run",
    "start",
]

log = logging.getLogger("callboard.decoding")

#: Idle decoders beyond a lane's spares are closed after this long unused.
IDLE_SECONDS = 60.0
#: A run stops decoding after this many payloads over their time budget (or whose decoder died), or
#: after this many lost decoders (each memory overrun costs a fork, and a wait when no spare is
#: ready): the rest are skipped. A `partial` run stops at the first kill, or at PARTIAL_LOSS_CAP.
KILL_CAP = 2
LOSS_CAP = 8
PARTIAL_LOSS_CAP = 4
#: Fresh decoders a call gets when its decoder dies under it without a kill of ours: an outside
#: kill (the OOM killer, an operator) of an idle decoder is only seen when a call is sent to it.
DIED_RETRIES = 2
#: How long a payload over budget is remembered (then it is tried again), and how many are.
STRIKE_TTL = 600.0
STRIKE_KEEP = 4096
SKIPPED = "not decoded: other payloads of this request exceeded the decode budget"
UNAVAILABLE = "not decoded: no decoder process could be started"

T = TypeVar("T")
Call = tuple[Any, ...]
Fallback = Callable[[Call, str], T]


class Lane(StrEnum):
    INTERACTIVE = "interactive"
    BACKGROUND = "background"
    SEARCH = "search"


@dataclass(frozen=True, slots=True)
class LaneSpec:
    #: Threads, so runs at once, so busy decoders.
    size: int
    #: Idle decoders kept ready besides the busy ones (a killed decoder's spare).
    spares: int


LANES = {
    Lane.INTERACTIVE: LaneSpec(size=3, spares=1),
    Lane.BACKGROUND: LaneSpec(size=1, spares=1),
    Lane.SEARCH: LaneSpec(size=1, spares=0),
}


class _Strikes:
    """Payloads that went over budget recently, by digest: seen again, they are not decoded again."""

    def __init__(self) -> None:
        self._seen: collections.OrderedDict[bytes, tuple[float, str]] = collections.OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(fn_key: str, call: Call) -> bytes | None:
        parts = [a for a in call if isinstance(a, bytes)]
        if not parts:
            return None
        digest = hashlib.blake2b(fn_key.encode(), digest_size=16)
        for part in parts:
            digest.update(len(part).to_bytes(8, "little"))
            digest.update(part)
        return digest.digest()

    def get(self, key: bytes | None) -> str | None:
        if key is None:
            return None
        with self._lock:
            found = self._seen.get(key)
            if found is None or found[0] < time.monotonic():
                return None
            return found[1]

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()

    def add(self, key: bytes | None, reason: str) -> None:
        if key is None:
            return
        with self._lock:
            self._seen[key] = (time.monotonic() + STRIKE_TTL, reason)
            self._seen.move_to_end(key)
            while len(self._seen) > STRIKE_KEEP:
                self._seen.popitem(last=False)


_STRIKES = _Strikes()


def forget_strikes() -> None:
    """Forget the payloads that went over budget (tests and the bench measure the first time)."""
    _STRIKES.clear()


class Pool:
    """The threads and decoders of one lane."""

    def __init__(self, lane: Lane) -> None:
        self.lane = lane
        self.spec = LANES[lane]
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.spec.size, thread_name_prefix=f"decode-{lane}"
        )
        self._lock = threading.Lock()
        self._idle: list[Decoder] = []
        self._busy: set[Decoder] = set()
        self.closed = False
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name=f"decode-{lane}-reaper", daemon=True)
        self._reaper.start()

    def warm(self) -> None:
        """Keep the lane's spares: the next run, or the rest of a run whose decoder was just killed,
        starts on one at once. Forks (~5 ms each); a zygote that cannot fork is reported by checkout."""
        with self._lock:
            while not self.closed and len(self._idle) < self.spec.spares:
                try:
                    self._idle.append(Decoder())
                except OSError:
                    return

    def pids(self) -> list[int]:
        with self._lock:
            return [c.pid for c in [*self._idle, *self._busy]]

    def run(self, fn_key: str, calls: Sequence[Call], fallback: Fallback[T], partial: bool) -> list[T]:
        """Every call's result or fallback, in order (a prefix when `partial` stopped early)."""
        out: list[T | None] = [None] * len(calls)
        done = [False] * len(calls)
        keys = [_STRIKES.key(fn_key, c) for c in calls]
        todo = []
        for i, digest in enumerate(keys):
            reason = _STRIKES.get(digest)
            if reason is None:
                todo.append(i)
            else:
                out[i], done[i] = fallback(calls[i], reason), True
        frames = {i: frame(pickle.dumps(calls[i], protocol=5)) for i in todo}
        kills = losses = 0
        kill_cap, loss_cap = (1, PARTIAL_LOSS_CAP) if partial else (KILL_CAP, LOSS_CAP)
        #: Second decoders given to a call whose decoder died under it (maybe killed from outside).
        retries: collections.Counter[int] = collections.Counter()
        while todo:
            child = self._checkout()
            if child is None:
                for i in todo:
                    out[i], done[i] = fallback(calls[i], UNAVAILABLE), True
                break
            replies: list[tuple[int, bytes]] = []
            header = frame(pickle.dumps((fn_key, len(todo)), protocol=5))
            got, why = child.exchange(header + b"".join(frames[i] for i in todo), len(todo), replies)
            for i, (status, body) in zip(todo, replies, strict=False):
                out[i], done[i] = self._result(fn_key, calls[i], status, body, fallback, keys[i]), True
            todo = todo[got:]
            if why is None:
                self._checkin(child)
                break
            self._retire(child)
            losses += 1
            if why == DIED and todo and retries[todo[0]] < DIED_RETRIES:
                retries[todo[0]] += 1  # killed from outside, maybe: that call gets another decoder
            elif why != OVER_MEMORY and todo:  # the call it was on when it was killed or died
                i, todo = todo[0], todo[1:]
                out[i], done[i] = fallback(calls[i], why), True
                _STRIKES.add(keys[i], why)
                kills += 1
                log.warning("decode of %s: %s; a fresh decoder process takes over", fn_key, why)
            if (kills >= kill_cap or losses >= loss_cap) and todo:
                if partial:
                    break
                for i in todo:
                    out[i], done[i] = fallback(calls[i], SKIPPED), True
                break
        end = done.index(False) if not all(done) else len(calls)
        return [v for v in out[:end]]  # type: ignore[misc]  # every value up to `end` is set

    def _result(
        self, fn_key: str, call: Call, status: int, body: bytes, fallback: Fallback[T], key: bytes | None
    ) -> T:
        if status == OK:
            try:
                value: T = transport.loads(body)
                return value
            except Exception as exc:  # our own child wrote it: a bug, reported per call
                log.warning("decode of %s: unreadable result: %r", fn_key, exc)
                return fallback(call, f"decoder error: unreadable result ({type(exc).__name__})")
        reason = body.decode("utf-8", "replace")
        if reason.startswith("exceeds decode budget"):
            _STRIKES.add(key, reason)
        elif reason.startswith("decoder error"):
            log.warning("decode of %s: %s", fn_key, reason)
        return fallback(call, reason)

    def _checkout(self) -> Decoder | None:
        # An idle decoder killed from outside may not look dead yet: it then fails wait_ready at
        # once (its pipe is closed), and the next one is tried; a fresh fork is the last resort.
        for _ in range(self.spec.size + self.spec.spares + 1):
            with self._lock:
                for dead in [c for c in self._idle if not c.alive()]:
                    self._idle.remove(dead)
                    dead.close()
                self._idle.sort(key=lambda c: c.poll_ready())  # one that said it is ready first
                try:
                    child = self._idle.pop() if self._idle else Decoder()
                except OSError:
                    log.error("no decoder process could be started")
                    return None
                self._busy.add(child)
            self.warm()
            if child.wait_ready(STARTUP_SECONDS):
                child.used_at = time.monotonic()
                return child
            self._retire(child)
        log.error("no decoder process answered within %.0f s", STARTUP_SECONDS)
        return None

    def _checkin(self, child: Decoder) -> None:
        child.used_at = time.monotonic()
        with self._lock:
            self._busy.discard(child)
            if not self.closed:
                self._idle.append(child)
                return
        child.close()

    def _retire(self, child: Decoder) -> None:
        child.close(kill=True)
        with self._lock:
            self._busy.discard(child)
        self.warm()

    def _reap(self) -> None:
        while not self._stop.wait(min(IDLE_SECONDS / 4, 15.0)):
            now = time.monotonic()
            with self._lock:
                dead = [c for c in self._idle if not c.alive()]
                spare = [c for c in self._idle if c not in dead][self.spec.spares :]
                old = [c for c in spare if now - c.used_at > IDLE_SECONDS]
                self._idle = [c for c in self._idle if c not in dead and c not in old]
            for child in dead + old:
                child.close()

    def close(self) -> None:
        """Close the idle children now, the busy ones when their run ends; then the threads."""
        self._stop.set()
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for child in idle:
            child.close()
        self.executor.shutdown(wait=False)


# -- the API -----------------------------------------------------------------------------------------

_POOLS: dict[Lane, Pool] = {}
_POOLS_LOCK = threading.Lock()


def pool(lane: Lane) -> Pool:
    """The lane's pool, made on first use (its decoders are forked by its threads, when needed)."""
    with _POOLS_LOCK:
        found = _POOLS.get(lane)
        if found is None:
            found = _POOLS[lane] = Pool(lane)
        return found


def start() -> None:
    """Start the zygote now, so it has imported the decoders by the first page (an app's lifespan
    calls this; it does not wait). Without it, the first `run` starts it."""
    ZYGOTE.spawn()


def close() -> None:
    """Close every lane's decoders (a later `run` makes them again). The zygote stays until exit."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for p in pools:
        p.close()


def pids(lane: Lane) -> list[int]:
    """The lane's decoder processes now (tests)."""
    with _POOLS_LOCK:
        found = _POOLS.get(lane)
    return found.pids() if found else []


def _kill_all() -> None:
    close()
    for child in list(LIVE):
        child.close(kill=True)
    ZYGOTE.stop()


atexit.register(_kill_all)


async def run(
    fn: Callable[..., T],
    calls: Sequence[Call],
    fallback: Fallback[T],
    *,
    lane: Lane = Lane.INTERACTIVE,
    partial: bool = False,
) -> list[T]:
    """`[fn(*call) for call in calls]`, each computed in a decoder process of `lane` within the budget;
    `fallback(call, reason)` where it was not. With `partial`, the run may return only a prefix: it
    stops after the first call that a decoder process did not survive (background reads)."""
    fn_key = key(fn)
    if REGISTRY.get(fn_key) is not fn:
        raise ValueError(f"{fn_key} is not a @decoder function")
    if not calls:
        return []
    loop = asyncio.get_running_loop()
    for attempt in (1, 2):
        p = pool(lane)
        try:
            return await loop.run_in_executor(p.executor, p.run, fn_key, list(calls), fallback, partial)
        except RuntimeError:  # `close()` shut that pool's threads down meanwhile: a fresh pool
            if attempt == 2 or not p.closed:
                raise
    raise AssertionError("unreachable")
