"""A throwaway OpenSSH sshd on 127.0.0.1 with its own host key, client key and known_hosts."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from watchdog.config import SshHost

__all__ = ["SSHD", "SshdServer", "free_port", "is_alive", "start_sshd", "wait_until_dead"]

SSHD = "/usr/sbin/sshd"
# The port range given to this part of the test suite, so parallel runs don't collide.
PORT_RANGE = range(26000, 27000)


def free_port(exclude: frozenset[int] = frozenset()) -> int:
    """A port in PORT_RANGE that nothing listens on right now."""
    for port in PORT_RANGE:
        if port in exclude:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")


def is_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie is dead (PID 1 here does not reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the parenthesised command name, which may itself hold spaces.
    return stat.rpartition(")")[2].split()[0] != "Z"


def wait_until_dead(pid: int, timeout_seconds: float = 10.0) -> bool:
    """Whether `pid` is dead, waiting at most timeout_seconds (a kill lands asynchronously)."""
    deadline = time.monotonic() + timeout_seconds
    while is_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _kill_tree_below(pid: int) -> None:
    """Kill every descendant of `pid`, leaves first, so each parent reaps its own children."""
    for child in _children(pid):
        _kill_tree_below(child)
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and Path(f"/proc/{child}").exists():
            time.sleep(0.01)


def _wait_accepting(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}:\n{log.read_text()}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not accept on 127.0.0.1:{port} within 15 s:\n{log.read_text()}")


@dataclass
class SshdServer:
    """One sshd listening on 127.0.0.1:port; restartable in place on the same port and keys."""

    directory: Path
    port: int
    user: str
    client_key: str
    known_hosts: str
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def config_path(self) -> Path:
        return self.directory / "sshd_config"

    @property
    def log_path(self) -> Path:
        return self.directory / "sshd.log"

    @property
    def ssh_host(self) -> SshHost:
        return self.ssh_host_with()

    def ssh_host_with(
        self, *, port: int | None = None, known_hosts: str | None = None
    ) -> SshHost:
        return SshHost.model_validate(
            {
                "kind": "ssh",
                "address": "127.0.0.1",
                "port": self.port if port is None else port,
                "user": self.user,
                "known_hosts": self.known_hosts if known_hosts is None else known_hosts,
                "client_keys": [self.client_key],
                "connect_timeout": "5s",
            }
        )

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"sshd already runs as pid {self.process.pid}")
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        finally:
            log.close()
        try:
            _wait_accepting(self.port, self.process, self.log_path)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill sshd and every connection it serves (clients see their connections drop)."""
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            _kill_tree_below(proc.pid)
            proc.kill()
        proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )


def start_sshd(directory: Path) -> SshdServer:
    """Generate keys and config under `directory` and start sshd; the caller must stop() it."""
    if not os.access(SSHD, os.X_OK):
        raise RuntimeError(
            f"{SSHD} not found: run `make system-deps` (installs openssh-server)"
        )
    # Debian's sshd refuses to start without its privilege separation directory.
    try:
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise RuntimeError(f"sshd needs /run/sshd and it cannot be created: {exc}") from None
    directory.mkdir(parents=True, exist_ok=True)
    host_key = directory / "ssh_host_ed25519_key"
    client_key = directory / "client_ed25519"
    _keygen(host_key, "rmq-watchdog-test-host")
    _keygen(client_key, "rmq-watchdog-test-client")
    authorized = directory / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    port = free_port()
    host_pub = host_key.with_suffix(".pub").read_text().split()
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    (directory / "sshd_config").write_text(
        f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {directory / "sshd.pid"}
AuthorizedKeysFile {authorized}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
LogLevel VERBOSE
"""
    )
    server = SshdServer(
        directory=directory,
        port=port,
        user=pwd.getpwuid(os.geteuid()).pw_name,
        client_key=str(client_key),
        known_hosts=str(known_hosts),
    )
    server.start()
    return server
