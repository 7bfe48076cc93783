"""The state directory's lock: one actor (daemon or manual failover) per cluster at a time."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..model import WatchdogError

__all__ = ["DaemonLock", "LockHeld", "is_lock_held"]


class LockHeld(WatchdogError):
    """Another process (a daemon or a manual failover) holds the state dir's lock."""


class DaemonLock:
    """An exclusive flock on `<state_dir>/lock`: one actor per cluster at a time."""

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / "lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockHeld(f"{self.path} is held by another rmq-watchdog process") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _lock_holders(path: Path) -> list[int] | None:
    """Pids holding a flock on ``path`` per /proc/locks; None when that cannot be read."""
    try:
        st = path.stat()
        text = Path("/proc/locks").read_text()
    except FileNotFoundError:
        return [] if not path.exists() else None
    except OSError:
        return None
    pids = []
    for line in text.splitlines():
        parts = line.split()
        if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK":
            continue
        dev_inode = parts[5].split(":")
        if len(dev_inode) == 3 and dev_inode[2] == str(st.st_ino) and parts[4].isdigit():
            pids.append(int(parts[4]))
    return pids


def is_lock_held(state_dir: str | Path) -> bool:
    """Whether a process holds ``<state_dir>/lock`` (the daemon's, or a manual failover's)."""
    path = Path(state_dir) / "lock"
    if not path.exists():
        return False
    holders = _lock_holders(path)
    if holders is not None:
        return bool(holders)
    # No /proc/locks: try the lock ourselves, and let it go at once.
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we took
    return False
