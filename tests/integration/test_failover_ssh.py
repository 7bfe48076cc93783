"""The same failover with every broker on an `ssh` host: a real OpenSSH sshd on 127.0.0.1.

Start and stop commands run through SSH, properties files and epoch records are read and
written over SFTP; the probes, the canary and the secondary check stay on the watchdog's host.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon_harness import (
    Daemon,
    Topology,
    broker_config,
    pull_all,
    registrations,
    runtime_info,
    send_keyed,
    wait_until,
    write_until_ok,
    writer_result,
)
from tests.sshd import SshdServer

pytestmark = pytest.mark.integration

A0, A1 = "broker-a:0", "broker-a:1"


def on_ssh_host(top: Topology, server: SshdServer) -> None:
    """Move every broker of the sandbox's config to host "remote" (the sshd)."""
    head, *blocks = top.config.read_text().split("[[brokers]]")
    blocks = [b.replace('host = "local"', 'host = "remote"') for b in blocks]
    remote = server.ssh_host
    table = {
        "kind": "ssh",
        "address": remote.address,
        "port": remote.port,
        "user": remote.user,
        "known_hosts": remote.known_hosts,
        "client_keys": list(remote.client_keys),
        "connect_timeout": "5s",
    }
    lines = [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    top.config.write_text(
        "[[brokers]]".join([head, *blocks])
        + "\n[hosts.remote]\n"
        + "\n".join(lines)
        + '\n\n[failover]\nrecovery_block = "1h"\ncanary_timeout = "30s"\n'
    )


def test_failover_with_brokers_on_an_ssh_host(
    fresh_sandbox: Any, sshd_host: SshdServer, tmp_path: Path
) -> None:
    box = fresh_sandbox()
    top = Topology.of(box)
    on_ssh_host(top, sshd_host)
    states = top.state_dir
    topic = "FailoverSshTopic"
    before = send_keyed(top.namesrv, topic, "before", 100)
    assert before["failed"] == 0, before

    def caught_up() -> bool:
        slave, master = runtime_info(top.addrs[A1]), runtime_info(top.addrs[A0])
        return bool(
            slave and master and slave["commitLogMaxOffset"] == master["commitLogMaxOffset"]
        )

    wait_until(caught_up, 60, "the slave catching up")
    log_before = sshd_host.log_path.read_text(errors="replace")

    daemon = Daemon(top.config, tmp_path / "daemon.log")
    try:
        daemon.wait_event(lambda e: e.get("state") == "HEALTHY", 60, "a HEALTHY cycle")
        box.kill(A0, "KILL")
        killed_at = time.time()
        writer = write_until_ok(top.namesrv, topic, 150)
        failover = states.wait_finished(150)
        assert states.outcome(failover) == "succeeded", states.journal(failover)[-3:]
        promoted = states.step_event(failover, "wait_master")
        assert promoted is not None
        print(f"[failover timing] ssh: kill -> promoted: {promoted['at'] - killed_at:.1f} s")
        write = writer_result(writer, 150)
        assert write["first_ok_at"] is not None, write
        print(
            f"[failover timing] ssh: kill -> first write: {write['first_ok_at'] - killed_at:.1f} s"
        )
    finally:
        assert daemon.stop() == 0

    plan = states.plan(failover)
    assert plan["expected_loss_bytes"] == 0
    assert {s["host"] for s in plan["steps"]} == {"remote"}
    done = [e for e in states.journal(failover) if e["event"] == "step_done"]
    # Each step done once (steps side by side end in any order).
    by_index = sorted((e["index"], e["kind"]) for e in done)
    assert by_index == [(i, s["kind"]) for i, s in enumerate(plan["steps"])]
    # The commands really went through sshd, and the files through its SFTP subsystem.
    log = sshd_host.log_path.read_text(errors="replace")[len(log_before) :]
    assert "Accepted publickey" in log, log[-2000:]
    assert f"subsystem 'sftp' for {sshd_host.user}" in log, log[-2000:]

    live = broker_config(top.addrs[A1])
    assert live is not None and (live["brokerId"], live["brokerRole"]) == ("0", "ASYNC_MASTER")
    tables = registrations(top.nameservers).values()
    assert all(t is not None and t["broker-a"].get(0) == top.addrs[A1] for t in tables)
    assert "brokerRole=SLAVE" in top.properties[A0].read_text()  # fenced over SFTP
    assert f"master_addr={top.addrs[A1]}" in Path(f"{top.properties[A0]}.epoch").read_text()
    keys = set(pull_all(top.namesrv, topic))
    assert set(before["acked"]) <= keys

    # The old master, started again, comes back as a slave.
    box.start(A0)

    def rejoined() -> bool:
        config = broker_config(top.addrs[A0])
        return config is not None and config["brokerRole"] == "SLAVE"

    wait_until(rejoined, 90, f"{A0} running as a slave")
