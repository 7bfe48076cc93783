"""The one master/lag rule that status, check and metrics report: a value table."""

from __future__ import annotations

import pytest

from watchdog.model import BrokerObservation, ClusterSnapshot, NamesrvObservation, Registration
from watchdog.observe import status_problems, status_report

M, S, S2 = "10.0.0.1:10911", "10.0.0.2:10911", "10.0.0.3:10911"


def broker(addr: str, broker_id: int, role: str | None, offset: int | None) -> BrokerObservation:
    return BrokerObservation(
        broker_name="broker-a",
        broker_id=broker_id,
        addr=addr,
        is_up=role is not None,
        role=role,
        commitlog_max_offset=offset,
    )


def snapshot(*brokers: BrokerObservation, id0: str | None = None) -> ClusterSnapshot:
    regs = (Registration("broker-a", 0, id0),) if id0 else ()
    ns = NamesrvObservation(addr="10.0.1.1:9876", is_up=True, registrations=regs)
    return ClusterSnapshot("c", 0.0, 0.0, (ns,), tuple(brokers))


# (case, brokers, id-0 registration, expected master addr, expected lag per addr)
CASES = [
    (
        "one master answering",
        [broker(M, 0, "ASYNC_MASTER", 1000), broker(S, 1, "SLAVE", 900)],
        M,
        M,
        {M: None, S: 100},
    ),
    (
        "the master role counts, not broker id 0",
        [broker(M, 0, "SLAVE", 800), broker(S, 1, "SYNC_MASTER", 1000)],
        M,
        S,
        {M: 200, S: None},
    ),
    (
        "master down: the registered id 0 is still the master, no lag against it",
        [broker(M, 0, None, None), broker(S, 1, "SLAVE", 900)],
        M,
        M,
        {M: None, S: None},
    ),
    (
        "nothing answers as master and nothing is registered",
        [broker(M, 0, None, None), broker(S, 1, "SLAVE", 900)],
        None,
        None,
        {M: None, S: None},
    ),
    (
        "split brain: no master and no lag, whatever the nameservers say",
        [
            broker(M, 0, "ASYNC_MASTER", 1000),
            broker(S, 1, "ASYNC_MASTER", 1200),
            broker(S2, 2, "SLAVE", 900),
        ],
        M,
        None,
        {M: None, S: None, S2: None},
    ),
    (
        "a slave without an offset has no lag",
        [broker(M, 0, "ASYNC_MASTER", 1000), broker(S, 1, "SLAVE", None)],
        M,
        M,
        {M: None, S: None},
    ),
]


@pytest.mark.parametrize(
    ("brokers", "id0", "master", "lags"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_master_and_lag(
    brokers: list[BrokerObservation], id0: str | None, master: str | None, lags: dict[str, int]
) -> None:
    snap = snapshot(*brokers, id0=id0)
    found = snap.master_of("broker-a")
    assert (found.addr if found else None) == master
    assert {b.addr: snap.replication_lag(b) for b in snap.brokers} == lags
    # status reports exactly this rule
    report = {b["addr"]: b for b in status_report(snap)["brokers"]}
    assert {a: r["lag_bytes"] for a, r in report.items()} == lags
    assert [a for a, r in report.items() if r["is_master"]] == ([master] if master else [])


def test_split_brain_lists_every_claimant() -> None:
    snap = snapshot(broker(M, 0, "ASYNC_MASTER", 1), broker(S, 1, "SYNC_MASTER", 2), id0=M)
    assert [b.addr for b in snap.master_claimants("broker-a")] == [M, S]


@pytest.mark.parametrize(
    ("brokers", "nameservers_up", "expected"),
    [
        ([broker(M, 0, "ASYNC_MASTER", 1), broker(S, 1, "SLAVE", 1)], [True, True, False], []),
        (
            [broker(M, 0, None, None), broker(S, 1, "SLAVE", 1)],
            [True, True, True],
            ["group broker-a: no broker answers as master"],
        ),
        (
            [broker(M, 0, "ASYNC_MASTER", 1), broker(S, 1, "SYNC_MASTER", 1)],
            [True, False, False],
            [
                "2 of 3 nameservers do not answer: 10.0.1.2:9876, 10.0.1.3:9876",
                f"group broker-a: split brain, {M}, {S} all answer as master",
            ],
        ),
    ],
)
def test_status_problems(
    brokers: list[BrokerObservation], nameservers_up: list[bool], expected: list[str]
) -> None:
    nameservers = tuple(
        NamesrvObservation(addr=f"10.0.1.{i}:9876", is_up=up)
        for i, up in enumerate(nameservers_up, start=1)
    )
    snap = ClusterSnapshot("c", 0.0, 0.0, nameservers, tuple(brokers))
    assert status_problems(snap) == expected
