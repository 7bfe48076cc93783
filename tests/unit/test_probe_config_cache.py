"""The prober re-reads a broker's config only when it is new, restarted, failed or too old."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from watchdog.config import WatchdogConfig, parse_config
from watchdog.model import BrokerObservation
from watchdog.probe import Prober
from watchdog.remoting import ClientPool, RemotingCommand, parse_cluster_info
from watchdog.remoting._admin import RequestCode, ResponseCode
from watchdog.remoting.standin import StandinBroker, StandinServer

MASTER, SLAVE = "broker-a:0", "broker-a:1"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Cluster:
    """A stand-in nameserver and one master/slave group, and a prober with a settable clock."""

    def __init__(self, server: StandinServer, brokers: dict[str, StandinBroker]) -> None:
        self.server = server
        self.brokers = brokers
        self.clock = Clock()
        self.pool = ClientPool(connect_timeout_seconds=1.0)
        self.prober = Prober(self.config(), self.pool, clock=self.clock)

    def config(self, timeout: str = "1s") -> WatchdogConfig:
        return parse_config(
            {
                "cluster_name": "test",
                "nameservers": [n.addr for n in self.server.nodes if n.kind == "namesrv"],
                "probe": {"interval": "1s", "timeout": timeout, "connect_timeout": "1s"},
                "brokers": [
                    {
                        "broker_name": "broker-a",
                        "broker_id": int(key.split(":")[1]),
                        "addr": node.addr,
                        "properties": "/p",
                        "start": ["x"],
                        "stop": ["y"],
                    }
                    for key, node in self.brokers.items()
                ],
            }
        )

    def config_fetches(self) -> dict[str, int]:
        """GET_BROKER_CONFIG requests each broker saw since the last call."""
        out = {}
        for key, node in self.brokers.items():
            out[key] = sum(
                1 for c in node.recent_requests if c.code == RequestCode.GET_BROKER_CONFIG
            )
            node.recent_requests.clear()
        return out

    async def observe(self) -> dict[str, BrokerObservation]:
        snapshot = await self.prober.snapshot()
        by_addr = {b.addr: b for b in snapshot.brokers}
        return {key: by_addr[node.addr] for key, node in self.brokers.items()}


def run(scenario: Callable[[Cluster], Awaitable[None]]) -> None:
    async def main() -> None:
        server = StandinServer()
        ns = server.add_namesrv()
        brokers = {
            MASTER: server.add_broker("broker-a", 0, register_with=[ns]),
            SLAVE: server.add_broker("broker-a", 1, register_with=[ns]),
        }
        async with server:
            cluster = Cluster(server, brokers)
            try:
                await scenario(cluster)
            finally:
                await cluster.pool.close_all()

    asyncio.run(main())


def roles(observed: dict[str, BrokerObservation]) -> dict[str, tuple[str | None, int | None]]:
    return {k: (b.role, b.reported_broker_id) for k, b in observed.items()}


def test_config_is_fetched_once_while_boot_timestamp_stays() -> None:
    async def scenario(c: Cluster) -> None:
        first = await c.observe()
        assert c.config_fetches() == {MASTER: 1, SLAVE: 1}
        # Within half the master's refresh age (5 intervals), nothing is fetched again.
        for _ in range(2):
            c.clock.t += 1
            again = await c.observe()
            assert (
                roles(again) == roles(first) == {MASTER: ("ASYNC_MASTER", 0), SLAVE: ("SLAVE", 1)}
            )
            assert all(b.is_up and b.error is None for b in again.values())
        assert c.config_fetches() == {MASTER: 0, SLAVE: 0}

    run(scenario)


def test_a_new_boot_timestamp_fetches_the_config_again() -> None:
    async def scenario(c: Cluster) -> None:
        await c.observe()
        c.config_fetches()
        slave = c.brokers[SLAVE]
        # Restarted as master between two cycles that both reached it.
        slave.broker_role, slave.broker_id = "SYNC_MASTER", 0
        slave.boot_timestamp_ms += 5000
        c.clock.t += 1
        observed = await c.observe()
        assert roles(observed)[SLAVE] == ("SYNC_MASTER", 0)
        assert c.config_fetches() == {MASTER: 0, SLAVE: 1}
        c.clock.t += 1
        assert roles(await c.observe())[SLAVE] == ("SYNC_MASTER", 0)
        assert c.config_fetches() == {MASTER: 0, SLAVE: 0}

    run(scenario)


def test_a_broker_that_stopped_answering_has_its_config_fetched_again() -> None:
    async def scenario(c: Cluster) -> None:
        await c.observe()
        master = c.brokers[MASTER]
        await master.set_fault("refuse")
        c.clock.t += 1
        assert not (await c.observe())[MASTER].is_up
        # Back with another role and, unlike a real broker, the same bootTimestamp.
        master.broker_role, master.broker_id = "SLAVE", 1
        await master.set_fault("ok")
        c.config_fetches()
        c.clock.t += 1
        assert roles(await c.observe())[MASTER] == ("SLAVE", 1)
        assert c.config_fetches() == {MASTER: 1, SLAVE: 0}

    run(scenario)


def test_a_failed_config_fetch_is_retried_next_cycle() -> None:
    async def scenario(c: Cluster) -> None:
        master = c.brokers[MASTER]
        handle = master.handle

        def config_fails(cmd: RemotingCommand) -> RemotingCommand | None:
            if cmd.code == RequestCode.GET_BROKER_CONFIG:
                return master._reply(cmd, ResponseCode.SYSTEM_ERROR, remark="busy")
            return handle(cmd)

        master.handle = config_fails  # type: ignore[method-assign]
        observed = (await c.observe())[MASTER]
        assert observed.is_up and observed.role is None
        assert observed.error is not None and observed.error.startswith("broker config: ")
        master.handle = handle  # type: ignore[method-assign]
        c.config_fetches()
        c.clock.t += 1
        observed = (await c.observe())[MASTER]
        assert (observed.role, observed.error) == ("ASYNC_MASTER", None)
        assert c.config_fetches() == {MASTER: 1, SLAVE: 0}

    run(scenario)


def test_a_config_older_than_the_maximum_age_is_fetched_again() -> None:
    """Masters are re-read `master_config_refresh_factor` times as often as slaves: a live
    UPDATE_BROKER_CONFIG of a master's role decides the role its replacement takes."""

    async def scenario(c: Cluster) -> None:
        await c.observe()
        c.config_fetches()
        max_age = c.prober.config_max_age_seconds
        master_max_age = max_age / c.prober.master_config_refresh_factor
        # A live UPDATE_BROKER_CONFIG: the role changes, bootTimestamp does not.
        c.brokers[MASTER].broker_role = "SYNC_MASTER"
        c.clock.t += master_max_age / 2 - 1  # before any refresh is due
        assert roles(await c.observe())[MASTER] == ("ASYNC_MASTER", 0)
        assert c.config_fetches() == {MASTER: 0, SLAVE: 0}
        c.clock.t += master_max_age / 2 + 1  # the master's refresh is due, the slave's not
        assert roles(await c.observe())[MASTER] == ("SYNC_MASTER", 0)
        assert c.config_fetches() == {MASTER: 1, SLAVE: 0}
        c.clock.t += max_age  # every refresh is due
        await c.observe()
        assert c.config_fetches() == {MASTER: 1, SLAVE: 1}

    run(scenario)


def test_without_a_boot_timestamp_the_config_is_fetched_every_cycle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_boot(self: StandinBroker) -> dict[str, Any]:
        table = dict(original(self))
        del table["bootTimestamp"]
        return table

    original = StandinBroker.runtime_info
    monkeypatch.setattr(StandinBroker, "runtime_info", no_boot)

    async def scenario(c: Cluster) -> None:
        for _ in range(3):
            assert roles(await c.observe())[MASTER] == ("ASYNC_MASTER", 0)
            c.clock.t += 1
        assert c.config_fetches() == {MASTER: 3, SLAVE: 3}

    run(scenario)


def test_snapshot_with_and_without_the_cache_is_the_same() -> None:
    async def scenario(c: Cluster) -> None:
        await c.observe()
        c.clock.t += 1
        cached = await c.prober.snapshot()
        fresh = await Prober(c.config(), c.pool, clock=c.clock).snapshot()

        def comparable(b: BrokerObservation) -> BrokerObservation:
            # The runtime table carries the broker's uptime, which may tick between the two.
            return replace(b, latency_seconds=None, runtime=())

        assert [comparable(b) for b in cached.brokers] == [comparable(b) for b in fresh.brokers]

    run(scenario)


def test_an_unchanged_cluster_info_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    import watchdog.probe._prober as probe

    parsed: list[bytes] = []

    def counting(body: bytes) -> Any:
        parsed.append(body)
        return parse_cluster_info(body)

    monkeypatch.setattr(probe, "parse_cluster_info", counting)

    async def scenario(c: Cluster) -> None:
        first = (await c.prober.snapshot()).nameservers[0]
        second = (await c.prober.snapshot()).nameservers[0]
        assert len(parsed) == 1
        assert second.registrations is first.registrations and second.is_up
        assert [(r.broker_id, r.addr) for r in second.group_registrations("broker-a")] == [
            (0, c.brokers[MASTER].addr),
            (1, c.brokers[SLAVE].addr),
        ]
        ns = c.server.namesrvs[0]
        ns.unregister("broker-a", 0)  # the master's registration expired: a new body
        third = (await c.prober.snapshot()).nameservers[0]
        assert len(parsed) == 2
        assert third.master_addr("broker-a") is None and third.ids_of(c.brokers[SLAVE].addr) == (1,)
        await ns.set_fault("error")
        down = (await c.prober.snapshot()).nameservers[0]
        assert not down.is_up and down.error is not None and down.registrations == ()
        await ns.set_fault("ok")
        back = (await c.prober.snapshot()).nameservers[0]
        assert back.is_up and back.registrations == third.registrations and len(parsed) == 3

    run(scenario)


def test_a_connected_broker_that_stops_answering_times_out_like_a_single_request() -> None:
    async def scenario(c: Cluster) -> None:
        c.prober = Prober(c.config(timeout="200ms"), c.pool, clock=c.clock)
        await c.observe()  # connects: later cycles write on the open connections
        master = c.brokers[MASTER]
        await master.set_fault("hang")
        hung = (await c.observe())[MASTER]
        assert not hung.is_up
        assert hung.error == (
            f"RemotingTimeout: {master.addr}: no reply to request code 28 within 0.2s"
        )
        assert c.pool.get(master.addr).in_flight == 0  # a late reply finds nobody waiting
        await master.set_fault("ok")
        back = await c.observe()
        assert back[MASTER].is_up and back[MASTER].role == "ASYNC_MASTER"
        assert back[SLAVE].is_up and back[SLAVE].latency_seconds is not None

    run(scenario)


def test_a_cancelled_snapshot_leaves_no_request_waiting() -> None:
    async def scenario(c: Cluster) -> None:
        await c.observe()
        for node in c.brokers.values():
            await node.set_fault("hang")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(c.prober.snapshot(), 0.1)
        assert all(c.pool.get(n.addr).in_flight == 0 for n in c.brokers.values())
        for node in c.brokers.values():
            await node.set_fault("ok")
        assert all(b.is_up for b in (await c.observe()).values())

    run(scenario)


def test_garbage_from_a_connected_broker_is_a_protocol_error() -> None:
    async def scenario(c: Cluster) -> None:
        await c.observe()
        slave = c.brokers[SLAVE]
        await slave.set_fault("garbage")
        observed = (await c.observe())[SLAVE]
        assert not observed.is_up
        assert observed.error is not None and observed.error.startswith("ProtocolError: ")
        await slave.set_fault("nonsense")  # well-framed, wrong body
        observed = (await c.observe())[SLAVE]
        assert not observed.is_up and "broker runtime info" in (observed.error or "")

    run(scenario)


def test_a_forgotten_config_is_fetched_again_at_the_next_probe() -> None:
    """A broker promoted in place keeps its bootTimestamp: the daemon makes the prober forget
    its config, and the next snapshot shows its new role."""

    async def scenario(c: Cluster) -> None:
        await c.observe()
        c.config_fetches()
        slave = c.brokers[SLAVE]
        slave.broker_role, slave.broker_id = "ASYNC_MASTER", 0  # same bootTimestamp
        c.clock.t += 1
        assert roles(await c.observe())[SLAVE] == ("SLAVE", 1)  # cached
        c.prober.forget_config(slave.addr)
        c.clock.t += 1
        assert roles(await c.observe())[SLAVE] == ("ASYNC_MASTER", 0)
        assert c.config_fetches() == {MASTER: 0, SLAVE: 1}

    run(scenario)
