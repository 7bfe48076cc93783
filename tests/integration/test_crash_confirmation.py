"""A real kill -9 is called down within one probe; a real SIGSTOP still waits down_after.

One sandbox, one dry-run daemon (it decides and logs, never acts): the master is killed a few
times at random points of the probe cycle (`sandbox start` brings it back between kills), then
frozen. Each time the first cycle line
of the group in MASTER_ODOWN is timed from the signal; the times are printed (`pytest -s`).
"""

from __future__ import annotations

import os
import random
import re
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon_harness import running_daemon
from watchdog.tools.daemon_child import DaemonChild, logged_at

pytestmark = pytest.mark.integration

MASTER = "broker-a:0"
GROUP = "broker-a"
DOWN_AFTER_SECONDS = 3.0  # the sandbox's config: the default down_after, 1 s probes
INTERVAL_SECONDS = 1.0  # and 1 s probes
KILLS = 5
CRASH = "because master crashed: it refuses connections and no answering nameserver lists it"


def dry_run_config(sandbox: Any, tmp_path: Path) -> Path:
    """The sandbox's config, decide-only (`dry_run = true` must precede the first table)."""
    path = tmp_path / "watchdog-dry.toml"
    path.write_text("dry_run = true\n" + Path(sandbox.config_path).read_text())
    return path


def is_group_line(event: dict[str, Any]) -> bool:
    return "cycle" in event and "state" in event and event.get("broker_name") == GROUP


def wait_healthy(d: DaemonChild, after: float, cycles: int = 3) -> None:
    """Until the group's last `cycles` lines logged after `after` all say HEALTHY."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lines = [e for e in d.events() if is_group_line(e) and logged_at(e) > after]
        if len(lines) >= cycles and all(e["state"] == "HEALTHY" for e in lines[-cycles:]):
            return
        time.sleep(0.2)
    raise AssertionError(f"{GROUP} not HEALTHY for {cycles} cycles:\n{d.tail()}")


def first_odown(d: DaemonChild, since: float) -> tuple[float, dict[str, Any]]:
    """Seconds from `since` to the group's first MASTER_ODOWN line, and that line."""
    line = d.wait_for(
        lambda e: is_group_line(e) and e["state"] == "MASTER_ODOWN",
        30,
        "MASTER_ODOWN",
        after=since,
    )
    return logged_at(line) - since, line


def test_kill_is_down_within_one_probe_sigstop_after_down_after(
    fresh_sandbox: Any, tmp_path: Path
) -> None:
    sandbox = fresh_sandbox()
    config = dry_run_config(sandbox, tmp_path)
    kills: list[float] = []
    loads: list[float] = []
    with running_daemon(config, tmp_path / "daemon.log") as d:
        wait_healthy(d, 0.0)
        for _ in range(KILLS):
            # Anywhere in the cycle, not just after the line wait_healthy saw.
            time.sleep(random.uniform(0, INTERVAL_SECONDS))
            killed_at = time.time()
            sandbox.kill(MASTER, "KILL")
            seconds, line = first_odown(d, killed_at)
            loads.append(os.getloadavg()[0])
            # The crash rule, not down_after: the promotion says why it did not wait.
            assert line["decision"] == "promote", line
            assert CRASH in line["event"], line
            kills.append(seconds)
            sandbox.start(MASTER, wait_registered=True)
            wait_healthy(d, time.time())

        # A hang: the kernel still accepts connections, the nameservers still list it (for
        # 120 s), the probes time out. down_after as before, then the secondary check's vote.
        frozen_at = time.time()
        sandbox.kill(MASTER, "STOP")
        try:
            frozen, line = first_odown(d, frozen_at)
        finally:
            sandbox.kill(MASTER, "CONT")
        hang_load = os.getloadavg()[0]
        assert "crashed" not in line["event"], line
        silent = re.search(r"because master unreachable for ([0-9.]+) s from", line["event"])
        assert silent, line
        assert float(silent.group(1)) >= DOWN_AFTER_SECONDS
        assert frozen >= DOWN_AFTER_SECONDS
        wait_healthy(d, time.time())
    assert d.proc.returncode == 0

    times = ", ".join(f"{s:.2f}" for s in kills)
    load = ", ".join(f"{x:.2f}" for x in loads)
    print(
        f"\nkill -9 -> MASTER_ODOWN: {times} s (median {statistics.median(kills):.2f} s; "
        f"1-min load avg {load})\nSIGSTOP -> MASTER_ODOWN: {frozen:.2f} s (load {hang_load:.2f})"
    )
    # Faster than down_after allows: the time rule cannot call it down before 3 s of silence.
    assert max(kills) < DOWN_AFTER_SECONDS, kills
