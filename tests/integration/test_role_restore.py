"""A SYNC_MASTER group lowered to ASYNC_MASTER by a failover gets SYNC_MASTER back, on a real
RocketMQ 4.9.7 sandbox with the broker plug-in (`sandbox up --promotion inplace --replication
sync`): the daemon promotes the slave in place after a kill -9 of the master, as ASYNC_MASTER
(no slave left); the old master rejoins as its slave and catches up; then the same daemon
restores the role by itself (two cycles with the slave in sync, the master's PLUGIN_INFO, a
restore_role plan: rewrite, SET_MASTER_ROLE, record): the master is
SYNC_MASTER in the JVM it has run in since before the failover, its properties say so, a
sync send gets SEND_OK, and with its slave killed a send is answered SLAVE_NOT_AVAILABLE,
which only a SYNC_MASTER does.
Times are printed; run with -s to see them.
"""

from __future__ import annotations

import time
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
from watchdog.model import PropertiesFile

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
        # The slave is in sync on two cycles: the daemon restores the role by itself.
        rejoined = time.monotonic()
        wait_until(
            lambda: states.group(GROUP)["lowered_from"] is None, 60, "the daemon's role restore"
        )
        report("rejoined -> role restored", time.monotonic() - rejoined)
        ids = states.failover_ids()
        assert len(ids) == 2 and ids[0] == failover_id, ids
        restore = states.plan(ids[1])
        assert restore["kind"] == "restore_role", restore
        assert states.outcome(ids[1]) == "succeeded", states.journal(ids[1])[-3:]
        done = [
            (e["kind"], e["event"]) for e in states.journal(ids[1]) if e["event"] == "step_done"
        ]
        assert [k for k, _ in done] == ["rewrite", "set_master_role", "record_role"], done
        running.wait_event(
            lambda e: str(e.get("event", "")).startswith("role restore succeeded"), 10, "log"
        )
        # Done once: later cycles see SYNC_MASTER and decide nothing more.
        time.sleep(3)
        assert len(states.failover_ids()) == 2
    finally:
        running.stop()

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
