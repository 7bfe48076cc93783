"""The [etcd] table: several watchdog instances coordinated through etcd, and its password file."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from ._base import Addr, ConfigError, PositiveSeconds, Strict, read_private_file

__all__ = ["EtcdSettings", "read_etcd_password"]


_ETCD_PREFIX = re.compile(r"^(/[A-Za-z0-9._-]+)+$")
# A password file larger than this is not a password (a wrong path, a log).
_PASSWORD_MAX_BYTES = 4096


class EtcdSettings(Strict):
    """The `[etcd]` table: several watchdog instances, one acting, coordinated through an etcd
    v3 cluster (watchdog/coord). Without it one instance runs alone under the state-dir lock.

        [etcd]
        endpoints = ["10.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379"]
        prefix = "/rmq-watchdog/prod"      # default: /rmq-watchdog/<cluster_name>
        lease_ttl = "10s"                  # leader and instance keys live this long unrenewed
        timeout = "2s"                     # per etcd request; default lease_ttl / 5
        cacert = "/etc/rmq-watchdog/etcd-ca.pem"   # TLS (https members); cert + key: mutual TLS
        cert = "/etc/rmq-watchdog/etcd-client.pem"
        key = "/etc/rmq-watchdog/etcd-client-key.pem"
        server_name = "etcd.example"       # checked in certificates; default: each endpoint's host
        user = "rmq-watchdog"
        password_file = "/etc/rmq-watchdog/etcd-password"  # or password = "..."
    """

    endpoints: tuple[Addr, ...] = Field(min_length=1, description="etcd members, host:port")
    prefix: str | None = Field(
        None, description="where this cluster's keys live; default /rmq-watchdog/<cluster_name>"
    )
    lease_ttl_seconds: PositiveSeconds = Field(10.0, alias="lease_ttl")
    timeout_seconds: PositiveSeconds | None = Field(
        None, alias="timeout", description="per etcd request; default lease_ttl / 5"
    )
    cacert: str | None = Field(None, description="CA bundle the members' certificates chain to")
    cert: str | None = Field(None, description="client certificate (mutual TLS), with key")
    key: str | None = Field(None, description="the client certificate's private key")
    server_name: str | None = Field(
        None, description="the name checked in every member's certificate instead of its host"
    )
    user: str | None = None
    password: str | None = Field(None, repr=False)
    password_file: str | None = Field(
        None, description="holds the user's password; readable by the watchdog's user only"
    )

    @field_validator("endpoints")
    @classmethod
    def _unique_endpoints(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("an endpoint is listed twice")
        return value

    @field_validator("prefix")
    @classmethod
    def _key_prefix(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.rstrip("/")
        if not _ETCD_PREFIX.match(value):
            raise ValueError(
                f"{value!r} is not a key prefix like /rmq-watchdog/prod (starts with /, "
                "letters, digits, . _ - between slashes)"
            )
        return value

    @field_validator("lease_ttl_seconds")
    @classmethod
    def _whole_seconds(cls, value: float) -> float:
        # etcd grants leases in whole seconds, and no less than 1.5 election timeouts (2 s
        # with etcd's defaults): a shorter TTL would silently become longer.
        if value != int(value) or value < 2:
            raise ValueError("etcd leases are whole seconds, at least 2s")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> EtcdSettings:
        if self.timeout_seconds is not None and self.timeout_seconds > self.lease_ttl_seconds / 2:
            raise ValueError(
                "timeout must be at most half of lease_ttl: a lease is renewed every "
                "lease_ttl / 3 and one slow request must not let it lapse"
            )
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together (mutual TLS)")
        if self.cert is not None and self.cacert is None:
            raise ValueError("cert and key need cacert (TLS is on when cacert is set)")
        for name in ("cacert", "cert", "key"):
            path = getattr(self, name)
            if path is not None and not os.access(path, os.R_OK):
                raise ValueError(f"{name} {path}: not a readable file")
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        has_password = self.password is not None or self.password_file is not None
        if has_password != (self.user is not None):
            raise ValueError("user and a password (password or password_file) go together")
        if self.password_file is not None:
            try:
                read_etcd_password(self.password_file)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return self

    @property
    def request_timeout_seconds(self) -> float:
        if self.timeout_seconds is not None:
            return self.timeout_seconds
        return self.lease_ttl_seconds / 5

    def password_text(self) -> str | None:
        """The password, from password or read now from password_file (rotation applies)."""
        if self.password_file is not None:
            return read_etcd_password(self.password_file)
        return self.password


def read_etcd_password(path: str | Path) -> str:
    """The etcd password in `path` without its trailing line break; ConfigError when the
    file is missing, not a file, readable by group or others, larger than 4 KiB, empty, or not
    UTF-8."""
    p = Path(path)
    raw = read_private_file(p, "password_file", "the password", max_bytes=_PASSWORD_MAX_BYTES)
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ConfigError(f"password_file {p}: not UTF-8 text") from None
    if not text:
        raise ConfigError(f"password_file {p}: empty")
    return text
