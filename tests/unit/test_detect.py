"""Failure detection: value tables over hand-built clusters, the traps, and properties."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.unit._worlds import (
    A0,
    A1,
    GARBAGE,
    NS1,
    NS2,
    NS3,
    PROBE,
    Replay,
    World,
    seconds,
    settings,
    snapshot_runs,
)
from watchdog.detect import DetectorState, detect
from watchdog.model import (
    BrokerObservation,
    ClusterSnapshot,
    GroupState,
    NamesrvObservation,
    Registration,
    format_seconds,
)

KILL = (10.5, 1e9)  # the master stops answering between the cycles at t=10 and t=11
BOTH = (NS1, NS2)
THREE_NS = (NS1, NS2, NS3)
# kill -9: connects are refused at once, and every nameserver drops the master's closed channel
CRASH = World(master_down=KILL, master_failure="refused", deregistered_by=BOTH)
CRASHED = (
    "master broker-a@127.0.0.1:10911 objectively down: it refuses connections and no answering "
    "nameserver lists it (gone from 2/2): a crash, down without waiting down_after (3.0 s)"
)

# (id, world, detect settings, last cycle time, state, reason, down votes, vantage points)
TABLE = [
    (
        "healthy",
        World(),
        {},
        14.0,
        GroupState.HEALTHY,
        "master broker-a@127.0.0.1:10911 healthy",
        0,
        3,
    ),
    (
        "slave down -> degraded",
        World(slave_down=(10.5, 1e9)),
        {},
        14.0,
        GroupState.DEGRADED,
        "master broker-a@127.0.0.1:10911 healthy, "
        "slave broker-a:1@127.0.0.1:10921 (no reply for 4.0 s) down",
        0,
        3,
    ),
    (
        "slave silent less than down_after is not down",
        World(slave_down=(10.5, 1e9)),
        {},
        12.0,
        GroupState.HEALTHY,
        "master broker-a@127.0.0.1:10911 healthy",
        0,
        3,
    ),
    (
        "master silent 2 s of down_after 3 s",
        World(master_down=KILL, deregistered_by=BOTH),
        {},
        12.0,
        GroupState.HEALTHY,
        "master broker-a@127.0.0.1:10911 not answering for 2.0 s (down after 3.0 s)",
        2,
        3,
    ),
    (
        "kill -9: no reply and gone from every nameserver",
        World(master_down=KILL, deregistered_by=BOTH),
        {},
        13.0,
        GroupState.MASTER_ODOWN,
        "master broker-a@127.0.0.1:10911 objectively down: "
        "no reply for 3.0 s, gone from 2/2 nameservers",
        3,
        3,
    ),
    (
        "kill -9 with quorum 3",
        World(master_down=KILL, deregistered_by=BOTH),
        {"quorum": 3},
        13.0,
        GroupState.MASTER_ODOWN,
        "master broker-a@127.0.0.1:10911 objectively down: "
        "no reply for 3.0 s, gone from 2/2 nameservers",
        3,
        3,
    ),
    (
        "one nameserver stale: still lists the dead master",
        World(master_down=KILL, deregistered_by=(NS1,)),
        {"quorum": 2},
        13.0,
        GroupState.MASTER_ODOWN,
        "master broker-a@127.0.0.1:10911 objectively down: "
        "no reply for 3.0 s, gone from 1/2 nameservers",
        2,
        3,
    ),
    (
        "one nameserver unreachable",
        World(master_down=KILL, deregistered_by=BOTH, ns_down=(NS2,)),
        {"quorum": 2},
        13.0,
        GroupState.MASTER_ODOWN,
        "master broker-a@127.0.0.1:10911 objectively down: "
        "no reply for 3.0 s, gone from 1/1 nameservers (1 unreachable)",
        2,
        2,
    ),
    (
        "SIGSTOP: still registered, secondary check cannot reach it",
        World(master_down=KILL, secondary=False),
        {"quorum": 2},
        13.0,
        GroupState.MASTER_ODOWN,
        "master broker-a@127.0.0.1:10911 objectively down: no reply for 3.0 s, "
        "still listed by 2/2 nameservers, secondary check dc2 cannot reach it",
        2,
        4,
    ),
    (
        "SIGSTOP without a secondary check: short of quorum 2",
        World(master_down=KILL),
        {"quorum": 2},
        13.0,
        GroupState.MASTER_SDOWN,
        "master broker-a@127.0.0.1:10911 subjectively down: no reply for 3.0 s, "
        "but only 1 of 3 vantage points see it down (quorum 2): still listed by 2/2 nameservers",
        1,
        3,
    ),
    (
        "cut off from the master only: secondary check still reaches it",
        World(master_down=KILL, secondary=True),
        {"quorum": 1},
        13.0,
        GroupState.MASTER_SDOWN,
        "master broker-a@127.0.0.1:10911 subjectively down: no reply for 3.0 s, "
        "but secondary check dc2 reaches it",
        1,
        4,
    ),
    (
        "secondary check unknown gives no vote",
        World(master_down=KILL, secondary=None),
        {"quorum": 2},
        13.0,
        GroupState.MASTER_SDOWN,
        "master broker-a@127.0.0.1:10911 subjectively down: no reply for 3.0 s, "
        "but only 1 of 3 vantage points see it down (quorum 2): still listed by 2/2 nameservers",
        1,
        3,
    ),
    (
        "slave offset still advancing: master alive",
        World(master_down=KILL, deregistered_by=BOTH, is_slave_advancing=True),
        {},
        13.0,
        GroupState.MASTER_SDOWN,
        "master broker-a@127.0.0.1:10911 subjectively down: no reply for 3.0 s, "
        "but slave broker-a:1 offset grew by 200 bytes in 2.0 s",
        3,
        3,
    ),
    (
        "garbage from the master counts as no answer",
        World(master_down=KILL, master_error=GARBAGE),
        {},
        13.0,
        GroupState.MASTER_ODOWN,
        "master broker-a@127.0.0.1:10911 objectively down: "
        "no reply for 3.0 s, still listed by 2/2 nameservers",
        1,
        3,
    ),
    (
        "watchdog cut off from everything",
        World(cut_off=(10.5, 1e9)),
        {},
        14.0,
        GroupState.ISOLATED,
        "watchdog isolated: reaches 0/2 nameservers and no slave",
        1,
        1,
    ),
    # --- the crash rule: refused + gone from every answering nameserver (a majority) ---------
    (
        "kill -9: refused and gone from 2/2 nameservers, down at the first failed probe",
        CRASH,
        {},
        11.0,
        GroupState.MASTER_ODOWN,
        CRASHED,
        3,
        3,
    ),
    (
        "kill -9: refused and gone, quorum 3",
        CRASH,
        {"quorum": 3},
        11.0,
        GroupState.MASTER_ODOWN,
        CRASHED,
        3,
        3,
    ),
    (
        "refused, gone from 2 of 3; the third restarted and knows nothing: it abstains",
        replace(CRASH, nameservers=THREE_NS, deregistered_by=BOTH, ns_empty=(NS3,)),
        {},
        11.0,
        GroupState.MASTER_ODOWN,
        "master broker-a@127.0.0.1:10911 objectively down: it refuses connections and no "
        "answering nameserver lists it (gone from 2/3, 1 knows nothing of broker-a): a crash, "
        "down without waiting down_after (3.0 s)",
        3,
        4,
    ),
    (
        "refused, gone from 1 of 2; the other knows nothing: 1 is no majority, down_after",
        replace(CRASH, deregistered_by=(NS1,), ns_empty=(NS2,)),
        {},
        12.0,
        GroupState.HEALTHY,
        "master broker-a@127.0.0.1:10911 not answering for 2.0 s (down after 3.0 s)",
        1,
        3,
    ),
    (
        "refused, gone from 1 of 2; the other knows nothing: down after down_after",
        replace(CRASH, deregistered_by=(NS1,), ns_empty=(NS2,)),
        {},
        13.0,
        GroupState.MASTER_ODOWN,
        "master broker-a@127.0.0.1:10911 objectively down: "
        "no reply for 3.0 s, gone from 1/2 nameservers",
        2,
        3,
    ),
    (
        "refused but still listed by one nameserver (heartbeats arrive, or a race): down_after",
        replace(CRASH, deregistered_by=(NS1,)),
        {},
        12.0,
        GroupState.HEALTHY,
        "master broker-a@127.0.0.1:10911 not answering for 2.0 s (down after 3.0 s)",
        1,
        3,
    ),
    (
        "refused but still listed by one nameserver: down after down_after",
        replace(CRASH, deregistered_by=(NS1,)),
        {},
        13.0,
        GroupState.MASTER_ODOWN,
        "master broker-a@127.0.0.1:10911 objectively down: "
        "no reply for 3.0 s, gone from 1/2 nameservers",
        2,
        3,
    ),
    (
        "refused, listed by every nameserver (a firewall REJECT): down_after",
        replace(CRASH, deregistered_by=()),
        {},
        12.0,
        GroupState.HEALTHY,
        "master broker-a@127.0.0.1:10911 not answering for 2.0 s (down after 3.0 s)",
        0,
        3,
    ),
    (
        "timeout and gone from every nameserver: down_after",
        replace(CRASH, master_failure="timeout"),
        {},
        12.0,
        GroupState.HEALTHY,
        "master broker-a@127.0.0.1:10911 not answering for 2.0 s (down after 3.0 s)",
        2,
        3,
    ),
    (
        "connection closed and gone from every nameserver: down_after",
        replace(CRASH, master_failure="closed"),
        {},
        12.0,
        GroupState.HEALTHY,
        "master broker-a@127.0.0.1:10911 not answering for 2.0 s (down after 3.0 s)",
        2,
        3,
    ),
    (
        "no route to the master and gone from every nameserver: down_after",
        replace(CRASH, master_failure="unreachable"),
        {},
        12.0,
        GroupState.HEALTHY,
        "master broker-a@127.0.0.1:10911 not answering for 2.0 s (down after 3.0 s)",
        2,
        3,
    ),
    (
        "refused and gone, but only 1 of 2 nameservers answers: no majority, down_after",
        replace(CRASH, ns_down=(NS2,)),
        {},
        12.0,
        GroupState.HEALTHY,
        "master broker-a@127.0.0.1:10911 not answering for 2.0 s (down after 3.0 s)",
        1,
        2,
    ),
    (
        "refused and gone from the 2 of 3 nameservers that answer: a majority",
        replace(CRASH, nameservers=THREE_NS, ns_down=(NS3,)),
        {},
        11.0,
        GroupState.MASTER_ODOWN,
        "master broker-a@127.0.0.1:10911 objectively down: it refuses connections and no "
        "answering nameserver lists it (gone from 2/2, 1 unreachable): a crash, down without "
        "waiting down_after (3.0 s)",
        3,
        3,
    ),
    (
        "refused and gone, but a secondary check reaches it",
        replace(CRASH, secondary=True),
        {},
        11.0,
        GroupState.MASTER_SDOWN,
        "master broker-a@127.0.0.1:10911 subjectively down: it refuses connections and no "
        "answering nameserver lists it (gone from 2/2), but secondary check dc2 reaches it",
        3,
        4,
    ),
    (
        "refused and gone, and a secondary check cannot reach it",
        replace(CRASH, secondary=False),
        {},
        11.0,
        GroupState.MASTER_ODOWN,
        CRASHED + ", secondary check dc2 cannot reach it",
        4,
        4,
    ),
    (
        "cut off from everything, every connect refused: isolated, no shortcut",
        World(cut_off=KILL, master_failure="refused"),
        {},
        11.0,
        GroupState.ISOLATED,
        "watchdog isolated: reaches 0/2 nameservers and no slave",
        0,
        1,
    ),
    (
        "nameservers gone but the slave answers: not isolated",
        World(master_down=KILL, ns_down=BOTH),
        {},
        13.0,
        GroupState.MASTER_ODOWN,
        "master broker-a@127.0.0.1:10911 objectively down: "
        "no reply for 3.0 s, no nameserver reachable (0/2)",
        1,
        1,
    ),
]


@pytest.mark.parametrize(
    ("world", "overrides", "last", "state", "reason", "down_votes", "vantage_points"),
    [pytest.param(*row[1:], id=row[0]) for row in TABLE],
)
def test_group_verdict_table(
    world: World,
    overrides: dict[str, object],
    last: float,
    state: GroupState,
    reason: str,
    down_votes: int,
    vantage_points: int,
) -> None:
    replay = Replay(settings=settings(**overrides))
    verdict = replay.run(world, seconds(0, last))
    (group,) = verdict.groups
    assert (group.state, group.reason) == (state, reason)
    assert (group.down_votes, group.vantage_points) == (down_votes, vantage_points)
    assert group.is_odown == (state is GroupState.MASTER_ODOWN)
    assert group.is_sdown == (state in (GroupState.MASTER_SDOWN, GroupState.MASTER_ODOWN)) or (
        state is GroupState.ISOLATED
    )
    assert group.master_addr == A0
    assert group.master_key == "broker-a:0"
    # The sentence names the crash exactly when the crash rule made the master down.
    assert group.is_crash_confirmed == ("no answering nameserver lists it" in reason)


def test_evidence_lists_name_each_vantage_point() -> None:
    replay = Replay(settings=settings(quorum=2))
    verdict = replay.run(
        World(master_down=KILL, deregistered_by=(NS1,), secondary=False), seconds(0, 13)
    )
    (group,) = verdict.groups
    assert group.down_evidence == (
        "no reply for 3.0 s",
        "gone from nameserver 127.0.0.1:9876",
        "secondary check dc2 cannot reach it",
    )
    assert group.alive_evidence == ()
    assert group.down_for_seconds == pytest.approx(3.0)


def test_master_pause_shorter_than_down_after_never_goes_down() -> None:
    # SIGSTOP for 2.8 s: probes at t=11 and t=12 fail, t=13 answers again.
    replay = Replay()
    replay.run(World(master_down=(10.1, 12.9), deregistered_by=()), seconds(0, 20))
    states = [v.groups[0].state for v in replay.verdicts]
    assert states == [GroupState.HEALTHY] * len(states)
    assert not any(v.groups[0].is_sdown for v in replay.verdicts)
    assert replay.verdicts[12].groups[0].reason == (
        "master broker-a@127.0.0.1:10911 not answering for 2.0 s (down after 3.0 s)"
    )
    assert replay.verdicts[13].groups[0].reason == "master broker-a@127.0.0.1:10911 healthy"


def test_master_returning_clears_down() -> None:
    replay = Replay()
    world = World(master_down=(10.5, 15.5), deregistered_by=BOTH)
    replay.run(world, seconds(0, 15))
    assert replay.verdicts[-1].groups[0].is_odown
    verdict = replay.run(world, [16.0])
    assert verdict.groups[0].state is GroupState.HEALTHY
    assert verdict.groups[0].down_for_seconds == 0.0


def test_master_never_seen_counts_from_first_failure() -> None:
    replay = Replay()
    world = World(master_down=(0.0, 1e9), deregistered_by=BOTH)
    replay.run(world, seconds(0, 2))
    assert replay.verdicts[-1].groups[0].state is GroupState.HEALTHY
    verdict = replay.run(world, [3.0])
    assert verdict.groups[0].is_odown
    assert verdict.groups[0].master_offset is None


def test_cut_off_from_everything_is_isolated_and_never_down() -> None:
    replay = Replay()
    replay.run(World(cut_off=(10.5, 1e9)), seconds(0, 30))
    for v in replay.verdicts[11:]:
        assert v.is_isolated
        assert v.reason == "watchdog isolated: reaches 0/2 nameservers and no slave"
        assert not v.groups[0].is_odown
        assert v.groups[0].state is GroupState.ISOLATED
    assert not replay.verdicts[10].is_isolated


# --- TILT ------------------------------------------------------------------------------


def test_late_cycle_enters_tilt_and_forgives_stale_silence() -> None:
    world = World(master_down=KILL, deregistered_by=BOTH)
    replay = Replay(settings=settings(tilt_cycles=3))
    replay.run(world, seconds(0, 10))
    # The watchdog was paused from t=10 to t=16: without TILT the master would look 5.5 s dead.
    tilted = [replay.run(world, [t]) for t in (16.0, 17.0, 18.0)]
    assert [v.is_tilted for v in tilted] == [True, True, True]
    assert tilted[0].reason == (
        "TILT: cycle started 5.0 s late (watchdog paused?); "
        "not trusting a down verdict for this and 2 more cycles"
    )
    assert tilted[2].reason.endswith("for this and 0 more cycles")
    for v in tilted:
        assert not v.groups[0].is_sdown
        assert not v.groups[0].is_odown
        assert v.groups[0].reason.startswith("TILT: cycle started 5.0 s late")
    # After TILT the silence counts from the last tilted cycle: down needs 3 fresh seconds.
    after = [replay.run(world, [t]) for t in (19.0, 20.0, 21.0)]
    assert [v.is_tilted for v in after] == [False, False, False]
    assert [v.groups[0].state for v in after] == [
        GroupState.HEALTHY,
        GroupState.HEALTHY,
        GroupState.MASTER_ODOWN,
    ]
    assert after[2].groups[0].reason == (
        "master broker-a@127.0.0.1:10911 objectively down: "
        "no reply for 3.0 s, gone from 2/2 nameservers"
    )


def test_cycle_late_within_tolerance_is_not_tilt() -> None:
    replay = Replay()
    replay.run(World(), seconds(0, 5))
    verdict = replay.run(World(), [8.0])  # 2.0 s late: tilt_late is 2 s, so not yet TILT
    assert not verdict.is_tilted
    verdict = replay.run(World(), [11.1])  # 2.1 s late
    assert verdict.is_tilted


def test_clock_going_back_is_tilt() -> None:
    replay = Replay()
    replay.run(World(), seconds(0, 5))
    verdict = replay.run(World(), [4.0])
    assert verdict.is_tilted
    assert verdict.reason.startswith("TILT: clock went back 1.0 s;")


def test_tilt_cycles_zero_still_forgives_the_gap() -> None:
    world = World(master_down=KILL, deregistered_by=BOTH)
    replay = Replay(settings=settings(tilt_cycles=0))
    replay.run(world, seconds(0, 10))
    verdict = replay.run(world, [16.0])
    assert not verdict.is_tilted
    assert not verdict.groups[0].is_sdown
    assert replay.run(world, [19.0]).groups[0].is_odown


def test_late_cycle_with_healthy_cluster_returns_to_healthy() -> None:
    replay = Replay(settings=settings(tilt_cycles=2))
    replay.run(World(), seconds(0, 5))
    states = [replay.run(World(), [t]) for t in (20.0, 21.0, 22.0)]
    assert [v.is_tilted for v in states] == [True, True, False]
    assert states[2].groups[0].reason == "master broker-a@127.0.0.1:10911 healthy"


# --- which broker is the master --------------------------------------------------------


def test_two_masters_is_split_brain_keeping_the_followed_one() -> None:
    # A0 killed; A1 promoted at t=14; A0 comes back at t=20 still configured as master.
    world = World(master_down=(10.5, 19.5), deregistered_by=BOTH, slave_is_master_from=14.0)
    replay = Replay()
    replay.run(world, seconds(0, 19))
    assert replay.verdicts[-1].groups[0].master_addr == A1
    assert replay.verdicts[-1].groups[0].reason == (
        "master broker-a@127.0.0.1:10921 healthy, "
        "slave broker-a:0@127.0.0.1:10911 (no reply for 9.0 s) down"
    )
    verdict = replay.run(world, [20.0])
    (group,) = verdict.groups
    assert group.is_split_brain
    assert group.master_addr == A1
    assert group.other_masters == (("broker-a:0", A0),)
    assert group.state is GroupState.DEGRADED
    assert group.reason == (
        "split brain in broker-a: broker-a:1@127.0.0.1:10921 and "
        "broker-a:0@127.0.0.1:10911 both answer as master"
    )


def test_promoted_master_is_kept_when_both_appear_in_the_same_cycle() -> None:
    # A1 is first seen as master in the very cycle A0 returns: without being told of the
    # promotion the detector would keep A0, the master it followed.
    world = World(master_down=(10.5, 14.5), deregistered_by=BOTH, slave_is_master_from=14.5)
    replay = Replay()
    replay.run(world, seconds(0, 14))
    told = Replay(state=replay.state.with_master("broker-a", A1, "ASYNC_MASTER"))
    assert replay.run(world, [15.0]).groups[0].master_addr == A0
    group = told.run(world, [15.0]).groups[0]
    assert (group.master_addr, group.other_masters) == (A1, (("broker-a:0", A0),))


def test_master_role_is_remembered_for_the_replacement() -> None:
    replay = Replay()
    verdict = replay.run(
        World(master_down=KILL, deregistered_by=BOTH, master_role="SYNC_MASTER"), seconds(0, 13)
    )
    assert verdict.groups[0].master_role == "SYNC_MASTER"
    assert verdict.groups[0].master_offset == 2000  # 1000 + 100 bytes/s until t=10


def test_unseen_bytes_are_the_peak_write_rate_times_the_masters_silence() -> None:
    replay = Replay()
    world = World(master_down=KILL, deregistered_by=BOTH)
    replay.run(world, seconds(0, 10))
    # Answering: nothing unseen.
    assert replay.verdicts[-1].groups[0].master_unseen_bytes == 0
    for t, silent in ((11.0, 1.0), (12.0, 2.0), (13.0, 3.0)):
        verdict = replay.run(world, [t])
        # 100 B/s, last heard at t=10 (its log stopped at 10.5: the bound covers that).
        assert verdict.groups[0].master_unseen_bytes == int(100 * silent)


def test_unseen_bytes_use_the_peak_rate_of_the_last_minute_only() -> None:
    """A burst counts while it is recent; a master never seen writing has nothing unseen."""

    class Burst(World):
        def master_offset(self, t: float) -> int:
            # 10 kB/s between t=5 and t=6, 100 B/s otherwise, until the kill at 70.5.
            stop = min(t, 70.5)
            return 1000 + int(100 * stop) + (10_000 if stop >= 6 else 0)

    replay = Replay()
    world = Burst(master_down=(70.5, 1e9), deregistered_by=BOTH)
    replay.run(world, seconds(0, 8))
    replay.run(world, [9.0])
    # The burst is in the window while the master is answering: nothing unseen yet.
    assert replay.verdicts[-1].groups[0].master_unseen_bytes == 0
    replay.run(world, seconds(10, 71))
    verdict = replay.run(world, [72.0])
    # At t=72 the burst (t=6) is older than 60 s: the peak is the steady 100 B/s.
    assert verdict.groups[0].master_unseen_bytes == 200

    recent = Replay()
    verdict = recent.run(Burst(master_down=(70.5, 1e9), deregistered_by=BOTH), seconds(0, 8))
    verdict = recent.run(Burst(master_down=(8.5, 1e9), deregistered_by=BOTH), [9.0, 10.0])
    # Killed 2.5 s after the burst: 10.1 kB/s, silent for 2 s.
    assert verdict.groups[0].master_unseen_bytes == 20_200

    never = Replay()
    verdict = never.run(World(master_down=(0.0, 1e9), deregistered_by=BOTH), seconds(0, 3))
    assert verdict.groups[0].master_unseen_bytes == 0


def test_a_master_silent_for_minutes_keeps_the_rate_it_wrote_at() -> None:
    """The rate window ends at its last answer: two minutes of silence is two minutes of what
    it may have written unseen, not nothing because its samples grew old."""
    replay = Replay()
    world = World(master_down=KILL, deregistered_by=BOTH)
    replay.run(world, seconds(0, 10))
    verdict = replay.run(world, seconds(11, 130))
    assert verdict.groups[0].master_unseen_bytes == 100 * 120  # 100 B/s, silent since t=10


def test_a_slaves_replication_is_no_write_rate() -> None:
    """A slave resyncing from scratch grows by megabytes a second; promoted, and killed in its
    turn, only its growth as a master counts (100 B/s, silent for 2 s)."""

    class Resync(World):
        def snapshot(self, t: float) -> ClusterSnapshot:
            snap = super().snapshot(t)
            slave = snap.brokers[1]
            # As a slave (t < 10) it copies 1 MB a second; as master it writes 100 B/s, and
            # dies at 20.5.
            offset = int(1_000_000 * t) if t < 10 else 10_000_000 + int(100 * (min(t, 20.5) - 10))
            up = t < 20.5
            return replace(
                snap,
                brokers=(
                    snap.brokers[0],
                    replace(slave, is_up=up, commitlog_max_offset=offset if up else None),
                ),
            )

    replay = Replay()
    world = Resync(master_down=(9.5, 1e9), deregistered_by=BOTH, slave_is_master_from=10.0)
    replay.run(world, seconds(0, 20))
    verdict = replay.run(world, [21.0, 22.0])
    group = verdict.groups[0]
    assert group.master_addr == A1
    assert group.master_unseen_bytes == 200


def test_master_by_nameserver_id0_when_nobody_answers_as_master() -> None:
    # Nothing in state; A0 does not answer; the nameservers list A1 as id 0.
    snap = ClusterSnapshot(
        cluster_name="c",
        taken_at=0.0,
        wall_time=0.0,
        nameservers=(
            NamesrvObservation(NS1, True, registrations=(Registration("broker-a", 0, A1),)),
        ),
        brokers=(
            BrokerObservation("broker-a", 0, A0, is_up=False, error="x"),
            BrokerObservation("broker-a", 1, A1, is_up=False, error="x"),
        ),
    )
    _, verdict = detect(DetectorState.initial(), snap, settings(), PROBE)
    assert verdict.groups[0].master_addr == A1


def test_broker_answering_as_slave_is_never_taken_for_master() -> None:
    snap = ClusterSnapshot(
        cluster_name="c",
        taken_at=0.0,
        wall_time=0.0,
        nameservers=(NamesrvObservation(NS1, True),),
        brokers=(
            BrokerObservation("broker-a", 0, A0, is_up=True, role="SLAVE", commitlog_max_offset=5),
        ),
    )
    _, verdict = detect(DetectorState.initial(), snap, settings(), PROBE)
    (group,) = verdict.groups
    assert group.master_addr is None
    assert group.state is GroupState.DEGRADED
    assert group.reason.startswith("no master known for broker-a")


def test_nameserver_knowing_nothing_of_the_group_abstains() -> None:
    # A freshly restarted nameserver lists nothing: that is no evidence the master died.
    base = World(master_down=KILL, deregistered_by=(NS1,))
    replay = Replay(settings=settings(quorum=2))
    replay.run(base, seconds(0, 10))
    for t in (11.0, 12.0, 13.0):
        snap = base.snapshot(t)
        empty = NamesrvObservation(NS2, True)
        snap = ClusterSnapshot(
            snap.cluster_name, t, snap.wall_time, (snap.nameservers[0], empty), snap.brokers
        )
        verdict = replay.feed(snap)
    (group,) = verdict.groups
    assert (group.down_votes, group.vantage_points) == (2, 3)
    assert group.is_odown


# --- the loop: kill at t, cycles every interval -----------------------------------------


@pytest.mark.parametrize("kill_at", [10.0, 10.01, 10.5, 10.99])
@pytest.mark.parametrize("interval", [1.0, 0.5])
def test_first_odown_within_down_after_plus_one_interval(kill_at: float, interval: float) -> None:
    probe = PROBE.model_copy(update={"interval_seconds": interval, "timeout_seconds": interval})
    replay = Replay(probe=probe)
    world = World(master_down=(kill_at, 1e9), deregistered_by=BOTH)
    first_odown = None
    for t in seconds(0, 30, interval):
        verdict = replay.run(world, [t])
        assert not verdict.is_tilted
        if verdict.groups[0].is_odown and first_odown is None:
            first_odown = t
    assert first_odown is not None
    down_after = replay.settings.down_after_seconds
    assert first_odown - kill_at <= down_after + interval
    assert first_odown - kill_at >= down_after - interval


@pytest.mark.parametrize("kill_at", [10.0, 10.01, 10.5, 10.99])
@pytest.mark.parametrize("interval", [1.0, 0.5])
def test_a_crash_is_down_at_the_first_probe_after_it(kill_at: float, interval: float) -> None:
    """kill -9: the first cycle after the kill sees the refusal and the nameservers' drop."""
    probe = PROBE.model_copy(update={"interval_seconds": interval, "timeout_seconds": interval})
    replay = Replay(probe=probe)
    world = replace(CRASH, master_down=(kill_at, 1e9))
    first_odown = None
    for t in seconds(0, 30, interval):
        group = replay.run(world, [t]).groups[0]
        if group.is_odown and first_odown is None:
            first_odown = t
            assert group.is_crash_confirmed
            assert group.down_evidence == (
                f"connection refused (no reply for {format_seconds(group.down_for_seconds)})",
                "gone from nameserver 127.0.0.1:9876",
                "gone from nameserver 127.0.0.1:9877",
            )
    assert first_odown is not None
    assert 0 <= first_odown - kill_at < interval


def test_a_supervisor_restart_back_before_the_failover_is_healthy_again() -> None:
    """A broker a supervisor restarts refuses connections and is dropped by the nameservers
    until it registers again, exactly like a crash: the rule calls it down at once. Back
    answering as master, the group is healthy again and its clocks start afresh; what was
    decided meanwhile is the fence's to undo (tests/unit/test_crash_fence.py)."""
    world = replace(CRASH, master_down=(10.5, 12.5))
    replay = Replay()
    replay.run(world, seconds(0, 14))
    groups = [v.groups[0] for v in replay.verdicts[10:]]
    assert [g.state for g in groups] == [
        GroupState.HEALTHY,
        GroupState.MASTER_ODOWN,
        GroupState.MASTER_ODOWN,
        GroupState.HEALTHY,
        GroupState.HEALTHY,
    ]
    assert [g.is_crash_confirmed for g in groups] == [False, True, True, False, False]
    back = groups[3]
    assert back.reason == "master broker-a@127.0.0.1:10911 healthy"
    assert (back.down_for_seconds, back.down_votes, back.deregistered_for_seconds) == (0, 0, None)
    # The master came back with the log it had: a deposed master would be judged by it.
    assert back.returned_offsets == (("broker-a:0", 2050),)


def test_a_supervisor_restart_slower_than_the_rule_is_still_one_odown_streak() -> None:
    """Refused and dropped for 6 s (a JVM boot): down from the first failed probe to the
    return, never flapping back to SDOWN or HEALTHY in between."""
    world = replace(CRASH, master_down=(10.5, 16.5))
    replay = Replay()
    replay.run(world, seconds(0, 18))
    states = [v.groups[0].state for v in replay.verdicts[11:]]
    assert states == [GroupState.MASTER_ODOWN] * 6 + [GroupState.HEALTHY] * 2


def test_a_tilted_watchdog_never_takes_the_crash_rule() -> None:
    """Paused from t=10 to t=16 while the master was killed at 10.5: the tilted cycles call
    nothing down, crash or not; the first trusted cycle sees fresh evidence (this cycle's
    refusal and the nameservers' view, no clock) and calls it down at once."""
    replay = Replay(settings=settings(tilt_cycles=3))
    replay.run(CRASH, seconds(0, 10))
    tilted = [replay.run(CRASH, [t]) for t in (16.0, 17.0, 18.0)]
    for v in tilted:
        assert v.is_tilted
        assert not v.groups[0].is_sdown and not v.groups[0].is_crash_confirmed
    after = replay.run(CRASH, [19.0])
    assert not after.is_tilted
    assert after.groups[0].is_odown and after.groups[0].is_crash_confirmed


def test_a_forgiven_late_cycle_never_takes_the_crash_rule() -> None:
    """tilt_cycles = 0: the late cycle is not tilted but forgives the gap; it calls nothing
    down either. The next one does, by the crash rule."""
    replay = Replay(settings=settings(tilt_cycles=0))
    replay.run(CRASH, seconds(0, 10))
    late = replay.run(CRASH, [16.0])
    assert not late.is_tilted and not late.groups[0].is_sdown
    assert replay.run(CRASH, [17.0]).groups[0].reason == CRASHED


# --- properties -------------------------------------------------------------------------

# Weighted towards the stories the rule is about: every nameserver dropping a refused master.
_FEW_NS = st.sampled_from([(), (), (), (NS1,), (NS2,), (NS3,), (NS1, NS3)])
_crash_worlds = st.builds(
    World,
    master_down=st.tuples(st.floats(5.0, 12.0), st.floats(12.0, 25.0)),
    master_failure=st.sampled_from(["refused", "refused", "timeout", "closed", "unreachable"]),
    deregistered_by=st.sampled_from([THREE_NS, THREE_NS, BOTH, (NS1,), (NS2, NS3), ()]),
    nameservers=st.sampled_from([BOTH, THREE_NS]),
    ns_empty=_FEW_NS,
    ns_down=_FEW_NS,
    secondary=st.sampled_from(["none", True, False, None]),
    is_slave_advancing=st.booleans(),
)


@hsettings(max_examples=200, deadline=None)
@given(_crash_worlds, st.integers(1, 4), st.integers(0, 3))
def test_the_crash_rule_changes_nothing_but_the_cycles_it_fires_in(
    world: World, quorum: int, tilt_cycles: int
) -> None:
    """The same failure story with the master's probes timing out instead: every cycle in
    which the crash rule does not fire is judged exactly as before (the rule keeps no memory),
    and it fires only on a refusal that a majority of nameservers confirm."""
    detect_settings = settings(quorum=quorum, tilt_cycles=tilt_cycles)
    crash, silence = Replay(settings=detect_settings), Replay(settings=detect_settings)
    times = seconds(0, 30)
    crash.run(world, times)
    silence.run(replace(world, master_failure="timeout"), times)
    for t, a, b in zip(times, crash.verdicts, silence.verdicts, strict=True):
        (g,) = a.groups
        if not g.is_crash_confirmed:
            assert a == b, t
            continue
        assert world.master_failure == "refused"
        up = [ns for ns in world.nameservers if ns not in world.ns_down]
        gone = [ns for ns in up if ns in world.deregistered_by and ns not in world.ns_empty]
        assert len(gone) > len(world.nameservers) // 2
        assert all(ns in world.deregistered_by or ns in world.ns_empty for ns in up)
        assert g.is_sdown and not a.is_tilted and not a.is_isolated
        assert g.is_odown == (not g.alive_evidence and g.down_votes >= quorum)


@hsettings(max_examples=300, deadline=None)
@given(snapshot_runs(), st.integers(1, 4), st.integers(0, 3))
def test_detect_never_raises_and_keeps_its_promises(
    snaps: list[ClusterSnapshot], quorum: int, tilt_cycles: int
) -> None:
    replay = Replay(settings=settings(quorum=quorum, tilt_cycles=tilt_cycles))
    for snap in snaps:
        verdict = replay.feed(snap)
        assert tuple(g.broker_name for g in verdict.groups) == snap.group_names()
        answered = {b.addr for b in snap.brokers if b.is_up}
        for g in verdict.groups:
            assert g.reason
            if g.master_addr in answered:
                assert not g.is_sdown and not g.is_odown
            if g.is_odown:
                assert g.is_sdown and not g.alive_evidence and g.down_votes >= quorum
                assert not verdict.is_isolated and not verdict.is_tilted
                assert g.state is GroupState.MASTER_ODOWN
            if g.is_sdown and not g.is_crash_confirmed:
                assert g.down_for_seconds >= replay.settings.down_after_seconds
            if g.is_crash_confirmed:
                # Only a refused master that a majority of nameservers dropped and none lists.
                # (Judged per group: an address the nameservers list in two groups is two
                # observations, and only this group's counts for this group's master.)
                seen = [
                    b
                    for b in snap.brokers
                    if b.addr == g.master_addr and b.broker_name == g.broker_name
                ]
                assert seen and all(b.failure == "refused" and not b.is_up for b in seen)
                up = snap.nameservers_up()
                assert not any(ns.ids_of(str(g.master_addr)) for ns in up)
                assert len(up) > len(snap.nameservers) // 2
                assert not verdict.is_isolated and not verdict.is_tilted
            if verdict.is_tilted:
                assert not g.is_sdown
            if verdict.is_isolated:
                assert g.state is GroupState.ISOLATED
            assert g.down_for_seconds >= 0.0
            assert g.vantage_points >= g.down_votes
