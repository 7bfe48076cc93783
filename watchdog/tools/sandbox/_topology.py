"""Where a sandbox's processes listen: the port plan of nameservers, metrics, brokers and (with
--etcd) the etcd members and the extra watchdog instances' metrics."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ._runtime import SandboxError

__all__ = [
    "HOST",
    "PORT_RANGE_ENV",
    "BrokerPlan",
    "Replication",
    "Topology",
    "auto_port_range",
    "pick_base_port",
    "plan_topology",
    "unbindable_ports",
]

HOST = "127.0.0.1"
NAMESERVER_COUNT = 2
# Ports below the Linux ephemeral range (32768+), so no outgoing connection can hold one.
_AUTO_PORT_LOW = 20000
_AUTO_PORT_HIGH = 32768
_BROKER_STRIDE = 10
# With --etcd: instances 2 and 3 serve metrics at base+3 and base+4, and the etcd members take
# base+13..base+18 (client, peer per member), ports no broker uses in any layout (broker i
# takes base+10(i+1)-1, +1 and +2), so the block's size does not change.
_INSTANCE_METRICS_OFFSETS = (3, 4)
_ETCD_OFFSETS = (13, 14, 15, 16, 17, 18)
PORT_RANGE_ENV = "RMQ_WATCHDOG_SANDBOX_PORTS"

Replication = Literal["async", "sync"]


@dataclass(frozen=True)
class BrokerPlan:
    broker_name: str
    broker_id: int
    role: str
    listen_port: int
    properties_name: str
    host: str = HOST  # brokerIP1/brokerIP2: the namespace host's address with --netns

    @property
    def key(self) -> str:
        return f"{self.broker_name}:{self.broker_id}"

    @property
    def name(self) -> str:
        return f"{self.broker_name}-{self.broker_id}"

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.listen_port}"

    @property
    def ports(self) -> tuple[int, int, int]:
        """listenPort, the fast (VIP) port listenPort-2, and the HA port listenPort+1."""
        return (self.listen_port, self.listen_port - 2, self.listen_port + 1)


@dataclass(frozen=True)
class Topology:
    base_port: int
    nameserver_ports: tuple[int, ...]
    metrics_port: int
    brokers: tuple[BrokerPlan, ...]
    nameserver_hosts: tuple[str, ...] = ()  # one per nameserver with --netns; else all HOST
    metrics_host: str = HOST
    # With --etcd: the metrics ports of watchdog instances 2, 3, ... and the etcd members'
    # (client, peer) ports, in member order; empty without.
    instance_metrics_ports: tuple[int, ...] = ()
    etcd_ports: tuple[int, ...] = ()

    @property
    def nameserver_addrs(self) -> tuple[str, ...]:
        hosts = self.nameserver_hosts or (HOST,) * len(self.nameserver_ports)
        return tuple(f"{h}:{p}" for h, p in zip(hosts, self.nameserver_ports, strict=True))

    @property
    def namesrv_addr(self) -> str:
        return ";".join(self.nameserver_addrs)

    def ports(self) -> tuple[int, ...]:
        found = [*self.nameserver_ports, self.metrics_port, *self.instance_metrics_ports]
        for broker in self.brokers:
            found.extend(broker.ports)
        found.extend(self.etcd_ports)
        return tuple(found)


def _span(groups: int, slaves: int) -> int:
    return _BROKER_STRIDE * (groups * (1 + slaves) + 1)


def plan_topology(
    base_port: int,
    *,
    groups: int = 1,
    slaves: int = 1,
    replication: Replication = "async",
    etcd: bool = False,
) -> Topology:
    """Lay the cluster out from `base_port`: nameservers at +0 and +1, the watchdog's metrics at
    +2, and broker i (0-based) at listenPort base+10(i+1)+1, e.g. 22011 and 22021 for base 22000
    (the fast port is listenPort-2, HA listenPort+1, as 10911/10909/10912 in a default install).
    With `etcd`, also the metrics of watchdog instances 2 and 3 at +3 and +4 and three etcd
    members' client and peer ports at +13..+18."""
    if not 1 <= groups <= 26:
        raise SandboxError(f"--groups must be between 1 and 26, not {groups}")
    if not 0 <= slaves <= 8:
        raise SandboxError(f"--slaves must be between 0 and 8, not {slaves}")
    if replication not in ("async", "sync"):
        raise SandboxError(f"--replication must be async or sync, not {replication!r}")
    if base_port < 1024 or base_port + _span(groups, slaves) > 65535:
        raise SandboxError(
            f"--base-port {base_port} does not leave room for {_span(groups, slaves)} ports "
            "between 1024 and 65535"
        )
    master_role = "SYNC_MASTER" if replication == "sync" else "ASYNC_MASTER"
    brokers: list[BrokerPlan] = []
    for g in range(groups):
        name = f"broker-{chr(ord('a') + g)}"
        for broker_id in range(slaves + 1):
            listen = base_port + _BROKER_STRIDE * (len(brokers) + 1) + 1
            if broker_id == 0:
                file, role = f"{name}.properties", master_role
            else:
                suffix = "s" if broker_id == 1 else f"s{broker_id}"
                file, role = f"{name}-{suffix}.properties", "SLAVE"
            brokers.append(BrokerPlan(name, broker_id, role, listen, file))
    return Topology(
        base_port=base_port,
        nameserver_ports=tuple(base_port + i for i in range(NAMESERVER_COUNT)),
        metrics_port=base_port + NAMESERVER_COUNT,
        brokers=tuple(brokers),
        instance_metrics_ports=tuple(base_port + o for o in _INSTANCE_METRICS_OFFSETS)
        if etcd
        else (),
        etcd_ports=tuple(base_port + o for o in _ETCD_OFFSETS) if etcd else (),
    )


def unbindable_ports(ports: Sequence[int]) -> list[int]:
    """The ports of `ports` that a server could not bind now.

    RocketMQ 4.x binds the wildcard address, so a port counts as free only if both 127.0.0.1
    and 0.0.0.0 can bind it (SO_REUSEADDR as Netty sets it, so TIME_WAIT does not count).
    """
    busy: list[int] = []
    for port in ports:
        for host in (HOST, "0.0.0.0"):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((host, port))
                except OSError:
                    busy.append(port)
                    break
    return busy


def auto_port_range() -> tuple[int, int]:
    """Where --base-port 0 looks: $RMQ_WATCHDOG_SANDBOX_PORTS as LOW-HIGH, else 20000-32767."""
    text = os.environ.get(PORT_RANGE_ENV, "").strip()
    if not text:
        return _AUTO_PORT_LOW, _AUTO_PORT_HIGH
    low, sep, high = text.partition("-")
    if not (sep and low.strip().isdigit() and high.strip().isdigit()):
        raise SandboxError(f"${PORT_RANGE_ENV} must be LOW-HIGH, e.g. 22000-22999, not {text!r}")
    lo, hi = int(low), int(high) + 1
    if not 1024 <= lo < hi <= 65536:
        raise SandboxError(f"${PORT_RANGE_ENV}={text!r} is not a port range above 1023")
    return lo, hi


def pick_base_port(
    groups: int = 1,
    slaves: int = 1,
    *,
    low: int = _AUTO_PORT_LOW,
    high: int = _AUTO_PORT_HIGH,
    rng: random.Random | None = None,
    etcd: bool = False,
) -> int:
    """A base port in [low, high) whose whole block is bindable (with `etcd`, its etcd and
    extra metrics ports too), tried from a random block on (so sandboxes started side by side
    rarely race for the same block)."""
    span = _span(groups, slaves)
    starts = list(range(low, high - span, span))
    if not starts:
        raise SandboxError(f"no room for {span} ports between {low} and {high}")
    first = (rng or random.Random()).randrange(len(starts))
    for base in starts[first:] + starts[:first]:
        topology = plan_topology(base, groups=groups, slaves=slaves, etcd=etcd)
        if not unbindable_ports(topology.ports()):
            return base
    raise SandboxError(f"no block of {span} free ports on {HOST} between {low} and {high}")
