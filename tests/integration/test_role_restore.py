"""A SYNC_MASTER group lowered to ASYNC_MASTER by a failover gets SYNC_MASTER back, on a real
RocketMQ 4.9.7 sandbox with the broker plug-in (`sandbox up --promotion inplace --replication
sync`): the daemon promotes the slave in place after a kill -9 of the master, as ASYNC_MASTER
(no slave left); the old master rejoins as its slave and catches up; then the restore runs as
the daemon will run it (two probe cycles through act.role_restores: restore_asks, the master's
PLUGIN_INFO, decide_role_restores; act.prepare_plan; the real Executor): the master is
SYNC_MASTER in the JVM it has run in since before the failover, its properties say so, a
sync send gets SEND_OK, and with its slave killed a send is answered SLAVE_NOT_AVAILABLE,
which only a SYNC_MASTER does.
Times are printed; run with -s to see them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon_harness import (
    Daemon,
    Topology,
    broker_config,
    runtime_info,
    wait_until,
)
from tests.integration.plugin_clients import call, has_topic_config, info, make_topic, send
from watchdog.act import (
    Executor,
    FailoverResult,
    Journal,
    StateStore,
    new_failover_id,
    prepare_plan,
    recorded_masters,
    role_restores,
)
from watchdog.commands import render_plan
from watchdog.config import load_config
from watchdog.decide import Plan, Policy, RestoreRole
from watchdog.detect import DetectorState, detect
from watchdog.hosts import make_host
from watchdog.model import PropertiesFile
from watchdog.probe import Prober, client_pool

pytestmark = pytest.mark.integration

A0, A1 = "broker-a:0", "broker-a:1"
GROUP = "broker-a"
TOPIC = "RoleRestoreTopic"
QUEUES = 2


def report(what: str, seconds: float) -> None:
    print(f"[role restore timing] {what}: {seconds:.3f} s")


def log_end(addr: str) -> int:
    table = runtime_info(addr)
    assert table is not None, f"{addr} does not answer"
    return int(table["commitLogMaxOffset"])


def wait_caught_up(master: str, slave: str, seconds: float = 60) -> int:
    def done() -> int | None:
        end = log_end(master)
        return end if end > 0 and log_end(slave) == end else None

    return wait_until(done, seconds, f"{slave} catching up with {master}")


def raw_send(addr: str, topic: str, key: str) -> int:
    """One SEND_MESSAGE_V2 (310) straight to `addr`: the broker's response code (0 SEND_OK,
    11 SLAVE_NOT_AVAILABLE: a SYNC_MASTER stored it but no slave is attached to confirm it)."""
    header = {
        "a": "RoleRestorePG", "b": topic, "c": "TBW102", "d": str(QUEUES), "e": "0", "f": "0",
        "g": str(int(time.time() * 1000)), "h": "0", "i": f"KEYS\x01{key}\x02", "j": "0",
        "k": "false",
    }  # fmt: skip
    body = f"{key} body".encode()
    reply = call(addr, lambda c: c.request(310, header, body, timeout_seconds=10.0))
    return reply.code


def file_values(path: Path) -> tuple[str | None, str | None]:
    values = PropertiesFile.parse(path.read_text(encoding="latin-1"))
    return values.get("brokerId"), values.get("brokerRole")


@dataclass(frozen=True)
class Restored:
    decision: RestoreRole
    cycles: int  # probe cycles until the decision
    plan: Plan
    rendered: str
    result: FailoverResult


async def restore_as_the_daemon_would(config_path: Path) -> Restored:
    """Probe cycles at the configured interval, each decided as the daemon's cycle will
    (act.role_restores), until a restore is decided (at the second cycle: two consecutive
    cycles must agree); then its plan (act.prepare_plan), rendered as a dry run would, run by
    the real executor."""
    config = load_config(str(config_path))
    pool = client_pool(config)
    hosts = {name: make_host(name, h) for name, h in config.hosts.items()}
    store, journal = StateStore(config.state_dir), Journal(config.state_dir)
    try:
        state = store.load()
        detector = DetectorState.initial()
        for name, master in recorded_masters(state, journal, config).items():
            detector = detector.with_master(name, master.addr, master.role)
        policy = Policy.from_config(
            config,
            running=set(state.running),
            lowered={
                n: (r.lowered_from, r.lowered_by or "?")
                for n, r in state.groups.items()
                if r.lowered_from
            },
        )
        prober = Prober(config, pool)
        previous = None
        decided: tuple[RestoreRole, ...] = ()
        cycles = 0
        while not decided:
            if cycles:
                await asyncio.sleep(config.probe.interval_seconds)
            assert cycles < 5, "no restore decided in 5 cycles"
            cycles += 1
            snapshot = await prober.snapshot(detector.known_master)
            detector, verdict = detect(detector, snapshot, config.detect, config.probe)
            decided = await role_restores(
                config, pool, snapshot, previous, verdict, policy, state, now=time.time()
            )
            previous = snapshot
        [decision] = decided
        plan, files = await prepare_plan(decision, config, snapshot, hosts, state, pool=pool)
        assert isinstance(plan, Plan), plan
        group = verdict.group(GROUP)
        assert group is not None
        rendered = render_plan(plan, group, files, config)
        executor = Executor(config, hosts, pool, store, journal)
        result = await executor.run(plan, new_failover_id(GROUP))
        return Restored(decision, cycles, plan, rendered, result)
    finally:
        await pool.close_all()
        for host in hosts.values():
            await host.close()


def test_a_lowered_sync_master_gets_its_role_back_without_a_restart(
    plugin_sandboxes: Any, tmp_path: Path
) -> None:
    began = time.monotonic()
    box = plugin_sandboxes(replication="sync")
    top = Topology.of(box)
    states = top.state_dir
    old, new = top.addrs[A0], top.addrs[A1]
    report("sandbox up", time.monotonic() - began)

    make_topic(old, TOPIC, QUEUES)
    # SYNC_MASTER: sends answer SLAVE_NOT_AVAILABLE (11) until the slave's HA link is up.
    sent = iter(range(1000))
    wait_until(lambda: raw_send(old, TOPIC, f"before-{next(sent)}") == 0, 60, "the HA link")
    assert [raw_send(old, TOPIC, f"before-{next(sent)}") for _ in range(4)] == [0] * 4
    # The slave has the topic from its master's SlaveSynchronize (every 10 s) to take writes
    # once promoted.
    wait_until(lambda: has_topic_config(new, TOPIC), 30, f"the slave syncing {TOPIC}")
    wait_caught_up(old, new)
    pid = box.pid(A1)
    report("topic made, the HA link up, sends confirmed", time.monotonic() - began)

    # kill -9 of the SYNC_MASTER: its slave, the only one, is promoted in place, lowered.
    running = Daemon(top.config, tmp_path / "daemon.log")
    try:
        running.wait_event(lambda e: e.get("state") == "HEALTHY" and "cycle" in e, 60, "HEALTHY")
        box.kill(A0, "KILL")
        failover_id = states.wait_finished(120)
        report("failover done", time.monotonic() - began)
        assert states.outcome(failover_id) == "succeeded", states.journal(failover_id)[-3:]
        plan = states.plan(failover_id)
        assert (plan["new_role"], plan["lowered_from"]) == ("ASYNC_MASTER", "SYNC_MASTER")
        assert states.group(GROUP)["lowered_from"] == "SYNC_MASTER"
        live = broker_config(new)
        assert live is not None and live["brokerRole"] == "ASYNC_MASTER"
        assert file_values(top.properties[A1]) == ("0", "ASYNC_MASTER")

        # No slave left: as ASYNC_MASTER it confirms writes alone (a SYNC_MASTER would
        # answer SLAVE_NOT_AVAILABLE).
        assert [raw_send(new, TOPIC, f"lowered-{i}") for i in range(4)] == [0] * 4
        # The old master rejoins with the properties its fence left (SLAVE, id 1) and catches
        # up with the writes made since; the daemon finds its log within the promotion point.
        box.start(A0, wait_registered=True)
        report("old master rejoined", time.monotonic() - began)
        wait_caught_up(new, old)
        wait_until(
            lambda: states.group(GROUP).get("rejoin_check_key") is None, 30, "the rejoin check"
        )
        assert states.group(GROUP)["lowered_from"] == "SYNC_MASTER"  # still lowered
    finally:
        running.stop()
    report("to a lowered group with its slave in sync", time.monotonic() - began)

    started = time.monotonic()
    restored = asyncio.run(restore_as_the_daemon_would(top.config))
    report("restore: two cycles, decision, plan, run", time.monotonic() - started)
    decision, result = restored.decision, restored.result
    assert restored.cycles == 2  # the first cycle alone is not enough
    assert (decision.master_key, decision.slave_key, decision.role) == (A1, A0, "SYNC_MASTER")
    assert decision.lowered_by == failover_id
    assert result.outcome == "succeeded", result
    assert [(r.kind, r.status) for r in result.steps] == [
        ("rewrite", "done"), ("set_master_role", "done"), ("record_role", "done"),
    ]  # fmt: skip
    report("restore plan run", result.duration_seconds)
    lines = restored.rendered.splitlines()
    assert lines[1] == f"decision: {decision.reason}"
    assert "+brokerRole=SYNC_MASTER" in lines and "-brokerRole=ASYNC_MASTER" in lines

    # SYNC_MASTER in the running JVM (no restart since before the failover), in its file, in
    # the plug-in's view and the state's; the epoch unchanged.
    assert box.pid(A1) == pid
    live = broker_config(new)
    assert live is not None and (live["brokerId"], live["brokerRole"]) == ("0", "SYNC_MASTER")
    assert file_values(top.properties[A1]) == ("0", "SYNC_MASTER")
    found = info(new)
    assert (found.broker_role, found.broker_id, found.last_epoch) == ("SYNC_MASTER", 0, 1)
    group = states.group(GROUP)
    assert (group["lowered_from"], group["lowered_by"], group["epoch"]) == (None, None, 1)

    # A real client's sync send waits for the slave and gets SEND_OK; with the slave killed,
    # the master answers SLAVE_NOT_AVAILABLE (11), which only a SYNC_MASTER does: the role
    # is in effect in the store, not only reported.
    after = send(top.namesrv, TOPIC, "restored", 4 * QUEUES)
    assert after["statuses"] == {"0": 4 * QUEUES}, after
    report("sync sends after the restore", time.monotonic() - began)
    box.kill(A0, "KILL")
    codes: list[int] = []
    deadline = time.monotonic() + 30
    while not codes or codes[-1] != 11:
        assert time.monotonic() < deadline, f"no SLAVE_NOT_AVAILABLE without a slave: {codes}"
        codes.append(raw_send(new, TOPIC, f"alone-{len(codes)}"))
    # Before the master sees the link drop: SEND_OK, or FLUSH_SLAVE_TIMEOUT (12) after
    # waiting slaveTimeout for an acknowledgement (only a SYNC_MASTER waits).
    assert set(codes) <= {0, 11, 12}, codes
    report("test", time.monotonic() - began)
