"""Where the rooms meet: the cycle, the lock and the control socket; it holds no rule of its own."""

from __future__ import annotations

from ._control import (
    ControlConnection,
    FailoverRequest,
    Send,
    SwitchoverRequest,
    acknowledge,
    ask_status,
    control_socket_path,
    event_message,
    start_control_server,
    wire_json,
)
from ._daemon import (
    Daemon,
    ExecutorFactory,
    FailoverEvents,
    FailoverRunner,
    ServiceNotifier,
    SnapshotSource,
    canary_runner,
)
from ._lock import DaemonLock, LockHeld, is_lock_held

__all__ = [
    "ControlConnection",
    "Daemon",
    "DaemonLock",
    "ExecutorFactory",
    "FailoverEvents",
    "FailoverRequest",
    "FailoverRunner",
    "LockHeld",
    "Send",
    "ServiceNotifier",
    "SnapshotSource",
    "SwitchoverRequest",
    "acknowledge",
    "ask_status",
    "canary_runner",
    "control_socket_path",
    "event_message",
    "is_lock_held",
    "start_control_server",
    "wire_json",
]
