"""watchdog.native without a cluster: the one kill-and-reap helper, the JSON line readers, and the
drill verbs of `python -m watchdog.native` refusing bad arguments."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from watchdog.native import int_field, json_object, last_event, number_field, reap


def is_reaped(pid: int) -> bool:
    """Dead and waited for: not even a zombie is left in /proc."""
    return not Path(f"/proc/{pid}").exists()


async def started(code: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    await proc.stdout.readline()  # the child says it is ready
    return proc


def test_reap_asks_first_and_kills_after_the_grace() -> None:
    polite = "import sys, time; print('up', flush=True); time.sleep(60)"
    stubborn = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('up', flush=True); time.sleep(60)"
    )

    async def run() -> tuple[asyncio.subprocess.Process, asyncio.subprocess.Process, float]:
        first = await started(polite)
        await reap(first, 5.0)
        second = await started(stubborn)
        began = time.monotonic()
        await reap(second, 0.5)
        return first, second, time.monotonic() - began

    first, second, waited = asyncio.run(run())
    assert first.returncode == -signal.SIGTERM
    assert second.returncode == -signal.SIGKILL and 0.5 <= waited < 3.0
    assert is_reaped(first.pid) and is_reaped(second.pid)


def test_reap_without_grace_kills_at_once() -> None:
    async def run() -> int | None:
        proc = await started(
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('up', flush=True); time.sleep(60)"
        )
        await reap(proc)
        return proc.returncode

    assert asyncio.run(run()) == -signal.SIGKILL


def test_json_line_readers() -> None:
    assert json_object('{"a": 1}') == {"a": 1}
    assert json_object(b'{"a": 1}') == {"a": 1}
    for garbage in ("", "[1]", "nope", b"\xff", "null"):
        assert json_object(garbage) is None
    doc = {"n": 2, "f": 1.5, "b": True, "s": "3", "inf": float("inf")}
    assert number_field(doc, "n") == 2.0 and number_field(doc, "f") == 1.5
    assert number_field(doc, "b") is None and number_field(doc, "s") is None
    assert number_field(doc, "inf") is None and number_field(doc, "missing") is None
    assert int_field(doc, "n") == 2
    assert int_field(doc, "f") is None and int_field(doc, "b") is None


def test_last_event_is_the_last_of_its_name() -> None:
    stderr = (
        b'{"event":"send_attempt","attempt":1}\n'
        b"librocketmq noise\n"
        b'{"event":"send_attempt","attempt":2}\n'
        b'{"event":"sent", broken\n'
    )
    assert last_event(stderr, "send_attempt") == {"event": "send_attempt", "attempt": 2}
    assert last_event(stderr, "sent") is None


@pytest.mark.parametrize("verb", ["produce", "consume", "audit"])
def test_drill_verbs_refuse_a_bad_topic_in_one_stderr_line(verb: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "watchdog.native", verb, "--namesrv", "127.0.0.1:9876",
         "--topic", "bad topic", "--run-id", "R"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.startswith(f"drill {verb}: ValueError: topic 'bad topic' may contain only")


def test_a_missing_verb_is_a_usage_error() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "watchdog.native"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2 and "canary,probe,produce,consume,audit" in run.stderr
