"""Decisions: value tables from detected verdicts to NoAction / Promote / Fence, and properties."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.unit._worlds import (
    A0,
    A1,
    A2,
    BROKERS,
    NS1,
    NS2,
    Replay,
    World,
    broker_config,
    seconds,
    settings,
    snapshot_runs,
)
from watchdog.config import BrokerConfig, parse_config
from watchdog.decide import (
    Decision,
    Fence,
    FenceEvidence,
    GroupFailoverPolicy,
    NoAction,
    Policy,
    Promote,
    choose_candidate,
    decide,
    describe_loss,
    fenced_by,
    log_fields,
)
from watchdog.detect import ClusterVerdict
from watchdog.model import ClusterSnapshot, GroupState

MIB = 1_048_576
# The World's master writes 100 B/s; killed at 10.5 s, last heard at 10 s with MIB + 1000, 3 s
# before the decision: it may have written 300 B unseen; the slave holds MIB + 1050.
UNSEEN = "up to 250 with what the master may have written unseen"
KILL = (10.5, 1e9)
BOTH = (NS1, NS2)
DEAD = World(master_down=KILL, deregistered_by=BOTH, base_offset=MIB)
ODOWN_REASON = (
    "master broker-a@127.0.0.1:10911 objectively down: "
    "no reply for 3.0 s, gone from 2/2 nameservers"
)
THREE = (*BROKERS, broker_config(2, A2))
# kill -9: refused at once, dropped by both nameservers (detect's crash rule)
CRASHED = replace(DEAD, master_failure="refused")
CRASH_WHY = (
    "because master crashed: it refuses connections and no answering nameserver lists it "
    "(down for 1.0 s from 3 of 3 vantage points, without waiting down_after)"
)


def run(
    world: World, last: float = 13.0, **detect_kw: object
) -> tuple[ClusterSnapshot, ClusterVerdict]:
    replay = Replay(settings=settings(**detect_kw))
    verdict = replay.run(world, seconds(0, last))
    return replay.snapshots[-1], verdict


def one(
    world: World,
    *,
    brokers: tuple[BrokerConfig, ...] = BROKERS,
    policy: Policy | None = None,
    last: float = 13.0,
    **detect_kw: object,
) -> Decision:
    snap, verdict = run(world, last, **detect_kw)
    (decision,) = decide(snap, verdict, brokers, policy or Policy(), now=last)
    return decision


def gp(**kw: Any) -> Policy:
    return Policy(default=GroupFailoverPolicy(**kw))


def promote(
    offset: int,
    loss: int | None,
    *,
    key: str = "broker-a:1",
    addr: str = A1,
    role: str = "",
    unseen: int = 300,
    registered_on: int = 0,
    deregistered_for: float | None = 2.0,
    decided_at: float = 13.0,
) -> Promote:
    """`unseen`: the World's master writes 100 B/s and was last heard 3 s before the decision."""
    candidate_id = key.rsplit(":", 1)[1]
    max_loss = None if loss is None else max(MIB + 1000 + unseen - offset, 0)
    behind = describe_loss(loss, max_loss)
    return Promote(
        broker_name="broker-a",
        old_master_key="broker-a:0",
        old_master_addr=A0,
        candidate_key=key,
        candidate_addr=addr,
        candidate_offset=offset,
        expected_loss_bytes=loss,
        max_loss_bytes=max_loss,
        new_role=role or "ASYNC_MASTER",
        reason=f"promoting broker-a id={candidate_id} (offset {offset}, {behind}) because master "
        "unreachable for 3.0 s from 3 of 3 vantage points",
        old_master_registered_on=registered_on,
        deregistered_for_seconds=deregistered_for,
        master_write_rate=100.0,  # the World's master writes 100 B/s
        decided_at=decided_at,
    )


def blocked(detail: str) -> NoAction:
    return NoAction(
        "broker-a",
        f"no action: {ODOWN_REASON}; no slave can be promoted: {detail}",
        GroupState.FAILOVER_BLOCKED,
    )


# The master's last answer (t=10) reported MIB + 1000; the slave at t=13 holds MIB + 1050 - lag.
TABLE: list[tuple[str, World, dict[str, Any], Decision]] = [
    (
        "healthy",
        World(),
        {},
        NoAction("broker-a", "no action: master broker-a@127.0.0.1:10911 healthy"),
    ),
    (
        "slave down: degraded, nothing to do",
        World(slave_down=(10.5, 1e9)),
        {},
        NoAction(
            "broker-a",
            "no action: master broker-a@127.0.0.1:10911 healthy, "
            "slave broker-a:1@127.0.0.1:10921 (no reply for 3.0 s) down",
            GroupState.DEGRADED,
        ),
    ),
    (
        "master silent less than down_after",
        DEAD,
        {"last": 12.0},
        NoAction(
            "broker-a",
            "no action: master broker-a@127.0.0.1:10911 not answering for 2.0 s (down after 3.0 s)",
        ),
    ),
    ("kill -9: promote the slave", DEAD, {}, promote(MIB + 1050, 0)),
    (
        "kill -9, refused and gone: promote at the first failed probe, saying why so soon",
        CRASHED,
        {"last": 11.0},
        Promote(
            **{
                **promote(
                    MIB + 1050, 0, unseen=100, deregistered_for=0.0, decided_at=11.0
                ).__dict__,
                "reason": f"promoting broker-a id=1 (offset {MIB + 1050}, 0 bytes behind, up to "
                f"50 with what the master may have written unseen) {CRASH_WHY}",
            }
        ),
    ),
    (
        "refused but still listed by one nameserver: down_after as before",
        replace(CRASHED, deregistered_by=(NS1,)),
        {"last": 12.0},
        NoAction(
            "broker-a",
            "no action: master broker-a@127.0.0.1:10911 not answering for 2.0 s (down after 3.0 s)",
        ),
    ),
    (
        "the new master keeps the old master's role",
        World(master_down=KILL, deregistered_by=BOTH, base_offset=MIB, master_role="SYNC_MASTER"),
        {},
        promote(MIB + 1050, 0, role="SYNC_MASTER"),
    ),
    (
        "lag within max_lag_bytes",
        World(master_down=KILL, deregistered_by=BOTH, base_offset=MIB, slave_lag_bytes=1000),
        {"policy": gp(max_lag_bytes=1024)},
        promote(MIB + 50, 950),
    ),
    (
        "lag too large",
        World(master_down=KILL, deregistered_by=BOTH, base_offset=MIB, slave_lag_bytes=5000),
        {"policy": gp(max_lag_bytes=1024)},
        blocked("broker-a:1 is 4950 bytes behind, more than 1024"),
    ),
    (
        "no candidate: the slave is down too",
        World(master_down=KILL, deregistered_by=BOTH, base_offset=MIB, slave_down=(11.5, 1e9)),
        {},
        NoAction(
            "broker-a",
            "no action: master broker-a@127.0.0.1:10911 objectively down: no reply for 3.0 s, "
            "broker-a unknown to 2/2 nameservers; no slave can be promoted: "
            "broker-a:1 not answering",
            GroupState.FAILOVER_BLOCKED,
        ),
    ),
    (
        "no candidate: the slave is no_promote",
        DEAD,
        {"brokers": (BROKERS[0], broker_config(1, A1, no_promote=True))},
        blocked("broker-a:1 is marked no_promote"),
    ),
    (
        "no candidate: the slave is not in the configuration",
        DEAD,
        {"brokers": BROKERS[:1]},
        blocked("broker-a:1 is not in the configuration"),
    ),
    (
        "no candidate: the slave answers with an unknown role",
        World(master_down=KILL, deregistered_by=BOTH, base_offset=MIB, slave_role="BANANA"),
        {},
        blocked("broker-a:1 answers as BANANA, not SLAVE"),
    ),
    (
        "automatic failover off: say what would happen",
        DEAD,
        {"policy": gp(is_auto_failover=False)},
        NoAction(
            "broker-a",
            "no action: automatic failover off for broker-a, would be promoting broker-a id=1 "
            f"(offset {MIB + 1050}, 0 bytes behind, {UNSEEN}) because master unreachable "
            "for 3.0 s from 3 of 3 vantage points",
            GroupState.FAILOVER_BLOCKED,
        ),
    ),
    (
        "anti-flap block",
        DEAD,
        {"policy": gp(blocked_until=43.0, blocked_reason="failed over 5.0 min ago")},
        NoAction(
            "broker-a",
            f"no action: {ODOWN_REASON}; failover blocked for 30.0 s more "
            "(failed over 5.0 min ago)",
            GroupState.FAILOVER_BLOCKED,
        ),
    ),
    ("anti-flap block expired", DEAD, {"policy": gp(blocked_until=13.0)}, promote(MIB + 1050, 0)),
    (
        "failover already running",
        DEAD,
        {"policy": gp(is_failover_running=True)},
        NoAction(
            "broker-a",
            f"no action: failover of broker-a still running; {ODOWN_REASON}",
            GroupState.FAILOVER_RUNNING,
        ),
    ),
    (
        "subjectively down only: a secondary check reaches the master",
        World(master_down=KILL, base_offset=MIB, secondary=True),
        {},
        NoAction(
            "broker-a",
            "no action: master broker-a@127.0.0.1:10911 subjectively down: no reply for 3.0 s, "
            "but secondary check dc2 reaches it",
            GroupState.MASTER_SDOWN,
        ),
    ),
    (
        "watchdog cut off from everything",
        World(cut_off=(10.5, 1e9), base_offset=MIB),
        {"last": 20.0},
        NoAction(
            "broker-a",
            "no action: watchdog isolated: reaches 0/2 nameservers and no slave",
            GroupState.ISOLATED,
        ),
    ),
    (
        "garbage from the master, still registered: quorum 1 fails over",
        World(master_down=KILL, base_offset=MIB, master_error="ProtocolError: bad frame"),
        {},
        Promote(
            **{
                **promote(MIB + 1050, 0, registered_on=2, deregistered_for=None).__dict__,
                "reason": f"promoting broker-a id=1 (offset {MIB + 1050}, 0 bytes behind, "
                f"{UNSEEN}) because master unreachable for 3.0 s from 1 of 3 vantage points",
            }
        ),
    ),
    (
        "garbage from the master, still registered: quorum 2 waits",
        World(master_down=KILL, base_offset=MIB, master_error="ProtocolError: bad frame"),
        {"quorum": 2},
        NoAction(
            "broker-a",
            "no action: master broker-a@127.0.0.1:10911 subjectively down: no reply for 3.0 s, "
            "but only 1 of 3 vantage points see it down (quorum 2): "
            "still listed by 2/2 nameservers",
            GroupState.MASTER_SDOWN,
        ),
    ),
]


@pytest.mark.parametrize(
    ("world", "kw", "expected"), [pytest.param(*r[1:], id=r[0]) for r in TABLE]
)
def test_decision_table(world: World, kw: dict[str, Any], expected: Decision) -> None:
    assert one(world, **kw) == expected


# --- candidate order ----------------------------------------------------------------------


def _two_slaves(a2_lag: int) -> World:
    return World(
        master_down=KILL,
        deregistered_by=BOTH,
        base_offset=MIB,
        extra_slaves=((2, A2, a2_lag),),
    )


@pytest.mark.parametrize(
    ("a2_lag", "a1_kw", "a2_kw", "max_lag", "expected_key"),
    [
        pytest.param(500, {}, {}, None, "broker-a:1", id="same priority: more data wins"),
        pytest.param(0, {}, {}, None, "broker-a:1", id="same priority and offset: lower id"),
        pytest.param(
            500, {}, {"priority": 10}, 1024, "broker-a:2", id="higher priority wins within lag"
        ),
        pytest.param(500, {"priority": -1}, {}, None, "broker-a:2", id="negative priority loses"),
        pytest.param(
            5000, {}, {"priority": 10}, 1024, "broker-a:1", id="priority never buys loss over max"
        ),
        pytest.param(500, {"no_promote": True}, {}, None, "broker-a:2", id="no_promote skipped"),
    ],
)
def test_candidate_order(
    a2_lag: int,
    a1_kw: dict[str, Any],
    a2_kw: dict[str, Any],
    max_lag: int | None,
    expected_key: str,
) -> None:
    brokers = (BROKERS[0], broker_config(1, A1, **a1_kw), broker_config(2, A2, **a2_kw))
    decision = one(_two_slaves(a2_lag), brokers=brokers, policy=gp(max_lag_bytes=max_lag))
    assert isinstance(decision, Promote)
    assert decision.candidate_key == expected_key
    slave_offset = {"broker-a:1": MIB + 1050, "broker-a:2": MIB + 1050 - a2_lag}[expected_key]
    assert decision.candidate_offset == slave_offset
    assert decision.expected_loss_bytes == max(MIB + 1000 - slave_offset, 0)


def test_every_refused_slave_is_named() -> None:
    brokers = (BROKERS[0], broker_config(1, A1, no_promote=True), broker_config(2, A2))
    decision = one(_two_slaves(5000), brokers=brokers, policy=gp(max_lag_bytes=1024))
    assert decision == blocked(
        "broker-a:1 is marked no_promote; broker-a:2 is 4950 bytes behind, more than 1024"
    )


@pytest.mark.parametrize(
    ("only_key", "chosen_key", "rejected"),
    [
        pytest.param("broker-a:2", "broker-a:2", [], id="operator picks the less advanced slave"),
        pytest.param(
            "broker-a:0", None, ["broker-a:0 is not a slave of broker-a"], id="the master itself"
        ),
        pytest.param("broker-b:1", None, ["broker-b:1 is not a slave of broker-a"], id="unknown"),
    ],
)
def test_choose_candidate_only_key(
    only_key: str, chosen_key: str | None, rejected: list[str]
) -> None:
    snap, verdict = run(_two_slaves(500))
    (group,) = verdict.groups
    chosen, why = choose_candidate(snap, group, THREE, GroupFailoverPolicy(), only_key=only_key)
    assert (None if chosen is None else chosen[0].key) == chosen_key
    assert why == rejected


def test_master_offset_never_seen() -> None:
    world = World(master_down=(0.0, 1e9), deregistered_by=BOTH, base_offset=MIB)
    with_limit = one(world, last=3.0, policy=gp(max_lag_bytes=1024))
    assert with_limit == NoAction(
        "broker-a",
        "no action: master broker-a@127.0.0.1:10911 objectively down: no reply for 3.0 s, "
        "gone from 2/2 nameservers; no slave can be promoted: broker-a:1 data loss unknown "
        "(master offset never seen), max_lag_bytes is 1024",
        GroupState.FAILOVER_BLOCKED,
    )
    without_limit = one(world, last=3.0)
    # The master never answered, so no write rate was ever seen.
    expected = promote(MIB, None, deregistered_for=3.0, decided_at=3.0)
    assert without_limit == Promote(**{**expected.__dict__, "master_write_rate": 0.0})


# --- split brain ----------------------------------------------------------------------------

RETURNING = World(
    master_down=(10.5, 19.5), deregistered_by=BOTH, base_offset=MIB, slave_is_master_from=14.0
)
FENCE_WHY = (
    "split brain in broker-a: broker-a:1@127.0.0.1:10921 and broker-a:0@127.0.0.1:10911 "
    "both answer as master; keeping broker-a:1@127.0.0.1:10921"
)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        pytest.param(
            gp(),
            Fence(
                "broker-a",
                "broker-a:0",
                A0,
                "broker-a:1",
                f"fencing broker-a:0@127.0.0.1:10911: {FENCE_WHY}",
                GroupState.DEGRADED,
            ),
            id="fence the returning old master",
        ),
        pytest.param(
            gp(blocked_until=1e9),
            Fence(
                "broker-a",
                "broker-a:0",
                A0,
                "broker-a:1",
                f"fencing broker-a:0@127.0.0.1:10911: {FENCE_WHY}",
                GroupState.DEGRADED,
            ),
            id="anti-flap does not stop fencing",
        ),
        pytest.param(
            gp(is_auto_failover=False),
            NoAction(
                "broker-a",
                "no action: automatic failover off for broker-a, would fence "
                f"broker-a:0@127.0.0.1:10911: {FENCE_WHY}",
                GroupState.DEGRADED,
            ),
            id="auto failover off",
        ),
        pytest.param(
            gp(is_failover_running=True),
            NoAction(
                "broker-a",
                "no action: failover of broker-a still running; split brain in broker-a: "
                "broker-a:1@127.0.0.1:10921 and broker-a:0@127.0.0.1:10911 both answer as master",
                GroupState.FAILOVER_RUNNING,
            ),
            id="actor busy",
        ),
    ],
)
def test_two_masters(policy: Policy, expected: Decision) -> None:
    assert one(RETURNING, last=20.0, policy=policy) == expected


# --- TILT and the loop -----------------------------------------------------------------------


def test_tilt_decides_nothing() -> None:
    replay = Replay()
    replay.run(DEAD, seconds(0, 10))
    verdict = replay.run(DEAD, [16.0])
    (decision,) = decide(replay.snapshots[-1], verdict, BROKERS, Policy(), now=16.0)
    assert decision == NoAction(
        "broker-a",
        "no action: TILT: cycle started 5.0 s late (watchdog paused?); not trusting a down "
        "verdict for this and 2 more cycles (broker-a@127.0.0.1:10911)",
    )


@pytest.mark.parametrize("kill_at", [10.0, 10.4, 10.99])
def test_loop_promotes_once_within_down_after_plus_one_interval(kill_at: float) -> None:
    world = World(master_down=(kill_at, 1e9), deregistered_by=BOTH, base_offset=MIB)
    replay = Replay()
    decisions: list[tuple[float, Decision]] = []
    for t in seconds(0, 20):
        verdict = replay.run(world, [t])
        (d,) = decide(replay.snapshots[-1], verdict, BROKERS, Policy(), now=t)
        decisions.append((t, d))
    promotions = [t for t, d in decisions if isinstance(d, Promote)]
    assert promotions, "never promoted"
    first = promotions[0]
    assert first - kill_at <= 3.0 + 1.0
    assert all(isinstance(d, NoAction) for t, d in decisions if t < first)
    assert all(isinstance(d, NoAction) and d.state is GroupState.HEALTHY for t, d in decisions[:10])


def _decisions(world: World, policy: Policy, times: list[float]) -> list[Decision]:
    replay = Replay()
    out = []
    for t in times:
        verdict = replay.run(world, [t])
        (d,) = decide(replay.snapshots[-1], verdict, BROKERS, policy, now=t)
        out.append(d)
    return out


@pytest.mark.parametrize("kill_at", [10.0, 10.4, 10.99])
def test_loop_promotes_a_crash_within_one_interval(kill_at: float) -> None:
    world = replace(CRASHED, master_down=(kill_at, 1e9))
    times = seconds(0, 20)
    decisions = _decisions(world, Policy(), times)
    first = next(i for i, d in enumerate(decisions) if isinstance(d, Promote))
    assert 0 <= times[first] - kill_at < 1.0
    assert CRASH_WHY in decisions[first].reason


# A master a supervisor restarts: refused and dropped from 10.5 s, back as master at 12.5 s.
RESTARTED = replace(CRASHED, master_down=(10.5, 12.5))


def test_a_supervisor_restart_back_before_the_failover_starts_promotes_nothing() -> None:
    """Failovers blocked (anti-flap) while the restart runs: the crash is reported, and once
    the master answers again the group is healthy and nothing is promoted."""
    blocked_policy = gp(blocked_until=100.0, blocked_reason="failed over 1.0 min ago")
    decisions = _decisions(RESTARTED, blocked_policy, seconds(0, 14))
    assert not any(isinstance(d, Promote) for d in decisions)
    assert [d.state for d in decisions[11:]] == [
        GroupState.FAILOVER_BLOCKED,
        GroupState.FAILOVER_BLOCKED,
        GroupState.HEALTHY,
        GroupState.HEALTHY,
    ]
    assert decisions[11].reason.startswith(
        "no action: master broker-a@127.0.0.1:10911 objectively down: it refuses connections"
    )
    assert decisions[13] == NoAction(
        "broker-a", "no action: master broker-a@127.0.0.1:10911 healthy"
    )


def test_a_supervisor_restart_promoted_at_once_is_healthy_again_when_called_off() -> None:
    """Not blocked: promoted at the first failed probe; the failover runs (act calls it off
    when the old master answers before its fence stops it: tests/unit/test_crash_fence.py);
    once it is no longer running, the returned master is healthy and nothing more is done."""
    first = _decisions(RESTARTED, Policy(), seconds(0, 11))[-1]
    assert isinstance(first, Promote) and CRASH_WHY in first.reason
    running = _decisions(RESTARTED, gp(is_failover_running=True), seconds(0, 12))[-1]
    assert running.state is GroupState.FAILOVER_RUNNING
    after = _decisions(RESTARTED, Policy(), seconds(0, 13))[-1]
    assert after == NoAction("broker-a", "no action: master broker-a@127.0.0.1:10911 healthy")


def test_a_restarted_old_master_back_as_master_after_the_promotion_is_fenced() -> None:
    """Promoted at the crash; the old master's supervisor brings it back as master after the
    new one took over (its file was not rewritten in time): a split brain, fenced."""
    world = replace(CRASHED, master_down=(10.5, 19.5), slave_is_master_from=14.0)
    decisions = _decisions(world, Policy(), seconds(0, 20))
    assert isinstance(decisions[11], Promote) and CRASH_WHY in decisions[11].reason
    assert decisions[20] == Fence(
        "broker-a",
        "broker-a:0",
        A0,
        "broker-a:1",
        f"fencing broker-a:0@127.0.0.1:10911: {FENCE_WHY}",
        GroupState.DEGRADED,
    )


# --- plumbing ----------------------------------------------------------------------------------


def test_log_fields_is_the_canonical_line() -> None:
    fields = log_fields(one(DEAD))
    assert fields == {
        "event": f"promoting broker-a id=1 (offset {MIB + 1050}, 0 bytes behind, {UNSEEN}) "
        "because master unreachable for 3.0 s from 3 of 3 vantage points",
        "broker_name": "broker-a",
        "decision": "promote",
        "state": "MASTER_ODOWN",
        "old_master": "broker-a:0",
        "candidate": "broker-a:1",
        "candidate_offset": MIB + 1050,
        "expected_loss_bytes": 0,
        "max_loss_bytes": 250,
        "new_role": "ASYNC_MASTER",
    }
    assert log_fields(one(World()))["decision"] == "no_action"


def test_policy_from_config() -> None:
    config = parse_config(
        {
            "cluster_name": "c",
            "nameservers": [NS1],
            "brokers": [
                {
                    "broker_name": name,
                    "broker_id": 0,
                    "addr": addr,
                    "properties": "/p",
                    "start": ["a"],
                    "stop": ["b"],
                }
                for name, addr in (("broker-a", A0), ("broker-b", A1))
            ],
            "failover": {"max_lag_bytes": 2048},
            "groups": {"broker-b": {"auto_failover": False, "max_lag_bytes": 0}},
        }
    )
    policy = Policy.from_config(
        config, blocked_until={"broker-a": 99.0}, blocked_reason={"broker-a": "flap"}
    )
    assert policy.for_group("broker-a") == GroupFailoverPolicy(
        max_lag_bytes=2048, blocked_until=99.0, blocked_reason="flap"
    )
    assert policy.for_group("broker-b") == GroupFailoverPolicy(
        max_lag_bytes=0, is_auto_failover=False
    )


# --- properties --------------------------------------------------------------------------------

_configs = st.lists(
    st.builds(
        lambda name, i, addr, prio, nop: broker_config(
            i, addr, broker_name=name, priority=prio, no_promote=nop
        ),
        st.sampled_from(["broker-a", "broker-b"]),
        st.integers(0, 3),
        st.sampled_from([A0, A1, "127.0.0.1:10951", "127.0.0.1:10961"]),
        st.integers(-2, 2),
        st.booleans(),
    ),
    max_size=6,
).map(tuple)
_policies = st.builds(
    GroupFailoverPolicy,
    max_lag_bytes=st.one_of(st.none(), st.integers(0, 2**40)),
    is_auto_failover=st.booleans(),
    blocked_until=st.one_of(st.none(), st.floats(0, 2e6, allow_nan=False)),
    is_failover_running=st.booleans(),
).map(lambda p: Policy(default=p))


@hsettings(max_examples=300, deadline=None)
@given(snapshot_runs(), _configs, _policies, st.integers(1, 3))
def test_decide_never_raises_and_never_promotes_unsafely(
    snaps: list[ClusterSnapshot], brokers: tuple[BrokerConfig, ...], policy: Policy, quorum: int
) -> None:
    replay = Replay(settings=settings(quorum=quorum))
    for snap in snaps:
        verdict = replay.feed(snap)
        decisions = decide(snap, verdict, brokers, policy, now=snap.taken_at)
        assert tuple(d.broker_name for d in decisions) == snap.group_names()
        gpol = policy.default
        for d, g in zip(decisions, verdict.groups, strict=True):
            assert d.reason
            if isinstance(d, NoAction):
                continue
            assert not verdict.is_isolated and not verdict.is_tilted
            assert gpol.is_auto_failover and not gpol.is_failover_running
            if isinstance(d, Fence):
                assert g.is_split_brain and d.keep_key == g.master_key
                continue
            assert g.is_odown and not g.alive_evidence
            cand = snap.broker_at(d.candidate_addr)
            assert cand is not None and cand.is_up and cand.role == "SLAVE"
            config = next(b for b in brokers if b.key == d.candidate_key)
            assert not config.no_promote and config.addr == d.candidate_addr
            assert d.candidate_addr != g.master_addr
            if gpol.max_lag_bytes is not None:
                assert d.expected_loss_bytes is not None
                assert d.expected_loss_bytes <= gpol.max_lag_bytes
            assert gpol.blocked_until is None or snap.taken_at >= gpol.blocked_until


# --------------------------------------------------------------------------- the fence rule


def test_a_failed_fence_holds_the_group_awaiting_fence_until_the_retry() -> None:
    policy = gp(fence_retry_at=20.0, fence_wait_reason="its host could not be reached")
    waiting = one(DEAD, last=13.0, policy=policy)
    assert waiting == NoAction(
        "broker-a",
        "master broker-a:0@127.0.0.1:10911 unreachable from here and dropped by every "
        "answering nameserver 2.0 s ago; not promoting until it is fenced: its host could not "
        "be reached; next fence attempt in 7.0 s",
        GroupState.AWAITING_FENCE,
    )
    # Once the retry time has come, the promotion is decided again (and fenced first).
    assert isinstance(one(DEAD, last=13.0, policy=gp(fence_retry_at=12.0)), Promote)


def test_a_master_that_answers_again_ends_the_wait() -> None:
    healthy = World(base_offset=MIB)
    decision = one(healthy, policy=gp(fence_retry_at=1e9, fence_wait_reason="x"))
    assert isinstance(decision, NoAction) and decision.state is GroupState.HEALTHY


FENCE_TABLE = [
    ("stopped on its host", FenceEvidence(is_rewritten=True, is_stopped=True), "host"),
    ("rewritten, stop failed", FenceEvidence(is_rewritten=True, registered_on=2), None),
    ("stopped, not rewritten", FenceEvidence(is_stopped=True, registered_on=2), None),
    ("fence command", FenceEvidence(is_command_fenced=True, registered_on=2), "command"),
    ("dropped longer than the grace", FenceEvidence(deregistered_for_seconds=40.0), "nameservers"),
    ("dropped, grace not over", FenceEvidence(deregistered_for_seconds=10.0), None),
    ("still registered", FenceEvidence(registered_on=1), None),
    ("operator", FenceEvidence(is_operator_confirmed=True, registered_on=2), "operator"),
    ("nothing at all", FenceEvidence(), None),
    # The crash rule decides at the nameservers' drop: a reason to fail over, never a fence.
    (
        "dropped at a crash decision, a moment ago",
        FenceEvidence(deregistered_for_seconds=0.0),
        None,
    ),
]


@pytest.mark.parametrize(
    ("evidence", "path"), [(e, p) for _, e, p in FENCE_TABLE], ids=[n for n, _, _ in FENCE_TABLE]
)
def test_fenced_by(evidence: FenceEvidence, path: str | None) -> None:
    found, why = fenced_by(evidence, fence_grace_seconds=35.0)
    assert found == path
    assert why  # always one sentence, fenced or not
    if path is None and evidence.registered_on:
        assert "still registered" in why


def test_a_promotion_carries_what_the_nameservers_said_of_the_old_master() -> None:
    cut = World(master_down=KILL, base_offset=MIB)  # silent, still listed by both
    decision = one(cut, last=13.0, quorum=1)
    assert isinstance(decision, Promote)
    assert decision.old_master_registered_on == 2 and decision.deregistered_for_seconds is None


# --------------------------------------------------------------------------- a lowered role


def test_a_group_whose_role_a_failover_lowered_is_not_healthy() -> None:
    healthy = World(base_offset=MIB)  # its master answers as ASYNC_MASTER
    policy = gp(lowered=("SYNC_MASTER", "F1"))
    decision = one(healthy, policy=policy)
    assert decision.state is GroupState.DEGRADED
    assert decision.reason.endswith(
        "SYNC_MASTER lowered to ASYNC_MASTER since failover F1 (no slave was left); "
        "set brokerRole=SYNC_MASTER again once a slave is in sync"
    )


def test_a_restored_role_is_healthy_again() -> None:
    healthy = World(base_offset=MIB)
    decision = one(healthy, policy=gp(lowered=("ASYNC_MASTER", "F1")))  # it has that role
    assert decision.state is GroupState.HEALTHY and "lowered" not in decision.reason


def test_a_group_is_not_healthy_when_most_nameservers_do_not_answer() -> None:
    decision = one(World(ns_down=BOTH, base_offset=MIB))
    assert decision.state is GroupState.DEGRADED
    assert decision.reason.endswith(
        "only 0/2 nameservers answer: a promotion could not be verified"
    )
    # Half of them down is not most of them: the other still gives clients their routes.
    assert one(World(ns_down=(NS1,), base_offset=MIB)).state is GroupState.HEALTHY
