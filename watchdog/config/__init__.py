"""The watchdog's TOML configuration: schema, validation, and one clear error for a bad file.

One private module per part of the file; this package re-exports what the rest of the code uses:
    _base       ConfigError, durations with a unit, host:port, the strict table base
    _notify     [[notify.webhook]], [hooks], event names
    _hosts      [hosts.NAME]: local, ssh, docker
    _cluster    [[brokers]], [probe], [detect], [metrics], [[secondary_checks]], [groups]
    _failover   [failover] and the plug-in's secret file
    _etcd       [etcd] and its password file
    _acl        [acl]: the RocketMQ ACL 1.0 account and its secret key file
    _watchdog   WatchdogConfig: the whole file and its cross-table checks
    _load       parse_config, load_config
"""

from __future__ import annotations

from ._acl import ACL_KEY_MIN_CHARS, AclSettings, read_acl_secret
from ._base import ConfigError
from ._cluster import (
    BrokerConfig,
    DetectSettings,
    GroupPolicy,
    MetricsSettings,
    ProbeSettings,
    SecondaryCheck,
)
from ._etcd import EtcdSettings, read_etcd_password
from ._failover import PLUGIN_SECRET_MIN_BYTES, FailoverSettings, read_plugin_secret
from ._hosts import DockerHost, HostConfig, LocalHost, SshHost
from ._load import load_config, parse_config
from ._notify import (
    EVENT_NAMES,
    EventName,
    HookName,
    HooksConfig,
    NotifyConfig,
    WebhookConfig,
    safe_url,
)
from ._watchdog import WatchdogConfig

__all__ = [
    "ConfigError",
    "WatchdogConfig",
    "BrokerConfig",
    "LocalHost",
    "SshHost",
    "DockerHost",
    "HostConfig",
    "ProbeSettings",
    "DetectSettings",
    "EtcdSettings",
    "MetricsSettings",
    "SecondaryCheck",
    "FailoverSettings",
    "GroupPolicy",
    "load_config",
    "parse_config",
    "read_plugin_secret",
    "read_etcd_password",
    "PLUGIN_SECRET_MIN_BYTES",
    "EVENT_NAMES",
    "EventName",
    "HookName",
    "HooksConfig",
    "NotifyConfig",
    "WebhookConfig",
    "safe_url",
    "AclSettings",
    "read_acl_secret",
    "ACL_KEY_MIN_CHARS",
]
