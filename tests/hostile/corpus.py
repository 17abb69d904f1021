"""A corpus of hostile and odd payloads, written into a real Redis with the frameworks' own layouts.

Every class of issue 11 is here: code-executing pickles (each would create a marker file under plain
`pickle.loads`), tiny pickles that cost seconds or gigabytes to decode, ints over 4,300 digits, lone
surrogates, non-UTF-8 ids and key names, malformed Dramatiq messages, XSS strings in every displayed
field, and key names with `/`, `..`, `%`, `?`, `#`, newlines and spaces.

The layouts are written out here independently of collectors/ (as tests/integration/support.py reads
them), so the corpus checks the collectors against Dramatiq's and Arq's layouts, not against
themselves:

    Dramatiq 2.x   N:Q list of rids, N:Q.msgs hash rid -> message JSON, N:Q.DQ + N:Q.DQ.msgs (delayed),
                   N:Q.XQ zset rid -> ms + N:Q.XQ.msgs (dead), N:__acks__.W.Q set (held by worker W),
                   N:__heartbeats__ zset W -> ms (a namespace is discovered by it)
    Arq 0.28       Q zset job id -> ms due, arq:job:<id> {t,f,a,k,et}, arq:result:<id>
                   {t,f,a,k,et,s,r,st,ft,q,id}, arq:in-progress:<id>, <Q>:health-check

Names are `str` as Callboard reads them from Redis: bytes decoded as UTF-8 with surrogateescape, so
b"\\xff" is "\\udcff". `write_corpus` returns a `Manifest` saying what is where and what a page shows.
"""

from __future__ import annotations

import builtins
import copyreg
import json
import os
import pickle
import struct
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import redis

from callboard.collectors import flow
from tests.unit.test_unpickler import Reduce

TARGET = "main"
#: Strings that run script if a page ever puts them in markup unescaped. Each sets window.__pwned,
#: and one also opens a dialog, which the browser test watches for.
XSS = (
    "<script>window.__pwned=1</script>",
    '"><img src=x onerror="window.__pwned=1;alert(1)">',
    "'><svg/onload=window.__pwned=1>",
    "javascript:window.__pwned=1",
    "{{7*7}}",
)
#: Key-name fragments that a URL must encode completely.
ODD_NAMES = (
    "a/b",
    "..",
    ".",
    "a/../b",
    "100%",
    "%2F%zz",
    "q?x=1#frag",
    "new\nline",
    "sp ace",
    "~tilde",
    "bad\udcff\udcfeutf8",  # b"bad\xff\xfeutf8": not UTF-8
)
#: What a page shows for a payload past the decode budget (collectors/decoding.py's reason).
BUDGET = "exceeds decode budget"
#: A worker id for the heartbeats that make a Dramatiq namespace discoverable.
WORKER = "corpus-worker"
DEAD_TTL_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class CorpusJob:
    framework: str
    #: The queue's Redis key as Callboard names it (Dramatiq `ns:q`, Arq the zset's name).
    queue: str
    job_id: str
    kind: str
    #: The tab that lists it (None: listed nowhere, e.g. an undecodable result names no queue).
    state: str | None
    #: False where the job cannot be shown (listed, but its payload is missing): a 404 is right.
    exists: bool = True
    #: Text its job page shows (after HTML unescaping).
    shows: tuple[str, ...] = ()
    #: A decode bomb: costs seconds or gigabytes unless decoding is budgeted.
    bomb: bool = False


@dataclass(frozen=True, slots=True)
class CorpusQueue:
    framework: str
    key: str
    #: Tabs that list at least one corpus job.
    states: tuple[str, ...]


@dataclass
class Manifest:
    target: str
    marker_dir: Path
    queues: list[CorpusQueue] = field(default_factory=list)
    jobs: list[CorpusJob] = field(default_factory=list)
    #: Every key written (raw bytes), to check that reading the corpus changed nothing.
    keys: list[bytes] = field(default_factory=list)

    def queue(self, framework: str, key: str) -> CorpusQueue:
        return next(q for q in self.queues if q.framework == framework and q.key == key)

    def markers(self) -> list[Path]:
        """Files a code-executing payload created: must stay empty."""
        return sorted(self.marker_dir.iterdir())


def raw(name: str) -> bytes:
    """The Redis bytes of a name as Callboard reads it (surrogateescape)."""
    return name.encode("utf-8", "surrogateescape")


def now_ms() -> int:
    return int(time.time() * 1000)


# -- hostile pickles ---------------------------------------------------------------------------------


def code_executing(marker_dir: Path) -> dict[str, bytes]:
    """Pickles that would create `marker_dir/pwned-<kind>` (or worse) under plain `pickle.loads`."""
    m = {kind: str(marker_dir / f"pwned-{kind}") for kind in ("system", "eval", "popen", "getattr", "build")}
    system = Reduce(getattr, (Reduce(builtins.__import__, ("os",)), "system"))
    return {
        "system": pickle.dumps(Reduce(os.system, (f"touch {m['system']}",)), protocol=2),
        "eval": pickle.dumps(Reduce(builtins.eval, (f"open({m['eval']!r}, 'w')",)), protocol=4),
        "popen": pickle.dumps(
            Reduce(copyreg._reconstructor, (subprocess.Popen, subprocess.Popen, ["touch", m["popen"]])),  # type: ignore[attr-defined]
            protocol=1,
        ),
        "getattr": pickle.dumps(Reduce(system, (f"touch {m['getattr']}",)), protocol=3),
        "build": pickle.dumps(
            Reduce(os.system, (f"touch {m['build']}",), state={"x": Reduce(builtins.exec, ("1",))}),
            protocol=5,
        ),
        "handwritten": f"cos\nsystem\n(S'touch {marker_dir / 'pwned-handwritten'}'\ntR.".encode(),
    }


def shared_reference_list(levels: int = 32) -> bytes:
    """~200 bytes: a list of two references to a list of two references... 2**levels leaves when walked."""
    value: list[Any] = []
    for _ in range(levels):
        value = [value, value]
    return pickle.dumps(value, protocol=4)


def bombs() -> dict[str, bytes]:
    """Tiny pickles that cost seconds of CPU or gigabytes of memory to decode, or to walk once decoded."""
    return {
        # 52 bytes: int(Decimal('1e1000000')), about 40 s of CPU (quadratic conversion).
        "decimal": b"\x80\x02cbuiltins\nint\ncdecimal\nDecimal\nX\t\x00\x00\x001e1000000\x85R\x85R.",
        # A memo index of 2**26: the unpickler grows its memo table to it (1 GB).
        "memo": b"\x80\x02N" + b"r" + struct.pack("<I", 2**26) + b".",
        # list(range(10**8)): 3.85 GB.
        "range": pickle.dumps(Reduce(list, (range(10**8),)), protocol=4),
        # Decodes at once (shared references), but showing it walks 2**32 paths.
        "shared": shared_reference_list(),
    }


# -- Dramatiq -----------------------------------------------------------------------------------------


def dramatiq_message(
    rid: str,
    queue: str,
    actor: Any = "work",
    args: Any = (),
    kwargs: Any = None,
    options: Any = None,
    message_id: Any = "0b2cbd0e-4e55-4a3c-9b2c-5c0d0f0e0a01",
) -> bytes:
    """A message as Dramatiq's JSONEncoder stores it (the broker adds options.redis_message_id)."""
    opts = {"redis_message_id": rid, **(options or {})}
    message = {
        "queue_name": queue,
        "actor_name": actor,
        "args": list(args) if isinstance(args, tuple) else args,
        "kwargs": kwargs if kwargs is not None else {},
        "options": opts,
        "message_id": message_id,
        "message_timestamp": now_ms() - 60_000,
    }
    return json.dumps(message, ensure_ascii=False).encode("utf-8", "surrogatepass")


def malformed_messages() -> dict[str, bytes]:
    """Payloads Dramatiq never writes but Redis can hold: each page must show them, not fail."""
    deep_ok = "[" * 99 + "1" + "]" * 99
    deep_bad = "[" * 101 + "1" + "]" * 101
    very_deep = "[" * 100_000 + "]" * 100_000
    surrogates = '{"actor_name": "s\\ud800", "args": ["\\ud800", "x\\udcffy", "\\udfff\\ud800"], "kwargs": {"\\udcff": "\\ud800"}, "options": {"traceback": "Traceback:\\nValueError: bad \\ud800"}, "message_id": "\\ud800", "message_timestamp": 1}'  # noqa: E501
    wrong_types: dict[str, Any] = {
        "queue_name": 7,
        "actor_name": 5,
        "args": "not a list",
        "kwargs": [1, 2],
        "options": "not a dict",
        "message_id": {"a": 1},
        "message_timestamp": "yesterday",
    }
    wrong_options: dict[str, Any] = {
        "actor_name": None,
        "args": {"a": 1},
        "kwargs": "k",
        "options": {
            "eta": "soon",
            "retries": "many",
            "traceback": 123,
            "redis_message_id": 5,
            "requeue_timestamp": [1],
            "max_retries": None,
        },
        "message_id": None,
        "message_timestamp": 1e308,
    }
    extreme_numbers: dict[str, Any] = {
        "actor_name": "numbers",
        "args": [10**30, -(10**30), 1e308, -1e-308, 0.1],
        "kwargs": {},
        "options": {"eta": -1, "retries": 10**40, "requeue_timestamp": 10**20},
        "message_id": "n",
        "message_timestamp": 10**20,
    }
    return {
        "not-json": b"not json {",
        "json-array": b"[1, 2, 3]",
        "json-string": b'"just a string"',
        "empty": b"",
        "wrong-types": json.dumps(wrong_types).encode(),
        "wrong-options": json.dumps(wrong_options).encode(),
        "extreme-numbers": json.dumps(extreme_numbers).encode(),
        "nan": b'{"actor_name": "nan", "args": [NaN, Infinity, -Infinity], "kwargs": {}, "options": {}}',
        "int-5000-digits": b'{"actor_name": "big", "args": [' + b"7" * 5000 + b"]}",
        "surrogates": surrogates.encode(),
        "over-1mb": dramatiq_message("over-1mb", "default", "big", ["x" * 1_100_000]),
        "under-1mb": dramatiq_message("under-1mb", "default", "big", ["y" * 900_000]),
        "deep-99": ('{"actor_name": "deep", "args": ' + deep_ok + "}").encode(),
        "deep-101": ('{"actor_name": "deep", "args": ' + deep_bad + "}").encode(),
        "deep-100000": ('{"actor_name": "deep", "args": ' + very_deep + "}").encode(),
        "not-utf8": b'{"actor_name": "\xff\xfe", "args": ["\xc3\x28"]}',
    }


class _Writer:
    """Queues the corpus's writes on one pipeline, keeping only the jobs `keep` accepts."""

    def __init__(self, client: redis.Redis, manifest: Manifest, keep: Callable[[CorpusJob], bool]) -> None:
        # Any: redis-py annotates hash, list and set commands with str, yet sends bytes as they are.
        self.pipe: Any = client.pipeline(transaction=False)
        self.manifest = manifest
        self.keep = keep
        self._keys: set[bytes] = set()
        self.namespaces: set[str] = set()

    def key(self, name: str | bytes) -> bytes:
        key = name if isinstance(name, bytes) else raw(name)
        if key not in self._keys:
            self._keys.add(key)
            self.manifest.keys.append(key)
        return key

    def _job(self, framework: str, queue: str, job_id: str, state: str | None, **job: Any) -> bool:
        found = CorpusJob(framework, queue, job_id, state=state, **job)
        if not self.keep(found):
            return False
        self.manifest.jobs.append(found)
        if framework == "dramatiq":
            self.namespaces.add(queue.rpartition(":")[0])
        return True

    # Dramatiq

    def heartbeat(self, namespace: str, worker: str = WORKER) -> None:
        self.pipe.zadd(self.key(f"{namespace}:__heartbeats__"), {raw(worker): now_ms()})

    def dq_ready(self, queue_key: str, rid: str, payload: bytes | None, **job: Any) -> None:
        if self._job("dramatiq", queue_key, rid, "ready", exists=payload is not None, **job):
            self.pipe.rpush(self.key(queue_key), raw(rid))
            if payload is not None:
                self.pipe.hset(self.key(f"{queue_key}.msgs"), raw(rid), payload)

    def dq_in_flight(self, queue_key: str, rid: str, payload: bytes, **job: Any) -> None:
        if self._job("dramatiq", queue_key, rid, "in_flight", **job):
            namespace, _, queue = queue_key.rpartition(":")
            self.pipe.hset(self.key(f"{queue_key}.msgs"), raw(rid), payload)
            self.pipe.sadd(self.key(f"{namespace}:__acks__.{WORKER}.{queue}"), raw(rid))

    def dq_delayed(self, queue_key: str, rid: str, payload: bytes, **job: Any) -> None:
        if self._job("dramatiq", queue_key, rid, "delayed", **job):
            self.pipe.rpush(self.key(f"{queue_key}.DQ"), raw(rid))
            self.pipe.hset(self.key(f"{queue_key}.DQ.msgs"), raw(rid), payload)

    def dq_dead(self, queue_key: str, rid: str, payload: bytes, **job: Any) -> None:
        if self._job("dramatiq", queue_key, rid, "dead", **job):
            self.pipe.zadd(self.key(f"{queue_key}.XQ"), {raw(rid): now_ms() - 5_000})
            self.pipe.hset(self.key(f"{queue_key}.XQ.msgs"), raw(rid), payload)

    # Arq

    def arq_job(self, queue: str, job_id: str, payload: bytes, state: str = "ready", **job: Any) -> bool:
        if not self._job("arq", queue, job_id, state, **job):
            return False
        due = now_ms() + (3_600_000 if state == "deferred" else -1_000)
        self.pipe.zadd(self.key(queue), {raw(job_id): due})
        self.pipe.set(self.key(f"arq:job:{job_id}"), payload, px=DEAD_TTL_MS)
        return True

    def arq_result(self, queue: str, job_id: str, payload: bytes, state: str | None, **job: Any) -> None:
        """A result key; `queue` and `state`: where the results index files it (None: nowhere)."""
        if self._job("arq", queue, job_id, state, **job):
            self.pipe.set(self.key(f"arq:result:{job_id}"), payload, px=DEAD_TTL_MS)

    def arq_running(self, job_id: str) -> None:
        self.pipe.set(self.key(f"arq:in-progress:{job_id}"), b"1", px=DEAD_TTL_MS)


def arq_job_record(function: Any, args: Any = (), kwargs: Any = None) -> dict[str, Any]:
    return {"t": 1, "f": function, "a": args, "k": kwargs or {}, "et": now_ms() - 60_000}


def arq_result_record(
    job_id: str, queue: str, ok: bool, result: Any, function: Any = "task", args: Any = ()
) -> dict[str, Any]:
    start = now_ms() - 30_000
    return {
        **arq_job_record(function, args),
        "s": ok,
        "r": result,
        "st": start,
        "ft": start + 1_500,
        "q": queue,
        "id": job_id,
    }


# -- the corpus ---------------------------------------------------------------------------------------


def write_corpus(
    client: redis.Redis,
    marker_dir: Path,
    *,
    with_bombs: bool = True,
    keep: Callable[[CorpusJob], bool] = lambda job: True,
) -> Manifest:
    """Write the corpus into `client`'s database (ours, empty) and say what is where.

    `with_bombs=False` leaves out the decode bombs (for runs about something else than the budget);
    `keep` selects jobs (every one by default). Each Dramatiq namespace gets a worker heartbeat, which
    is how discovery finds it."""
    marker_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(TARGET, marker_dir)
    w = _Writer(client, manifest, keep)
    _dramatiq(w, marker_dir)
    _arq(w, marker_dir, with_bombs)
    for namespace in sorted(w.namespaces):
        w.heartbeat(namespace)
    # A worker id is shown on the workers page (not one of the Arq job ids below: Arq discovery would
    # then take the heartbeat registry, a sorted set whose first member names a job, for a queue).
    w.heartbeat("dramatiq", f"{XSS[0]}-worker")
    _flow(w)
    w.pipe.execute()
    manifest.queues = _queues(manifest)
    return manifest


def flow_series() -> tuple[flow.Series, flow.Series]:
    """The flow series the corpus writes: script-bearing and non-UTF-8 names."""
    x0, x1 = XSS[0], XSS[1]
    return flow.Series("dramatiq", x0, f"q\n{x1}", "actor\udcff"), flow.Series("arq", "arq", "arq:flow", x1)


def _flow(w: _Writer) -> None:
    """Flow hashes as anyone who can write to Redis could leave them: script-bearing and non-UTF-8
    names, counts that are not numbers or are huge, stats, fields and series names that are not ours
    (an id that does not match its name, JSON that is not a series)."""
    odd, arq = flow_series()
    names = {
        flow.field("s", odd): "7",
        flow.field("d2", odd): "7",
        flow.field("ds", odd): str(10**30),
        flow.field("f", arq): "not a number",
        flow.field("d99", odd): "1",
        "s:" + "[" * 500: "1",
        "s:ffffffffffff": "1",
        "garbage": "1",
    }
    fields: dict[bytes, bytes] = {k.encode("utf-8", "surrogatepass"): v.encode() for k, v in names.items()}
    fields[b"s:\xff\xfe"] = b"1"
    for key in (
        flow.TOTAL_KEY,
        flow.minute_key(int(time.time() // 60)),
        flow.hour_key(int(time.time() // 3600)),
    ):
        w.pipe.hset(key, mapping=fields)
    series = {s.id: s.encode() for s in (odd, arq)} | {"ffffffffffff": arq.encode(), "x": "[" * 500}
    w.pipe.hset(flow.SERIES_KEY, mapping={k: v.encode("utf-8", "surrogatepass") for k, v in series.items()})


def _dramatiq(w: _Writer, marker_dir: Path) -> None:
    default = "dramatiq:default"
    x0, x1, x2, x3, x4 = XSS
    xss_options = {"eta": x3, "traceback": f"Traceback (most recent call last):\n  {x1}\nValueError: {x0}"}
    xss = dramatiq_message("xss-fields", "default", x0, [x1, x2, x3, x4], {x0: x1}, {"x": x2}, x1)
    w.dq_ready(default, "xss-fields", xss, kind="xss in every field", shows=(x0, x1, x4))
    for i, rid in enumerate(XSS):
        w.dq_ready(default, rid, dramatiq_message(rid, "default", f"xss_rid_{i}"), kind="xss rid")
    w.dq_ready(default, "ghost", None, kind="listed, payload missing")
    w.dq_ready(default, "bad\udcff\udcferid", dramatiq_message("?", "default", "odd"), kind="non-utf8 rid")
    for name, payload in malformed_messages().items():
        w.dq_ready(default, f"malformed-{name}", payload, kind=f"malformed: {name}")
    pickled = code_executing(marker_dir)["system"]
    w.dq_ready(default, "pickle-encoder", pickled, kind="PickleEncoder payload (os.system)")
    w.dq_in_flight(
        default, "in-flight-xss", dramatiq_message("in-flight-xss", "default", x0, [x1]), kind="held"
    )
    w.dq_delayed(
        default,
        "delayed-xss",
        dramatiq_message("delayed-xss", "default", x1, options=xss_options),
        kind="delayed",
    )

    tracebacks = {
        "dead-xss": f'Traceback (most recent call last):\n  File "{x1}", line 1\nValueError: {x0} {x1}',
        "dead-surrogate": "Traceback (most recent call last):\nValueError: bad \ud800 and \udcff",
        "dead-numbers": "Traceback (most recent call last):\nKeyError: 'order 12345 card 4242 0xdeadbeef'",
        "dead-long": "Traceback (most recent call last):\n"
        + "  frame\n" * 5000
        + "RuntimeError: "
        + "z" * 10_000,
        "dead-no-traceback": "",
    }
    for rid, tb in tracebacks.items():
        options = {"traceback": tb, "retries": 3} if tb else {"retries": 0}
        payload = dramatiq_message(
            rid, "default", x0 if rid == "dead-xss" else "fails", [x2], options=options
        )
        w.dq_dead(default, rid, payload, kind=f"dead: {rid}")
    w.dq_dead(default, "dead-not-json", b"\x00\x01 not json", kind="dead: not json")
    w.dq_dead(default, "dead-\udcff", dramatiq_message("x", "default", "fails"), kind="dead: non-utf8 rid")

    # The queue a traversal-named Arq queue aims at (issue 11 item 2): its jobs must stay.
    for i in range(3):
        w.dq_ready(
            "dramatiq:victim",
            f"victim-{i}",
            dramatiq_message(f"victim-{i}", "victim", "keep_me", [i]),
            kind="victim of a traversal",
        )

    # Namespaces with odd names (Dramatiq's own rule restricts queue names, not namespaces).
    for i, namespace in enumerate((*ODD_NAMES, x0, x1)):
        key = f"{namespace}:q"
        w.dq_ready(
            key,
            f"ready/{i}",
            dramatiq_message(f"ready/{i}", "q", "odd_ns", [namespace]),
            kind="odd namespace",
        )
        w.dq_dead(
            key,
            ODD_NAMES[i % len(ODD_NAMES)],
            dramatiq_message("d", "q", "odd_ns", options={"traceback": f"ValueError: {namespace}"}),
            kind="odd namespace, odd rid",
        )


def _arq(w: _Writer, marker_dir: Path, with_bombs: bool) -> None:
    queue = "arq:queue"
    x0, x1, x2, x3, x4 = XSS
    evil = code_executing(marker_dir)
    for kind, payload in evil.items():
        w.arq_job(queue, f"evil-{kind}", payload, kind=f"code-executing job ({kind})")
    marker = str(marker_dir / "pwned-args")
    in_args = arq_job_record(
        "job",
        (Reduce(os.system, (f"touch {marker}",)), [Reduce(builtins.eval, (f"open({marker!r}, 'w')",))]),
        {"k": Reduce(subprocess.Popen, (["touch", marker],))},
    )
    w.arq_job(
        queue,
        "evil-in-args",
        pickle.dumps(in_args, protocol=4),
        kind="code in args",
        shows=("posix.system(",),
    )
    w.arq_job(
        queue,
        "xss-fields",
        pickle.dumps(arq_job_record(x0, (x1, x2, x3, x4), {x0: x1})),
        kind="xss in every field",
        shows=(x0, x1),
    )
    w.arq_job(
        queue,
        "surrogates",
        pickle.dumps(arq_job_record("s\udcff", ("\udcff", "\ud800", "a\udfffb"), {"\udcff": "\ud800"})),
        kind="lone surrogates",
    )
    w.arq_job(queue, "int-5000-digits", pickle.dumps(arq_job_record("big", (7 * 10**5000,))), kind="big int")
    w.arq_job(
        queue,
        "msgpack",
        msgpack.packb(
            {"t": 1, "f": x0, "a": [b"\xff\xfe", 2**63, msgpack.ExtType(42, b"ext")], "k": {}, "et": now_ms()}
        ),
        kind="msgpack with odd types",
        shows=(x0,),
    )
    w.arq_job(
        queue, "json", b'{"t": 1, "f": "j\\ud800", "a": ["\\udcff", 1e999], "k": {}, "et": 1}', kind="json"
    )
    w.arq_job(queue, "garbage", b"\x80\x05garbage", kind="not a pickle")
    deferred = pickle.dumps(arq_job_record(x1, (x0,)))
    w.arq_job(queue, "deferred-xss", deferred, state="deferred", kind="deferred")
    if w.arq_job(queue, "running-xss", pickle.dumps(arq_job_record(x0, (x1,))), kind="in progress"):
        w.arq_running("running-xss")
    w.pipe.set(
        w.key(f"{queue}:health-check"),
        f"Nov-21 10:04:54 j_complete={x0} j_failed={x1} queued=3",
        px=DEAD_TTL_MS,
    )

    # Job ids a URL must carry whole: Arq's own `_job_id="report/2024/07"` among them.
    for job_id in ("report/2024/07", *ODD_NAMES, *XSS):
        w.arq_job(queue, job_id, pickle.dumps(arq_job_record("odd_id", (job_id,))), kind="odd job id")

    # Queue names a URL must carry whole; the first aims at another queue if `/` is left unencoded.
    for i, name in enumerate(("x/../../../main/dramatiq/dramatiq:victim", *ODD_NAMES, x0, x1, x3, x4, "")):
        w.arq_job(
            name, f"in-odd-queue-{i}", pickle.dumps(arq_job_record("odd_queue", (name,))), kind="odd queue"
        )

    # Results: failures grouped on /failures, with code, XSS, surrogates and big ints in them.
    results = {
        "failed-xss": arq_result_record("failed-xss", queue, False, ValueError(f"{x0} {x1}"), function=x0),
        "failed-surrogate": arq_result_record(
            "failed-surrogate", queue, False, ValueError("bad \ud800 \udcff")
        ),
        "failed-code": arq_result_record(
            "failed-code", queue, False, Reduce(os.system, (f"touch {marker_dir / 'pwned-result'}",))
        ),
        "succeeded-big-int": arq_result_record("succeeded-big-int", queue, True, 3 * 10**5000),
        "succeeded-xss": arq_result_record("succeeded-xss", queue, True, {x0: [x1, x3]}),
        "failed-odd-queue": arq_result_record("failed-odd-queue", "results/../q\n%", False, KeyError(x1)),
    }
    for job_id, record in results.items():
        state = "succeeded" if record["s"] else "failed"
        w.arq_result(record["q"], job_id, pickle.dumps(record, protocol=4), state, kind=f"result: {job_id}")
    # A queue named by a payload, not a key: it can hold any string, a lone surrogate too. No Redis
    # key can have that name (it once failed every collection): the index files it under no queue.
    odd = arq_result_record("failed-surrogate-queue", "q\ud800", False, KeyError("k"))
    w.arq_result(queue, "failed-surrogate-queue", pickle.dumps(odd, protocol=4), None, kind="result: no key")
    w.arq_result(queue, "result-garbage", b"\x80\x04garbage", None, kind="undecodable result")

    if with_bombs:
        for kind, payload in bombs().items():
            # The shared-reference list decodes at once (its cost is in walking it): no budget text.
            shows = () if kind == "shared" else (BUDGET,)
            w.arq_job(queue, f"bomb-{kind}", payload, kind=f"bomb job ({kind})", bomb=True, shows=shows)
            result = f"bomb-{kind}-result"
            w.arq_result(queue, result, payload, None, kind=f"bomb result ({kind})", bomb=True, shows=shows)


def _queues(manifest: Manifest) -> list[CorpusQueue]:
    """Each corpus queue with the tabs that list its jobs."""
    states: dict[tuple[str, str], set[str]] = {}
    for job in manifest.jobs:
        tabs = states.setdefault((job.framework, job.queue), set())
        if job.state is not None:
            tabs.add(job.state)
    return [CorpusQueue(fw, key, tuple(sorted(s))) for (fw, key), s in sorted(states.items())]
