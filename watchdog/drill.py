"""The fault drill: break a group's master under real traffic and report what clients saw."""

# How a drill runs (`rmq-watchdog drill`):
#  1. refuse what it cannot do safely: a config that is not a sandbox (without --yes), a fault
#     it cannot inject, no daemon to promote (the drill never promotes by itself), a group whose
#     automatic failover is off or blocked;
#  2. create the drill topic on the group's master only (as the canary does) and wait until
#     every nameserver routes it there and every slave has synced its config (a promoted slave
#     that lacks the topic would have no route for it);
#  3. run a real producer and a real push consumer (librocketmq, each in a killable child that
#     prints one JSON line per send / per delivery); every body carries the run id and a
#     sequence number;
#  4. once --messages sends were acknowledged, wait until every answering slave has replicated
#     what the master then held (a slave learns the master's HA address on its 10 s register
#     cycle; faulted before that, the drill would measure an empty slave, not the watchdog), then
#     inject the fault into the master;
#  5. follow the daemon's journal (<state_dir>/failovers/*.jsonl) until the promotion finishes;
#  6. start the old master again with its configured start command (SIGCONT first after a
#     `stop` fault) and wait until the daemon has judged it (state.json's rejoin check cleared)
#     and exactly one broker answers as master, listed as id 0 on every nameserver; then give
#     the producer time to write again (librocketmq refreshes its routes every 30 s);
#  7. stop the producer, let the consumer catch up, pull every queue once more (the audit: what
#     the cluster still stores), and build the report from timestamps alone (pure functions).
#
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

import argparse
import asyncio
import contextlib
import fcntl
import ipaddress
import json
import math
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

from .config import BrokerConfig, LocalHost, WatchdogConfig
from .daemon import is_lock_held
from .model import WatchdogError
from .remoting import (
    ClientPool,
    RemoteError,
    RemotingError,
    RequestCode,
    ResponseCode,
    check_topic_name,
    create_topic,
    get_broker_config,
    get_broker_runtime_info,
    get_cluster_info,
    get_topic_route,
    invoke,
)

__all__ = [
    "CONSUMER_GROUP",
    "DRILL_TOPIC_PREFIX",
    "FAULTS",
    "PRODUCER_GROUP",
    "DrillOptions",
    "DrillRefused",
    "DrillReport",
    "GroupJudgement",
    "MessageAccounting",
    "ReceiveRecord",
    "SandboxBroker",
    "SandboxMatch",
    "SendRecord",
    "TimelineEvent",
    "build_report",
    "drill_topic",
    "fault_argv",
    "judge_group",
    "main",
    "match_sandbox",
    "message_body",
    "parse_body",
    "parse_receive_line",
    "parse_send_line",
    "partition_ruleset",
    "render_report",
    "run_drill",
    "sandbox_command",
    "write_outage",
]

Fault = Literal["kill", "stop", "partition"]
FAULTS: tuple[str, ...] = ("kill", "stop", "partition")
DRILL_TOPIC_PREFIX = "RMQ_WATCHDOG_DRILL_"
PRODUCER_GROUP = "RMQ_WATCHDOG_DRILL_PG"
# One consumer group for every drill: it resumes at its committed offsets, so it never starts
# past the first message of a new run (a new group could start at the queue's end).
CONSUMER_GROUP = "RMQ_WATCHDOG_DRILL_CG"
_BODY_PREFIX = "rmq-watchdog drill"
_MASTER_ROLES = ("ASYNC_MASTER", "SYNC_MASTER")
_SEND_INTERVAL_SECONDS = 0.1
_SEND_TIMEOUT_MS = 1500
_REQUEST_TIMEOUT_SECONDS = 2.0
_POLL_SECONDS = 0.5
_LINE_CAP = 500_000  # lines kept per child: a runaway child must not fill memory
_CHILD_GRACE_SECONDS = 15.0
_SAMPLE = 20  # sequence numbers listed per category in the report
_IN_SYNC_SECONDS = 60.0
# librocketmq refreshes a topic's route every 30 s; a send times out after 1.5 s.
_FIRST_WRITE_SECONDS = 75.0


class DrillRefused(WatchdogError):
    """The drill will not run: the message says why and what to do instead."""


# --------------------------------------------------------------------------- values


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
class SendRecord:
    """One send of the drill producer (wall-clock times)."""

    seq: int
    started_at: float
    ended_at: float
    is_ok: bool
    error: str | None = None
    msg_id: str | None = None


@dataclass(frozen=True)
class ReceiveRecord:
    """One delivery to the drill consumer (or one message the audit found stored)."""

    seq: int
    at: float
    msg_id: str = ""
    queue_id: int = -1
    queue_offset: int = -1


@dataclass(frozen=True)
class TimelineEvent:
    at: float  # wall-clock time
    source: str  # drill, daemon, journal, producer, consumer
    event: str
    detail: str = ""


@dataclass(frozen=True)
class MessageAccounting:
    """Acknowledged sends against deliveries; every number counts distinct sequence numbers
    unless it says otherwise."""

    sent: int
    acked: int
    failed: int
    acked_before_fault: int
    acked_after_fault: int
    consumed: int  # distinct sequence numbers delivered
    deliveries: int  # all deliveries, repeats included
    lost: int  # acked before the fault, never delivered
    unconsumed_after_fault: int  # acked after the fault, never delivered
    duplicated: int  # delivered more than once
    consumed_unacked: int  # delivered although the send failed (stored, ack lost)
    lost_seqs: tuple[int, ...] = ()
    duplicated_seqs: tuple[int, ...] = ()
    unconsumed_after_fault_seqs: tuple[int, ...] = ()
    # The audit: acked messages the cluster no longer stores (None when no audit ran).
    not_stored: int | None = None
    not_stored_seqs: tuple[int, ...] = ()
    # Acked after the fault, stored, never delivered: stored at a queue offset at or below one
    # the consumer had already passed on the old master. A log lost with an async master frees
    # its queue offsets; the new master hands them to new messages, and the consumer, resuming
    # after its old position, never reads them. 4.x has no offset truncation to prevent it.
    skipped: int = 0
    skipped_seqs: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "acked": self.acked,
            "failed": self.failed,
            "acked_before_fault": self.acked_before_fault,
            "acked_after_fault": self.acked_after_fault,
            "consumed": self.consumed,
            "deliveries": self.deliveries,
            "lost": self.lost,
            "unconsumed_after_fault": self.unconsumed_after_fault,
            "duplicated": self.duplicated,
            "consumed_unacked": self.consumed_unacked,
            "not_stored": self.not_stored,
            "lost_seqs": list(self.lost_seqs),
            "duplicated_seqs": list(self.duplicated_seqs),
            "unconsumed_after_fault_seqs": list(self.unconsumed_after_fault_seqs),
            "not_stored_seqs": list(self.not_stored_seqs),
            "skipped_reused_offset": self.skipped,
            "skipped_reused_offset_seqs": list(self.skipped_seqs),
        }


@dataclass(frozen=True)
class GroupJudgement:
    """Is the group safe after the old master came back?"""

    is_safe: bool
    detail: str
    master_key: str | None = None
    master_addr: str | None = None
    old_master_role: str | None = None
    old_master_id: str | None = None


@dataclass(frozen=True)
class DrillReport:
    run_id: str
    broker_name: str
    fault: str
    fault_at: float
    old_master_key: str
    old_master_addr: str
    is_ok: bool
    problems: tuple[str, ...]
    timeline: tuple[TimelineEvent, ...]
    messages: MessageAccounting
    new_master_key: str | None = None
    new_master_addr: str | None = None
    failover_id: str | None = None
    failover_outcome: str | None = None
    expected_loss_bytes: int | None = None
    max_loss_bytes: int | None = None
    odown_after_seconds: float | None = None
    promoted_after_seconds: float | None = None
    failover_finished_after_seconds: float | None = None
    first_write_after_seconds: float | None = None
    write_outage_seconds: float | None = None
    failed_sends_in_outage: int = 0
    consumer_caught_up_after_seconds: float | None = None
    old_master_safe: bool = False
    old_master_detail: str = ""
    old_master_fenced: bool = False
    old_master_safe_after_seconds: float | None = None  # from its start command
    # Stores moved aside during the drill: what each held past the promotion point and where
    # it went ({"broker_key", "path", "bytes", "messages", "summary"} from the journal).
    moved_aside: tuple[Mapping[str, Any], ...] = ()
    master_key: str | None = None
    master_addr: str | None = None
    files: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def r(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {
            "run_id": self.run_id,
            "broker_name": self.broker_name,
            "fault": self.fault,
            "fault_at": self.fault_at,
            "ok": self.is_ok,
            "problems": list(self.problems),
            "old_master": {"key": self.old_master_key, "addr": self.old_master_addr},
            "new_master": {"key": self.new_master_key, "addr": self.new_master_addr},
            "failover": {
                "id": self.failover_id,
                "outcome": self.failover_outcome,
                "expected_loss_bytes": self.expected_loss_bytes,
                "max_loss_bytes": self.max_loss_bytes,
            },
            "seconds": {
                "fault_to_odown": r(self.odown_after_seconds),
                "fault_to_promoted": r(self.promoted_after_seconds),
                "fault_to_failover_finished": r(self.failover_finished_after_seconds),
                "fault_to_first_write": r(self.first_write_after_seconds),
                "write_outage": r(self.write_outage_seconds),
                "fault_to_consumer_caught_up": r(self.consumer_caught_up_after_seconds),
            },
            "failed_sends_in_outage": self.failed_sends_in_outage,
            "messages": self.messages.to_json(),
            "old_master_rejoin": {
                "safe": self.old_master_safe,
                "fenced": self.old_master_fenced,
                "seconds_from_start": r(self.old_master_safe_after_seconds),
                "detail": self.old_master_detail,
                "moved_aside": [dict(m) for m in self.moved_aside],
            },
            "one_master": {"key": self.master_key, "addr": self.master_addr},
            "timeline": [
                {
                    "t": round(e.at - self.fault_at, 3),
                    "at": e.at,
                    "source": e.source,
                    "event": e.event,
                    "detail": e.detail,
                }
                for e in self.timeline
            ],
            "files": dict(self.files),
        }


# --------------------------------------------------------------------------- the sandbox rule


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


def drill_topic(broker_name: str) -> str:
    """The drill topic of one broker group, e.g. RMQ_WATCHDOG_DRILL_broker-a."""
    safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in broker_name)
    return check_topic_name((DRILL_TOPIC_PREFIX + safe)[:127])


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


# --------------------------------------------------------------------------- child lines


def message_body(run_id: str, seq: int) -> str:
    return f"{_BODY_PREFIX} {run_id} {seq}"


def parse_body(body: bytes | str) -> tuple[str, int] | None:
    """(run id, sequence number) of a drill message body; None for anything else."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    parts = text.split(" ")
    if len(parts) != 4 or " ".join(parts[:2]) != _BODY_PREFIX or not parts[3].isdigit():
        return None
    return parts[2], int(parts[3])


def _number(doc: Mapping[str, Any], name: str) -> float | None:
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _integer(doc: Mapping[str, Any], name: str) -> int | None:
    value = doc.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _load(line: bytes | str) -> Mapping[str, Any] | None:
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def parse_send_line(line: bytes | str) -> SendRecord | None:
    """One producer line, or None when it is not a send record."""
    doc = _load(line)
    if doc is None:
        return None
    seq, started, ended, ok = (
        _integer(doc, "seq"),
        _number(doc, "started_at"),
        _number(doc, "ended_at"),
        doc.get("ok"),
    )
    if seq is None or started is None or ended is None or not isinstance(ok, bool):
        return None
    error, msg_id = doc.get("error"), doc.get("msg_id")
    return SendRecord(
        seq,
        started,
        ended,
        ok,
        error if isinstance(error, str) else None,
        msg_id if isinstance(msg_id, str) else None,
    )


def parse_receive_line(line: bytes | str) -> ReceiveRecord | None:
    """One consumer (or audit) line, or None when it is not a delivery record."""
    doc = _load(line)
    if doc is None:
        return None
    seq, at = _integer(doc, "seq"), _number(doc, "at")
    if seq is None or at is None:
        return None
    msg_id = doc.get("msg_id")
    queue_id, queue_offset = _integer(doc, "queue_id"), _integer(doc, "queue_offset")
    return ReceiveRecord(
        seq,
        at,
        msg_id if isinstance(msg_id, str) else "",
        -1 if queue_id is None else queue_id,
        -1 if queue_offset is None else queue_offset,
    )


# --------------------------------------------------------------------------- pure analysis


def write_outage(
    sends: Sequence[SendRecord], fault_at: float
) -> tuple[float | None, SendRecord | None, int]:
    """(outage seconds, the first acknowledged send begun after the fault, failed sends between).

    The outage is the time between two consecutive acknowledgements that straddle the fault:
    the first ack of a send begun after the fault, and the last ack before that one.
    """
    ordered = sorted(sends, key=lambda s: (s.started_at, s.seq))
    first = next((s for s in ordered if s.is_ok and s.started_at >= fault_at), None)
    if first is None:
        return None, None, sum(1 for s in ordered if not s.is_ok and s.started_at >= fault_at)
    earlier = [
        s.ended_at for s in ordered if s.is_ok and s is not first and s.ended_at <= first.ended_at
    ]
    previous = max(earlier) if earlier else fault_at
    failed = sum(1 for s in ordered if not s.is_ok and previous <= s.started_at < first.started_at)
    return first.ended_at - previous, first, failed


def account_messages(
    sends: Sequence[SendRecord],
    receives: Sequence[ReceiveRecord],
    fault_at: float,
    stored: Iterable[int] | None = None,
    stored_at: Mapping[int, tuple[int, int]] | None = None,
) -> MessageAccounting:
    """Count acknowledged, lost, duplicated... messages; ``stored`` are the sequence numbers
    the audit found in the cluster after the drill (None: no audit), ``stored_at`` where it
    found them (sequence number -> queue id, queue offset)."""
    by_seq: dict[int, SendRecord] = {}
    for s in sends:
        by_seq[s.seq] = s
    acked = {q for q, s in by_seq.items() if s.is_ok}
    before = {q for q in acked if by_seq[q].started_at < fault_at}
    after = acked - before
    counts: dict[int, int] = {}
    for r in receives:
        counts[r.seq] = counts.get(r.seq, 0) + 1
    consumed = set(counts)
    lost = sorted(before - consumed)
    unconsumed = sorted(after - consumed)
    duplicated = sorted(q for q, n in counts.items() if n > 1)
    unacked = {q for q, s in by_seq.items() if not s.is_ok}
    not_stored: list[int] | None = None
    if stored is not None:
        not_stored = sorted(acked - set(stored))
    passed: dict[int, int] = {}  # queue id -> highest offset delivered of a pre-fault send
    for r in receives:
        if r.seq in before and r.queue_id >= 0:
            passed[r.queue_id] = max(passed.get(r.queue_id, -1), r.queue_offset)
    skipped = [
        q
        for q in unconsumed
        if stored_at is not None
        and q in stored_at
        and stored_at[q][1] <= passed.get(stored_at[q][0], -1)
    ]
    return MessageAccounting(
        sent=len(by_seq),
        acked=len(acked),
        failed=len(unacked),
        acked_before_fault=len(before),
        acked_after_fault=len(after),
        consumed=len(consumed),
        deliveries=sum(counts.values()),
        lost=len(lost),
        unconsumed_after_fault=len(unconsumed),
        duplicated=len(duplicated),
        consumed_unacked=len(consumed & unacked),
        lost_seqs=tuple(lost[: _SAMPLE * 50]),
        duplicated_seqs=tuple(duplicated[:_SAMPLE]),
        unconsumed_after_fault_seqs=tuple(unconsumed[:_SAMPLE]),
        not_stored=None if not_stored is None else len(not_stored),
        not_stored_seqs=tuple((not_stored or [])[: _SAMPLE * 50]),
        skipped=len(skipped),
        skipped_seqs=tuple(skipped[: _SAMPLE * 50]),
    )


def consumer_caught_up_at(
    sends: Sequence[SendRecord],
    receives: Sequence[ReceiveRecord],
    first_write: SendRecord | None,
    fault_at: float,
    skipped: Iterable[int] = (),
) -> float | None:
    """When the consumer had every surviving message acked up to the first write after the
    fault, and that write itself: the latest first delivery among them. None if the first
    write was never delivered. Writes in `skipped` (see MessageAccounting) never will be:
    the first later write the consumer can read stands in for them."""
    if first_write is None:
        return None
    gone = set(skipped)
    if first_write.seq in gone:
        later = sorted(
            (s for s in sends if s.is_ok and s.started_at >= first_write.started_at),
            key=lambda s: s.started_at,
        )
        first_write = next((s for s in later if s.seq not in gone), None)
        if first_write is None:
            return None
    first_delivery: dict[int, float] = {}
    for r in sorted(receives, key=lambda r: r.at):
        first_delivery.setdefault(r.seq, r.at)
    if first_write.seq not in first_delivery:
        return None
    wanted = [
        s.seq
        for s in sends
        if s.is_ok and s.started_at <= first_write.started_at and s.seq in first_delivery
    ]
    return max(first_delivery[q] for q in [*wanted, first_write.seq])


def _event_time(event: Mapping[str, Any]) -> float | None:
    stamp = event.get("timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def daemon_log_events(
    log: Sequence[Mapping[str, Any]], broker_name: str, since: float
) -> list[TimelineEvent]:
    """The first MASTER_SDOWN and MASTER_ODOWN cycle lines of the group at or after ``since``."""
    out: list[TimelineEvent] = []
    names = {"MASTER_SDOWN": "subjectively_down", "MASTER_ODOWN": "objectively_down"}
    seen: set[str] = set()
    for event in log:
        state = event.get("state")
        at = _event_time(event)
        if event.get("broker_name") != broker_name or state not in names or at is None:
            continue
        if at < since or state in seen:
            continue
        seen.add(str(state))
        out.append(TimelineEvent(at, "daemon", names[str(state)], str(event.get("event", ""))))
    return out


def journal_events(failover_id: str, entries: Sequence[Mapping[str, Any]]) -> list[TimelineEvent]:
    """Timeline events of one failover journal: planned, every step, rollback, finished."""
    out: list[TimelineEvent] = []
    kind = "failover"
    for entry in entries:
        at = _number(entry, "at")
        name = entry.get("event")
        if at is None or not isinstance(name, str):
            continue
        if name == "planned":
            plan = entry.get("plan")
            plan = plan if isinstance(plan, Mapping) else {}
            kind = "fence" if plan.get("kind") == "fence" else "failover"
            out.append(
                TimelineEvent(
                    at, "journal", f"{kind}_planned", f"{failover_id}: {plan.get('reason', '')}"
                )
            )
        elif name in ("step_done", "step_skipped", "step_failed"):
            index = _integer(entry, "index")
            phase = entry.get("phase", "main")
            label = "rollback step" if phase == "rollback" else "step"
            status = name.removeprefix("step_")
            detail = (
                f"{label} {(index or 0) + 1} {entry.get('kind')} {entry.get('broker_key')} "
                f"{status}: {entry.get('detail', '')}"
            )
            out.append(TimelineEvent(at, "journal", f"{kind}_step_{status}", detail))
            if kind == "failover" and entry.get("kind") == "wait_master" and name == "step_done":
                out.append(TimelineEvent(at, "journal", "promoted", str(entry.get("detail", ""))))
        elif name == "rollback_started":
            out.append(TimelineEvent(at, "journal", f"{kind}_rollback", str(entry.get("reason"))))
        elif name == "finished":
            out.append(
                TimelineEvent(
                    at,
                    "journal",
                    f"{kind}_finished",
                    f"{entry.get('outcome')}: {entry.get('detail', '')}",
                )
            )
    return out


def _plan(entries: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    if (
        entries
        and entries[0].get("event") == "planned"
        and isinstance(entries[0].get("plan"), Mapping)
    ):
        plan: Mapping[str, Any] = entries[0]["plan"]
        return plan
    return {}


def _finished(entries: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    done = [e for e in entries if e.get("event") == "finished"]
    return done[-1] if done else None


def promotion_of(
    journals: Mapping[str, Sequence[Mapping[str, Any]]], broker_name: str
) -> str | None:
    """The first promotion of ``broker_name`` among these journals (by planned time)."""
    found = [
        (float(entries[0].get("at", 0.0)), fid)
        for fid, entries in journals.items()
        if _plan(entries).get("kind") == "promote"
        and _plan(entries).get("broker_name") == broker_name
    ]
    return min(found)[1] if found else None


def judge_group(
    group: Sequence[BrokerConfig],
    live: Mapping[str, Mapping[str, str] | None],
    tables: Mapping[str, Mapping[int, str] | None],
    old_master_key: str,
    *,
    is_failover_running: bool,
    is_rejoin_pending: bool,
    is_old_master_kept: bool = False,
) -> GroupJudgement:
    """Exactly one broker answers as master and is id 0 on every answering nameserver, the old
    master answers as a slave (or, with ``is_old_master_kept``, is that master), and the
    daemon has nothing left to do about it.

    ``live`` maps broker keys to their live config (None: no answer); ``tables`` maps each
    nameserver to the group's brokerId -> addr (None: no answer).
    """
    old = live.get(old_master_key)
    old_role = old.get("brokerRole") if old else None
    old_id = old.get("brokerId") if old else None
    masters = [b for b in group if (live.get(b.key) or {}).get("brokerRole") in _MASTER_ROLES]

    def verdict(ok: bool, detail: str, master: BrokerConfig | None = None) -> GroupJudgement:
        return GroupJudgement(
            ok, detail, master.key if master else None, master.addr if master else None,
            old_role, old_id,
        )  # fmt: skip

    if len(masters) != 1:
        shown = ", ".join(f"{b.key}@{b.addr}" for b in masters) or "none"
        return verdict(False, f"{len(masters)} brokers answer as master ({shown})")
    master = masters[0]
    answering = {ns: t for ns, t in tables.items() if t is not None}
    if not answering:
        return verdict(False, "no nameserver answers", master)
    wrong = {ns: t.get(0) for ns, t in answering.items() if t.get(0) != master.addr}
    if wrong:
        shown = ", ".join(f"{ns} lists {addr or 'no'} id 0" for ns, addr in sorted(wrong.items()))
        return verdict(False, f"{master.key}@{master.addr} answers as master but {shown}", master)
    if old is None:
        return verdict(False, f"old master {old_master_key} does not answer", master)
    if is_old_master_kept:
        if master.key != old_master_key:
            return verdict(False, f"{master.key} replaced {old_master_key} as master", master)
        if is_failover_running:
            return verdict(False, "a failover of the group is still running", master)
        return verdict(
            True,
            f"{master.key}@{master.addr} is still the only master and id 0 on "
            f"{len(answering)}/{len(tables)} nameservers",
            master,
        )
    if old_role != "SLAVE" or old_id == "0":
        return verdict(
            False, f"old master {old_master_key} answers as {old_role} id {old_id}", master
        )
    if is_failover_running:
        return verdict(False, "a failover of the group is still running", master)
    if is_rejoin_pending:
        return verdict(False, f"the daemon has not judged {old_master_key}'s rejoin yet", master)
    return verdict(
        True,
        f"{master.key}@{master.addr} is the only master and id 0 on {len(answering)}/"
        f"{len(tables)} nameservers; old master {old_master_key} answers as SLAVE id {old_id}",
        master,
    )


@dataclass(frozen=True)
class DrillObservations:
    """Everything a drill recorded; build_report turns it into the report."""

    run_id: str
    broker_name: str
    fault: str
    fault_at: float  # when the fault was in effect (the signal command returned)
    old_master_key: str
    old_master_addr: str
    sends: tuple[SendRecord, ...]
    receives: tuple[ReceiveRecord, ...]
    journals: Mapping[str, Sequence[Mapping[str, Any]]]  # failovers begun during the drill
    daemon_log: Sequence[Mapping[str, Any]] = ()
    drill_events: tuple[TimelineEvent, ...] = ()
    stored_seqs: frozenset[int] | None = None
    stored_at: Mapping[int, tuple[int, int]] | None = None  # seq -> (queue id, queue offset)
    judgement: GroupJudgement | None = None
    old_master_started_at: float | None = None
    old_master_safe_at: float | None = None
    problems: tuple[str, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)


def build_report(obs: DrillObservations) -> DrillReport:
    """The drill's report from its observations (pure: the same input, the same report)."""
    t0 = obs.fault_at
    problems = list(obs.problems)
    timeline: list[TimelineEvent] = list(obs.drill_events)
    timeline += daemon_log_events(obs.daemon_log, obs.broker_name, t0)
    for fid, entries in obs.journals.items():
        timeline += journal_events(fid, entries)

    promo_id = promotion_of(obs.journals, obs.broker_name)
    plan = _plan(obs.journals[promo_id]) if promo_id else {}
    if promo_id and not any(e.event == "objectively_down" for e in timeline):
        # No daemon log (a daemon the drill did not start): the daemon plans a promotion in
        # the very cycle that judges the master objectively down, so the plan's time is it.
        planned = _number(obs.journals[promo_id][0], "at")
        if planned is not None:
            timeline.append(
                TimelineEvent(
                    planned,
                    "journal",
                    "objectively_down",
                    f"(when planned) {plan.get('reason', '')}",
                )
            )
    finished = _finished(obs.journals[promo_id]) if promo_id else None
    outcome = str(finished.get("outcome")) if finished else None
    if obs.fault == "partition":
        if promo_id is not None:
            problems.append(
                f"the daemon failed over ({promo_id}, {outcome or 'not finished'}) although "
                "clients could still reach the master"
            )
    elif promo_id is None:
        problems.append("the daemon started no promotion of the group")
    elif outcome is None:
        problems.append(f"failover {promo_id} did not finish")
    elif outcome != "succeeded":
        problems.append(
            f"failover {promo_id} {outcome}: {finished.get('detail') if finished else ''}"
        )
    fenced = any(
        _plan(e).get("kind") == "fence" and _plan(e).get("broker_name") == obs.broker_name
        for e in obs.journals.values()
    )
    moved_aside = tuple(
        {k: entry.get(k) for k in ("broker_key", "path", "bytes", "messages", "summary")}
        for entries in obs.journals.values()
        if _plan(entries).get("broker_name") == obs.broker_name
        for entry in entries
        if entry.get("event") == "store_moved_aside"
    )

    outage, first, failed_between = write_outage(obs.sends, t0)
    if first is None:
        problems.append("the producer saw no successful write after the fault")
    else:
        timeline.append(
            TimelineEvent(
                first.ended_at,
                "producer",
                "first_write",
                f"message {first.seq} acknowledged after {failed_between} failed sends",
            )
        )
    messages = account_messages(obs.sends, obs.receives, t0, obs.stored_seqs, obs.stored_at)
    caught_up = consumer_caught_up_at(obs.sends, obs.receives, first, t0, messages.skipped_seqs)
    if caught_up is not None:
        timeline.append(
            TimelineEvent(
                caught_up,
                "consumer",
                "consumer_caught_up",
                "every surviving message up to the first write after the fault delivered",
            )
        )
    elif first is not None:
        problems.append(
            f"the consumer never received message {first.seq}, the first write after the fault"
        )
    if messages.unconsumed_after_fault > messages.skipped:
        problems.append(
            f"{messages.unconsumed_after_fault - messages.skipped} messages acknowledged after "
            "the fault were never delivered to the consumer"
        )
    expected = plan.get("expected_loss_bytes")
    max_loss = plan.get("max_loss_bytes", expected)
    if messages.not_stored and max_loss == 0:
        problems.append(
            f"{messages.not_stored} acknowledged messages are no longer stored, although the "
            "promotion plan expected no loss"
        )

    judgement = obs.judgement
    is_safe = judgement is not None and judgement.is_safe
    if judgement is None:
        problems.append("the old master was not started again")
    elif not judgement.is_safe:
        problems.append(f"the group was not safe at the end: {judgement.detail}")

    def since_fault(event: str) -> float | None:
        times = [e.at for e in timeline if e.event == event]
        return min(times) - t0 if times else None

    timeline.sort(key=lambda e: e.at)
    safe_after = None
    if obs.old_master_safe_at is not None and obs.old_master_started_at is not None:
        safe_after = obs.old_master_safe_at - obs.old_master_started_at
    return DrillReport(
        run_id=obs.run_id,
        broker_name=obs.broker_name,
        fault=obs.fault,
        fault_at=t0,
        old_master_key=obs.old_master_key,
        old_master_addr=obs.old_master_addr,
        is_ok=not problems,
        problems=tuple(problems),
        timeline=tuple(timeline),
        messages=messages,
        new_master_key=plan.get("new_master_key"),
        new_master_addr=plan.get("new_master_addr"),
        failover_id=promo_id,
        failover_outcome=outcome,
        expected_loss_bytes=expected if isinstance(expected, int) else None,
        max_loss_bytes=max_loss if isinstance(max_loss, int) else None,
        odown_after_seconds=since_fault("objectively_down"),
        promoted_after_seconds=since_fault("promoted"),
        failover_finished_after_seconds=(
            float(finished["at"]) - t0 if finished and _number(finished, "at") is not None else None
        ),
        first_write_after_seconds=None if first is None else first.ended_at - t0,
        write_outage_seconds=outage,
        failed_sends_in_outage=failed_between,
        consumer_caught_up_after_seconds=None if caught_up is None else caught_up - t0,
        old_master_safe=is_safe,
        old_master_detail=judgement.detail if judgement else "not started again",
        old_master_fenced=fenced,
        moved_aside=moved_aside,
        old_master_safe_after_seconds=safe_after if is_safe else None,
        master_key=judgement.master_key if judgement and is_safe else None,
        master_addr=judgement.master_addr if judgement and is_safe else None,
        files=obs.files,
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def render_report(report: DrillReport) -> str:
    """The report as text: the timeline, then the numbers, then the verdict."""
    fault = {
        "kill": "kill -9",
        "stop": "SIGSTOP",
        "partition": "a partition from the watchdog",
    }.get(report.fault, report.fault)
    lines = [
        f"drill {report.run_id}: {fault} of {report.broker_name}'s master "
        f"{report.old_master_key}@{report.old_master_addr}",
        "",
        "timeline (seconds from the fault):",
    ]
    for e in report.timeline:
        detail = e.detail if len(e.detail) <= 160 else e.detail[:157] + "..."
        lines.append(f"  {e.at - report.fault_at:+8.2f}  {e.source:<8} {e.event}: {detail}")
    m = report.messages
    lines += [
        "",
        (
            f"objectively down after {_seconds(report.odown_after_seconds)}, promoted after "
            f"{_seconds(report.promoted_after_seconds)}, failover {report.failover_outcome or '-'} "
            f"after {_seconds(report.failover_finished_after_seconds)}"
            if report.failover_id
            else "no failover"
        ),
        f"write outage seen by the producer: {_seconds(report.write_outage_seconds)} "
        f"({report.failed_sends_in_outage} sends failed); first write "
        f"{_seconds(report.first_write_after_seconds)} after the fault; consumer caught up after "
        f"{_seconds(report.consumer_caught_up_after_seconds)}",
        f"messages: {m.sent} sent, {m.acked} acked ({m.acked_before_fault} before the fault), "
        f"{m.lost} lost, {m.duplicated} duplicated, {m.unconsumed_after_fault} acked after the "
        f"fault but not delivered, {m.consumed_unacked} delivered although the send failed"
        + ("" if m.not_stored is None else f"; {m.not_stored} acked messages no longer stored"),
    ]
    if m.lost_seqs:
        lines.append(f"  lost: {', '.join(map(str, m.lost_seqs[:_SAMPLE]))}")
    if m.skipped:
        lines.append(
            f"  {m.skipped} acked after the fault, stored, but skipped by the consumer: the new "
            f"master reused queue offsets of messages lost with the old master "
            f"({', '.join(map(str, m.skipped_seqs[:_SAMPLE]))})"
        )
    if report.expected_loss_bytes is not None:
        bound = report.max_loss_bytes
        lines.append(
            f"  the promotion plan reported the slave {report.expected_loss_bytes} bytes behind"
            + ("" if bound is None else f", a loss of at most {bound} bytes")
        )
    rejoin = "came back safely" if report.old_master_safe else "did NOT come back safely"
    if report.fault == "partition" and report.failover_id is None:
        rejoin = "stayed the master" if report.old_master_safe else "did NOT stay the only master"
    lines.append(
        f"old master {report.old_master_key} {rejoin}"
        + (" (fenced: store moved aside)" if report.old_master_fenced else "")
        + (
            f" {_seconds(report.old_master_safe_after_seconds)} after its start"
            if report.old_master_safe_after_seconds is not None
            else ""
        )
        + f": {report.old_master_detail}"
    )
    for moved in report.moved_aside:
        lines.append(
            f"  moved aside: {moved.get('messages')} message(s), {moved.get('bytes')} bytes past "
            f"the promotion point, from {moved.get('broker_key')} to {moved.get('path')}"
        )
    lines.append("")
    if report.is_ok:
        lines.append("drill passed")
    else:
        lines.append("drill FAILED:")
        lines += [f"  - {p}" for p in report.problems]
    return "\n".join(lines)


# --------------------------------------------------------------------------- processes


def _child_env() -> dict[str, str]:
    """This environment, with this package importable from any working folder."""
    root = str(Path(__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k != "RMQ_WATCHDOG_CRASH_AFTER_STEP"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


async def _reap(proc: asyncio.subprocess.Process, grace_seconds: float) -> None:
    """SIGTERM, wait ``grace_seconds``, SIGKILL; always waited for (nothing else reaps here)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace_seconds)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    await proc.wait()


class _LineChild:
    """A child printing JSON lines on stdout; they are kept and copied to ``out_path``."""

    def __init__(self, argv: Sequence[str], out_path: Path, err_path: Path) -> None:
        self.argv = list(argv)
        self.out_path = out_path
        self.err_path = err_path
        self.lines: list[bytes] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        with self.err_path.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env=_child_env(),
            )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.out_path.open("ab") as copy:
            while True:
                try:
                    line = await self.proc.stdout.readline()
                except ValueError:  # a line over the stream limit: dropped
                    continue
                if not line:
                    return
                copy.write(line)
                copy.flush()
                if len(self.lines) < _LINE_CAP:
                    self.lines.append(line)

    @property
    def is_running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def wait(self, timeout_seconds: float) -> bool:
        """Wait for the child to exit by itself; False when it is still running."""
        if self.proc is None:
            return True
        try:
            await asyncio.wait_for(self.proc.wait(), timeout_seconds)
        except TimeoutError:
            return False
        return True

    async def stop(self, grace_seconds: float = _CHILD_GRACE_SECONDS) -> None:
        if self.proc is not None:
            await _reap(self.proc, grace_seconds)
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 5.0)
            except TimeoutError:
                self._reader.cancel()


class _DaemonChild:
    """`python -m watchdog run -c FILE --log-format json` for the drill's duration."""

    def __init__(self, config_path: str, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "watchdog", "run", "-c", self.config_path,
                "--log-format", "json",
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=_child_env(),
            )  # fmt: skip

    def events(self) -> list[Mapping[str, Any]]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [doc for line in text.splitlines() if (doc := _load(line)) is not None]

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.splitlines()[-lines:])[-1500:]

    @property
    def is_running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self) -> int | None:
        # SIGTERM: the daemon finishes a running failover first, so give it a step's time.
        if self.proc is not None:
            await _reap(self.proc, 150.0)
            return self.proc.returncode
        return None


# --------------------------------------------------------------------------- the cluster


async def _group_view(
    pool: ClientPool, config: WatchdogConfig, broker_name: str
) -> tuple[dict[str, Mapping[int, str] | None], dict[str, Mapping[str, str] | None]]:
    """(each nameserver's brokerId -> addr of the group, each broker's live config)."""

    async def table(addr: str) -> Mapping[int, str] | None:
        try:
            info = await get_cluster_info(pool.get(addr), timeout_seconds=_REQUEST_TIMEOUT_SECONDS)
        except RemotingError:
            return None
        return dict(info.broker_addrs.get(broker_name, {}))

    async def live(broker: BrokerConfig) -> Mapping[str, str] | None:
        try:
            return await get_broker_config(
                pool.get(broker.addr), timeout_seconds=_REQUEST_TIMEOUT_SECONDS
            )
        except RemotingError:
            return None

    group = config.group(broker_name)
    tables = await asyncio.gather(*(table(a) for a in config.nameservers))
    configs = await asyncio.gather(*(live(b) for b in group))
    return (
        dict(zip(config.nameservers, tables, strict=True)),
        {b.key: c for b, c in zip(group, configs, strict=True)},
    )


def ready_master(
    config: WatchdogConfig,
    broker_name: str,
    tables: Mapping[str, Mapping[int, str] | None],
    live: Mapping[str, Mapping[str, str] | None],
) -> BrokerConfig | str:
    """The group's master if the group is ready for a drill, else why it is not: every
    answering nameserver lists the same configured master as id 0, it answers as a master, and
    a configured slave answers as SLAVE and is registered."""
    answering = {ns: t for ns, t in tables.items() if t is not None}
    if not answering:
        return "no nameserver answers"
    masters = {t.get(0) for t in answering.values()}
    if len(masters) != 1 or None in masters:
        return (
            f"the nameservers do not agree on {broker_name}'s master: {sorted(map(str, masters))}"
        )
    addr = masters.pop()
    master = next((b for b in config.group(broker_name) if b.addr == addr), None)
    if master is None:
        return f"{broker_name}'s master {addr} is not a broker in the config"
    if (live.get(master.key) or {}).get("brokerRole") not in _MASTER_ROLES:
        return f"{broker_name}'s master {master.key}@{addr} does not answer as a master"
    registered = {a for t in answering.values() for i, a in t.items() if i != 0}
    slaves = [
        b
        for b in config.group(broker_name)
        if b.key != master.key
        and (live.get(b.key) or {}).get("brokerRole") == "SLAVE"
        and b.addr in registered
    ]
    if not slaves:
        return f"{broker_name} has no slave that answers and is registered: nothing to promote"
    return master


async def _route_problem(
    pool: ClientPool, config: WatchdogConfig, topic: str, master: BrokerConfig
) -> str | None:
    problems = []
    answered = 0
    for ns in config.nameservers:
        try:
            route = await get_topic_route(
                pool.get(ns), topic, timeout_seconds=_REQUEST_TIMEOUT_SECONDS
            )
        except RemoteError as exc:
            if exc.code == ResponseCode.TOPIC_NOT_EXIST:
                answered += 1
                problems.append(f"{ns} has no route yet")
            continue
        except RemotingError:
            continue
        answered += 1
        if (route.broker_addrs.get(master.broker_name) or {}).get(0) != master.addr:
            problems.append(f"{ns} does not route it to {master.addr}")
        elif not any(
            q.broker_name == master.broker_name and q.is_writable and q.write_queue_nums > 0
            for q in route.queue_datas
        ):
            problems.append(f"{ns} lists no writable queue")
    if not answered:
        return "no nameserver answers"
    return "; ".join(problems) or None


async def _has_topic(pool: ClientPool, broker: BrokerConfig, topic: str) -> bool | None:
    """Whether the broker's topic config holds ``topic``; None when it does not answer."""
    try:
        reply = await invoke(
            pool.get(broker.addr),
            RequestCode.GET_ALL_TOPIC_CONFIG,
            timeout_seconds=_REQUEST_TIMEOUT_SECONDS,
        )
    except RemotingError:
        return None
    # The body is TopicConfigSerializeWrapper JSON; the topic's name is one of its keys.
    return f'"{topic}"'.encode() in reply.body


def _read_cluster_json(path: Path) -> Mapping[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _journals(state_dir: str, exclude: set[str]) -> dict[str, list[dict[str, Any]]]:
    folder = Path(state_dir) / "failovers"
    out: dict[str, list[dict[str, Any]]] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.jsonl")):
        if path.stem in exclude:
            continue
        entries = []
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            doc = _load(line)
            if doc is None:
                break  # a torn last line: everything before it is good
            entries.append(dict(doc))
        out[path.stem] = entries
    return out


def _state_group(state_dir: str, broker_name: str) -> tuple[bool, str | None, float | None, str]:
    """(a failover of the group running, its rejoin check key, blocked until, block reason)
    from state.json; read leniently: the drill must not fail on the daemon's file."""
    try:
        doc = json.loads((Path(state_dir) / "state.json").read_text())
    except (OSError, ValueError):
        return False, None, None, ""
    running = isinstance(doc, dict) and broker_name in (doc.get("running") or {})
    record = ((doc.get("groups") or {}) if isinstance(doc, dict) else {}).get(broker_name) or {}
    if not isinstance(record, dict):
        return running, None, None, ""
    key = record.get("rejoin_check_key")
    until = record.get("blocked_until")
    return (
        bool(running),
        key if isinstance(key, str) else None,
        float(until) if isinstance(until, int | float) and not isinstance(until, bool) else None,
        str(record.get("block_reason") or ""),
    )


# --------------------------------------------------------------------------- the drill


def _preflight(config: WatchdogConfig, options: DrillOptions) -> SandboxMatch:
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
    _, _, blocked_until, reason = _state_group(config.state_dir, options.broker_name)
    if blocked_until is not None and blocked_until > time.time():
        until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(blocked_until))
        raise DrillRefused(
            f"automatic failovers of {options.broker_name} are blocked until {until} ({reason}); "
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


class _DrillError(Exception):
    """The drill could not go on (before the fault); the message says where it stopped."""


class _Drill:
    def __init__(
        self,
        config_path: str,
        config: WatchdogConfig,
        options: DrillOptions,
        progress: Callable[[str], None],
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.options = options
        self.progress = progress
        self.name = options.broker_name
        self.run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
        self.dir = Path(config.state_dir) / "drills" / self.run_id
        self.topic = drill_topic(self.name)
        self.pool = ClientPool(connect_timeout_seconds=1.0)
        self.daemon: _DaemonChild | None = None
        self.producer: _LineChild | None = None
        self.consumer: _LineChild | None = None
        self.events: list[TimelineEvent] = []
        self.problems: list[str] = []
        self.nft_table: str | None = None  # the partition's, while it is installed

    def note(self, event: str, detail: str) -> None:
        self.events.append(TimelineEvent(time.time(), "drill", event, detail))

    def _child_argv(self, verb: str, *extra: str) -> list[str]:
        return [
            sys.executable, "-m", "watchdog.drill", verb,
            "--namesrv", ";".join(self.config.nameservers),
            "--topic", self.topic, "--run-id", self.run_id, *extra,
        ]  # fmt: skip

    def sends(self) -> list[SendRecord]:
        lines = self.producer.lines if self.producer else []
        return [r for line in lines if (r := parse_send_line(line)) is not None]

    def receives(self) -> list[ReceiveRecord]:
        lines = self.consumer.lines if self.consumer else []
        return [r for line in lines if (r := parse_receive_line(line)) is not None]

    async def _host_run(
        self, broker: BrokerConfig, argv: Sequence[str], timeout: float
    ) -> tuple[bool, str]:
        from .hosts import HostError, make_host

        host = make_host(broker.host, self.config.hosts[broker.host])
        try:
            result = await host.run(argv, timeout_seconds=timeout)
        except HostError as exc:
            return False, str(exc)
        finally:
            await host.close()
        text = (result.stdout.strip() or result.stderr.strip()).splitlines()
        return result.is_ok, (text[-1] if text else result.summary())

    # ---- phases

    async def start_daemon(self) -> None:
        self.daemon = _DaemonChild(self.config_path, self.dir / "daemon.log")
        await self.daemon.start()
        self.progress(
            f"started the watchdog daemon (pid {self.daemon.proc and self.daemon.proc.pid})"
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if not self.daemon.is_running:
                raise _DrillError(f"the daemon exited at once: {self.daemon.tail()}")
            cycles = [
                e
                for e in self.daemon.events()
                if e.get("broker_name") == self.name and "cycle" in e
            ]
            if len(cycles) >= 2 and is_lock_held(self.config.state_dir):
                if cycles[-1].get("state") != "HEALTHY":
                    raise _DrillError(
                        f"the daemon judges {self.name} {cycles[-1].get('state')}, not HEALTHY: "
                        f"{cycles[-1].get('event')}"
                    )
                self.note("daemon_ready", f"{self.name} HEALTHY: {cycles[-1].get('event')}")
                return
            await asyncio.sleep(_POLL_SECONDS)
        raise _DrillError(
            f"the daemon logged no two cycles of {self.name} within 90 s: {self.daemon.tail()}"
        )

    async def find_master(self) -> BrokerConfig:
        deadline = time.monotonic() + 30
        while True:
            tables, live = await _group_view(self.pool, self.config, self.name)
            found = ready_master(self.config, self.name, tables, live)
            if not isinstance(found, str):
                return found
            if time.monotonic() > deadline:
                raise _DrillError(f"{self.name} is not ready for a drill: {found}")
            await asyncio.sleep(1.0)

    async def prepare_topic(self, master: BrokerConfig) -> None:
        try:
            await create_topic(
                self.pool.get(master.addr), self.topic, read_queue_nums=4, write_queue_nums=4,
                timeout_seconds=_REQUEST_TIMEOUT_SECONDS,
            )  # fmt: skip
        except RemotingError as exc:
            raise _DrillError(f"cannot create {self.topic} on {master.addr}: {exc}") from None
        deadline = time.monotonic() + 30
        while (
            problem := await _route_problem(self.pool, self.config, self.topic, master)
        ) is not None:
            if time.monotonic() > deadline:
                raise _DrillError(
                    f"{self.topic} is not routed to {master.addr} within 30 s: {problem}"
                )
            await asyncio.sleep(_POLL_SECONDS)
        self.note(
            "topic_ready", f"{self.topic} created on {master.key}@{master.addr} and routed there"
        )

    async def wait_slaves_have_topic(self, master: BrokerConfig) -> None:
        # A slave syncs its topic config from the master every 10 s; promoted without it, it
        # would register no route for the drill topic.
        slaves = [b for b in self.config.group(self.name) if b.key != master.key]
        deadline = time.monotonic() + 45
        while True:
            found = [await _has_topic(self.pool, b, self.topic) for b in slaves]
            if any(f is True for f in found) and not any(f is False for f in found):
                return
            if time.monotonic() > deadline:
                missing = [b.key for b, f in zip(slaves, found, strict=True) if f is False]
                raise _DrillError(f"slaves {', '.join(missing)} did not sync {self.topic} in 45 s")
            await asyncio.sleep(1.0)

    async def start_traffic(self, master: BrokerConfig) -> None:
        self.consumer = _LineChild(
            self._child_argv("consume", "--group", CONSUMER_GROUP),
            self.dir / "consumer.jsonl",
            self.dir / "consumer.err",
        )
        await self.consumer.start()
        self.producer = _LineChild(
            self._child_argv("produce", "--interval-seconds", str(_SEND_INTERVAL_SECONDS)),
            self.dir / "producer.jsonl",
            self.dir / "producer.err",
        )
        await self.producer.start()
        self.note("traffic_started", f"producer and consumer on {self.topic}")
        await self.wait_slaves_have_topic(master)
        wanted = self.options.messages
        deadline = time.monotonic() + 60 + wanted * _SEND_INTERVAL_SECONDS * 3
        while True:
            acked = sum(1 for s in self.sends() if s.is_ok)
            delivered = len(self.receives())
            if acked >= wanted and delivered > 0:
                return
            for child, what in ((self.producer, "producer"), (self.consumer, "consumer")):
                if not child.is_running:
                    raise _DrillError(f"the {what} exited early; see {child.err_path}")
            if time.monotonic() > deadline:
                raise _DrillError(
                    f"before the fault: {acked} of {wanted} sends acknowledged and {delivered} "
                    f"deliveries in time; see {self.dir}"
                )
            await asyncio.sleep(0.2)

    async def _commitlog_offset(self, broker: BrokerConfig) -> int | None:
        try:
            info = await get_broker_runtime_info(
                self.pool.get(broker.addr), timeout_seconds=_REQUEST_TIMEOUT_SECONDS
            )
            return int(info["commitLogMaxOffset"])
        except (RemotingError, KeyError, ValueError):
            return None

    async def wait_in_sync(self, master: BrokerConfig) -> None:
        """Every answering slave (one at least) holds what the master held once traffic ran."""
        slaves = [b for b in self.config.group(self.name) if b.key != master.key]
        deadline = time.monotonic() + _IN_SYNC_SECONDS
        target: int | None = None
        while True:
            if target is None:
                target = await self._commitlog_offset(master)
            offsets = {b.key: await self._commitlog_offset(b) for b in slaves}
            answering = {k: o for k, o in offsets.items() if o is not None}
            if target is not None and answering and all(o >= target for o in answering.values()):
                self.note(
                    "slaves_in_sync",
                    f"{', '.join(sorted(answering))} replicated the master's log up to {target}",
                )
                return
            if time.monotonic() > deadline:
                where = (
                    f"the master {master.key} does not report its commitlog offset"
                    if target is None
                    else ", ".join(
                        f"{k} at {'no answer' if o is None else o}" for k, o in offsets.items()
                    )
                    + f"; the master is at {target}"
                )
                raise _DrillError(
                    f"no slave of {self.name} replicated the master's log within "
                    f"{_IN_SYNC_SECONDS:g} s: {where}"
                )
            await asyncio.sleep(_POLL_SECONDS)

    async def wait_first_write(self, fault_at: float) -> None:
        """Keep the producer running until it writes again after the fault (bounded)."""
        deadline = time.monotonic() + _FIRST_WRITE_SECONDS
        while self.producer is not None and self.producer.is_running:
            if any(s.is_ok and s.started_at >= fault_at for s in self.sends()):
                return
            if time.monotonic() > deadline:
                return  # the report says the producer never wrote again
            await asyncio.sleep(_POLL_SECONDS)

    async def inject(self, master: BrokerConfig) -> float:
        sig = "KILL" if self.options.fault == "kill" else "STOP"
        argv = fault_argv(self.config, master, sig)
        assert not isinstance(argv, str)  # checked before anything started
        ok, detail = await self._host_run(master, argv, 30.0)
        fault_at = time.time()
        if not ok:
            raise _DrillError(f"the fault command failed: {detail}")
        self.events.append(TimelineEvent(fault_at, "drill", "fault", detail))
        return fault_at

    async def _nft(self, *args: str, stdin: str | None = None) -> tuple[bool, str]:
        try:
            proc = await asyncio.create_subprocess_exec(
                shutil.which("nft") or "nft", *args,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
        except OSError as exc:
            return False, f"cannot run nft: {exc}"
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(stdin.encode() if stdin else None), 15.0
            )
        except TimeoutError:
            await _reap(proc, 0.0)
            return False, "nft did not finish within 15 s"
        return proc.returncode == 0, (err or out).decode("utf-8", "replace").strip()

    async def partition(self, master: BrokerConfig) -> float:
        source = self.config.probe.source_address
        assert source is not None  # checked before anything started
        port = int(master.addr.rpartition(":")[2])
        ports = [port, port - 2]  # the listen port and the fast (VIP) channel
        table = "rmqwd_drill_" + self.run_id.replace("-", "_")
        ok, detail = await self._nft("-f", "-", stdin=partition_ruleset(table, source, ports))
        fault_at = time.time()
        if not ok:
            raise _DrillError(f"cannot install the partition with nft: {detail}")
        self.nft_table = table
        self.events.append(
            TimelineEvent(
                fault_at,
                "drill",
                "fault",
                f"nftables table {table} drops TCP from {source} (the watchdog) to 127.0.0.1 "
                f"ports {ports[0]}, {ports[1]} ({master.key}); clients still reach it",
            )
        )
        return fault_at

    async def heal(self) -> None:
        table = self.nft_table
        if table is None:
            return
        ok, detail = await self._nft("delete", "table", "inet", table)
        if ok:
            self.nft_table = None
            self.note("partition_healed", f"nftables table {table} deleted")
        else:
            self.problems.append(
                f"could not delete nftables table {table} ({detail}): run "
                f"`nft delete table inet {table}`"
            )

    async def hold_partition(self, before: set[str], fault_at: float) -> str | None:
        """Keep the cut for --timeout; a promotion begun meanwhile is followed to its end."""
        while time.time() < fault_at + self.options.timeout_seconds:
            if promotion_of(_journals(self.config.state_dir, before), self.name) is not None:
                self.progress("the daemon started a failover during the partition")
                return await self.wait_promotion(before, fault_at)
            if self.daemon is not None and not self.daemon.is_running:
                self.problems.append(f"the daemon exited during the drill: {self.daemon.tail()}")
                return None
            await asyncio.sleep(_POLL_SECONDS)
        return None

    async def wait_promotion(self, before: set[str], fault_at: float) -> str | None:
        deadline = fault_at + self.options.timeout_seconds
        while True:
            journals = _journals(self.config.state_dir, before)
            fid = promotion_of(journals, self.name)
            if fid is not None and _finished(journals[fid]) is not None:
                return fid
            if self.daemon is not None and not self.daemon.is_running:
                self.problems.append(f"the daemon exited during the drill: {self.daemon.tail()}")
                return fid
            running, _, _, _ = _state_group(self.config.state_dir, self.name)
            # A promotion still running at the deadline is waited for: restarting the old
            # master in the middle of it would test something else.
            if time.time() > deadline and not (
                running and time.time() < deadline + self.options.timeout_seconds
            ):
                if fid is None:
                    self.problems.append(
                        f"no promotion started within {self.options.timeout_seconds:g} s"
                    )
                return fid
            await asyncio.sleep(_POLL_SECONDS)

    async def bring_back(self, master: BrokerConfig) -> float | None:
        """SIGCONT (stop fault) or start the old master again; when its start began."""
        if self.options.fault == "stop":
            argv = fault_argv(self.config, master, "CONT")
            assert not isinstance(argv, str)
            ok, detail = await self._host_run(master, argv, 30.0)
            if ok:
                self.note("old_master_resumed", detail)
            elif "not running" in detail:
                self.note("old_master_gone", "the promotion's first step already stopped it")
            else:
                self.note("old_master_not_resumed", detail)
        try:
            await get_broker_config(
                self.pool.get(master.addr), timeout_seconds=_REQUEST_TIMEOUT_SECONDS
            )
        except RemotingError:
            pass
        else:
            self.note("old_master_running", f"{master.key} answers: not started again")
            return time.time()
        started = time.time()
        ok, detail = await self._host_run(master, master.start, 180.0)
        # Dated when the command began: the daemon may see the broker before it returns.
        self.events.append(
            TimelineEvent(
                started,
                "drill",
                "old_master_start" if ok else "old_master_start_failed",
                f"its start command: {detail}",
            )
        )
        if not ok:
            self.problems.append(f"the old master's start command failed: {detail}")
            return None
        return started

    async def wait_safe(
        self, old: BrokerConfig, bound_seconds: float, *, is_old_master_kept: bool = False
    ) -> tuple[GroupJudgement, float | None]:
        deadline = time.monotonic() + bound_seconds
        safe_since: float | None = None
        while True:
            tables, live = await _group_view(self.pool, self.config, self.name)
            running, rejoin_key, _, _ = _state_group(self.config.state_dir, self.name)
            judgement = judge_group(
                self.config.group(self.name), live, tables, old.key,
                is_failover_running=running, is_rejoin_pending=rejoin_key is not None,
                is_old_master_kept=is_old_master_kept,
            )  # fmt: skip
            if judgement.is_safe:
                if safe_since is not None:  # twice in a row, a second apart
                    self.events.append(
                        TimelineEvent(safe_since, "drill", "group_safe", judgement.detail)
                    )
                    return judgement, safe_since
                safe_since = time.time()
            else:
                safe_since = None
            if time.monotonic() > deadline:
                return judgement, None
            await asyncio.sleep(1.0)

    async def drain(self, fault_at: float) -> None:
        assert self.producer is not None and self.consumer is not None
        await self.producer.stop()
        self.note("producer_stopped", f"{len(self.sends())} sends")
        deadline = time.monotonic() + self.options.catch_up_seconds
        while time.monotonic() < deadline and self.consumer.is_running:
            sends, receives = self.sends(), self.receives()
            acked = {s.seq for s in sends if s.is_ok}
            missing = acked - {r.seq for r in receives}
            if not missing:
                break
            last = max((r.at for r in receives), default=0.0)
            started = {s.seq: s.started_at for s in sends}
            only_old = all(started[q] < fault_at for q in missing)
            if only_old and time.time() - last > 10:
                break  # what is missing was acked before the fault: lost, not late
            await asyncio.sleep(_POLL_SECONDS)
        await self.consumer.stop()
        self.note("consumer_stopped", f"{len(self.receives())} deliveries")

    async def audit(self) -> tuple[ReceiveRecord, ...] | None:
        child = _LineChild(
            self._child_argv("audit", "--timeout-seconds", "60"),
            self.dir / "audit.jsonl",
            self.dir / "audit.err",
        )
        await child.start()
        finished = await child.wait(75.0)
        await child.stop(5.0)
        done = any((_load(line) or {}).get("audit_done") is True for line in child.lines)
        if not finished or not done:
            self.note("audit_failed", f"the audit pull did not finish; see {child.err_path}")
            return None
        found = tuple(r for line in child.lines if (r := parse_receive_line(line)) is not None)
        seqs = {r.seq for r in found}
        self.note("audit", f"{len(seqs)} messages of this run stored in {self.topic}")
        return found

    async def run(self) -> DrillReport:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.note("drill_started", f"run {self.run_id}, files in {self.dir}")
        master = await self.find_master()
        is_partition = self.options.fault == "partition"
        problem = None if is_partition else fault_argv(self.config, master, "KILL")
        if isinstance(problem, str):
            raise DrillRefused(problem)
        if self.options.start_daemon:
            await self.start_daemon()
        self.progress(f"{self.name} master is {master.key}@{master.addr}; preparing {self.topic}")
        await self.prepare_topic(master)
        await self.start_traffic(master)
        before = set(_journals(self.config.state_dir, set()))
        self.progress(
            f"{self.options.messages}+ messages acknowledged; injecting {self.options.fault}"
        )
        await self.wait_in_sync(master)
        if is_partition:
            fault_at = await self.partition(master)
            try:
                fid = await self.hold_partition(before, fault_at)
            finally:
                await self.heal()
        else:
            fault_at = await self.inject(master)
            fid = await self.wait_promotion(before, fault_at)
        journals = _journals(self.config.state_dir, before)
        outcome = _finished(journals[fid]) if fid else None
        judgement: GroupJudgement | None = None
        safe_at = None
        started: float | None = None
        if is_partition and fid is None:
            self.progress(f"no failover during the partition; checking {master.key} is master")
            judgement, safe_at = await self.wait_safe(master, 30.0, is_old_master_kept=True)
        else:
            self.progress(
                f"failover {fid or '-'}: {outcome.get('outcome') if outcome else 'not finished'}"
                f"; bringing {master.key} back"
            )
            started = await self.bring_back(master)
        if started is not None:
            # Without a promotion (none, failed, rolled back) the old master is the master again.
            promoted = outcome is not None and outcome.get("outcome") == "succeeded"
            judgement, safe_at = await self.wait_safe(
                master,
                self.options.timeout_seconds if promoted else 30.0,
                is_old_master_kept=not promoted,
            )
        if judgement is not None and judgement.is_safe:
            self.progress("waiting for the producer's first write after the fault")
            await self.wait_first_write(fault_at)
        self.progress("waiting for the consumer to catch up")
        await self.drain(fault_at)
        stored = await self.audit()
        daemon_log: list[Mapping[str, Any]] = []
        if self.daemon is not None:
            code = await self.daemon.stop()
            self.note("daemon_stopped", f"exit {code}")
            daemon_log = self.daemon.events()
            self.daemon = None
        files = {"dir": str(self.dir)}
        if (self.dir / "daemon.log").exists():
            files["daemon_log"] = str(self.dir / "daemon.log")
        return build_report(
            DrillObservations(
                run_id=self.run_id,
                broker_name=self.name,
                fault=self.options.fault,
                fault_at=fault_at,
                old_master_key=master.key,
                old_master_addr=master.addr,
                sends=tuple(self.sends()),
                receives=tuple(self.receives()),
                journals=_journals(self.config.state_dir, before),
                daemon_log=daemon_log,
                drill_events=tuple(self.events),
                stored_seqs=None if stored is None else frozenset(r.seq for r in stored),
                stored_at=(
                    None
                    if stored is None
                    else {r.seq: (r.queue_id, r.queue_offset) for r in stored}
                ),
                judgement=judgement,
                old_master_started_at=started,
                old_master_safe_at=safe_at,
                problems=tuple(self.problems),
                files=files,
            )
        )

    async def close(self) -> None:
        await self.heal()  # never leave the partition behind
        for child in (self.producer, self.consumer):
            if child is not None:
                await child.stop(5.0)
        if self.daemon is not None:
            await self.daemon.stop()
        await self.pool.close_all()


@contextlib.contextmanager
def _drill_lock(state_dir: str) -> Any:
    """One drill per state dir at a time: two would share the consumer group."""
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(state_dir) / "drill.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DrillRefused(f"another drill runs against {state_dir}") from None
        yield
    finally:
        os.close(fd)


async def run_drill(
    config_path: str,
    config: WatchdogConfig,
    options: DrillOptions,
    *,
    as_json: bool,
    echo: Callable[[str], None],
    progress: Callable[[str], None],
) -> int:
    """Run one drill and print its report; 0 when it passed, 1 when not. DrillRefused when it
    will not run (nothing was touched)."""
    _preflight(config, options)
    with _drill_lock(config.state_dir):
        drill = _Drill(config_path, config, options, progress)
        try:
            report = await drill.run()
        except _DrillError as exc:
            echo(
                json.dumps({"ok": False, "run_id": drill.run_id, "error": str(exc)})
                if as_json
                else f"drill {drill.run_id} stopped: {exc}"
            )
            return 1
        finally:
            await drill.close()
    doc = report.to_json()
    with contextlib.suppress(OSError):
        (drill.dir / "report.json").write_text(json.dumps(doc, indent=2) + "\n")
    echo(json.dumps(doc, indent=2) if as_json else render_report(report))
    return 0 if report.is_ok else 1


# --------------------------------------------------------------------------- the children


class _Stop:
    """Set by SIGTERM: the child finishes what it is doing and exits."""

    def __init__(self) -> None:
        self.is_set = False
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, signum: int, frame: Any) -> None:
        self.is_set = True


def _emitter(out: IO[str]) -> Callable[[Mapping[str, Any]], None]:
    import threading

    lock = threading.Lock()

    def emit(doc: Mapping[str, Any]) -> None:
        with lock:  # the consumer's callback runs on a native thread
            out.write(json.dumps(doc, separators=(",", ":")) + "\n")
            out.flush()

    return emit


def _produce(args: argparse.Namespace, out: IO[str]) -> int:
    from rocketmq.client import Message, Producer

    stop = _Stop()
    emit = _emitter(out)
    producer = Producer(PRODUCER_GROUP, timeout=_SEND_TIMEOUT_MS)
    producer.set_namesrv_addr(args.namesrv)
    producer.start()
    began = time.monotonic()
    seq = 0
    while not stop.is_set:
        seq += 1
        message = Message(args.topic)
        message.set_keys(f"{args.run_id}-{seq}")
        message.set_body(message_body(args.run_id, seq))
        started = time.time()
        try:
            result = producer.send_sync(message)
        except Exception as exc:  # the ctypes client raises its own exception types
            emit({"seq": seq, "started_at": started, "ended_at": time.time(), "ok": False,
                  "error": f"{type(exc).__name__}: {str(exc).strip()[:300]}"})  # fmt: skip
        else:
            # Any send status means the broker stored it (SEND_OK or a replication warning).
            emit({"seq": seq, "started_at": started, "ended_at": time.time(), "ok": True,
                  "msg_id": str(result.msg_id), "status": int(result.status)})  # fmt: skip
        pause = seq * args.interval_seconds - (time.monotonic() - began)
        if pause > 0:
            time.sleep(pause)
    return 0


def _consume(args: argparse.Namespace, out: IO[str]) -> int:
    from rocketmq.client import PushConsumer

    stop = _Stop()
    emit = _emitter(out)

    def on_message(msg: Any) -> None:
        parsed = parse_body(msg.body)
        if parsed is None or parsed[0] != args.run_id:
            return  # an earlier run's message
        emit({"seq": parsed[1], "at": time.time(), "msg_id": str(msg.id),
              "queue_id": int(msg.queue_id), "queue_offset": int(msg.queue_offset),
              "reconsume_times": int(msg.reconsume_times)})  # fmt: skip

    consumer = PushConsumer(args.group)
    consumer.set_namesrv_addr(args.namesrv)
    consumer.set_thread_count(1)
    consumer.subscribe(args.topic, on_message)
    consumer.start()
    while not stop.is_set:
        time.sleep(0.1)
    consumer.shutdown()  # commits the consumed offsets, so the next drill resumes after them
    return 0


def _audit(args: argparse.Namespace, out: IO[str]) -> int:
    """Pull every queue of the topic from its first offset: what the cluster still stores."""
    from .pullall import pull_every_queue

    emit = _emitter(out)
    result = pull_every_queue(
        args.namesrv, args.topic, f"RMQ_WATCHDOG_DRILL_AUDIT_{os.getpid()}", args.timeout_seconds
    )
    for found in result.messages:
        parsed = parse_body(found.body)
        if parsed is not None and parsed[0] == args.run_id:
            emit({"seq": parsed[1], "at": time.time(), "queue_id": found.queue_id,
                  "queue_offset": found.queue_offset})  # fmt: skip
    if not result.is_complete:
        return 1  # out of time: no audit_done line
    emit({"audit_done": True, "queues": result.queues})
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m watchdog.drill", description="The drill's client children."
    )
    sub = parser.add_subparsers(dest="verb", required=True)
    produce = sub.add_parser("produce", help="send one numbered message per interval")
    produce.add_argument("--interval-seconds", type=float, default=_SEND_INTERVAL_SECONDS)
    consume = sub.add_parser("consume", help="push-consume and print every delivery")
    consume.add_argument("--group", default=CONSUMER_GROUP)
    audit = sub.add_parser("audit", help="pull every queue from its first offset")
    audit.add_argument("--timeout-seconds", type=float, default=60.0)
    for p in (produce, consume, audit):
        p.add_argument("--namesrv", required=True)
        p.add_argument("--topic", required=True)
        p.add_argument("--run-id", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """A client child: one JSON line per send / delivery on stdout until SIGTERM."""
    args = _parser().parse_args(argv)
    # The native library may write to fd 1; keep the real stdout for the records only.
    out: IO[str] = os.fdopen(os.dup(1), "w")
    sys.stdout.flush()
    os.dup2(2, 1)
    try:
        check_topic_name(args.topic)
        verbs = {"produce": _produce, "consume": _consume, "audit": _audit}
        code = verbs[args.verb](args, out)
    except Exception as exc:  # noqa: BLE001 - one line, then out: the parent reads the log
        sys.stderr.write(f"drill {args.verb}: {type(exc).__name__}: {exc}\n")
        code = 1
    out.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: the client's destructors shut the native client down a second
    # time, and may crash doing it.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
