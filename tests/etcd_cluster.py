"""A throwaway etcd cluster on 127.0.0.1: N members, free ports, their own data dirs, and the
faults the coordination tests need (stop, kill -9, SIGSTOP/SIGCONT, restart) one member at a time.

    with start_etcd_cluster(tmp_path / "etcd") as cluster:
        cluster.endpoints                # ("127.0.0.1:27xxx", ...): what [etcd] endpoints takes
        cluster.members[0].freeze()      # SIGSTOP: its connections stay open and hang
        cluster.members[0].thaw()
        cluster.members[1].stop()        # SIGTERM; start() brings it back on its ports and data

With `tls=True` members serve https only to clients holding a certificate of the cluster's own
CA (cluster.tls names the files); `cluster.enable_auth(password)` turns etcd's auth on with a
root user. Debian's `etcd-server` package (make system-deps) provides /usr/bin/etcd,
`etcd-client` /usr/bin/etcdctl. Every member is killed when the block ends, whatever happened.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from watchdog.tools.etcd import (
    EtcdMemberSpec,
    EtcdServerTls,
    etcd_binary,
    member_argv,
    plan_members,
)

__all__ = [
    "ETCD",
    "ETCDCTL",
    "EtcdCluster",
    "EtcdMember",
    "EtcdTls",
    "free_ports",
    "make_tls",
    "start_etcd_cluster",
]

ETCD = etcd_binary()
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
# The ports given to etcd in the test suite (sshd has 26000-26999, Prometheus 24000-24999).
PORT_RANGE = range(27000, 28000)


def free_ports(count: int, exclude: frozenset[int] = frozenset()) -> tuple[int, ...]:
    """`count` ports in PORT_RANGE that nothing listens on now, tried from a random offset so
    that clusters started side by side rarely race for the same ports."""
    ports: list[int] = []
    start = random.randrange(len(PORT_RANGE))
    for i in range(len(PORT_RANGE)):
        port = PORT_RANGE[(start + i) % len(PORT_RANGE)]
        if port in exclude:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return tuple(ports)
    raise RuntimeError(f"no {count} free ports in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")


@dataclass(frozen=True)
class EtcdTls:
    """A CA, one server certificate for 127.0.0.1 and localhost, one client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def make_tls(directory: Path) -> EtcdTls:
    """Generate the files under `directory` (EC P-256, valid for a day)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def builder(
        subject: str, issuer: str, key: ec.EllipticCurvePrivateKey
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        builder("rmq-watchdog test etcd CA", "rmq-watchdog test etcd CA", ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    files = EtcdTls(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
    )
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for cert_path, key_path, cn, usage, names in (
        (
            files.server_cert,
            files.server_key,
            "etcd",
            ExtendedKeyUsageOID.SERVER_AUTH,
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
        ),
        (files.client_cert, files.client_key, "rmq-watchdog", ExtendedKeyUsageOID.CLIENT_AUTH, []),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        b = builder(cn, "rmq-watchdog test etcd CA", key).add_extension(
            x509.ExtendedKeyUsage([usage]), critical=False
        )
        if names:
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
    return files


@dataclass
class EtcdMember:
    """One etcd process; stop/start keep its name, ports and data dir (it rejoins as itself).
    Its argv is watchdog/tools/etcd.py's, as the sandbox will run it."""

    spec: EtcdMemberSpec
    cluster: tuple[EtcdMemberSpec, ...]
    token: str
    tls: EtcdTls | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    frozen: bool = False
    started_once: bool = False
    root_password: str | None = None  # once auth is on, etcdctl logs in as root

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def endpoint(self) -> str:
        return self.spec.endpoint

    @property
    def client_url(self) -> str:
        return self.spec.client_url(self.tls is not None)

    @property
    def directory(self) -> Path:
        return self.spec.directory

    @property
    def log_path(self) -> Path:
        return self.spec.log_path

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def argv(self) -> list[str]:
        server_tls = (
            None
            if self.tls is None
            else EtcdServerTls(self.tls.ca, self.tls.server_cert, self.tls.server_key)
        )
        return member_argv(self.spec, self.cluster, token=self.token, tls=server_tls, etcd=ETCD)

    def start(self) -> None:
        """Start the process (the cluster may still lack a quorum: no waiting here)."""
        if self.is_running:
            raise RuntimeError(f"etcd {self.name} already runs as pid {self.process.pid}")  # type: ignore[union-attr]
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        self.frozen = False
        self.started_once = True

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)

    def stop(self) -> None:
        """SIGTERM (a clean shutdown: it hands over raft leadership if it had it) and wait."""
        proc = self.process
        if proc is None:
            return
        if self.frozen:
            self.thaw()
        self._signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: the member vanishes mid-whatever, as a crashed host's would."""
        proc = self.process
        if proc is None:
            return
        self._signal(signal.SIGKILL)
        proc.wait(timeout=10)
        self.process = None
        self.frozen = False

    def freeze(self) -> None:
        """SIGSTOP: the member keeps its sockets but answers nothing (a hung host)."""
        self._signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)
        self.frozen = False

    def restart(self) -> None:
        self.stop()
        self.start()

    def etcdctl(self, *args: str, timeout_seconds: float = 5.0) -> subprocess.CompletedProcess[str]:
        """etcdctl against this member alone (ETCDCTL_API=3), as root once auth is on."""
        flags = [f"--endpoints={self.client_url}", "--command-timeout=2s"]
        if self.tls is not None:
            flags += [
                f"--cacert={self.tls.ca}",
                f"--cert={self.tls.client_cert}",
                f"--key={self.tls.client_key}",
            ]
        if self.root_password is not None:
            flags.append(f"--user=root:{self.root_password}")
        return subprocess.run(
            [ETCDCTL, *flags, *args],
            capture_output=True,
            text=True,
            timeout=timeout_seconds,
            env={**os.environ, "ETCDCTL_API": "3"},
            stdin=subprocess.DEVNULL,
        )

    def is_healthy(self) -> bool:
        """This member answers a linearizable read: it is up and part of a quorum."""
        if not self.is_running or self.frozen:
            return False
        try:
            return self.etcdctl("endpoint", "health").returncode == 0
        except subprocess.TimeoutExpired:
            return False


@dataclass
class EtcdCluster:
    directory: Path
    members: tuple[EtcdMember, ...]
    tls: EtcdTls | None = None

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(m.endpoint for m in self.members)

    def member_of(self, endpoint: str) -> EtcdMember:
        return next(m for m in self.members if m.endpoint == endpoint)

    def raft_leader(self) -> EtcdMember | None:
        """The member that is raft leader now, asked of the running members."""
        for member in self.members:
            if not member.is_running or member.frozen:
                continue
            try:
                out = member.etcdctl("endpoint", "status", "-w", "json")
            except subprocess.TimeoutExpired:
                continue
            if out.returncode != 0:
                continue
            try:
                status = json.loads(out.stdout)[0]["Status"]
            except (ValueError, LookupError, TypeError):
                continue
            leader_id = status.get("leader")
            if leader_id and leader_id == status.get("header", {}).get("member_id"):
                return member
        return None

    def start(self) -> None:
        for member in self.members:
            member.start()

    def wait_healthy(
        self, members: Sequence[EtcdMember] | None = None, timeout_seconds: float = 30.0
    ) -> None:
        """Until every given member (default: every running one) serves linearizable reads."""
        wanted = [m for m in (members or self.members) if members is not None or m.is_running]
        deadline = time.monotonic() + timeout_seconds
        while True:
            sick = [m for m in wanted if not m.is_healthy()]
            if not sick:
                return
            for m in sick:
                if m.started_once and not m.is_running and not m.frozen:
                    raise RuntimeError(f"etcd {m.name} exited:\n{_tail(m.log_path)}")
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {m.name}\n{_tail(m.log_path)}" for m in sick)
                raise RuntimeError(
                    f"etcd members {[m.name for m in sick]} not healthy within "
                    f"{timeout_seconds:.0f} s:\n{logs}"
                )
            time.sleep(0.1)

    def enable_auth(self, root_password: str) -> None:
        """Add the root user (etcd's auth needs it) and turn authentication on."""
        first = next(m for m in self.members if m.is_running and not m.frozen)
        for args in (("user", "add", f"root:{root_password}"), ("auth", "enable")):
            out = first.etcdctl(*args)
            if out.returncode != 0:
                raise RuntimeError(f"etcdctl {' '.join(args[:2])}: {out.stderr.strip()}")
        for member in self.members:
            member.root_password = root_password

    def close(self) -> None:
        """Kill every member (thawed first: a stopped process still dies, but tidily)."""
        for member in self.members:
            if member.frozen:
                member.thaw()
            with contextlib.suppress(Exception):
                member.kill()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def start_etcd_cluster(
    directory: Path, size: int = 3, *, tls: bool = False
) -> Iterator[EtcdCluster]:
    """Start `size` members under `directory`, wait until all serve, kill them all at the end."""
    if not os.access(ETCD, os.X_OK):
        raise RuntimeError(f"{ETCD} not found: run `make system-deps` (installs etcd-server)")
    specs = plan_members(directory, free_ports(2 * size))
    token = f"rmqwd-test-{os.getpid()}-{specs[0].client_port}"
    files = make_tls(directory / "tls") if tls else None
    cluster = EtcdCluster(
        directory=directory,
        tls=files,
        members=tuple(EtcdMember(spec, specs, token, tls=files) for spec in specs),
    )
    try:
        cluster.start()
        cluster.wait_healthy(cluster.members)
        yield cluster
    finally:
        cluster.close()
