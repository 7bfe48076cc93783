"""Where the rooms meet: the cycle, the lock and the control socket; it holds no rule of its own."""

from __future__ import annotations

from ._daemon import Daemon, control_socket_path
from ._lock import DaemonLock, LockHeld, is_lock_held

__all__ = [
    "Daemon",
    "DaemonLock",
    "LockHeld",
    "control_socket_path",
    "is_lock_held",
]
