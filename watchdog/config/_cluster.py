"""The brokers, and the [probe], [detect], [metrics], [[secondary_checks]] and [groups] tables."""

from __future__ import annotations

from pydantic import Field, model_validator

from ._base import Addr, Seconds, Strict

__all__ = [
    "BrokerConfig",
    "ProbeSettings",
    "DetectSettings",
    "MetricsSettings",
    "SecondaryCheck",
    "GroupPolicy",
]


class BrokerConfig(Strict):
    broker_name: str = Field(min_length=1)
    broker_id: int = Field(ge=0, description="the id this broker had when it was configured")
    addr: Addr
    properties: str = Field(min_length=1, description="path of its properties file on its host")
    host: str = "local"
    start: tuple[str, ...] = Field(min_length=1)
    stop: tuple[str, ...] = Field(min_length=1)
    # Optional: end the broker at once, without its graceful shutdown (kill -9). Used to fence a
    # second master: a graceful stop unregisters its brokerId (0, the new master's id too) from
    # every nameserver, which leaves the group without a route until the new master's next
    # 30 s heartbeat.
    kill: tuple[str, ...] = ()
    priority: int = 0
    no_promote: bool = False

    @property
    def key(self) -> str:
        return f"{self.broker_name}:{self.broker_id}"


class ProbeSettings(Strict):
    interval_seconds: Seconds = Field(1.0, alias="interval")
    timeout_seconds: Seconds = Field(0.8, alias="timeout")
    connect_timeout_seconds: Seconds = Field(0.5, alias="connect_timeout")
    source_address: str | None = Field(
        None, description="local address probe connections are bound to (multi-homed hosts)"
    )

    @model_validator(mode="after")
    def _timeout_fits_interval(self) -> ProbeSettings:
        if self.interval_seconds <= 0:
            raise ValueError("interval must be greater than 0")
        if self.timeout_seconds > self.interval_seconds:
            raise ValueError("timeout must not exceed interval, or probes would overlap cycles")
        return self


class DetectSettings(Strict):
    down_after_seconds: Seconds = Field(3.0, alias="down_after")
    quorum: int = Field(
        2, ge=1, description="vantage points that must see the master down for ODOWN"
    )
    tilt_late_seconds: Seconds = Field(2.0, alias="tilt_late")
    tilt_cycles: int = Field(3, ge=0)


class MetricsSettings(Strict):
    listen: Addr = "127.0.0.1:9108"
    enabled: bool = True


class SecondaryCheck(Strict):
    """A probe of the master run from another host, as MHA's secondary_check_script."""

    name: str
    host: str
    command: tuple[str, ...] = Field(
        ("rmq-watchdog-ping", "{addr}"),
        min_length=1,
        description="argv; {addr} is replaced by the master address from this config",
    )
    timeout_seconds: Seconds = Field(5.0, alias="timeout")


class GroupPolicy(Strict):
    """Per broker group overrides of [failover]."""

    max_lag_bytes: int | None = Field(None, ge=0)
    auto_failover: bool | None = None
