"""The snapshot's per-cycle indexes answer exactly what a scan over every entry answers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from watchdog.model import BrokerObservation, ClusterSnapshot, NamesrvObservation, Registration

names = st.sampled_from(["broker-a", "broker-b", "broker-c", "x"])
addrs = st.sampled_from([f"10.0.0.{i}:10911" for i in range(1, 6)])
ids = st.integers(0, 3)
registrations = st.builds(Registration, broker_name=names, broker_id=ids, addr=addrs)
brokers = st.builds(
    BrokerObservation, broker_name=names, broker_id=ids, addr=addrs, is_up=st.booleans()
)
namesrvs = st.builds(
    NamesrvObservation,
    addr=st.just("10.0.1.1:9876"),
    is_up=st.booleans(),
    registrations=st.lists(registrations, max_size=12).map(tuple),
)


def scan_ids_of(ns: NamesrvObservation, addr: str) -> tuple[int, ...]:
    return tuple(r.broker_id for r in ns.registrations if r.addr == addr)


def scan_master_addr(ns: NamesrvObservation, name: str) -> str | None:
    for r in ns.registrations:
        if r.broker_name == name and r.broker_id == 0:
            return r.addr
    return None


def scan_group_registrations(ns: NamesrvObservation, name: str) -> tuple[Registration, ...]:
    return tuple(r for r in ns.registrations if r.broker_name == name)


@given(namesrvs, st.lists(st.tuples(addrs, names), max_size=6))
def test_namesrv_indexes_answer_like_a_scan(
    ns: NamesrvObservation, queries: list[tuple[str, str]]
) -> None:
    again = ns.answered_again(0.5)
    for addr, name in [*queries, ("nowhere:1", "nothing")]:
        for view in (ns, again):  # the copy shares the indexes once they exist
            assert view.ids_of(addr) == scan_ids_of(ns, addr)
            assert view.master_addr(name) == scan_master_addr(ns, name)
            assert view.group_registrations(name) == scan_group_registrations(ns, name)


@given(namesrvs)
def test_answered_again_is_the_same_view_with_the_new_latency(ns: NamesrvObservation) -> None:
    ns.ids_of("10.0.0.1:10911")  # build the indexes, so they are handed on
    again = ns.answered_again(0.25)
    assert again.registrations is ns.registrations
    assert (again.addr, again.is_up, again.latency_seconds, again.error) == (
        ns.addr,
        True,
        0.25,
        None,
    )
    assert again.group_registrations("broker-a") == scan_group_registrations(ns, "broker-a")


@given(st.lists(brokers, max_size=12), st.lists(names, max_size=4))
def test_snapshot_groups_answer_like_a_scan(
    observed: list[BrokerObservation], queries: list[str]
) -> None:
    snap = ClusterSnapshot("c", 1.0, 2.0, (), tuple(observed))
    assert snap.group_names() == tuple(dict.fromkeys(b.broker_name for b in observed))
    for name in [*queries, "nothing"]:
        assert snap.group(name) == tuple(b for b in observed if b.broker_name == name)
