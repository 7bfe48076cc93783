"""Observe: Prometheus metrics, structured logging and systemd notification for the daemon."""

from ._logging import LogFormat, configure_logging
from ._metrics import Decision, MetricsServer, ProbeTarget, WatchdogMetrics, parse_listen
from ._systemd import SystemdNotifier

__all__ = [
    "Decision",
    "LogFormat",
    "MetricsServer",
    "ProbeTarget",
    "SystemdNotifier",
    "WatchdogMetrics",
    "configure_logging",
    "parse_listen",
]
