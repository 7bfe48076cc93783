"""The [failover] table and the in-place promotion plug-in's secret file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ._base import ConfigError, Seconds, Strict, read_private_file

__all__ = ["FailoverSettings", "read_plugin_secret", "PLUGIN_SECRET_MIN_BYTES"]


class FailoverSettings(Strict):
    auto_failover: bool = True
    max_lag_bytes: int = Field(
        1024 * 1024,
        ge=0,
        description="refuse a promotion that would lose more than this (master - slave offset)",
    )
    promote_timeout_seconds: Seconds = Field(60.0, alias="promote_timeout")
    step_timeout_seconds: Seconds = Field(90.0, alias="step_timeout")
    recovery_block_seconds: Seconds = Field(3600.0, alias="recovery_block")
    old_master_policy: Literal["demote", "quarantine"] = "demote"
    # A promoted SYNC_MASTER with no slave left answers every send SLAVE_NOT_AVAILABLE (stored,
    # but the C++/Python client treats it as a failed send): "async" promotes it as ASYNC_MASTER
    # until an operator restores SYNC_MASTER; "keep" keeps the old master's role regardless.
    sync_master_without_slave: Literal["async", "keep"] = "async"
    canary: bool = True
    canary_timeout_seconds: Seconds = Field(60.0, alias="canary_timeout")
    canary_topic_prefix: str = Field("RMQ_WATCHDOG_CANARY", min_length=1)
    epoch_kv_namespace: str = Field("rmq-watchdog", min_length=1)
    # No fence, no promotion. When the old master's host cannot be reached to stop it and no
    # fence command succeeds, the nameservers' word is enough only once every answering one
    # (a majority) has dropped it for this long: longer than a client's 30 s route poll, so no
    # client still routes to it from a cached route that predates its drop.
    fence_grace_seconds: Seconds = Field(35.0, alias="fence_grace")
    # How long a group waits between two fence attempts while its master is awaiting a fence.
    fence_retry_seconds: Seconds = Field(30.0, alias="fence_retry")
    # How a promotion stops the candidate slave before its restart as master: "kill" runs the
    # broker's `kill` argv (kill -9: no graceful shutdown's fixed sleeps, waits and nameserver
    # unregisters; the next boot recovers the store as after a crash, and consumer offsets
    # committed to it in its last <= 5 s are lost); "graceful" runs its `stop` argv. A broker
    # without a `kill` argv is stopped with `stop` either way. Measured: bench/candidate_stop.py.
    candidate_stop: Literal["graceful", "kill"] = "kill"
    # How the candidate becomes the master: "restart" stops it and starts it as master (any
    # broker); "inplace" asks the broker plug-in (broker-plugin/README.md) to switch the running
    # slave, falling back to the restart path whenever the plug-in is absent or refuses.
    promotion: Literal["restart", "inplace"] = "restart"
    plugin_secret_file: str | None = Field(
        None,
        description="the secret shared with the brokers' plug-in (required with promotion = "
        '"inplace"); readable by the watchdog\'s user only',
    )

    @model_validator(mode="after")
    def _plugin_secret(self) -> FailoverSettings:
        if self.promotion == "inplace" and self.plugin_secret_file is None:
            raise ValueError('promotion = "inplace" needs plugin_secret_file')
        if self.plugin_secret_file is not None:
            try:
                read_plugin_secret(self.plugin_secret_file)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return self


PLUGIN_SECRET_MIN_BYTES = 16
_PLUGIN_SECRET_MAX_BYTES = 4096


def read_plugin_secret(path: str | Path) -> bytes:
    """The in-place promotion plug-in's secret from ``path``, as the plug-in reads it: the
    content without leading and trailing bytes <= 0x20, at least 16 bytes. ConfigError when the
    file is missing, readable by group or others, not a file, or holds no usable secret. Read
    at each use, so a rotated secret applies without a restart (as in the plug-in)."""
    p = Path(path)
    raw = read_private_file(
        p, "plugin_secret_file", "the secret", max_bytes=_PLUGIN_SECRET_MAX_BYTES
    )
    secret = raw.strip(bytes(range(0x21)))
    if len(secret) < PLUGIN_SECRET_MIN_BYTES:
        raise ConfigError(
            f"plugin_secret_file {p}: holds {len(secret)} bytes; the plug-in needs at least "
            f"{PLUGIN_SECRET_MIN_BYTES}"
        )
    return secret
