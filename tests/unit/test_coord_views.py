"""Other instances' views as vantage points (a value table), and their JSON form in etcd."""

from __future__ import annotations

import json

import pytest

from watchdog.config import DetectSettings, ProbeSettings
from watchdog.coord import GroupView, InstanceView, LeaderRecord, instance_observations
from watchdog.coord._values import (
    REASON_MAX_CHARS,
    decode_instance,
    decode_leader,
    encode_instance,
    encode_leader,
)
from watchdog.detect import DetectorState, detect
from watchdog.model import (
    BrokerObservation,
    ClusterSnapshot,
    GroupState,
    NamesrvObservation,
    Registration,
    SecondaryObservation,
)

MASTER = "127.0.0.1:10911"
OTHER = "127.0.0.1:10921"
NOW = 1_700_000_000.0


def instance(name: str, *groups: tuple[str, GroupView], at: float = NOW) -> InstanceView:
    return InstanceView(name=name, started_at=at - 100, published_at=at, groups=dict(groups))


def view(master: str | None, down: bool, alive: bool, at: float = NOW) -> GroupView:
    return GroupView(master=master, down=down, alive=alive, reason="why", at=at)


# (the other instance's view of broker-a, what becomes of it: None = no observation)
TABLE: list[tuple[str, GroupView, bool | None]] = [
    ("down: a down vote", view(MASTER, True, False), False),
    ("alive: alive evidence", view(MASTER, False, True), True),
    ("undecided: nothing", view(MASTER, False, False), None),
    ("down and alive: the failsafe reading (alive)", view(MASTER, True, True), True),
    ("no master known: nothing", view(None, True, False), None),
    ("stale (older than max age): nothing", view(MASTER, True, False, at=NOW - 10.5), None),
    ("from the future beyond max age: nothing", view(MASTER, True, False, at=NOW + 11), None),
    ("a little old, within max age: counts", view(MASTER, True, False, at=NOW - 9.9), False),
    ("another master judged: still passed on", view(OTHER, True, False), False),
]


@pytest.mark.parametrize(("case", "group", "expected"), TABLE, ids=[t[0] for t in TABLE])
def test_value_table(case: str, group: GroupView, expected: bool | None) -> None:
    found = instance_observations(
        "wd-a", [instance("wd-b", ("broker-a", group))], now_wall=NOW, max_age_seconds=10.0
    )
    if expected is None:
        assert found == ()
    else:
        assert found == (
            SecondaryObservation(
                name="instance wd-b",
                target_addr=str(group.master),
                is_alive=expected,
                detail="broker-a: why",
                started_at=None,
            ),
        )


def test_own_view_is_not_a_vantage_point() -> None:
    found = instance_observations(
        "wd-a",
        [instance("wd-a", ("broker-a", view(MASTER, True, False)))],
        now_wall=NOW,
        max_age_seconds=10.0,
    )
    assert found == ()


def test_every_other_instance_and_group_in_name_order() -> None:
    instances = [
        instance(
            "wd-c", ("broker-b", view(OTHER, False, True)), ("broker-a", view(MASTER, True, False))
        ),
        instance("wd-a", ("broker-a", view(MASTER, True, False))),
        instance("wd-b", ("broker-a", view(MASTER, False, False))),
    ]
    found = instance_observations("wd-a", instances, now_wall=NOW, max_age_seconds=10.0)
    assert [(o.name, o.target_addr, o.is_alive) for o in found] == [
        ("instance wd-c", MASTER, False),
        ("instance wd-c", OTHER, True),
    ]


def _snapshot(taken_at: float, secondary: tuple[SecondaryObservation, ...]) -> ClusterSnapshot:
    """broker-a's master silent (timed out), its slave answering, 2 nameservers that still
    list the master: only other instances can make up the quorum."""
    ns = tuple(
        NamesrvObservation(
            addr=addr,
            is_up=True,
            registrations=(
                Registration("broker-a", 0, MASTER),
                Registration("broker-a", 1, OTHER),
            ),
        )
        for addr in ("127.0.0.1:9876", "127.0.0.1:9877")
    )
    brokers = (
        BrokerObservation("broker-a", 0, MASTER, is_up=False, failure="timeout"),
        BrokerObservation("broker-a", 1, OTHER, is_up=True, role="SLAVE", commitlog_max_offset=100),
    )
    return ClusterSnapshot("c", taken_at, NOW + taken_at, ns, brokers, secondary)


@pytest.mark.parametrize(
    ("others", "state"),
    [
        ((False, False), GroupState.MASTER_ODOWN),  # two more down votes: 3 >= quorum 3
        ((False,), GroupState.MASTER_SDOWN),  # 2 of 4 vantage points
        ((False, True), GroupState.MASTER_SDOWN),  # any instance's "alive" holds the failover
    ],
)
def test_detect_counts_them_as_it_counts_secondary_checks(
    others: tuple[bool, ...], state: GroupState
) -> None:
    """The integration the daemon will do: detect is unchanged, the observations are enough."""
    instances = [
        instance(f"wd-{i}", ("broker-a", view(MASTER, not alive, alive)))
        for i, alive in enumerate(others, start=2)
    ]
    extra = instance_observations("wd-1", instances, now_wall=NOW, max_age_seconds=10.0)
    settings = DetectSettings.model_validate({"down_after": "3s", "quorum": 3})
    probe = ProbeSettings()
    detector = DetectorState.initial()
    verdict = None
    for t in range(6):
        detector, verdict = detect(detector, _snapshot(float(t), extra), settings, probe)
    assert verdict is not None
    group = verdict.group("broker-a")
    assert group is not None
    assert group.state is state, group.reason
    assert group.vantage_points == 3 + len(others)


# --- the JSON in etcd -----------------------------------------------------------------------


def test_instance_round_trip() -> None:
    original = instance(
        "wd-b",
        ("broker-a", view(MASTER, True, False)),
        ("broker-b", GroupView(None, False, False, "", NOW)),
    )
    assert decode_instance(encode_instance(original)) == original


def test_a_long_reason_is_cut() -> None:
    long = GroupView(MASTER, True, False, "x" * 5000, NOW)
    decoded = decode_instance(encode_instance(instance("wd-b", ("broker-a", long))))
    assert decoded.groups["broker-a"].reason == "x" * REASON_MAX_CHARS


def test_unknown_keys_are_ignored() -> None:
    data = json.loads(encode_instance(instance("wd-b", ("broker-a", view(MASTER, True, False)))))
    data["version"] = 2
    data["groups"]["broker-a"]["votes"] = 3
    decoded = decode_instance(json.dumps(data).encode())
    assert decoded.groups["broker-a"].down is True


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"instance": 1, "started_at": 0, "at": 0}', "1 is not a string"),
        (b'{"instance": "a", "started_at": "x", "at": 0}', "'x' is not a number"),
        (b'{"instance": "a", "started_at": 0, "at": NaN}', "nan is not a number"),
        (b'{"instance": "a", "started_at": 0, "at": 0, "groups": []}', "groups is not an object"),
        (
            b'{"instance": "a", "started_at": 0, "at": 0, "groups": {"g": {"down": 1}}}',
            "1 is not true or false",
        ),
        (
            b'{"instance": "a", "started_at": 0, "at": 0, "groups": {"g": 5}}',
            "group 'g' is not an object",
        ),
    ],
)
def test_garbage_is_one_value_error(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_instance(raw)


def test_leader_record_round_trip_and_garbage() -> None:
    record = LeaderRecord("wd-a", NOW - 5, NOW)
    assert decode_leader(encode_leader(record)) == record
    with pytest.raises(ValueError, match="not a number"):
        decode_leader(b'{"instance": "wd-a", "started_at": true, "since": 0}')
