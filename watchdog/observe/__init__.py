"""Observe: Prometheus metrics, structured logging, systemd notification, failover history."""

from ._history import (
    FailoverRow,
    history_from_records,
    journal_kind,
    merge_history,
    read_history,
    render_history,
    write_pause_seconds,
)
from ._logging import LogFormat, configure_logging
from ._metrics import DecisionKind, MetricsServer, ProbeTarget, WatchdogMetrics, parse_listen
from ._notify import (
    EVENT_NAMES,
    Delivery,
    Event,
    EventName,
    HookName,
    HookResult,
    HookRunner,
    HooksConfig,
    NotifyConfig,
    WebhookConfig,
    WebhookNotifier,
    alertmanager_payload,
    hook_environment,
    json_payload,
    switchover_event_name,
)
from ._status import render_status, status_problems, status_report
from ._systemd import SystemdNotifier

__all__ = [
    "DecisionKind",
    "FailoverRow",
    "LogFormat",
    "MetricsServer",
    "ProbeTarget",
    "SystemdNotifier",
    "WatchdogMetrics",
    "configure_logging",
    "history_from_records",
    "journal_kind",
    "merge_history",
    "parse_listen",
    "read_history",
    "render_history",
    "write_pause_seconds",
    "EVENT_NAMES",
    "Delivery",
    "Event",
    "EventName",
    "HookName",
    "HookResult",
    "HookRunner",
    "HooksConfig",
    "NotifyConfig",
    "WebhookConfig",
    "WebhookNotifier",
    "alertmanager_payload",
    "hook_environment",
    "json_payload",
    "switchover_event_name",
    "status_problems",
    "status_report",
    "render_status",
]
