"""What a drill may do: the sandbox rule, the fault commands, the partition ruleset, and every
refusal that needs no cluster."""

# The sandbox rule: a config is a sandbox when every broker runs on a local host, its start and
# stop commands are `<python> -m watchdog sandbox start|stop --dir D --broker KEY` (or
# `rmq-watchdog sandbox ...`) with its own KEY and one D for all, and D/cluster.json lists every
# configured broker at its address and every configured nameserver. Only sandbox brokers can be
# faulted (kill and stop go through `sandbox kill --signal KILL|STOP|CONT`): a configured stop
# command is a graceful stop, not a crash.
#
# `partition` cuts the master off from the watchdog alone: the daemon must probe from its own
# loopback address ([probe] source_address, e.g. 127.0.0.2), and an nftables table (named after
# the run, deleted when the drill ends, whatever happens) drops TCP from that address to the
# master's ports on 127.0.0.1. Clients and the secondary check still reach the master, so the
# right outcome is no failover: the cut lasts --timeout, then the master must still be the one
# master. Brokers off loopback cannot be partitioned this way and are refused.

from __future__ import annotations

import ipaddress
import json
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ...act import StateStore
from ...config import BrokerConfig, LocalHost, WatchdogConfig
from ...daemon import is_lock_held
from ...model import WatchdogError

__all__ = [
    "FAULTS",
    "DrillOptions",
    "DrillRefused",
    "Fault",
    "SandboxBroker",
    "SandboxMatch",
    "fault_argv",
    "match_sandbox",
    "partition_ruleset",
    "preflight",
    "sandbox_command",
]

Fault = Literal["kill", "stop", "partition"]
FAULTS: tuple[str, ...] = ("kill", "stop", "partition")


class DrillRefused(WatchdogError):
    """The drill will not run: the message says why and what to do instead."""


@dataclass(frozen=True)
class DrillOptions:
    broker_name: str
    fault: str = "kill"
    is_confirmed: bool = False  # --yes
    messages: int = 50  # acknowledged sends before the fault
    timeout_seconds: float = 120.0  # per phase: fault -> promotion finished, restart -> safe
    start_daemon: bool = False
    # Consumer after the producer stopped: librocketmq re-reads routes every 30 s and rebalances
    # every 20 s, so a consumer can need two route periods to pull from the new master.
    catch_up_seconds: float = 90.0


@dataclass(frozen=True)
class SandboxBroker:
    """A broker command of the form ``PREFIX sandbox VERB --dir D --broker KEY``."""

    prefix: tuple[str, ...]  # (python, -m, watchdog) or (.../rmq-watchdog,)
    verb: str
    directory: str
    key: str


@dataclass(frozen=True)
class SandboxMatch:
    directory: Path | None  # the sandbox folder, or None: not a sandbox
    reason: str  # why it is (or is not) one

    @property
    def is_sandbox(self) -> bool:
        return self.directory is not None


def sandbox_command(argv: Sequence[str]) -> SandboxBroker | None:
    """Parse a `sandbox start|stop|kill` command line; None when it is something else."""
    if len(argv) < 7:
        return None
    tail = list(argv[-6:])
    prefix = tuple(argv[:-6])
    if tail[0] != "sandbox" or tail[2] != "--dir" or tail[4] != "--broker":
        return None
    is_module = len(prefix) == 3 and prefix[1:] == ("-m", "watchdog")
    is_script = len(prefix) == 1 and Path(prefix[0]).name == "rmq-watchdog"
    if not (is_module or is_script) or not tail[3] or not tail[5]:
        return None
    return SandboxBroker(prefix, tail[1], tail[3], tail[5])


def _sandbox_broker(config: WatchdogConfig, broker: BrokerConfig) -> SandboxBroker | str:
    """The broker's sandbox commands, or why it is not a sandbox broker."""
    if not isinstance(config.hosts.get(broker.host), LocalHost):
        return f"broker {broker.key} runs on host {broker.host!r}, not on the local host"
    start = sandbox_command(broker.start)
    stop = sandbox_command(broker.stop)
    if start is None or start.verb != "start" or start.key != broker.key:
        return (
            f"broker {broker.key}'s start command is not "
            f"`... -m watchdog sandbox start --dir D --broker {broker.key}`"
        )
    same = stop is not None and (stop.directory, stop.key) == (start.directory, start.key)
    if stop is None or stop.verb != "stop" or not same:
        return f"broker {broker.key}'s stop command is not `sandbox stop` of the same broker"
    return start


def match_sandbox(
    config: WatchdogConfig, read_cluster: Callable[[Path], Mapping[str, Any] | None]
) -> SandboxMatch:
    """Apply the sandbox rule (see the module comment); ``read_cluster`` returns the parsed
    D/cluster.json, or None when it does not exist or cannot be read."""
    directories: set[str] = set()
    for broker in config.brokers:
        parsed = _sandbox_broker(config, broker)
        if isinstance(parsed, str):
            return SandboxMatch(None, parsed)
        directories.add(parsed.directory)
    if len(directories) != 1:
        return SandboxMatch(None, f"brokers name {len(directories)} sandbox folders, not one")
    directory = Path(directories.pop())
    doc = read_cluster(directory / "cluster.json")
    if doc is None:
        return SandboxMatch(None, f"{directory / 'cluster.json'} does not exist")
    try:
        listed = {
            (str(b["broker_name"]), int(b["broker_id"])): str(b["addr"]) for b in doc["brokers"]
        }
        nameservers = {str(n["addr"]) for n in doc["nameservers"]}
    except (KeyError, TypeError, ValueError):
        return SandboxMatch(None, f"{directory / 'cluster.json'} is not a sandbox's cluster.json")
    for broker in config.brokers:
        if listed.get((broker.broker_name, broker.broker_id)) != broker.addr:
            return SandboxMatch(
                None, f"{directory / 'cluster.json'} does not list {broker.key} at {broker.addr}"
            )
    for addr in config.nameservers:
        if addr not in nameservers:
            return SandboxMatch(
                None, f"{directory / 'cluster.json'} does not list nameserver {addr}"
            )
    return SandboxMatch(directory, f"every broker is a broker of the sandbox in {directory}")


def fault_argv(config: WatchdogConfig, broker: BrokerConfig, signal_name: str) -> list[str] | str:
    """``sandbox kill --signal SIG`` of this broker, or why the drill cannot signal it."""
    parsed = _sandbox_broker(config, broker)
    if isinstance(parsed, str):
        return (
            f"cannot inject a fault into {broker.key}: {parsed}; the drill can only kill or "
            "stop sandbox brokers (its configured stop command is a graceful stop, not a crash)"
        )
    return [
        *parsed.prefix,
        "sandbox", "kill", "--dir", parsed.directory, "--broker", parsed.key,
        "--signal", signal_name,
    ]  # fmt: skip


def partition_ruleset(table: str, source: str, ports: Sequence[int]) -> str:
    """An nftables table dropping TCP from ``source`` to 127.0.0.1 ``ports`` (loopback only)."""
    if not table.replace("_", "").isalnum():
        raise ValueError(f"nftables table name {table!r} must be letters, digits and _")
    if not ipaddress.ip_address(source).is_loopback:
        raise ValueError(f"{source} is not a loopback address")
    if not ports or any(not 0 < p < 65536 for p in ports):
        raise ValueError(f"bad ports {list(ports)}")
    listed = ", ".join(str(p) for p in sorted(set(ports)))
    return (
        f"table inet {table} {{\n"
        "  chain out {\n"
        "    type filter hook output priority 0; policy accept;\n"
        f"    ip saddr {source} ip daddr 127.0.0.1 tcp dport {{ {listed} }} drop\n"
        "  }\n"
        "}\n"
    )


def _partition_problem(config: WatchdogConfig, broker_name: str) -> str | None:
    """Why the group cannot be partitioned from the watchdog on this machine; None if it can."""
    source = config.probe.source_address
    if source is None:
        return (
            "--fault partition needs [probe] source_address (a loopback address such as "
            "127.0.0.2 the daemon probes from), so that only the watchdog's packets are dropped"
        )
    try:
        is_loopback = ipaddress.ip_address(source).is_loopback
    except ValueError:
        is_loopback = False
    if not is_loopback or source == "127.0.0.1":
        return f"[probe] source_address {source} must be a loopback address other than 127.0.0.1"
    for b in config.group(broker_name):
        if b.addr.rpartition(":")[0] != "127.0.0.1":
            return f"--fault partition works on 127.0.0.1 only; {b.key} is at {b.addr}"
    if shutil.which("nft") is None:
        return "--fault partition needs nftables (`nft`), which is not installed"
    return None


def _read_cluster_json(path: Path) -> Mapping[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def preflight(config: WatchdogConfig, options: DrillOptions) -> SandboxMatch:
    """Every refusal that needs no cluster; returns the sandbox match."""
    if options.fault not in FAULTS:
        raise DrillRefused(f"--fault must be one of {', '.join(FAULTS)}, not {options.fault!r}")
    if options.broker_name not in config.group_names():
        raise DrillRefused(
            f"--broker-name: unknown broker group {options.broker_name!r}; configured: "
            + ", ".join(config.group_names())
        )
    if options.messages < 1:
        raise DrillRefused(f"--messages must be at least 1, got {options.messages}")
    if not options.timeout_seconds > 0 or not math.isfinite(options.timeout_seconds):
        raise DrillRefused(f"--timeout must be positive, got {options.timeout_seconds}")
    if options.fault == "partition":
        problem = _partition_problem(config, options.broker_name)
        if problem is not None:
            raise DrillRefused(problem)
    match = match_sandbox(config, _read_cluster_json)
    if not match.is_sandbox and not options.is_confirmed:
        raise DrillRefused(
            f"this config is not a sandbox ({match.reason}); a drill breaks a real master under "
            "traffic: pass --yes to run it anyway"
        )
    if config.dry_run:
        raise DrillRefused("the config says dry_run = true: the daemon would never promote")
    if not config.is_auto_failover(options.broker_name):
        raise DrillRefused(f"automatic failover is off for {options.broker_name} in the config")
    record = StateStore(config.state_dir).peek().group(options.broker_name)
    if record.blocked_until is not None and record.is_blocked(time.time()):
        until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.blocked_until))
        raise DrillRefused(
            f"automatic failovers of {options.broker_name} are blocked until {until} "
            f"({record.block_reason}); "
            f"run `rmq-watchdog ack -c FILE --broker-name {options.broker_name}` first"
        )
    held = is_lock_held(config.state_dir)
    lock = Path(config.state_dir) / "lock"
    if options.start_daemon and held:
        raise DrillRefused(f"{lock} is held: a daemon already runs; drop --start-daemon")
    if not options.start_daemon and not held:
        raise DrillRefused(
            f"no watchdog daemon holds {lock}: the drill never promotes by itself; start "
            "`rmq-watchdog run -c FILE` first, or pass --start-daemon"
        )
    return match
