"""A systemd container: systemd-nspawn boots a root filesystem, commands run through nsenter.

The container shares the host's network (no --private-network): 127.0.0.1 inside is the host's
loopback, so a daemon inside reaches nameservers, brokers and an sshd on the host. It has its own
PID, mount, UTS and IPC namespaces and its own systemd as PID 1. --volatile=overlay keeps every
write in a tmpfs: the cached root filesystem stays as debootstrap made it. nspawn is started with
--register=no --keep-unit because PID 1 on the host need not be systemd (no machined, no bus).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Container", "ContainerError", "Entry", "NSPAWN"]

NSPAWN = "/usr/bin/systemd-nspawn"
NSENTER = "/usr/bin/nsenter"
BOOT_TIMEOUT_SECONDS = 120.0
# A clean environment inside: nothing of the host's (its PATH, virtualenv, PYTHON*, RMQ*) leaks.
ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "SYSTEMD_COLORS": "0",
    "SYSTEMD_PAGER": "",
    "DEBIAN_FRONTEND": "noninteractive",
}


class ContainerError(RuntimeError):
    """The container cannot boot or a command in it failed; the message says why."""


Entry = dict[str, Any]


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _message(entry: Entry) -> str:
    """A journal entry's MESSAGE; journald gives bytes it will not show as text as a list."""
    raw = entry.get("MESSAGE", "")
    if isinstance(raw, list):
        return bytes(raw).decode("utf-8", errors="replace")
    return str(raw)


def _is_about(entry: Entry, unit: str, own: bool) -> bool:
    if entry.get("_SYSTEMD_UNIT") == unit:
        return True
    return not own and entry.get("_PID") == "1" and entry.get("UNIT") == unit


@dataclass
class Container:
    """One booted container; `boot()` first, `poweroff()` last (also after a failed boot)."""

    root: Path
    name: str
    log_path: Path
    binds_ro: Mapping[Path, str] = field(default_factory=dict)
    nspawn: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    init_pid: int = 0

    # -- lifecycle ----------------------------------------------------------------------------

    def boot(self, timeout_seconds: float = BOOT_TIMEOUT_SECONDS) -> str:
        """Boot and wait until systemd says the boot is over; its state (running/degraded)."""
        if not os.access(NSPAWN, os.X_OK):
            raise ContainerError(
                f"{NSPAWN} not found: run `make system-deps` (Debian package systemd-container)"
            )
        argv = [
            NSPAWN,
            "--quiet",
            f"--directory={self.root}",
            f"--machine={self.name}",
            "--boot",
            "--register=no",
            "--keep-unit",
            "--volatile=overlay",
            "--console=read-only",
            *[f"--bind-ro={host}:{inside}" for host, inside in self.binds_ro.items()],
        ]
        with self.log_path.open("ab") as log:
            self.nspawn = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + timeout_seconds
        while not self.init_pid:
            if self.nspawn.poll() is not None:
                raise ContainerError(
                    f"systemd-nspawn exited with {self.nspawn.returncode} before the container's "
                    f"init started:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise ContainerError(f"no container init within {timeout_seconds:.0f} s")
            kids = _children(self.nspawn.pid)
            if kids:
                self.init_pid = kids[0]
            else:
                time.sleep(0.05)
        # --wait returns once the boot is over (running, degraded); it needs the bus up first.
        state = ""
        while time.monotonic() < deadline:
            if self.nspawn.poll() is not None:
                raise ContainerError(
                    f"the container stopped during boot (nspawn exit {self.nspawn.returncode}):"
                    f"\n{self.log_tail()}"
                )
            left = max(1.0, deadline - time.monotonic())
            result = self.run(
                ["systemctl", "is-system-running", "--wait"], check=False, timeout=left
            )
            state = result.stdout.strip()
            if state in ("running", "degraded"):
                return state
            time.sleep(0.2)
        raise ContainerError(
            f"systemd in the container did not finish booting within {timeout_seconds:.0f} s "
            f"(is-system-running: {state or 'no answer'}):\n{self.log_tail()}"
        )

    def poweroff(self, timeout_seconds: float = 60.0) -> None:
        """Shut the container down (systemctl poweroff); kill it if it does not go in time."""
        proc = self.nspawn
        if proc is None:
            return
        if proc.poll() is None and self.init_pid:
            with contextlib.suppress(ContainerError, subprocess.TimeoutExpired):
                self.run(["systemctl", "poweroff", "--no-block"], check=False, timeout=10)
        try:
            proc.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            # Killing the init of a PID namespace kills everything in it; then nspawn exits.
            if self.init_pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.init_pid, signal.SIGKILL)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.nspawn = None

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # -- commands -----------------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 120.0,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv inside (all the container's namespaces, a clean environment), as root;
        `stdin` is its input (none by default)."""
        if not self.init_pid or shutil.which(NSENTER) is None:
            raise ContainerError("the container is not booted (or nsenter is missing)")
        environment = [f"{k}={v}" for k, v in {**ENV, **(env or {})}.items()]
        result = subprocess.run(
            [NSENTER, f"--target={self.init_pid}", "--all", "env", "-i", *environment, *argv],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise ContainerError(
                f"`{' '.join(argv)}` exited with {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def sh(
        self, script: str, *, cwd: str = "/", check: bool = True, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        """A shell script inside, as `sh -eux` in `cwd` (each command echoed to stderr)."""
        return self.run(["sh", "-eux", "-c", f"cd {cwd}\n{script}"], check=check, timeout=timeout)

    def write(self, path: str, text: str, mode: str = "0644") -> None:
        """Create or replace a file inside, owned by root."""
        self.run(["install", "-D", "-m", mode, "/dev/stdin", path], stdin=text)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """`systemctl show -p ...` as a dict."""
        argv = ["systemctl", "show", unit, *[f"--property={p}" for p in properties]]
        out = self.run(argv).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    # -- journal ------------------------------------------------------------------------------

    def cursor(self) -> str:
        """The journal's current end: entries written later come after this cursor."""
        out = self.run(["journalctl", "--lines=1", "--output=json", "--no-pager"]).stdout
        lines = out.strip().splitlines()
        return str(json.loads(lines[-1])["__CURSOR"]) if lines else ""

    def journal(self, unit: str = "", *, own: bool = False, after: str = "") -> list[Entry]:
        """Journal entries as JSON objects, oldest first: everything, or `unit`'s (its processes'
        lines and PID 1's about it, as `journalctl -u`), or with `own` only its processes'.

        The filter is applied here, not by journalctl: journalctl 252 with a match and
        --after-cursor drops the first matching entry after the cursor."""
        argv = ["journalctl", "--output=json", "--no-pager", "--quiet"]
        if after:
            argv.append(f"--after-cursor={after}")
        out = self.run(argv, timeout=60).stdout
        entries = [json.loads(line) for line in out.splitlines() if line.strip()]
        if unit:
            entries = [e for e in entries if _is_about(e, unit, own)]
        for entry in entries:
            entry["MESSAGE"] = _message(entry)
        return entries

    def wait_journal(
        self,
        what: str,
        found: Callable[[list[Entry]], bool],
        unit: str = "",
        *,
        own: bool = False,
        after: str = "",
        timeout_seconds: float = 60.0,
    ) -> list[Entry]:
        """Poll journal(unit, own, after) until `found(entries)`; the entries, or ContainerError
        with the last of them."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            entries = self.journal(unit, own=own, after=after)
            if found(entries):
                return entries
            if time.monotonic() > deadline:
                tail = "\n".join(e["MESSAGE"][:300] for e in entries[-30:])
                raise ContainerError(f"no {what} within {timeout_seconds:.0f} s; journal:\n{tail}")
            time.sleep(0.5)
