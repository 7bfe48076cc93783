"""The watchdog's TOML configuration: schema, validation, and one clear error for a bad file."""

from __future__ import annotations

import difflib
import os
import re
import socket
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .model import CONTAINER_NAME, DockerCliError, WatchdogError, parse_docker_cli, parse_duration

__all__ = [
    "ConfigError",
    "WatchdogConfig",
    "BrokerConfig",
    "LocalHost",
    "SshHost",
    "DockerHost",
    "HostConfig",
    "ProbeSettings",
    "DetectSettings",
    "EtcdSettings",
    "MetricsSettings",
    "SecondaryCheck",
    "FailoverSettings",
    "GroupPolicy",
    "load_config",
    "parse_config",
    "read_plugin_secret",
    "read_etcd_password",
    "PLUGIN_SECRET_MIN_BYTES",
    "EVENT_NAMES",
    "EventName",
    "HookName",
    "HooksConfig",
    "NotifyConfig",
    "WebhookConfig",
    "safe_url",
]


class ConfigError(WatchdogError):
    """A configuration file that cannot be used; the message names the file and the field."""


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("a duration is a string with its unit, e.g. '3s'")
    raise ValueError(f"a duration needs its unit: write '{value}s' or '{value}ms', not {value}")


Seconds = Annotated[float, BeforeValidator(_duration), Field(ge=0)]
_PositiveSeconds = Annotated[float, BeforeValidator(_duration), Field(gt=0)]


class _Strict(BaseModel):
    # Unknown keys are errors: a typo such as `down_afer` must not silently keep a default.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


EventName = Literal[
    "failover_started",
    "failover_step",
    "failover_succeeded",
    "failover_failed",
    "failover_blocked",
    "master_down",
    "fenced",
    "awaiting_fence",
]
EVENT_NAMES: tuple[EventName, ...] = get_args(EventName)
HookName = Literal["pre_failover", "post_failover", "on_failure"]


# --- notify and hooks ---------------------------------------------------------------------------


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class WebhookConfig(_Strict):
    """One `[[notify.webhook]]` receiver:

        [[notify.webhook]]
        url = "https://chat.example/hooks/rmq"
        headers = { Authorization = "Bearer ..." }
        events = ["failover_succeeded", "failover_failed"]  # default: all but failover_step
        format = "json"        # or "alertmanager": POST to http://am:9093/api/v2/alerts
        timeout = "5s"         # per attempt
        retries = 3            # after the first attempt, with exponential backoff
    """

    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    events: tuple[EventName, ...] = Field(
        tuple(e for e in EVENT_NAMES if e != "failover_step"),
        min_length=1,
        description="events sent to this receiver; failover_step is one message per step",
    )
    format: Literal["json", "alertmanager"] = "json"
    timeout_seconds: _PositiveSeconds = Field(5.0, alias="timeout")
    retries: int = Field(3, ge=0, le=10)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{safe_url(value)!r} is not an http:// or https:// URL")
        return value

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
            if any(c in text for c in "\r\n\0"):
                raise ValueError(f"header {name}: value must not contain line breaks or NUL")
        return value


class NotifyConfig(_Strict):
    """The `[notify]` table."""

    webhook: tuple[WebhookConfig, ...] = ()


def _argv(value: Any) -> Any:
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("a hook is a non-empty argv list, e.g. ['/usr/local/bin/x', '--y']")
        if any(isinstance(a, str) and "\0" in a for a in value):
            raise ValueError("a hook argument must not contain NUL")
        if isinstance(value[0], str) and not value[0].strip():
            raise ValueError("a hook's program (argv[0]) must not be empty")
    elif isinstance(value, str):
        raise ValueError("a hook is an argv list, not a string: no shell runs it")
    return value


_Argv = Annotated[tuple[str, ...], BeforeValidator(_argv)]


class HooksConfig(_Strict):
    """The `[hooks]` table: argv lists run on the watchdog's host, never through a shell.

        [hooks]
        pre_failover = ["/usr/local/bin/ask-change-board"]  # non-zero exit or timeout = veto
        post_failover = ["/usr/local/bin/repoint-monitoring"]
        on_failure = ["/usr/local/bin/page-oncall"]
        timeout = "30s"

    The argv is run exactly as written: nothing from the event is substituted into it, so no
    event text can become an argument, an option or shell syntax. The event reaches the hook
    only through RMQ_WATCHDOG_* environment variables (see `hook_environment`).
    """

    pre_failover: _Argv | None = Field(
        None, description="runs before a failover; non-zero exit or timeout vetoes it"
    )
    post_failover: _Argv | None = Field(None, description="runs after a successful failover")
    on_failure: _Argv | None = Field(None, description="runs after a failed failover")
    timeout_seconds: _PositiveSeconds = Field(30.0, alias="timeout")


def safe_url(url: str) -> str:
    """scheme://host:port/path: the query and user info often carry tokens, so never log them."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable url>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _check_addr(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port")
    return value


Addr = Annotated[str, BeforeValidator(lambda v: _check_addr(v) if isinstance(v, str) else v)]


# What a fence command may name; anything else in braces is a config error, so a typo such as
# `{adr}` is caught at load and not passed to a power controller verbatim.
FENCE_PLACEHOLDERS = ("addr", "host", "broker_name", "broker_key")


class _FencedHost(_Strict):
    """What every host kind shares: an optional STONITH-style fence command for its brokers."""

    fence_command: tuple[str, ...] = Field(
        (),
        description="argv run on the watchdog's machine (never a shell, never on this host) that "
        "makes this host's broker unable to take writes, e.g. power it off out of band; "
        "placeholders {addr} {host} {broker_name} {broker_key}",
    )
    fence_timeout_seconds: Seconds = Field(30.0, alias="fence_timeout")

    @field_validator("fence_command")
    @classmethod
    def _known_placeholders(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for arg in value:
            for name in re.findall(r"\{([^{}]*)\}", arg):
                if name not in FENCE_PLACEHOLDERS:
                    known = ", ".join("{" + n + "}" for n in FENCE_PLACEHOLDERS)
                    raise ValueError(f"unknown placeholder {{{name}}} in {arg!r}; known: {known}")
        return value


class LocalHost(_FencedHost):
    kind: Literal["local"] = "local"


class SshHost(_FencedHost):
    kind: Literal["ssh"]
    address: str
    port: int = Field(22, gt=0, lt=65536)
    user: str
    known_hosts: str | None = Field(
        None, description="known_hosts file; host keys are always checked"
    )
    client_keys: tuple[str, ...] = ()
    connect_timeout_seconds: Seconds = Field(5.0, alias="connect_timeout")


class DockerHost(_FencedHost):
    """A container on a Docker engine: commands run by exec, files go through its archive API,
    and `docker start|stop|restart|kill` of this container go to the engine API."""

    kind: Literal["docker"]
    container: str = Field(description="the container's name or id")
    socket: str = Field("/var/run/docker.sock", description="the engine's unix socket")

    @field_validator("container")
    @classmethod
    def _container_name(cls, value: str) -> str:
        if not CONTAINER_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a container name")
        return value.removeprefix("/")

    @field_validator("socket")
    @classmethod
    def _absolute_socket(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} is not an absolute path of a unix socket")
        return value


HostConfig = Annotated[LocalHost | SshHost | DockerHost, Field(discriminator="kind")]


class BrokerConfig(_Strict):
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


class ProbeSettings(_Strict):
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


class DetectSettings(_Strict):
    down_after_seconds: Seconds = Field(3.0, alias="down_after")
    quorum: int = Field(
        2, ge=1, description="vantage points that must see the master down for ODOWN"
    )
    tilt_late_seconds: Seconds = Field(2.0, alias="tilt_late")
    tilt_cycles: int = Field(3, ge=0)


class MetricsSettings(_Strict):
    listen: Addr = "127.0.0.1:9108"
    enabled: bool = True


class SecondaryCheck(_Strict):
    """A probe of the master run from another host, as MHA's secondary_check_script."""

    name: str
    host: str
    command: tuple[str, ...] = Field(
        ("rmq-watchdog-ping", "{addr}"),
        min_length=1,
        description="argv; {addr} is replaced by the master address from this config",
    )
    timeout_seconds: Seconds = Field(5.0, alias="timeout")


class GroupPolicy(_Strict):
    """Per broker group overrides of [failover]."""

    max_lag_bytes: int | None = Field(None, ge=0)
    auto_failover: bool | None = None


class FailoverSettings(_Strict):
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
    try:
        info = os.stat(p)
    except OSError as exc:
        raise ConfigError(f"plugin_secret_file {p}: cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"plugin_secret_file {p}: not a regular file")
    if info.st_mode & 0o044:
        raise ConfigError(
            f"plugin_secret_file {p}: readable by group or others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); chmod 600 it"
        )
    if info.st_size > _PLUGIN_SECRET_MAX_BYTES:
        raise ConfigError(f"plugin_secret_file {p}: larger than {_PLUGIN_SECRET_MAX_BYTES} bytes")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"plugin_secret_file {p}: cannot read: {exc.strerror or exc}") from None
    secret = raw.strip(bytes(range(0x21)))
    if len(secret) < PLUGIN_SECRET_MIN_BYTES:
        raise ConfigError(
            f"plugin_secret_file {p}: holds {len(secret)} bytes; the plug-in needs at least "
            f"{PLUGIN_SECRET_MIN_BYTES}"
        )
    return secret


# Instance names go into etcd keys (<prefix>/instances/<name>): host-name characters only.
_INSTANCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_ETCD_PREFIX = re.compile(r"^(/[A-Za-z0-9._-]+)+$")


class EtcdSettings(_Strict):
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
    lease_ttl_seconds: _PositiveSeconds = Field(10.0, alias="lease_ttl")
    timeout_seconds: _PositiveSeconds | None = Field(
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
    file is missing, not a file, readable by group or others, empty, or not UTF-8."""
    p = Path(path)
    try:
        info = os.stat(p)
    except OSError as exc:
        raise ConfigError(f"password_file {p}: cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"password_file {p}: not a regular file")
    if info.st_mode & 0o044:
        raise ConfigError(
            f"password_file {p}: readable by group or others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); chmod 600 it"
        )
    try:
        text = p.read_bytes().decode("utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"password_file {p}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"password_file {p}: not UTF-8 text") from None
    if not text:
        raise ConfigError(f"password_file {p}: empty")
    return text


def _default_hosts() -> dict[str, HostConfig]:
    return {"local": LocalHost()}


class WatchdogConfig(_Strict):
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


def _field_path(loc: tuple[int | str, ...], data: Any) -> str:
    """Render a pydantic location as the TOML reader sees it: brokers[1].addr."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("LocalHost", "SshHost", "DockerHost", "local", "ssh", "docker"):
            continue  # the discriminated-union branch name means nothing to the reader
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _errors(exc: ValidationError, data: Any) -> Iterator[str]:
    errors = exc.errors()
    deeper = {tuple(e["loc"][:-1]) for e in errors if len(e["loc"]) > 1}
    for err in errors:
        # pydantic also calls a list "too short" when its only item failed; say it once.
        if err["type"] == "too_short" and any(
            loc[: len(err["loc"])] == tuple(err["loc"]) for loc in deeper
        ):
            continue
        msg = str(err["msg"]).removeprefix("Value error, ")
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _did_you_mean(loc)
        elif err["type"] == "too_short":
            least = (err.get("ctx") or {}).get("min_length", 1)
            msg = f"must list at least {least} item{'s' if least != 1 else ''}"
        yield f"{_field_path(loc, data)}: {msg}"


def _did_you_mean(loc: tuple[int | str, ...]) -> str:
    """The known key closest to an unknown one, from the table it was written in."""
    branches: dict[str, Any] = {"local": LocalHost, "ssh": SshHost, "docker": DockerHost}
    model: Any = WatchdogConfig
    for item in loc[:-1]:
        if isinstance(item, int):
            continue
        if item in branches:
            model = branches[str(item)]
            continue
        field = getattr(model, "model_fields", {}).get(str(item)) if model is not None else None
        if field is None:
            continue  # a [hosts.NAME] / [groups.NAME] key: the model stays that of its values
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        models = [a for a in args if hasattr(a, "model_fields")]
        if hasattr(annotation, "model_fields"):
            model = annotation
        elif models:
            model = models[-1]
    if model is None or not hasattr(model, "model_fields"):
        return ""
    names = [f.alias or n for n, f in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), names, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def parse_config(data: dict[str, Any], source: str = "<config>") -> WatchdogConfig:
    try:
        return WatchdogConfig.model_validate(data)
    except ValidationError as exc:
        problems = list(_errors(exc, data))
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None


def load_config(path: str | Path) -> WatchdogConfig:
    """Read and validate a config file; raise ConfigError naming the file and the field."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    except RecursionError:
        raise ConfigError(f"{p}: arrays or tables nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    except ValueError as exc:
        # Python refuses integers of more than 4300 digits: no config value is one.
        raise ConfigError(f"{p}: not a usable TOML value: {str(exc).split(';')[0]}") from None
    return parse_config(data, str(p))
