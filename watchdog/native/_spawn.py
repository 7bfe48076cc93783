"""Child processes, both sides: run one with capped output and reap it; the child's JSON lines,
its guarded stdout and its hard exit."""

# A librocketmq call can hang or crash its process, so every use of the client runs in a child
# the parent kills when its time is up. The parent side is here once: start, read the output
# (capped: a runaway child must not fill the parent's memory), kill, and always wait for it,
# because nothing else on this machine reaps it. So is the child side: the native library may
# write to fd 1, which must carry nothing but the child's own lines, and the client's destructors
# may crash at interpreter teardown, which must not turn a finished result into a failure.

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, NoReturn

__all__ = [
    "ChildRun",
    "SigtermFlag",
    "describe_exit",
    "exit_now",
    "int_field",
    "json_object",
    "last_event",
    "line_writer",
    "number_field",
    "reap",
    "result_stream",
    "run_child",
    "stderr_tail",
]


# --------------------------------------------------------------------------- the parent


@dataclass(frozen=True)
class ChildRun:
    """A child that ran to its end or was killed: its exit code and its (capped) output."""

    code: int | None
    stdout: bytes
    stderr: bytes
    was_killed: bool


async def reap(proc: asyncio.subprocess.Process, grace_seconds: float = 0.0) -> None:
    """Stop ``proc`` and wait for it: SIGTERM first when ``grace_seconds`` > 0, SIGKILL once
    they are over (at once without them); waited for either way."""
    if proc.returncode is None and grace_seconds > 0:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), grace_seconds)
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await proc.wait()


async def _read_capped(stream: asyncio.StreamReader | None, cap: int) -> bytes:
    if stream is None:
        return b""
    kept = bytearray()
    while chunk := await stream.read(65536):  # read on past the cap: a blocked child never ends
        if len(kept) < cap:
            kept += chunk[: cap - len(kept)]
    return bytes(kept)


async def run_child(
    argv: Sequence[str],
    *,
    kill_after_seconds: float,
    cap_bytes: int,
    stdin_data: bytes | None = None,
) -> ChildRun:
    """Run ``argv`` with no stdin (or ``stdin_data``, then end of file: how a secret reaches a
    child, never through its argv or environment), keep up to ``cap_bytes`` of its stdout and
    of its stderr, kill it after ``kill_after_seconds``, and reap it, also when the caller is
    cancelled. OSError when it cannot start."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL if stdin_data is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    if stdin_data is not None and proc.stdin is not None:
        # Far below a pipe's buffer: written at once, whether or not the child reads it.
        with contextlib.suppress(OSError):
            proc.stdin.write(stdin_data)
            proc.stdin.close()
    was_killed = False
    readers = asyncio.gather(
        _read_capped(proc.stdout, cap_bytes), _read_capped(proc.stderr, cap_bytes)
    )
    try:
        try:
            await asyncio.wait_for(proc.wait(), kill_after_seconds)
        except TimeoutError:
            was_killed = True
            await reap(proc)
        stdout, stderr = await readers
    finally:
        await reap(proc)
        if not readers.done():
            readers.cancel()
    return ChildRun(proc.returncode, stdout, stderr, was_killed)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


def stderr_tail(stderr: bytes, limit: int = 200) -> str:
    """The child's last three stderr lines that are not progress events, for an error message."""
    lines = [
        line
        for line in stderr.decode("utf-8", "replace").splitlines()
        if line.strip() and '"event"' not in line
    ]
    tail = " | ".join(lines[-3:])
    return tail if len(tail) <= limit else "..." + tail[-limit:]


# --------------------------------------------------------------------------- JSON lines


def json_object(line: bytes | str) -> Mapping[str, Any] | None:
    """One JSON line as an object; None for anything else."""
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def number_field(doc: Mapping[str, Any], name: str) -> float | None:
    """A finite number (not a boolean) as a float; None for anything else or nothing."""
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def int_field(doc: Mapping[str, Any], name: str) -> int | None:
    value = doc.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def last_event(stderr: bytes, name: str) -> Mapping[str, Any] | None:
    """The child's last progress event ``name`` (a JSON line on stderr), if it got that far."""
    for raw in reversed(stderr.decode("utf-8", "replace").splitlines()):
        raw = raw.strip()
        if raw.startswith("{") and (doc := json_object(raw)) and doc.get("event") == name:
            return doc
    return None


# --------------------------------------------------------------------------- the child


def result_stream() -> IO[str]:
    """The child's real stdout, kept for its own lines; fd 1 then goes to stderr, because the
    native library may write to it."""
    out: IO[str] = os.fdopen(os.dup(1), "w")
    sys.stdout.flush()
    os.dup2(2, 1)
    return out


def line_writer(out: IO[str]) -> Callable[[Mapping[str, Any]], None]:
    """Write one compact JSON line per call and flush it, so a parent that has to kill the child
    still has every finished line; safe from the client's native threads."""
    lock = threading.Lock()

    def write(doc: Mapping[str, Any]) -> None:
        with lock:
            out.write(json.dumps(doc, separators=(",", ":")) + "\n")
            out.flush()

    return write


class SigtermFlag:
    """Set by SIGTERM: the child finishes what it is doing and exits."""

    def __init__(self) -> None:
        self.is_set = False
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, signum: int, frame: Any) -> None:
        self.is_set = True


def exit_now(code: int, out: IO[str]) -> NoReturn:
    """Flush ``out`` and stderr, then exit without interpreter teardown: the client's destructors
    would shut the native client down a second time, and may crash doing it."""
    out.flush()
    sys.stderr.flush()
    os._exit(code)
