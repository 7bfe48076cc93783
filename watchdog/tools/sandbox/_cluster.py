"""A real RocketMQ master/slave cluster on 127.0.0.1: its files, processes and cluster.json."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import random
import re
import shutil
import signal as signals
import socket
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ...model import PropertiesFile
from ._runtime import (
    DEFAULT_VERSION,
    SandboxError,
    check_heap,
    ensure_rocketmq,
    find_java,
    java_argv,
    rocketmq_major,
)

if TYPE_CHECKING:
    from ._netns import NetnsTopology

__all__ = [
    "BROKER_MAIN",
    "CLUSTER_NAME",
    "NAMESRV_MAIN",
    "BrokerPlan",
    "ProcessStatus",
    "Sandbox",
    "PORT_RANGE_ENV",
    "Topology",
    "UnknownProcess",
    "auto_port_range",
    "broker_properties_text",
    "pick_base_port",
    "plan_topology",
    "unbindable_ports",
    "watchdog_toml_text",
]

CLUSTER_NAME = "XdclassCluster"
NAMESRV_MAIN = "org.apache.rocketmq.namesrv.NamesrvStartup"
BROKER_MAIN = "org.apache.rocketmq.broker.BrokerStartup"
HOST = "127.0.0.1"
HEADER = "# written by rmq-watchdog sandbox"

NAMESERVER_COUNT = 2
# Ports below the Linux ephemeral range (32768+), so no outgoing connection can hold one.
_AUTO_PORT_LOW = 20000
_AUTO_PORT_HIGH = 32768
_BROKER_STRIDE = 10
_PORT_RACE_ATTEMPTS = 3
_PORT_BUSY = "Address already in use"
PORT_RANGE_ENV = "RMQ_WATCHDOG_SANDBOX_PORTS"
_POLL_SECONDS = 0.2

T = TypeVar("T")
Replication = Literal["async", "sync"]
Tls = Literal["permissive", "disabled"]
State = Literal["alive", "paused", "zombie", "stopped"]
SIGNALS: Mapping[str, signals.Signals] = {
    "KILL": signals.SIGKILL,
    "TERM": signals.SIGTERM,
    "STOP": signals.SIGSTOP,
    "CONT": signals.SIGCONT,
}


class UnknownProcess(SandboxError):
    """A --broker or --nameserver that names no process of this sandbox."""


# --------------------------------------------------------------------------- plan


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

    @property
    def nameserver_addrs(self) -> tuple[str, ...]:
        hosts = self.nameserver_hosts or (HOST,) * len(self.nameserver_ports)
        return tuple(f"{h}:{p}" for h, p in zip(hosts, self.nameserver_ports, strict=True))

    @property
    def namesrv_addr(self) -> str:
        return ";".join(self.nameserver_addrs)

    def ports(self) -> tuple[int, ...]:
        found = [*self.nameserver_ports, self.metrics_port]
        for broker in self.brokers:
            found.extend(broker.ports)
        return tuple(found)


def _span(groups: int, slaves: int) -> int:
    return _BROKER_STRIDE * (groups * (1 + slaves) + 1)


def plan_topology(
    base_port: int, *, groups: int = 1, slaves: int = 1, replication: Replication = "async"
) -> Topology:
    """Lay the cluster out from `base_port`: nameservers at +0 and +1, the watchdog's metrics at
    +2, and broker i (0-based) at listenPort base+10(i+1)+1, e.g. 22011 and 22021 for base 22000
    (the fast port is listenPort-2, HA listenPort+1, as 10911/10909/10912 in a default install)."""
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
) -> int:
    """A base port in [low, high) whose whole block is bindable, tried from a random block on
    (so sandboxes started side by side rarely race for the same block)."""
    span = _span(groups, slaves)
    starts = list(range(low, high - span, span))
    if not starts:
        raise SandboxError(f"no room for {span} ports between {low} and {high}")
    first = (rng or random.Random()).randrange(len(starts))
    for base in starts[first:] + starts[:first]:
        topology = plan_topology(base, groups=groups, slaves=slaves)
        if not unbindable_ports(topology.ports()):
            return base
    raise SandboxError(f"no block of {span} free ports on {HOST} between {low} and {high}")


# --------------------------------------------------------------------------- files


def broker_properties_text(
    plan: BrokerPlan, namesrv_addr: str, store_root: Path, *, rocketmq_version: str
) -> str:
    """A broker's -c file in the seed's style: the seed's keys first, then what a shared host
    needs (its own ports, loopback addresses, its own store)."""
    lines = [
        HEADER,
        f"namesrvAddr={namesrv_addr}",
        f"brokerClusterName={CLUSTER_NAME}",
        f"brokerName={plan.broker_name}",
        f"brokerId={plan.broker_id}",
        "deleteWhen=04",
        "fileReservedTime=48",
        f"brokerRole={plan.role}",
        "flushDiskType=ASYNC_FLUSH",
        f"listenPort={plan.listen_port}",
        f"brokerIP1={plan.host}",
        # The HA address slaves connect to; its default is the first non-loopback address.
        f"brokerIP2={plan.host}",
        f"storePathRootDir={store_root}",
        f"storePathCommitLog={store_root / 'commitlog'}",
    ]
    if rocketmq_major(rocketmq_version) >= 5:
        lines.append(f"bindAddress={plan.host}")  # 5.x only; 4.x always binds the wildcard address
    return "\n".join(lines) + "\n"


def namesrv_properties_text(port: int, *, rocketmq_version: str, host: str = HOST) -> str:
    lines = [HEADER, f"listenPort={port}"]
    if rocketmq_major(rocketmq_version) >= 5:
        lines.append(f"bindAddress={host}")
    return "\n".join(lines) + "\n"


def _toml_str(value: str) -> str:
    # A JSON string (ASCII, standard escapes) is a valid TOML basic string.
    return json.dumps(value)


def _toml_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(_toml_str(v) for v in values) + "]"


def watchdog_toml_text(directory: Path, topology: Topology, python: str | None = None) -> str:
    """A watchdog config for this sandbox; start/stop go through `sandbox start|stop`."""
    python = python or sys.executable
    out = [
        "# written by rmq-watchdog sandbox: a watchdog config for the sandbox in this folder",
        f"cluster_name = {_toml_str(CLUSTER_NAME)}",
        f"nameservers = {_toml_list(topology.nameserver_addrs)}",
        f"state_dir = {_toml_str(str(directory / 'watchdog-state'))}",
        "",
        "[hosts.local]",
        'kind = "local"',
        "",
        "[metrics]",
        f"listen = {_toml_str(f'{HOST}:{topology.metrics_port}')}",
        "",
        "# a check of the master from a second vantage point, so a hung master can be confirmed",
        "[[secondary_checks]]",
        'name = "local-secondary"',
        'host = "local"',
        # This interpreter's own entry point: works whether or not the venv's bin is on PATH.
        f"command = {_toml_list([python, '-m', 'watchdog.ping', '{addr}'])}",
    ]
    for broker in topology.brokers:
        command = [python, "-m", "watchdog", "sandbox"]
        tail = ["--dir", str(directory), "--broker", broker.key]
        out += [
            "",
            "[[brokers]]",
            f"broker_name = {_toml_str(broker.broker_name)}",
            f"broker_id = {broker.broker_id}",
            f"addr = {_toml_str(broker.addr)}",
            f"properties = {_toml_str(str(directory / broker.properties_name))}",
            'host = "local"',
            f"start = {_toml_list([*command, 'start', *tail])}",
            f"stop = {_toml_list([*command, 'stop', *tail])}",
            f"kill = {_toml_list([*command, 'kill', *tail, '--signal', 'KILL'])}",
        ]
    return "\n".join(out) + "\n"


_LOGBACK_PATTERN = "%d{yyyy-MM-dd HH:mm:ss.SSS} %-5level [%thread] %logger{0} - %msg%n"


def _logback_xml(package: str) -> str:
    """Everything to stdout (which is DIR/logs/<name>.out). 5.x ships a shaded logback."""
    return (
        "<!-- written by rmq-watchdog sandbox: every log line to stdout -->\n"
        "<configuration>\n"
        f'  <appender name="OUT" class="{package}.core.ConsoleAppender">\n'
        f'    <encoder class="{package}.classic.encoder.PatternLayoutEncoder">\n'
        f"      <pattern>{_LOGBACK_PATTERN}</pattern>\n"
        "    </encoder>\n"
        "  </appender>\n"
        '  <root level="INFO"><appender-ref ref="OUT"/></root>\n'
        "</configuration>\n"
    )


def _check_dir_path(directory: Path) -> None:
    # Java reads properties files as ISO-8859-1 and treats backslashes as escapes.
    text = str(directory)
    if not text.isascii() or any(c in text for c in "\\\n\r\t") or not text.isprintable():
        raise SandboxError(f"{text!r}: the sandbox folder needs a plain ASCII path")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_properties(path: Path) -> dict[str, str]:
    try:
        return PropertiesFile.parse(path.read_text(encoding="latin-1")).as_dict()
    except OSError as exc:
        raise SandboxError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _tail(path: Path, lines: int = 20) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- processes


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a pid, or None if there is no such pid."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _reap(pid: int) -> None:
    # Our own child (the Python API started it) stays a zombie until we wait for it.
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


@dataclass(frozen=True)
class _Proc:
    """One JVM of the sandbox as recorded: what it runs and how to recognise it."""

    kind: Literal["nameserver", "broker"]
    name: str  # file-name stem: namesrv-0, broker-a-0
    key: str  # what users type: 127.0.0.1:22000, broker-a:0
    addr: str
    main_class: str
    properties: Path
    log: Path
    argv: tuple[str, ...]
    pid: int | None
    start_ticks: int | None

    def state(self) -> State:
        if self.pid is None:
            return "stopped"
        stat = _proc_stat(self.pid)
        if stat is None or (self.start_ticks is not None and stat[1] != self.start_ticks):
            return "stopped"  # gone, or the pid now belongs to someone else
        letter = stat[0]
        if letter in "ZX":
            if self.start_ticks is None:
                return "stopped"
            return "zombie"
        argv = _cmdline(self.pid)
        if self.main_class not in argv or str(self.properties) not in argv:
            return "stopped"  # a reused pid: not our java process
        return "paused" if letter in "Tt" else "alive"

    def is_running(self) -> bool:
        return self.state() in ("alive", "paused")


@dataclass(frozen=True)
class _Jvm:
    lib: Path
    version: str
    heap: str
    namesrv_heap: str
    tls: Tls


@dataclass(frozen=True)
class ProcessStatus:
    name: str
    key: str
    kind: str
    addr: str
    pid: int | None
    state: State
    role: str
    properties: str
    log: str


def _spawn(argv: Sequence[str], log: Path, env: Mapping[str, str]) -> tuple[int, int | None]:
    """Start argv in its own session, stdout+stderr appended to `log`; (pid, start ticks)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as handle:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        handle.write(f"--- {stamp} rmq-watchdog sandbox starts: {' '.join(argv)}\n")
    actions: list[tuple[Any, ...]] = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    # Python's own descriptors are close-on-exec; close any inheritable one a C library left.
    for entry in os.listdir("/proc/self/fd"):
        fd = int(entry)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    actions.append((os.POSIX_SPAWN_CLOSE, fd))
            except OSError:
                pass
    try:
        pid = os.posix_spawn(argv[0], list(argv), dict(env), file_actions=actions, setsid=True)
    except OSError as exc:
        raise SandboxError(f"cannot start {argv[0]}: {exc.strerror or exc}") from None
    stat = _proc_stat(pid)
    return pid, (stat[1] if stat else None)


def _is_listening(addr: str) -> bool:
    host, _, port = addr.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def _signal(proc: _Proc, sig: signals.Signals) -> None:
    if proc.pid is None:
        return
    with suppress(ProcessLookupError):
        os.kill(proc.pid, sig)


def _wait_gone(procs: Sequence[_Proc], timeout_seconds: float) -> list[_Proc]:
    """Wait until every process is gone (reaping our own children); return the ones still there."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        left = []
        for proc in procs:
            state = proc.state()
            if state == "zombie" and proc.pid is not None:
                _reap(proc.pid)
            elif state != "stopped":
                left.append(proc)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(_POLL_SECONDS)


def _terminate(procs: Sequence[_Proc], timeout_seconds: float) -> None:
    """TERM (and CONT, so a paused JVM can act on it), wait, then KILL what is left."""
    running = [p for p in procs if p.is_running()]
    for proc in running:
        _signal(proc, signals.SIGTERM)
        _signal(proc, signals.SIGCONT)
    left = _wait_gone(running, timeout_seconds)
    for proc in left:
        _signal(proc, signals.SIGKILL)
    still = _wait_gone(left, 10.0)
    if still:
        names = ", ".join(f"{p.key} (pid {p.pid})" for p in still)
        raise SandboxError(f"could not stop {names}, not even with SIGKILL")


async def _registrations(
    nameservers: Sequence[str],
) -> dict[str, Mapping[str, Mapping[int, str]] | str]:
    """Each nameserver's brokerName -> brokerId -> addr table, or why it could not be read."""
    from ...remoting import RemotingClient, get_cluster_info

    async def one(addr: str) -> Mapping[str, Mapping[int, str]] | str:
        client = RemotingClient(addr, connect_timeout_seconds=1.0)
        try:
            info = await get_cluster_info(client, timeout_seconds=2.0)
            return info.broker_addrs
        except Exception as exc:  # any failure is "not yet": the caller retries until its deadline
            return f"{type(exc).__name__}: {exc}"
        finally:
            await client.close()

    results = await asyncio.gather(*(one(a) for a in nameservers))
    return dict(zip(nameservers, results, strict=True))


def _run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """asyncio.run, also from code that already runs an event loop (in a thread of its own)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


@dataclass(frozen=True)
class _Expectation:
    proc: _Proc
    broker_name: str
    broker_id: int


def _wait_registered(
    expected: Sequence[_Expectation], nameservers: Sequence[str], timeout_seconds: float
) -> None:
    """Return once every expected broker is registered under its name and id on every
    nameserver; fail early, with its log, if one of them exits."""
    deadline = time.monotonic() + timeout_seconds
    missing: list[str] = []
    while True:
        for item in expected:
            if not item.proc.is_running():
                raise SandboxError(
                    f"broker {item.proc.key} ({item.proc.addr}) exited while starting; "
                    f"the end of {item.proc.log}:\n{_tail(item.proc.log)}"
                )
        tables = _run_coroutine(lambda: _registrations(nameservers))
        missing = []
        for item in expected:
            for ns, table in tables.items():
                if isinstance(table, str):
                    missing.append(f"{item.proc.key} on {ns} ({table})")
                elif table.get(item.broker_name, {}).get(item.broker_id) != item.proc.addr:
                    missing.append(f"{item.proc.key} on {ns}")
        if not missing:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    first = next(i for i in expected if missing[0].startswith(i.proc.key + " "))
    raise SandboxError(
        f"not registered after {timeout_seconds:.0f} s: {', '.join(missing)}; "
        f"the end of {first.proc.log}:\n{_tail(first.proc.log)}"
    )


def _wait_listening(
    procs: Sequence[_Proc], addr_of: Callable[[_Proc], str], timeout_seconds: float
) -> None:
    deadline = time.monotonic() + timeout_seconds
    waiting = list(procs)
    while waiting:
        for proc in list(waiting):
            if not proc.is_running():
                raise SandboxError(
                    f"{proc.kind} {proc.key} exited while starting; "
                    f"the end of {proc.log}:\n{_tail(proc.log)}"
                )
            if _is_listening(addr_of(proc)):
                waiting.remove(proc)
        if not waiting:
            return
        if time.monotonic() >= deadline:
            proc = waiting[0]
            raise SandboxError(
                f"{proc.kind} {proc.key} does not listen on {proc.addr} after "
                f"{timeout_seconds:.0f} s; the end of {proc.log}:\n{_tail(proc.log)}"
            )
        time.sleep(_POLL_SECONDS)


# --------------------------------------------------------------------------- the sandbox


class Sandbox:
    """The sandbox cluster kept in one folder: `up`, `down`, and acts on single processes.

    DIR/cluster.json lists what runs (pid null when stopped); DIR/sandbox.json keeps what this
    class needs to restart a process and to recognise it (its argv and start time).
    """

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory).expanduser().absolute()

    @property
    def config_path(self) -> Path:
        return self.dir / "watchdog.toml"

    @property
    def cluster_path(self) -> Path:
        return self.dir / "cluster.json"

    @property
    def _state_path(self) -> Path:
        return self.dir / "sandbox.json"

    # ---- reading

    def info(self) -> dict[str, Any]:
        """cluster.json, parsed."""
        try:
            doc: dict[str, Any] = json.loads(self.cluster_path.read_text())
        except FileNotFoundError:
            raise SandboxError(f"{self.dir} holds no sandbox (no cluster.json)") from None
        except (OSError, ValueError) as exc:
            raise SandboxError(f"{self.cluster_path}: unreadable: {exc}") from None
        return doc

    def _procs(self) -> list[_Proc]:
        doc = self.info()
        try:
            state: dict[str, Any] = json.loads(self._state_path.read_text())
            recorded: dict[str, Any] = state["processes"]
            procs: list[_Proc] = []
            for index, ns in enumerate(doc["nameservers"]):
                name = f"namesrv-{index}"
                rec = recorded[name]
                procs.append(
                    _Proc(
                        "nameserver",
                        name,
                        ns["addr"],
                        ns["addr"],
                        NAMESRV_MAIN,
                        Path(rec["properties"]),
                        Path(ns["log"]),
                        tuple(rec["argv"]),
                        ns["pid"],
                        rec.get("start_ticks"),
                    )
                )
            for b in doc["brokers"]:
                name = f"{b['broker_name']}-{b['broker_id']}"
                rec = recorded[name]
                procs.append(
                    _Proc(
                        "broker",
                        name,
                        f"{b['broker_name']}:{b['broker_id']}",
                        b["addr"],
                        BROKER_MAIN,
                        Path(b["properties"]),
                        Path(b["log"]),
                        tuple(rec["argv"]),
                        b["pid"],
                        rec.get("start_ticks"),
                    )
                )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SandboxError(f"{self.dir}: sandbox files unreadable ({exc!r})") from None
        return procs

    def _find(self, key: str) -> _Proc:
        procs = self._procs()
        for proc in procs:
            if key in (proc.key, proc.name):
                return proc
        brokers = ", ".join(p.key for p in procs if p.kind == "broker")
        nameservers = ", ".join(p.key for p in procs if p.kind == "nameserver")
        raise UnknownProcess(
            f"no process {key!r} in the sandbox in {self.dir}; "
            f"brokers: {brokers}; nameservers: {nameservers}"
        )

    def broker_keys(self) -> list[str]:
        return [p.key for p in self._procs() if p.kind == "broker"]

    def nameserver_addrs(self) -> list[str]:
        return [p.key for p in self._procs() if p.kind == "nameserver"]

    def status(self) -> list[ProcessStatus]:
        out = []
        for proc in self._procs():
            if proc.kind == "broker":
                try:
                    role = _read_properties(proc.properties).get("brokerRole", "?")
                except SandboxError:
                    role = "(properties unreadable)"
            else:
                role = "nameserver"
            state = proc.state()
            pid = proc.pid if state != "stopped" else None
            out.append(
                ProcessStatus(
                    proc.name,
                    proc.key,
                    proc.kind,
                    proc.addr,
                    pid,
                    state,
                    role,
                    str(proc.properties),
                    str(proc.log),
                )
            )
        return out

    def pid(self, key: str) -> int | None:
        proc = self._find(key)
        return proc.pid if proc.is_running() else None

    # ---- writing cluster.json / sandbox.json

    @contextmanager
    def _lock(self) -> Iterator[None]:
        with (self.dir / ".sandbox.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _record(
        self, name: str, pid: int | None, start_ticks: int | None, role: str | None
    ) -> None:
        """Set one process's pid (and role) in cluster.json and sandbox.json."""
        with self._lock():
            doc = self.info()
            state = json.loads(self._state_path.read_text())
            for index, ns in enumerate(doc["nameservers"]):
                if f"namesrv-{index}" == name:
                    ns["pid"] = pid
            for b in doc["brokers"]:
                if f"{b['broker_name']}-{b['broker_id']}" == name:
                    b["pid"] = pid
                    if role is not None:
                        b["role"] = role
            state["processes"][name]["start_ticks"] = start_ticks
            _write_atomic(self._state_path, json.dumps(state, indent=2) + "\n")
            _write_atomic(self.cluster_path, json.dumps(doc, indent=2) + "\n")

    # ---- the whole cluster

    def up(
        self,
        *,
        version: str = DEFAULT_VERSION,
        replication: Replication = "async",
        groups: int = 1,
        slaves: int = 1,
        base_port: int = 0,
        heap: str = "256m",
        namesrv_heap: str = "128m",
        tls: Tls = "permissive",
        timeout_seconds: float = 180.0,
        netns: bool = False,
    ) -> dict[str, Any]:
        """Start the cluster; return cluster.json once every broker is registered on every
        nameserver. On any failure, stop what was started and raise SandboxError.

        tls="disabled" starts the JVMs with -Dtls.server.mode=disabled: RocketMQ then skips
        generating a self-signed RSA certificate at every boot (seconds of CPU); the default
        keeps RocketMQ's own default (permissive: TLS and plain TCP on the same port).

        netns=True lays the cluster out as separate hosts (network namespaces on a bridge, an
        sshd in each; see _netns.py): one group, one slave, base_port ignored; needs root."""
        _check_dir_path(self.dir)
        if netns:
            if groups != 1 or slaves != 1:
                raise SandboxError("--netns lays out exactly one group with one slave")
            check_heap(heap)
            check_heap(namesrv_heap)
            if tls not in ("permissive", "disabled"):
                raise SandboxError(f"--tls must be permissive or disabled, not {tls!r}")
            return self._up_netns(
                version, replication, _Jvm(Path(), version, heap, namesrv_heap, tls),
                timeout_seconds,
            )  # fmt: skip
        plan_topology(base_port or 20000, groups=groups, slaves=slaves, replication=replication)
        check_heap(heap)
        check_heap(namesrv_heap)
        if tls not in ("permissive", "disabled"):
            raise SandboxError(f"--tls must be permissive or disabled, not {tls!r}")
        find_java()  # fail before touching the folder or Maven
        self._prepare_dir()
        jvm = _Jvm(ensure_rocketmq(version), version, heap, namesrv_heap, tls)
        deadline = time.monotonic() + timeout_seconds
        for attempt in range(1, _PORT_RACE_ATTEMPTS + 1):
            if base_port:
                topology = plan_topology(
                    base_port, groups=groups, slaves=slaves, replication=replication
                )
                busy = unbindable_ports(topology.ports())
                if busy:
                    raise SandboxError(
                        f"port(s) {', '.join(map(str, busy))} on {HOST} are in use; "
                        "choose another --base-port, or 0 for a free block"
                    )
            else:
                low, high = auto_port_range()
                base = pick_base_port(groups, slaves, low=low, high=high)
                topology = plan_topology(
                    base, groups=groups, slaves=slaves, replication=replication
                )
            try:
                self._boot(topology, jvm, deadline)
                return self.info()
            except SandboxError as exc:
                # Another program may bind a port between our check and the JVM's bind: with
                # a block of our own choosing, try another one.
                if base_port or attempt == _PORT_RACE_ATTEMPTS or _PORT_BUSY not in str(exc):
                    raise
                for sub in ("store", "home"):
                    shutil.rmtree(self.dir / sub, ignore_errors=True)
        raise AssertionError("unreachable")

    def _boot(self, topology: Topology, jvm: _Jvm, deadline: float) -> None:
        self._start_procs(self._write_files(topology, jvm), topology, deadline)

    def _start_procs(self, procs: list[_Proc], topology: Topology, deadline: float) -> None:
        try:
            env = {**os.environ, "ROCKETMQ_HOME": str(self.dir)}
            nameservers = [p for p in procs if p.kind == "nameserver"]
            brokers = [p for p in procs if p.kind == "broker"]
            # Nameservers first: a broker registers at boot and then only every 30 s.
            started = [self._launch(p, env) for p in nameservers]
            _wait_listening(started, lambda p: p.addr, deadline - time.monotonic())
            started_brokers = [self._launch(p, env) for p in brokers]
            expected = [
                _Expectation(p, b.broker_name, b.broker_id)
                for p, b in zip(started_brokers, topology.brokers, strict=True)
            ]
            _wait_registered(
                expected, topology.nameserver_addrs, max(1.0, deadline - time.monotonic())
            )
        except BaseException:
            self._stop_all(timeout_seconds=5.0)
            raise

    def _prepare_dir(self) -> None:
        if self.cluster_path.exists():
            running = [p.key for p in self._procs() if p.is_running()]
            if running:
                raise SandboxError(
                    f"a sandbox already runs in {self.dir} ({', '.join(running)}); "
                    "run `sandbox down` first"
                )
            # A stopped sandbox: start over with empty stores and a watchdog that remembers
            # nothing of the last run (its anti-flap block, epoch and master would otherwise
            # make the next kill do nothing for an hour); the logs are appended to.
            for sub in ("store", "home", "watchdog-state"):
                shutil.rmtree(self.dir / sub, ignore_errors=True)
            for leftover in (
                *self.dir.glob("*.properties.rmq-watchdog-*.bak"),
                *self.dir.glob("*.properties.epoch"),
            ):
                leftover.unlink(missing_ok=True)
        elif self.dir.exists():
            if not self.dir.is_dir():
                raise SandboxError(f"{self.dir} exists and is not a folder")
            others = [p.name for p in self.dir.iterdir() if p.name != ".sandbox.lock"]
            if others:
                raise SandboxError(
                    f"{self.dir} is not empty and holds no sandbox; give an empty or new folder"
                )
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SandboxError(f"cannot create {self.dir}: {exc.strerror or exc}") from None

    def _write_files(
        self,
        topology: Topology,
        jvm: _Jvm,
        *,
        prefixes: Mapping[str, Sequence[str]] | None = None,
        extra: Mapping[str, Any] | None = None,
        config_text: str | None = None,
    ) -> list[_Proc]:
        """Properties, logback files, sandbox.json, cluster.json (plus `extra` keys) and
        watchdog.toml (`config_text` if given); `prefixes` go before a process's java argv
        (by process name: `ip netns exec NS` with --netns)."""
        prefixes = prefixes or {}
        version = jvm.version
        d = self.dir
        conf = d / "conf"
        conf.mkdir(exist_ok=True)
        (d / "logs").mkdir(exist_ok=True)
        plain = _logback_xml("ch.qos.logback")
        (conf / "logback_namesrv.xml").write_text(plain)
        (conf / "logback_broker.xml").write_text(plain)
        (conf / "logback_tools.xml").write_text(plain)
        shaded = _logback_xml("org.apache.rocketmq.logging.ch.qos.logback")
        (conf / "rmq.logback.xml").write_text(shaded)

        def jvm_options(name: str) -> list[str]:
            home = d / "home" / name
            home.mkdir(parents=True, exist_ok=True)
            tls = ["-Dtls.server.mode=disabled"] if jvm.tls == "disabled" else []
            return [
                *tls,
                f"-Duser.home={home}",
                f"-Drmq.logback.configurationFile={conf / 'rmq.logback.xml'}",
                f"-XX:ErrorFile={d / 'logs' / (name + '-hs_err_%p.log')}",
            ]

        procs: list[_Proc] = []
        ns_doc: list[dict[str, Any]] = []
        recorded: dict[str, Any] = {}
        for index, (port, addr) in enumerate(
            zip(topology.nameserver_ports, topology.nameserver_addrs, strict=True)
        ):
            name = f"namesrv-{index}"
            props = d / f"{name}.properties"
            props.write_text(
                namesrv_properties_text(
                    port, rocketmq_version=version, host=addr.rpartition(":")[0]
                )
            )
            argv = [*prefixes.get(name, ()), *java_argv(
                NAMESRV_MAIN,
                jvm.lib,
                jvm.namesrv_heap,
                ["-c", str(props)],
                jvm_options=jvm_options(name),
            )]  # fmt: skip
            log = d / "logs" / f"{name}.out"
            procs.append(
                _Proc(
                    "nameserver",
                    name,
                    addr,
                    addr,
                    NAMESRV_MAIN,
                    props,
                    log,
                    tuple(argv),
                    None,
                    None,
                )
            )
            ns_doc.append({"addr": addr, "pid": None, "log": str(log)})
            recorded[name] = {"kind": "nameserver", "properties": str(props), "argv": argv}
        brokers_doc: list[dict[str, Any]] = []
        for plan in topology.brokers:
            props = d / plan.properties_name
            store = d / "store" / plan.name
            props.write_text(
                broker_properties_text(plan, topology.namesrv_addr, store, rocketmq_version=version)
            )
            argv = [*prefixes.get(plan.name, ()), *java_argv(
                BROKER_MAIN,
                jvm.lib,
                jvm.heap,
                ["-c", str(props)],
                jvm_options=jvm_options(plan.name),
            )]  # fmt: skip
            log = d / "logs" / f"{plan.name}.out"
            procs.append(
                _Proc(
                    "broker",
                    plan.name,
                    plan.key,
                    plan.addr,
                    BROKER_MAIN,
                    props,
                    log,
                    tuple(argv),
                    None,
                    None,
                )
            )
            brokers_doc.append(
                {
                    "broker_name": plan.broker_name,
                    "broker_id": plan.broker_id,
                    "role": plan.role,
                    "addr": plan.addr,
                    "pid": None,
                    "properties": str(props),
                    "log": str(log),
                }
            )
            recorded[plan.name] = {"kind": "broker", "properties": str(props), "argv": argv}
        state = {"version": version, "lib_dir": str(jvm.lib), "processes": recorded}
        with self._lock():
            _write_atomic(self._state_path, json.dumps(state, indent=2) + "\n")
            doc = {"nameservers": ns_doc, "brokers": brokers_doc, **(extra or {})}
            _write_atomic(self.cluster_path, json.dumps(doc, indent=2) + "\n")
        self.config_path.write_text(config_text or watchdog_toml_text(d, topology))
        return procs

    def _launch(self, proc: _Proc, env: Mapping[str, str]) -> _Proc:
        role = None
        if proc.kind == "broker":
            role = _read_properties(proc.properties).get("brokerRole")
        pid, ticks = _spawn(proc.argv, proc.log, env)
        self._record(proc.name, pid, ticks, role)
        return _Proc(
            proc.kind,
            proc.name,
            proc.key,
            proc.addr,
            proc.main_class,
            proc.properties,
            proc.log,
            proc.argv,
            pid,
            ticks,
        )

    def _stop_all(self, timeout_seconds: float) -> list[str]:
        procs = self._procs()
        running = [p for p in procs if p.is_running()]
        # Brokers first: a broker that outlives the nameservers waits on them while shutting down.
        try:
            _terminate([p for p in running if p.kind == "broker"], timeout_seconds)
            _terminate([p for p in running if p.kind == "nameserver"], timeout_seconds)
        finally:
            for proc in procs:
                if proc.pid is not None and not proc.is_running():
                    self._record(proc.name, None, None, None)
        return [p.key for p in running]

    def down(self, *, timeout_seconds: float = 30.0) -> list[str]:
        """Stop every process this sandbox started (TERM, wait, KILL); return their keys.
        With --netns, also stop the sshds and remove the namespaces and the bridge.
        Running it again stops nothing and succeeds."""
        stopped = self._stop_all(timeout_seconds)
        if "netns" in self.info():
            from ._netns_sshd import teardown_netns

            stopped += teardown_netns(self)
        return stopped

    # ---- --netns

    def _up_netns(
        self, version: str, replication: str, jvm: _Jvm, timeout_seconds: float
    ) -> dict[str, Any]:
        from ._netns_sshd import up_netns

        return up_netns(self, version, replication, jvm, timeout_seconds)

    def netns(self) -> NetnsTopology | None:
        """The NetnsTopology of a --netns sandbox (exec_argv, run, partition, cut, isolate,
        heal), or None for a sandbox on 127.0.0.1."""
        from ._netns import NetnsTopology

        doc = self.info().get("netns")
        return None if doc is None else NetnsTopology.from_doc(doc)

    def exec_prefix(self, host: str) -> list[str]:
        """The argv prefix that runs a command in `host` (server1, ..., watchdog, vantage,
        clients) of a --netns sandbox: ["ip", "netns", "exec", NS]."""
        net = self.netns()
        if net is None:
            raise SandboxError(f"the sandbox in {self.dir} was not started with --netns")
        prefix: list[str] = net.exec_argv(host, [])
        return prefix

    def host_of(self, key: str) -> str:
        """The --netns host a broker or nameserver runs on (e.g. broker-a:0 -> server3)."""
        proc = self._find(key)
        roles: dict[str, str] = self.info().get("netns", {}).get("processes", {})
        if proc.name not in roles:
            raise SandboxError(f"the sandbox in {self.dir} was not started with --netns")
        return roles[proc.name]

    # ---- one process

    def kill(self, key: str, signal: str = "KILL") -> None:
        """Send KILL, TERM, STOP or CONT to one process. After KILL (or a TERM it obeys within
        10 s) the process is recorded as stopped."""
        sig_name = signal.upper().removeprefix("SIG")
        if sig_name not in SIGNALS:
            raise SandboxError(f"signal must be one of {', '.join(SIGNALS)}, not {signal!r}")
        proc = self._find(key)
        if not proc.is_running():
            raise SandboxError(f"{proc.kind} {proc.key} is not running")
        _signal(proc, SIGNALS[sig_name])
        if sig_name in ("KILL", "TERM"):
            if proc.state() == "paused" and sig_name == "TERM":
                _signal(proc, signals.SIGCONT)
            if not _wait_gone([proc], 10.0 if sig_name == "TERM" else 5.0):
                self._record(proc.name, None, None, None)

    def stop(self, key: str, *, timeout_seconds: float = 30.0) -> None:
        """Graceful stop: TERM, wait up to timeout_seconds, then KILL; returns once it is gone."""
        proc = self._find(key)
        if proc.is_running():
            _terminate([proc], timeout_seconds)
        if proc.pid is not None:
            self._record(proc.name, None, None, None)

    def start(
        self, key: str, *, wait_registered: bool = False, timeout_seconds: float = 90.0
    ) -> None:
        """Start one stopped process with its properties file as it is now; return once it
        listens (and, with wait_registered, once every nameserver lists it)."""
        proc = self._find(key)
        if proc.is_running():
            raise SandboxError(f"{proc.kind} {proc.key} already runs (pid {proc.pid})")
        addr = proc.addr
        props: dict[str, str] = {}
        if proc.kind == "broker":
            props = _read_properties(proc.properties)
            port = props.get("listenPort", "")
            if not port.isdigit():
                raise SandboxError(f"{proc.properties}: listenPort is missing or not a number")
            addr = f"{props.get('brokerIP1', HOST)}:{port}"
        if proc.pid is not None:
            _reap(proc.pid)  # a zombie we are the parent of
        env = {**os.environ, "ROCKETMQ_HOME": str(self.dir)}
        started = self._launch(proc, env)
        try:
            deadline = time.monotonic() + timeout_seconds
            _wait_listening([started], lambda _p: addr, timeout_seconds)
            if wait_registered and proc.kind == "broker":
                brokers_id = props.get("brokerId", "")
                if not brokers_id.isdigit():
                    raise SandboxError(f"{proc.properties}: brokerId is missing or not a number")
                shown = _Proc(
                    started.kind,
                    started.name,
                    started.key,
                    addr,
                    started.main_class,
                    started.properties,
                    started.log,
                    started.argv,
                    started.pid,
                    started.start_ticks,
                )
                expectation = _Expectation(
                    shown, props.get("brokerName", proc.key.split(":")[0]), int(brokers_id)
                )
                nameservers = [p.key for p in self._procs() if p.kind == "nameserver"]
                _wait_registered([expectation], nameservers, max(1.0, deadline - time.monotonic()))
        except SandboxError:
            if not started.is_running():
                self._record(proc.name, None, None, None)
            raise

    # ---- nameserver conveniences (the generic methods take their addresses too)

    def kill_nameserver(self, addr: str, signal: str = "KILL") -> None:
        self.kill(self.resolve_nameserver(addr), signal)

    def stop_nameserver(self, addr: str, *, timeout_seconds: float = 30.0) -> None:
        self.stop(self.resolve_nameserver(addr), timeout_seconds=timeout_seconds)

    def start_nameserver(self, addr: str, *, timeout_seconds: float = 60.0) -> None:
        self.start(self.resolve_nameserver(addr), timeout_seconds=timeout_seconds)

    def resolve_nameserver(self, addr_or_index: str | int) -> str:
        addrs = self.nameserver_addrs()
        text = str(addr_or_index)
        if text.isdigit() and int(text) < len(addrs):
            return addrs[int(text)]
        if text in addrs:
            return text
        raise UnknownProcess(
            f"no nameserver {text!r} in the sandbox in {self.dir}; "
            f"nameservers: {', '.join(f'{i} = {a}' for i, a in enumerate(addrs))}"
        )

    def resolve_broker(self, key: str) -> str:
        if not re.fullmatch(r"[^:\s]+:\d+", key):
            raise UnknownProcess(f"{key!r} is not brokerName:brokerId, e.g. broker-a:0")
        keys = self.broker_keys()
        if key not in keys:
            raise UnknownProcess(
                f"no broker {key} in the sandbox in {self.dir}; brokers: {', '.join(keys)}"
            )
        return key
