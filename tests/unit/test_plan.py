"""The pure failover planner: steps, edits, rollback, refusals and diffs for given files."""

from __future__ import annotations

from typing import Any

import pytest

from watchdog.config import WatchdogConfig, parse_config
from watchdog.decide import (
    Fence,
    Plan,
    Promote,
    Refusal,
    StepKind,
    canary_topic,
    plan_fence,
    plan_promotion,
    properties_diffs,
)

A0, A1, A2 = "127.0.0.1:10911", "127.0.0.1:10921", "127.0.0.1:10931"


def config(*, slaves: int = 1, kill: bool = False, **failover: Any) -> WatchdogConfig:
    addrs = [A0, A1, A2][: slaves + 1]
    return parse_config(
        {
            "cluster_name": "c",
            "nameservers": ["127.0.0.1:9876", "127.0.0.1:9877"],
            "hosts": {"h0": {"kind": "local"}, "h1": {"kind": "local"}, "h2": {"kind": "local"}},
            "brokers": [
                {
                    "broker_name": "broker-a",
                    "broker_id": i,
                    "addr": addr,
                    "properties": f"/etc/rmq/a{i}.properties",
                    "host": f"h{i}",
                    "start": ["start-broker", str(i)],
                    "stop": ["stop-broker", str(i)],
                    **({"kill": ["kill-broker", str(i)]} if kill else {}),
                }
                for i, addr in enumerate(addrs)
            ],
            "failover": failover,
        }
    )


def props(broker_id: int, role: str, *, extra: str = "") -> str:
    return (
        "# broker-a, edited by hand\r\n"
        "brokerClusterName = DefaultCluster\r\n"
        "brokerName=broker-a\r\n"
        f"brokerId={broker_id}\r\n"
        f"brokerRole : {role}\r\n"
        f"{extra}"
        "flushDiskType=ASYNC_FLUSH\r\n"
    )


FILES: dict[str, str | None] = {
    "broker-a:0": props(0, "ASYNC_MASTER"),
    "broker-a:1": props(1, "SLAVE"),
}


def promote(role: str = "ASYNC_MASTER", **kw: Any) -> Promote:
    values: dict[str, Any] = {
        "broker_name": "broker-a",
        "old_master_key": "broker-a:0",
        "old_master_addr": A0,
        "candidate_key": "broker-a:1",
        "candidate_addr": A1,
        "candidate_offset": 900,
        "expected_loss_bytes": 100,
        "new_role": role,
        "reason": "promoting broker-a id=1 because master unreachable",
    }
    values.update(kw)
    return Promote(**values)


def plan_of(result: Plan | Refusal) -> Plan:
    assert isinstance(result, Plan), result
    return result


def test_promotion_steps_in_order_with_hosts_argv_and_edits() -> None:
    plan = plan_of(plan_promotion(promote(), config(), FILES, current_epoch=4))
    kinds = [(s.kind, s.broker_key) for s in plan.steps]
    assert kinds == [
        (StepKind.REWRITE, "broker-a:0"),
        (StepKind.STOP, "broker-a:0"),
        (StepKind.CONFIRM_FENCED, "broker-a:0"),
        (StepKind.STOP, "broker-a:1"),
        (StepKind.REWRITE, "broker-a:1"),
        (StepKind.START, "broker-a:1"),
        (StepKind.WAIT_MASTER, "broker-a:1"),
        (StepKind.CANARY, "broker-a:1"),
        (StepKind.RECORD_EPOCH, "broker-a:1"),
    ]
    fence_rewrite, fence_stop, confirm, stop, rewrite, start = plan.steps[:6]
    # The fence steps may fail (host down, partition); the confirm_fenced gate may not: no
    # fence, no promotion. The rewrite comes first, so a supervisor restart finds a slave's file.
    assert fence_stop.is_best_effort and fence_rewrite.is_best_effort
    assert not any(s.is_best_effort for s in plan.steps[2:])
    assert fence_stop.argv == ("stop-broker", "0") and fence_stop.host == "h0"
    assert fence_rewrite.edits == (("brokerId", "1"), ("brokerRole", "SLAVE"))
    assert fence_rewrite.path == "/etc/rmq/a0.properties"
    assert "no fence, no promotion" in confirm.purpose
    assert stop.argv == ("stop-broker", "1") and stop.host == "h1"
    assert rewrite.edits == (("brokerId", "0"), ("brokerRole", "ASYNC_MASTER"))
    assert start.argv == ("start-broker", "1")
    assert plan.steps[7].path == canary_topic("RMQ_WATCHDOG_CANARY", "broker-a")
    assert plan.epoch == 5 and plan.kind == "promote"
    assert (plan.new_master_key, plan.new_master_addr) == ("broker-a:1", A1)
    assert (plan.old_master_key, plan.old_master_addr) == ("broker-a:0", A0)
    assert (plan.candidate_offset, plan.expected_loss_bytes) == (900, 100)
    assert "rewrite to SLAVE and stop on host h0" in dict(plan.details)["fence"]
    assert plan.new_role == "ASYNC_MASTER"


def test_the_old_master_gets_the_candidates_current_id_from_its_file() -> None:
    # Configured as id 1, but its file says 2 (an earlier failover): the freed id is 2.
    files = {**FILES, "broker-a:1": props(2, "SLAVE")}
    plan = plan_of(plan_promotion(promote(), config(), files, current_epoch=0))
    assert plan.steps[0].edits == (("brokerId", "2"), ("brokerRole", "SLAVE"))
    restore = plan.rollback[1]
    assert restore.edits == (("brokerId", "2"), ("brokerRole", "SLAVE"))


def test_rollback_restores_candidate_and_old_master() -> None:
    plan = plan_of(plan_promotion(promote(), config(), FILES, current_epoch=0))
    kinds = [(s.kind, s.broker_key, s.is_best_effort) for s in plan.rollback]
    assert kinds == [
        (StepKind.STOP, "broker-a:1", False),
        (StepKind.REWRITE, "broker-a:1", False),
        (StepKind.START, "broker-a:1", False),
        (StepKind.REWRITE, "broker-a:0", True),
    ]
    assert plan.rollback[1].edits == (("brokerId", "1"), ("brokerRole", "SLAVE"))
    assert plan.rollback[3].edits == (("brokerId", "0"), ("brokerRole", "ASYNC_MASTER"))


def test_an_unreadable_old_master_file_still_fences_but_is_not_restored() -> None:
    files = {**FILES, "broker-a:0": None}
    plan = plan_of(plan_promotion(promote(), config(), files, current_epoch=0))
    assert plan.steps[0].kind is StepKind.REWRITE and plan.steps[0].is_best_effort
    assert [s.broker_key for s in plan.rollback] == ["broker-a:1"] * 3


def test_no_canary_step_when_disabled() -> None:
    plan = plan_of(plan_promotion(promote(), config(canary=False), FILES, current_epoch=0))
    assert StepKind.CANARY not in [s.kind for s in plan.steps]
    assert len(plan.steps) == 8


def test_sync_master_alone_is_promoted_async_and_says_why() -> None:
    plan = plan_of(plan_promotion(promote("SYNC_MASTER"), config(), FILES, current_epoch=0))
    assert plan.new_role == "ASYNC_MASTER"
    assert plan.steps[4].edits == (("brokerId", "0"), ("brokerRole", "ASYNC_MASTER"))
    assert "ASYNC_MASTER" in plan.steps[5].purpose
    why = dict(plan.details)["role"]
    assert "SYNC_MASTER -> ASYNC_MASTER" in why
    assert plan.lowered_from == "SYNC_MASTER"
    assert Plan.from_json(plan.to_json()).lowered_from == "SYNC_MASTER"


def test_sync_master_alone_keeps_its_role_when_configured_to() -> None:
    cfg = config(sync_master_without_slave="keep")
    plan = plan_of(plan_promotion(promote("SYNC_MASTER"), cfg, FILES, current_epoch=0))
    assert plan.new_role == "SYNC_MASTER" and plan.lowered_from is None
    assert plan.steps[4].edits == (("brokerId", "0"), ("brokerRole", "SYNC_MASTER"))


def test_sync_master_with_another_slave_stays_sync() -> None:
    files = {**FILES, "broker-a:2": props(2, "SLAVE")}
    plan = plan_of(plan_promotion(promote("SYNC_MASTER"), config(slaves=2), files, current_epoch=0))
    assert plan.new_role == "SYNC_MASTER"
    assert plan.steps[4].edits == (("brokerId", "0"), ("brokerRole", "SYNC_MASTER"))
    assert "role" not in dict(plan.details)
    # No pinned haMasterAddress: the other slave follows the nameservers, nothing to re-point.
    assert [s.broker_key for s in plan.steps].count("broker-a:2") == 0


def test_a_slave_pinned_to_the_old_master_is_re_pointed() -> None:
    pinned = props(2, "SLAVE", extra=f"haMasterAddress=127.0.0.1:{10912}\r\n")
    files = {**FILES, "broker-a:2": pinned}
    plan = plan_of(plan_promotion(promote(), config(slaves=2), files, current_epoch=0))
    repoint = [s for s in plan.steps if s.broker_key == "broker-a:2"]
    assert [s.kind for s in repoint] == [StepKind.STOP, StepKind.REWRITE, StepKind.START]
    assert repoint[1].edits == (("haMasterAddress", "127.0.0.1:10922"),)
    # Re-pointed after the new master is proven, before the epoch is recorded.
    kinds = [s.kind for s in plan.steps]
    assert kinds.index(StepKind.CANARY) < plan.steps.index(repoint[0])
    assert plan.steps[-1].kind is StepKind.RECORD_EPOCH


@pytest.mark.parametrize(
    ("decision", "files", "why"),
    [
        (promote(candidate_key="broker-a:7"), FILES, "not in the configuration"),
        (promote(candidate_addr="127.0.0.1:1"), FILES, "not in the configuration"),
        (promote(), {**FILES, "broker-a:1": None}, "cannot read broker-a:1's properties"),
        (promote("SLAVE"), FILES, "not a master role"),
    ],
)
def test_refusals(decision: Promote, files: dict[str, str | None], why: str) -> None:
    result = plan_promotion(decision, config(), files, current_epoch=0)
    assert isinstance(result, Refusal)
    assert why in result.reason and result.broker_name == "broker-a"


def test_unreadable_candidate_refusal_names_the_host() -> None:
    result = plan_promotion(promote(), config(), {**FILES, "broker-a:1": None}, current_epoch=0)
    assert isinstance(result, Refusal)
    assert "on h1" in result.reason and "/etc/rmq/a1.properties" in result.reason


def test_plan_json_round_trip() -> None:
    plan = plan_of(plan_promotion(promote("SYNC_MASTER"), config(), FILES, current_epoch=2))
    assert Plan.from_json(plan.to_json()) == plan


def test_the_plan_carries_both_loss_figures_to_the_journal_and_dry_run() -> None:
    from watchdog.commands import render_plan
    from watchdog.detect import GroupVerdict
    from watchdog.model import GroupState

    plan = plan_of(plan_promotion(promote(max_loss_bytes=700), config(), FILES, current_epoch=0))
    assert (plan.expected_loss_bytes, plan.max_loss_bytes) == (100, 700)
    doc = plan.to_json()
    assert (doc["expected_loss_bytes"], doc["max_loss_bytes"]) == (100, 700)
    assert Plan.from_json(doc) == plan
    group = GroupVerdict(
        "broker-a", GroupState.MASTER_ODOWN, A0, "broker-a:0", True, True, 3.0, 3, 3,
        (), (), (), "master down",
    )  # fmt: skip
    text = render_plan(plan, group, FILES, config())
    assert (
        "expected loss: 100 bytes, up to 700 bytes with what the master may have written since "
        "it last answered"
    ) in text.splitlines()
    same = plan_of(plan_promotion(promote(max_loss_bytes=100), config(), FILES, current_epoch=0))
    assert "expected loss: 100 bytes" in render_plan(same, group, FILES, config()).splitlines()


def candidate_stop_of(plan: Plan) -> Any:
    [step] = [
        s for s in plan.steps if s.kind is StepKind.STOP and s.broker_key == plan.new_master_key
    ]
    return step


def test_the_candidate_is_killed_by_default_when_it_has_a_kill_command() -> None:
    """[failover] candidate_stop = "kill" (the default): the candidate's own kill argv, on its
    host, in the place of its graceful stop. The old master's fence kills it too (a frozen JVM's
    graceful stop waits out its timeout; the closed channels deregister it at once); the
    rollback still uses `stop` (a rolled-back candidate goes on as a slave)."""
    cfg = config(kill=True)
    assert cfg.failover.candidate_stop == "kill"
    plan = plan_of(plan_promotion(promote(), cfg, FILES, current_epoch=0))
    stop = candidate_stop_of(plan)
    assert (stop.argv, stop.host) == (("kill-broker", "1"), "h1")
    assert "kill the candidate broker-a:1" in stop.purpose
    assert "candidate_stop = kill" in stop.purpose
    assert not stop.is_best_effort
    kinds = [(s.kind, s.broker_key) for s in plan.steps]
    assert kinds.index((StepKind.STOP, "broker-a:1")) + 1 == kinds.index(
        (StepKind.REWRITE, "broker-a:1")
    )
    fence_stop = plan.steps[1]
    assert (fence_stop.broker_key, fence_stop.argv) == ("broker-a:0", ("kill-broker", "0"))
    assert "kill it with its kill command" in fence_stop.purpose
    assert fence_stop.is_best_effort
    # Dropped by every nameserver (a crash: no process left to kill), its stop confirms it in
    # one command.
    crashed = plan_of(
        plan_promotion(promote(deregistered_for_seconds=0.5), cfg, FILES, current_epoch=0)
    )
    [crashed_fence] = [
        s for s in crashed.steps if s.kind is StepKind.STOP and s.broker_key == "broker-a:0"
    ]
    assert crashed_fence.argv == ("stop-broker", "0")
    assert "the nameservers dropped it" in crashed_fence.purpose
    assert plan.rollback[0].argv == ("stop-broker", "1")
    assert Plan.from_json(plan.to_json()) == plan


def test_graceful_candidate_stop_uses_the_stop_command() -> None:
    plan = plan_of(
        plan_promotion(
            promote(), config(kill=True, candidate_stop="graceful"), FILES, current_epoch=0
        )
    )
    stop = candidate_stop_of(plan)
    assert stop.argv == ("stop-broker", "1")
    assert "with its stop command (candidate_stop = graceful)" in stop.purpose


def test_kill_without_a_kill_command_falls_back_to_stop_and_the_dry_run_says_so() -> None:
    from watchdog.commands import render_plan
    from watchdog.detect import GroupVerdict
    from watchdog.model import GroupState

    group = GroupVerdict(
        "broker-a", GroupState.MASTER_ODOWN, A0, "broker-a:0", True, True, 3.0, 3, 3,
        (), (), (), "master down",
    )  # fmt: skip
    without = plan_of(plan_promotion(promote(), config(), FILES, current_epoch=0))
    stop = candidate_stop_of(without)
    assert stop.argv == ("stop-broker", "1")
    fence_stop = without.steps[1]
    assert (fence_stop.broker_key, fence_stop.argv) == ("broker-a:0", ("stop-broker", "0"))
    assert "it has no kill command" in fence_stop.purpose
    assert "candidate_stop = kill, but it has no kill command" in stop.purpose
    text = render_plan(without, group, FILES, config())
    assert f"[stop] {stop.purpose}" in text
    assert '["stop-broker", "1"]' in text
    killed = plan_of(plan_promotion(promote(), config(kill=True), FILES, current_epoch=0))
    text = render_plan(killed, group, FILES, config(kill=True))
    assert "[stop] kill the candidate broker-a:1@127.0.0.1:10921 with its kill command" in text
    assert 'on host h1: ["kill-broker", "1"]' in text


def test_diffs_show_each_file_once_with_every_edit() -> None:
    plan = plan_of(plan_promotion(promote(), config(), FILES, current_epoch=0))
    diffs = properties_diffs(plan, FILES, config())
    assert len(diffs) == 2
    old, new = diffs
    assert "h0:/etc/rmq/a0.properties" in old and "h1:/etc/rmq/a1.properties" in new
    assert "-brokerId=0\r\n" in old and "+brokerId=1\r\n" in old
    assert "-brokerRole : ASYNC_MASTER\r\n" in old and "+brokerRole : SLAVE\r\n" in old
    assert "+brokerId=0\r\n" in new and "+brokerRole : ASYNC_MASTER\r\n" in new
    # Untouched lines appear only as context.
    assert "-brokerClusterName" not in old + new


def fence(**kw: Any) -> Fence:
    values: dict[str, Any] = {
        "broker_name": "broker-a",
        "target_key": "broker-a:0",
        "target_addr": A0,
        "keep_key": "broker-a:1",
        "reason": "fencing broker-a:0: the deposed master rejoined",
    }
    values.update(kw)
    return Fence(**values)


def fence_plan(
    cfg: WatchdogConfig,
    target: int | None,
    point: int | None,
    used: frozenset[int] = frozenset({0}),
) -> Plan:
    return plan_of(
        plan_fence(
            fence(),
            cfg,
            FILES,
            3,
            target_offset=target,
            promotion_offset=point,
            used_ids=frozenset(used),
        )
    )


def test_fence_demote_moves_a_longer_log_aside() -> None:
    plan = fence_plan(config(), target=2000, point=1500)
    kinds = [s.kind for s in plan.steps]
    assert kinds == [
        StepKind.REWRITE,
        StepKind.STOP,
        StepKind.MOVE_STORE_ASIDE,
        StepKind.START,
        StepKind.RECORD_EPOCH,
    ]
    assert plan.steps[0].edits == (("brokerId", "1"), ("brokerRole", "SLAVE"))
    assert "2000" in plan.steps[2].purpose and "1500" in plan.steps[2].purpose
    assert plan.epoch == 3 and plan.kind == "fence"
    assert (plan.old_master_key, plan.new_master_key) == ("broker-a:0", "broker-a:1")


def test_fence_demote_keeps_a_log_within_the_promotion_point() -> None:
    plan = fence_plan(config(), target=1500, point=1500)
    assert StepKind.MOVE_STORE_ASIDE not in [s.kind for s in plan.steps]
    assert StepKind.START in [s.kind for s in plan.steps]


def test_fence_with_unknown_offsets_moves_the_store_aside() -> None:
    plan = fence_plan(config(), target=None, point=1500)
    aside = [s for s in plan.steps if s.kind is StepKind.MOVE_STORE_ASIDE]
    assert len(aside) == 1 and "unknown" in aside[0].purpose


def test_fence_quarantine_leaves_it_stopped() -> None:
    plan = fence_plan(config(old_master_policy="quarantine"), target=2000, point=1500)
    assert [s.kind for s in plan.steps] == [StepKind.REWRITE, StepKind.STOP, StepKind.RECORD_EPOCH]
    assert "quarantine" in plan.reason


def test_fence_kills_a_second_master_when_a_kill_command_is_configured() -> None:
    """A graceful stop would unregister brokerId 0 -- the kept master's id -- from every
    nameserver (4.x removes by id, whatever the address): the group would have no route until
    the kept master's next heartbeat."""
    plan = fence_plan(config(kill=True), target=2000, point=1500)
    stop = plan.steps[1]
    assert stop.kind is StepKind.STOP and stop.argv == ("kill-broker", "0")
    assert "unregister" in stop.purpose
    assert fence_plan(config(), target=2000, point=1500).steps[1].argv == ("stop-broker", "0")


def test_fence_takes_the_smallest_free_id() -> None:
    plan = fence_plan(config(), target=1, point=1, used=frozenset({0, 1, 3}))
    assert plan.steps[0].edits == (("brokerId", "2"), ("brokerRole", "SLAVE"))


def test_fence_refuses_an_unknown_target() -> None:
    result = plan_fence(
        fence(target_key="broker-a:9"),
        config(),
        FILES,
        0,
        target_offset=1,
        promotion_offset=1,
        used_ids=frozenset({0}),
    )
    assert isinstance(result, Refusal) and "not in the configuration" in result.reason


def test_an_operators_switch_from_a_live_master_rejoins_it_as_a_slave() -> None:
    live = plan_of(
        plan_promotion(promote(requires_master_down=False), config(), FILES, current_epoch=0)
    )
    last = live.steps[-1]
    assert (last.kind, last.broker_key, last.argv) == (
        StepKind.START,
        "broker-a:0",
        ("start-broker", "0"),
    )
    assert "rejoin the old master" in last.purpose
    dead = plan_of(plan_promotion(promote(), config(), FILES, current_epoch=0))
    assert dead.steps[-1].kind is StepKind.RECORD_EPOCH  # a dead master is left to its owner


# --------------------------------------------------------------------------- side by side


def lanes_of(plan: Plan) -> list[tuple[str, StepKind, str]]:
    return [(s.lane, s.kind, s.broker_key) for s in plan.steps]


def test_a_crashed_master_is_fenced_side_by_side_with_the_candidates_stop() -> None:
    """Down and dropped by every answering nameserver (a crash): the old master's rewrite, then
    its stop, in the fence lane; the candidate's stop and rewrite in its own lane; the gate
    joins them, and only then does the candidate start."""
    plan = plan_of(
        plan_promotion(promote(deregistered_for_seconds=0.0), config(), FILES, current_epoch=0)
    )
    assert lanes_of(plan) == [
        ("fence", StepKind.REWRITE, "broker-a:0"),
        ("fence", StepKind.STOP, "broker-a:0"),
        ("candidate", StepKind.STOP, "broker-a:1"),
        ("candidate", StepKind.REWRITE, "broker-a:1"),
        ("", StepKind.CONFIRM_FENCED, "broker-a:0"),
        ("", StepKind.START, "broker-a:1"),
        ("", StepKind.WAIT_MASTER, "broker-a:1"),
        ("", StepKind.CANARY, "broker-a:1"),
        ("", StepKind.RECORD_EPOCH, "broker-a:1"),
    ]
    assert plan.lanes == ("fence", "candidate")
    assert [plan.waits_for(i) for i in range(6)] == [
        frozenset(),
        frozenset({0}),
        frozenset(),
        frozenset({2}),
        frozenset({0, 1, 2, 3}),
        frozenset({0, 1, 2, 3, 4}),
    ]
    rewrite, stop = plan.steps[:2]
    assert "first rewrite" in rewrite.purpose and "then stop it" in stop.purpose
    assert rewrite.is_best_effort and stop.is_best_effort
    assert not any(s.is_best_effort for s in plan.steps[2:])
    assert dict(plan.details)["order"].startswith("side by side: ")
    assert Plan.from_json(plan.to_json()) == plan


def test_the_fence_command_runs_in_the_fence_lane() -> None:
    cfg = parse_config(
        {
            "cluster_name": "c",
            "nameservers": ["127.0.0.1:9876"],
            "hosts": {"h0": {"kind": "local", "fence_command": ["fence", "{addr}"]}},
            "brokers": [
                {
                    "broker_name": "broker-a",
                    "broker_id": i,
                    "addr": addr,
                    "properties": f"/etc/rmq/a{i}.properties",
                    "host": "h0",
                    "start": ["start-broker", str(i)],
                    "stop": ["stop-broker", str(i)],
                }
                for i, addr in enumerate([A0, A1])
            ],
        }
    )
    plan = plan_of(
        plan_promotion(promote(deregistered_for_seconds=1.0), cfg, FILES, current_epoch=0)
    )
    assert [(s.lane, s.kind) for s in plan.steps[:5]] == [
        ("fence", StepKind.REWRITE),
        ("fence", StepKind.STOP),
        ("fence", StepKind.FENCE_COMMAND),
        ("candidate", StepKind.STOP),
        ("candidate", StepKind.REWRITE),
    ]
    assert plan.steps[2].argv == ("fence", A0)


@pytest.mark.parametrize(
    ("decision", "files", "why"),
    [
        # A nameserver still lists it: a partition may hide a live master that still
        # replicates to the candidate, and a failed fence must leave the candidate untouched.
        (promote(old_master_registered_on=1), FILES, "a nameserver still lists the old master"),
        # An operator's switch of a live master: the candidate must hold all it stored.
        (
            promote(requires_master_down=False, deregistered_for_seconds=0.0),
            FILES,
            "an operator's switch",
        ),
        # Its host did not answer the planner: the fence is likely to fail.
        (
            promote(deregistered_for_seconds=0.0),
            {**FILES, "broker-a:0": None},
            "host did not answer the planner",
        ),
    ],
)
def test_in_sequence_when_the_old_master_may_still_feed_the_candidate(
    decision: Promote, files: dict[str, str | None], why: str
) -> None:
    plan = plan_of(plan_promotion(decision, config(), files, current_epoch=0))
    assert not plan.lanes
    assert [(s.kind, s.broker_key) for s in plan.steps[:5]] == [
        (StepKind.REWRITE, "broker-a:0"),
        (StepKind.STOP, "broker-a:0"),
        (StepKind.CONFIRM_FENCED, "broker-a:0"),
        (StepKind.STOP, "broker-a:1"),
        (StepKind.REWRITE, "broker-a:1"),
    ]
    order = dict(plan.details)["order"]
    assert order.startswith("in sequence: ") and why in order
    assert [plan.waits_for(i) for i in range(3)] == [frozenset(), {0}, {0, 1}]


def test_a_plan_journaled_before_lanes_resumes_in_sequence() -> None:
    """A journal written by a watchdog without lanes: its steps carry no `lane` key."""
    plan = plan_of(plan_promotion(promote(), config(), FILES, current_epoch=0))
    doc = plan.to_json()
    for step in doc["steps"] + doc["rollback"]:
        del step["lane"]
    old = Plan.from_json(doc)
    assert old == plan and not old.lanes
    assert all(old.waits_for(i) == frozenset(range(i)) for i in range(len(old.steps)))


def test_the_dry_run_shows_which_steps_run_side_by_side() -> None:
    from watchdog.commands import render_plan
    from watchdog.detect import GroupVerdict
    from watchdog.model import GroupState

    group = GroupVerdict(
        "broker-a", GroupState.MASTER_ODOWN, A0, "broker-a:0", True, True, 3.0, 3, 3,
        (), (), (), "master down",
    )  # fmt: skip
    plan = plan_of(
        plan_promotion(promote(deregistered_for_seconds=0.0), config(), FILES, current_epoch=0)
    )
    lines = render_plan(plan, group, FILES, config()).splitlines()
    steps = lines[lines.index("steps:") + 1 :]
    heads = [line for line in steps if not line.startswith("         ")]
    assert heads[:9] == [
        "  side by side, each lane in order:",
        "    lane fence:",
        f"      1. [rewrite] {plan.steps[0].purpose}",
        f"      2. [stop] {plan.steps[1].purpose}",
        "    lane candidate:",
        f"      3. [stop] {plan.steps[2].purpose}",
        f"      4. [rewrite] {plan.steps[3].purpose}",
        "  then, once every lane is done:",
        f"  5. [confirm_fenced] {plan.steps[4].purpose}",
    ]
    assert any(line.startswith("fence and candidate: side by side: ") for line in lines)
    sequential = plan_of(plan_promotion(promote(), config(), FILES, current_epoch=0))
    text = render_plan(sequential, group, FILES, config())
    assert "side by side, each lane" not in text and "  3. [confirm_fenced]" in text
    assert "fence and candidate: in sequence: " in text
