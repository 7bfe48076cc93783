"""The daemon in the watchdog host fails broker-a over through SSH to server3 and server4."""

from __future__ import annotations

import pytest

from tests.integration.daemon_harness import wait_until

from .harness import NetnsCluster

pytestmark = pytest.mark.integration


def test_kill_9_of_the_master_fails_over_across_hosts(netns_cluster: NetnsCluster) -> None:
    c = netns_cluster
    slave = c.addr("broker-a:1")
    with c.running_daemon('[detect]\ndown_after = "3s"') as daemon:
        daemon.wait_event(lambda e: "healthy" in str(e.get("event")), 60, "a healthy cycle")
        c.kill("broker-a:0")
        failover_id = c.topology.state_dir.wait_finished(120)
        assert c.topology.state_dir.outcome(failover_id) == "succeeded", daemon.tail()
    assert wait_until(lambda: c.masters() == {slave}, 60, "the slave listed as master")
    # The old master was fenced (stopped through SSH on server3), the new one runs on server4.
    assert c.state("broker-a:0") == "stopped"
    assert c.state("broker-a:1") == "alive"
    assert c.sandbox.host_of("broker-a:1") == "server4"
