"""A sandbox's broker group as the failover benchmarks query it: addresses, answers, the topic.

bench/switchover.py and bench/data_safety.py set up and watch the same one-group sandbox
(broker-a master + slave): its addresses from `sandbox info`, each broker's live role and log
end, each nameserver's registrations, a bench topic created on the master and awaited on the
slave, and polling until something holds. Every query opens its own ClientPool and closes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

from watchdog.remoting import (
    ClientPool,
    RemotingError,
    RequestCode,
    create_topic,
    get_broker_config,
    get_broker_runtime_info,
    get_cluster_info,
    get_topic_route,
    invoke,
)
from watchdog.tools.sandbox import Sandbox

__all__ = [
    "GROUP",
    "BrokerView",
    "SandboxGroup",
    "broker_view",
    "create_bench_topic",
    "registrations",
    "run_with_pool",
    "topic_ready",
    "wait_until",
]

T = TypeVar("T")

GROUP = "broker-a"  # the sandbox's one broker group


def run_with_pool(factory: Callable[[ClientPool], Coroutine[Any, Any, T]]) -> T:
    """Run `factory(pool)` to completion on a fresh ClientPool, closed afterwards."""

    async def main() -> T:
        pool = ClientPool(connect_timeout_seconds=1.0)
        try:
            return await factory(pool)
        finally:
            await pool.close_all()

    return asyncio.run(main())


def wait_until(predicate: Callable[[], T | None], timeout_seconds: float, what: str) -> T:
    """Poll `predicate` every 0.2 s until it returns something true; TimeoutError past the
    timeout, naming `what` was awaited."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_seconds:g} s waiting for {what}")
        time.sleep(0.2)


@dataclass(frozen=True)
class SandboxGroup:
    """A running sandbox and its addresses, by sandbox process key ("broker-a:0")."""

    box: Sandbox
    nameservers: tuple[str, ...]
    addrs: dict[str, str]  # "broker-a:0" -> host:port
    properties: dict[str, Path]  # "broker-a:0" -> its broker.properties

    @classmethod
    def of(cls, box: Sandbox) -> Self:
        doc = box.info()
        return cls(
            box,
            tuple(n["addr"] for n in doc["nameservers"]),
            {f"{b['broker_name']}:{b['broker_id']}": b["addr"] for b in doc["brokers"]},
            {f"{b['broker_name']}:{b['broker_id']}": Path(b["properties"]) for b in doc["brokers"]},
        )

    @property
    def namesrv(self) -> str:
        """The nameserver list as clients take it ("a;b")."""
        return ";".join(self.nameservers)


@dataclass(frozen=True)
class BrokerView:
    """What a broker answers about itself right now."""

    role: str | None  # brokerRole: ASYNC_MASTER, SYNC_MASTER or SLAVE
    permission: str | None  # brokerPermission (6 read-write, 4 read-only)
    offset: int  # commitLogMaxOffset


def broker_view(addr: str) -> BrokerView | None:
    """The broker's live role, permission and commitLogMaxOffset; None if it does not answer."""

    async def ask(pool: ClientPool) -> BrokerView | None:
        try:
            config = await get_broker_config(pool.get(addr), timeout_seconds=3.0)
            info = await get_broker_runtime_info(pool.get(addr), timeout_seconds=3.0)
            return BrokerView(
                config.get("brokerRole"),
                config.get("brokerPermission"),
                int(info["commitLogMaxOffset"]),
            )
        except (RemotingError, KeyError, ValueError):
            return None

    return run_with_pool(ask)


def registrations(
    nameservers: Sequence[str], timeout_seconds: float = 3.0
) -> dict[str, dict[int, str] | None]:
    """Each nameserver's {brokerId: addr} of GROUP (None where it does not answer)."""

    async def ask(pool: ClientPool) -> dict[str, dict[int, str] | None]:
        out: dict[str, dict[int, str] | None] = {}
        for ns in nameservers:
            try:
                info = await get_cluster_info(pool.get(ns), timeout_seconds=timeout_seconds)
                out[ns] = dict(info.broker_addrs.get(GROUP, {}))
            except RemotingError:
                out[ns] = None
        return out

    return run_with_pool(ask)


def create_bench_topic(master: str, topic: str, queues: int) -> None:
    """`topic` with `queues` read and write queues on the master at `master` (host:port)."""

    async def create(pool: ClientPool) -> None:
        await create_topic(
            pool.get(master),
            topic,
            read_queue_nums=queues,
            write_queue_nums=queues,
            timeout_seconds=5.0,
        )

    run_with_pool(create)


def topic_ready(slave: str, nameservers: Sequence[str], topic: str) -> bool:
    """`topic` is in the slave's topic config (its SlaveSynchronize copies the master's every
    10 s), so a promoted slave serves it from its first registration, and every nameserver
    routes it to GROUP."""

    async def ask(pool: ClientPool) -> bool:
        try:
            reply = await invoke(
                pool.get(slave), RequestCode.GET_ALL_TOPIC_CONFIG, timeout_seconds=3.0
            )
            if f'"{topic}"'.encode() not in reply.body:
                return False
            for ns in nameservers:
                route = await get_topic_route(pool.get(ns), topic, timeout_seconds=3.0)
                if GROUP not in route.broker_addrs:
                    return False
            return True
        except RemotingError:
            return False

    return run_with_pool(ask)
