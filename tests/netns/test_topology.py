"""Smoke test of `sandbox up --netns`: hosts, partitions, SSH, the daemon, and a clean `down`."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.daemon_harness import wait_until
from tests.netns.harness import Nemesis, NetnsCluster, leftovers, sandbox_cli

pytestmark = pytest.mark.integration

MASTER = "broker-a:0"
SLAVE = "broker-a:1"


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_the_observer_sees_the_cluster_on_both_nameservers(
    netns_cluster_module: NetnsCluster,
) -> None:
    c = netns_cluster_module
    master, slave = c.addr(MASTER), c.addr(SLAVE)
    assert master == f"{c.address('server3')}:10911"
    assert slave == f"{c.address('server4')}:10911"
    assert c.nameservers == (f"{c.address('server1')}:9876", f"{c.address('server2')}:9876")
    tables = c.registrations()
    assert tables == {ns: {"broker-a": {0: master, 1: slave}} for ns in c.nameservers}
    # Every JVM runs in its own host's namespace.
    for key, host in ((MASTER, "server3"), (SLAVE, "server4"), ("0", "server1"), ("1", "server2")):
        assert c.host_of(key) == host
        pid = c.sandbox.pid(c._key(key))
        identify = subprocess.run(["ip", "netns", "identify", str(pid)], capture_output=True,
                                  text=True, check=True)  # fmt: skip
        assert identify.stdout.strip() == c.net.host(host).netns


def test_a_partition_blocks_and_heal_restores(netns_cluster_module: NetnsCluster) -> None:
    c = netns_cluster_module
    master = c.addr(MASTER)
    assert c.ping("watchdog", master) == 0
    c.partition(["watchdog"], ["server3"])
    try:
        assert c.ping("watchdog", master) == 1
        assert c.ping("vantage", master) == 0
        assert c.ping("watchdog", c.addr(SLAVE)) == 0
        assert c.masters() == {master}  # the observer is never partitioned
        assert c.ping("server3", f"{c.address('watchdog')}:22") == 1  # both ways
    finally:
        c.heal()
    assert c.ping("watchdog", master) == 0

    # One way: server3 hears nothing from vantage, so no TCP connection completes.
    c.cut("vantage", "server3")
    try:
        assert c.ping("vantage", master) == 1
        assert c.ping("watchdog", master) == 0
    finally:
        c.heal()

    c.isolate("server4")
    try:
        assert c.ping("vantage", c.addr(SLAVE)) == 1
        assert c.ping("server4", c.addr(MASTER)) == 1
        assert c.ping("observer", c.addr(SLAVE)) == 0  # still reachable from the root namespace
    finally:
        c.heal()
    assert c.ping("vantage", c.addr(SLAVE)) == 0


def test_ssh_from_the_watchdog_host_runs_sandbox_commands(
    netns_cluster_module: NetnsCluster,
) -> None:
    c = netns_cluster_module
    done = c.ssh("watchdog", "server3", "ip -o -4 addr show eth0")
    assert done.returncode == 0, done.stderr
    assert c.address("server3") in done.stdout
    status = c.ssh("watchdog", "server3",
                   f"{sys.executable} -m watchdog sandbox status --dir {c.dir}")  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert "broker-a:0" in status.stdout and "alive" in status.stdout


def test_the_daemon_runs_in_its_namespace(netns_cluster_module: NetnsCluster) -> None:
    c = netns_cluster_module
    metrics = f"http://{c.address('watchdog')}:9108/metrics"

    def scraped() -> str | None:
        try:
            with urllib.request.urlopen(metrics, timeout=2) as reply:
                text: str = reply.read().decode()
                return text if "rmq" in text else None
        except OSError:
            return None

    with c.running_daemon(top_level="dry_run = true") as daemon:
        wait_until(scraped, 60, f"the daemon's metrics on {metrics}")
        assert daemon.proc.poll() is None, daemon.tail()
        identify = subprocess.run(["ip", "netns", "identify", str(daemon.pid)],
                                  capture_output=True, text=True, check=True)  # fmt: skip
        assert identify.stdout.strip() == c.net.host("watchdog").netns


def test_the_nemesis_schedule_is_fixed_by_its_seed(netns_cluster_module: NetnsCluster) -> None:
    one = Nemesis.schedule(7, 120, (2.0, 6.0), ("partition", "cut", "kill"))
    assert one == Nemesis.schedule(7, 120, (2.0, 6.0), ("partition", "cut", "kill"))
    assert one != Nemesis.schedule(8, 120, (2.0, 6.0), ("partition", "cut", "kill"))
    # A short network-only run on the shared cluster; it heals itself afterwards.
    nemesis = Nemesis(netns_cluster_module, 4, seed=7, gap=(0.5, 1.0),
                      faults=("partition", "cut", "isolate", "heal"))  # fmt: skip
    actions = nemesis.run()
    assert actions[0].kind == "seed" and actions[-1].kind == "recover"
    assert not netns_cluster_module.net.blocked
    assert netns_cluster_module.ping("watchdog", netns_cluster_module.addr(MASTER)) == 0


def test_down_leaves_nothing_behind(netns_cluster_module: NetnsCluster) -> None:
    """Last in this module: `sandbox down` on the shared cluster."""
    c = netns_cluster_module
    pids = [p for group in c.net.pids().values() for p in group]
    assert pids
    began = time.monotonic()
    done = sandbox_cli("down", "--dir", str(c.dir), "--timeout", "10", timeout_seconds=120)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - began < 60
    assert leftovers(c.net.prefix) == []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert c.net.prefix not in netns.stdout
    links = subprocess.run(["ip", "link"], capture_output=True, text=True, check=True)
    assert c.net.prefix not in links.stdout
    still = [p for p in pids if _running(p)]
    assert still == []
    assert all(r.state == "stopped" for r in c.sandbox.status())
