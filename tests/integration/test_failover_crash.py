"""Crash safety on a real sandbox: a daemon killed right after any step of a promotion finishes it
when started again (RMQ_WATCHDOG_CRASH_AFTER_STEP=N makes it exit 70 once step N is journaled).

One sandbox serves the whole file, restored between scenarios (brokers stopped, files and
stores reset, state dir wiped), which is much cheaper than a new sandbox each time:

1. one failover, the daemon killed after each step in turn: started with the hook at 1, then
   at 2 (it resumes, runs step 2 and dies), ... up to the last step, then without the hook;
2. independent runs for a few steps: killed after step N once, restarted without the hook.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon_harness import (
    Daemon,
    Topology,
    append_config,
    broker_config,
    cli,
    registrations,
    wait_until,
)
from watchdog.model import PropertiesFile

pytestmark = pytest.mark.integration

A0, A1 = "broker-a:0", "broker-a:1"
CRASH_EXIT_CODE = 70
# Independent runs: after the old master is fenced, after the candidate is stopped (the group
# has no broker running), and after the candidate was started as master but not yet verified.
INDEPENDENT_STEPS = (3,)  # the confirm_fenced gate; the chain above covers every step


def report(what: str, seconds: float) -> None:
    print(f"[crash timing] {what}: {seconds:.1f} s")


def one_master(top: Topology, addr: str, timeout_seconds: float = 60) -> None:
    def check() -> bool:
        tables = registrations(top.nameservers).values()
        return all(t is not None and t.get("broker-a", {}).get(0) == addr for t in tables)

    wait_until(check, timeout_seconds, f"{addr} as the one id 0 on every nameserver")


def restore(box: Any, top: Topology, pristine: dict[str, bytes]) -> None:
    """Back to a healthy master/slave pair with empty stores and no watchdog state."""
    for key in (A1, A0):
        if box.pid(key) is not None:
            box.stop(key)
    for key, data in pristine.items():
        top.properties[key].write_bytes(data)
        root = PropertiesFile.parse(data.decode("latin-1")).get("storePathRootDir")
        assert root
        shutil.rmtree(root, ignore_errors=True)
    for leftover in [*top.dir.glob("*.epoch"), *top.dir.glob("*.bak")]:
        leftover.unlink()
    for aside in (top.dir / "store").glob("*aside*"):
        shutil.rmtree(aside)
    shutil.rmtree(top.state_dir.path, ignore_errors=True)
    box.start(A0, wait_registered=True)
    box.start(A1, wait_registered=True)
    one_master(top, top.addrs[A0])


def crash_daemon(top: Topology, log: Path, step: int) -> Daemon:
    return Daemon(top.config, log, {"RMQ_WATCHDOG_CRASH_AFTER_STEP": str(step)})


def assert_finished(top: Topology, failover_id: str, log: Path) -> float:
    """Start a daemon without the hook; it finishes the failover. Returns the seconds taken."""
    states = top.state_dir
    started = time.monotonic()
    daemon = Daemon(top.config, log)
    try:
        wait_until(lambda: states.outcome(failover_id), 150, f"{failover_id} to finish")
        took = time.monotonic() - started
        assert states.outcome(failover_id) == "succeeded", states.journal(failover_id)[-3:]
        assert states.state()["running"] == {}
        assert states.failover_ids() == [failover_id]  # resumed, not started again
        one_master(top, top.addrs[A1])
        live = broker_config(top.addrs[A1])
        assert live is not None and (live["brokerId"], live["brokerRole"]) == ("0", "ASYNC_MASTER")
        assert states.group("broker-a")["epoch"] == 1
    finally:
        assert daemon.stop() == 0
    return took


def test_a_daemon_killed_after_any_step_finishes_the_failover(
    fresh_sandbox: Any, tmp_path: Path
) -> None:
    box = fresh_sandbox()
    top = Topology.of(box)
    append_config(top.config, '[failover]\nrecovery_block = "1h"\ncanary_timeout = "30s"')
    states = top.state_dir
    pristine = {key: top.properties[key].read_bytes() for key in (A0, A1)}
    began = time.monotonic()

    dry = cli("failover", "-c", str(top.config), "--broker-name", "broker-a", "--dry-run", "--json")
    assert dry.returncode == 0, dry
    steps = len(json.loads(dry.stdout)["plan"]["steps"])
    assert steps == 9  # rewrite + stop the old master, the confirm_fenced gate, then 6 more

    # 1. One failover, the daemon killed after every step in turn.
    daemon = crash_daemon(top, tmp_path / "chain-1.log", 1)
    daemon.wait_event(lambda e: e.get("state") == "HEALTHY", 60, "a HEALTHY cycle")
    box.kill(A0, "KILL")
    assert daemon.wait_exit(120) == CRASH_EXIT_CODE
    [failover_id] = states.failover_ids()
    assert states.done_indexes(failover_id) == [0]
    assert states.state()["running"] == {"broker-a": failover_id}
    for step in range(2, steps + 1):
        daemon = crash_daemon(top, tmp_path / f"chain-{step}.log", step)
        assert daemon.wait_exit(120) == CRASH_EXIT_CODE, daemon.tail()
        assert states.done_indexes(failover_id) == list(range(step)), step
        assert states.outcome(failover_id) is None
        resumed = [e for e in states.journal(failover_id) if e["event"] == "resumed"]
        assert len(resumed) == step - 1
        assert resumed[-1]["done_steps"] == list(range(step - 1))
    assert_finished(top, failover_id, tmp_path / "chain-final.log")
    report(
        f"one failover killed after each of its {steps} steps, resumed", time.monotonic() - began
    )

    # 2. Independent runs: killed once after step N, restarted without the hook.
    for step in INDEPENDENT_STEPS:
        restore(box, top, pristine)
        round_began = time.monotonic()
        daemon = crash_daemon(top, tmp_path / f"once-{step}.log", step)
        daemon.wait_event(lambda e: e.get("state") == "HEALTHY", 60, "a HEALTHY cycle")
        box.kill(A0, "KILL")
        assert daemon.wait_exit(120) == CRASH_EXIT_CODE, daemon.tail()
        [failover_id] = states.failover_ids()
        assert states.done_indexes(failover_id) == list(range(step))
        resume_took = assert_finished(top, failover_id, tmp_path / f"once-{step}-final.log")
        report(f"killed after step {step}: restart -> finished", resume_took)
        report(f"killed after step {step}: whole round", time.monotonic() - round_began)
    report("whole crash-safety test", time.monotonic() - began)
