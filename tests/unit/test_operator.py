"""Operator requests: value tables for manual_promote, the refusal rule and clean rejoins."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from tests.unit._worlds import A0, A1, NS1, NS2, Replay, World, seconds
from watchdog.config import WatchdogConfig, parse_config
from watchdog.decide import (
    CleanRejoin,
    Policy,
    Promote,
    Refusal,
    clean_rejoins,
    decide,
    manual_promote,
    operator_refusal,
)
from watchdog.detect import GroupVerdict
from watchdog.model import BrokerObservation, ClusterSnapshot, NamesrvObservation, Registration

MIB = 1_048_576
KILL = (10.5, 1e9)
DEAD = World(master_down=KILL, deregistered_by=(NS1, NS2), base_offset=MIB)
HEALTHY = World(base_offset=MIB)
LAGGING = World(master_down=KILL, deregistered_by=(NS1, NS2), base_offset=MIB, slave_lag_bytes=5000)
NOW = 1_700_000_013.0


def config(**failover: Any) -> WatchdogConfig:
    return parse_config(
        {
            "cluster_name": "XdclassCluster",
            "nameservers": [NS1, NS2],
            "state_dir": "/nonexistent",
            "failover": failover,
            "brokers": [
                {
                    "broker_name": "broker-a",
                    "broker_id": i,
                    "addr": addr,
                    "properties": f"/p{i}",
                    "start": ["true"],
                    "stop": ["true"],
                }
                for i, addr in ((0, A0), (1, A1))
            ],
        }
    )


def judged(world: World, last: float = 13.0) -> tuple[ClusterSnapshot, GroupVerdict]:
    replay = Replay()
    verdict = replay.run(world, seconds(0, last))
    (group,) = verdict.groups
    return replay.snapshots[-1], group


# --- the refusal rule ---------------------------------------------------------------------

NOT_DOWN = (
    f"master of broker-a is not objectively down (HEALTHY: master broker-a@{A0} healthy); "
    "use --force to fail over a live master"
)
BLOCKED = (
    "automatic and manual failovers of broker-a are blocked (failed over 5.0 min ago); "
    "`rmq-watchdog ack` or --force"
)

# (id, world, blocked_until, force, expected refusal)
REFUSALS: list[tuple[str, World, float | None, bool, str | None]] = [
    ("objectively down, not blocked", DEAD, None, False, None),
    ("a master that answers", HEALTHY, None, False, NOT_DOWN),
    ("a master that answers, --force", HEALTHY, None, True, None),
    ("blocked after a failover", DEAD, NOW + 60, False, BLOCKED),
    ("the block has run out", DEAD, NOW, False, None),
    ("blocked, --force", DEAD, NOW + 60, True, None),
    ("answers and blocked: the master is named first", HEALTHY, NOW + 60, False, NOT_DOWN),
]


@pytest.mark.parametrize(
    ("world", "blocked_until", "force", "expected"),
    [pytest.param(*r[1:], id=r[0]) for r in REFUSALS],
)
def test_operator_refusal(
    world: World, blocked_until: float | None, force: bool, expected: str | None
) -> None:
    _, group = judged(world)
    refusal = operator_refusal(
        group, blocked_until, "failed over 5.0 min ago", force=force, now=NOW
    )
    assert refusal == expected


# --- manual_promote -----------------------------------------------------------------------


def daemon_promotion(world: World, last: float = 13.0) -> Promote:
    """What the daemon itself decides for `world` at `last`."""
    replay = Replay()
    verdict = replay.run(world, seconds(0, last))
    (decision,) = decide(replay.snapshots[-1], verdict, config().brokers, Policy(), now=last)
    assert isinstance(decision, Promote)
    return decision


def because(decision: Promote, why: str) -> Promote:
    """`decision` with the operator's sentence: the same promotion, asked for another reason."""
    head, _, _ = decision.reason.partition(" because ")
    return replace(decision, reason=f"{head} because {why}")


# The master answers at t=13 with MIB + 1300, the slave holds the same.
LIVE = Promote(
    broker_name="broker-a",
    old_master_key="broker-a:0",
    old_master_addr=A0,
    candidate_key="broker-a:1",
    candidate_addr=A1,
    candidate_offset=MIB + 1300,
    expected_loss_bytes=0,
    max_loss_bytes=0,
    new_role="ASYNC_MASTER",
    reason=f"promoting broker-a id=1 (offset {MIB + 1300}, 0 bytes behind) because an operator "
    f"asked for it (master broker-a:0@{A0} is HEALTHY)",
    old_master_registered_on=2,
    deregistered_for_seconds=None,
    master_write_rate=100.0,
    decided_at=13.0,
)
ODOWN_WHY = "master objectively down for 3.0 s from 3 of 3 vantage points"
TOO_FAR = "no slave of broker-a can be promoted: broker-a:1 is 4950 bytes behind, more than 1024"

# (id, world, manual_promote keywords, [failover] settings, expected)
MANUAL: list[tuple[str, World, dict[str, Any], dict[str, Any], Promote | Refusal]] = [
    (
        "a dead master: the daemon's own promotion, in the operator's words",
        DEAD,
        {},
        {},
        because(daemon_promotion(DEAD), ODOWN_WHY),
    ),
    (
        "a dead master, --force: still a promotion after a death",
        DEAD,
        {"force": True},
        {},
        because(daemon_promotion(DEAD), ODOWN_WHY),
    ),
    (
        "a dead master, --fenced-by-operator",
        DEAD,
        {"fenced_by_operator": True},
        {},
        replace(because(daemon_promotion(DEAD), ODOWN_WHY), fenced_by_operator=True),
    ),
    (
        "a live master, dry run: what happens if it dies now",
        HEALTHY,
        {},
        {},
        LIVE,
    ),
    (
        "a live master, --force: a switch, the old master rejoins",
        HEALTHY,
        {"force": True},
        {},
        replace(LIVE, requires_master_down=False),
    ),
    (
        "a slave beyond max_lag_bytes",
        LAGGING,
        {},
        {"max_lag_bytes": 1024},
        Refusal("broker-a", TOO_FAR),
    ),
    (
        "a slave beyond max_lag_bytes, --force ignores the limit",
        LAGGING,
        {"force": True},
        {"max_lag_bytes": 1024},
        because(daemon_promotion(LAGGING), ODOWN_WHY),
    ),
    (
        "--to the master itself",
        DEAD,
        {"to_key": "broker-a:0"},
        {},
        Refusal(
            "broker-a",
            "no slave of broker-a can be promoted: broker-a:0 is not a slave of broker-a",
        ),
    ),
    (
        "--to the slave",
        DEAD,
        {"to_key": "broker-a:1"},
        {},
        because(daemon_promotion(DEAD), ODOWN_WHY),
    ),
]


@pytest.mark.parametrize(
    ("world", "kw", "failover", "expected"), [pytest.param(*r[1:], id=r[0]) for r in MANUAL]
)
def test_manual_promote(
    world: World, kw: dict[str, Any], failover: dict[str, Any], expected: Promote | Refusal
) -> None:
    snapshot, group = judged(world)
    kw = {"to_key": None, "force": False, **kw}
    assert manual_promote(snapshot, group, config(**failover), now=13.0, **kw) == expected


# --- clean rejoins ------------------------------------------------------------------------

POINT = 5_000  # the new master's log end when it was promoted


@dataclass(frozen=True)
class AfterFailover:
    """broker-a after a promotion: A1 is the master (writing 100 B/s past POINT); A0, the
    deposed master, is silent until `back_at` and then answers as `role` with its log at
    `back_offset`, growing `grows` bytes a second from then on (replicating from A1)."""

    back_at: float | None = 3.0  # None: still silent
    role: str = "SLAVE"
    back_offset: int = POINT
    grows: int = 0

    def snapshot(self, t: float) -> ClusterSnapshot:
        is_back = self.back_at is not None and t >= self.back_at
        master = BrokerObservation(
            "broker-a",
            1,
            A1,
            is_up=True,
            latency_seconds=0.002,
            role="ASYNC_MASTER",
            reported_broker_id=0,
            commitlog_max_offset=POINT + int(100 * t),
        )
        if is_back and self.back_at is not None:
            deposed = BrokerObservation(
                "broker-a",
                0,
                A0,
                is_up=True,
                latency_seconds=0.002,
                role=self.role,
                reported_broker_id=1 if self.role == "SLAVE" else 0,
                commitlog_max_offset=self.back_offset + int(self.grows * (t - self.back_at)),
            )
        else:
            deposed = BrokerObservation("broker-a", 0, A0, is_up=False, error="refused")
        registrations = (Registration("broker-a", 0, A1),) + (
            (Registration("broker-a", 1, A0),) if is_back else ()
        )
        nameservers = tuple(
            NamesrvObservation(ns, is_up=True, latency_seconds=0.001, registrations=registrations)
            for ns in (NS1, NS2)
        )
        return ClusterSnapshot(
            cluster_name="XdclassCluster",
            taken_at=t,
            wall_time=1_700_000_000.0 + t,
            nameservers=nameservers,
            brokers=(deposed, master),
        )


CHECK = {"broker-a": ("broker-a:0", POINT)}
CLEAN_AT_POINT = (CleanRejoin("broker-a", "broker-a:0", POINT, POINT),)

# (id, world, rejoin checks, groups whose failover runs, expected)
REJOINS: list[
    tuple[str, AfterFailover, dict[str, tuple[str, int]], frozenset[str], tuple[CleanRejoin, ...]]
] = [
    ("back as a slave at the promotion point", AfterFailover(), CHECK, frozenset(), CLEAN_AT_POINT),
    (
        "back as a slave short of the point",
        AfterFailover(back_offset=POINT - 100),
        CHECK,
        frozenset(),
        (CleanRejoin("broker-a", "broker-a:0", POINT - 100, POINT),),
    ),
    ("back past the point", AfterFailover(back_offset=POINT + 1), CHECK, frozenset(), ()),
    (
        "back at the point, replicated past it since: judged by what it came back with",
        AfterFailover(grows=100),
        CHECK,
        frozenset(),
        CLEAN_AT_POINT,
    ),
    ("back answering as master", AfterFailover(role="ASYNC_MASTER"), CHECK, frozenset(), ()),
    ("still silent", AfterFailover(back_at=None), CHECK, frozenset(), ()),
    ("its failover still runs", AfterFailover(), CHECK, frozenset({"broker-a"}), ()),
    ("nothing to check", AfterFailover(), {}, frozenset(), ()),
    (
        "a check for a group the cluster does not have",
        AfterFailover(),
        {"broker-b": ("broker-b:0", POINT)},
        frozenset(),
        (),
    ),
]


@pytest.mark.parametrize(
    ("world", "checks", "running", "expected"),
    [pytest.param(*r[1:], id=r[0]) for r in REJOINS],
)
def test_clean_rejoins(
    world: AfterFailover,
    checks: dict[str, tuple[str, int]],
    running: frozenset[str],
    expected: tuple[CleanRejoin, ...],
) -> None:
    replay = Replay()
    for t in seconds(0, 6):
        verdict = replay.feed(world.snapshot(t))
    assert clean_rejoins(replay.snapshots[-1], verdict, checks, running) == expected
