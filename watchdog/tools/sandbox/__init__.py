"""The RocketMQ sandbox: a real master/slave cluster on 127.0.0.1, started and broken on demand."""

from ._cluster import Sandbox, UnknownProcess
from ._files import (
    BROKER_MAIN,
    CLUSTER_NAME,
    NAMESRV_MAIN,
    broker_properties_text,
    watchdog_toml_text,
)
from ._netns import OBSERVER, NetnsHost, NetnsTopology, check_netns_support, netns_topology
from ._plugin import PLUGIN_JAR_ENV, Promotion, plugin_jar
from ._procs import ProcessStatus
from ._runtime import (
    DEFAULT_VERSION,
    JAVA_MODULE_OPTIONS,
    SandboxError,
    cache_root,
    ensure_rocketmq,
    find_java,
    java_argv,
)
from ._topology import (
    PORT_RANGE_ENV,
    BrokerPlan,
    Topology,
    auto_port_range,
    pick_base_port,
    plan_topology,
    unbindable_ports,
)
from .cli import sandbox

__all__ = [
    "BROKER_MAIN",
    "CLUSTER_NAME",
    "DEFAULT_VERSION",
    "JAVA_MODULE_OPTIONS",
    "NAMESRV_MAIN",
    "OBSERVER",
    "PLUGIN_JAR_ENV",
    "PORT_RANGE_ENV",
    "BrokerPlan",
    "NetnsHost",
    "NetnsTopology",
    "ProcessStatus",
    "Promotion",
    "Sandbox",
    "SandboxError",
    "Topology",
    "UnknownProcess",
    "auto_port_range",
    "broker_properties_text",
    "cache_root",
    "check_netns_support",
    "ensure_rocketmq",
    "find_java",
    "java_argv",
    "netns_topology",
    "pick_base_port",
    "plugin_jar",
    "plan_topology",
    "sandbox",
    "unbindable_ports",
    "watchdog_toml_text",
]
