"""The role restore (decide/_restore.py): value tables from two cycles' snapshots, the policy and
the master's plug-in answer to a RestoreRole or nothing; its plan, its journal form and its
dry-run rendering."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.unit._worlds import PROBE, settings
from watchdog.config import WatchdogConfig, parse_config
from watchdog.decide import (
    RESTORE_MAX_LAG_BYTES,
    GroupFailoverPolicy,
    Plan,
    PluginAnswer,
    Policy,
    Refusal,
    RestoreRole,
    StepKind,
    decide_role_restores,
    plan_role_restore,
    properties_diffs,
    restore_asks,
    restore_log_fields,
)
from watchdog.detect import ClusterVerdict, DetectorState, detect
from watchdog.model import (
    BrokerObservation,
    ClusterSnapshot,
    GroupState,
    NamesrvObservation,
    Registration,
)
from watchdog.remoting import PluginInfo

# After the failover that lowered it: broker-a:1 (configured id 1) is the master, promoted in
# place as ASYNC_MASTER; broker-a:0, the old master, rejoined as its slave with the freed id 1.
A0, A1 = "broker-a:0", "broker-a:1"
ADDR0, ADDR1 = "127.0.0.1:10911", "127.0.0.1:10921"
NS1, NS2 = "127.0.0.1:9876", "127.0.0.1:9877"
END = 10_000_000
LOWERED = ("SYNC_MASTER", "F1")
NOW = 1_700_000_000.0


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("secret") / "plugin.secret"
    path.write_text("0123456789abcdef0123456789abcdef\n")
    os.chmod(path, 0o600)
    return str(path)


def config(secret_file: str | None, **failover: Any) -> WatchdogConfig:
    if secret_file is not None:
        failover = {"promotion": "inplace", "plugin_secret_file": secret_file, **failover}
    return parse_config(
        {
            "cluster_name": "c",
            "nameservers": [NS1, NS2],
            "hosts": {"h0": {"kind": "local"}, "h1": {"kind": "local"}},
            "brokers": [
                {
                    "broker_name": "broker-a",
                    "broker_id": i,
                    "addr": addr,
                    "properties": f"/etc/rmq/a{i}.properties",
                    "host": f"h{i}",
                    "start": ["start-broker", str(i)],
                    "stop": ["stop-broker", str(i)],
                }
                for i, addr in enumerate((ADDR0, ADDR1))
            ],
            "failover": failover,
        }
    )


def snapshot(
    at: float,
    *,
    lag: int = 0,
    master_role: str = "ASYNC_MASTER",
    master_up: bool = True,
    slave_up: bool = True,
    slave_role: str = "SLAVE",
    slave_registered: bool = True,
) -> ClusterSnapshot:
    """One cycle: the master's log at END + 100 * at, the slave `lag` bytes behind it."""
    end = END + int(100 * at)
    registrations = [Registration("broker-a", 0, ADDR1)]
    if slave_registered:
        registrations.append(Registration("broker-a", 1, ADDR0))
    namesrvs = tuple(
        NamesrvObservation(addr, True, 0.001, registrations=tuple(registrations))
        for addr in (NS1, NS2)
    )
    master = BrokerObservation(
        "broker-a", 1, ADDR1, master_up, 0.001, None if master_up else "TimeoutError",
        master_role if master_up else None, 0 if master_up else None,
        end if master_up else None,
        failure=None if master_up else "timeout",
    )  # fmt: skip
    slave = BrokerObservation(
        "broker-a", 0, ADDR0, slave_up, 0.001, None if slave_up else "refused",
        slave_role if slave_up else None, 1 if slave_up else None,
        end - lag if slave_up else None,
        failure=None if slave_up else "refused",
    )  # fmt: skip
    return ClusterSnapshot("c", at, NOW + at, namesrvs, (slave, master))


def cycles(
    now: ClusterSnapshot, before: ClusterSnapshot | None
) -> tuple[ClusterSnapshot, ClusterSnapshot | None, ClusterVerdict]:
    """The verdict on `now` of a detector that saw `before` (and a healthy cycle before it)."""
    state = DetectorState.initial().with_master("broker-a", ADDR1, "ASYNC_MASTER")
    for s in (snapshot(now.taken_at - 2), before):
        if s is not None:
            state, _ = detect(state, s, settings(), PROBE)
    _, verdict = detect(state, now, settings(), PROBE)
    return now, before, verdict


def info(**changes: Any) -> PluginInfo:
    values: dict[str, Any] = {
        "plugin_version": "0.1.0",
        "rocketmq_version": "4.9.7",
        "broker_role": "ASYNC_MASTER",
        "broker_id": 0,
        "last_epoch": 1,
        "max_phy_offset": END,
        "dispatch_behind_bytes": 0,
        "ha_master_address": "",
        "has_secret": True,
    }
    values.update(changes)
    return PluginInfo(**values)


def policy(**changes: Any) -> Policy:
    values: dict[str, Any] = {"lowered": LOWERED}
    values.update(changes)
    return Policy(groups={"broker-a": GroupFailoverPolicy(**values)})


def restores(
    cfg: WatchdogConfig,
    *,
    now: ClusterSnapshot | None = None,
    before: ClusterSnapshot | None | str = "default",
    gp: Policy | None = None,
    answer: PluginAnswer | None = None,
    epoch: int = 1,
    retry_at: dict[str, float] | None = None,
) -> tuple[tuple[RestoreRole, ...], dict[str, str]]:
    """The decision and the plug-in asks for one cycle; the plug-in answers `answer`."""
    current = now or snapshot(10.0)
    previous = snapshot(9.0) if before == "default" else before
    assert not isinstance(previous, str)
    s, p, verdict = cycles(current, previous)
    pol = gp or policy()
    at = NOW + 10
    asks = restore_asks(s, p, verdict, cfg, pol, now=at, retry_at=retry_at)
    plugins = {A1: answer if answer is not None else PluginAnswer(info())}
    decided = decide_role_restores(
        s, p, verdict, cfg, pol, plugins=plugins, epochs={"broker-a": epoch}, now=at,
        retry_at=retry_at,
    )  # fmt: skip
    return decided, asks


# --------------------------------------------------------------------------- decide


def test_a_lowered_group_with_a_slave_in_sync_on_two_cycles_is_restored(secret_file: str) -> None:
    (restore,), asks = restores(config(secret_file), now=snapshot(10.0, lag=300))
    assert asks == {A1: ADDR1}
    assert (restore.master_key, restore.master_addr, restore.role, restore.current_role) == (
        A1, ADDR1, "SYNC_MASTER", "ASYNC_MASTER",
    )  # fmt: skip
    assert (restore.slave_key, restore.slave_lag_bytes, restore.lowered_by) == (A0, 300, "F1")
    assert restore.state is GroupState.DEGRADED and restore.kind == "restore_role"
    assert restore.reason == (
        f"restoring broker-a's master {A1}@{ADDR1} from ASYNC_MASTER to SYNC_MASTER (lowered by "
        f"failover F1): slave {A0} in sync (300 bytes behind) on two consecutive cycles; its "
        "plug-in 0.1.0 switches it without a restart"
    )
    fields = restore_log_fields(restore)
    assert fields["decision"] == "restore_role" and fields["event"] == restore.reason


BIG = RESTORE_MAX_LAG_BYTES + 1
# (case, now, before, policy changes): no restore, and nothing asked of the plug-in.
NOT_READY: list[tuple[str, ClusterSnapshot, ClusterSnapshot | None, dict[str, Any]]] = [
    ("the role was not lowered", snapshot(10), snapshot(9), {"lowered": None}),
    ("the master has its role again", snapshot(10, master_role="SYNC_MASTER"), snapshot(9), {}),
    ("no cycle before this one", snapshot(10), None, {}),
    ("the slave is too far behind now", snapshot(10, lag=BIG), snapshot(9), {}),
    ("the slave was too far behind a cycle ago", snapshot(10), snapshot(9, lag=BIG), {}),
    ("the slave is far ahead of the master", snapshot(10, lag=-BIG), snapshot(9), {}),
    ("the slave does not answer", snapshot(10, slave_up=False), snapshot(9), {}),
    ("the slave answered a cycle ago only", snapshot(10), snapshot(9, slave_up=False), {}),
    ("no nameserver lists the slave", snapshot(10, slave_registered=False), snapshot(9), {}),
    ("the other broker is no slave", snapshot(10, slave_role="ASYNC_MASTER"), snapshot(9), {}),
    ("the master does not answer", snapshot(10, master_up=False), snapshot(9), {}),
    ("the master did not answer a cycle ago", snapshot(10), snapshot(9, master_up=False), {}),
    ("the slave is a deposed master still to check", snapshot(10), snapshot(9),
     {"rejoin_check": (A0, END)}),
    ("a failover of the group is running", snapshot(10), snapshot(9),
     {"is_failover_running": True}),
    ("automatic failover is off for the group", snapshot(10), snapshot(9),
     {"is_auto_failover": False}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("now", "before", "changes"), [c[1:] for c in NOT_READY], ids=[c[0] for c in NOT_READY]
)
def test_no_restore_and_no_plug_in_asked_unless_the_snapshots_allow_it(
    secret_file: str, now: ClusterSnapshot, before: ClusterSnapshot | None, changes: dict[str, Any]
) -> None:
    decided, asks = restores(config(secret_file), now=now, before=before, gp=policy(**changes))
    assert (decided, asks) == ((), {})


def test_a_slave_a_little_ahead_of_its_master_read_counts_as_in_sync(secret_file: str) -> None:
    # Read side by side, a slave read a moment after its master can show newer bytes.
    (restore,), _ = restores(config(secret_file), now=snapshot(10.0, lag=-500))
    assert restore.slave_lag_bytes == -500


def test_without_a_plug_in_secret_configured_nothing_is_automatic() -> None:
    decided, asks = restores(config(None))
    assert (decided, asks) == ((), {})


def test_a_group_tried_recently_waits_for_its_retry_time(secret_file: str) -> None:
    cfg = config(secret_file)
    assert restores(cfg, retry_at={"broker-a": NOW + 11}) == ((), {})
    decided, asks = restores(cfg, retry_at={"broker-a": NOW + 10})
    assert len(decided) == 1 and asks == {A1: ADDR1}


# (case, the master's PLUGIN_INFO answer, the group's epoch): asked, but no restore.
REFUSED_PLUGINS: list[tuple[str, PluginAnswer, int]] = [
    ("no plug-in", PluginAnswer(None), 1),
    ("PLUGIN_INFO failed", PluginAnswer(None, "TimeoutError: no reply"), 1),
    ("no secret loaded", PluginAnswer(info(has_secret=False)), 1),
    ("it says it runs as a slave", PluginAnswer(info(broker_role="SLAVE", broker_id=1)), 1),
    ("it says it runs as SYNC_MASTER already", PluginAnswer(info(broker_role="SYNC_MASTER")), 1),
    ("it says it is not id 0", PluginAnswer(info(broker_id=1)), 1),
    ("it served a newer epoch than the group's", PluginAnswer(info(last_epoch=2)), 1),
]


@pytest.mark.parametrize(
    ("answer", "epoch"), [c[1:] for c in REFUSED_PLUGINS], ids=[c[0] for c in REFUSED_PLUGINS]
)
def test_no_restore_unless_the_master_s_plug_in_can_take_it(
    secret_file: str, answer: PluginAnswer, epoch: int
) -> None:
    decided, asks = restores(config(secret_file), answer=answer, epoch=epoch)
    assert decided == () and asks == {A1: ADDR1}


def test_a_plug_in_that_served_an_older_epoch_takes_the_group_s(secret_file: str) -> None:
    # Promoted by the restart path's fallback, its plug-in never served the group's epoch.
    decided, _ = restores(config(secret_file), answer=PluginAnswer(info(last_epoch=0)), epoch=3)
    assert len(decided) == 1


# --------------------------------------------------------------------------- plan

FILES: dict[str, str | None] = {
    A0: "brokerName=broker-a\nbrokerId=1\nbrokerRole=SLAVE\n",
    A1: "brokerName=broker-a\nbrokerId=0\nbrokerRole=ASYNC_MASTER\n",
}


def restore_role(**changes: Any) -> RestoreRole:
    values: dict[str, Any] = {
        "broker_name": "broker-a",
        "master_key": A1,
        "master_addr": ADDR1,
        "role": "SYNC_MASTER",
        "current_role": "ASYNC_MASTER",
        "lowered_by": "F1",
        "slave_key": A0,
        "slave_lag_bytes": 0,
        "plugin_version": "0.1.0",
        "reason": "restoring",
    }
    values.update(changes)
    return RestoreRole(**values)


def test_the_plan_rewrites_the_file_then_switches_the_jvm_then_records(secret_file: str) -> None:
    cfg = config(secret_file)
    plan = plan_role_restore(restore_role(), cfg, FILES, 1)
    assert isinstance(plan, Plan), plan
    assert (plan.kind, plan.epoch, plan.new_master_key, plan.new_role) == (
        "restore_role", 1, A1, "SYNC_MASTER",
    )  # fmt: skip
    assert [(s.kind, s.broker_key, s.host) for s in plan.steps] == [
        (StepKind.REWRITE, A1, "h1"),
        (StepKind.SET_MASTER_ROLE, A1, "h1"),
        (StepKind.RECORD_ROLE, A1, "h1"),
    ]
    rewrite = plan.steps[0]
    assert (rewrite.path, rewrite.edits) == (
        "/etc/rmq/a1.properties",
        (("brokerRole", "SYNC_MASTER"),),
    )
    assert not any(s.is_best_effort or s.lane or s.argv for s in plan.steps)
    assert (plan.fallback, plan.rollback, plan.in_place_index) == ((), (), None)
    assert not plan.requires_master_down
    assert Plan.from_json(plan.to_json()) == plan
    [diff] = properties_diffs(plan, FILES, cfg)
    assert "-brokerRole=ASYNC_MASTER" in diff and "+brokerRole=SYNC_MASTER" in diff


@pytest.mark.parametrize(
    ("decision", "files", "why"),
    [
        (restore_role(), {**FILES, A1: None}, f"cannot read {A1}'s properties"),
        (restore_role(master_addr="127.0.0.1:1"), FILES, f"master {A1} is not in the config"),
        (restore_role(master_key="broker-a:7"), FILES, "master broker-a:7 is not in the config"),
        (restore_role(role="SLAVE"), FILES, "role 'SLAVE' is not a master role"),
    ],
    ids=["unreadable properties", "moved master", "unknown master", "not a master role"],
)
def test_a_plan_that_cannot_be_made_is_refused(
    secret_file: str, decision: RestoreRole, files: dict[str, str | None], why: str
) -> None:
    refused = plan_role_restore(decision, config(secret_file), files, 1)
    assert isinstance(refused, Refusal) and refused.reason.startswith(why), refused


def test_the_dry_run_renders_a_restore(secret_file: str) -> None:
    from watchdog.commands import render_plan

    cfg = config(secret_file)
    (decision,), _ = restores(cfg)
    plan = plan_role_restore(decision, cfg, FILES, 1)
    assert isinstance(plan, Plan)
    _, _, verdict = cycles(snapshot(10.0), snapshot(9.0))
    group = verdict.groups[0]
    lines = render_plan(plan, group, FILES, cfg).splitlines()
    assert lines[1] == f"decision: {decision.reason}"
    assert lines[2:6] == [
        f"master: {A1}@{ADDR1}, role ASYNC_MASTER -> SYNC_MASTER (lowered by failover F1)",
        f"slave in sync: {A0}, 0 bytes behind",
        "through: its plug-in 0.1.0 (SET_MASTER_ROLE); no restart",
        "epoch: 1 (unchanged: the master stays)",
    ]
    steps = [line for line in lines if line[:5].strip().rstrip(".").isdigit()]
    assert [s.split("]")[0].split("[")[1] for s in steps] == [
        "rewrite", "set_master_role", "record_role",
    ]  # fmt: skip
    assert "+brokerRole=SYNC_MASTER" in lines
    assert "candidate" not in "\n".join(lines) and "fence" not in "\n".join(lines)
