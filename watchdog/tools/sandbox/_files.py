"""What a sandbox writes into its folder, rendered as text: properties, logback and watchdog.toml
files, and the cluster.json and sandbox.json records of the processes to start."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...model import PropertiesFile
from ._acl import AclSetup, acl_doc, acl_files, acl_toml_table
from ._plugin import BROKER_SECRET_NAME, SANDBOX_SECRET_NAME
from ._procs import Proc
from ._runtime import Jvm, SandboxError, java_argv, rocketmq_major
from ._topology import HOST, BrokerPlan, Topology

__all__ = [
    "BROKER_MAIN",
    "CLUSTER_NAME",
    "NAMESRV_MAIN",
    "SandboxFiles",
    "WatchdogInstance",
    "broker_properties_text",
    "broker_table",
    "check_dir_path",
    "namesrv_properties_text",
    "read_properties",
    "render_files",
    "toml_list",
    "toml_str",
    "watchdog_toml_text",
    "write_atomic",
]

CLUSTER_NAME = "XdclassCluster"
NAMESRV_MAIN = "org.apache.rocketmq.namesrv.NamesrvStartup"
BROKER_MAIN = "org.apache.rocketmq.broker.BrokerStartup"
HEADER = "# written by rmq-watchdog sandbox"


def broker_properties_text(
    plan: BrokerPlan, namesrv_addr: str, store_root: Path, *, rocketmq_version: str
) -> str:
    """A broker's -c file in the seed's style: the seed's keys first, then what a shared host
    needs (its own ports, loopback addresses, its own store)."""
    lines = [
        HEADER,
        f"namesrvAddr={namesrv_addr}",
        f"brokerClusterName={CLUSTER_NAME}",
        f"brokerName={plan.broker_name}",
        f"brokerId={plan.broker_id}",
        "deleteWhen=04",
        "fileReservedTime=48",
        f"brokerRole={plan.role}",
        "flushDiskType=ASYNC_FLUSH",
        f"listenPort={plan.listen_port}",
        f"brokerIP1={plan.host}",
        # The HA address slaves connect to; its default is the first non-loopback address.
        f"brokerIP2={plan.host}",
        f"storePathRootDir={store_root}",
        f"storePathCommitLog={store_root / 'commitlog'}",
    ]
    if rocketmq_major(rocketmq_version) >= 5:
        lines.append(f"bindAddress={plan.host}")  # 5.x only; 4.x always binds the wildcard address
    return "\n".join(lines) + "\n"


def namesrv_properties_text(port: int, *, rocketmq_version: str, host: str = HOST) -> str:
    lines = [HEADER, f"listenPort={port}"]
    if rocketmq_major(rocketmq_version) >= 5:
        lines.append(f"bindAddress={host}")
    return "\n".join(lines) + "\n"


def toml_str(value: str) -> str:
    # A JSON string (ASCII, standard escapes) is a valid TOML basic string.
    return json.dumps(value)


def toml_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(toml_str(v) for v in values) + "]"


@dataclass(frozen=True)
class WatchdogInstance:
    """One of the watchdog instances sharing the sandbox's etcd (`up --etcd`): its config file,
    instance name, state dir and metrics port, and the [etcd] table they all carry."""

    name: str  # instance_name: wd-1, wd-2, ...
    config_name: str  # watchdog.toml, watchdog-2.toml, ...
    state_dir_name: str  # watchdog-state, watchdog-state-2, ...
    metrics_port: int
    etcd_table: str  # etcd_toml_table(...): a blank line first


def watchdog_toml_text(
    directory: Path,
    topology: Topology,
    python: str | None = None,
    *,
    plugin_secret_file: Path | None = None,
    instance: WatchdogInstance | None = None,
) -> str:
    """A watchdog config for this sandbox; start/stop go through `sandbox start|stop`. With
    `plugin_secret_file` (--promotion inplace) it ends in a [failover] table that promotes in
    place with that secret: add further [failover] keys to that table, not to a second one.
    With `instance` (--etcd) it is that instance's config: its instance_name, state dir and
    metrics port, and the [etcd] table last."""
    python = python or sys.executable
    state_dir = directory / (instance.state_dir_name if instance else "watchdog-state")
    metrics_port = instance.metrics_port if instance else topology.metrics_port
    named = [] if instance is None else [f"instance_name = {toml_str(instance.name)}"]
    out = [
        "# written by rmq-watchdog sandbox: a watchdog config for the sandbox in this folder",
        f"cluster_name = {toml_str(CLUSTER_NAME)}",
        *named,
        f"nameservers = {toml_list(topology.nameserver_addrs)}",
        f"state_dir = {toml_str(str(state_dir))}",
        "",
        "[hosts.local]",
        'kind = "local"',
        "",
        "[metrics]",
        f"listen = {toml_str(f'{HOST}:{metrics_port}')}",
        "",
        "# a check of the master from a second vantage point, so a hung master can be confirmed",
        "[[secondary_checks]]",
        'name = "local-secondary"',
        'host = "local"',
        # This interpreter's own entry point: works whether or not the venv's bin is on PATH.
        f"command = {toml_list([python, '-m', 'watchdog.ping', '{addr}'])}",
    ]
    for broker in topology.brokers:
        out += broker_table(broker, directory, "local", python)
    if plugin_secret_file is not None:
        out += [
            "",
            "# the brokers run the in-place promotion plug-in (broker-plugin/README.md)",
            "[failover]",
            'promotion = "inplace"',
            f"plugin_secret_file = {toml_str(str(plugin_secret_file))}",
        ]
    text = "\n".join(out) + "\n"
    return text if instance is None else text + instance.etcd_table


def broker_table(broker: BrokerPlan, directory: Path, host: str, python: str) -> list[str]:
    """One [[brokers]] table of a sandbox's watchdog.toml (a blank line first): start, stop and
    kill go through `python -m watchdog sandbox` on this folder."""
    command = [python, "-m", "watchdog", "sandbox"]
    tail = ["--dir", str(directory), "--broker", broker.key]
    return [
        "",
        "[[brokers]]",
        f"broker_name = {toml_str(broker.broker_name)}",
        f"broker_id = {broker.broker_id}",
        f"addr = {toml_str(broker.addr)}",
        f"properties = {toml_str(str(directory / broker.properties_name))}",
        f"host = {toml_str(host)}",
        f"start = {toml_list([*command, 'start', *tail])}",
        f"stop = {toml_list([*command, 'stop', *tail])}",
        f"kill = {toml_list([*command, 'kill', *tail, '--signal', 'KILL'])}",
    ]


_LOGBACK_PATTERN = "%d{yyyy-MM-dd HH:mm:ss.SSS} %-5level [%thread] %logger{0} - %msg%n"


def _logback_xml(package: str) -> str:
    """Everything to stdout (which is DIR/logs/<name>.out). 5.x ships a shaded logback."""
    return (
        "<!-- written by rmq-watchdog sandbox: every log line to stdout -->\n"
        "<configuration>\n"
        f'  <appender name="OUT" class="{package}.core.ConsoleAppender">\n'
        f'    <encoder class="{package}.classic.encoder.PatternLayoutEncoder">\n'
        f"      <pattern>{_LOGBACK_PATTERN}</pattern>\n"
        "    </encoder>\n"
        "  </appender>\n"
        '  <root level="INFO"><appender-ref ref="OUT"/></root>\n'
        "</configuration>\n"
    )


def check_dir_path(directory: Path) -> None:
    # Java reads properties files as ISO-8859-1 and treats backslashes as escapes.
    text = str(directory)
    if not text.isascii() or any(c in text for c in "\\\n\r\t") or not text.isprintable():
        raise SandboxError(f"{text!r}: the sandbox folder needs a plain ASCII path")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_properties(path: Path) -> dict[str, str]:
    try:
        return PropertiesFile.parse(path.read_text(encoding="latin-1")).as_dict()
    except OSError as exc:
        raise SandboxError(f"{path}: cannot read: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class SandboxFiles:
    """Everything `sandbox up` writes into its folder, rendered before a byte is written."""

    texts: Mapping[Path, str]  # properties and logback files, in the order they are written
    private_texts: Mapping[Path, str]  # written 0600: the plug-in secrets (--promotion inplace)
    homes: tuple[Path, ...]  # each JVM's -Duser.home, created empty
    procs: tuple[Proc, ...]  # what to start (no pid yet)
    state: Mapping[str, Any]  # sandbox.json: what restarts and recognises a process
    cluster: Mapping[str, Any]  # cluster.json: what runs, for users and the tests
    config_text: str  # watchdog.toml
    # With --etcd: watchdog-2.toml, watchdog-3.toml, ... (watchdog.toml is config_text).
    instance_configs: Mapping[Path, str] = field(default_factory=dict)


def render_files(
    directory: Path,
    topology: Topology,
    jvm: Jvm,
    *,
    prefixes: Mapping[str, Sequence[str]] | None = None,
    extra: Mapping[str, Any] | None = None,
    config_text: str | None = None,
    plugin_secret: str | None = None,
    instances: Sequence[WatchdogInstance] = (),
    acl: AclSetup | None = None,
) -> SandboxFiles:
    """The files of a sandbox in `directory`: cluster.json gets the `extra` keys, watchdog.toml
    is `config_text` if given; `prefixes` go before a process's java argv (by process name:
    `ip netns exec NS` with --netns). With `plugin_secret` (--promotion inplace) each broker's
    store gets it as watchdog-plugin.secret, the folder as plugin.secret, and watchdog.toml
    promotes in place with it; the plug-in's jar is among `jvm.broker_jars`. With `instances`
    (--etcd) watchdog.toml is the first instance's config and each further one gets its own.
    With `acl` (--acl) every broker runs with aclEnable=true, conf/plain_acl.yml holds its
    accounts, and every watchdog config signs as its admin (_acl.py)."""
    prefixes = prefixes or {}
    version = jvm.version
    d = directory
    conf = d / "conf"
    texts: dict[Path, str] = {}
    private_texts: dict[Path, str] = {}
    plain = _logback_xml("ch.qos.logback")
    texts[conf / "logback_namesrv.xml"] = plain
    texts[conf / "logback_broker.xml"] = plain
    texts[conf / "logback_tools.xml"] = plain
    texts[conf / "rmq.logback.xml"] = _logback_xml("org.apache.rocketmq.logging.ch.qos.logback")
    homes: list[Path] = []

    def jvm_options(name: str) -> list[str]:
        home = d / "home" / name
        homes.append(home)
        tls = ["-Dtls.server.mode=disabled"] if jvm.tls == "disabled" else []
        return [
            *tls,
            f"-Duser.home={home}",
            f"-Drmq.logback.configurationFile={conf / 'rmq.logback.xml'}",
            f"-XX:ErrorFile={d / 'logs' / (name + '-hs_err_%p.log')}",
        ]

    procs: list[Proc] = []
    ns_doc: list[dict[str, Any]] = []
    recorded: dict[str, Any] = {}
    for index, (port, addr) in enumerate(
        zip(topology.nameserver_ports, topology.nameserver_addrs, strict=True)
    ):
        name = f"namesrv-{index}"
        props = d / f"{name}.properties"
        texts[props] = namesrv_properties_text(
            port, rocketmq_version=version, host=addr.rpartition(":")[0]
        )
        argv = [*prefixes.get(name, ()), *java_argv(
            NAMESRV_MAIN,
            jvm.lib,
            jvm.namesrv_heap,
            ["-c", str(props)],
            jvm_options=jvm_options(name),
        )]  # fmt: skip
        log = d / "logs" / f"{name}.out"
        procs.append(
            Proc("nameserver", name, addr, addr, NAMESRV_MAIN, props, log, tuple(argv), None, None)
        )
        ns_doc.append({"addr": addr, "pid": None, "log": str(log)})
        recorded[name] = {"kind": "nameserver", "properties": str(props), "argv": argv}
    brokers_doc: list[dict[str, Any]] = []
    for plan in topology.brokers:
        props = d / plan.properties_name
        store = d / "store" / plan.name
        texts[props] = broker_properties_text(
            plan, topology.namesrv_addr, store, rocketmq_version=version
        ) + ("aclEnable=true\n" if acl is not None else "")
        argv = [*prefixes.get(plan.name, ()), *java_argv(
            BROKER_MAIN,
            jvm.lib,
            jvm.heap,
            ["-c", str(props)],
            jvm_options=jvm_options(plan.name),
            jars=jvm.broker_jars,
        )]  # fmt: skip
        if plugin_secret is not None:
            private_texts[store / BROKER_SECRET_NAME] = plugin_secret + "\n"
        log = d / "logs" / f"{plan.name}.out"
        procs.append(
            Proc("broker", plan.name, plan.key, plan.addr, BROKER_MAIN, props, log, tuple(argv),
                 None, None)
        )  # fmt: skip
        brokers_doc.append(
            {
                "broker_name": plan.broker_name,
                "broker_id": plan.broker_id,
                "role": plan.role,
                "addr": plan.addr,
                "pid": None,
                "properties": str(props),
                "log": str(log),
            }
        )
        recorded[plan.name] = {"kind": "broker", "properties": str(props), "argv": argv}
    secret_file = None
    if plugin_secret is not None:
        secret_file = d / SANDBOX_SECRET_NAME
        private_texts[secret_file] = plugin_secret + "\n"
    configs = {
        d / i.config_name: watchdog_toml_text(
            d, topology, plugin_secret_file=secret_file, instance=i
        )
        for i in instances
    }
    main = configs.pop(d / "watchdog.toml", None)
    acl_table = ""
    if acl is not None:
        private_texts.update(acl_files(d, acl))
        acl_table = acl_toml_table(d, acl)
        configs = {path: text + acl_table for path, text in configs.items()}
    return SandboxFiles(
        texts=texts,
        private_texts=private_texts,
        homes=tuple(homes),
        procs=tuple(procs),
        state={"version": version, "lib_dir": str(jvm.lib), "processes": recorded},
        cluster={
            "nameservers": ns_doc,
            "brokers": brokers_doc,
            **(extra or {}),
            **({} if acl is None else {"acl": acl_doc(d, acl)}),
        },
        config_text=(
            config_text or main or watchdog_toml_text(d, topology, plugin_secret_file=secret_file)
        )
        + acl_table,
        instance_configs=configs,
    )
