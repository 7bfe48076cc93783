"""A local etcd cluster as the tests and `sandbox up --etcd` start it: its members, each
member's argv, and the `[etcd]` table of a watchdog.toml that uses it. No process is started
here: tests/etcd_cluster.py and the sandbox (tools/sandbox/_etcd.py) run these argvs their own
way."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ELECTION_MS",
    "HEARTBEAT_MS",
    "EtcdMemberSpec",
    "EtcdServerTls",
    "etcd_binary",
    "etcd_toml_table",
    "member_argv",
    "plan_members",
]

# etcd's defaults (heartbeat 100 ms, election 1 s): a lost raft leader is replaced in ~1 s, and
# the shortest lease etcd grants is 1.5 election timeouts (2 s).
HEARTBEAT_MS = 100
ELECTION_MS = 1000


def etcd_binary() -> str:
    """Debian's etcd-server package puts it in /usr/bin (make system-deps installs it)."""
    return shutil.which("etcd") or "/usr/bin/etcd"


@dataclass(frozen=True)
class EtcdServerTls:
    """What a member serves clients with: https, and only to holders of a `ca` certificate."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class EtcdMemberSpec:
    name: str
    client_port: int
    peer_port: int
    directory: Path  # data/ and the log live here
    host: str = "127.0.0.1"

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "etcd.log"

    def client_url(self, tls: bool) -> str:
        return f"{'https' if tls else 'http'}://{self.endpoint}"


def plan_members(
    directory: Path, ports: Sequence[int], *, host: str = "127.0.0.1"
) -> tuple[EtcdMemberSpec, ...]:
    """Members m1, m2, ... under `directory`, two ports each (client, peer) from `ports`."""
    if not ports or len(ports) % 2:
        raise ValueError(f"two ports per member (client, peer), not {len(ports)}")
    return tuple(
        EtcdMemberSpec(
            name=f"m{i + 1}",
            client_port=ports[2 * i],
            peer_port=ports[2 * i + 1],
            directory=directory / f"m{i + 1}",
            host=host,
        )
        for i in range(len(ports) // 2)
    )


def member_argv(
    member: EtcdMemberSpec,
    members: Sequence[EtcdMemberSpec],
    *,
    token: str,
    tls: EtcdServerTls | None = None,
    etcd: str | None = None,
) -> list[str]:
    """One member's command line. Its first boot forms the cluster ("new"); a restart reads
    its data dir and rejoins as itself. Peers speak plain http on the host's loopback."""
    initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
    client_url = member.client_url(tls is not None)
    argv = [
        etcd or etcd_binary(),
        f"--name={member.name}",
        f"--data-dir={member.data_dir}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={member.peer_url}",
        f"--initial-advertise-peer-urls={member.peer_url}",
        f"--initial-cluster={initial}",
        "--initial-cluster-state=new",
        f"--initial-cluster-token={token}",
        f"--heartbeat-interval={HEARTBEAT_MS}",
        f"--election-timeout={ELECTION_MS}",
        # What an operator must set too: every instance's key changes every few seconds, and
        # without compaction etcd's history grows until its space quota stops all writes.
        "--auto-compaction-mode=periodic",
        "--auto-compaction-retention=10m",
        "--logger=zap",
        "--log-outputs=stderr",
    ]
    if tls is not None:
        argv += [
            f"--cert-file={tls.cert}",
            f"--key-file={tls.key}",
            f"--trusted-ca-file={tls.ca}",
            "--client-cert-auth",
        ]
    return argv


def etcd_toml_table(
    endpoints: Sequence[str],
    *,
    lease_ttl: str = "10s",
    timeout: str | None = None,
    prefix: str | None = None,
    cacert: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
) -> str:
    """The `[etcd]` table (a blank line first) of a watchdog.toml using these members."""
    # A JSON string (ASCII, standard escapes) is a valid TOML basic string, as in sandbox/.
    lines = ["", "[etcd]", f"endpoints = [{', '.join(json.dumps(e) for e in endpoints)}]"]
    if prefix is not None:
        lines.append(f"prefix = {json.dumps(prefix)}")
    lines.append(f"lease_ttl = {json.dumps(lease_ttl)}")
    if timeout is not None:
        lines.append(f"timeout = {json.dumps(timeout)}")
    for name, path in (("cacert", cacert), ("cert", cert), ("key", key)):
        if path is not None:
            lines.append(f"{name} = {json.dumps(str(path))}")
    return "\n".join(lines) + "\n"
