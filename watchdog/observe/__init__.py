"""Observe: Prometheus metrics, structured logging, systemd notification, failover history."""

from ._history import FailoverRow, read_history, render_history
from ._logging import LogFormat, configure_logging
from ._metrics import Decision, MetricsServer, ProbeTarget, WatchdogMetrics, parse_listen
from ._systemd import SystemdNotifier

__all__ = [
    "Decision",
    "FailoverRow",
    "LogFormat",
    "MetricsServer",
    "ProbeTarget",
    "SystemdNotifier",
    "WatchdogMetrics",
    "configure_logging",
    "parse_listen",
    "read_history",
    "render_history",
]
