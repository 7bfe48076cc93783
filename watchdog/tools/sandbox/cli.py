"""`rmq-watchdog sandbox ...`: start, inspect, break and stop a real RocketMQ cluster locally."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ...model import parse_duration
from ._cluster import Sandbox
from ._procs import SIGNALS
from ._runtime import DEFAULT_VERSION, SandboxError, ensure_rocketmq

__all__ = ["sandbox"]

F = TypeVar("F", bound=Callable[..., Any])


class SandboxFailed(click.ClickException):
    """Any sandbox failure: one message, exit code 2, nothing left running by us."""

    exit_code = 2


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except SandboxError as exc:
        raise SandboxFailed(str(exc)) from None
    except OSError as exc:  # e.g. a folder we may not write to
        where = f"{exc.filename}: " if exc.filename else ""
        raise SandboxFailed(f"{where}{exc.strerror or exc}") from None


@contextmanager
def _interrupted_up(box: Sandbox) -> Iterator[None]:
    """Ctrl-C during `up`: it has already stopped what it started; say so, exit 130."""
    try:
        yield
    except KeyboardInterrupt:
        click.echo(
            f"interrupted: `sandbox up` stopped every process it had started in {box.dir}; "
            "nothing of it is left running (run `sandbox up` again to start over)",
            err=True,
        )
        sys.exit(130)


def _dir_option(func: F) -> F:
    return click.option(
        "--dir",
        "directory",
        required=True,
        type=click.Path(file_okay=False),
        help="The sandbox folder (cluster.json, properties, logs, stores).",
    )(func)


if TYPE_CHECKING:
    _ParamType = click.ParamType[float]
else:  # generic only in newer click releases
    _ParamType = click.ParamType


class _Duration(_ParamType):
    """A duration as every other command takes it ("30s", "800ms", "2m"); a bare number is
    read as seconds, as earlier versions of these commands took it."""

    name = "duration"

    def __init__(self, minimum_seconds: float) -> None:
        self.minimum_seconds = minimum_seconds

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            seconds = float(value)
        else:
            text = str(value).strip()
            try:
                seconds = float(text)
            except ValueError:
                try:
                    seconds = parse_duration(text)
                except ValueError as exc:
                    self.fail(str(exc), param, ctx)
        if seconds < self.minimum_seconds:
            self.fail(f"{value!r} is less than {self.minimum_seconds:g}s", param, ctx)
        return seconds


def _term_timeout_option(func: F) -> F:
    return click.option(
        "--timeout",
        "timeout_seconds",
        type=_Duration(0),
        default="30s",
        show_default=True,
        help="How long to wait after TERM before KILL (e.g. 30s).",
    )(func)


def _target_options(func: F) -> F:
    func = click.option(
        "--nameserver",
        metavar="ADDR|INDEX",
        help="A nameserver, as 127.0.0.1:PORT or its index in cluster.json (0, 1).",
    )(func)
    return click.option(
        "--broker",
        metavar="NAME:ID",
        help="A broker, as brokerName:brokerId when first started, e.g. broker-a:0.",
    )(func)


def _target(box: Sandbox, broker: str | None, nameserver: str | None) -> str:
    if (broker is None) == (nameserver is None):
        raise click.UsageError("give exactly one of --broker NAME:ID or --nameserver ADDR|INDEX")
    with _errors():
        if broker is not None:
            return box.resolve_broker(broker)
        assert nameserver is not None
        return box.resolve_nameserver(nameserver)


def _seconds(value: float) -> str:
    return f"{value:.1f} s"


@click.group()
def sandbox() -> None:
    """A real RocketMQ cluster on 127.0.0.1 (two nameservers, master/slave groups) in a folder."""


@sandbox.command()
@click.option(
    "--version",
    "version",
    default=DEFAULT_VERSION,
    show_default=True,
    help="RocketMQ release from Maven Central.",
)
def fetch(version: str) -> None:
    """Fetch RocketMQ's jars into the cache ($RMQ_WATCHDOG_CACHE) and print their folder."""
    with _errors():
        click.echo(ensure_rocketmq(version))


@sandbox.command()
@_dir_option
@click.option(
    "--version",
    "version",
    default=DEFAULT_VERSION,
    show_default=True,
    help="RocketMQ release from Maven Central (4.9.7, 5.3.3, ...).",
)
@click.option(
    "--replication",
    type=click.Choice(["async", "sync"]),
    default="async",
    show_default=True,
    help="ASYNC_MASTER or SYNC_MASTER masters.",
)
@click.option(
    "--groups",
    type=click.IntRange(1, 26),
    default=1,
    show_default=True,
    help="Broker groups broker-a, broker-b, ...",
)
@click.option(
    "--slaves", type=click.IntRange(0, 8), default=1, show_default=True, help="Slaves per group."
)
@click.option(
    "--base-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="First port of the block; 0 = a free block in 20000-32767 "
    "(or in $RMQ_WATCHDOG_SANDBOX_PORTS, e.g. 22000-22999).",
)
@click.option("--heap", default="256m", show_default=True, help="Each broker's Java heap.")
@click.option(
    "--namesrv-heap", default="128m", show_default=True, help="Each nameserver's Java heap."
)
@click.option(
    "--tls",
    type=click.Choice(["disabled", "permissive"]),
    default="disabled",
    show_default=True,
    help="RocketMQ's TLS mode. disabled (-Dtls.server.mode=disabled): plain TCP only, no key "
    "made at boot; permissive (RocketMQ's own default): TLS and plain TCP on one port, with two "
    "self-signed RSA-2048 keys generated at every JVM boot (seconds of CPU).",
)
@click.option(
    "--timeout",
    "timeout_seconds",
    type=_Duration(1),
    default="180s",
    show_default=True,
    help="How long until every broker is registered everywhere (e.g. 3m).",
)
@click.option(
    "--netns",
    is_flag=True,
    help="Separate hosts: network namespaces server1..4, watchdog, vantage, clients on a "
    "bridge (198.18.N.0/24), an sshd on each server and vantage; one group, one slave; root.",
)
@click.option(
    "--promotion",
    type=click.Choice(["restart", "inplace"]),
    default="restart",
    show_default=True,
    help="How the watchdog promotes a slave. restart: stop it and start it as master; inplace: "
    "put the broker plug-in (`make plugin`) on every broker's classpath, give each broker and "
    'the watchdog a fresh secret (0600), and set [failover] promotion = "inplace" in '
    "watchdog.toml. 4.9.x only.",
)
@click.option(
    "--etcd",
    is_flag=True,
    help="Also start a 3-member etcd on 127.0.0.1 (data under DIR/etcd, stopped by `down`) and "
    "write one config per watchdog instance: watchdog.toml, watchdog-2.toml, watchdog-3.toml "
    "(instances wd-1..3, each with its own state dir and metrics port, the same [etcd] with "
    "lease_ttl 3s). Not with --netns.",
)
@click.option(
    "--acl",
    is_flag=True,
    help="RocketMQ ACL 1.0 on every broker (aclEnable=true): DIR/conf/plain_acl.yml with an "
    "admin account for the watchdog and a normal one for clients, their secret keys in "
    "DIR/acl-admin.secret and DIR/acl-client.secret (0600), and an [acl] table in watchdog.toml. "
    "4.9.x only; not with --netns.",
)
def up(
    directory: str,
    version: str,
    replication: str,
    groups: int,
    slaves: int,
    base_port: int,
    heap: str,
    namesrv_heap: str,
    tls: str,
    timeout_seconds: float,
    netns: bool,
    promotion: str,
    etcd: bool,
    acl: bool,
) -> None:
    """Start the cluster; return once every broker is registered on every nameserver."""
    box = Sandbox(directory)
    began = time.monotonic()
    with _errors(), _interrupted_up(box):
        doc = box.up(
            version=version,
            replication="sync" if replication == "sync" else "async",
            groups=groups,
            slaves=slaves,
            base_port=base_port,
            heap=heap,
            namesrv_heap=namesrv_heap,
            tls="disabled" if tls == "disabled" else "permissive",
            timeout_seconds=timeout_seconds,
            netns=netns,
            promotion="inplace" if promotion == "inplace" else "restart",
            etcd=etcd,
            acl=acl,
        )
    nameservers = ";".join(n["addr"] for n in doc["nameservers"])
    click.echo(f"sandbox up in {_seconds(time.monotonic() - began)}: RocketMQ {version}")
    click.echo(f"  nameservers {nameservers}")
    for b in doc["brokers"]:
        click.echo(f"  {b['broker_name']}:{b['broker_id']} {b['role']} {b['addr']} pid {b['pid']}")
    etcd_doc = doc.get("etcd")
    if etcd_doc:
        members = ", ".join(
            f"{m['name']} {m['endpoint']} pid {m['pid']}" for m in etcd_doc["members"]
        )
        click.echo(f"  etcd {members}; keys under {etcd_doc['prefix']}")
        for instance in etcd_doc["instances"]:
            click.echo(
                f"  watchdog instance {instance['name']}: config {instance['config']}, "
                f"metrics {instance['metrics']}"
            )
    else:
        click.echo(f"  watchdog config {box.config_path}")
    acl_doc = doc.get("acl")
    if acl_doc:
        click.echo(
            f"  acl: {acl_doc['plain_acl']}; watchdog {acl_doc['admin']['access_key']} (admin), "
            f"clients {acl_doc['client']['access_key']} (key in "
            f"{acl_doc['client']['secret_key_file']})"
        )
    if doc.get("promotion") == "inplace":
        secret = doc["plugin_secret_file"]
        click.echo(f"  promotion inplace: the plug-in on every broker, secret {secret}")
    net = doc.get("netns")
    if net is not None:
        hosts = ", ".join(
            f"{name} {h['address']} ({h['netns']})" for name, h in net["hosts"].items()
        )
        click.echo(f"  hosts {hosts}; observer {net['observer']} on {net['bridge']}")
        click.echo(f"  run the daemon inside the watchdog host: {box.dir / 'run-watchdog.sh'}")


@sandbox.command()
@_dir_option
@_term_timeout_option
def down(directory: str, timeout_seconds: float) -> None:
    """Stop every process the sandbox started (TERM, wait, KILL). Safe to run twice."""
    box = Sandbox(directory)
    began = time.monotonic()
    with _errors():
        stopped = box.down(timeout_seconds=timeout_seconds)
    if stopped:
        click.echo(f"stopped {', '.join(stopped)} in {_seconds(time.monotonic() - began)}")
    else:
        click.echo("nothing was running")


@sandbox.command()
@_dir_option
def status(directory: str) -> None:
    """Each process: pid, alive/paused/zombie/stopped, role from its properties file."""
    with _errors():
        rows = Sandbox(directory).status()
    header = ("PROCESS", "ADDR", "PID", "STATE", "ROLE", "PROPERTIES")
    table = [header] + [
        (
            r.key if r.kind == "broker" else r.name,
            r.addr,
            str(r.pid or "-"),
            r.state,
            r.role,
            r.properties,
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@sandbox.command()
@_dir_option
@_target_options
@click.option(
    "--signal",
    "signal_name",
    type=click.Choice(list(SIGNALS), case_sensitive=False),
    default="KILL",
    show_default=True,
)
def kill(directory: str, broker: str | None, nameserver: str | None, signal_name: str) -> None:
    """Send one signal to one process (KILL, TERM, STOP to freeze it, CONT to thaw it)."""
    box = Sandbox(directory)
    key = _target(box, broker, nameserver)
    with _errors():
        pid = box.pid(key)
        box.kill(key, signal_name)
    click.echo(f"sent SIG{signal_name.upper()} to {key} (pid {pid})")


@sandbox.command()
@_dir_option
@_target_options
@_term_timeout_option
def stop(
    directory: str, broker: str | None, nameserver: str | None, timeout_seconds: float
) -> None:
    """Stop one process gracefully (TERM, wait, KILL); return once it is gone."""
    box = Sandbox(directory)
    key = _target(box, broker, nameserver)
    with _errors():
        box.stop(key, timeout_seconds=timeout_seconds)
    click.echo(f"stopped {key}")


@sandbox.command()
@_dir_option
@_target_options
@click.option(
    "--wait-registered", is_flag=True, help="Also wait until every nameserver lists the broker."
)
@click.option(
    "--timeout",
    "timeout_seconds",
    type=_Duration(1),
    default="90s",
    show_default=True,
    help="How long until it listens (e.g. 90s).",
)
def start(
    directory: str,
    broker: str | None,
    nameserver: str | None,
    wait_registered: bool,
    timeout_seconds: float,
) -> None:
    """Start one stopped process from its properties file as it is now; return once it listens."""
    box = Sandbox(directory)
    key = _target(box, broker, nameserver)
    began = time.monotonic()
    with _errors():
        box.start(key, wait_registered=wait_registered, timeout_seconds=timeout_seconds)
        pid = box.pid(key)
    click.echo(f"started {key} (pid {pid}) in {_seconds(time.monotonic() - began)}")
