"""The drill's line children: a librocketmq client (`python -m watchdog.native VERB`) whose JSON
lines are kept and copied to a file while it runs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from ...native import reap
from ..daemon_child import child_env

__all__ = ["LineChild"]

_LINE_CAP = 500_000  # lines kept per child: a runaway child must not fill memory
_CHILD_GRACE_SECONDS = 15.0


class LineChild:
    """A child printing JSON lines on stdout; they are kept and copied to ``out_path``."""

    def __init__(self, argv: Sequence[str], out_path: Path, err_path: Path) -> None:
        self.argv = list(argv)
        self.out_path = out_path
        self.err_path = err_path
        self.lines: list[bytes] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        with self.err_path.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env=child_env(),
            )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.out_path.open("ab") as copy:
            while True:
                try:
                    line = await self.proc.stdout.readline()
                except ValueError:  # a line over the stream limit: dropped
                    continue
                if not line:
                    return
                copy.write(line)
                copy.flush()
                if len(self.lines) < _LINE_CAP:
                    self.lines.append(line)

    @property
    def is_running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def wait(self, timeout_seconds: float) -> bool:
        """Wait for the child to exit by itself; False when it is still running."""
        if self.proc is None:
            return True
        try:
            await asyncio.wait_for(self.proc.wait(), timeout_seconds)
        except TimeoutError:
            return False
        return True

    async def stop(self, grace_seconds: float = _CHILD_GRACE_SECONDS) -> None:
        """SIGTERM, SIGKILL after ``grace_seconds``; reaped, and its last lines read."""
        if self.proc is not None:
            await reap(self.proc, grace_seconds)
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 5.0)
            except TimeoutError:
                self._reader.cancel()
