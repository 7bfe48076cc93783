"""The watchdog daemon as a child process: started on a config, its JSON log read back, stopped."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from ..model import WatchdogError

__all__ = [
    "CRASH_AFTER_STEP_ENV",
    "DaemonChild",
    "DaemonChildExited",
    "DaemonChildTimeout",
    "child_env",
    "logged_at",
]

# The daemon's test hook (commands `run`): exit right after failover step N. A value meant for
# one daemon must not reach the next child that merely inherits this environment.
CRASH_AFTER_STEP_ENV = "RMQ_WATCHDOG_CRASH_AFTER_STEP"

# The folder holding the `watchdog` package, so that `python -m watchdog` in a child imports
# this very tree from any working folder.
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class DaemonChildExited(WatchdogError, RuntimeError):
    """The daemon exited before it logged what was awaited."""


class DaemonChildTimeout(WatchdogError, TimeoutError):
    """The daemon did not log what was awaited (or did not exit) in time."""


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment for a watchdog child: without the crash hook, this interpreter's bin
    folder first on PATH, this tree first on PYTHONPATH, then `extra` on top."""
    env = {k: v for k, v in os.environ.items() if k != CRASH_AFTER_STEP_ENV}
    # The sandbox's secondary check runs `rmq-watchdog-ping`: as on an installed host, the entry
    # point must be on the daemon's PATH (a venv's bin is not unless it was activated).
    env["PATH"] = os.pathsep.join(p for p in (str(Path(sys.executable).parent),
                                              env.get("PATH", "")) if p)  # fmt: skip
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
    )
    env.update(extra or {})
    return env


def logged_at(event: Mapping[str, Any]) -> float:
    """A log line's `timestamp` (ISO 8601, from structlog) as a Unix time; 0 without one."""
    stamp = event.get("timestamp")
    if not isinstance(stamp, str):
        return 0.0
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return 0.0


class DaemonChild:
    """`python -m watchdog run -c CONFIG --log-format json`, started at construction; stdout and
    stderr appended to `log`, whose JSON lines are read back as events.

    `prefix` runs it through a program that execs it (["ip", "netns", "exec", NS]), so the pid
    is the daemon's own. `env` is added to `child_env()`. Used as a context manager, it is
    stopped when the block ends.
    """

    def __init__(
        self,
        config: Path | str,
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        prefix: Sequence[str] = (),
        cwd: Path | None = None,
    ) -> None:
        self.config = Path(config)
        self.log_path = log
        self.argv = [*prefix, sys.executable, "-m", "watchdog", "run", "-c", str(config),
                     "--log-format", "json"]  # fmt: skip
        with log.open("ab") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child_env(env),
                cwd=cwd,
            )
        self.pid = self.proc.pid
        self._events: list[dict[str, Any]] = []
        self._offset = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def returncode(self) -> int | None:
        """The exit code once it has exited (reaped here), else None."""
        return self.proc.poll()

    @property
    def is_running(self) -> bool:
        return self.proc.poll() is None

    # ---- the log

    def events(self) -> list[dict[str, Any]]:
        """Every complete JSON object line of the log so far, from its start.

        The file is read from where the last call stopped; a line still being written waits
        for its newline.
        """
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except OSError:
            return list(self._events)
        end = data.rfind(b"\n")
        if end >= 0:
            for raw in data[: end + 1].splitlines():
                try:
                    doc = json.loads(raw)
                except ValueError:  # not JSON: a traceback, a line of a child of its own
                    continue
                if isinstance(doc, dict):
                    self._events.append(doc)
            self._offset += end + 1
        return list(self._events)

    def tail(self, lines: int = 15) -> str:
        """The log's last `lines` lines, as they are (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout_seconds: float,
        what: str,
        *,
        after: float = 0.0,
        poll_seconds: float = 0.1,
    ) -> dict[str, Any]:
        """The first event, from the start of the log, that was logged at or after the Unix time
        `after` and satisfies `predicate`.

        Raises DaemonChildExited when the daemon exits first, DaemonChildTimeout when
        `timeout_seconds` pass first; both carry the log's tail.
        """
        deadline = time.monotonic() + timeout_seconds
        while True:
            for event in self.events():
                if logged_at(event) >= after and predicate(event):
                    return event
            if self.proc.poll() is not None:
                # Its last lines may have landed after the read above.
                for event in self.events():
                    if logged_at(event) >= after and predicate(event):
                        return event
                raise DaemonChildExited(
                    f"the daemon exited ({self.proc.poll()}) before {what}:\n" + self.tail()
                )
            if time.monotonic() >= deadline:
                raise DaemonChildTimeout(
                    f"no daemon log line for {what} within {timeout_seconds} s:\n" + self.tail()
                )
            time.sleep(poll_seconds)

    # ---- its end

    def wait_exit(self, timeout_seconds: float) -> int:
        """Wait for the daemon to exit by itself; its exit code."""
        try:
            return self.proc.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            raise DaemonChildTimeout(
                f"daemon pid {self.pid} still runs after {timeout_seconds} s:\n{self.tail()}"
            ) from None

    def stop(self, timeout_seconds: float = 120.0) -> int:
        """SIGTERM, wait up to `timeout_seconds`, then SIGKILL; reaped either way. Its exit code.

        The daemon finishes a running failover before it exits on SIGTERM, so the wait should
        allow a step's time.
        """
        self.proc.send_signal(signal.SIGTERM)  # nothing once it has exited and been reaped
        try:
            return self.proc.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=30)

    async def stop_async(self, timeout_seconds: float = 120.0, poll_seconds: float = 0.1) -> int:
        """`stop` for a caller inside an event loop: the waits do not block the loop."""
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_seconds
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(poll_seconds)
        if self.proc.poll() is None:
            self.proc.kill()
        while (code := self.proc.poll()) is None:
            await asyncio.sleep(poll_seconds)
        return code
