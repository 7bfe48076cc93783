"""Wrong ACL keys on stand-in brokers that check ACL like 4.9.7: the brokers are seen answering
(a refusal is an answer), never down; status and check say it once, with the broker's reason;
nothing is decided. The right keys: the snapshot is as without ACL, check asks for admin."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from watchdog.commands._check_acl import acl_findings
from watchdog.commands._findings import Finding
from watchdog.config import WatchdogConfig, parse_config
from watchdog.decide import NoAction, Policy, choose_candidate, decide
from watchdog.detect import DetectorState, detect
from watchdog.model import ClusterSnapshot, GroupState
from watchdog.observe import status_problems
from watchdog.probe import Prober, client_pool
from watchdog.remoting.standin import StandinServer

pytestmark = pytest.mark.timeout(60)

ADMIN_SECRET = "admin-Secret-4242"
CLIENT_SECRET = "client-Secret-1717"
ACCOUNTS = {"rmq-watchdog": (ADMIN_SECRET, True), "rmq-client": (CLIENT_SECRET, False)}


def _config(ns: str, brokers: dict[int, str], acl: dict[str, str] | None) -> WatchdogConfig:
    doc: dict[str, Any] = {
        "cluster_name": "test",
        "nameservers": [ns],
        "probe": {"interval": "1s", "timeout": "500ms", "connect_timeout": "300ms"},
        "detect": {"down_after": "2s", "quorum": 1},
        "brokers": [
            {
                "broker_name": "broker-a",
                "broker_id": broker_id,
                "addr": addr,
                "properties": "/p",
                "start": ["x"],
                "stop": ["y"],
            }
            for broker_id, addr in brokers.items()
        ],
    }
    if acl is not None:
        doc["acl"] = acl
    return parse_config(doc)


Cycles = tuple[list[ClusterSnapshot], WatchdogConfig, list[Finding]]


def _cycles(acl: dict[str, str] | None, cycles: int) -> Cycles:
    """`cycles` probe cycles of a master and a slave with ACL on, one (fake) second apart, and
    check's acl findings on the last one."""

    async def main() -> Cycles:
        server = StandinServer()
        ns = server.add_namesrv()
        master = server.add_broker("broker-a", 0, register_with=[ns])
        slave = server.add_broker("broker-a", 1, register_with=[ns])
        for broker in (master, slave):
            broker.acl_accounts = dict(ACCOUNTS)
        async with server:
            config = _config(ns.addr, {0: master.addr, 1: slave.addr}, acl)
            now = [1000.0]
            pool = client_pool(config)
            prober = Prober(config, pool, clock=lambda: now[0], wall_clock=lambda: now[0])
            snapshots = []
            try:
                for _ in range(cycles):
                    snapshots.append(await prober.snapshot())
                    now[0] += 1.0
            finally:
                await pool.close_all()
            return snapshots, config, await acl_findings(config, snapshots[-1])

    return asyncio.run(main())


def _judge(
    snapshots: list[ClusterSnapshot], config: WatchdogConfig
) -> list[tuple[GroupState, str]]:
    """Each cycle's state and sentence, every decision checked to be no action."""
    state = DetectorState.initial()
    states = []
    for snapshot in snapshots:
        state, verdict = detect(state, snapshot, config.detect, config.probe)
        states.append((verdict.groups[0].state, verdict.groups[0].reason))
        decisions = decide(
            snapshot, verdict, config.brokers, Policy.from_config(config), snapshot.wall_time
        )
        assert all(isinstance(d, NoAction) for d in decisions), decisions
    return states


WRONG = {"access_key": "rmq-watchdog", "secret_key": "not-the-secret-key"}
RIGHT = {"access_key": "rmq-watchdog", "secret_key": ADMIN_SECRET}


@pytest.mark.parametrize(
    ("acl", "reason"),
    [
        (WRONG, "Check signature failed for accessKey=rmq-watchdog"),
        (
            {"access_key": "nobody-here", "secret_key": ADMIN_SECRET},
            "No acl config for nobody-here",
        ),
        (None, "No accessKey is configured"),
    ],
    ids=["wrong-secret", "unknown-key", "no-acl-table"],
)
def test_refused_keys_are_one_problem_and_never_a_master_down(
    acl: dict[str, str] | None, reason: str
) -> None:
    snapshots, config, findings = _cycles(acl, 5)  # 5 s: well past down_after, quorum 1
    for b in snapshots[-1].brokers:
        assert b.is_up and b.acl_refusal == reason and b.role is None, b
        assert b.error is not None and reason in b.error
    judged = _judge(snapshots, config)
    assert {s for s, _ in judged} == {GroupState.DEGRADED}
    assert judged[-1][1] == (
        f"master broker-a@{snapshots[-1].brokers[0].addr} healthy, but the ACL of broker-a:0, "
        f"broker-a:1 refuses the watchdog's credentials ({reason}): roles and offsets unknown, "
        "no slave can be promoted"
    )
    problems = status_problems(snapshots[-1])
    assert problems == [
        f"the brokers refuse the watchdog's ACL credentials: {reason} (broker-a:0, broker-a:1); "
        "their roles and offsets are unknown and no failover can run: fix [acl] "
        "(`rmq-watchdog check` says how)"
    ]
    assert len(findings) == 1
    finding = findings[0]
    assert (finding.severity, finding.id, finding.blocks_failover) == ("error", "acl.refused", True)
    assert reason in finding.message and "broker-a:0@" in finding.message
    for text in (finding.message, finding.fix, *problems):
        assert "not-the-secret-key" not in text and ADMIN_SECRET not in text
    assert finding.fix


def test_the_right_keys_see_roles_and_offsets_and_check_finds_admin() -> None:
    snapshots, config, findings = _cycles(RIGHT, 2)
    snapshot = snapshots[-1]
    assert [(b.role, b.acl_refusal) for b in snapshot.brokers] == [
        ("ASYNC_MASTER", None),
        ("SLAVE", None),
    ]
    assert status_problems(snapshot) == []
    assert {s for s, _ in _judge(snapshots, config)} == {GroupState.HEALTHY}
    assert [(f.severity, f.id) for f in findings] == [("ok", "acl.accepted")]
    assert findings[0].message == (
        "the brokers accept access key rmq-watchdog with the admin right the canary needs (2 asked)"
    )


def test_an_account_without_admin_is_one_error_before_any_failover() -> None:
    snapshots, _, findings = _cycles({"access_key": "rmq-client", "secret_key": CLIENT_SECRET}, 1)
    assert all(b.role is not None for b in snapshots[0].brokers)  # reads are allowed
    assert [(f.severity, f.id, f.blocks_failover) for f in findings] == [
        ("error", "acl.not-admin", True)
    ]
    assert "Need admin permission for request code=17" in findings[0].message
    assert "admin: true" in findings[0].fix


def test_without_acl_on_a_cluster_without_acl_check_says_nothing() -> None:
    async def main() -> list[Any]:
        server = StandinServer()
        ns = server.add_namesrv()
        master = server.add_broker("broker-a", 0, register_with=[ns])
        async with server:
            config = _config(ns.addr, {0: master.addr}, None)
            pool = client_pool(config)
            try:
                snapshot = await Prober(config, pool).snapshot()
            finally:
                await pool.close_all()
            return await acl_findings(config, snapshot)

    assert asyncio.run(main()) == []


def test_a_slave_whose_acl_refuses_is_no_candidate_and_the_reason_says_so() -> None:
    snapshots, config, _ = _cycles(WRONG, 1)
    _, verdict = detect(DetectorState.initial(), snapshots[0], config.detect, config.probe)
    chosen, rejected = choose_candidate(
        snapshots[0],
        verdict.groups[0],
        config.brokers,
        Policy.from_config(config).for_group("broker-a"),
    )
    assert chosen is None
    assert rejected == [
        "broker-a:1 refuses the watchdog's ACL credentials "
        "(Check signature failed for accessKey=rmq-watchdog)"
    ]
