"""Several coordinators against a real 3-member etcd cluster (tests/etcd_cluster.py): one leader,
a killed or cut-off leader replaced, one member down survived, no leader without a quorum.

Leases are 3 s here (etcd's minimum is 2 s with its default election timeout). Nothing below
asserts a speed: the waits for a new leader are generous deadlines, and what is asserted about
time is the design's guarantee (a leader cut off is no leader once lease_ttl has passed since
the cut, whatever its cycles see), checked after that much time has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.etcd_cluster import EtcdCluster, EtcdMember, start_etcd_cluster
from watchdog.config import EtcdSettings
from watchdog.coord import (
    CoordError,
    Coordinator,
    CoordView,
    FenceRefused,
    GroupView,
    ask_leader,
    instance_observations,
)

pytestmark = pytest.mark.integration

TTL = 3
TIMEOUT_SECONDS = 1.0
# A new leader needs the old lease to expire in etcd (<= TTL after its last renewal, checked by
# etcd every 500 ms); the deadline only bounds a broken test.
NEW_LEADER_DEADLINE_SECONDS = 8 * TTL
MASTER = "127.0.0.1:10911"


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    with start_etcd_cluster(tmp_path / "etcd") as cluster:
        yield cluster


def coordinator(endpoints: Sequence[str], name: str) -> Coordinator:
    settings = EtcdSettings.model_validate(
        {"endpoints": list(endpoints), "lease_ttl": f"{TTL}s", "timeout": f"{TIMEOUT_SECONDS}s"}
    )
    return Coordinator(settings, instance_name=name, prefix="/rmq-watchdog/test")


def views(alive: bool = True) -> dict[str, GroupView]:
    return {"broker-a": GroupView(MASTER, down=not alive, alive=alive, reason="own probe")}


async def one_round(coords: Sequence[Coordinator]) -> list[CoordView]:
    """Every coordinator's cycle, one after another; never two leaders at any moment."""
    seen = []
    for c in coords:
        seen.append(await c.cycle(views()))
        assert sum(x.is_leader for x in coords) <= 1, [x.instance_name for x in coords]
    return seen


async def until(
    coords: Sequence[Coordinator],
    done: Callable[[list[CoordView]], bool],
    deadline_seconds: float = NEW_LEADER_DEADLINE_SECONDS,
) -> list[CoordView]:
    end = time.monotonic() + deadline_seconds
    while True:
        seen = await one_round(coords)
        if done(seen):
            return seen
        assert time.monotonic() < end, [v.reason for v in seen]
        await asyncio.sleep(0.1)


def leaders(seen: Sequence[CoordView]) -> list[str]:
    return [v.instance for v in seen if v.is_leader]


async def started(stack: AsyncExitStack, *coords: Coordinator) -> tuple[Coordinator, ...]:
    for c in coords:
        await stack.enter_async_context(c)
    return coords


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


# --- one leader -------------------------------------------------------------------------------


def test_one_leader_among_three_and_only_it_writes_state(etcd: EtcdCluster) -> None:
    async def body() -> None:
        async with AsyncExitStack() as stack:
            coords = await started(
                stack, *(coordinator(etcd.endpoints, f"wd-{i}") for i in (1, 2, 3))
            )
            seen = await one_round(coords)
            seen = await one_round(coords)
            assert leaders(seen) == ["wd-1"]  # the first to campaign
            assert {v.leader_name for v in seen} == {"wd-1"}
            assert all(v.is_reachable for v in seen)
            assert seen[0].fencing_token is not None and seen[0].fencing_token > 0
            assert [v.fencing_token for v in seen[1:]] == [None, None]
            assert seen[1].reason.startswith("not leader: wd-1 leads")

            revision = await coords[0].fenced_write({"epoch": b"7", "blocks/broker-a": b"{}"})
            assert revision > 0
            for follower in coords[1:]:
                with pytest.raises(FenceRefused, match="is not the leader"):
                    await follower.fenced_write({"epoch": b"8"})
            assert await coords[2].read_state() == {"epoch": b"7", "blocks/broker-a": b"{}"}
            assert await coords[2].read_state("blocks/") == {"blocks/broker-a": b"{}"}

            # A clean stop hands the lead over at once (no lease to wait for).
            await coords[0].close()
            seen = await one_round(coords[1:])
            assert leaders(seen) == ["wd-2"]

    run(body)


def test_published_views_are_seen_by_the_others(etcd: EtcdCluster) -> None:
    async def body() -> None:
        async with AsyncExitStack() as stack:
            a, b, c = await started(
                stack, *(coordinator(etcd.endpoints, f"wd-{i}") for i in "abc")
            )
            await a.cycle(views(alive=True))
            await b.cycle(views(alive=False))
            seen = await c.cycle({"broker-a": GroupView(MASTER, False, False, "1 probe failed")})
            assert [v.name for v in seen.instances] == ["wd-a", "wd-b", "wd-c"]
            by_name = {v.name: v.groups["broker-a"] for v in seen.instances}
            assert (by_name["wd-a"].alive, by_name["wd-a"].down) == (True, False)
            assert (by_name["wd-b"].alive, by_name["wd-b"].down) == (False, True)
            assert by_name["wd-c"].reason == "1 probe failed"

            observations = instance_observations(
                "wd-c", seen.instances, now_wall=time.time(), max_age_seconds=TTL
            )
            assert [(o.name, o.target_addr, o.is_alive) for o in observations] == [
                ("instance wd-a", MASTER, True),
                ("instance wd-b", MASTER, False),
            ]

            # A changed judgement is published at its next cycle.
            await a.cycle(views(alive=False))
            seen = await c.cycle(views())
            wd_a = seen.instance_view("wd-a")
            assert wd_a is not None and wd_a.groups["broker-a"].down

            # An instance that stops takes its view along (its lease is revoked).
            await b.close()
            seen = await c.cycle(views())
            assert [v.name for v in seen.instances] == ["wd-a", "wd-c"]

    run(body)


# --- operators' requests through etcd --------------------------------------------------------


def test_a_request_put_in_etcd_is_taken_once_by_the_leader_and_answered_in_order(
    etcd: EtcdCluster,
) -> None:
    async def body() -> None:
        async with AsyncExitStack() as stack:
            leader, follower = await started(
                stack, coordinator(etcd.endpoints, "wd-1"), coordinator(etcd.endpoints, "wd-2")
            )
            seen = await one_round([leader, follower])
            assert leaders(seen) == ["wd-1"]
            settings = leader._settings
            got: list[dict[str, Any]] = []

            async def ask() -> None:
                async for answer in ask_leader(
                    settings, leader.prefix, {"op": "ack", "broker_name": "broker-a"},
                    asked_by="wd-3", take_timeout_seconds=10,
                ):  # fmt: skip
                    got.append(answer)

            asker = asyncio.create_task(ask())
            taken: list[Any] = []
            for _ in range(50):
                await one_round([leader, follower])  # each cycle reads the waiting requests
                assert await follower.take_requests() == []  # only the leader takes
                taken = await leader.take_requests()
                if taken:
                    break
                await asyncio.sleep(0.1)
            (request,) = taken
            assert request.body == {"op": "ack", "broker_name": "broker-a", "from": "wd-3"}
            await one_round([leader, follower])
            assert await leader.take_requests() == []  # taken once: gone from etcd
            await leader.reply(request, 1, {"ok": True, "message": "done"})
            await leader.reply(request, 2, {"end": True})
            await asyncio.wait_for(asker, 10)
            assert got == [
                {"event": "taken", "leader": "wd-1", "term": seen[0].fencing_token},
                {"ok": True, "message": "done"},
            ]
            # The asking command revoked its lease: the answers are gone with it.
            assert not (await leader._session.get(leader.prefix + "/replies/", prefix=True))[0]

            # Nobody takes it: withdrawn after the timeout, one clear error.
            with pytest.raises(CoordError, match="no leader took the request within 1 s"):
                async for _ in ask_leader(
                    settings, leader.prefix, {"op": "ack"}, asked_by="wd-3",
                    take_timeout_seconds=1,
                ):  # fmt: skip
                    pass
            assert not (await leader._session.get(leader.prefix + "/requests/", prefix=True))[0]

            # The leader that took it dies before its last answer: the asker is told.
            got.clear()
            asker = asyncio.create_task(ask())
            for _ in range(50):
                await one_round([leader])
                if taken := await leader.take_requests():
                    break
                await asyncio.sleep(0.1)
            assert taken
            await leader.close(resign=False)
            await until([follower], lambda s: bool(leaders(s)))
            with pytest.raises(CoordError, match="lost the lead before its last answer"):
                await asyncio.wait_for(asker, 10)
            assert [a["event"] for a in got] == ["taken"]

    run(body)


# --- the leader lost --------------------------------------------------------------------------


def test_a_killed_leader_is_replaced(etcd: EtcdCluster) -> None:
    async def body() -> None:
        async with AsyncExitStack() as stack:
            coords = await started(
                stack, *(coordinator(etcd.endpoints, f"wd-{i}") for i in (1, 2, 3))
            )
            seen = await one_round(coords)
            old_token = seen[0].fencing_token
            assert leaders(seen) == ["wd-1"] and old_token is not None
            # The process dies: no resign, no revoke, no more renewals.
            await coords[0].close(resign=False)

            rest = coords[1:]
            seen = await until(rest, lambda s: bool(leaders(s)))
            (new,) = leaders(seen)
            winner = rest[[v.instance for v in seen].index(new)]
            new_token = seen[[v.instance for v in seen].index(new)].fencing_token
            assert new_token is not None and new_token > old_token
            assert {v.leader_name for v in seen} == {new}
            await winner.fenced_write({"epoch": b"2"})

    run(body)


@pytest.mark.parametrize("cut", ["freeze", "stop"])
def test_a_leader_cut_off_from_etcd_stops_within_lease_ttl(etcd: EtcdCluster, cut: str) -> None:
    """The leader talks to one member only; that member hangs (SIGSTOP) or goes (SIGTERM).

    That member is a raft follower: a raft leader frozen and thawed revokes the leases it
    thinks expired, live ones included, in the etcd Debian ships (etcd-io/etcd#15247, see the
    README), which made the new leader lose its key after the thaw now and then."""
    raft_leader = etcd.raft_leader()
    its_member = next(m for m in etcd.members if m is not raft_leader)
    others = [m for m in etcd.members if m is not its_member]

    async def body() -> None:
        async with AsyncExitStack() as stack:
            (lonely,) = await started(stack, coordinator([its_member.endpoint], "wd-lonely"))
            rest = await started(
                stack, *(coordinator([m.endpoint for m in others], f"wd-{i}") for i in (2, 3))
            )
            seen = await one_round([lonely, *rest])
            assert leaders(seen) == ["wd-lonely"]
            await lonely.fenced_write({"epoch": b"1"})

            getattr(its_member, cut)()
            cut_at = time.monotonic()
            assert lonely.lease_left_seconds <= TTL
            # Its cycles fail from now on (each within the request timeout), and no renewal
            # can be answered: once lease_ttl has passed, it is no leader in any case.
            while time.monotonic() < cut_at + TTL:
                view = await lonely.cycle(views())
                assert not view.is_reachable and not view.is_leader, view.reason
                await asyncio.sleep(0.2)
            assert not lonely.is_leader
            with pytest.raises(FenceRefused):
                await lonely.fenced_write({"epoch": b"2"})

            seen = await until(rest, lambda s: bool(leaders(s)))
            (new,) = leaders(seen)
            winner = rest[[v.instance for v in seen].index(new)]
            await winner.fenced_write({"epoch": b"3"})

            # Back in touch, the old leader follows the new one.
            if cut == "freeze":
                its_member.thaw()
            else:
                its_member.start()
            etcd.wait_healthy()
            seen = await until([lonely], lambda s: s[0].is_reachable)
            assert not seen[0].is_leader and seen[0].leader_name == new
            with pytest.raises(FenceRefused):
                await lonely.fenced_write({"epoch": b"4"})
            assert (await winner.read_state())["epoch"] == b"3"

    run(body)


# --- etcd's own failures ----------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["stop", "kill", "freeze"])
def test_one_member_down_changes_nothing(etcd: EtcdCluster, fault: str) -> None:
    """The raft leader itself is the member lost (the worst one: a new raft election)."""

    async def body() -> None:
        async with AsyncExitStack() as stack:
            coords = await started(
                stack, *(coordinator(etcd.endpoints, f"wd-{i}") for i in (1, 2, 3))
            )
            seen = await one_round(coords)
            assert leaders(seen) == ["wd-1"]
            raft_leader = etcd.raft_leader()
            assert raft_leader is not None
            getattr(raft_leader, fault)()
            # Through the election and past two lease TTLs the lead never moves (it may lapse
            # in a cycle that meets the election: the failsafe), and fenced writes commit.
            end = time.monotonic() + 2 * TTL
            committed: list[bytes] = []
            attempted: list[bytes] = []
            while time.monotonic() < end:
                seen = await one_round(coords)
                assert {v.leader_name for v in seen if v.is_reachable} <= {"wd-1"}
                if coords[0].is_leader:
                    value = str(len(attempted)).encode()
                    attempted.append(value)
                    with contextlib.suppress(FenceRefused):
                        await coords[0].fenced_write({"epoch": value})
                        committed.append(value)
                await asyncio.sleep(0.1)
            seen = await until(coords, lambda s: leaders(s) == ["wd-1"], 3 * TTL)
            assert committed
            assert all(v.leader_name == "wd-1" for v in seen)
            # A write refused for a lost reply may have landed all the same: the last one
            # committed or a later one, never an earlier one.
            stored = (await coords[1].read_state())["epoch"]
            assert stored in attempted[attempted.index(committed[-1]) :]

    run(body)


def test_no_quorum_no_leader_and_no_fenced_write(etcd: EtcdCluster) -> None:
    async def body() -> None:
        async with AsyncExitStack() as stack:
            coords = await started(
                stack, *(coordinator(etcd.endpoints, f"wd-{i}") for i in (1, 2, 3))
            )
            seen = await one_round(coords)
            assert leaders(seen) == ["wd-1"]
            stopped: list[EtcdMember] = list(etcd.members[:2])
            for member in stopped:
                member.stop()
            cut_at = time.monotonic()
            while time.monotonic() < cut_at + TTL:
                seen = await one_round(coords)
                await asyncio.sleep(0.2)
            seen = await one_round(coords)
            assert leaders(seen) == []
            assert not any(v.is_reachable for v in seen), [v.reason for v in seen]
            assert all("etcd unreachable" in v.reason for v in seen)
            for c in coords:
                with pytest.raises(FenceRefused):
                    await c.fenced_write({"epoch": b"9"})

            for member in stopped:
                member.start()
            etcd.wait_healthy()
            seen = await until(coords, lambda s: len(leaders(s)) == 1)
            assert all(v.is_reachable for v in seen)

    run(body)


# --- TLS and auth -----------------------------------------------------------------------------


def test_mutual_tls_and_password_auth(tmp_path: Path) -> None:
    """https members that want a client certificate, etcd's auth on: the coordinator logs in,
    and logs in again when every member restarted (simple tokens live in memory only)."""
    password_file = tmp_path / "etcd-password"
    password_file.write_text("root-secret\n")
    password_file.chmod(0o600)

    with start_etcd_cluster(tmp_path / "etcd", tls=True) as etcd:
        assert etcd.tls is not None
        etcd.enable_auth("root-secret")
        tls = {
            "cacert": str(etcd.tls.ca),
            "cert": str(etcd.tls.client_cert),
            "key": str(etcd.tls.client_key),
        }

        def secured(name: str, **overrides: Any) -> Coordinator:
            table = {
                "endpoints": list(etcd.endpoints),
                "lease_ttl": f"{TTL}s",
                "timeout": f"{TIMEOUT_SECONDS}s",
                **tls,
                "user": "root",
                "password_file": str(password_file),
                **overrides,
            }
            settings = EtcdSettings.model_validate(
                {k: v for k, v in table.items() if v is not None}
            )
            return Coordinator(settings, instance_name=name, prefix="/rmq-watchdog/tls")

        async def body() -> None:
            async with AsyncExitStack() as stack:
                a, b = await started(stack, secured("wd-a"), secured("wd-b"))
                seen = await one_round([a, b])
                assert leaders(seen) == ["wd-a"], [v.reason for v in seen]
                await a.fenced_write({"epoch": b"1"})
                assert [v.name for v in seen[1].instances] == ["wd-a", "wd-b"]

                # Every member restarts: the tokens are gone; a new login, same leader.
                for member in etcd.members:
                    member.restart()
                etcd.wait_healthy()
                seen = await until([a, b], lambda s: leaders(s) == ["wd-a"])
                await a.fenced_write({"epoch": b"2"})

                (wrong,) = await started(
                    stack, secured("wd-wrong", password="wrong", password_file=None)
                )
                view = await wrong.cycle(views())
                assert not view.is_reachable and "authentication failed" in view.reason

                # No client certificate: the TLS handshake fails, whatever the password.
                (anonymous,) = await started(stack, secured("wd-anon", cert=None, key=None))
                view = await anonymous.cycle(views())
                assert not view.is_reachable and not view.is_leader, view.reason
                assert leaders(await one_round([a, b])) == ["wd-a"]

        run(body)
