"""Benchmark: a planned switchover's write pause, restart and in-place paths side by side.

One real 4.9.7 sandbox (`sandbox up --promotion inplace`: the broker plug-in on both brokers,
broker-a master + slave, TLS disabled) and two watchdog configs for it: its own (`promotion =
"inplace"`) and a copy with `promotion = "restart"`. Two real producers (librocketmq, each in a
child process) write numbered messages to a 4-queue topic the whole time, one every 20 ms:

- *recreated*: builds a new Producer after 3 failed sends in a row, as the README advises for
  librocketmq (it re-reads routes only every 30 s otherwise);
- *long-lived*: one Producer throughout, as most applications run it.

A run is one `rmq-watchdog switchover -c CONFIG --broker-name broker-a --yes` (no daemon: the
command acts itself), each moving the master role to the other broker, the paths alternating
(restart first). Before each run the group is settled: the other broker answers as a slave level
with the master, and both producers acked a message in the last second. Measured, wall clock:

- *stopped*: the journal's `writes_stopped` line (written as UPDATE_BROKER_CONFIG has answered);
- *id 0 everywhere*: the first 50 ms poll at which every nameserver lists the new master as
  broker-a id 0; *pause (nameservers)* is that minus *stopped*;
- *pause (watchdog)*: what the command prints (its step durations from the end of stop_writes
  to wait_master's end);
- each producer's pause: from its last acknowledged send that began before *stopped* to its
  first acknowledged send after it (the long-lived one waits for its 30 s route poll);
- the switchover's whole duration (the old master's restart and replication check included).

At the end every queue of the topic is read from offset 0 on the final master (a pull consumer
in a child): every acknowledged message of either producer must be there.

    .venv/bin/python bench/switchover.py [--runs 5] [--replication async|sync]

The tools here (producers, the settling, the audit, the nameserver watch) are also what
tests/integration/test_switchover.py runs its real-broker checks with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    add_common_arguments,
    bench_dir,
    fmt_s,
    load_average,
    machine_facts,
    markdown_table,
    median,
    publish,
    running_sandbox,
)
from watchdog.native import SendRecord, message_body, parse_receive_line, parse_send_line
from watchdog.remoting import ClientPool, RemotingError, get_cluster_info

__all__ = [
    "Cluster",
    "NameserverWatch",
    "Producer",
    "Run",
    "acked_lost",
    "audit",
    "journal",
    "main",
    "measure",
    "newest_failover",
    "produce_child",
    "switchover_cli",
    "tables",
    "wait_until",
    "write_pause",
]

NAME = "switchover"
TOPIC = "BENCH_SWITCHOVER_broker-a"
QUEUES = 4
SEND_INTERVAL_SECONDS = 0.02
RECREATE_AFTER = 3  # failed sends in a row before the recreated producer starts over
SWITCHOVER_TIMEOUT_SECONDS = 240.0
SETTLE_TIMEOUT_SECONDS = 120.0


# --------------------------------------------------------------------------- the cluster


@dataclass(frozen=True)
class Cluster(SandboxGroup):
    """A sandbox's addresses by broker key (SandboxGroup.of), and its two watchdog configs."""

    @property
    def state_dir(self) -> Path:
        return Path(self.box.dir) / "watchdog-state"

    def config(self, promotion: str) -> Path:
        """The sandbox's watchdog.toml, or a copy with `promotion = "restart"`."""
        own = Path(self.box.config_path)
        if promotion == "inplace":
            return own
        copy = own.with_name("watchdog-restart.toml")
        text = re.sub(r'(?m)^promotion = "inplace"$', 'promotion = "restart"', own.read_text())
        copy.write_text(text)
        return copy

    def roles(self) -> dict[str, tuple[str | None, str | None, int | None]]:
        """Each broker's (brokerRole, brokerPermission, commitLogMaxOffset); Nones when it does
        not answer."""
        out: dict[str, tuple[str | None, str | None, int | None]] = {}
        for key, addr in self.addrs.items():
            view = broker_view(addr)
            out[key] = (view.role, view.permission, view.offset) if view else (None, None, None)
        return out

    def master(self) -> str | None:
        """The broker key every answering nameserver lists as id 0 (None: not one of them)."""
        listed = self.listed_masters()
        addrs = set(listed.values())
        if len(addrs) != 1 or None in addrs:
            return None
        addr = addrs.pop()
        return next((k for k, a in self.addrs.items() if a == addr), None)

    def listed_masters(self) -> dict[str, str | None]:
        """Each answering nameserver's id 0 of GROUP (None: it lists none)."""
        tables = registrations(self.nameservers, timeout_seconds=2.0)
        return {ns: table.get(0) for ns, table in tables.items() if table is not None}

    def create_topic(self) -> None:
        """The bench topic on the master, and wait until the slave has it too (its
        SlaveSynchronize copies the master's topic config every 10 s): a promoted slave must
        serve it from its first registration."""
        master = self.master()
        assert master is not None, "no master to create the topic on"
        slave = next(k for k in self.addrs if k != master)
        create_bench_topic(self.addrs[master], TOPIC, QUEUES)
        wait_until(
            lambda: topic_ready(self.addrs[slave], self.nameservers, TOPIC),
            60,
            f"{TOPIC} on the slave {slave}",
        )

    def settled(self) -> str:
        """Once one broker is the master everywhere and the other answers as a slave that
        replicates: its log end reaches what the master's was a moment before (a slave that
        registered before its master learns the master's HA address only at its next
        registration, up to 30 s later, and replicates nothing until then); the master's key."""
        marks: dict[str, int] = {}

        def level() -> str | None:
            master = self.master()
            if master is None:
                return None
            roles = self.roles()
            slave = next(k for k in self.addrs if k != master)
            m, s = roles[master], roles[slave]
            if s[0] != "SLAVE" or m[2] is None or s[2] is None:
                return None
            mark = marks.get(master)
            marks[master] = m[2]
            return master if mark is not None and s[2] >= mark else None

        return wait_until(level, SETTLE_TIMEOUT_SECONDS, "a master with a replicating slave")


# --------------------------------------------------------------------------- the producers


@dataclass
class Producer:
    """A real producer child (`python -m bench.switchover produce`), one JSON line per send."""

    proc: subprocess.Popen[str]
    out: Path
    run_id: str
    name: str

    @classmethod
    def start(
        cls, cluster: Cluster, work: Path, run_id: str, *, recreate_after: int, name: str
    ) -> Producer:
        out = work / f"producer-{name}-{run_id}.jsonl"
        argv = [
            sys.executable, "-m", "bench.switchover", "produce",
            "--namesrv", cluster.namesrv, "--topic", TOPIC, "--run-id", run_id,
            "--interval-seconds", str(SEND_INTERVAL_SECONDS),
            "--recreate-after", str(recreate_after),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        with out.open("w") as fh:
            proc = subprocess.Popen(
                argv, stdout=fh, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                cwd=REPO_ROOT, env=env, text=True,
            )  # fmt: skip
        return cls(proc, out, run_id, name)

    def sends(self) -> list[SendRecord]:
        records = []
        for line in self.out.read_text(errors="replace").splitlines():
            record = parse_send_line(line)
            if record is not None:
                records.append(record)
        return records

    def acked_since(self, at: float) -> bool:
        return any(s.is_ok and s.ended_at >= at for s in self.sends())

    def stop(self) -> list[SendRecord]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.sends()


def write_pause(sends: Sequence[SendRecord], stopped_at: float) -> float | None:
    """From the last acknowledged send that began before `stopped_at` to the first one
    acknowledged after it; None when none was acknowledged after it."""
    before = [s.ended_at for s in sends if s.is_ok and s.started_at < stopped_at]
    after = [s.ended_at for s in sends if s.is_ok and s.ended_at > stopped_at]
    if not after:
        return None
    return min(after) - (max(before) if before else stopped_at)


def audit(cluster: Cluster, run_ids: Sequence[str], timeout_seconds: float = 90.0) -> set[str]:
    """Every message of these runs read from offset 0 of every queue ("run_id seq" each), by
    `python -m watchdog.native audit` (a pull consumer in a child), one run id at a time."""
    found: set[str] = set()
    for run_id in run_ids:
        done = subprocess.run(
            [
                sys.executable, "-m", "watchdog.native", "audit", "--namesrv", cluster.namesrv,
                "--topic", TOPIC, "--run-id", run_id, "--timeout-seconds", str(timeout_seconds),
            ],
            capture_output=True, text=True, timeout=timeout_seconds + 30, check=False,
            cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if "audit_done" not in done.stdout:
            raise RuntimeError(f"audit of {run_id} incomplete: {done.stderr[-500:]}")
        for line in done.stdout.splitlines():
            record = parse_receive_line(line)
            if record is not None:
                found.add(f"{run_id} {record.seq}")
    return found


def acked_lost(producers: Sequence[Producer], found: set[str]) -> list[str]:
    """Acknowledged messages of these producers that the audit did not find."""
    return sorted(
        f"{p.run_id} {s.seq}"
        for p in producers
        for s in p.sends()
        if s.is_ok and f"{p.run_id} {s.seq}" not in found
    )


# --------------------------------------------------------------------------- one switchover


class NameserverWatch:
    """Polls every nameserver every 50 ms in a thread: when each address became broker-a id 0
    on all of them (wall clock, the first poll that saw it)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.since: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> NameserverWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _poll(self) -> None:
        async def loop() -> None:
            pool = ClientPool(connect_timeout_seconds=0.5)
            last: str | None = None
            try:
                while not self._stop.is_set():
                    seen: set[str | None] = set()
                    for ns in self.cluster.nameservers:
                        try:
                            info = await get_cluster_info(pool.get(ns), timeout_seconds=1.0)
                            seen.add(dict(info.broker_addrs.get(GROUP, {})).get(0))
                        except RemotingError:
                            pass
                    now = time.time()
                    addr = seen.pop() if len(seen) == 1 else None
                    if addr is not None and addr != last:
                        self.since[addr] = now
                    last = addr
                    await asyncio.sleep(0.05)
            finally:
                await pool.close_all()

        asyncio.run(loop())


@dataclass
class Run:
    """One switchover, measured."""

    number: int
    path: str
    old: str
    new: str
    code: int
    outcome: str
    output: str
    failover_id: str | None
    duration_seconds: float
    stopped_at: float | None = None
    registered_at: float | None = None
    watchdog_pause: float | None = None
    producer_pause: dict[str, float | None] = field(default_factory=dict)
    promoted: str = ""  # how the candidate was promoted (in place, by restart)
    load: str = ""  # the 1-minute load average after it

    @property
    def nameserver_pause(self) -> float | None:
        if self.stopped_at is None or self.registered_at is None:
            return None
        return self.registered_at - self.stopped_at


def journal(cluster: Cluster, failover_id: str) -> list[dict[str, Any]]:
    path = cluster.state_dir / "failovers" / f"{failover_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def newest_failover(cluster: Cluster) -> str | None:
    folder = cluster.state_dir / "failovers"
    if not folder.is_dir():
        return None
    files = sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    return files[-1].stem if files else None


def switchover_cli(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`python -m watchdog switchover -c CONFIG --broker-name broker-a --yes EXTRA`."""
    return subprocess.run(
        [sys.executable, "-m", "watchdog", "switchover", "-c", str(config),
         "--broker-name", GROUP, "--yes", *extra],
        capture_output=True, text=True, timeout=SWITCHOVER_TIMEOUT_SECONDS, check=False,
        cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def measure(
    cluster: Cluster,
    number: int,
    path: str,
    producers: Sequence[Producer],
    *,
    run: Callable[[], subprocess.CompletedProcess[str]] | None = None,
    wait_for_producers_seconds: float = 45.0,
) -> Run:
    """One switchover of the settled group on `path` (restart or inplace), measured."""
    old = cluster.settled()
    new = next(k for k in cluster.addrs if k != old)
    begin = time.time()
    wait_until(lambda: all(p.acked_since(time.time() - 1.0) for p in producers), 60,
               "every producer acked in the last second")  # fmt: skip
    before = newest_failover(cluster)
    started = time.monotonic()
    with NameserverWatch(cluster) as watch:
        done = run() if run is not None else switchover_cli(cluster.config(path))
        duration = time.monotonic() - started
        time.sleep(0.2)
    failover_id = newest_failover(cluster)
    if failover_id == before:
        failover_id = None
    entries = journal(cluster, failover_id) if failover_id else []
    finished = [e for e in entries if e.get("event") == "finished"]
    result = Run(
        number,
        path,
        old,
        new,
        done.returncode,
        str(finished[-1]["outcome"]) if finished else "none",
        done.stdout + done.stderr,
        failover_id,
        duration,
    )
    stopped = [float(e["at"]) for e in entries if e.get("event") == "writes_stopped"]
    result.stopped_at = stopped[0] if stopped else None
    registered = watch.since.get(cluster.addrs[new])
    if registered is not None and registered >= begin:
        result.registered_at = registered
    match = re.search(r"write pause: ([0-9.]+) s", done.stdout)
    result.watchdog_pause = float(match.group(1)) if match else None
    if finished:
        detail = str(finished[-1].get("detail", ""))
        result.promoted = "in place" if detail.endswith("promoted in place") else "restart"
    if result.stopped_at is not None and result.outcome == "succeeded":
        deadline = time.monotonic() + wait_for_producers_seconds
        while time.monotonic() < deadline:
            if all(p.acked_since(result.stopped_at + 0.001) for p in producers):
                break
            time.sleep(0.5)
        for p in producers:
            result.producer_pause[p.name] = write_pause(p.sends(), result.stopped_at)
    return result


# --------------------------------------------------------------------------- the producer child


def produce_child(
    namesrv: str, topic: str, run_id: str, interval_seconds: float, recreate_after: int
) -> int:
    """One numbered message per interval until SIGTERM, one line per send (the drill's line
    format, so `watchdog.native audit` reads them back); with `recreate_after`, a new Producer
    after that many failed sends in a row."""
    from rocketmq.client import Message, Producer

    from watchdog.native._spawn import SigtermFlag, exit_now, line_writer, result_stream

    out = result_stream()
    emit = line_writer(out)
    stop = SigtermFlag()
    generation = 0

    def fresh() -> Any:
        nonlocal generation
        generation += 1
        producer = Producer(f"BENCH_SWITCHOVER_PG_{os.getpid()}_{generation}", timeout=1500)
        producer.set_namesrv_addr(namesrv)
        producer.start()
        return producer

    producer = fresh()
    failures = 0
    began = time.monotonic()
    seq = 0
    while not stop.is_set:
        seq += 1
        message = Message(topic)
        message.set_keys(f"{run_id}-{seq}")
        message.set_body(message_body(run_id, seq))
        started = time.time()
        try:
            result = producer.send_sync(message)
        except Exception as exc:  # the ctypes client raises its own exception types
            failures += 1
            emit({"seq": seq, "started_at": started, "ended_at": time.time(), "ok": False,
                  "error": f"{type(exc).__name__}: {str(exc).strip()[:200]}",
                  "generation": generation})  # fmt: skip
            if recreate_after and failures >= recreate_after:
                producer.shutdown()
                producer = fresh()
                failures = 0
        else:
            failures = 0
            emit({"seq": seq, "started_at": started, "ended_at": time.time(), "ok": True,
                  "msg_id": str(result.msg_id), "status": int(result.status),
                  "generation": generation})  # fmt: skip
        pause = seq * interval_seconds - (time.monotonic() - began)
        if pause > 0:
            time.sleep(pause)
        else:
            began = time.monotonic() - seq * interval_seconds  # no burst after a slow send
    producer.shutdown()
    exit_now(0, out)


# --------------------------------------------------------------------------- the benchmark


def _cell(value: float | None) -> str:
    return "-" if value is None else fmt_s(value)


def _median_cell(values: Sequence[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    return f"{fmt_s(median(known))} ({fmt_s(min(known))}-{fmt_s(max(known))})"


def tables(runs: Sequence[Run], lost: int, acked: int) -> list[str]:
    headers = [
        "path", "runs", "succeeded", "pause: stop -> id 0 everywhere s", "pause as printed s",
        "recreated producer s", "long-lived producer s", "switchover s",
    ]  # fmt: skip
    rows = []
    for path in ("restart", "inplace"):
        mine = [r for r in runs if r.path == path]
        rows.append(
            [
                path,
                str(len(mine)),
                str(sum(1 for r in mine if r.outcome == "succeeded")),
                _median_cell([r.nameserver_pause for r in mine]),
                _median_cell([r.watchdog_pause for r in mine]),
                _median_cell([r.producer_pause.get("recreated") for r in mine]),
                _median_cell([r.producer_pause.get("long-lived") for r in mine]),
                _median_cell([r.duration_seconds for r in mine]),
            ]
        )
    summary = markdown_table(headers, rows)
    per_run = markdown_table(
        ["#", "path", "from -> to", "outcome", "promoted", "stop -> id 0 s", "printed s",
         "recreated s", "long-lived s", "switchover s", "load (1 min)"],  # fmt: skip
        [
            [
                str(r.number), r.path, f"{r.old} -> {r.new}", r.outcome, r.promoted,
                _cell(r.nameserver_pause), _cell(r.watchdog_pause),
                _cell(r.producer_pause.get("recreated")),
                _cell(r.producer_pause.get("long-lived")), fmt_s(r.duration_seconds),
                r.load,
            ]  # fmt: skip
            for r in runs
        ],
    )
    acked_line = f"Acknowledged (both producers): {acked}; not read back at the end: {lost}."
    return [
        "Medians (min-max), seconds:",
        summary,
        acked_line,
        "Per run:",
        per_run,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="verb")
    produce = sub.add_parser("produce", help="(internal) the producer child")
    produce.add_argument("--namesrv", required=True)
    produce.add_argument("--topic", required=True)
    produce.add_argument("--run-id", required=True)
    produce.add_argument("--interval-seconds", type=float, default=SEND_INTERVAL_SECONDS)
    produce.add_argument("--recreate-after", type=int, default=0)
    parser.add_argument("--runs", type=int, default=5, help="switchovers per path")
    parser.add_argument(
        "--spread",
        type=float,
        default=30.0,
        help="a random pause of up to this many seconds before each run, so the run falls at "
        "any phase of the long-lived producer's 30 s route timer; default %(default)s",
    )
    parser.add_argument("--seed", type=int, default=1, help="for the pauses; default %(default)s")
    parser.add_argument("--replication", choices=("async", "sync"), default="async")
    add_common_arguments(parser, default_base_port=0)
    args = parser.parse_args(argv)
    if args.verb == "produce":
        return produce_child(
            args.namesrv, args.topic, args.run_id, args.interval_seconds, args.recreate_after
        )
    facts = machine_facts(args.version)
    runs: list[Run] = []
    with (
        bench_dir(NAME, args.work_dir, args.keep) as work,
        running_sandbox(
            work / "sandbox",
            version=args.version,
            base_port=args.base_port,
            tls="disabled",
            timeout_seconds=180.0,
            replication=args.replication,
            promotion="inplace",
        ) as box,
    ):
        cluster = Cluster.of(box)
        cluster.create_topic()
        stamp = str(int(time.time()))
        producers = [
            Producer.start(cluster, work, f"r{stamp}", recreate_after=RECREATE_AFTER,
                           name="recreated"),
            Producer.start(cluster, work, f"l{stamp}", recreate_after=0, name="long-lived"),
        ]  # fmt: skip
        try:
            pauses = random.Random(args.seed)
            for i in range(2 * args.runs):
                path = ("restart", "inplace")[i % 2]
                time.sleep(pauses.uniform(0, args.spread))
                run = measure(cluster, i + 1, path, producers)
                run.load = f"{load_average()[0]:.1f}"
                runs.append(run)
                print(
                    f"run {run.number} {run.path}: {run.outcome} ({run.promoted}), "
                    f"stop -> id 0 {_cell(run.nameserver_pause)} s, printed "
                    f"{_cell(run.watchdog_pause)} s, producers {run.producer_pause}, "
                    f"{run.duration_seconds:.1f} s",
                    file=sys.stderr,
                )
                if run.outcome != "succeeded":
                    print(run.output[-3000:], file=sys.stderr)
                    break
        finally:
            for p in producers:
                p.stop()
        found = audit(cluster, [p.run_id for p in producers])
        lost = acked_lost(producers, found)
        acked = sum(1 for p in producers for s in p.sends() if s.is_ok)
    notes = [
        f"One sandbox, --replication {args.replication}, --promotion inplace (the plug-in on "
        "both brokers), TLS disabled, heap 256m; the restart path runs the same cluster with a "
        "config copy saying promotion = \"restart\". Runs alternate restart, inplace; each moves "
        "the master to the other broker. No daemon runs: the command acts itself.",
        f"Producers: one message every {SEND_INTERVAL_SECONDS * 1000:.0f} ms each, 4 queues, "
        "send timeout 1.5 s; 'recreated' builds a new Producer after "
        f"{RECREATE_AFTER} failed sends in a row, 'long-lived' never does (librocketmq re-reads "
        "a route only every 30 s, or at every send once a read found no writable queue).",
        "stop -> id 0: from the journal's writes_stopped line (UPDATE_BROKER_CONFIG "
        "brokerRole=SLAVE, brokerPermission=4 answered) to the first 50 ms poll at which both "
        "nameservers list the new master as broker-a id 0. The printed pause is the command's "
        "own figure (the journal's writes_stopped line to wait_master's end; wait_master "
        "polls the nameservers every 0.5 s).",
        "A producer's pause: its last acknowledged send that began before the write stop to "
        "its first acknowledged send after it. Each run starts after a random pause of up to "
        f"{args.spread:g} s (seed {args.seed}), so it falls at any phase of the long-lived "
        "producer's 30 s route timer.",
        "switchover s: the whole command (catch-up, fence, promotion, canary, the old master's "
        "restart as a slave and the check that it replicates from the new master).",
        f"Acked lost: {len(lost)} of {acked}" + (f" (first: {lost[:5]})" if lost else ""),
    ]
    publish(
        NAME,
        f"Planned switchover: write pause, restart vs in place ({args.replication})",
        tables(runs, len(lost), acked),
        facts,
        notes,
        results_dir=args.results_dir,
    )
    return 0 if not lost and all(r.outcome == "succeeded" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
