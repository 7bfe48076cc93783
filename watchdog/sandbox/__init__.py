"""The RocketMQ sandbox: a real master/slave cluster on 127.0.0.1, started and broken on demand."""

from ._cluster import (
    BROKER_MAIN,
    CLUSTER_NAME,
    NAMESRV_MAIN,
    BrokerPlan,
    ProcessStatus,
    Sandbox,
    Topology,
    UnknownProcess,
    broker_properties_text,
    pick_base_port,
    plan_topology,
    unbindable_ports,
    watchdog_toml_text,
)
from ._runtime import (
    DEFAULT_VERSION,
    JAVA_MODULE_OPTIONS,
    SandboxError,
    cache_root,
    ensure_rocketmq,
    find_java,
    java_argv,
)
from .cli import sandbox

__all__ = [
    "BROKER_MAIN",
    "CLUSTER_NAME",
    "DEFAULT_VERSION",
    "JAVA_MODULE_OPTIONS",
    "NAMESRV_MAIN",
    "BrokerPlan",
    "ProcessStatus",
    "Sandbox",
    "SandboxError",
    "Topology",
    "UnknownProcess",
    "broker_properties_text",
    "cache_root",
    "ensure_rocketmq",
    "find_java",
    "java_argv",
    "pick_base_port",
    "plan_topology",
    "sandbox",
    "unbindable_ports",
    "watchdog_toml_text",
]
