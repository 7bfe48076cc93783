"""Where the rooms meet: the cycle, the lock and the control socket; it holds no rule of its own."""

from __future__ import annotations

from ._daemon import Daemon, DaemonLock, LockHeld, control_socket_path

__all__ = [
    "Daemon",
    "DaemonLock",
    "LockHeld",
    "control_socket_path",
]
