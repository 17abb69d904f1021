"""Decoder processes: the budgeted children that decode payloads for collectors/decoding.py.

A server process starts one *zygote*: `python -c "...zygote_main()"`, which imports the decoders once
(~0.5 s of CPU, mostly redis-py) and then forks a decoder whenever asked, in ~5 ms, so that replacing
a decoder killed over its budget costs nothing but the fork. The zygote talks over a socket pair on
its stdin: one byte asks for a decoder, the reply carries its pid and, as file descriptors, the
server's ends of its two pipes and a pidfd (race-free kill). Decoders are the zygote's children,
reaped by the kernel (SIGCHLD ignored).

A decoder sets `RLIMIT_AS` to its size + BUDGET_BYTES, then serves requests on its pipes: a frame
naming a registered decoder function and a count, then that many call frames; it answers each call
with one frame, as soon as it is done: (status, transport pickle of the result | the reason). It
moves its `RLIMIT_CPU` backstop along (CPU_BACKSTOP seconds ahead) for when the server is gone.

Nothing is left behind: a decoder exits on EOF on its stdin (the server closed it, or died), the
zygote on EOF on its socket; the server kills them at exit (atexit, in decoding.py).
Frames are a 4-byte little-endian length, then the bytes (reply: a status byte, then the body).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import callboard
from callboard.collectors import transport

#: Wall time one call may take, from the previous reply (or from the request).
BUDGET_SECONDS = 1.0
#: Memory a decoder may allocate beyond what it holds after its imports (~40 MB of address space).
BUDGET_BYTES = 256 * 2**20
#: CPU seconds a decoder may run ahead of its last move of the backstop (the kernel then stops it).
CPU_BACKSTOP = 10
#: How long the zygote may take to import the decoders (a loaded machine), and a decoder to answer.
STARTUP_SECONDS = 20.0
#: How long a reading thread naps after a read while more replies are due.
NAP_SECONDS = 0.0005
#: The modules whose `@decoder` functions the zygote imports: the only functions a decoder runs.
DECODER_MODULES = (
    "callboard.collectors.arq.codec",
    "callboard.collectors.arq.results",
    "callboard.collectors.arq.controls",
    "callboard.collectors.dramatiq.codec",
    "callboard.collectors.dramatiq.deadletters",
    "callboard.collectors.dramatiq.controls",
    "callboard.collectors.arq.search",
    "callboard.collectors.dramatiq.search",
)
OVER_TIME = "exceeds decode budget (time)"
OVER_MEMORY = "exceeds decode budget (memory)"
OVER_OUTPUT = "exceeds decode budget (output)"
DIED = "exceeds decode budget (the decoder process died)"

#: Reply status bytes.
OK, ERROR, ERROR_EXIT, HELLO = 0, 1, 2, 3
_MAX_FRAME = transport.MAX_OUTPUT + 4096
#: The directory holding the `callboard` package, from a checkout or an install: children run from it.
_PACKAGE_ROOT = str(callboard.ROOT.parent)
_F = TypeVar("_F", bound=Callable[..., Any])

REGISTRY: dict[str, Callable[..., Any]] = {}


def decoder(fn: _F) -> _F:
    """Mark a module-level function as runnable in a decoder process (the decoders' allow-list)."""
    if fn.__module__ not in DECODER_MODULES or "<" in fn.__qualname__:
        raise ValueError(f"{fn.__module__}.{fn.__qualname__}: a decoder is a module-level function of one of "
                         f"{', '.join(DECODER_MODULES)}")  # fmt: skip
    REGISTRY[key(fn)] = fn
    return fn


def key(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"


def frame(data: bytes) -> bytes:
    return len(data).to_bytes(4, "little") + data


# -- in the zygote and the decoders ----------------------------------------------------------------


def zygote_main() -> None:
    """Import the decoders, then fork one per byte received on stdin (a socket) until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle; it closes us
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # decoders are reaped by the kernel
    for module in DECODER_MODULES:
        importlib.import_module(module)
    server = socket.socket(fileno=0)
    server.sendall(b"R")
    while server.recv(1):
        _fork_decoder(server)


def _fork_decoder(server: socket.socket) -> None:
    down_r, down_w = os.pipe()
    up_r, up_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the decoder
        try:
            server.close()
            os.close(down_w)
            os.close(up_r)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _decode_forever(down_r, up_w)
        finally:
            os._exit(0)
    os.close(down_r)
    os.close(up_w)
    fds = [down_w, up_r]
    with contextlib.suppress(AttributeError, OSError):  # no pidfd (Linux < 5.3): signals go by pid
        fds.append(os.pidfd_open(pid))
    try:
        socket.send_fds(server, [pid.to_bytes(8, "little")], fds)
    finally:
        for fd in fds:
            os.close(fd)


def _decode_forever(in_fd: int, out_fd: int) -> None:
    _limit_memory()
    source = open(in_fd, "rb")  # noqa: SIM115  # buffered reads; closed when the process exits
    _send(out_fd, HELLO, str(os.getpid()).encode())
    while True:
        header = _recv(source)
        if header is None:
            return
        fn_key, count = transport.loads(header)
        fn = REGISTRY.get(fn_key)
        for _ in range(count):
            call = _recv(source)
            if call is None:
                return
            status, body = _serve(fn, fn_key, call)
            _send(out_fd, status, body)
            if status == ERROR_EXIT:
                return


def _serve(fn: Callable[..., Any] | None, fn_key: str, call: bytes) -> tuple[int, bytes]:
    if fn is None:
        return ERROR, f"not a registered decoder: {fn_key}".encode()
    _limit_cpu()
    out_of_memory = False
    try:
        return OK, transport.dumps(fn(*transport.loads(call)))
    except MemoryError:
        out_of_memory = True  # answered below, once the traceback (and what it holds) is released
    except transport.OutputFull:
        return ERROR, OVER_OUTPUT.encode()
    except RecursionError:
        return ERROR, b"nested too deeply to decode"
    except ValueError as exc:
        if "fast mode" in str(exc):  # the transport pickler met a value that contains itself
            return ERROR, b"the decoded value contains itself"
        return ERROR, _describe(exc)
    except Exception as exc:  # a decoder's bug: reported for this call, the next ones still run
        return ERROR, _describe(exc)
    assert out_of_memory
    return ERROR_EXIT, OVER_MEMORY.encode()


def _describe(exc: BaseException) -> bytes:
    return f"decoder error: {type(exc).__name__}: {str(exc)[:200]}".encode("utf-8", "replace")


def _limit_memory() -> None:
    try:
        import resource

        with open("/proc/self/status", "rb") as status:
            vm = next(line for line in status if line.startswith(b"VmSize:"))
        size = int(vm.split()[1]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size + BUDGET_BYTES, size + BUDGET_BYTES))
    except (ImportError, OSError, StopIteration, ValueError):  # not Linux: the deadline still holds
        pass


_cpu_limit_moved = 0.0


def _limit_cpu() -> None:
    """Move the CPU backstop to CPU_BACKSTOP seconds ahead (at most twice a second: 3 syscalls)."""
    global _cpu_limit_moved
    now = time.monotonic()
    if now - _cpu_limit_moved < 0.5:
        return
    _cpu_limit_moved = now
    try:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        used = int(usage.ru_utime + usage.ru_stime) + 1
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        resource.setrlimit(resource.RLIMIT_CPU, (used + CPU_BACKSTOP, hard))
    except (ImportError, OSError, ValueError):
        pass


def _send(fd: int, status: int, body: bytes) -> None:
    data = memoryview((len(body) + 1).to_bytes(4, "little") + bytes([status]) + body)
    while data:
        data = data[os.write(fd, data) :]


def _recv(source: Any) -> bytes | None:
    head = source.read(4)
    if len(head) < 4:
        return None
    body: bytes = source.read(int.from_bytes(head, "little"))
    return body


# -- in the server -----------------------------------------------------------------------------------


class Zygote:
    """The server's handle on its zygote: started once, restarted if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._ready = False

    def spawn(self) -> None:
        """Start the zygote if it is not running (it imports in the background: nothing waits)."""
        with self._lock:
            self._spawn()

    def _spawn(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._stop()
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        try:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from callboard.collectors.decoder_process import zygote_main; zygote_main()",
                ],
                stdin=theirs.fileno(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                close_fds=True,
            )
        finally:
            theirs.close()
        self._sock, self._ready = ours, False

    def fork(self) -> tuple[int, int, int, int | None]:
        """A new decoder: (pid, its stdin, its stdout, pidfd or None). Raises OSError if none starts."""
        with self._lock:
            for _ in range(2):
                self._spawn()
                assert self._sock is not None
                try:
                    self._sock.settimeout(STARTUP_SECONDS)
                    if not self._ready:
                        self._ready = self._sock.recv(1) == b"R"
                    self._sock.sendall(b"f")
                    data, fds, _, _ = socket.recv_fds(self._sock, 8, 3)
                except OSError:
                    data, fds = b"", []
                if len(data) == 8 and len(fds) >= 2:
                    return int.from_bytes(data, "little"), fds[0], fds[1], fds[2] if len(fds) > 2 else None
                for fd in fds:
                    os.close(fd)
                self._stop()  # dead, or stuck: a fresh one next
        raise OSError("no decoder process could be started")

    def _stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None

    def stop(self) -> None:
        with self._lock:
            self._stop()


ZYGOTE = Zygote()


class Decoder:
    """The server's end of one decoder process: non-blocking pipes, polled with a deadline per call."""

    def __init__(self) -> None:
        self.pid, self.stdin, self.stdout, self.pidfd = ZYGOTE.fork()
        os.set_blocking(self.stdin, False)
        os.set_blocking(self.stdout, False)
        self.buffer = bytearray()
        self.ready = False
        self.closed = False
        self.used_at = time.monotonic()
        LIVE.add(self)

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.ready:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.stdout], [], [], left)[0]:
                return False
            frames = self._drain()
            if frames is None:
                return False
            self.ready = any(status == HELLO for status, _ in frames)
        return True

    def poll_ready(self) -> bool:
        """Whether the decoder has said it is ready, without waiting."""
        if not self.ready:
            self.ready = any(status == HELLO for status, _ in self._drain() or [])
        return self.ready

    def exchange(
        self, request: bytes, count: int, replies: list[tuple[int, bytes]]
    ) -> tuple[int, str | None]:
        """Send a request of `count` calls; append each (status, body) reply to `replies` as it arrives.

        Returns (replies received, None) when all came, else (received, why the decoder is done for):
        BUDGET_SECONDS without a reply, its end closed, or its memory spent."""
        data = memoryview(request)
        got = 0
        deadline = time.monotonic() + BUDGET_SECONDS
        poller = select.poll()
        poller.register(self.stdout, select.POLLIN)
        poller.register(self.stdin, select.POLLOUT)
        while got < count:
            left = deadline - time.monotonic()
            if left <= 0:
                return got, OVER_TIME
            for fd, _ in poller.poll(max(1, int(left * 1000) + 1)):
                if fd == self.stdin:
                    data = self._write(data)
                    if not data:
                        poller.unregister(self.stdin)
                    continue
                frames = self._drain()
                if frames is None:
                    return got, DIED
                for status, body in frames:
                    replies.append((status, body))
                    got += 1
                    deadline = time.monotonic() + BUDGET_SECONDS
                    if status == ERROR_EXIT:
                        return got, OVER_MEMORY
                if frames and got < count:
                    # Let replies pile up a little: one read then takes dozens, instead of one
                    # wake-up of this thread per reply (it halves the cost of a small call).
                    time.sleep(NAP_SECONDS)
        return got, None

    def _write(self, data: memoryview) -> memoryview:
        try:
            return data[os.write(self.stdin, data[: 1 << 16]) :]
        except BlockingIOError:
            return data
        except OSError:  # the decoder is gone; its stdout says so next
            return data[:0]

    def _drain(self) -> list[tuple[int, bytes]] | None:
        """Frames now readable; None when the decoder closed its end (exited, died) or broke protocol."""
        try:
            chunk = os.read(self.stdout, 1 << 20)
        except BlockingIOError:
            return []
        except OSError:
            return None
        if not chunk:
            return None
        self.buffer += chunk
        frames = []
        while len(self.buffer) >= 4:
            size = int.from_bytes(self.buffer[:4], "little")
            if size < 1 or size > _MAX_FRAME:
                return None
            if len(self.buffer) < 4 + size:
                break
            frames.append((self.buffer[4], bytes(self.buffer[5 : 4 + size])))
            del self.buffer[: 4 + size]
        return frames

    def alive(self) -> bool:
        if self.pidfd is not None:
            return not select.select([self.pidfd], [], [], 0)[0]  # readable once it has exited
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def close(self, kill: bool = False) -> None:
        """End the decoder: EOF on its stdin (it exits), or SIGKILL; wait until it is gone."""
        if self.closed:
            return
        self.closed = True
        if kill:
            self._kill()
        os.close(self.stdin)
        os.close(self.stdout)
        if not self._gone_within(2.0):
            self._kill()
            self._gone_within(2.0)
        if self.pidfd is not None:
            os.close(self.pidfd)
        LIVE.discard(self)

    def _kill(self) -> None:
        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _gone_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self.alive():
            if time.monotonic() > deadline:
                return False
            if self.pidfd is not None:
                select.select([self.pidfd], [], [], max(0.0, deadline - time.monotonic()))
            else:
                time.sleep(0.01)
        return True


#: Every decoder not closed yet (atexit kills them).
LIVE: set[Decoder] = set()
