"""Benchmark: kill -9 of the master until a real client's writes succeed again, daemon acting.

Each run: a fresh sandbox (master + slave), a topic created on the master (and synced to the
slave), the daemon started (not dry run), and two real producers (the PyPI rocketmq client,
librocketmq) sending every 50 ms, each send's wall-clock start and end recorded. Then kill -9
of the master, and from the daemon's JSON log and the producers: kill -> promote decision,
kill -> the new master registered on every nameserver (the wait_master step), kill ->
"failover succeeded", kill -> first acknowledged send.

Each producer runs in a child process, because librocketmq can abort the process it runs in.
The two differ only in what they do when sends fail:
- long-lived: one Producer for the whole run, as most applications hold one;
- restarted: after 3 failed sends in a row (at most once a second) it is shut down and a new
  one started, which reads the topic's route afresh.

    .venv/bin/python bench/failover.py [--runs 5] [--base-port 29200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file (bench/_common.py)

from bench._common import (
    REPO_ROOT,
    DaemonChild,
    TlsMode,
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
from watchdog.config import load_config
from watchdog.remoting import ClientPool, RequestCode, create_topic, get_topic_route, invoke

NAME = "failover"
GROUP = "broker-a"
MASTER = "broker-a:0"
TOPIC = "BENCH_FAILOVER_broker-a"
SEND_INTERVAL_SECONDS = 0.05
# librocketmq's route timer: first read 3 s after the producer starts, then every 30 s.
FIRST_ROUTE_REFRESH_SECONDS = 3.0
ROUTE_REFRESH_SECONDS = 30.0
# (label, producer group, restart after failed sends)
PRODUCERS = (("long-lived", "BENCH_PG_LONG", False), ("restarted", "BENCH_PG_RESTART", True))
RESTART_AFTER_FAILURES = 3
RESTART_AT_MOST_EVERY_SECONDS = 1.0
WARM_ACKS = 10
FAILOVER_TIMEOUT_SECONDS = 240.0
WRITE_TIMEOUT_SECONDS = 150.0  # after the kill; the client's 30 s route refresh fits easily
SYNC_TIMEOUT_SECONDS = 60.0
SANDBOX_START_MARK = "--- "  # the sandbox's line before each JVM start: "--- <time> rmq-..."


class RunFailed(RuntimeError):
    """A run that cannot give a measurement (failover not succeeded, producer never healthy)."""


# --------------------------------------------------------------------------- producers


@dataclass(frozen=True)
class Send:
    started: float  # wall clock
    finished: float
    is_ok: bool
    error: str | None = None


class ProducerProcess:
    """A real producer in a child process (`python -m bench.failover --producer ...`), sending
    every SEND_INTERVAL_SECONDS; each send comes back as one JSON line.

    A child, not a thread: librocketmq can abort the whole process (a boost::thread_interrupted
    escaping a shutdown was seen here), and that must not skip this script's cleanup.
    """

    def __init__(
        self, label: str, namesrv: str, group: str, restart_on_failure: bool, stderr: Path
    ) -> None:
        self.label = label
        self.sends: list[Send] = []
        self.restarts: list[float] = []
        self.started_at: float | None = None  # when its (first) Producer had started
        self.fatal: str | None = None
        self._stopping = False
        self._stderr = stderr.open("wb")
        argv = [sys.executable, "-m", "bench.failover", "--producer", label,
                "--namesrv", namesrv, "--group", group]  # fmt: skip
        if restart_on_failure:
            argv.append("--restart-on-failure")
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT,
        )
        self._reader = threading.Thread(target=self._read, name=f"read-{label}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                doc = json.loads(raw)
            except ValueError:
                continue
            if "started" in doc:
                self.started_at = float(doc["started"])
            elif "restart" in doc:
                self.restarts.append(float(doc["restart"]))
            elif "fatal" in doc:
                self.fatal = str(doc["fatal"])
            else:
                self.sends.append(Send(doc["s"], doc["f"], bool(doc["ok"]), doc.get("e")))
        code = self.proc.wait()
        if not self._stopping and self.fatal is None:
            self.fatal = f"the producer process exited early ({code})"

    def acks(self) -> list[Send]:
        return [s for s in list(self.sends) if s.is_ok]

    def stop(self, timeout_seconds: float = 30.0) -> None:
        """SIGTERM (it shuts its producer down), then SIGKILL if it does not exit."""
        self._stopping = True
        try:
            terminate(self.proc, timeout_seconds)
            self._reader.join(10)
        finally:
            self._stderr.close()


def producer_main(label: str, namesrv: str, group: str, restart_on_failure: bool) -> int:
    """The child: send until SIGTERM, one JSON line per send (and per producer restart)."""
    # librocketmq may write to fd 1: keep the real stdout for our lines only.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _sig, _frame: stop.set())

    def emit(doc: dict[str, Any]) -> None:
        out.write(json.dumps(doc, separators=(",", ":")) + "\n")
        out.flush()

    try:
        from rocketmq.client import Message, Producer
        from rocketmq.exceptions import ffi_check
        from rocketmq.ffi import dll
    except Exception as exc:  # ImportError, or OSError when librocketmq.so cannot load
        emit({"fatal": f"rocketmq client unavailable: {exc}"})
        return 1

    def new_producer(number: int) -> Any:
        producer = Producer(group)
        # One client instance (routes, connections) per instance name: a restarted producer
        # must not inherit the old one's cached route.
        instance = f"bench-{label}-{os.getpid()}-{number}"
        ffi_check(dll.SetProducerInstanceName(producer._handle, instance.encode()))
        producer.set_namesrv_addr(namesrv)
        producer.start()
        return producer

    number = 0
    producer = new_producer(number)
    emit({"started": time.time()})  # its route timer runs from here: +3 s, then every 30 s
    last_start = time.monotonic()
    failures_in_a_row = 0
    sent = 0
    try:
        while not stop.is_set():
            message = Message(TOPIC)
            message.set_keys(f"{label}-{sent}")
            message.set_body(f"bench failover {label} {sent}")
            sent += 1
            started = time.time()
            try:
                producer.send_sync(message)
            except Exception as exc:  # the ctypes client raises its own exception types
                error = f"{type(exc).__name__}: {exc}"[:200]
                emit({"s": started, "f": time.time(), "ok": False, "e": error})
                failures_in_a_row += 1
            else:
                # Any send status means the broker stored it (SEND_OK or a flush/slave one).
                emit({"s": started, "f": time.time(), "ok": True})
                failures_in_a_row = 0
            if (
                restart_on_failure
                and failures_in_a_row >= RESTART_AFTER_FAILURES
                and time.monotonic() - last_start >= RESTART_AT_MOST_EVERY_SECONDS
            ):
                producer.shutdown()
                number += 1
                emit({"restart": time.time()})
                producer = new_producer(number)
                last_start = time.monotonic()
                failures_in_a_row = 0
            pause = started + SEND_INTERVAL_SECONDS - time.time()
            if pause > 0:
                stop.wait(pause)
    finally:
        producer.shutdown()
    return 0


# --------------------------------------------------------------------------- one run


@dataclass(frozen=True)
class RunResult:
    run: int
    promote_seconds: float
    failover_started_seconds: float
    registered_seconds: float | None  # the wait_master step done
    succeeded_seconds: float
    first_ack_seconds: dict[str, float | None]
    failed_sends: dict[str, int]
    restarts: int
    errors: tuple[str, ...]
    producer_faults: tuple[str, ...]  # a producer process that died after its first ack
    next_route_tick_seconds: float  # kill -> the long-lived producer's next timed route read
    route_ticks: str  # what its timed route reads after the kill did, from its client log
    run_wall_seconds: float
    steps: tuple[tuple[str, float], ...]  # (what the step did, its duration), in order
    promoted_boot_seconds: float | None  # the promoted broker's JVM: spawn -> "boot success"
    promoted_tls_seconds: float | None  # ... of which building its self-signed TLS contexts


async def _prepare_topic(master: str, slave: str, nameservers: Sequence[str]) -> None:
    """Create TOPIC on the master, then wait until the slave holds it (so the promoted slave
    serves it) and every nameserver routes it to the group."""
    pool = ClientPool(connect_timeout_seconds=2.0)
    try:
        await create_topic(
            pool.get(master), TOPIC, read_queue_nums=4, write_queue_nums=4, timeout_seconds=5.0
        )
        deadline = time.monotonic() + SYNC_TIMEOUT_SECONDS
        while True:
            # The slave copies the master's topic config every 10 s (SlaveSynchronize).
            reply = await invoke(
                pool.get(slave), RequestCode.GET_ALL_TOPIC_CONFIG, timeout_seconds=5.0
            )
            on_slave = f'"{TOPIC}"'.encode() in reply.body
            routes = [
                await get_topic_route(pool.get(ns), TOPIC, timeout_seconds=5.0)
                for ns in nameservers
            ]
            routed = all(GROUP in r.broker_addrs for r in routes)
            if on_slave and routed:
                return
            if time.monotonic() >= deadline:
                raise RunFailed(
                    f"{TOPIC}: on slave {on_slave}, routed {routed} after {SYNC_TIMEOUT_SECONDS} s"
                )
            await asyncio.sleep(0.5)
    finally:
        await pool.close_all()


def _first_event(daemon: DaemonChild, after: float, what: str, key: str, value: str) -> float:
    event = daemon.wait_for(
        lambda e: event_time(e) >= after and str(e.get(key, "")).startswith(value),
        timeout_seconds=FAILOVER_TIMEOUT_SECONDS,
        what=what,
    )
    return event_time(event) - after


def _wait_outcome(daemon: DaemonChild, after: float) -> float:
    """Seconds from `after` to "failover succeeded"; RunFailed for any other outcome."""
    event = daemon.wait_for(
        lambda e: event_time(e) >= after
        and str(e.get("event", "")).startswith(("failover succeeded", "failover failed",
                                                  "failover rolled_back", "failover refused")),
        timeout_seconds=FAILOVER_TIMEOUT_SECONDS,
        what="the failover's outcome",
    )
    if not str(event["event"]).startswith("failover succeeded"):
        raise RunFailed(f"the failover did not succeed: {event['event']}\n{daemon.tail()}")
    return event_time(event) - after


def _steps(daemon: DaemonChild, after: float) -> tuple[tuple[str, float], ...]:
    found = []
    for e in daemon.events():
        text = str(e.get("event", ""))
        if event_time(e) >= after and text.startswith("step ") and "duration_seconds" in e:
            found.append((text.split(": ", 1)[-1], float(e["duration_seconds"])))
    return tuple(found)


def _log_time(line: str) -> datetime | None:
    try:
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f")
    except ValueError:
        return None


def boot_phases(log: Path) -> tuple[float | None, float | None]:
    """The last boot in a broker's log: (spawn -> boot success, seconds spent building TLS
    contexts). RocketMQ 4.9's default tls.server.mode=permissive makes each remoting server
    build a self-signed certificate (an RSA key pair) at start-up."""
    lines = log.read_text(errors="replace").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(SANDBOX_START_MARK)]
    if not starts:
        return None, None
    boot = lines[starts[-1] :]
    spawned = datetime.strptime(boot[0][len(SANDBOX_START_MARK) :][:19], "%Y-%m-%d %H:%M:%S")
    total: float | None = None
    tls = 0.0
    tls_began: datetime | None = None
    for line in boot[1:]:
        at = _log_time(line)
        if at is None:
            continue
        if "Using JDK SSL provider" in line:
            tls_began = at
        elif "SSLContext created for server" in line and tls_began is not None:
            tls += (at - tls_began).total_seconds()
            tls_began = None
        elif "boot success" in line:
            total = (at - spawned).total_seconds()
            break
    return total, (tls if total is not None else None)


def client_log(pid: int) -> Path:
    """Where librocketmq writes a process's log (its default folder, named by pid)."""
    return Path.home() / "logs" / "rocketmq-cpp" / f"{pid}_rocketmq-cpp.log.0"


def route_ticks(log: Path, ticks: Sequence[float], kill_at: float) -> str:
    """What each timed route read of a producer did, from its librocketmq log."""
    events: list[tuple[float, str]] = []
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return f"(no client log at {log})"
    for line in text.splitlines():
        try:  # "[2026-Nov-25 10:38:54.774540](info):..."
            at = datetime.strptime(line[1:27], "%Y-%b-%d %H:%M:%S.%f").timestamp()
        except ValueError:
            continue
        events.append((at, line[28:]))
    seen = []
    for tick in ticks:
        window = [t for at, t in events if tick - 0.5 <= at <= tick + 2.5]
        reads = sum(1 for t in window if f"updateTopicRouteInfoFromNameServer start:{TOPIC}" in t)
        if reads > 5:
            outcome = "already re-reading on every send"
        elif any(f"changed:{TOPIC}" in t for t in window):
            outcome = "route changed"
        elif any("timed_mutex timeout" in t for t in window):
            outcome = "read failed (client's transport lock timed out)"
        elif any("has data" in t for t in window):
            outcome = "route unchanged"
        else:
            outcome = "no route for the topic"
        seen.append(f"+{tick - kill_at:.1f} s: {outcome}")
    return "; ".join(seen) or "-"


def _wait_first_ack(producers: Sequence[ProducerProcess], after: float) -> dict[str, float | None]:
    deadline = time.monotonic() + WRITE_TIMEOUT_SECONDS
    found: dict[str, float | None] = {p.label: None for p in producers}
    while time.monotonic() < deadline:
        for p in producers:
            if found[p.label] is None:
                acks = [s.finished for s in p.acks() if s.started >= after]
                if acks:
                    found[p.label] = min(acks) - after
        if all(v is not None for v in found.values()):
            break
        time.sleep(0.1)
    return found


def one_run(
    run: int, work: Path, base_port: int, version: str, tls: TlsMode, rng: random.Random
) -> RunResult:
    began = time.monotonic()
    run_dir = work / f"run-{run}"
    run_dir.mkdir()
    with running_sandbox(
        run_dir / "sandbox", base_port=base_port, version=version, tls=tls
    ) as box:
        config = load_config(box.config_path)
        by_key = {b.key: b.addr for b in config.brokers}
        asyncio.run(_prepare_topic(by_key[MASTER], by_key["broker-a:1"], config.nameservers))
        with DaemonChild(box.config_path, run_dir / "daemon.log") as daemon:
            daemon.wait_for(
                lambda e: e.get("broker_name") == GROUP and e.get("state") == "HEALTHY",
                timeout_seconds=60,
                what="a HEALTHY cycle",
            )
            namesrv = ";".join(config.nameservers)
            producers: list[ProducerProcess] = []
            try:
                for label, group, restart in PRODUCERS:
                    producers.append(
                        ProducerProcess(
                            label, namesrv, group, restart, run_dir / f"producer-{label}.err"
                        )
                    )
                deadline = time.monotonic() + 60
                while any(len(p.acks()) < WARM_ACKS for p in producers):
                    broken = [f"{p.label}: {p.fatal}" for p in producers if p.fatal]
                    if broken or time.monotonic() > deadline:
                        errors = [s.error for p in producers for s in p.sends if s.error][:3]
                        raise RunFailed(f"producers not healthy: {broken or errors}")
                    time.sleep(0.1)

                # A long-running producer's route timer may tick at any moment of its 30 s
                # period when the master dies: kill at a random phase of it (after the first
                # tick, 3 s after start), not right after warm-up.
                long_lived = producers[0]
                assert long_lived.started_at is not None
                phase = rng.uniform(0.0, ROUTE_REFRESH_SECONDS)
                kill_target = long_lived.started_at + FIRST_ROUTE_REFRESH_SECONDS + 0.5 + phase
                time.sleep(max(0.0, kill_target - time.time()))
                kill_at = signal_process(box, MASTER, signal.SIGKILL)
                since_first = kill_at - long_lived.started_at - FIRST_ROUTE_REFRESH_SECONDS
                next_tick = ROUTE_REFRESH_SECONDS - since_first % ROUTE_REFRESH_SECONDS
                promote = _first_event(daemon, kill_at, "a promote decision", "decision", "promote")
                started = _first_event(
                    daemon, kill_at, "failover started", "event", "failover started"
                )
                succeeded = _wait_outcome(daemon, kill_at)
                registered = [
                    event_time(e) - kill_at
                    for e in daemon.events()
                    if e.get("step") == "wait_master" and event_time(e) >= kill_at
                ]
                first_ack = _wait_first_ack(producers, kill_at)
                steps = _steps(daemon, kill_at)
                lost = [f"{p.label}: {p.fatal}" for p in producers if first_ack[p.label] is None]
                if lost:
                    raise RunFailed(f"no acked send after the kill from {lost}")
            finally:
                for p in producers:
                    p.stop()
        boot_seconds, tls_seconds = boot_phases(box.dir / "logs" / "broker-a-1.out")
    long_lived = producers[0]
    assert long_lived.started_at is not None
    recovered = first_ack[long_lived.label]
    until = kill_at + (recovered if recovered is not None else WRITE_TIMEOUT_SECONDS) + 1.0
    first_tick = long_lived.started_at + FIRST_ROUTE_REFRESH_SECONDS
    ticks = [
        first_tick + k * ROUTE_REFRESH_SECONDS
        for k in range(int((until - first_tick) // ROUTE_REFRESH_SECONDS) + 1)
        if kill_at < first_tick + k * ROUTE_REFRESH_SECONDS <= until
    ]
    tick_outcomes = route_ticks(client_log(long_lived.proc.pid), ticks, kill_at)
    after_kill = [s for p in producers for s in p.sends if s.started >= kill_at]
    errors = sorted({s.error.split(":")[0] + ": " + s.error.split(":", 1)[-1].strip()[:90]
                     for s in after_kill if s.error})
    return RunResult(
        run=run,
        promote_seconds=promote,
        failover_started_seconds=started,
        registered_seconds=registered[0] if registered else None,
        succeeded_seconds=succeeded,
        first_ack_seconds=first_ack,
        failed_sends={
            p.label: sum(1 for s in p.sends if s.started >= kill_at and not s.is_ok)
            for p in producers
        },
        restarts=len(producers[1].restarts),
        next_route_tick_seconds=next_tick,
        route_ticks=tick_outcomes,
        producer_faults=tuple(f"{p.label}: {p.fatal}" for p in producers if p.fatal),
        errors=tuple(errors[:4]),
        run_wall_seconds=time.monotonic() - began,
        steps=steps,
        promoted_boot_seconds=boot_seconds,
        promoted_tls_seconds=tls_seconds,
    )


# --------------------------------------------------------------------------- report


def acks_together(result: RunResult, within_seconds: float = 1.0) -> bool:
    long_lived = result.first_ack_seconds["long-lived"]
    restarted = result.first_ack_seconds["restarted"]
    if long_lived is None or restarted is None:
        return False
    return abs(long_lived - restarted) < within_seconds


def _summary_row(label: str, values: Sequence[float | None]) -> list[str]:
    got = [v for v in values if v is not None]
    if not got:
        return [label, f"0/{len(values)}", "-", "-", "-"]
    return [label, f"{len(got)}/{len(values)}", fmt_s(median(got)), fmt_s(min(got)),
            fmt_s(max(got))]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, default_base_port=29200)
    parser.add_argument("--runs", type=int, default=5, help="runs, each on a fresh sandbox")
    parser.add_argument(
        "--seed", type=int, default=1, help="seed of the random kill phases (default 1)"
    )
    parser.add_argument(
        "--max-failed-runs", type=int, default=3, help="runs that may fail (and are retried)"
    )
    parser.add_argument("--producer", metavar="LABEL", help=argparse.SUPPRESS)
    parser.add_argument("--namesrv", help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    parser.add_argument("--restart-on-failure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--tls",
        choices=["permissive", "disabled"],
        default="permissive",
        help="the brokers' tls.server.mode: RocketMQ's default (permissive, a self-signed key "
        "at each boot) or disabled; results go to failover.md or failover_tls_disabled.md",
    )
    args = parser.parse_args(argv)
    if args.producer:
        return producer_main(args.producer, args.namesrv, args.group, args.restart_on_failure)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    facts = machine_facts(args.version)
    rng = random.Random(args.seed)
    results: list[RunResult] = []
    failed_runs: list[str] = []
    with bench_dir(NAME, args.work_dir, args.keep) as work:
        attempt = 0
        while len(results) < args.runs:
            attempt += 1
            try:
                result = one_run(attempt, work, args.base_port, args.version, args.tls, rng)
            except RunFailed as exc:
                failed_runs.append(f"attempt {attempt}: {str(exc).splitlines()[0][:300]}")
                print(f"attempt {attempt} failed: {exc}", file=sys.stderr)
                if len(failed_runs) > args.max_failed_runs:
                    raise
                continue
            results.append(result)
            acks = ", ".join(
                f"{k} {fmt_s(v) if v is not None else 'never'} s"
                for k, v in result.first_ack_seconds.items()
            )
            print(
                f"run {attempt}: promote {fmt_s(result.promote_seconds)} s, succeeded "
                f"{fmt_s(result.succeeded_seconds)} s, first ack: {acks} "
                f"(run took {result.run_wall_seconds:.0f} s)",
                file=sys.stderr,
            )

    labels = ("long-lived", "restarted")
    summary = markdown_table(
        ["kill -9 of the master ->", "runs", "median s", "min s", "max s"],
        [
            _summary_row("daemon's promote decision", [r.promote_seconds for r in results]),
            _summary_row("failover started", [r.failover_started_seconds for r in results]),
            _summary_row(
                "new master registered on every nameserver (wait_master done)",
                [r.registered_seconds for r in results],
            ),
            _summary_row(
                "failover succeeded (after the canary's round trip)",
                [r.succeeded_seconds for r in results],
            ),
            *(
                _summary_row(
                    f"first acked send, {label} producer",
                    [r.first_ack_seconds[label] for r in results],
                )
                for label in labels
            ),
        ],
    )
    per_run = markdown_table(
        ["run", "promote s", "registered s", "succeeded s", "ack long-lived s",
         "ack restarted s", "next route tick s", "failed sends (long/restarted)", "restarts",
         "run took s"],
        [
            [
                str(r.run),
                fmt_s(r.promote_seconds),
                fmt_s(r.registered_seconds) if r.registered_seconds is not None else "-",
                fmt_s(r.succeeded_seconds),
                *(
                    fmt_s(v) if (v := r.first_ack_seconds[label]) is not None else "never"
                    for label in labels
                ),
                fmt_s(r.next_route_tick_seconds),
                " / ".join(str(r.failed_sends[label]) for label in labels),
                str(r.restarts),
                f"{r.run_wall_seconds:.0f}",
            ]
            for r in results
        ],
    )  # fmt: skip
    ticks_table = markdown_table(
        ["run", "registered s", "ack long-lived s", "the long-lived producer's timed route "
         "reads after the kill (from its librocketmq log)"],
        [
            [str(r.run), fmt_s(r.registered_seconds) if r.registered_seconds is not None else "-",
             fmt_s(v) if (v := r.first_ack_seconds["long-lived"]) is not None else "never",
             r.route_ticks]
            for r in results
        ],
    )  # fmt: skip
    step_rows = []
    for index, (label, _) in enumerate(results[0].steps):
        durations = [r.steps[index][1] for r in results if len(r.steps) > index]
        step_rows.append(
            [str(index + 1), label[:100], str(len(durations)), fmt_s(median(durations))]
        )
    boots = [r.promoted_boot_seconds for r in results if r.promoted_boot_seconds is not None]
    tls = [r.promoted_tls_seconds for r in results if r.promoted_tls_seconds is not None]
    if boots:
        step_rows.append(
            ["", "within the start step: the promoted broker's JVM, spawn -> boot success "
             "(+/- 1 s)", str(len(boots)), fmt_s(median(boots))]
        )  # fmt: skip
    if tls and args.tls == "permissive":
        step_rows.append(
            ["", "... of which building self-signed TLS contexts (tls.server.mode=permissive)",
             str(len(tls)), fmt_s(median(tls))]
        )  # fmt: skip
    steps = markdown_table(["step", "what the daemon did", "runs", "median s"], step_rows)
    errors = sorted({e for r in results for e in r.errors})
    together = sum(1 for r in results if acks_together(r))
    seed = args.seed
    lags = [
        long_lived - restarted
        for r in results
        if (long_lived := r.first_ack_seconds["long-lived"]) is not None
        and (restarted := r.first_ack_seconds["restarted"]) is not None
    ]
    max_lag = max(lags, default=0.0)
    print(summary)
    print()
    print(per_run)
    print()
    print(ticks_table)
    print()
    print(steps)
    notes = [
        "Times are wall clock from just before kill -9 of the master (broker-a:0, "
        "ASYNC_MASTER) to: the daemon's first cycle line with decision promote; its "
        "\"failover started\" line; the wait_master step's line (every nameserver lists the "
        "promoted slave as id 0); its \"failover succeeded\" line (after the canary wrote and "
        "read a message through the new master); and the end of the first send that the "
        "broker acknowledged among sends started after the kill.",
        "Daemon: the sandbox's watchdog.toml as written (down_after 3 s, interval 1 s, canary "
        "on); each run uses a fresh sandbox (`sandbox up` ... `sandbox down`), so no anti-flap "
        "block or restored roles carry over. A run takes about "
        f"{median([r.run_wall_seconds for r in results]):.0f} s here (sandbox start and stop "
        f"included). Brokers and nameservers run with tls.server.mode={args.tls}"
        + (" (RocketMQ's default)." if args.tls == "permissive" else "."),
        f"Producers: rocketmq 0.4.4 (librocketmq), send_sync every "
        f"{SEND_INTERVAL_SECONDS * 1000:.0f} ms to {TOPIC} (4 queues, created on the master with "
        "UPDATE_AND_CREATE_TOPIC and waited for on the slave and in both nameservers' routes), "
        "default send timeout, each in a child process (librocketmq can abort its process); "
        "both send through the same failover in the same run.",
        "The producer's view of the route: librocketmq caches which address is broker-a id 0 "
        "and re-reads the topic's route from a nameserver on a timer (3 s after start, then "
        "every 30 s: MQClientFactory::updateTopicRouteInfo in rocketmq-client-cpp), and on "
        "every send only while its cached route has no writable queue "
        "(tryToFindTopicPublishInfo). After the kill it keeps sending to the dead master's "
        "address until a tick changes that route. A tick while broker-a is listed without a "
        "master (from the kill until the daemon stops the slave to restart it as master) "
        "empties the route, and from then on every send re-reads it (hundreds a second in the "
        "client's log), so writes resume as soon as the new master registers. A tick while no "
        "broker of broker-a is registered (slave stopped, not yet back) gets no route and keeps "
        "the stale one; a tick after the new master registers finds it, unless the read fails "
        "inside the client (its log: `GetTransport of <nameserver> get timed_mutex timeout`, "
        "while failing sends keep reconnecting to the dead address), which costs one more "
        "period. So a long-lived producer writes again at the registration if a tick fell in "
        "the first window, else at the first tick after the registration that reads the route: "
        "up to 30 s later, or 60 s. The kill is timed at a "
        f"random phase (seed {seed}) of the long-lived producer's timer, after its first tick; "
        "`next route tick` is kill -> its next timed route read (its start + 3 s + k x 30 s). "
        f"The long-lived producer's first ack came more than 1 s after the restarted one's in "
        f"{len(results) - together} of {len(results)} runs"
        + (f" (up to {fmt_s(max_lag)} s later)." if max_lag > 1.0 else "."),
        "The interval is not configurable in rocketmq 0.4.4: librocketmq exports no setter "
        "for it (its producer setters: group, instance name, nameserver address/domain, "
        "credentials, send timeout, compression, max message size, logging). The Java "
        "client's pollNameServerInterval (default 30 s) is configurable. The restarted "
        "producer stands for a client that re-reads the route whenever sends fail.",
        "Where the time goes: the start step (a new JVM for the promoted slave) dominates. With "
        "RocketMQ 4.9's default tls.server.mode=permissive each of the broker's two remoting "
        "servers builds a self-signed certificate (an RSA key pair, in a JVM that has not "
        "warmed up) at every boot; `-Dtls.server.mode=disabled` skips that when TLS is not "
        "used (`bench/failover.py --tls disabled`).",
        "Failed runs (retried; not in the tables): "
        + ("; ".join(failed_runs) if failed_runs else "none")
        + ". Producer processes that died after their first ack: "
        + ("; ".join(f for r in results for f in r.producer_faults) or "none")
        + ".",
        "Errors seen by the producers after the kill (distinct; librocketmq ends every "
        "failed send_sync with this message, whatever the cause): "
        + ("; ".join(f"`{e}`" for e in errors) if errors else "none"),
    ]
    publish(
        NAME if args.tls == "permissive" else f"{NAME}_tls_disabled",
        "Failover: kill -9 of the master until a real client writes again"
        + (" (brokers with tls.server.mode=disabled)" if args.tls == "disabled" else ""),
        [summary, "Per run:\n\n" + per_run,
         "The long-lived producer's route timer (see the notes):\n\n" + ticks_table,
         "The failover's steps (from the daemon's log):\n\n" + steps],
        facts,
        notes,
        results_dir=args.results_dir,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
