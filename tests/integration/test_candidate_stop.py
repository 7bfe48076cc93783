"""[failover] candidate_stop = "kill" on a real RocketMQ 4.9.7 sandbox: the candidate slave is
killed (SIGKILL, no graceful shutdown) before its restart as master, its next boot recovers the
store as after a crash, and the promoted broker serves every message acknowledged before the
master died. One sandbox, one failover.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon_harness import (
    Topology,
    append_config,
    masters_everywhere,
    pull_all,
    running_daemon,
    runtime_info,
    send_keyed,
    wait_until,
)

pytestmark = pytest.mark.integration

A0, A1 = "broker-a:0", "broker-a:1"
FAILOVER_SECONDS = 150


def test_a_killed_candidate_is_promoted_with_every_acked_message(
    fresh_sandbox: Any, tmp_path: Path
) -> None:
    box = fresh_sandbox()
    top = Topology.of(box)
    append_config(top.config, '[failover]\ncandidate_stop = "kill"\ncanary_timeout = "30s"')
    states = top.state_dir
    topic = "CandidateKillTopic"
    sent = send_keyed(top.namesrv, topic, "acked", 200)
    assert sent["failed"] == 0, sent

    def caught_up() -> bool:
        s, m = runtime_info(top.addrs[A1]), runtime_info(top.addrs[A0])
        return bool(s and m and s["commitLogMaxOffset"] == m["commitLogMaxOffset"])

    wait_until(caught_up, 30, "the slave catching up")
    slave_log = Path(next(b["log"] for b in box.info()["brokers"] if b["broker_id"] == 1))
    log_before = slave_log.stat().st_size

    with running_daemon(top.config, tmp_path / "daemon.log") as daemon:
        daemon.wait_for(
            lambda e: e.get("state") == "HEALTHY" and "cycle" in e, 60, "a HEALTHY cycle"
        )
        box.kill(A0, "KILL")
        killed_at = time.time()
        failover = states.wait_finished(FAILOVER_SECONDS)
        assert states.outcome(failover) == "succeeded", states.journal(failover)[-3:]

    plan = states.plan(failover)
    assert plan["new_master_key"] == A1
    [stop] = [s for s in plan["steps"] if s["kind"] == "stop" and s["broker_key"] == A1]
    assert stop["argv"][-2:] == ["--signal", "KILL"] and "kill" in stop["argv"], stop
    assert "candidate_stop = kill" in stop["purpose"]
    index = plan["steps"].index(stop)
    [done] = [
        e
        for e in states.journal(failover)
        if e.get("event") == "step_done" and e.get("index") == index and e.get("phase") == "main"
    ]
    assert str(done["detail"]).startswith("killed; "), done
    promoted = states.step_event(failover, "wait_master")
    assert promoted is not None
    print(
        f"[candidate kill] kill -> promoted {promoted['at'] - killed_at:.1f} s; the candidate's "
        f"kill step took {float(done['duration_seconds']):.2f} s"
    )
    # The kill really skipped the graceful shutdown: the next boot found the abort file.
    boot = slave_log.read_bytes()[log_before:].decode(errors="replace")
    assert "last shutdown abnormally" in boot
    assert "last shutdown normally" not in boot

    assert masters_everywhere(top.nameservers, "broker-a") == {top.addrs[A1]}
    assert runtime_info(top.addrs[A1]) is not None
    keys = set(pull_all(top.namesrv, topic))
    missing = set(sent["acked"]) - keys
    assert not missing, sorted(missing)[:10]
