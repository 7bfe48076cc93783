"""The drill's run: its phases against a live cluster, one drill per state dir at a time."""

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

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from ...act import Journal, StateStore
from ...config import BrokerConfig, WatchdogConfig
from ...daemon import is_lock_held
from ...hosts import HostError, make_host
from ...native import (
    DRILL_CONSUMER_GROUP,
    DRILL_SEND_INTERVAL_SECONDS,
    ReceiveRecord,
    SendRecord,
    json_object,
    parse_receive_line,
    parse_send_line,
    reap,
)
from ...remoting import ClientPool, RemotingError
from ..daemon_child import DaemonChild
from ._children import LineChild
from ._cluster import (
    answers,
    commitlog_offset,
    create_drill_topic,
    drill_topic,
    group_view,
    has_topic,
    judge_group,
    ready_master,
    topic_route_problem,
)
from ._report import (
    DrillObservations,
    DrillReport,
    GroupJudgement,
    TimelineEvent,
    build_report,
    finished_entry,
    promotion_of,
    render_report,
)
from ._rules import DrillOptions, DrillRefused, fault_argv, partition_ruleset, preflight

__all__ = ["run_drill"]

_POLL_SECONDS = 0.5
_IN_SYNC_SECONDS = 60.0
_SLAVE_TOPIC_SECONDS = 75.0
# librocketmq refreshes a topic's route every 30 s; a send times out after 1.5 s.
_FIRST_WRITE_SECONDS = 75.0
# SIGTERM: the daemon finishes a running failover first, so give it a step's time.
_DAEMON_STOP_SECONDS = 150.0


def _tail(daemon: DaemonChild) -> str:
    """The daemon log's last lines on one line, for a sentence of the report."""
    return " | ".join(daemon.tail(5).splitlines())[-1500:]


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
        self.journal = Journal(config.state_dir)
        self.state = StateStore(config.state_dir)
        self.daemon: DaemonChild | None = None
        self.producer: LineChild | None = None
        self.consumer: LineChild | None = None
        self.events: list[TimelineEvent] = []
        self.problems: list[str] = []
        self.nft_table: str | None = None  # the partition's, while it is installed

    def journals(self, exclude: Collection[str] = ()) -> dict[str, list[dict[str, Any]]]:
        """The daemon's failover journals but those in ``exclude``, read leniently."""
        return self.journal.read_all(exclude, lenient=True)

    def note(self, event: str, detail: str) -> None:
        self.events.append(TimelineEvent(time.time(), "drill", event, detail))

    def _child_argv(self, verb: str, *extra: str) -> list[str]:
        return [
            sys.executable, "-m", "watchdog.native", verb,
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
        self.daemon = DaemonChild(self.config_path, self.dir / "daemon.log")
        self.progress(f"started the watchdog daemon (pid {self.daemon.pid})")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if not self.daemon.is_running:
                raise _DrillError(f"the daemon exited at once: {_tail(self.daemon)}")
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
            f"the daemon logged no two cycles of {self.name} within 90 s: {_tail(self.daemon)}"
        )

    async def find_master(self) -> BrokerConfig:
        deadline = time.monotonic() + 30
        while True:
            tables, live = await group_view(self.pool, self.config, self.name)
            found = ready_master(self.config, self.name, tables, live)
            if not isinstance(found, str):
                return found
            if time.monotonic() > deadline:
                raise _DrillError(f"{self.name} is not ready for a drill: {found}")
            await asyncio.sleep(1.0)

    async def prepare_topic(self, master: BrokerConfig) -> None:
        try:
            await create_drill_topic(self.pool, master, self.topic)
        except RemotingError as exc:
            raise _DrillError(f"cannot create {self.topic} on {master.addr}: {exc}") from None
        deadline = time.monotonic() + 30
        while (
            problem := await topic_route_problem(self.pool, self.config, self.topic, master)
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
        # A slave syncs its topic config from the master every 10 s (5.x: every 60 s, checked
        # every 3 s); promoted without it, it would register no route for the drill topic.
        slaves = [b for b in self.config.group(self.name) if b.key != master.key]
        deadline = time.monotonic() + _SLAVE_TOPIC_SECONDS
        while True:
            found = [await has_topic(self.pool, b, self.topic) for b in slaves]
            if any(f is True for f in found) and not any(f is False for f in found):
                return
            if time.monotonic() > deadline:
                missing = [b.key for b, f in zip(slaves, found, strict=True) if f is False]
                raise _DrillError(
                    f"slaves {', '.join(missing)} did not sync {self.topic} in "
                    f"{_SLAVE_TOPIC_SECONDS:g} s"
                )
            await asyncio.sleep(1.0)

    async def start_traffic(self, master: BrokerConfig) -> None:
        self.consumer = LineChild(
            self._child_argv("consume", "--group", DRILL_CONSUMER_GROUP),
            self.dir / "consumer.jsonl",
            self.dir / "consumer.err",
        )
        await self.consumer.start()
        self.producer = LineChild(
            self._child_argv("produce", "--interval-seconds", str(DRILL_SEND_INTERVAL_SECONDS)),
            self.dir / "producer.jsonl",
            self.dir / "producer.err",
        )
        await self.producer.start()
        self.note("traffic_started", f"producer and consumer on {self.topic}")
        await self.wait_slaves_have_topic(master)
        wanted = self.options.messages
        deadline = time.monotonic() + 60 + wanted * DRILL_SEND_INTERVAL_SECONDS * 3
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

    async def wait_in_sync(self, master: BrokerConfig) -> None:
        """Every answering slave (one at least) holds what the master held once traffic ran."""
        slaves = [b for b in self.config.group(self.name) if b.key != master.key]
        deadline = time.monotonic() + _IN_SYNC_SECONDS
        target: int | None = None
        while True:
            if target is None:
                target = await commitlog_offset(self.pool, master)
            offsets = {b.key: await commitlog_offset(self.pool, b) for b in slaves}
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
        sent_at = time.time()
        ok, detail = await self._host_run(master, argv, 30.0)
        fault_at = time.time()
        if not ok:
            raise _DrillError(f"the fault command failed: {detail}")
        # The timeline's fault is when its command began: the signal lands somewhere inside the
        # command (a sandbox kill returns only once the process is gone), and the daemon may
        # see the crash before the command returns. Sends are counted from the command's return
        # (`fault_at`), the conservative end: one begun before it may have reached the master.
        took = f"{detail} (command returned after {fault_at - sent_at:.2f} s)".lstrip()
        self.events.append(TimelineEvent(sent_at, "drill", "fault", took))
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
            await reap(proc)
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
            if promotion_of(self.journals(before), self.name) is not None:
                self.progress("the daemon started a failover during the partition")
                return await self.wait_promotion(before, fault_at)
            if self.daemon is not None and not self.daemon.is_running:
                self.problems.append(f"the daemon exited during the drill: {_tail(self.daemon)}")
                return None
            await asyncio.sleep(_POLL_SECONDS)
        return None

    async def wait_promotion(self, before: set[str], fault_at: float) -> str | None:
        deadline = fault_at + self.options.timeout_seconds
        while True:
            journals = self.journals(before)
            fid = promotion_of(journals, self.name)
            if fid is not None and finished_entry(journals[fid]) is not None:
                return fid
            if self.daemon is not None and not self.daemon.is_running:
                self.problems.append(f"the daemon exited during the drill: {_tail(self.daemon)}")
                return fid
            running = self.name in self.state.peek().running
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
        if await answers(self.pool, master):
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
            tables, live = await group_view(self.pool, self.config, self.name)
            state = self.state.peek()
            judgement = judge_group(
                self.config.group(self.name), live, tables, old.key,
                is_failover_running=self.name in state.running,
                is_rejoin_pending=state.group(self.name).rejoin_check_key is not None,
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
        child = LineChild(
            self._child_argv("audit", "--timeout-seconds", "60"),
            self.dir / "audit.jsonl",
            self.dir / "audit.err",
        )
        await child.start()
        finished = await child.wait(75.0)
        await child.stop(5.0)
        done = any((json_object(line) or {}).get("audit_done") is True for line in child.lines)
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
        before = set(self.journals())
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
        journals = self.journals(before)
        outcome = finished_entry(journals[fid]) if fid else None
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
        daemon_log: Sequence[Mapping[str, Any]] = ()
        if self.daemon is not None:
            code = await self.daemon.stop_async(_DAEMON_STOP_SECONDS)
            self.note("daemon_stopped", f"exit {code}")
            daemon_log = self.daemon.events()
            self.daemon = None
        block = self.state.peek().group(self.name)
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
                journals=self.journals(before),
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
                blocked_until=block.blocked_until if block.is_blocked(time.time()) else None,
                block_reason=block.block_reason,
            )
        )

    async def close(self) -> None:
        await self.heal()  # never leave the partition behind
        for child in (self.producer, self.consumer):
            if child is not None:
                await child.stop(5.0)
        if self.daemon is not None:
            await self.daemon.stop_async(_DAEMON_STOP_SECONDS)
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
    preflight(config, options)
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
