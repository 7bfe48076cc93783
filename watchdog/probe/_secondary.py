"""Secondary checks: a master's liveness asked from other hosts, in the background of the cycle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from ..config import WatchdogConfig
from ..hosts import Host
from ..model import SecondaryObservation
from ..remoting import describe_error

__all__ = ["BackgroundSecondaryChecks"]


class BackgroundSecondaryChecks:
    """Secondary checks run from other hosts in the background; a cycle reads the latest result.

    A check over SSH can take longer than a probe interval; running it inline would stall the
    loop. Each (check, target) pair has at most one run in flight; a result older than
    `max_age_seconds` counts as unknown, so a stale "alive" cannot veto a down verdict for long.
    """

    def __init__(
        self,
        config: WatchdogConfig,
        hosts: Mapping[str, Host],
        *,
        max_age_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.checks = {c.name: c for c in config.secondary_checks}
        self.hosts = hosts
        self.max_age_seconds = max_age_seconds
        self.clock = clock
        self._latest: dict[tuple[str, str], tuple[float, SecondaryObservation]] = {}
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def __call__(self, name: str, addr: str) -> SecondaryObservation:
        key = (name, addr)
        task = self._running.get(key)
        if task is None or task.done():
            self._running[key] = asyncio.create_task(self._run(name, addr))
        latest = self._latest.get(key)
        if latest is None or self.clock() - latest[0] > self.max_age_seconds:
            return SecondaryObservation(name, addr, None, "no recent result")
        # Detection weighs it only if it began after the master went silent (started_at).
        return latest[1]

    async def _run(self, name: str, addr: str) -> None:
        started = self.clock()
        check = self.checks[name]
        argv = [part.replace("{addr}", addr) for part in check.command]
        host = self.hosts[check.host]
        try:
            result = await host.run(argv, timeout_seconds=check.timeout_seconds)
        except Exception as exc:  # a check must never take the loop down with it
            observation = SecondaryObservation(
                name, addr, None, describe_error(exc), started_at=started
            )
        else:
            is_alive: bool | None
            if result.exit_code == 0:
                is_alive, detail = True, "answered"
            elif result.exit_code == 1:
                is_alive, detail = False, result.stdout.strip()[:200]
            else:
                is_alive, detail = None, result.summary()
            observation = SecondaryObservation(name, addr, is_alive, detail, started_at=started)
        # Stamp with the start: the answer describes the master as it was when the check began.
        self._latest[(name, addr)] = (started, observation)

    async def close(self) -> None:
        for task in self._running.values():
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        self._running.clear()
