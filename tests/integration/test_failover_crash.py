"""Crash safety on a real sandbox: a daemon killed right after any step of a promotion finishes it
when started again (RMQ_WATCHDOG_CRASH_AFTER_STEP=N makes it exit 70 once step N is journaled).

The master is killed with kill -9, so the plan fences it side by side with the candidate's stop
and rewrite (two lanes joined by the confirm_fenced gate): a daemon killed after a step of one
lane dies with the other lane's step still running, and the next daemon runs it again.

One sandbox serves the whole file, restored between scenarios (brokers stopped, files and
stores reset, state dir wiped), which is much cheaper than a new sandbox each time:

1. one failover, the daemon killed again and again: each time with the hook at the first step
   not yet done, until every step is done, then without the hook;
2. independent runs for the steps the chain never stopped at (a step of one lane that ended
   while the chain waited for the other's) and for the gate: killed after step N once,
   restarted without the hook.
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
    StateDir,
    Topology,
    append_config,
    broker_config,
    cli,
    registrations,
    wait_until,
)
from watchdog.decide import Plan
from watchdog.model import PropertiesFile

pytestmark = pytest.mark.integration

A0, A1 = "broker-a:0", "broker-a:1"
CRASH_EXIT_CODE = 70
GATE_STEP = 5  # the confirm_fenced gate, after both lanes: always an independent run too


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


def done_now(states: StateDir, failover_id: str, plan: Plan) -> set[int]:
    """The steps the journal says are done; each one's waits are done too (lanes, the gate)."""
    done = set(states.done_indexes(failover_id))
    for index in done:
        assert plan.waits_for(index) <= done, (index, sorted(done))
    return done


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
    assert steps == 9  # 2 fence steps | 2 candidate steps, the confirm_fenced gate, then 4 more

    # 1. One failover, the daemon killed after the first step not yet done, again and again.
    daemon = crash_daemon(top, tmp_path / "chain-1.log", 1)
    daemon.wait_event(lambda e: e.get("state") == "HEALTHY", 60, "a HEALTHY cycle")
    box.kill(A0, "KILL")
    assert daemon.wait_exit(120) == CRASH_EXIT_CODE
    [failover_id] = states.failover_ids()
    plan = Plan.from_json(states.plan(failover_id))
    assert [s.lane for s in plan.steps] == ["fence"] * 2 + ["candidate"] * 2 + [""] * 5
    done = done_now(states, failover_id, plan)
    assert 0 in done
    assert states.state()["running"] == {"broker-a": failover_id}
    killed_after = [1]
    while len(done) < steps:
        step = min(set(range(steps)) - done) + 1
        daemon = crash_daemon(top, tmp_path / f"chain-{step}.log", step)
        assert daemon.wait_exit(120) == CRASH_EXIT_CODE, daemon.tail()
        before, done = done, done_now(states, failover_id, plan)
        assert step - 1 in done and before < done, (step, sorted(done))
        assert states.outcome(failover_id) is None
        resumed = [e for e in states.journal(failover_id) if e["event"] == "resumed"]
        assert len(resumed) == len(killed_after)
        assert resumed[-1]["done_steps"] == sorted(before)
        killed_after.append(step)
    assert_finished(top, failover_id, tmp_path / "chain-final.log")
    report(
        f"one failover killed {len(killed_after)} times (after steps {killed_after}), resumed",
        time.monotonic() - began,
    )

    # 2. Independent runs: killed once after step N, restarted without the hook.
    independent = sorted({*(set(range(1, steps + 1)) - set(killed_after)), GATE_STEP})
    for step in independent:
        restore(box, top, pristine)
        round_began = time.monotonic()
        daemon = crash_daemon(top, tmp_path / f"once-{step}.log", step)
        daemon.wait_event(lambda e: e.get("state") == "HEALTHY", 60, "a HEALTHY cycle")
        box.kill(A0, "KILL")
        assert daemon.wait_exit(120) == CRASH_EXIT_CODE, daemon.tail()
        [failover_id] = states.failover_ids()
        plan = Plan.from_json(states.plan(failover_id))
        assert step - 1 in done_now(states, failover_id, plan)
        resume_took = assert_finished(top, failover_id, tmp_path / f"once-{step}-final.log")
        report(f"killed after step {step}: restart -> finished", resume_took)
        report(f"killed after step {step}: whole round", time.monotonic() - round_began)
    report("whole crash-safety test", time.monotonic() - began)
