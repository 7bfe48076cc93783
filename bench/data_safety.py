"""Benchmark: consecutive kill -9 failovers under a continuous producer; acked messages lost, dups.

One sandbox per replication mode (broker-a master + slave), the daemon running with
`recovery_block = "0s"` (so failovers follow one another), and one real producer (the PyPI
rocketmq client, librocketmq, in a child process) sending keyed messages with sequence numbers,
each sent until acknowledged, every acknowledgement written to a file. A round: wait until the
group is settled (the deposed master back as a slave, replicating, the topic on it, a HEALTHY
cycle, a fresh ack on the current master), kill -9 the master, wait for the daemon's promotion
to finish, measure the round on the killed master's commitlog (still on disk), start the killed
broker again with its start command (the daemon fenced it to SLAVE; it rejoins as a slave, or the
daemon moves its store aside when its log reaches past the promotion point).

After the rounds, every queue of the topic is read from offset 0 on the final master by a real
pull consumer: an acked sequence number never read is lost; one read twice is a duplicate.

With `--promotion inplace` the sandbox runs the broker plug-in (`sandbox up --promotion
inplace`) and the daemon promotes each slave in place, without restarting it (falling back to
the restart path when that fails); the result goes to bench/results/data_safety_inplace.md.

    .venv/bin/python bench/data_safety.py [--rounds 20] [--replication sync|async|both]
        [--promotion restart|inplace]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mmap
import os
import random
import signal
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file (bench/_common.py)

from bench._cluster import (
    GROUP,
    SandboxGroup,
    broker_view,
    create_bench_topic,
    registrations,
    topic_ready,
    wait_until,
)
from bench._common import (
    REPO_ROOT,
    DaemonChild,
    add_common_arguments,
    bench_dir,
    event_time,
    fmt_s,
    machine_facts,
    markdown_table,
    median,
    publish,
    running_sandbox,
    signal_process,
    terminate,
)
from watchdog.model import PropertiesFile
from watchdog.tools.sandbox import Sandbox

NAME = "data_safety"
KEYS = ("broker-a:0", "broker-a:1")  # sandbox process keys; which one is master changes
TOPIC = "BENCH_DATA_SAFETY_broker-a"
QUEUES = 4
SEND_INTERVAL_SECONDS = 0.02
BODY_PAD = 200
FAILOVER_TIMEOUT_SECONDS = 240.0
SETTLE_TIMEOUT_SECONDS = 240.0
CATCH_UP_TIMEOUT_SECONDS = 120.0
KILL_DELAY_SECONDS = (1.0, 3.0)  # random pause after settling, so kills land at any probe phase
MASTER_ROLES = ("ASYNC_MASTER", "SYNC_MASTER")

# RocketMQ 4.x commitlog record (CommitLog / MessageDecoder): magic codes and sysFlag bits.
_MESSAGE_MAGIC = 0xDAA320A7
_BLANK_MAGIC = 0xCBD43194
_BORNHOST_V6 = 1 << 4
_STOREHOST_V6 = 1 << 5


class RoundFailed(RuntimeError):
    """A round that could not be completed (a broker not answering or not in its role, the
    producer gone); a wait that ran out raises TimeoutError (bench/_cluster.py's wait_until)."""


# --------------------------------------------------------------------------- the commitlog


@dataclass(frozen=True)
class StoredMessage:
    """One message record of a commitlog, as the broker wrote it."""

    offset: int  # physical offset in the commitlog
    size: int
    topic: str
    keys: str
    uniq_key: str  # the client's message id (SendResult.msg_id)
    store_time: float  # Unix seconds (the broker's storeTimestamp, in ms)

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True)
class CommitLog:
    messages: tuple[StoredMessage, ...]
    end: int  # the end of the last whole record

    def offset_at(self, when: float) -> int:
        """The log's end at wall time `when`: the start of the first record stored then or later.
        (The broker takes storeTimestamp under its put lock, so times follow offsets.)"""
        for m in self.messages:
            if m.store_time >= when:
                return m.offset
        return self.end


def _properties(raw: bytes) -> dict[str, str]:
    out = {}
    for pair in raw.decode(errors="replace").split("\x02"):
        name, sep, value = pair.partition("\x01")
        if sep:
            out[name] = value
    return out


def read_commitlog(folder: Path) -> CommitLog:
    """Every whole message record in a broker's commitlog folder (files named by their start
    offset), up to the first gap: the end of the log after a crash."""
    messages: list[StoredMessage] = []
    end = 0
    files = sorted((p for p in folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    for path in files:
        base = int(path.name)
        if path.stat().st_size == 0:
            break
        with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            pos, size, is_full = 0, len(mm), False
            while pos + 8 <= size:
                total, magic = struct.unpack_from(">iI", mm, pos)
                if magic == _BLANK_MAGIC:
                    is_full = True  # the rest of this file is padding; the log goes on
                    break
                if magic != _MESSAGE_MAGIC or total < 84 or pos + total > size:
                    break
                record = _parse_record(mm, pos, total, base)
                if record is None:
                    break
                messages.append(record)
                pos += total
            end = base + pos
            if not is_full:
                break
    return CommitLog(tuple(messages), end)


def _parse_record(mm: mmap.mmap, pos: int, total: int, base: int) -> StoredMessage | None:
    try:
        (sys_flag,) = struct.unpack_from(">i", mm, pos + 36)
        o = pos + 48 + (20 if sys_flag & _BORNHOST_V6 else 8)  # past the born host
        (store_ms,) = struct.unpack_from(">q", mm, o)
        o += 8 + (20 if sys_flag & _STOREHOST_V6 else 8) + 4 + 8  # store host, reconsume, prep
        (body_len,) = struct.unpack_from(">i", mm, o)
        o += 4 + body_len
        topic_len = mm[o]
        topic = bytes(mm[o + 1 : o + 1 + topic_len]).decode(errors="replace")
        o += 1 + topic_len
        (props_len,) = struct.unpack_from(">h", mm, o)
        props = _properties(bytes(mm[o + 2 : o + 2 + props_len]))
        if o + 2 + props_len != pos + total:
            return None  # a torn record
    except (struct.error, IndexError):
        return None
    return StoredMessage(
        offset=base + pos,
        size=total,
        topic=topic,
        keys=props.get("KEYS", ""),
        uniq_key=props.get("UNIQ_KEY", ""),
        store_time=store_ms / 1000.0,
    )


# --------------------------------------------------------------------------- client children


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def _child_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.data_safety", *args]


def _cmd_produce(args: argparse.Namespace) -> int:
    """Send seq 0, 1, ... every SEND_INTERVAL_SECONDS, each until the broker answers; one JSON
    line per attempt in --out. Stops (after the send in progress) on SIGTERM."""
    from rocketmq.client import Message, Producer

    stop = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    producer = Producer(f"BENCH_DATA_SAFETY_PG_{os.getpid()}")
    producer.set_namesrv_addr(args.namesrv)
    producer.start()
    seq = 0
    with open(args.out, "a") as out:
        try:
            while not stop:
                key = f"{args.prefix}{seq:09d}"
                msg = Message(args.topic)
                msg.set_keys(key)
                msg.set_body(f"{key} " + "x" * BODY_PAD)
                started = time.time()
                try:
                    result = producer.send_sync(msg)
                except Exception as exc:  # the ctypes client raises its own exception types
                    line = {"seq": seq, "t0": started, "t1": time.time(),
                            "error": f"{type(exc).__name__}: {str(exc)[:160]}"}  # fmt: skip
                    out.write(json.dumps(line) + "\n")
                    out.flush()
                    time.sleep(0.1)
                    continue  # the same seq again, as an application that must not drop it
                line = {"seq": seq, "t0": started, "t1": time.time(),
                        "status": int(result.status), "id": result.msg_id,
                        "queue_offset": int(result.offset)}  # fmt: skip
                out.write(json.dumps(line) + "\n")
                out.flush()
                seq += 1
                pause = started + SEND_INTERVAL_SECONDS - time.time()
                if pause > 0:
                    time.sleep(pause)
        finally:
            producer.shutdown()
    return 0


def _cmd_pull(args: argparse.Namespace) -> int:
    """Every message key in every queue of --topic from offset 0 (a PullConsumer), one per line
    in --out; prints a JSON summary."""
    from watchdog.native import pull_every_queue

    result = pull_every_queue(
        args.namesrv, args.topic, f"BENCH_DATA_SAFETY_PULL_{os.getpid()}", args.seconds
    )
    with open(args.out, "w") as out:
        out.writelines(m.keys + "\n" for m in result.messages)
    summary = {
        "queues": result.queues,
        "pulled": len(result.messages),
        "complete": result.is_complete,
    }
    print(json.dumps(summary))
    return 0


@dataclass(frozen=True)
class Attempt:
    """One send attempt of the producer, as it recorded it."""

    seq: int
    started: float
    finished: float
    status: int | None  # None: the client raised (nothing acknowledged)
    msg_id: str = ""
    error: str = ""

    @property
    def is_acked(self) -> bool:
        """SEND_OK: stored, and with SYNC_MASTER replicated to the slave."""
        return self.status == 0


def read_attempts(path: Path) -> list[Attempt]:
    out: list[Attempt] = []
    if not path.exists():
        return out
    for line in path.read_text(errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue  # a line being written
        status = doc.get("status")
        out.append(
            Attempt(
                seq=int(doc["seq"]),
                started=float(doc["t0"]),
                finished=float(doc["t1"]),
                status=None if status is None else int(status),
                msg_id=str(doc.get("id", "")),
                error=str(doc.get("error", "")),
            )
        )
    return out


class ProducerChild:
    """The continuous producer in a child process (a hung native client is killed with it)."""

    def __init__(self, namesrv: str, out: Path, log: Path, prefix: str = "s") -> None:
        self.out = out
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            _child_argv("produce", "--namesrv", namesrv, "--topic", TOPIC, "--out", str(out),
                        "--prefix", prefix),
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=_child_env(), cwd=REPO_ROOT,
        )  # fmt: skip

    def attempts(self) -> list[Attempt]:
        return read_attempts(self.out)

    def is_running(self) -> bool:
        return self.proc.poll() is None

    def paused_while(self, action: Callable[[], None]) -> None:
        """SIGSTOP while `action` runs, then SIGCONT: no send during an operator's planned
        restart (a SYNC_MASTER without its slave stores each retry of a send it refuses)."""
        self.proc.send_signal(signal.SIGSTOP)
        try:
            action()
        finally:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self, timeout_seconds: float = 30.0) -> None:
        try:
            terminate(self.proc, timeout_seconds)
        finally:
            self._log.close()


def pull_all(namesrv: str, out: Path, timeout_seconds: float = 300.0) -> tuple[Counter[str], bool]:
    """Key -> how many times it was read, from every queue of TOPIC from offset 0; and whether
    every queue was read to its end."""
    done = subprocess.run(
        _child_argv("pull", "--namesrv", namesrv, "--topic", TOPIC, "--out", str(out),
                    "--seconds", str(timeout_seconds)),
        capture_output=True, text=True, timeout=timeout_seconds + 60, check=False,
        stdin=subprocess.DEVNULL, env=_child_env(), cwd=REPO_ROOT,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"pull consumer failed ({done.returncode}): {done.stderr[-1500:]}")
    summary = json.loads(lines[-1])
    return Counter(out.read_text().split()), bool(summary["complete"])


# --------------------------------------------------------------------------- cluster queries


def ha_connected(master: str) -> bool:
    """Some peer has an established TCP connection to the master's HA port (listenPort + 1):
    its slave replicates. (A SYNC_MASTER answers SLAVE_NOT_AVAILABLE until then, after storing
    the message; librocketmq retries such a send, so every attempt leaves a copy.)"""
    port = master.rpartition(":")[2]
    ha_port = f"{int(port) + 1:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 3 and fields[3] == "01" and fields[1].endswith(":" + ha_port):
                    return True
    return False


# --------------------------------------------------------------------------- journals


def journals(state_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every failover journal: id -> entries (a torn last line is skipped)."""
    out: dict[str, list[dict[str, Any]]] = {}
    folder = state_dir / "failovers"
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.jsonl")):
        entries = []
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entries.append(json.loads(line))
        if entries and entries[0].get("event") == "planned":
            out[path.stem] = entries
    return out


def _finished(entries: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    return next((e for e in reversed(entries) if e.get("event") == "finished"), None)


def _state(state_dir: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return {"groups": {}, "running": {}}
    return doc


# --------------------------------------------------------------------------- one mode


@dataclass(frozen=True)
class RoundResult:
    round: int
    killed_key: str
    promoted_key: str
    outcome: str
    failover_seconds: float  # kill -> the promotion's journal says finished
    reported_loss_bytes: int | None  # the plan's expected_loss_bytes
    bound_loss_bytes: int | None  # the plan's max_loss_bytes (the lag + unseen writes)
    candidate_offset: int
    promotion_offset: int
    old_log_end: int  # the killed master's log end (acked or not)
    acked_end: int  # end of the last acknowledged message in the killed master's log
    measured_loss_bytes: int  # acked bytes past the promotion point
    lost_in_round: int  # acknowledged messages (ours) past the promotion point
    stale_bytes: int  # bytes the killed master stored after the last probe could have run
    was_fenced: bool  # the rejoining old master's store was moved aside
    sync_at_decision: bool  # the plan shows the master ran SYNC_MASTER when it died
    round_seconds: float
    # How the candidate became master: "restart", "in place", or "fallback: <why>" (the
    # in-place promotion failed and the restart path ran instead).
    path: str = "restart"

    @property
    def is_within_reported(self) -> bool:
        return self.measured_loss_bytes <= (self.reported_loss_bytes or 0)

    @property
    def is_within_bound(self) -> bool:
        return self.measured_loss_bytes <= (self.reported_loss_bytes or 0) + self.stale_bytes

    @property
    def is_within_plan_bound(self) -> bool:
        return self.bound_loss_bytes is not None and self.measured_loss_bytes <= (
            self.bound_loss_bytes
        )


@dataclass
class ModeResult:
    replication: str
    rounds_asked: int
    promotion: str = "restart"  # [failover] promotion of the sandbox's watchdog
    rounds: list[RoundResult] = field(default_factory=list)
    error: str | None = None  # why the rounds stopped early
    acked: int = 0  # distinct seqs acknowledged SEND_OK
    not_ok_status: int = 0  # seqs stored with another status and never SEND_OK
    failed_attempts: int = 0
    consumed: int = 0  # messages read back (with duplicates)
    lost: list[int] = field(default_factory=list)  # acked seqs never read back
    duplicated_seqs: int = 0
    duplicate_copies: int = 0
    duplicates_after_failed_send: int = 0  # duplicated seqs the producer had seen fail first
    consumed_complete: bool = False
    final_log_messages: int = 0  # our messages in the final master's commitlog
    one_master: bool = False
    final_master: str = ""
    wall_seconds: float = 0.0

    @property
    def succeeded(self) -> int:
        return sum(1 for r in self.rounds if r.outcome == "succeeded")

    @property
    def in_place(self) -> int:
        return sum(1 for r in self.rounds if r.path == "in place")


def _cycles(daemon: DaemonChild) -> list[dict[str, Any]]:
    return [e for e in daemon.events() if "cycle" in e and e.get("broker_name") == GROUP]


def _probe_bound(daemon: DaemonChild, master_addr: str) -> float:
    """A time the daemon's last successful probe of the killed master was sent after: cycles run
    one after the other, and a cycle's line says "master ... healthy" only when the master
    answered it; that cycle's probe began after the previous cycle's line was logged."""
    cycles = _cycles(daemon)
    marker = f"master {GROUP}@{master_addr} healthy"
    answered = [i for i, e in enumerate(cycles) if marker in str(e.get("event", ""))]
    if not answered or answered[-1] == 0:
        return 0.0
    return event_time(cycles[answered[-1] - 1])


def _healthy_after(
    daemon: DaemonChild, after: float, timeout_seconds: float, master_role: str | None = None
) -> None:
    daemon.wait_for(
        lambda e: (
            e.get("broker_name") == GROUP
            and "cycle" in e
            and e.get("state") == "HEALTHY"
            and event_time(e) >= after
            and (master_role is None or e.get("master_role") == master_role)
        ),
        timeout_seconds=timeout_seconds,
        what="a HEALTHY cycle" + (f" with the master as {master_role}" if master_role else ""),
    )


def _fresh_ack(producer: ProducerChild, after: float) -> None:
    wait_until(
        lambda: any(a.is_acked and a.started >= after for a in producer.attempts()),
        90,
        "an ack of a send started now",
    )


def _rewrite_role(properties: Path, role: str) -> None:
    text = properties.read_text()
    new = PropertiesFile.parse(text).with_values({"brokerRole": role}).render()
    tmp = properties.with_name(properties.name + ".data-safety.tmp")
    tmp.write_text(new)
    os.replace(tmp, properties)


class _Daemon:
    """The daemon child, stopped around an operator's planned restart of a broker (a planned
    restart is no failover) and started again on the same config and log."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.child = DaemonChild(config, log)

    def stopped_while(self, action: Callable[[], None]) -> None:
        self.child.stop()
        try:
            action()
        finally:
            self.child = DaemonChild(self.config, self.log)

    def stop(self) -> None:
        self.child.stop()


def _restart_as(cluster: _Cluster, key: str, role: str) -> None:
    """brokerRole=role in its properties file, then a restart: 4.x reads the role at boot. (A
    live UPDATE_BROKER_CONFIG would also change it, but makes the broker rewrite its whole -c
    file: every field of its four config objects, ~250 keys, comments and key order lost.)"""
    _rewrite_role(cluster.properties[key], role)
    cluster.box.stop(key)
    cluster.box.start(key, wait_registered=True, timeout_seconds=180)
    wait_until(lambda: ha_connected(cluster.addrs[key]), 60, f"a slave's HA connection to {key}")


@dataclass(frozen=True)
class _Cluster(SandboxGroup):
    """What a mode's loop knows of its sandbox (SandboxGroup.of), and asks of its brokers."""

    def commitlog_dir(self, key: str) -> Path:
        props = PropertiesFile.parse(self.properties[key].read_text())
        path = props.get("storePathCommitLog")
        if path:
            return Path(path)
        return Path(props.get("storePathRootDir") or "") / "commitlog"

    def settled(self, master: str, slave: str, state_dir: Path) -> bool:
        """Master and slave answer in their roles, every nameserver lists them so, and the
        daemon has nothing running or left to check about the deposed master."""
        state = _state(state_dir)
        record = state.get("groups", {}).get(GROUP, {})
        if state.get("running") or record.get("rejoin_check_key") is not None:
            return False
        m, s = broker_view(self.addrs[master]), broker_view(self.addrs[slave])
        if m is None or s is None or m.role not in MASTER_ROLES or s.role != "SLAVE":
            return False
        for table in registrations(self.nameservers).values():
            if table is None:
                continue
            if table.get(0) != self.addrs[master] or self.addrs[slave] not in table.values():
                return False
        return True

    def caught_up(self, master: str, slave: str) -> None:
        """The slave reaches the master's log end as it is now (the producer keeps writing, so
        this is no lag-0 wait: at the kill the slave is as far behind as replication leaves it)."""
        m = broker_view(self.addrs[master])
        if m is None:
            raise RoundFailed(f"master {master} does not answer")
        target = m.offset

        def reached() -> bool:
            s = broker_view(self.addrs[slave])
            return s is not None and s.offset >= target

        wait_until(reached, CATCH_UP_TIMEOUT_SECONDS, f"{slave} replicating up to {target}")

    def one_master(self) -> tuple[bool, str]:
        """Every answering nameserver lists the same id 0, and exactly one broker runs as master."""
        tables = registrations(self.nameservers).values()
        ids0 = {t.get(0) for t in tables if t is not None}
        views = {k: broker_view(a) for k, a in self.addrs.items()}
        masters = [k for k, v in views.items() if v is not None and v.role in MASTER_ROLES]
        is_one = len(ids0) == 1 and len(masters) == 1 and self.addrs[masters[0]] in ids0
        return is_one, ",".join(masters)


def run_mode(
    box: Sandbox,
    *,
    replication: str,
    rounds: int,
    work: Path,
    seed: int = 1,
    deadline: float | None = None,
    progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
    promotion: str = "restart",
) -> ModeResult:
    """The whole loop on a running sandbox started with this replication (master broker-a:0)
    and this promotion (inplace: `sandbox up --promotion inplace`)."""
    began = time.monotonic()
    rng = random.Random(seed)
    result = ModeResult(replication=replication, rounds_asked=rounds, promotion=promotion)
    cluster = _Cluster.of(box)
    with box.config_path.open("a") as fh:
        # With the plug-in, watchdog.toml ends in the [failover] table the sandbox wrote.
        table = "" if promotion == "inplace" else "\n[failover]"
        fh.write(f'{table}\nrecovery_block = "0s"\n')
    state_dir = box.dir / "watchdog-state"
    master, slave = KEYS
    create_bench_topic(cluster.addrs[master], TOPIC, QUEUES)
    wait_until(
        lambda: topic_ready(cluster.addrs[slave], cluster.nameservers, TOPIC), 60, "the topic"
    )
    wait_until(lambda: ha_connected(cluster.addrs[master]), 60, "the slave's HA connection")
    producer = ProducerChild(cluster.namesrv, work / f"acks-{replication}.jsonl",
                             work / f"producer-{replication}.log")  # fmt: skip
    daemon = _Daemon(box.config_path, work / f"daemon-{replication}.log")
    try:
        _healthy_after(daemon.child, 0.0, 90)
        wait_until(lambda: sum(a.is_acked for a in producer.attempts()) >= 20, 90,
                   "the producer's first 20 acks")  # fmt: skip
        for number in range(1, rounds + 1):
            if deadline is not None and time.monotonic() > deadline:
                result.error = f"time budget spent after {number - 1} rounds"
                break
            try:
                one = _one_round(number, cluster, daemon, producer, state_dir, master, slave,
                                 replication, rng)  # fmt: skip
            except (RoundFailed, TimeoutError, RuntimeError) as exc:
                result.error = f"round {number}: {exc}"
                progress(f"[{replication}] round {number} stopped the run: {exc}")
                break
            result.rounds.append(one)
            progress(
                f"[{replication}] round {number}: {one.killed_key} killed, {one.promoted_key} "
                f"promoted ({one.path}) in {one.failover_seconds:.1f} s; "
                f"reported {one.reported_loss_bytes} B, "
                f"acked past the point {one.measured_loss_bytes} B ({one.lost_in_round} msgs), "
                f"stale {one.stale_bytes} B; fenced {one.was_fenced}; "
                f"round {one.round_seconds:.0f} s"
            )
            if one.outcome != "succeeded":
                result.error = f"round {number}: failover {one.outcome}"
                break
            master, slave = one.promoted_key, one.killed_key
    finally:
        producer.stop()
        daemon.stop()
    _account(result, cluster, producer, work)
    result.wall_seconds = time.monotonic() - began
    return result


def _one_round(
    number: int,
    cluster: _Cluster,
    daemon: _Daemon,
    producer: ProducerChild,
    state_dir: Path,
    master: str,
    slave: str,
    replication: str,
    rng: random.Random,
) -> RoundResult:
    began = time.monotonic()
    # Settled: the old master back as a slave, nothing left for the daemon to do about it, the
    # topic on the slave (so a promoted slave serves it).
    wait_until(lambda: cluster.settled(master, slave, state_dir), SETTLE_TIMEOUT_SECONDS,
               f"{master} master, {slave} slave, nothing left for the daemon")  # fmt: skip
    wait_until(lambda: topic_ready(cluster.addrs[slave], cluster.nameservers, TOPIC), 60,
               f"{TOPIC} on {slave}")  # fmt: skip
    # Replicating: its HA connection is up, and it copies what the producer writes from now on.
    wait_until(lambda: ha_connected(cluster.addrs[master]), 60, f"{slave}'s HA connection")
    _fresh_ack(producer, time.time())
    cluster.caught_up(master, slave)
    if replication == "sync":
        # The promotion made the new master ASYNC_MASTER (alone, a SYNC_MASTER refuses every
        # send); with its slave back, the operator sets SYNC_MASTER again in its properties file
        # and restarts it, the daemon stopped meanwhile (a planned restart is no failover) and
        # the producer paused until the slave is attached again.
        view = broker_view(cluster.addrs[master])
        if view is None or view.role != "SYNC_MASTER":
            daemon.stopped_while(
                lambda: producer.paused_while(
                    lambda: _restart_as(cluster, master, "SYNC_MASTER")
                )
            )
            view = broker_view(cluster.addrs[master])
        if view is None or view.role != "SYNC_MASTER":
            raise RoundFailed(f"{master} did not come back as SYNC_MASTER: {view}")
        wait_until(lambda: ha_connected(cluster.addrs[master]), 60, f"{slave}'s HA connection")
        # Everything acked before the switch is on the slave once this returns.
        cluster.caught_up(master, slave)
    ready = time.time()
    # The daemon has probed the master since, and re-read its role (it re-reads a master's
    # config every few cycles, not every cycle).
    _healthy_after(daemon.child, ready, 60, "SYNC_MASTER" if replication == "sync" else None)
    _fresh_ack(producer, ready)  # traffic in flight when it dies
    if not producer.is_running():
        raise RoundFailed("the producer exited")
    time.sleep(rng.uniform(*KILL_DELAY_SECONDS))

    kill_at = signal_process(cluster.box, master, signal.SIGKILL)  # time just before it

    def promotion() -> tuple[str, list[dict[str, Any]]] | None:
        for fid, entries in journals(state_dir).items():
            plan = entries[0]["plan"]
            if (
                plan.get("kind") == "promote"
                and plan.get("old_master_key") == master
                and float(entries[0]["at"]) >= kill_at
                and _finished(entries) is not None
            ):
                return fid, entries
        return None

    _, entries = wait_until(promotion, FAILOVER_TIMEOUT_SECONDS, "the promotion to finish")
    plan = entries[0]["plan"]
    finished = _finished(entries) or {}
    outcome = str(finished.get("outcome"))
    promoted = str(plan.get("new_master_key"))
    noted = [e for e in entries if e.get("event") == "promotion_offset"]
    candidate_offset = int(plan["candidate_offset"])
    promotion_offset = int(noted[0]["offset"]) if noted else candidate_offset
    reported = plan.get("expected_loss_bytes")
    bound = plan.get("max_loss_bytes")
    sync_at_decision = any(
        k == "role" and "SYNC_MASTER -> ASYNC_MASTER" in v for k, v in plan.get("details", [])
    )
    path = _promotion_path(entries)

    # The killed master's commitlog is still on disk (kill -9 loses no page-cache data).
    old_log = read_commitlog(cluster.commitlog_dir(master))
    acked_ids = {a.msg_id for a in producer.attempts() if a.is_acked}
    acked_on_old = [m for m in old_log.messages if m.topic == TOPIC and m.uniq_key in acked_ids]
    acked_end = max((m.end for m in acked_on_old), default=0)
    measured = max(0, acked_end - promotion_offset)
    lost_in_round = sum(1 for m in acked_on_old if m.end > promotion_offset)
    stale = max(0, acked_end - old_log.offset_at(_probe_bound(daemon.child, cluster.addrs[master])))
    one = RoundResult(
        round=number,
        killed_key=master,
        promoted_key=promoted,
        outcome=outcome,
        failover_seconds=float(finished.get("at", kill_at)) - kill_at,
        reported_loss_bytes=None if reported is None else int(reported),
        bound_loss_bytes=None if bound is None else int(bound),
        candidate_offset=candidate_offset,
        promotion_offset=promotion_offset,
        old_log_end=old_log.end,
        acked_end=acked_end,
        measured_loss_bytes=measured,
        lost_in_round=lost_in_round,
        stale_bytes=stale,
        was_fenced=False,
        sync_at_decision=sync_at_decision,
        round_seconds=0.0,
        path=path,
    )
    if outcome != "succeeded":
        return one

    # The killed broker comes back with its start command; its properties now say SLAVE.
    cluster.box.start(master)
    wait_until(lambda: cluster.settled(promoted, master, state_dir), SETTLE_TIMEOUT_SECONDS,
               f"{master} rejoining as a slave of {promoted}")  # fmt: skip
    fenced = any(
        e[0]["plan"].get("kind") == "fence"
        and e[0]["plan"].get("old_master_key") == master
        and float(e[0]["at"]) >= kill_at
        for e in journals(state_dir).values()
    )
    return replace(one, was_fenced=fenced, round_seconds=time.monotonic() - began)


def _promotion_path(entries: Sequence[dict[str, Any]]) -> str:
    """How the journal says the candidate became master."""
    fell = next((e for e in entries if e.get("event") == "fallback_started"), None)
    if fell is not None:
        return f"fallback: {fell.get('reason', '')}"
    promoted = any(
        e.get("event") == "step_done" and e.get("kind") == "promote_in_place" for e in entries
    )
    return "in place" if promoted else "restart"


def _account(result: ModeResult, cluster: _Cluster, producer: ProducerChild, work: Path) -> None:
    """Acked vs read back, on the final master."""
    attempts = producer.attempts()
    acked = {a.seq for a in attempts if a.is_acked}
    other = {a.seq for a in attempts if a.status not in (None, 0)} - acked
    result.acked = len(acked)
    result.not_ok_status = len(other)
    result.failed_attempts = sum(1 for a in attempts if a.status is None)
    is_one, masters = cluster.one_master()
    result.one_master = is_one
    result.final_master = masters
    try:
        counts, complete = pull_all(cluster.namesrv, work / f"pulled-{cluster.box.dir.name}.txt")
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        result.error = (result.error + "; " if result.error else "") + f"read back: {exc}"
        return
    seqs: Counter[int] = Counter()
    for key, n in counts.items():
        if key.startswith("s") and key[1:].isdigit():
            seqs[int(key[1:])] += n
    result.consumed = sum(seqs.values())
    result.consumed_complete = complete
    result.lost = sorted(acked - set(seqs))
    result.duplicated_seqs = sum(1 for n in seqs.values() if n > 1)
    result.duplicate_copies = sum(n - 1 for n in seqs.values() if n > 1)
    failed_first = {a.seq for a in attempts if a.status is None}
    result.duplicates_after_failed_send = sum(
        1 for seq, n in seqs.items() if n > 1 and seq in failed_first
    )
    if masters and "," not in masters:
        final_log = read_commitlog(cluster.commitlog_dir(masters))
        result.final_log_messages = sum(1 for m in final_log.messages if m.topic == TOPIC)


# --------------------------------------------------------------------------- report


def _bytes(value: int | None) -> str:
    return "unknown" if value is None else str(value)


def summary_table(results: Sequence[ModeResult]) -> str:
    rows = []
    for r in results:
        worst = max(r.rounds, key=lambda x: x.measured_loss_bytes, default=None)
        worst_cell = (
            "-" if worst is None else
            f"{worst.measured_loss_bytes} B vs {_bytes(worst.reported_loss_bytes)} B (round "
            f"{worst.round})"
        )  # fmt: skip
        times = [x.failover_seconds for x in r.rounds if x.outcome == "succeeded"]
        over = sum(1 for x in r.rounds if not x.is_within_reported)
        over_bound = sum(1 for x in r.rounds if not x.is_within_plan_bound)
        rows.append([
            r.replication,
            r.promotion,
            f"{len(r.rounds)}/{r.rounds_asked}",
            f"{r.succeeded}/{len(r.rounds)}",
            f"{r.in_place}/{len(r.rounds)}",
            str(r.acked),
            str(len(r.lost)),
            f"{r.duplicated_seqs} ({r.duplicate_copies} extra copies)",
            worst_cell,
            f"{over}/{len(r.rounds)}",
            f"{over_bound}/{len(r.rounds)}",
            fmt_s(median(times)) if times else "-",
            "yes" if r.one_master else "NO",
        ])  # fmt: skip
    return markdown_table(
        ["mode", "promotion", "rounds", "failovers succeeded", "promoted in place",
         "acked (SEND_OK)", "lost", "duplicated seqs",
         "max per-round loss vs reported", "rounds loss > reported",
         "rounds loss > max_loss_bytes", "median failover s",
         "one master at end"],
        rows,
    )  # fmt: skip


def rounds_table(r: ModeResult) -> str:
    rows = [
        [
            str(x.round),
            f"{x.killed_key} -> {x.promoted_key}",
            x.outcome,
            x.path if len(x.path) <= 60 else x.path[:57] + "...",
            fmt_s(x.failover_seconds),
            _bytes(x.reported_loss_bytes),
            _bytes(x.bound_loss_bytes),
            str(x.measured_loss_bytes),
            str(x.lost_in_round),
            str(max(0, x.old_log_end - x.promotion_offset)),
            str(x.stale_bytes),
            "yes" if x.is_within_bound else "NO",
            "yes" if x.is_within_plan_bound else "NO",
            "yes" if x.was_fenced else "no",
            f"{x.round_seconds:.0f}",
        ]
        for x in r.rounds
    ]
    return markdown_table(
        ["round", "killed -> promoted", "outcome", "promoted how", "failover s", "reported B",
         "max_loss B",
         "acked past point B", "acked msgs lost", "log past point B", "stale B",
         "<= reported + stale", "<= max_loss", "store moved aside", "round s"],
        rows,
    )  # fmt: skip


def mode_notes(r: ModeResult) -> list[str]:
    read = "every queue to its end" if r.consumed_complete else "INCOMPLETE"
    out = [
        f"{r.replication}: {r.acked} sequence numbers acknowledged SEND_OK, "
        f"{r.not_ok_status} stored with another status and never SEND_OK, "
        f"{r.failed_attempts} send attempts failed (retried with the same sequence number); "
        f"{r.consumed} messages read back ({read}), {r.final_log_messages} of ours in the "
        "final master's commitlog; "
        f"lost: {r.lost[:20] if r.lost else 'none'}; final master {r.final_master}; "
        f"took {r.wall_seconds / 60:.1f} min."
    ]
    if r.error:
        out.append(f"{r.replication}: stopped early: {r.error}")
    if r.replication == "sync":
        unsynced = [x.round for x in r.rounds if not x.sync_at_decision]
        out.append(
            "sync: every plan showed the dying master as SYNC_MASTER"
            if not unsynced
            else f"sync: the plan did NOT show SYNC_MASTER in rounds {unsynced}"
        )
    return out


def findings(r: ModeResult) -> list[str]:
    """What the numbers say, computed from them."""
    n = len(r.rounds)
    if n == 0:
        return []
    past_log = [max(0, x.old_log_end - x.promotion_offset) for x in r.rounds]
    holders = sum(1 for b in past_log if b)
    fenced = sum(1 for x in r.rounds if x.was_fenced)
    if r.duplicated_seqs == 0:
        dups = "none"
    else:
        within = r.duplicated_seqs - r.duplicates_after_failed_send
        dups = (
            f"{r.duplicated_seqs} seqs read twice or more: {r.duplicates_after_failed_send} after "
            "a send the producer saw fail (stored, its answer cut off by the kill, then retried), "
            f"{within} within one send_sync (librocketmq's own retry)"
        )
    reported = sorted({_bytes(x.reported_loss_bytes) for x in r.rounds})
    zero_rounds = sum(1 for x in r.rounds if x.reported_loss_bytes == 0)
    over = [x for x in r.rounds if not x.is_within_reported]
    over_bound = [x for x in r.rounds if not x.is_within_plan_bound]
    worst = max(r.rounds, key=lambda x: x.measured_loss_bytes)
    counted = sum(x.lost_in_round for x in r.rounds)
    where = (
        "so nothing was lost anywhere else"
        if counted == len(r.lost)
        else f"but {len(r.lost)} were lost in all: some loss is NOT explained by the point"
    )
    if holders == 0:
        held = "No deposed master held bytes past the point; " + (
            "none was fenced again."
            if fenced == 0
            else f"yet {fenced} were fenced again (seen past the point once replicating)."
        )
    else:
        acked_there = (
            "acknowledged bytes among them"
            if any(x.measured_loss_bytes for x in r.rounds)
            else "none acknowledged: sends in flight at the kill"
        )
        held = (
            f"{holders} deposed masters held bytes past the point (at most {max(past_log)} B; "
            f"{acked_there}); {fenced} were fenced again when they rejoined, their stores moved "
            "aside."
        )
    out = []
    if r.promotion == "inplace":
        fell = Counter(x.path for x in r.rounds if x.path.startswith("fallback"))
        out.append(
            f"Promotion, {r.replication}: {r.in_place} of {n} promotions in place (the slave's "
            "JVM kept running)"
            + (
                "; the others fell back to the restart path: "
                + "; ".join(f"{why} ({k}x)" for why, k in fell.most_common())
                if fell
                else ""
            )
            + "."
        )
    if r.replication == "sync":
        out.append(
            f"Finding, sync: {len(r.lost)} of {r.acked} acknowledged messages lost over {n} "
            f"kill -9 failovers; acknowledged bytes past the promotion point in "
            f"{sum(1 for x in r.rounds if x.measured_loss_bytes)} rounds. {held} "
            f"Duplicates: {dups}."
        )
        return out
    out.append(
        f"Finding, async: {len(r.lost)} of {r.acked} acknowledged messages lost over {n} "
        f"kill -9 failovers; {counted} acknowledged messages counted past the promotion point "
        f"round by round ({where}). The plan reported {', '.join(reported)} B; the acknowledged "
        f"bytes past the point exceeded the reported figure in {len(over)} of {n} rounds (at "
        f"most {worst.measured_loss_bytes} B, {worst.lost_in_round} messages, round "
        f"{worst.round}, reported {_bytes(worst.reported_loss_bytes)} B), and stayed within "
        f"reported + stale in {sum(1 for x in r.rounds if x.is_within_bound)} of {n}. {held} "
        f"Duplicates: {dups}."
    )
    bounds = [x.bound_loss_bytes for x in r.rounds if x.bound_loss_bytes is not None]
    out.append(
        f"The plan's max_loss_bytes (the lag plus the master's peak write rate over the last "
        f"60 s times its silence) read {min(bounds, default=0)}-{max(bounds, default=0)} B and "
        + (
            f"held in all {n} rounds."
            if not over_bound
            else f"was exceeded in {len(over_bound)} of {n} rounds "
            f"({', '.join(str(x.round) for x in over_bound)})."
        )
    )
    if over:
        why = ""
        if zero_rounds:
            why = (
                f" It read 0 B in {zero_rounds} of {n} rounds: it compares the master's last "
                "probed offset with the slave's, and with replication keeping up, by the time the "
                "daemon decides the slave holds everything that probe saw. What an ASYNC_MASTER "
                "loses is what it acknowledged in its last moments, after that probe, which no "
                "probe can see. The figure does measure a backlog older than one probe cycle (a "
                "slave down or far behind, as in tests/integration/test_failover.py)."
            )
        out.append(
            "So the plan's expected_loss_bytes is not an upper bound of the loss; max_loss_bytes "
            "is the figure meant as one." + why
        )
    return out


NOTES = [
    "A round: settle (the deposed master answers as SLAVE and every nameserver lists it so, the "
    "daemon has no failover running and nothing left to check about it, the topic is on the "
    "slave, the slave has replicated up to the master's log end taken at that moment, a HEALTHY "
    "cycle, an ack from the current master), wait 1-3 s at random, kill -9 the master, wait "
    "until the promotion's journal says finished, measure, start the killed broker with "
    "`sandbox start` (its properties were rewritten to SLAVE by the daemon).",
    "Producer: rocketmq 0.4.4 (librocketmq) in a child process, send_sync every "
    f"{SEND_INTERVAL_SECONDS * 1000:.0f} ms, keys s<seq>, ~{BODY_PAD + 11} B bodies, to "
    f"{TOPIC} ({QUEUES} queues, created on the first master, copied to the slave); a failed "
    "send is retried with the same seq (a new message, new client id) until acknowledged. "
    "Acknowledged = status SEND_OK: with SYNC_MASTER the slave has it.",
    "Lost = a seq acknowledged SEND_OK but never read back by a pull consumer reading every "
    "queue of the topic from offset 0 on the final master; duplicated = a seq read more than "
    "once (a send that failed or timed out at the client but was stored, then retried).",
    "Per round, on the killed master's commitlog (read from disk after the kill: kill -9 loses "
    "no page-cache data): 'acked past point' = end of the last message whose client id was "
    "acknowledged minus the promotion point (the candidate's commitLogMaxOffset when the daemon "
    "stopped it, journal event promotion_offset); 'log past point' counts unacknowledged bytes "
    "too. 'reported' is the plan's expected_loss_bytes at decision time: the master's last "
    "probed commitLogMaxOffset minus the candidate's.",
    "The reported figure is a lower bound, as the code says: the master's offset is the last "
    "one a probe saw, up to one probe cycle old. 'stale' = bytes acknowledged by the killed "
    "master after the earliest moment its last successful probe can have been sent (the log "
    "line of the cycle before the last cycle whose line says the master answered; cycles run "
    "one after another), from the broker's store timestamps. Provable: acked past point <= "
    "reported + stale; the column checks it. 'max_loss' is the plan's max_loss_bytes: the "
    "master's last probed offset plus its peak write rate over the last 60 s times the time "
    "since it last answered, minus the candidate's offset; '<= max_loss' checks the loss "
    "against it.",
    "Sync mode: the daemon promotes the slave as ASYNC_MASTER (alone, a SYNC_MASTER answers "
    "every send SLAVE_NOT_AVAILABLE) and says so in the plan; once the deposed master is back "
    "as a slave, this benchmark sets brokerRole=SYNC_MASTER again, as the plan tells an "
    "operator to: in the properties file, then a restart of that master (the daemon stopped "
    "meanwhile and started again after: a planned restart is no failover; the producer "
    "paused with SIGSTOP until the slave's HA connection is back, since a SYNC_MASTER without "
    "its slave stores every retry of a send it answers SLAVE_NOT_AVAILABLE; no live "
    "UPDATE_BROKER_CONFIG, which would make the broker rewrite its whole -c file); then waits "
    "for the slave to replicate everything acked before, so every SEND_OK that counts is a "
    "synchronous one.",
    "'store moved aside': the deposed master rejoined with a log past the promotion point, so "
    "the daemon fenced it again (stop, move the store aside, start as slave; it then copies "
    "the whole log from the new master).",
]


NOTE_INPLACE = (
    "In place (--promotion inplace): every broker runs the rmq-watchdog plug-in and the daemon "
    "has [failover] promotion = \"inplace\": after the fence it checks the candidate itself (two "
    "runtime-info reads 0.2 s apart, the same log end, nothing left to dispatch) and asks the "
    "plug-in to promote it inside its running JVM (PROMOTE_IN_PLACE: replication stopped, the "
    "log end checked again, queue offsets recovered, changeToMaster, a synchronous "
    "registration); the promotion point is the plug-in's answer (its log end when it switched). "
    "'promoted how' says per round whether that happened or the restart path ran instead, and "
    "why. The killed broker comes back through the restart path as before (4.x cannot demote "
    "in place)."
)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["produce"], ["pull"]):
        return _child_main(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, default_base_port=32000)
    parser.add_argument("--rounds", type=int, default=20, help="failovers per mode")
    parser.add_argument("--replication", choices=("sync", "async", "both"), default="both")
    parser.add_argument(
        "--promotion",
        choices=("restart", "inplace"),
        default="restart",
        help="inplace: the broker plug-in on every broker (sandbox up --promotion inplace), "
        "the daemon promotes in place; results in data_safety_inplace.md",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the random kill delays")
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=None,
        help="start no new round after this many minutes of the whole run (default: no limit)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    both: list[Literal["sync", "async"]] = ["sync", "async"]
    modes = both if args.replication == "both" else [args.replication]
    facts = machine_facts(args.version)
    started = time.monotonic()
    deadline = None if args.budget_minutes is None else started + args.budget_minutes * 60
    results: list[ModeResult] = []
    with bench_dir(NAME, args.work_dir, args.keep) as work:
        for index, mode in enumerate(modes):
            mode_dir = work / mode
            mode_dir.mkdir()
            # TLS off: no certificate built at every broker start.
            with running_sandbox(
                mode_dir / "sandbox",
                replication=mode,
                base_port=args.base_port + 100 * index,
                version=args.version,
                promotion=args.promotion,
                tls="disabled",
                timeout_seconds=300,
            ) as box:
                one = run_mode(box, replication=mode, rounds=args.rounds, work=mode_dir,
                               seed=args.seed, deadline=deadline,
                               promotion=args.promotion)  # fmt: skip
                results.append(one)
    summary = summary_table(results)
    per_mode = [f"Rounds, {r.replication}:\n\n" + rounds_table(r) for r in results]
    print(summary)
    for table in per_mode:
        print()
        print(table)
    notes = [n for r in results for n in (*findings(r), *mode_notes(r))] + NOTES
    in_place = args.promotion == "inplace"
    if in_place:
        notes.append(NOTE_INPLACE)
    publish(
        f"{NAME}_inplace" if in_place else NAME,
        "Data safety: consecutive kill -9 failovers under a continuous producer"
        + (", promoted in place (the broker plug-in)" if in_place else ""),
        [summary, *per_mode],
        facts,
        notes,
        results_dir=args.results_dir,
    )
    bad = [r for r in results if r.replication == "sync" and r.lost]
    return 1 if bad else 0


def _child_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="data_safety")
    sub = parser.add_subparsers(dest="cmd", required=True)
    produce = sub.add_parser("produce")
    produce.add_argument("--prefix", default="s")
    pull = sub.add_parser("pull")
    pull.add_argument("--seconds", type=float, required=True)
    for p in (produce, pull):
        p.add_argument("--namesrv", required=True)
        p.add_argument("--topic", required=True)
        p.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    return _cmd_produce(args) if args.cmd == "produce" else _cmd_pull(args)


if __name__ == "__main__":
    sys.exit(main())
