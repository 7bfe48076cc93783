"""The planner's in-place path: which path a promotion takes and why (one sentence), the steps
of the in-place plan, its fallback and rollback, and the slaves re-pointed in place."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import pytest

from watchdog.config import WatchdogConfig, parse_config
from watchdog.decide import (
    Plan,
    PluginAnswer,
    Promote,
    Refusal,
    StepKind,
    in_place_path,
    plan_promotion,
    properties_diffs,
)
from watchdog.remoting import PluginInfo

A0, A1, A2 = "broker-a:0", "broker-a:1", "broker-a:2"
ADDRS = {A0: "127.0.0.1:10911", A1: "127.0.0.1:10921", A2: "127.0.0.1:10931"}


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("secret") / "plugin.secret"
    path.write_text("0123456789abcdef0123456789abcdef\n")
    os.chmod(path, 0o600)
    return str(path)


def config(
    secret_file: str | None, *, slaves: int = 1, kill: bool = True, **failover: Any
) -> WatchdogConfig:
    if secret_file is not None:
        failover = {"promotion": "inplace", "plugin_secret_file": secret_file, **failover}
    keys = [A0, A1, A2][: slaves + 1]
    return parse_config(
        {
            "cluster_name": "c",
            "nameservers": ["127.0.0.1:9876", "127.0.0.1:9877"],
            "hosts": {"h0": {"kind": "local"}, "h1": {"kind": "local"}, "h2": {"kind": "local"}},
            "brokers": [
                {
                    "broker_name": "broker-a",
                    "broker_id": i,
                    "addr": ADDRS[key],
                    "properties": f"/etc/rmq/a{i}.properties",
                    "host": f"h{i}",
                    "start": ["start-broker", str(i)],
                    "stop": ["stop-broker", str(i)],
                    **({"kill": ["kill-broker", str(i)]} if kill else {}),
                }
                for i, key in enumerate(keys)
            ],
            "failover": failover,
        }
    )


def props(broker_id: int, role: str, extra: str = "") -> str:
    return f"brokerName=broker-a\nbrokerId={broker_id}\nbrokerRole={role}\n{extra}"


PINNED = "haMasterAddress=127.0.0.1:10912\n"
FILES: dict[str, str | None] = {
    A0: props(0, "ASYNC_MASTER"),
    A1: props(1, "SLAVE"),
    A2: props(2, "SLAVE", PINNED),
}


def info(**changes: Any) -> PluginInfo:
    values: dict[str, Any] = {
        "plugin_version": "0.1.0",
        "rocketmq_version": "4.9.7",
        "broker_role": "SLAVE",
        "broker_id": 1,
        "last_epoch": 0,
        "max_phy_offset": 4800,
        "dispatch_behind_bytes": 0,
        "ha_master_address": "127.0.0.1:10912",
        "has_secret": True,
    }
    values.update(changes)
    return PluginInfo(**values)


READY = PluginAnswer(info())


def promote(role: str = "ASYNC_MASTER", **kw: Any) -> Promote:
    values: dict[str, Any] = {
        "broker_name": "broker-a",
        "old_master_key": A0,
        "old_master_addr": ADDRS[A0],
        "candidate_key": A1,
        "candidate_addr": ADDRS[A1],
        "candidate_offset": 4800,
        "expected_loss_bytes": 0,
        "new_role": role,
        "reason": "master died",
        "deregistered_for_seconds": 0.0,
    }
    values.update(kw)
    return Promote(**values)


def plan_of(result: Plan | Refusal) -> Plan:
    assert isinstance(result, Plan), result
    return result


def kinds(plan: Plan) -> list[str]:
    return [f"{s.lane or '-'} {s.kind} {s.broker_key}" for s in plan.steps]


# --------------------------------------------------------------------------- which path, and why

PATHS: list[tuple[str, bool, dict[str, PluginAnswer] | None, int, tuple[bool, str]]] = [
    (
        "promotion = restart: never asked",
        False,
        {A1: READY},
        0,
        (False, "restart: promotion = restart"),
    ),
    (
        "a plug-in that answers, secret loaded, a slave, an older epoch",
        True,
        {A1: READY},
        0,
        (
            True,
            "in place: promotion = inplace and broker-a:1's plug-in 0.1.0 answers (secret "
            "loaded, SLAVE, last epoch 0)",
        ),
    ),
    (
        "no plug-in: REQUEST_CODE_NOT_SUPPORTED",
        True,
        {A1: PluginAnswer(None)},
        0,
        (
            False,
            "restart: promotion = inplace but broker-a:1 has no plug-in (it answered "
            "REQUEST_CODE_NOT_SUPPORTED)",
        ),
    ),
    (
        "PLUGIN_INFO failed",
        True,
        {A1: PluginAnswer(None, "RemotingTimeout: no answer within 0.8 s")},
        0,
        (
            False,
            "restart: promotion = inplace but broker-a:1 did not answer PLUGIN_INFO "
            "(RemotingTimeout: no answer within 0.8 s)",
        ),
    ),
    (
        "no secret loaded on the broker",
        True,
        {A1: PluginAnswer(info(has_secret=False))},
        0,
        (
            False,
            "restart: promotion = inplace but broker-a:1's plug-in 0.1.0 has no secret loaded "
            "(its secret file is missing or too short)",
        ),
    ),
    (
        "the candidate is not a slave",
        True,
        {A1: PluginAnswer(info(broker_role="ASYNC_MASTER", broker_id=0))},
        0,
        (False, "restart: promotion = inplace but broker-a:1 runs as ASYNC_MASTER, not SLAVE"),
    ),
    (
        "the plug-in served this epoch already (the watchdog's state was reset)",
        True,
        {A1: PluginAnswer(info(last_epoch=3))},
        2,
        (
            False,
            "restart: promotion = inplace but broker-a:1's plug-in 0.1.0 already served epoch "
            "3, not older than this failover's epoch 3: it would refuse (was the watchdog's "
            "state reset?)",
        ),
    ),
    (
        "the plug-ins were not asked",
        True,
        None,
        0,
        (False, "restart: promotion = inplace but broker-a:1's plug-in was not asked"),
    ),
    (
        "another broker's answer is not the candidate's",
        True,
        {A2: READY},
        0,
        (False, "restart: promotion = inplace but broker-a:1's plug-in was not asked"),
    ),
]


@pytest.mark.parametrize(
    ("inplace", "plugins", "epoch", "expected"), [r[1:] for r in PATHS], ids=[r[0] for r in PATHS]
)
def test_which_path_and_why(
    secret_file: str,
    inplace: bool,
    plugins: dict[str, PluginAnswer] | None,
    epoch: int,
    expected: tuple[bool, str],
) -> None:
    cfg = config(secret_file if inplace else None)
    assert in_place_path(cfg, A1, plugins, epoch + 1) == expected
    plan = plan_of(plan_promotion(promote(), cfg, FILES, epoch, plugins=plugins))
    assert dict(plan.details)["path"] == expected[1]
    assert (plan.in_place_index is not None) is expected[0]
    assert bool(plan.fallback) is expected[0]


def test_a_restart_plan_is_the_same_whatever_promotion_says(secret_file: str) -> None:
    """promotion = inplace without a usable plug-in plans exactly what promotion = restart
    plans; only the sentence saying which path differs."""
    restart = plan_of(plan_promotion(promote(), config(None), FILES, 0, plugins={A1: READY}))
    unusable = {A1: PluginAnswer(None), A2: READY}
    fell = plan_of(plan_promotion(promote(), config(secret_file), FILES, 0, plugins=unusable))
    assert fell.steps == restart.steps and fell.rollback == restart.rollback
    assert fell.fallback == restart.fallback == ()

    def without_path(plan: Plan) -> Plan:
        return replace(plan, details=tuple(d for d in plan.details if d[0] != "path"))

    assert without_path(fell) == without_path(restart)


# --------------------------------------------------------------------------- the in-place plan


def test_the_in_place_plan_fences_then_promotes_without_a_restart(secret_file: str) -> None:
    plan = plan_of(plan_promotion(promote(), config(secret_file), FILES, 4, plugins={A1: READY}))
    assert kinds(plan) == [
        f"- rewrite {A0}",
        f"- stop {A0}",
        f"- confirm_fenced {A0}",
        f"- promote_in_place {A1}",
        f"- rewrite {A1}",
        f"- wait_master {A1}",
        f"- canary {A1}",
        f"- record_epoch {A1}",
    ]
    assert plan.in_place_index == 3 and plan.epoch == 5
    # The candidate is neither stopped nor started; its file says what it now is.
    assert not any(
        s.kind in (StepKind.STOP, StepKind.START) and s.broker_key == A1 for s in plan.steps
    )
    rewrite = plan.steps[4]
    assert rewrite.edits == (("brokerId", "0"), ("brokerRole", "ASYNC_MASTER"))
    assert "not restarted" in rewrite.purpose and not rewrite.is_best_effort
    promote_step = plan.steps[3]
    assert "in place as ASYNC_MASTER" in promote_step.purpose and not promote_step.is_best_effort
    assert dict(plan.details)["order"].startswith("in sequence: promoted in place")
    assert "rewrite to SLAVE and stop on host h0" in dict(plan.details)["fence"]


def test_the_fallback_is_the_restart_paths_candidate_steps(secret_file: str) -> None:
    cfg = config(secret_file)
    plan = plan_of(plan_promotion(promote(), cfg, FILES, 0, plugins={A1: READY}))
    restart = plan_of(plan_promotion(promote(), config(None), FILES, 0))
    candidate = [s for s in restart.steps if s.broker_key == A1][:3]
    assert [(s.kind, s.argv, s.edits) for s in candidate] == [
        (StepKind.STOP, ("kill-broker", "1"), ()),
        (StepKind.REWRITE, (), (("brokerId", "0"), ("brokerRole", "ASYNC_MASTER"))),
        (StepKind.START, ("start-broker", "1"), ()),
    ]
    assert [(s.kind, s.argv, s.edits, s.lane) for s in plan.fallback] == [
        (s.kind, s.argv, s.edits, "") for s in candidate
    ]
    assert all(s.purpose.startswith("fallback (restart path): ") for s in plan.fallback)
    # No demote in place: a rollback restarts the candidate with its file restored.
    assert plan.rollback == restart.rollback
    # The dry run's diffs are the restart path's: the same keys of the same file.
    assert properties_diffs(plan, FILES, cfg) == properties_diffs(restart, FILES, cfg)


def test_the_plan_with_its_fallback_survives_the_journal(secret_file: str) -> None:
    plan = plan_of(plan_promotion(promote(), config(secret_file), FILES, 0, plugins={A1: READY}))
    again = Plan.from_json(plan.to_json())
    assert again == plan and again.fallback == plan.fallback and again.in_place_index == 3
    # A plan journaled before the in-place path has no fallback.
    old = plan.to_json()
    del old["fallback"]
    assert Plan.from_json(old).fallback == ()


def test_a_lowered_role_is_the_role_promoted_in_place(secret_file: str) -> None:
    plan = plan_of(
        plan_promotion(promote("SYNC_MASTER"), config(secret_file), FILES, 0, plugins={A1: READY})
    )
    assert plan.new_role == "ASYNC_MASTER" and plan.lowered_from == "SYNC_MASTER"
    assert "in place as ASYNC_MASTER" in plan.steps[plan.in_place_index or 0].purpose
    assert plan.fallback[1].edits == (("brokerId", "0"), ("brokerRole", "ASYNC_MASTER"))


def test_without_an_old_master_only_the_candidate_is_promoted(secret_file: str) -> None:
    plan = plan_of(
        plan_promotion(
            promote(old_master_key=None, old_master_addr=None),
            config(secret_file),
            FILES,
            0,
            plugins={A1: READY},
        )
    )
    assert kinds(plan)[:2] == [f"- promote_in_place {A1}", f"- rewrite {A1}"]
    assert "order" not in dict(plan.details)


def test_an_operators_switch_promotes_in_place_and_restarts_the_old_master(
    secret_file: str,
) -> None:
    plan = plan_of(
        plan_promotion(
            promote(requires_master_down=False, deregistered_for_seconds=None),
            config(secret_file),
            FILES,
            0,
            plugins={A1: READY},
        )
    )
    assert kinds(plan)[:4] == [
        f"- rewrite {A0}",
        f"- stop {A0}",
        f"- confirm_fenced {A0}",
        f"- promote_in_place {A1}",
    ]
    assert kinds(plan)[-2:] == [f"- record_epoch {A1}", f"- start {A0}"]


# --------------------------------------------------------------------------- the other slaves

UNPINNED = props(2, "SLAVE")
SLAVES: list[tuple[str, str, PluginAnswer | None, list[str]]] = [
    (
        "pinned, with a plug-in: its file rewritten (no restart), then SET_HA_MASTER",
        PINNED,
        READY,
        [f"rewrite {A2} haMasterAddress=127.0.0.1:10922", f"set_ha_master {A2} best effort"],
    ),
    (
        "not pinned, with a plug-in: SET_HA_MASTER only",
        "",
        READY,
        [f"set_ha_master {A2} best effort"],
    ),
    (
        "pinned, without a plug-in: stopped, rewritten and started as on the restart path",
        PINNED,
        PluginAnswer(None),
        [f"stop {A2}", f"rewrite {A2} haMasterAddress=127.0.0.1:10922", f"start {A2}"],
    ),
    (
        "pinned, its plug-in without a secret: the restart path's re-point",
        PINNED,
        PluginAnswer(info(has_secret=False)),
        [f"stop {A2}", f"rewrite {A2} haMasterAddress=127.0.0.1:10922", f"start {A2}"],
    ),
    (
        "pinned, not asked: the restart path's re-point",
        PINNED,
        None,
        [f"stop {A2}", f"rewrite {A2} haMasterAddress=127.0.0.1:10922", f"start {A2}"],
    ),
    (
        "not pinned, without a plug-in: the nameservers re-point it, no step",
        "",
        PluginAnswer(None, "RemotingConnectError: refused"),
        [],
    ),
]


@pytest.mark.parametrize(
    ("extra", "answer", "expected"), [r[1:] for r in SLAVES], ids=[r[0] for r in SLAVES]
)
def test_the_other_slaves_are_re_pointed_in_place_when_they_can_be(
    secret_file: str, extra: str, answer: PluginAnswer | None, expected: list[str]
) -> None:
    files = {**FILES, A2: props(2, "SLAVE", extra)}
    plugins = {A1: READY, **({A2: answer} if answer is not None else {})}
    plan = plan_of(
        plan_promotion(promote(), config(secret_file, slaves=2), files, 0, plugins=plugins)
    )

    def text(kind: StepKind, key: str, edits: tuple[tuple[str, str], ...], best: bool) -> str:
        values = " " + ",".join(f"{k}={v}" for k, v in edits) if edits else ""
        return f"{kind} {key}{values}{' best effort' if best else ''}"

    repoint = [
        text(s.kind, s.broker_key, s.edits, s.is_best_effort)
        for s in plan.steps
        if s.broker_key == A2
    ]
    assert repoint == expected
    # After the canary proved the new master, before the epoch is recorded.
    steps = [s.kind for s in plan.steps]
    if expected:
        first = next(i for i, s in enumerate(plan.steps) if s.broker_key == A2)
        assert steps.index(StepKind.CANARY) < first < steps.index(StepKind.RECORD_EPOCH)
    assert steps[-1] is StepKind.RECORD_EPOCH


def test_a_slave_whose_plug_in_served_a_newer_epoch_is_re_pointed_by_restart(
    secret_file: str,
) -> None:
    plugins = {A1: READY, A2: PluginAnswer(info(last_epoch=9, broker_id=2))}
    plan = plan_of(
        plan_promotion(promote(), config(secret_file, slaves=2), FILES, 0, plugins=plugins)
    )
    assert [s.kind for s in plan.steps if s.broker_key == A2] == [
        StepKind.STOP,
        StepKind.REWRITE,
        StepKind.START,
    ]


def test_purposes_name_the_new_master_for_the_dry_run(secret_file: str) -> None:
    plan = plan_of(
        plan_promotion(
            promote(), config(secret_file, slaves=2), FILES, 0, plugins={A1: READY, A2: READY}
        )
    )
    set_ha = next(s for s in plan.steps if s.kind is StepKind.SET_HA_MASTER)
    assert "replicate from broker-a:1 (HA 127.0.0.1:10922)" in set_ha.purpose
    assert set_ha.host == "h2"


def test_the_default_configuration_says_restart() -> None:
    plan = plan_of(plan_promotion(promote(), config(None), FILES, 0))
    assert dict(plan.details)["path"] == "restart: promotion = restart"


def test_the_dry_run_says_which_path_and_lists_the_fallback(secret_file: str) -> None:
    from watchdog.commands import render_plan
    from watchdog.detect import GroupVerdict
    from watchdog.model import GroupState

    group = GroupVerdict(
        "broker-a", GroupState.MASTER_ODOWN, ADDRS[A0], A0, True, True, 3.0, 3, 3,
        (), (), (), "master down",
    )  # fmt: skip
    cfg = config(secret_file)
    plan = plan_of(plan_promotion(promote(), cfg, FILES, 0, plugins={A1: READY}))
    lines = render_plan(plan, group, FILES, cfg).splitlines()
    assert (
        "promotion: in place: promotion = inplace and broker-a:1's plug-in 0.1.0 answers "
        "(secret loaded, SLAVE, last epoch 0)"
    ) in lines
    assert f"  4. [promote_in_place] {plan.steps[3].purpose}" in lines
    start = lines.index(
        "if the in-place promotion (step 4) is refused or fails, instead of it (the restart "
        "path; then the steps after it):"
    )
    assert lines[start + 1 : start + 4] == [f"  - [{s.kind}] {s.purpose}" for s in plan.fallback]
    restart = plan_of(plan_promotion(promote(), cfg, FILES, 0, plugins={A1: PluginAnswer(None)}))
    text = render_plan(restart, group, FILES, cfg)
    assert (
        "promotion: restart: promotion = inplace but broker-a:1 has no plug-in (it answered "
        "REQUEST_CODE_NOT_SUPPORTED)"
    ) in text.splitlines()
    assert "if the in-place promotion" not in text
