"""The decoder processes (collectors/decoding.py): order, budgets, respawn, no leaks, the transport.

These start real processes (a zygote and its forks) and spend real decode budgets: a few seconds.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from callboard.collectors import decoding, transport, unpickler
from callboard.collectors.arq import codec as arq_codec
from callboard.collectors.decoder_process import ZYGOTE
from callboard.collectors.model import Undecodable
from callboard.collectors.payloads import undecodable
from tests.hostile.test_decode_budget import decimal_int, huge_list, huge_memo, shared_list

REPO = Path(__file__).resolve().parents[2]


def fallback(call: decoding.Call, reason: str) -> Undecodable:
    return undecodable(call[0], reason)


def reasons(values: list[Any]) -> list[str | None]:
    return [v.reason if isinstance(v, Undecodable) else None for v in values]


@pytest.fixture(autouse=True)
def fresh() -> None:
    decoding.forget_strikes()


def gone(pid: int) -> bool:
    """True when `pid` no longer runs (exited, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def test_results_come_back_in_order_equal_to_decoding_in_process() -> None:
    values: list[Any] = [
        {
            "t": 1,
            "f": "fn",
            "a": [i, "x" * i, datetime.datetime(2024, 1, 2, 3, 4, 5), {1, 2}],
            "k": {"n": None},
        }
        for i in range(300)
    ]
    calls = [(pickle.dumps(v), "auto") for v in values]
    got = await decoding.run(arq_codec.decode, calls, fallback)
    assert got == values == [arq_codec.decode(*c) for c in calls]


async def test_a_call_over_its_time_budget_is_killed_and_the_rest_still_decode() -> None:
    started = time.monotonic()
    got = await decoding.run(
        arq_codec.decode,
        [(pickle.dumps(1), "auto"), (decimal_int(), "auto"), (pickle.dumps(2), "auto")],
        fallback,
    )
    elapsed = time.monotonic() - started
    assert got[0] == 1 and got[2] == 2
    assert reasons(got)[1] == decoding.OVER_TIME == "exceeds decode budget (time)"
    assert decoding.BUDGET_SECONDS <= elapsed < decoding.BUDGET_SECONDS + 1.5, elapsed
    # Remembered: the same payload again costs nothing.
    started = time.monotonic()
    again = await decoding.run(arq_codec.decode, [(decimal_int(), "auto")], fallback)
    assert reasons(again) == [decoding.OVER_TIME] and time.monotonic() - started < 0.5


@pytest.mark.parametrize("raw", [huge_memo(), huge_list()], ids=["memo index 2**26", "list(range(10**8))"])
async def test_a_call_over_its_memory_budget_answers_memory(raw: bytes) -> None:
    got = await decoding.run(arq_codec.decode, [(raw, "auto"), (pickle.dumps([1]), "auto")], fallback)
    assert reasons(got) == [decoding.OVER_MEMORY, None] and got[1] == [1]


async def test_a_result_over_the_output_budget_answers_output() -> None:
    # Decoding is cheap (a memo of 23 lists), but the result, sent without a memo, would be 8M lists.
    got = await decoding.run(arq_codec.decode, [(shared_list(), "auto")], fallback)
    assert reasons(got) == [decoding.OVER_OUTPUT]
    big = pickle.dumps(["x" * 1000] * 10_000)  # 10 MB once its shared string is written out 10,000 times
    assert reasons(await decoding.run(arq_codec.decode, [(big, "auto")], fallback)) == [decoding.OVER_OUTPUT]


async def test_a_partial_run_stops_after_the_first_kill_and_returns_the_prefix() -> None:
    calls = [(pickle.dumps(1), "auto"), (decimal_int(1_000_001), "auto"), (pickle.dumps(3), "auto")]
    got = await decoding.run(arq_codec.decode, calls, fallback, lane=decoding.Lane.BACKGROUND, partial=True)
    assert len(got) == 2 and got[0] == 1 and reasons(got)[1] == decoding.OVER_TIME


async def test_a_run_gives_up_after_two_kills_and_skips_the_rest() -> None:
    calls = [(decimal_int(1_000_010 + i), "auto") for i in range(4)] + [(pickle.dumps(5), "auto")]
    started = time.monotonic()
    got = await decoding.run(arq_codec.decode, calls, fallback)
    assert reasons(got) == [decoding.OVER_TIME] * 2 + [decoding.SKIPPED] * 3
    assert time.monotonic() - started < 2 * decoding.BUDGET_SECONDS + 1.5


async def test_a_killed_decoder_is_replaced_and_none_is_left_behind() -> None:
    await decoding.run(arq_codec.decode, [(pickle.dumps(1), "auto")], fallback)
    before = decoding.pids(decoding.Lane.INTERACTIVE)
    assert before
    for pid in before:
        os.kill(pid, signal.SIGKILL)  # from outside (the OOM killer, an operator): the pool forks anew
    # Both the decoder and its spare are dead when the call is sent, whether or not their exit has
    # been seen yet: the call gets fresh decoders and its result.
    assert await decoding.run(arq_codec.decode, [(pickle.dumps(2), "auto")], fallback) == [2]
    after = decoding.pids(decoding.Lane.INTERACTIVE)
    assert after and not set(after) & set(before)
    decoding.close()
    for pid in after:
        deadline = time.monotonic() + 5
        while not gone(pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert gone(pid), f"decoder {pid} still runs after close()"
    assert await decoding.run(arq_codec.decode, [(pickle.dumps(3), "auto")], fallback) == [3]  # made again


def test_a_server_that_dies_leaves_no_decoder_behind() -> None:
    """SIGKILL the server mid-decode: its decoders see EOF (idle) or hit the CPU backstop; the zygote
    sees EOF. Here: every one of them is gone within a few seconds."""
    script = (
        "import asyncio, os, pickle\n"
        "from callboard.collectors import decoding\n"
        "from callboard.collectors.arq import codec as arq_codec\n"
        "from callboard.collectors.decoder_process import ZYGOTE\n"
        "async def main():\n"
        "    await decoding.run(arq_codec.decode, [(pickle.dumps(1), 'auto')], lambda c, r: None)\n"
        "    zygote = ZYGOTE._proc.pid\n"
        "    print(zygote, *decoding.pids(decoding.Lane.INTERACTIVE), flush=True)\n"
        "    os.kill(os.getpid(), 9)\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) >= 2, proc.stdout
    deadline = time.monotonic() + 10
    while not all(gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(gone(p) for p in pids), [p for p in pids if not gone(p)]


def test_a_server_that_exits_kills_its_zygote_and_decoders() -> None:
    script = (
        "import asyncio, pickle\n"
        "from callboard.collectors import decoding\n"
        "from callboard.collectors.arq import codec as arq_codec\n"
        "from callboard.collectors.decoder_process import ZYGOTE\n"
        "async def main():\n"
        "    await decoding.run(arq_codec.decode, [(pickle.dumps(1), 'auto')], lambda c, r: None)\n"
        "    print(ZYGOTE._proc.pid, *decoding.pids(decoding.Lane.INTERACTIVE), flush=True)\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) >= 2 and all(gone(p) for p in pids)


async def test_only_registered_decoders_run() -> None:
    with pytest.raises(ValueError, match="not a @decoder"):
        await decoding.run(arq_codec.display, [(1,)], fallback)
    with pytest.raises(ValueError, match="module-level function"):
        decoding.decoder(lambda: None)


class Secret:
    def __init__(self, x: int) -> None:
        self.x = x


async def test_placeholders_cross_and_still_refuse_to_be_pickled_again() -> None:
    raw = pickle.dumps({"a": [Secret(3)], "r": Secret}, protocol=2)
    raw = raw.replace(f"{__name__}\nSecret".encode(), b"app.models\nSecret")  # a class we do not have
    [value] = await decoding.run(arq_codec.decode, [(raw, "auto")], fallback)
    assert isinstance(value, dict)
    thing = value["a"][0]
    assert isinstance(thing, unpickler.Placeholder) and thing.qualified_name == "app.models.Secret"
    assert thing.state == {"x": 3}
    assert issubclass(value["r"], unpickler.Placeholder)
    with pytest.raises(pickle.PicklingError):
        pickle.dumps(thing)


def test_the_transport_refuses_unknown_classes() -> None:
    assert transport.loads(pickle.dumps(datetime.date(2024, 1, 2))) == datetime.date(2024, 1, 2)
    foreign: list[Any] = [Path("/x"), subprocess.CompletedProcess([], 0), os.system]
    for value in foreign:
        with pytest.raises(pickle.UnpicklingError, match="refuses"):
            transport.loads(pickle.dumps(value))
    with pytest.raises(pickle.UnpicklingError, match="refuses"):
        transport.loads(b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00true\x85R.")


def test_a_zygote_that_died_is_started_again() -> None:
    ZYGOTE.spawn()
    proc = ZYGOTE._proc
    assert proc is not None
    proc.kill()
    proc.wait()
    pid, stdin, stdout, pidfd = ZYGOTE.fork()
    try:
        assert ZYGOTE._proc is not None and ZYGOTE._proc.pid != proc.pid and pid > 0
    finally:
        for fd in (stdin, stdout, pidfd):
            if fd is not None:
                os.close(fd)  # EOF: the decoder exits
