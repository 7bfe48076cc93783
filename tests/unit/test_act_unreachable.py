"""The old master's host out of reach during a fence: what the run's best-effort steps try."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tests.unit._act_world import A0, World, WorldHost, cut_off, run
from watchdog.hosts import CommandResult, HostError


class PartitionedHost(WorldHost):
    """The old master's files and commands cannot be reached; the rest of the world can."""

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.tries: list[str] = []

    def _is_old_master(self, path: str) -> bool:
        return path.startswith(str(self.world.props(A0)))

    async def read_file(self, path: str) -> bytes:
        if self._is_old_master(path):
            self.tries.append("read")
            raise HostError(f"server1: cannot connect to {path}: timed out")
        return await super().read_file(path)

    async def write_file(self, path: str, data: bytes) -> None:
        if self._is_old_master(path):
            self.tries.append("write")
            raise HostError(f"server1: cannot connect to {path}: timed out")
        await super().write_file(path, data)

    async def run(self, argv: Sequence[str], *, timeout_seconds: float) -> CommandResult:
        if list(argv[:3]) in (["fake-broker", "stop", A0], ["fake-broker", "kill", A0]):
            self.tries.append(argv[1])
            return CommandResult(tuple(argv), 255, "", "server1: cannot connect: timed out")
        return await super().run(argv, timeout_seconds=timeout_seconds)


def test_a_host_the_rewrite_could_not_reach_gets_one_stop_try_before_the_fence_command(
    tmp_path: Path,
) -> None:
    """The rewrite spent its retry budget on an unreachable host: the stop there is tried once,
    and the fence command runs without waiting a second budget out (a partition: 15 s more of
    an ASYNC master taking writes that the promotion then moves aside)."""

    async def body(world: World) -> None:
        marker = tmp_path / "fenced"
        config = world.config(fence_command=["touch", str(marker)])
        await cut_off(world, A0)
        host = PartitionedHost(world)
        world.host = host
        result = await world.executor(config).run(world.promotion(config), "fo-1")
        assert result.outcome == "succeeded", result
        assert marker.exists()
        statuses = [(r.kind, r.status) for r in result.steps][:4]
        assert statuses == [
            ("rewrite", "skipped"),
            ("stop", "skipped"),
            ("fence_command", "done"),
            ("confirm_fenced", "done"),
        ]
        # The rewrite was retried within its budget (step_timeout 3 s), the stop was not.
        assert host.tries.count("stop") == 1, host.tries
        assert host.tries.count("read") >= 2, host.tries
        rewrite, stop = result.steps[0], result.steps[1]
        assert stop.duration_seconds < 1.0 < rewrite.duration_seconds, result.steps

    run(body, tmp_path)
