"""A deposed master is judged by the log end it came back with, not by what it replicated from
the new master since (it may come back while the failover still runs, and replicate the
canary's messages before the failover ends)."""

from __future__ import annotations

import pytest

from tests.unit._worlds import BROKERS
from watchdog.config import DetectSettings, ProbeSettings
from watchdog.decide import Fence, GroupFailoverPolicy, Policy, decide
from watchdog.detect import DetectorState, detect
from watchdog.model import BrokerObservation, ClusterSnapshot, NamesrvObservation, Registration

OLD, NEW = "127.0.0.1:10911", "127.0.0.1:10921"
POINT = 1200  # the new master's log end when it was promoted


def snapshot(t: float, old_offset: int | None) -> ClusterSnapshot:
    new = BrokerObservation(
        "broker-a", 1, NEW, True, latency_seconds=0.001, role="ASYNC_MASTER",
        reported_broker_id=0, commitlog_max_offset=5000,
    )  # fmt: skip
    old = BrokerObservation(
        "broker-a", 0, OLD, old_offset is not None, latency_seconds=0.001,
        role="SLAVE" if old_offset is not None else None, reported_broker_id=1,
        commitlog_max_offset=old_offset,
    )  # fmt: skip
    registrations = (Registration("broker-a", 0, NEW),) + (
        (Registration("broker-a", 1, OLD),) if old_offset is not None else ()
    )
    ns = NamesrvObservation("127.0.0.1:9876", True, 0.001, registrations=registrations)
    return ClusterSnapshot("C", t, 1.7e9 + t, (ns,), (new, old))


@pytest.mark.parametrize(
    ("came_back_at", "is_fenced"),
    [(1000, False), (1200, False), (1500, True)],
    ids=["behind the point", "at the point", "past the point"],
)
def test_judged_by_the_log_end_it_came_back_with(came_back_at: int, is_fenced: bool) -> None:
    state = DetectorState.initial().with_master("broker-a", NEW, "ASYNC_MASTER")
    policy = Policy(default=GroupFailoverPolicy(rejoin_check=("broker-a:0", POINT)))
    # down, back (with its own log end), then caught up with the new master's log (5000)
    for t, offset in ((100.0, None), (101.0, None), (102.0, came_back_at), (103.0, 5000)):
        snap = snapshot(t, offset)
        state, verdict = detect(state, snap, DetectSettings(), ProbeSettings())
    assert dict(verdict.groups[0].returned_offsets) == {"broker-a:0": came_back_at}
    (decision,) = decide(snap, verdict, BROKERS, policy, now=1.7e9 + 103)
    assert isinstance(decision, Fence) is is_fenced, decision
    if is_fenced:
        assert f"rejoined with its log at {came_back_at}" in decision.reason
