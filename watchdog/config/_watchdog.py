"""The whole file: WatchdogConfig, its cross-table checks and the lookups the rooms use."""

from __future__ import annotations

import re
import socket

from pydantic import Field, field_validator, model_validator

from ..model import AclCredentials, DockerCliError, parse_docker_cli
from ._acl import AclSettings
from ._base import Addr, Strict
from ._cluster import (
    BrokerConfig,
    DetectSettings,
    GroupPolicy,
    MetricsSettings,
    ProbeSettings,
    SecondaryCheck,
)
from ._etcd import EtcdSettings
from ._failover import FailoverSettings
from ._hosts import DockerHost, HostConfig, LocalHost
from ._notify import HooksConfig, NotifyConfig

__all__ = ["WatchdogConfig"]


# Instance names go into etcd keys (<prefix>/instances/<name>): host-name characters only.
_INSTANCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def _default_hosts() -> dict[str, HostConfig]:
    return {"local": LocalHost()}


class WatchdogConfig(Strict):
    cluster_name: str = Field(min_length=1)
    dry_run: bool = Field(False, description="decide and log, never act")
    nameservers: tuple[Addr, ...] = Field(min_length=1)
    state_dir: str = "/var/lib/rmq-watchdog"
    hosts: dict[str, HostConfig] = Field(default_factory=lambda: _default_hosts())
    brokers: tuple[BrokerConfig, ...] = Field(min_length=1)
    probe: ProbeSettings = Field(default_factory=ProbeSettings)
    detect: DetectSettings = Field(default_factory=DetectSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    secondary_checks: tuple[SecondaryCheck, ...] = ()
    failover: FailoverSettings = Field(default_factory=FailoverSettings)
    groups: dict[str, GroupPolicy] = Field(default_factory=dict)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    hooks: HooksConfig = Field(default_factory=HooksConfig)
    # This instance among several sharing [etcd]; its etcd key and what `status` shows.
    instance_name: str = Field(default_factory=socket.gethostname)
    etcd: EtcdSettings | None = None
    acl: AclSettings | None = None

    @field_validator("instance_name")
    @classmethod
    def _instance_name(cls, value: str) -> str:
        if not _INSTANCE_NAME.match(value):
            raise ValueError(
                f"{value!r} is not an instance name: up to 63 letters, digits, . _ - "
                "(set instance_name when the host name is not one)"
            )
        return value

    @field_validator("nameservers")
    @classmethod
    def _unique_nameservers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("a nameserver is listed twice")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> WatchdogConfig:
        seen_keys: set[tuple[str, int]] = set()
        seen_addrs: set[str] = set()
        for broker in self.brokers:
            if (broker.broker_name, broker.broker_id) in seen_keys:
                raise ValueError(f"broker {broker.key} is listed twice")
            if broker.addr in seen_addrs:
                raise ValueError(f"broker address {broker.addr} is listed twice")
            if broker.host not in self.hosts:
                raise ValueError(f"broker {broker.key} names unknown host {broker.host!r}")
            _check_docker_commands(broker, self.hosts[broker.host])
            seen_keys.add((broker.broker_name, broker.broker_id))
            seen_addrs.add(broker.addr)
        for name in self.groups:
            if name not in {b.broker_name for b in self.brokers}:
                raise ValueError(f"[groups.{name}] names no configured broker group")
        for check in self.secondary_checks:
            if check.host not in self.hosts:
                raise ValueError(
                    f"secondary check {check.name!r} names unknown host {check.host!r}"
                )
        vantage_points = 1 + len(self.nameservers) + len(self.secondary_checks)
        if self.detect.quorum > vantage_points:
            raise ValueError(
                f"detect.quorum {self.detect.quorum} can never be reached: there are at most "
                f"{vantage_points} vantage points (the watchdog's own probe, "
                f"{len(self.nameservers)} nameserver(s), {len(self.secondary_checks)} secondary "
                "check(s)), so no master would ever be judged down"
            )
        return self

    def acl_credentials(self) -> AclCredentials | None:
        """The ACL account every request to a broker is signed with; None without [acl]."""
        return None if self.acl is None else self.acl.credentials()

    def etcd_prefix(self) -> str | None:
        """Where this cluster's keys live in etcd; None without [etcd]."""
        if self.etcd is None:
            return None
        return self.etcd.prefix or f"/rmq-watchdog/{self.cluster_name}"

    def group_names(self) -> tuple[str, ...]:
        """Broker group names in the order they first appear."""
        return tuple(dict.fromkeys(b.broker_name for b in self.brokers))

    def group(self, broker_name: str) -> tuple[BrokerConfig, ...]:
        return tuple(b for b in self.brokers if b.broker_name == broker_name)

    def max_lag_bytes(self, broker_name: str) -> int:
        override = self.groups.get(broker_name)
        if override is not None and override.max_lag_bytes is not None:
            return override.max_lag_bytes
        return self.failover.max_lag_bytes

    def is_auto_failover(self, broker_name: str) -> bool:
        override = self.groups.get(broker_name)
        if override is not None and override.auto_failover is not None:
            return override.auto_failover
        return self.failover.auto_failover

    def broker_by_key(self, key: str) -> BrokerConfig | None:
        for b in self.brokers:
            if b.key == key:
                return b
        return None

    def broker(self, broker_name: str, broker_id: int) -> BrokerConfig | None:
        for b in self.brokers:
            if b.broker_name == broker_name and b.broker_id == broker_id:
                return b
        return None


def _check_docker_commands(broker: BrokerConfig, host: HostConfig) -> None:
    """On a docker host, start/stop through `docker` must be forms the backend carries out, on
    that host's own container: found here rather than in the middle of a failover."""
    if not isinstance(host, DockerHost):
        return
    for what, argv in (("start", broker.start), ("stop", broker.stop), ("kill", broker.kill)):
        if not argv:
            continue
        try:
            command = parse_docker_cli(argv)
        except DockerCliError as exc:
            raise ValueError(f"broker {broker.key} {what}: {exc}") from None
        if command is None:
            continue
        others = [c for c in command.containers if c.removeprefix("/") != host.container]
        if others:
            raise ValueError(
                f"broker {broker.key} {what}: {' '.join(others)} is not container "
                f"{host.container} of host {broker.host!r}; a docker host controls only its own"
            )
