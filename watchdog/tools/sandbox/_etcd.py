"""The sandbox's etcd (`up --etcd`): three members on 127.0.0.1, their data under DIR/etcd,
started before the brokers and stopped after them, and the three watchdog instances sharing it
(watchdog.toml, watchdog-2.toml, watchdog-3.toml)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..etcd import EtcdMemberSpec, etcd_binary, etcd_toml_table, member_argv, plan_members
from ._files import CLUSTER_NAME, WatchdogInstance
from ._procs import State, cmdline, has_exited, log_tail, proc_stat, reap, spawn
from ._runtime import SandboxError
from ._topology import Topology

__all__ = [
    "ETCD_DIR",
    "EtcdProc",
    "INSTANCE_COUNT",
    "LEASE_TTL",
    "REQUEST_TIMEOUT",
    "etcd_doc",
    "etcd_instances",
    "etcd_procs",
    "start_etcd",
    "stop_etcd",
    "wait_etcd_healthy",
]

ETCD_DIR = "etcd"  # DIR/etcd/m1/data, DIR/etcd/m1/etcd.log, ...
INSTANCE_COUNT = 3
# Short, so a killed leader instance is replaced within seconds (etcd's floor is 2 s with its
# default election timeout); requests get 1 s, a third of it, so one slow answer on a loaded
# machine is not yet "etcd unreachable".
LEASE_TTL = "3s"
REQUEST_TIMEOUT = "1s"
_HEALTH_TIMEOUT_SECONDS = 1.0
_POLL_SECONDS = 0.2


def etcd_instances(topology: Topology) -> tuple[WatchdogInstance, ...]:
    """wd-1 (watchdog.toml, the sandbox's usual config), wd-2 and wd-3, each with its own state
    dir and metrics port and the same [etcd] table."""
    if len(topology.etcd_ports) != 2 * INSTANCE_COUNT:
        raise SandboxError("the sandbox was planned without etcd ports")
    endpoints = [
        f"127.0.0.1:{topology.etcd_ports[i]}" for i in range(0, len(topology.etcd_ports), 2)
    ]
    table = etcd_toml_table(endpoints, lease_ttl=LEASE_TTL, timeout=REQUEST_TIMEOUT)
    ports = (topology.metrics_port, *topology.instance_metrics_ports)
    return tuple(
        WatchdogInstance(
            name=f"wd-{i + 1}",
            config_name="watchdog.toml" if i == 0 else f"watchdog-{i + 1}.toml",
            state_dir_name="watchdog-state" if i == 0 else f"watchdog-state-{i + 1}",
            metrics_port=ports[i],
            etcd_table=table,
        )
        for i in range(INSTANCE_COUNT)
    )


@dataclass(frozen=True)
class EtcdProc:
    """One etcd member as recorded in cluster.json; recognised by pid, start time and its own
    --data-dir on the command line."""

    name: str  # m1, m2, m3
    endpoint: str
    data_dir: Path
    log: Path
    argv: tuple[str, ...]
    pid: int | None
    start_ticks: int | None

    @property
    def key(self) -> str:
        return f"etcd-{self.name}"

    def state(self) -> State:
        if self.pid is None:
            return "stopped"
        stat = proc_stat(self.pid)
        if stat is None or (self.start_ticks is not None and stat[1] != self.start_ticks):
            return "stopped"
        if stat[0] in "ZX":
            return "zombie"
        if f"--data-dir={self.data_dir}" not in cmdline(self.pid):
            return "stopped"  # a reused pid
        return "paused" if stat[0] in "Tt" else "alive"

    def is_running(self) -> bool:
        return self.state() in ("alive", "paused")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "endpoint": self.endpoint,
            "data_dir": str(self.data_dir),
            "log": str(self.log),
            "argv": list(self.argv),
            "pid": self.pid,
            "start_ticks": self.start_ticks,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> EtcdProc:
        return cls(
            name=str(doc["name"]),
            endpoint=str(doc["endpoint"]),
            data_dir=Path(doc["data_dir"]),
            log=Path(doc["log"]),
            argv=tuple(str(a) for a in doc["argv"]),
            pid=doc.get("pid"),
            start_ticks=doc.get("start_ticks"),
        )


def _specs(directory: Path, topology: Topology) -> tuple[EtcdMemberSpec, ...]:
    return plan_members(directory / ETCD_DIR, topology.etcd_ports)


def etcd_doc(directory: Path, topology: Topology) -> dict[str, Any]:
    """cluster.json's "etcd": the endpoints, the key prefix, the instances and their configs,
    and the members (no pid yet)."""
    specs = _specs(directory, topology)
    token = f"rmqwd-sandbox-{specs[0].client_port}"
    etcd = etcd_binary()
    return {
        "endpoints": [s.endpoint for s in specs],
        "prefix": f"/rmq-watchdog/{CLUSTER_NAME}",
        "lease_ttl": LEASE_TTL,
        "instances": [
            {
                "name": i.name,
                "config": str(directory / i.config_name),
                "state_dir": str(directory / i.state_dir_name),
                "metrics": f"127.0.0.1:{i.metrics_port}",
            }
            for i in etcd_instances(topology)
        ],
        "members": [
            EtcdProc(
                name=s.name,
                endpoint=s.endpoint,
                data_dir=s.data_dir,
                log=s.log_path,
                argv=tuple(member_argv(s, specs, token=token, etcd=etcd)),
                pid=None,
                start_ticks=None,
            ).to_json()
            for s in specs
        ],
    }


def etcd_procs(doc: Mapping[str, Any]) -> list[EtcdProc]:
    """The members recorded in cluster.json (none for a sandbox without --etcd)."""
    etcd = doc.get("etcd")
    if not etcd:
        return []
    try:
        return [EtcdProc.from_json(m) for m in etcd["members"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise SandboxError(f"cluster.json: the etcd record is unreadable ({exc!r})") from None


def _is_healthy(endpoint: str) -> bool:
    """etcd's own /health: true once the member has a raft leader and serves reads."""
    try:
        with urllib.request.urlopen(
            f"http://{endpoint}/health", timeout=_HEALTH_TIMEOUT_SECONDS
        ) as answer:
            return bool(json.loads(answer.read()).get("health") == "true")
    except (OSError, ValueError, urllib.error.URLError):
        return False


def _exited(member: EtcdProc) -> SandboxError:
    tail = log_tail(member.log)
    # Sandbox.up tries another port block on this message (its own wording).
    busy = " (Address already in use)" if "address already in use" in tail else ""
    return SandboxError(
        f"etcd {member.name} ({member.endpoint}) exited while starting{busy}; "
        f"the end of {member.log}:\n{tail}"
    )


def start_etcd(members: Sequence[EtcdProc], env: Mapping[str, str]) -> list[EtcdProc]:
    """Start every member (each forms the cluster with the others); the members with their
    pids. Nothing is awaited here: `wait_etcd_healthy`."""
    if not os.access(members[0].argv[0], os.X_OK):
        raise SandboxError(
            f"{members[0].argv[0]} not found: --etcd needs etcd (Debian: apt-get install "
            "etcd-server; `make system-deps`)"
        )
    started = []
    for member in members:
        member.data_dir.parent.mkdir(parents=True, exist_ok=True)
        pid, ticks = spawn(member.argv, member.log, env)
        started.append(
            EtcdProc(
                member.name,
                member.endpoint,
                member.data_dir,
                member.log,
                member.argv,
                pid,
                ticks,
            )
        )
    return started


def wait_etcd_healthy(members: Sequence[EtcdProc], timeout_seconds: float) -> None:
    """Until every member answers healthy; SandboxError with its log when one exits first or
    the time is up."""
    deadline = time.monotonic() + timeout_seconds
    waiting = list(members)
    while waiting:
        for member in list(waiting):
            if _is_healthy(member.endpoint):
                waiting.remove(member)
            elif has_exited(member):
                raise _exited(member)
        if not waiting:
            return
        if time.monotonic() >= deadline:
            member = waiting[0]
            raise SandboxError(
                f"etcd {member.name} ({member.endpoint}) not healthy after "
                f"{timeout_seconds:.0f} s; the end of {member.log}:\n{log_tail(member.log)}"
            )
        time.sleep(_POLL_SECONDS)


def _wait_gone(members: Sequence[EtcdProc], timeout_seconds: float) -> list[EtcdProc]:
    deadline = time.monotonic() + timeout_seconds
    while True:
        left = []
        for member in members:
            state = member.state()
            if state == "zombie" and member.pid is not None:
                reap(member.pid)
            elif state != "stopped":
                left.append(member)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(_POLL_SECONDS)


def _send(member: EtcdProc, sig: signal.Signals) -> None:
    if member.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member.pid, sig)


def stop_etcd(members: Sequence[EtcdProc], timeout_seconds: float) -> list[EtcdProc]:
    """Stop the running members one after another (TERM and CONT, KILL after
    `timeout_seconds`); the members that were running. One at a time: a raft leader stopping
    hands its lead to a peer first, which took 7 s when the peers were stopping too, 0.2 s
    per member this way."""
    running = [m for m in members if m.is_running()]
    for member in running:
        _send(member, signal.SIGTERM)
        _send(member, signal.SIGCONT)
        if _wait_gone([member], timeout_seconds):
            _send(member, signal.SIGKILL)
            if _wait_gone([member], 10.0):
                raise SandboxError(
                    f"could not stop {member.key} (pid {member.pid}), not even with SIGKILL"
                )
    return running
