"""A real RocketMQ master/slave cluster on 127.0.0.1: `Sandbox` brings it up and down, and acts
on its single processes (files: _files.py, ports: _topology.py, processes: _procs.py)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal as signals
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..etcd import etcd_binary
from ._acl import AclSetup, acl_credentials, acl_leftovers, new_acl_setup
from ._etcd import (
    ETCD_DIR,
    INSTANCE_COUNT,
    EtcdProc,
    etcd_doc,
    etcd_instances,
    etcd_procs,
    start_etcd,
    stop_etcd,
    wait_etcd_healthy,
)
from ._files import (
    BROKER_MAIN,
    NAMESRV_MAIN,
    WatchdogInstance,
    check_dir_path,
    read_properties,
    render_files,
    write_atomic,
)
from ._plugin import (
    PLUGIN_DIR,
    PLUGIN_JAR_NAME,
    PROMOTIONS,
    SANDBOX_SECRET_NAME,
    Promotion,
    new_secret,
    plugin_jar,
    write_private,
)
from ._procs import (
    SIGNALS,
    Expectation,
    Proc,
    ProcessStatus,
    reap,
    send_signal,
    spawn,
    terminate,
    wait_until_gone,
    wait_until_listening,
    wait_until_registered,
)
from ._runtime import (
    DEFAULT_VERSION,
    Jvm,
    SandboxError,
    Tls,
    check_heap,
    ensure_rocketmq,
    find_java,
    rocketmq_major,
)
from ._topology import (
    HOST,
    Replication,
    Topology,
    auto_port_range,
    pick_base_port,
    plan_topology,
    unbindable_ports,
)

if TYPE_CHECKING:
    from ._netns import NetnsTopology

__all__ = ["Sandbox", "UnknownProcess"]

_PORT_RACE_ATTEMPTS = 3
_PORT_BUSY = "Address already in use"


class UnknownProcess(SandboxError):
    """A --broker or --nameserver that names no process of this sandbox."""


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

    def _procs(self) -> list[Proc]:
        doc = self.info()
        try:
            state: dict[str, Any] = json.loads(self._state_path.read_text())
            recorded: dict[str, Any] = state["processes"]
            procs: list[Proc] = []
            for index, ns in enumerate(doc["nameservers"]):
                name = f"namesrv-{index}"
                rec = recorded[name]
                procs.append(
                    Proc(
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
                    Proc(
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

    def _find(self, key: str) -> Proc:
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
                    role = read_properties(proc.properties).get("brokerRole", "?")
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
        for member in self.etcd_members():
            state = member.state()
            out.append(
                ProcessStatus(
                    member.key,
                    member.key,
                    "etcd",
                    member.endpoint,
                    member.pid if state != "stopped" else None,
                    state,
                    "etcd member",
                    str(member.data_dir),
                    str(member.log),
                )
            )
        return out

    def etcd_members(self) -> list[EtcdProc]:
        """The etcd members of a sandbox started with --etcd (none without)."""
        return etcd_procs(self.info())

    def instance_config_paths(self) -> list[Path]:
        """Every watchdog config of this sandbox: watchdog.toml, and with --etcd
        watchdog-2.toml and watchdog-3.toml (one per instance)."""
        instances = self.info().get("etcd", {}).get("instances", [])
        return [Path(i["config"]) for i in instances] or [self.config_path]

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
            write_atomic(self._state_path, json.dumps(state, indent=2) + "\n")
            write_atomic(self.cluster_path, json.dumps(doc, indent=2) + "\n")

    def _record_etcd(self, members: Sequence[EtcdProc]) -> None:
        """Set the etcd members' pids in cluster.json."""
        with self._lock():
            doc = self.info()
            doc["etcd"]["members"] = [m.to_json() for m in members]
            write_atomic(self.cluster_path, json.dumps(doc, indent=2) + "\n")

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
        tls: Tls = "disabled",
        timeout_seconds: float = 180.0,
        netns: bool = False,
        promotion: Promotion = "restart",
        etcd: bool = False,
        acl: bool = False,
    ) -> dict[str, Any]:
        """Start the cluster; return cluster.json once every broker is registered on every
        nameserver. On any failure, stop what was started and raise SandboxError.

        tls="disabled" (the default) starts the JVMs with -Dtls.server.mode=disabled: RocketMQ
        then skips generating self-signed RSA-2048 certificates at every boot (two per broker,
        seconds of CPU: bench/results/broker_start.md); tls="permissive" keeps RocketMQ's own
        default (TLS and plain TCP on the same port, a new self-signed key at each boot).

        netns=True lays the cluster out as separate hosts (network namespaces on a bridge, an
        sshd in each; see _netns.py): one group, one slave, base_port ignored; needs root.

        promotion="inplace" puts the broker plug-in (broker-plugin/, built by `make plugin`) on
        every broker's classpath, gives every broker and the watchdog one fresh secret (0600:
        STORE/watchdog-plugin.secret, DIR/plugin.secret), and makes watchdog.toml promote in
        place ([failover] promotion, plugin_secret_file). 4.9.x only.

        etcd=True also starts a 3-member etcd on 127.0.0.1 (data under DIR/etcd, ports in the
        sandbox's block) before the brokers, and writes one config per watchdog instance:
        watchdog.toml (wd-1), watchdog-2.toml (wd-2), watchdog-3.toml (wd-3), each with its own
        state dir and metrics port and the same [etcd] table (lease_ttl 3s). Not with netns.

        acl=True turns RocketMQ ACL 1.0 on (aclEnable=true) on every broker, with an admin
        account for the watchdog and a normal one for clients in DIR/conf/plain_acl.yml, their
        secret keys in DIR/acl-admin.secret and DIR/acl-client.secret (0600), cluster.json's
        "acl" naming them, and an [acl] table in every watchdog config (_acl.py). 4.9.x only;
        not with netns."""
        check_dir_path(self.dir)
        if etcd:
            if netns:
                raise SandboxError("--etcd is not supported with --netns")
            binary = etcd_binary()
            if not os.access(binary, os.X_OK):
                raise SandboxError(
                    f"{binary} not found: --etcd needs etcd (Debian: apt-get install "
                    "etcd-server; `make system-deps`)"
                )
        if promotion not in PROMOTIONS:
            raise SandboxError(f"--promotion must be restart or inplace, not {promotion!r}")
        if acl:
            if netns:
                raise SandboxError("--acl is not supported with --netns")
            if rocketmq_major(version) != 4:
                raise SandboxError(f"--acl needs RocketMQ 4.9.x (ACL 1.0), not {version}")
        acl_setup = new_acl_setup() if acl else None
        jar = None
        if promotion == "inplace":
            if rocketmq_major(version) != 4:
                raise SandboxError(f"--promotion inplace needs RocketMQ 4.9.x, not {version}")
            jar = plugin_jar()  # fail before touching the folder
        if netns:
            if groups != 1 or slaves != 1:
                raise SandboxError("--netns lays out exactly one group with one slave")
            check_heap(heap)
            check_heap(namesrv_heap)
            if tls not in ("permissive", "disabled"):
                raise SandboxError(f"--tls must be permissive or disabled, not {tls!r}")
            # The plug-in's jar rides in broker_jars; up_netns installs it and makes the secrets.
            jars = () if jar is None else (jar,)
            return self._up_netns(
                version, replication, Jvm(Path(), version, heap, namesrv_heap, tls, jars),
                timeout_seconds,
            )  # fmt: skip
        plan_topology(
            base_port or 20000, groups=groups, slaves=slaves, replication=replication, etcd=etcd
        )
        check_heap(heap)
        check_heap(namesrv_heap)
        if tls not in ("permissive", "disabled"):
            raise SandboxError(f"--tls must be permissive or disabled, not {tls!r}")
        find_java()  # fail before touching the folder or Maven
        self._prepare_dir()
        broker_jars: tuple[Path, ...] = ()
        secret = None
        if jar is not None:
            installed = self.dir / PLUGIN_DIR / PLUGIN_JAR_NAME
            installed.parent.mkdir(exist_ok=True)
            shutil.copyfile(jar, installed)
            broker_jars = (installed,)
            secret = new_secret()
        jvm = Jvm(ensure_rocketmq(version), version, heap, namesrv_heap, tls, broker_jars)
        deadline = time.monotonic() + timeout_seconds
        for attempt in range(1, _PORT_RACE_ATTEMPTS + 1):
            if base_port:
                topology = plan_topology(
                    base_port, groups=groups, slaves=slaves, replication=replication, etcd=etcd
                )
                busy = unbindable_ports(topology.ports())
                if busy:
                    raise SandboxError(
                        f"port(s) {', '.join(map(str, busy))} on {HOST} are in use; "
                        "choose another --base-port, or 0 for a free block"
                    )
            else:
                low, high = auto_port_range()
                base = pick_base_port(groups, slaves, low=low, high=high, etcd=etcd)
                topology = plan_topology(
                    base, groups=groups, slaves=slaves, replication=replication, etcd=etcd
                )
            try:
                self._boot(topology, jvm, deadline, plugin_secret=secret, acl=acl_setup)
                return self.info()
            except SandboxError as exc:
                # Another program may bind a port between our check and the JVM's bind: with
                # a block of our own choosing, try another one.
                if base_port or attempt == _PORT_RACE_ATTEMPTS or _PORT_BUSY not in str(exc):
                    raise
                for sub in ("store", "home", ETCD_DIR):
                    shutil.rmtree(self.dir / sub, ignore_errors=True)
        raise AssertionError("unreachable")

    def _boot(
        self,
        topology: Topology,
        jvm: Jvm,
        deadline: float,
        *,
        plugin_secret: str | None = None,
        acl: AclSetup | None = None,
    ) -> None:
        # cluster.json names the plug-in's setup only when there is one (a restart sandbox's
        # cluster.json stays as it was).
        extra: dict[str, Any] = {}
        if plugin_secret is not None:
            extra["promotion"] = "inplace"
            extra["plugin_secret_file"] = str(self.dir / SANDBOX_SECRET_NAME)
        instances: tuple[WatchdogInstance, ...] = ()
        if topology.etcd_ports:
            extra["etcd"] = etcd_doc(self.dir, topology)
            instances = etcd_instances(topology)
        procs = self._write_files(
            topology, jvm, extra=extra, plugin_secret=plugin_secret, instances=instances, acl=acl
        )
        self._start_procs(procs, topology, deadline, masters_first=rocketmq_major(jvm.version) >= 5)

    def _start_procs(
        self, procs: list[Proc], topology: Topology, deadline: float, *, masters_first: bool = False
    ) -> None:
        try:
            env = {**os.environ, "ROCKETMQ_HOME": str(self.dir)}
            members = self.etcd_members()
            if members:
                # First: a watchdog instance started right after `up` finds its etcd serving.
                members = start_etcd(members, os.environ)
                self._record_etcd(members)
                wait_etcd_healthy(members, max(1.0, deadline - time.monotonic()))
            nameservers = [p for p in procs if p.kind == "nameserver"]
            brokers = [p for p in procs if p.kind == "broker"]
            # Nameservers first: a broker registers at boot and then only every 30 s.
            started = [self._launch(p, env) for p in nameservers]
            wait_until_listening(started, lambda p: p.addr, deadline - time.monotonic())
            plans = list(zip(brokers, topology.brokers, strict=True))
            # 5.x: a broker's boot registration races its own connections to the nameservers
            # and is often skipped (the next one comes 10 s later, then every 30 s), and a slave
            # learns its master's HA address only from a registration answered while the master
            # is listed; started together, a 5.x slave replicated nothing for up to 40 s. So
            # there the masters start first and the slaves once every master is registered.
            waves = [plans]
            if masters_first:
                waves = [[x for x in plans if x[1].broker_id == 0]]
                waves.append([x for x in plans if x[1].broker_id != 0])
            for wave in filter(None, waves):
                expected = [
                    Expectation(self._launch(p, env), b.broker_name, b.broker_id) for p, b in wave
                ]
                wait_until_registered(
                    expected,
                    topology.nameserver_addrs,
                    max(1.0, deadline - time.monotonic()),
                    credentials=acl_credentials(self.info()),
                )
        except BaseException:
            self._stop_all(timeout_seconds=5.0)
            raise

    def _prepare_dir(self) -> None:
        if self.cluster_path.exists():
            running = [p.key for p in self._procs() if p.is_running()]
            running += [m.key for m in self.etcd_members() if m.is_running()]
            if running:
                raise SandboxError(
                    f"a sandbox already runs in {self.dir} ({', '.join(running)}); "
                    "run `sandbox down` first"
                )
            # A stopped sandbox: start over with empty stores and a watchdog that remembers
            # nothing of the last run (its anti-flap block, epoch and master would otherwise
            # make the next kill do nothing for an hour); the logs are appended to.
            # With --etcd: its data (a new cluster every time) and the other instances' files.
            instances = range(2, INSTANCE_COUNT + 1)
            for sub in (
                "store", "home", "watchdog-state", PLUGIN_DIR, ETCD_DIR,
                *(f"watchdog-state-{i}" for i in instances),
            ):  # fmt: skip
                shutil.rmtree(self.dir / sub, ignore_errors=True)
            (self.dir / SANDBOX_SECRET_NAME).unlink(missing_ok=True)
            for i in instances:
                (self.dir / f"watchdog-{i}.toml").unlink(missing_ok=True)
            for leftover in (
                *acl_leftovers(self.dir),
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
        jvm: Jvm,
        *,
        prefixes: Mapping[str, Sequence[str]] | None = None,
        extra: Mapping[str, Any] | None = None,
        config_text: str | None = None,
        plugin_secret: str | None = None,
        instances: Sequence[WatchdogInstance] = (),
        acl: AclSetup | None = None,
    ) -> list[Proc]:
        """Write what render_files renders: properties and logback files, the plug-in secrets,
        sandbox.json, cluster.json and watchdog.toml; the processes to start."""
        files = render_files(
            self.dir,
            topology,
            jvm,
            prefixes=prefixes,
            extra=extra,
            config_text=config_text,
            plugin_secret=plugin_secret,
            instances=instances,
            acl=acl,
        )
        (self.dir / "conf").mkdir(exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        for home in files.homes:
            home.mkdir(parents=True, exist_ok=True)
        for path, text in files.texts.items():
            path.write_text(text)
        for path, text in files.private_texts.items():
            write_private(path, text)
        with self._lock():
            write_atomic(self._state_path, json.dumps(files.state, indent=2) + "\n")
            write_atomic(self.cluster_path, json.dumps(files.cluster, indent=2) + "\n")
        self.config_path.write_text(files.config_text)
        for path, text in files.instance_configs.items():
            path.write_text(text)
        return list(files.procs)

    def _launch(self, proc: Proc, env: Mapping[str, str]) -> Proc:
        role = None
        if proc.kind == "broker":
            role = read_properties(proc.properties).get("brokerRole")
        pid, ticks = spawn(proc.argv, proc.log, env)
        self._record(proc.name, pid, ticks, role)
        return Proc(
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
        members = self.etcd_members()
        stopped_members: list[EtcdProc] = []
        # Brokers first: a broker that outlives the nameservers waits on them while shutting
        # down. etcd last: watchdog instances still running keep their view until the end.
        try:
            terminate([p for p in running if p.kind == "broker"], timeout_seconds)
            terminate([p for p in running if p.kind == "nameserver"], timeout_seconds)
            stopped_members = stop_etcd(members, timeout_seconds)
        finally:
            for proc in procs:
                if proc.pid is not None and not proc.is_running():
                    self._record(proc.name, None, None, None)
            if any(m.pid is not None for m in members):
                self._record_etcd(
                    [
                        m if m.is_running() else replace(m, pid=None, start_ticks=None)
                        for m in members
                    ]
                )
        return [p.key for p in running] + [m.key for m in stopped_members]

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
        self, version: str, replication: str, jvm: Jvm, timeout_seconds: float
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
        send_signal(proc, SIGNALS[sig_name])
        if sig_name in ("KILL", "TERM"):
            if proc.state() == "paused" and sig_name == "TERM":
                send_signal(proc, signals.SIGCONT)
            if not wait_until_gone([proc], 10.0 if sig_name == "TERM" else 5.0):
                self._record(proc.name, None, None, None)

    def stop(self, key: str, *, timeout_seconds: float = 30.0) -> None:
        """Graceful stop: TERM, wait up to timeout_seconds, then KILL; returns once it is gone."""
        proc = self._find(key)
        if proc.is_running():
            terminate([proc], timeout_seconds)
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
            props = read_properties(proc.properties)
            port = props.get("listenPort", "")
            if not port.isdigit():
                raise SandboxError(f"{proc.properties}: listenPort is missing or not a number")
            addr = f"{props.get('brokerIP1', HOST)}:{port}"
        if proc.pid is not None:
            reap(proc.pid)  # a zombie we are the parent of
        env = {**os.environ, "ROCKETMQ_HOME": str(self.dir)}
        started = self._launch(proc, env)
        try:
            deadline = time.monotonic() + timeout_seconds
            wait_until_listening([started], lambda _p: addr, timeout_seconds)
            if wait_registered and proc.kind == "broker":
                brokers_id = props.get("brokerId", "")
                if not brokers_id.isdigit():
                    raise SandboxError(f"{proc.properties}: brokerId is missing or not a number")
                shown = Proc(
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
                expectation = Expectation(
                    shown, props.get("brokerName", proc.key.split(":")[0]), int(brokers_id)
                )
                nameservers = [p.key for p in self._procs() if p.kind == "nameserver"]
                wait_until_registered(
                    [expectation],
                    nameservers,
                    max(1.0, deadline - time.monotonic()),
                    credentials=acl_credentials(self.info()),
                )
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
