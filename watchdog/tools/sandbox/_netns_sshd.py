"""An OpenSSH sshd on port 22 of each namespace host, and the boot and teardown of --netns."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._files import write_atomic
from ._netns import (
    PROCESS_HOSTS,
    SSH_HOSTS,
    NetnsTopology,
    SshAccess,
    check_netns_support,
    netns_watchdog_toml_text,
    pick_subnet,
    plan_netns_cluster,
    run_watchdog_script,
)
from ._plugin import PLUGIN_DIR, PLUGIN_JAR_NAME, SANDBOX_SECRET_NAME, new_secret
from ._procs import spawn
from ._runtime import Jvm, SandboxError, ensure_rocketmq, find_java

if TYPE_CHECKING:
    from ._cluster import Sandbox

__all__ = [
    "SSHD",
    "SshdRecord",
    "prepare_ssh",
    "start_sshd",
    "stop_sshd",
    "teardown_netns",
    "up_netns",
]

SSHD = "/usr/sbin/sshd"
SSH_PORT = 22
_START_SECONDS = 15.0


@dataclass(frozen=True)
class SshdRecord:
    """One running sshd: its host, pid (the `ip netns exec` that became sshd) and files."""

    host: str
    pid: int
    start_ticks: int | None
    config: str
    log: str

    def to_doc(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "config": self.config,
            "log": self.log,
        }


def _keygen(path: Path, comment: str) -> None:
    for stale in (path, path.with_suffix(".pub")):
        stale.unlink(missing_ok=True)
    try:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxError(f"ssh-keygen could not make {path}: {exc}") from None


def prepare_ssh(directory: Path, net: NetnsTopology, hosts: Sequence[str]) -> SshAccess:
    """Write DIR/ssh: a client key (authorized for root everywhere), each host's host key and
    sshd_config (listening on its address, port 22), and a known_hosts naming them all."""
    if not os.access(SSHD, os.X_OK):
        raise SandboxError(f"{SSHD} is missing; install OpenSSH's server (Debian: openssh-server)")
    ssh_dir = directory / "ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    client_key = ssh_dir / "client_ed25519"
    _keygen(client_key, "rmq-watchdog-netns-client")
    authorized = ssh_dir / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    known: list[str] = []
    for name in hosts:
        host = net.host(name)
        folder = ssh_dir / name
        folder.mkdir(mode=0o700, exist_ok=True)
        host_key = folder / "ssh_host_ed25519_key"
        _keygen(host_key, f"rmq-watchdog-netns-{name}")
        kind, key = host_key.with_suffix(".pub").read_text().split()[:2]
        known.append(f"{host.address} {kind} {key}")
        (folder / "sshd_config").write_text(
            f"""\
# written by rmq-watchdog sandbox --netns: sshd of {name} ({host.netns})
Port {SSH_PORT}
ListenAddress {host.address}
HostKey {host_key}
PidFile {folder / "sshd.pid"}
AuthorizedKeysFile {authorized}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
UseDNS no
MaxStartups 50:30:100
Subsystem sftp internal-sftp
LogLevel VERBOSE
"""
        )
    known_hosts = ssh_dir / "known_hosts"
    known_hosts.write_text("\n".join(known) + "\n")
    return SshAccess("root", SSH_PORT, str(client_key), str(known_hosts))


def _start_ticks(pid: int) -> int | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(data[data.rindex(")") + 2 :].split()[19])


def _accepting(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def start_sshd(directory: Path, net: NetnsTopology, name: str) -> SshdRecord:
    """Start `name`'s sshd inside its namespace; return once it accepts on its address:22."""
    # Debian's sshd refuses to start without its privilege separation directory.
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    folder = directory / "ssh" / name
    config = folder / "sshd_config"
    log = folder / "sshd.log"
    address = net.address(name)
    pid, ticks = spawn(net.exec_argv(name, [SSHD, "-D", "-e", "-f", str(config)]), log, os.environ)
    record = SshdRecord(name, pid, ticks, str(config), str(log))
    deadline = time.monotonic() + _START_SECONDS
    while not _accepting(address, SSH_PORT):
        if not _alive(record) or time.monotonic() > deadline:
            stop_sshd(record)
            tail = log.read_text(errors="replace")[-1500:]
            raise SandboxError(f"sshd in {name} does not accept on {address}:{SSH_PORT}:\n{tail}")
        time.sleep(0.05)
    return record


def _alive(record: SshdRecord) -> bool:
    """Running, and still the process we started (its cmdline is empty while it execs)."""
    try:
        data = Path(f"/proc/{record.pid}/stat").read_text()
    except OSError:
        return False
    fields = data[data.rindex(")") + 2 :].split()
    return fields[0] not in "ZX" and int(fields[19]) == record.start_ticks


def _is_ours(record: SshdRecord) -> bool:
    if _start_ticks(record.pid) != record.start_ticks:
        return False
    try:
        argv = Path(f"/proc/{record.pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    # sshd rewrites its title ("sshd: /usr/sbin/sshd -D -e -f CONFIG [listener] ..."), so the
    # config path is looked for in the whole text, not as one argument.
    return record.config in argv


def stop_sshd(record: SshdRecord) -> bool:
    """Stop one sshd by pid if it is still the one we started; whether it was running.
    (Its open sessions die with their namespace in `destroy`.)"""
    if not _is_ours(record):
        return False
    try:
        os.kill(record.pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(record.pid, os.WNOHANG)  # our child when this process started it
        if not _alive(record):  # gone, or a zombie its parent has yet to reap
            return True
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signal.SIGKILL)
    return True


# --------------------------------------------------------------------------- a --netns sandbox


def _record_sshd(box: Sandbox, name: str, record: dict[str, Any] | None) -> None:
    with box._lock():
        doc = box.info()
        doc["netns"].setdefault("sshd", {})[name] = record
        write_atomic(box.cluster_path, json.dumps(doc, indent=2) + "\n")


def _plan_and_create() -> NetnsTopology:
    """A new topology on the first free 198.18.N.0/24 (retried if another sandbox takes it)."""
    for attempt in range(3):
        net = NetnsTopology.plan(subnet=pick_subnet())
        try:
            net.create()
            return net
        except SandboxError as exc:
            if attempt == 2 or "already" not in str(exc):
                raise
    raise AssertionError("unreachable")


def up_netns(
    box: Sandbox, version: str, replication: str, wanted: Jvm, timeout_seconds: float
) -> dict[str, Any]:
    """`sandbox up --netns`: the hosts, an sshd on each server and on vantage, nameservers on
    server1/server2, broker-a's master on server3 and slave on server4; return cluster.json
    once both brokers are registered on both nameservers. On failure nothing is left.
    A jar in `wanted.broker_jars` is the broker plug-in (--promotion inplace): installed and
    configured as `Sandbox.up` does on 127.0.0.1."""
    check_netns_support()
    find_java()
    if not os.access(SSHD, os.X_OK):
        raise SandboxError(f"{SSHD} is missing; install OpenSSH's server (Debian: openssh-server)")
    old = box.info().get("netns") if box.cluster_path.exists() else None
    box._prepare_dir()
    if old is not None:  # a stopped --netns sandbox in this folder: make sure its hosts are gone
        teardown_netns(box)
    broker_jars: tuple[Path, ...] = ()
    secret = None
    inplace: dict[str, Any] = {}
    if wanted.broker_jars:
        installed = box.dir / PLUGIN_DIR / PLUGIN_JAR_NAME
        installed.parent.mkdir(exist_ok=True)
        shutil.copyfile(wanted.broker_jars[0], installed)
        broker_jars = (installed,)
        secret = new_secret()
        inplace = {"promotion": "inplace", "plugin_secret_file": str(box.dir / SANDBOX_SECRET_NAME)}
    jvm = Jvm(ensure_rocketmq(version), version, wanted.heap, wanted.namesrv_heap, wanted.tls,
              broker_jars)  # fmt: skip
    deadline = time.monotonic() + timeout_seconds
    net = _plan_and_create()
    recorded = False
    try:
        topology = plan_netns_cluster(net, replication)
        ssh = prepare_ssh(box.dir, net, SSH_HOSTS)
        python = sys.executable
        script = box.dir / "run-watchdog.sh"
        script.write_text(run_watchdog_script(box.dir, net, python))
        script.chmod(0o755)
        netns_doc = {
            **net.to_doc(),
            "processes": dict(PROCESS_HOSTS),
            "ssh": ssh.to_doc(),
            "sshd": {},
            "run_watchdog": [
                *net.exec_argv("watchdog", [python, "-m", "watchdog", "run", "-c"]),
                str(box.config_path),
            ],
        }
        procs = box._write_files(
            topology,
            jvm,
            prefixes={proc: net.exec_argv(host, []) for proc, host in PROCESS_HOSTS.items()},
            extra={"netns": netns_doc, **inplace},
            config_text=netns_watchdog_toml_text(
                box.dir, topology, net, ssh, python,
                plugin_secret_file=box.dir / SANDBOX_SECRET_NAME if secret else None,
            ),
            plugin_secret=secret,
        )  # fmt: skip
        recorded = True
        for name in SSH_HOSTS:
            _record_sshd(box, name, start_sshd(box.dir, net, name).to_doc())
        box._start_procs(procs, topology, deadline)
    except BaseException:
        if recorded:
            teardown_netns(box)
        else:
            net.destroy()
        raise
    return box.info()


def teardown_netns(box: Sandbox) -> list[str]:
    """Stop the sshds of a --netns sandbox and remove its namespaces and bridge (idempotent);
    what was stopped or removed, e.g. ["sshd@server1", ..., "netns rq1a2b-*"]."""
    doc = box.info().get("netns")
    if doc is None:
        return []
    net = NetnsTopology.from_doc(doc)
    done: list[str] = []
    for name, rec in dict(doc.get("sshd") or {}).items():
        if not rec or rec.get("pid") is None:
            continue
        record = SshdRecord(name, int(rec["pid"]), rec.get("start_ticks"), rec["config"],
                            rec["log"])  # fmt: skip
        if stop_sshd(record):
            done.append(f"sshd@{name}")
        _record_sshd(box, name, None)
    if net.exists():
        net.destroy()
        done.append(f"netns {net.prefix}-*")
    return done
