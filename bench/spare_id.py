"""Experiment: does a spare registration of the candidate keep a long-lived producer's route alive?

Issue 12, item 6. While the promoted slave restarts, a single-group topic has no broker on the
nameservers, so a long-lived producer's timed route read (librocketmq: 3 s after its start, then
every 30 s) gets TOPIC_NOT_EXIST and keeps its stale route (the dead master) until its next read,
up to 30 s after the new master registered. The idea under test: the watchdog registers the
candidate's own address under a spare brokerId (REGISTER_BROKER, code 103) on every nameserver
through connections it holds, so the brokerName keeps an address and the topic its queue data
(RouteInfoManager drops them only when the group's last address goes); a route read then finds
the group without a master, and librocketmq re-reads the route on every send until id 0 appears.
The candidate's own registration as id 0 replaces the spare (same address, other id), and the
holder closes each connection once that nameserver lists id 0.

Each run: a fresh sandbox (master + slave, TLS disabled), the daemon acting (`rmq-watchdog run`,
the sandbox's watchdog.toml, as bench/failover.py), one long-lived real producer (librocketmq via
the `rocketmq` wheel, bench/failover.py's child) sending every 50 ms, kill -9 of the master timed
so that the producer's route timer fires a chosen time after the kill (`--ticks`; by default
inside the window in which the candidate is down, plus a few runs before and after it), and one
arm:

- plain: nothing else;
- spare: the holder (a child process) registers the candidate's address under `--spare-id` right
  after the kill, before the daemon stops the candidate;
- spare-after-stop: the same registration sent the moment the candidate's process is gone (the
  order the idea was first written down with);
- spare-killed: as spare, but the holder is killed -9 once the candidate is down (a watchdog
  that dies mid-way): its entries must go with its connections, at once.

Measured per run: the producer's write outage (last ack before the kill -> first ack after it),
kill -> first ack, kill -> the new master on every nameserver, where the producer's timer tick
fell, what that route read did (from the client's log), and, from a sampler reading every
nameserver's cluster info and the topic's route every 100 ms: whether the topic stayed routable
while the candidate was down, any address other than the candidate's handed out for the group
after the kill, and any spare entry left at the end (checked again 2 s after the holder exited).

After the runs, three hazards on fresh sandboxes (no daemon, no producer): a graceful stop of
the candidate under a spare with its own id and with another id, and a spare registration that
lands after the master's own.

    .venv/bin/python bench/spare_id.py [--ticks 1.4:5] [--arms plain spare spare-after-stop]
        [--killed-runs 2] [--hazards ...] [--base-port 30400]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file (bench/_common.py)

from bench._common import (
    REPO_ROOT,
    DaemonChild,
    add_common_arguments,
    bench_dir,
    fmt_s,
    machine_facts,
    markdown_table,
    median,
    publish,
    running_sandbox,
    signal_process,
    terminate,
)
from bench.failover import (
    FIRST_ROUTE_REFRESH_SECONDS,
    ROUTE_REFRESH_SECONDS,
    TOPIC,
    ProducerProcess,
    RunFailed,
    _prepare_topic,
    _wait_outcome,
    client_log,
    route_ticks,
)
from watchdog.config import load_config
from watchdog.remoting import (
    ClientPool,
    RegisterBrokerRequest,
    RemoteError,
    RemotingClient,
    RemotingError,
    get_all_topic_config,
    get_cluster_info,
    get_topic_route,
    register_broker,
)
from watchdog.tools.daemon_child import DaemonChildExited, DaemonChildTimeout
from watchdog.tools.sandbox import SandboxError

NAME = "spare_id"
GROUP = "broker-a"
MASTER = "broker-a:0"
CANDIDATE = "broker-a:1"
PRODUCER_GROUP = "BENCH_PG_SPARE"
ARMS = ("plain", "spare", "spare-after-stop")
KILLED_ARM = "spare-killed"
WARM_ACKS = 10
SAMPLE_SECONDS = 0.1
HOLD_POLL_SECONDS = 0.1
HOLD_TIMEOUT_SECONDS = 120.0
WRITE_TIMEOUT_SECONDS = 100.0  # after the kill: two route periods and some
REQUEST_TIMEOUT_SECONDS = 2.0
# spare-killed: the holder dies once the candidate is down, this long before the producer's
# route timer fires (or right after the candidate's stop when that comes later), so that timed
# read shows what a producer sees after a watchdog died mid-way.
KILL_HOLDER_BEFORE_TICK_SECONDS = 0.3
KILL_HOLDER_AFTER_STOP_SECONDS = 0.05
# A process's death reaches the nameserver as a channel close a few ms later: the samples of
# the candidate's down window start this long after its process is gone.
CLOSE_HANDLED_SECONDS = 0.2
LEFTOVER_RECHECK_SECONDS = 2.0


# --------------------------------------------------------------------------- the holder child


def hold_main(args: argparse.Namespace) -> int:
    """The holder: connect to every nameserver and read the candidate's topic table, print
    `ready`; on `go` (stdin) register the candidate's address under the spare id on every
    nameserver at once (the first one with a compressed body, the others with JSON: both forms
    meet the real nameserver every run); then close each connection as soon as its nameserver
    lists the candidate as id 0 (or all of them after HOLD_TIMEOUT_SECONDS)."""
    out = sys.stdout

    def emit(doc: dict[str, Any]) -> None:
        out.write(json.dumps(doc, separators=(",", ":")) + "\n")
        out.flush()

    namesrvs: list[str] = args.namesrv.split(";")

    async def run() -> int:
        clients = {ns: RemotingClient(ns, connect_timeout_seconds=1.0) for ns in namesrvs}
        candidate = RemotingClient(args.addr, connect_timeout_seconds=1.0)
        try:
            body = await get_all_topic_config(candidate, timeout_seconds=REQUEST_TIMEOUT_SECONDS)
        finally:
            await candidate.close()
        for client in clients.values():  # connect now: the registration is one write later
            await get_cluster_info(client, timeout_seconds=REQUEST_TIMEOUT_SECONDS)
        emit({"ready": time.time(), "topics": len(body.topic_configs)})
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if line.strip() != "go":
            return 0

        async def register(index: int, ns: str) -> None:
            request = RegisterBrokerRequest(
                cluster_name=args.cluster,
                broker_name=args.broker_name,
                broker_addr=args.addr,
                broker_id=args.spare_id,
                ha_server_addr=args.ha_addr,
                body=body,
                compressed=index == 0,
            )
            await register_broker(clients[ns], request, timeout_seconds=REQUEST_TIMEOUT_SECONDS)
            emit({"registered": time.time(), "ns": ns, "compressed": index == 0})

        sent = time.time()
        await asyncio.gather(*(register(i, ns) for i, ns in enumerate(namesrvs)))
        emit({"all_registered": time.time(), "sent": sent})
        deadline = time.monotonic() + HOLD_TIMEOUT_SECONDS
        held = dict(clients)
        while held:
            for ns, client in list(held.items()):
                try:
                    info = await get_cluster_info(client, timeout_seconds=REQUEST_TIMEOUT_SECONDS)
                except RemotingError as exc:
                    emit({"poll_error": time.time(), "ns": ns, "error": str(exc)[:200]})
                    continue
                if info.broker_addrs.get(args.broker_name, {}).get(0) == args.addr:
                    await client.close()
                    del held[ns]
                    emit({"released": time.time(), "ns": ns})
            if time.monotonic() >= deadline:
                for client in held.values():
                    await client.close()
                emit({"timeout": time.time(), "ns": sorted(held)})
                return 1
            await asyncio.sleep(HOLD_POLL_SECONDS)
        return 0

    return asyncio.run(run())


class Holder:
    """The holder child, its lines read back in a thread."""

    def __init__(
        self, namesrv: str, cluster: str, addr: str, ha_addr: str, spare_id: int, stderr: Path
    ) -> None:
        self.lines: list[dict[str, Any]] = []
        self._stderr = stderr.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.spare_id", "--hold", "--namesrv", namesrv,
             "--cluster", cluster, "--broker-name", GROUP, "--addr", addr,
             "--ha-addr", ha_addr, "--spare-id", str(spare_id)],  # fmt: skip
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE,
            stderr=self._stderr,
            cwd=REPO_ROOT,
        )
        self.killed_at: float | None = None
        self._reader = threading.Thread(target=self._read, name="holder", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                self.lines.append(json.loads(raw))
            except ValueError:
                continue

    def first(self, key: str) -> dict[str, Any] | None:
        return next((doc for doc in list(self.lines) if key in doc), None)

    def wait_for(self, key: str, timeout_seconds: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            found = self.first(key)
            if found is not None:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise RunFailed(f"holder: no {key!r} line ({self.proc.poll()}): {self.lines[-3:]}")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def kill(self) -> float:
        at = time.time()
        self.proc.kill()
        self.killed_at = at
        return at

    def finish(self, timeout_seconds: float) -> int | None:
        """Wait for it to exit by itself (it does once released or timed out); kill after."""
        try:
            self.proc.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            terminate(self.proc, 5.0)
        self._reader.join(5)
        self._stderr.close()
        return self.proc.returncode


# --------------------------------------------------------------------------- the sampler


@dataclass(frozen=True)
class Sample:
    at: float
    ns: str
    cluster: Mapping[int, str] | None  # the group's brokerId -> addr; None: no answer
    route: Mapping[int, str] | None  # the topic route's brokerId -> addr for the group
    route_code: int  # 0, or the nameserver's error code (17 TOPIC_NOT_EXIST), -1 no answer


class Sampler:
    """Every nameserver's view of the group and of TOPIC, every SAMPLE_SECONDS, in a thread."""

    def __init__(self, namesrvs: Sequence[str]) -> None:
        self.namesrvs = list(namesrvs)
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _one(self, pool: ClientPool, ns: str) -> Sample:
        at = time.time()
        cluster: Mapping[int, str] | None = None
        route: Mapping[int, str] | None = None
        code = 0
        try:
            info = await get_cluster_info(pool.get(ns), timeout_seconds=REQUEST_TIMEOUT_SECONDS)
            cluster = dict(info.broker_addrs.get(GROUP, {}))
            try:
                found = await get_topic_route(
                    pool.get(ns), TOPIC, timeout_seconds=REQUEST_TIMEOUT_SECONDS
                )
                route = dict(found.broker_addrs.get(GROUP, {}))
            except RemoteError as exc:
                code = exc.code
        except RemotingError:
            code = -1
        return Sample(at, ns, cluster, route, code)

    async def _run(self) -> None:
        pool = ClientPool(connect_timeout_seconds=1.0)
        try:
            while not self._stop.is_set():
                began = time.monotonic()
                self.samples.extend(
                    await asyncio.gather(*(self._one(pool, ns) for ns in self.namesrvs))
                )
                await asyncio.sleep(max(0.0, SAMPLE_SECONDS - (time.monotonic() - began)))
        finally:
            await pool.close_all()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def watch_exit(pid: int, on_exit: list[float], then: Any = None) -> threading.Thread:
    """A thread that notes when `pid` is gone (polled every 10 ms) and calls `then()`."""

    def run() -> None:
        while True:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                break
            if stat[stat.rindex(")") + 2 :].startswith(("Z", "X")):
                break
            time.sleep(0.01)
        on_exit.append(time.time())
        if then is not None:
            then()

    thread = threading.Thread(target=run, name=f"watch-{pid}", daemon=True)
    thread.start()
    return thread


# --------------------------------------------------------------------------- one run


@dataclass(frozen=True)
class RunResult:
    arm: str
    run: int
    planned_tick_seconds: float
    tick_seconds: float  # kill -> the producer's timed route read
    stopped_seconds: float | None  # kill -> the candidate's process gone
    registered_seconds: float | None  # kill -> every nameserver lists the candidate as id 0
    spare_seconds: float | None  # kill -> every nameserver answered the spare registration
    holder_end_seconds: float | None  # kill -> released everywhere (or killed)
    first_ack_seconds: float | None
    outage_seconds: float | None  # last ack before the kill -> first ack after
    tick_outcome: str
    down_routable: str  # the topic's route while the candidate was down (sampled)
    wrong_addrs: tuple[str, ...]  # group entries after the kill naming another address
    leftover: str  # the group on each nameserver at the end, if not exactly {0: candidate}
    killed_cleanup: str  # spare-killed: what the nameservers listed right after the kill
    holder_notes: str
    run_wall_seconds: float
    old_master_dropped_seconds: float | None  # kill -> no nameserver lists the old master


def _fmt(value: float | None) -> str:
    return fmt_s(value) if value is not None else "-"


def _down_window(samples: Sequence[Sample], since: float, until: float | None) -> str:
    """How the topic's route looked while the candidate was down: the share of sample rounds
    in which every nameserver routed the topic to the group."""
    if until is None:
        return "-"
    window = [s for s in samples if since <= s.at < until]
    if not window:
        return "no sample"
    routable = sum(1 for s in window if s.route_code == 0 and s.route)
    codes = sorted({s.route_code for s in window if s.route_code != 0})
    text = f"{100 * routable / len(window):.0f}% routable"
    if codes:
        text += " (else " + ", ".join("TOPIC_NOT_EXIST" if c == 17 else str(c) for c in codes) + ")"
    return text


def _old_master_gone(
    samples: Sequence[Sample], since: float, old: str, namesrvs: Sequence[str]
) -> dict[str, float | None]:
    """Per nameserver, the first sample after `since` in which the old master is not listed."""
    return {
        ns: min(
            (s.at for s in samples if s.ns == ns and s.at >= since and s.cluster is not None
             and old not in s.cluster.values() and old not in (s.route or {}).values()),
            default=None,
        )
        for ns in namesrvs
    }  # fmt: skip


def _wrong(
    samples: Sequence[Sample], since: float, candidate: str, old: str, gone: Mapping[str, Any]
) -> tuple[str, ...]:
    """Entries of the group after the kill that name neither the candidate nor the old master
    in the moments before that nameserver handled the kill (its channel close), nor the old
    master after it (which would be a route to a dead broker)."""
    bad: set[str] = set()
    for s in samples:
        if s.at < since:
            continue
        dropped = gone.get(s.ns)
        for view in (s.cluster, s.route):
            for broker_id, addr in (view or {}).items():
                if addr == candidate:
                    continue
                if addr == old and (dropped is None or s.at < dropped):
                    continue
                bad.add(f"{s.ns}: {broker_id}={addr}")
    return tuple(sorted(bad))


async def _group_everywhere(namesrvs: Sequence[str]) -> dict[str, dict[int, str] | str]:
    pool = ClientPool(connect_timeout_seconds=1.0)
    try:
        out: dict[str, dict[int, str] | str] = {}
        for ns in namesrvs:
            try:
                info = await get_cluster_info(pool.get(ns), timeout_seconds=REQUEST_TIMEOUT_SECONDS)
                out[ns] = dict(info.broker_addrs.get(GROUP, {}))
            except RemotingError as exc:
                out[ns] = f"no answer ({type(exc).__name__})"
        return out
    finally:
        await pool.close_all()


def _leftover(namesrvs: Sequence[str], candidate: str) -> str:
    views = asyncio.run(_group_everywhere(namesrvs))
    wrong = {ns: v for ns, v in views.items() if v != {0: candidate}}
    return "; ".join(f"{ns}: {v}" for ns, v in wrong.items())


def _cleanup(
    samples: Sequence[Sample],
    killed_at: float,
    registered: float | None,
    candidate: str,
    namesrvs: Sequence[str],
) -> str:
    """After the holder's kill -9: how soon every nameserver stopped listing the candidate
    under a non-zero id, and whether any did again before the candidate's own registration."""

    def spare_listed(s: Sample) -> bool:
        return any(i != 0 and a == candidate for i, a in (s.cluster or {}).items())

    until = registered if registered is not None else float("inf")
    clean: list[float] = []
    for ns in namesrvs:
        mine = [s for s in samples if s.ns == ns and killed_at <= s.at < until]
        first = next((s.at for s in mine if s.cluster is not None and not spare_listed(s)), None)
        if first is None:
            return f"{ns} still listed the spare until the candidate registered"
        again = [s for s in mine if s.at > first and spare_listed(s)]
        if again:
            return f"{ns} listed the spare again {again[0].at - killed_at:.2f} s after the kill"
        clean.append(first)
    return (
        f"spare gone from every nameserver {max(clean) - killed_at:.2f} s after the holder's "
        "kill (first sample without it)"
    )


def _kill_at(started_at: float, tick_after: float, earliest: float) -> tuple[float, float]:
    """(kill time, tick time): the producer's first timer tick at or after earliest +
    tick_after, and the kill tick_after seconds before it."""
    first = started_at + FIRST_ROUTE_REFRESH_SECONDS
    k = 0
    while first + k * ROUTE_REFRESH_SECONDS - tick_after < earliest:
        k += 1
    tick = first + k * ROUTE_REFRESH_SECONDS
    return tick - tick_after, tick


def one_run(
    arm: str, run: int, tick_after: float, work: Path, args: argparse.Namespace
) -> RunResult:
    try:
        return _one_run(arm, run, tick_after, work, args)
    except (DaemonChildExited, DaemonChildTimeout, SandboxError) as exc:
        raise RunFailed(f"{type(exc).__name__}: {exc}") from exc


def _one_run(
    arm: str, run: int, tick_after: float, work: Path, args: argparse.Namespace
) -> RunResult:
    began = time.monotonic()
    # Short: the daemon's control socket lives below it (AF_UNIX paths end at 107 bytes).
    run_dir = work / f"{len(list(work.iterdir())):02d}"
    run_dir.mkdir()
    (run_dir / "what").write_text(f"{arm} tick {tick_after:g} s run {run}\n")
    holder: Holder | None = None
    with running_sandbox(
        run_dir / "sandbox", base_port=args.base_port, version=args.version, tls="disabled"
    ) as box:
        config = load_config(box.config_path)
        by_key = {b.key: b.addr for b in config.brokers}
        candidate = by_key[CANDIDATE]
        host, _, port = candidate.rpartition(":")
        asyncio.run(_prepare_topic(by_key[MASTER], candidate, config.nameservers))
        namesrv = ";".join(config.nameservers)
        sampler: Sampler | None = None
        producer: ProducerProcess | None = None
        with DaemonChild(box.config_path, run_dir / "daemon.log") as daemon:
            try:
                daemon.wait_for(
                    lambda e: e.get("broker_name") == GROUP and e.get("state") == "HEALTHY",
                    timeout_seconds=60,
                    what="a HEALTHY cycle",
                )
                if arm != "plain":
                    holder = Holder(
                        namesrv, config.cluster_name, candidate, f"{host}:{int(port) + 1}",
                        args.spare_id, run_dir / "holder.err",
                    )  # fmt: skip
                    holder.wait_for("ready", 30)
                producer = ProducerProcess(
                    "long-lived", namesrv, PRODUCER_GROUP, False, run_dir / "producer.err"
                )
                deadline = time.monotonic() + 60
                while len(producer.acks()) < WARM_ACKS or producer.started_at is None:
                    if producer.fatal or time.monotonic() > deadline:
                        errors = [s.error for s in producer.sends if s.error][:3]
                        raise RunFailed(f"producer not healthy: {producer.fatal or errors}")
                    time.sleep(0.1)
                kill_target, tick = _kill_at(
                    producer.started_at, tick_after, time.time() + 1.0
                )
                candidate_pid = box.pid(CANDIDATE)
                if candidate_pid is None:
                    raise RunFailed("the candidate is not running")
                sampler = Sampler(config.nameservers)
                time.sleep(max(0.0, kill_target - time.time()))
                stopped: list[float] = []
                go_on_stop = holder.go if holder is not None and arm == "spare-after-stop" else None
                watch_exit(candidate_pid, stopped, go_on_stop)
                kill_at = signal_process(box, MASTER, signal.SIGKILL)
                if holder is not None and arm in ("spare", KILLED_ARM):
                    holder.go()
                if holder is not None and arm == KILLED_ARM:
                    holder.wait_for("all_registered", 30)
                    wait_until = time.monotonic() + 60
                    while not stopped and time.monotonic() < wait_until:
                        time.sleep(0.01)
                    kill_holder_at = max(
                        time.time() + KILL_HOLDER_AFTER_STOP_SECONDS,
                        tick - KILL_HOLDER_BEFORE_TICK_SECONDS,
                    )
                    time.sleep(max(0.0, kill_holder_at - time.time()))
                    holder.kill()
                _wait_outcome(daemon, kill_at)
                first_ack: float | None = None
                ack_deadline = time.monotonic() + WRITE_TIMEOUT_SECONDS
                while time.monotonic() < ack_deadline:
                    after = [s.finished for s in producer.acks() if s.started >= kill_at]
                    if after:
                        first_ack = min(after)
                        break
                    time.sleep(0.1)
                if holder is not None:
                    holder.finish(HOLD_TIMEOUT_SECONDS)
                time.sleep(LEFTOVER_RECHECK_SECONDS)
                leftover = _leftover(config.nameservers, candidate)
            finally:
                if sampler is not None:
                    sampler.stop()
                if producer is not None:
                    producer.stop()
                if holder is not None and holder.proc.poll() is None:
                    holder.finish(1.0)
    assert sampler is not None and producer is not None
    samples = sampler.samples
    per_ns = [
        min((s.at for s in samples if s.ns == ns and s.at >= kill_at
             and (s.cluster or {}).get(0) == candidate), default=None)
        for ns in config.nameservers
    ]  # fmt: skip
    registered = None if None in per_ns else max(t for t in per_ns if t is not None)
    # The window in which the candidate is down ends when the first nameserver lists it.
    first_registered = min((t for t in per_ns if t is not None), default=None)
    stopped_at = stopped[0] if stopped else None
    gone = _old_master_gone(samples, kill_at, by_key[MASTER], config.nameservers)
    before = [s.finished for s in producer.acks() if s.finished <= kill_at]
    outage = first_ack - max(before) if first_ack is not None and before else None
    spare = holder.first("all_registered") if holder is not None else None
    holder_end: float | None = None
    notes: list[str] = []
    killed_cleanup = "-"
    if holder is not None:
        released = [d["released"] for d in holder.lines if "released" in d]
        if holder.killed_at is not None:
            holder_end = holder.killed_at
            killed_cleanup = _cleanup(
                samples, holder.killed_at, registered, candidate, config.nameservers
            )
        elif released:
            holder_end = max(released)
        timeouts = [d for d in holder.lines if "timeout" in d]
        poll_errors = [d for d in holder.lines if "poll_error" in d]
        compressed = sorted({str(d["compressed"]) for d in holder.lines if "registered" in d})
        notes.append(f"bodies compressed={'/'.join(compressed)}")
        if timeouts:
            notes.append(f"released by timeout: {timeouts[0]['ns']}")
        if poll_errors:
            notes.append(f"{len(poll_errors)} poll errors")
    first_tick = producer.started_at + FIRST_ROUTE_REFRESH_SECONDS if producer.started_at else tick
    until = (first_ack or kill_at + WRITE_TIMEOUT_SECONDS) + 1.0
    ticks = [
        first_tick + k * ROUTE_REFRESH_SECONDS
        for k in range(int((until - first_tick) // ROUTE_REFRESH_SECONDS) + 1)
        if kill_at < first_tick + k * ROUTE_REFRESH_SECONDS <= until
    ]
    outcome = route_ticks(client_log(producer.proc.pid), ticks, kill_at)
    return RunResult(
        arm=arm,
        run=run,
        planned_tick_seconds=tick_after,
        tick_seconds=tick - kill_at,
        stopped_seconds=stopped_at - kill_at if stopped_at is not None else None,
        registered_seconds=registered - kill_at if registered is not None else None,
        spare_seconds=float(spare["all_registered"]) - kill_at if spare is not None else None,
        holder_end_seconds=holder_end - kill_at if holder_end is not None else None,
        first_ack_seconds=first_ack - kill_at if first_ack is not None else None,
        outage_seconds=outage,
        tick_outcome=outcome,
        down_routable=(
            _down_window(samples, stopped_at + CLOSE_HANDLED_SECONDS, first_registered)
            if stopped_at
            else "-"
        ),
        wrong_addrs=_wrong(samples, kill_at, candidate, by_key[MASTER], gone),
        leftover=leftover or "none",
        killed_cleanup=killed_cleanup,
        holder_notes="; ".join(notes) or "-",
        run_wall_seconds=time.monotonic() - began,
        old_master_dropped_seconds=(
            None if None in gone.values() else max(v for v in gone.values() if v) - kill_at
        ),
    )


# --------------------------------------------------------------------------- hazards


async def _views(namesrvs: Sequence[str]) -> str:
    """The group and TOPIC as every nameserver has them, one text (both when they differ)."""
    pool = ClientPool(connect_timeout_seconds=1.0)
    try:
        texts = []
        for ns in namesrvs:
            info = await get_cluster_info(pool.get(ns), timeout_seconds=REQUEST_TIMEOUT_SECONDS)
            group = dict(info.broker_addrs.get(GROUP, {}))
            try:
                route = await get_topic_route(
                    pool.get(ns), TOPIC, timeout_seconds=REQUEST_TIMEOUT_SECONDS
                )
                routed = f"route {dict(route.broker_addrs.get(GROUP, {}))}"
            except RemoteError as exc:
                routed = "TOPIC_NOT_EXIST" if exc.code == 17 else f"route error {exc.code}"
            texts.append(f"group {group or '{}'}, {routed}")
        if len(set(texts)) == 1:
            return f"{texts[0]} (every nameserver)"
        return "; ".join(f"{ns}: {t}" for ns, t in zip(namesrvs, texts, strict=True))
    finally:
        await pool.close_all()


FIRST_HEARTBEAT_SECONDS = 10.0
HAZARDS = {
    "graceful-same-id": "graceful stop of the candidate, spare id = its own id (1)",
    "graceful-other-id": "graceful stop of the candidate, spare id 2 (not its own)",
    "late": "a spare registration that lands after the master's own registration",
}


def hazard_run(name: str, work: Path, args: argparse.Namespace) -> list[tuple[str, str]]:
    """One hazard on a fresh sandbox, no daemon, no producer: the group on the nameservers
    after each move. The candidate's graceful stop sends UNREGISTER_BROKER (its address and
    id) before it exits; `late` stands for a spare sent by a watchdog after the promoted
    broker registered, with the running master in the promoted broker's place."""
    run_dir = work / f"{len(list(work.iterdir())):02d}"
    run_dir.mkdir()
    (run_dir / "what").write_text(f"hazard {name}\n")
    seen: list[tuple[str, str]] = []
    with running_sandbox(
        run_dir / "sandbox", base_port=args.base_port, version=args.version, tls="disabled"
    ) as box:
        config = load_config(box.config_path)
        by_key = {b.key: b.addr for b in config.brokers}
        master, candidate = by_key[MASTER], by_key[CANDIDATE]
        up_at = time.monotonic()
        asyncio.run(_prepare_topic(master, candidate, config.nameservers))
        # A broker re-registers 10 s after its start, then every 30 s (registerNameServerPeriod;
        # BrokerController.start), which takes its address back from any spare. Start after
        # the first one, so that none falls inside the moves below (a graceful stop alone
        # takes ~5 s).
        time.sleep(max(0.0, up_at + FIRST_HEARTBEAT_SECONDS + 2.0 - time.monotonic()))

        def note(moment: str) -> None:
            time.sleep(0.5)  # the nameservers handle a channel close a few ms after it
            seen.append((moment, asyncio.run(_views(config.nameservers))))

        note("start")
        addr, spare_id = candidate, 2 if name == "graceful-other-id" else 1
        if name == "late":
            addr = master
        else:
            box.kill(MASTER)
            note("master killed -9")
        holder = Holder(
            ";".join(config.nameservers), config.cluster_name, addr, "127.0.0.1:1", spare_id,
            run_dir / "holder.err",
        )  # fmt: skip
        try:
            holder.wait_for("ready", 30)
            holder.go()
            holder.wait_for("all_registered", 30)
            note(f"spare registered: {addr} as id {spare_id}")
            if name != "late":
                box.stop(CANDIDATE)
                note("candidate stopped gracefully (UNREGISTER_BROKER, then exit)")
        finally:
            holder.kill()
            holder.finish(5.0)
        note("holder's connections closed (killed)")
        if name != "late":
            time.sleep(11.0)
            note("11 s later (scanNotActiveBroker runs every 10 s)")
            box.start(CANDIDATE, wait_registered=True)
            note("candidate started again (as the slave it was)")
    return seen


# --------------------------------------------------------------------------- report


def _summary(
    results: Sequence[RunResult], arms: Sequence[str], ticks: Sequence[float]
) -> str:
    rows = []
    for tick, arm in ((t, a) for t in ticks for a in arms):
        mine = [r for r in results if r.arm == arm and r.planned_tick_seconds == tick]
        if not mine:
            continue
        outages = [r.outage_seconds for r in mine if r.outage_seconds is not None]
        acks = [r.first_ack_seconds for r in mine if r.first_ack_seconds is not None]
        registered = [r.registered_seconds for r in mine if r.registered_seconds is not None]
        in_window = sum(
            1
            for r in mine
            if r.stopped_seconds is not None
            and r.registered_seconds is not None
            and r.stopped_seconds <= r.tick_seconds < r.registered_seconds
        )
        rows.append(
            [
                f"{tick:g}",
                arm,
                str(len(mine)),
                f"{in_window}/{len(mine)}",
                _fmt(median(registered)) if registered else "-",
                _fmt(median(outages)) if outages else "-",
                f"{_fmt(min(outages))}-{_fmt(max(outages))}" if outages else "-",
                _fmt(median(acks)) if acks else "-",
                str(sum(1 for r in mine if r.leftover != "none")),
                str(sum(1 for r in mine if r.wrong_addrs)),
            ]
        )
    return markdown_table(
        ["tick s", "arm", "runs", "tick while candidate down", "kill -> id 0 everywhere, median s",
         "write outage, median s", "outage min-max s", "kill -> first ack, median s",
         "runs with an entry left", "runs with a wrong address"],
        rows,
    )  # fmt: skip


def _per_run(results: Sequence[RunResult]) -> str:
    return markdown_table(
        ["arm", "run", "tick s", "candidate gone s", "spare registered s", "id 0 everywhere s",
         "holder closed s", "first ack s", "outage s", "route while candidate down",
         "entry left at the end", "wrong address", "holder"],
        [
            [r.arm, str(r.run), fmt_s(r.tick_seconds), _fmt(r.stopped_seconds),
             _fmt(r.spare_seconds), _fmt(r.registered_seconds), _fmt(r.holder_end_seconds),
             _fmt(r.first_ack_seconds), _fmt(r.outage_seconds), r.down_routable, r.leftover,
             "; ".join(r.wrong_addrs) or "none",
             r.holder_notes + ("" if r.killed_cleanup == "-" else f"; {r.killed_cleanup}")]
            for r in results
        ],
    )  # fmt: skip


def _ticks(results: Sequence[RunResult]) -> str:
    return markdown_table(
        ["arm", "run", "tick s",
         "the producer's timed route reads after the kill (its librocketmq log)"],
        [[r.arm, str(r.run), fmt_s(r.tick_seconds), r.tick_outcome] for r in results],
    )  # fmt: skip


def _phase_model(results: Sequence[RunResult]) -> str:
    """The mean outage of a long-lived producer whose 30 s route timer has a uniform random
    phase, from this run's median candidate-stop (S) and registration (T) times after the kill:
    a read before S finds the group without a master (it then re-reads on every send and
    writes at T); a read in [S, T) finds no route without the spare (it writes at its next
    read, 30 s later) and a master-less group with it (it writes at T); a read at tau >= T
    writes at tau."""
    stops = [r.stopped_seconds for r in results if r.stopped_seconds is not None]
    regs = [r.registered_seconds for r in results if r.registered_seconds is not None]
    if not stops or not regs:
        return "no stop/registration times"
    stop, reg, period = median(stops), median(regs), ROUTE_REFRESH_SECONDS
    tail = (period**2 - reg**2) / 2  # reads after the registration
    plain = (stop * reg + (reg**2 - stop**2) / 2 + period * (reg - stop) + tail) / period
    spare = (reg * reg + tail) / period
    return (
        f"S = {fmt_s(stop)} s, T = {fmt_s(reg)} s: mean outage {fmt_s(plain)} s without the "
        f"spare, {fmt_s(spare)} s with it (a gain of {fmt_s(plain - spare)} s on average; "
        f"{100 * (reg - stop) / period:.0f}% of long-lived producers, those whose read falls "
        "in [S, T), are spared 30 s)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    # Below 32768: ports in the kernel's ephemeral range are sometimes taken by outgoing
    # connections when the sandbox (or the daemon's metrics listener) binds them.
    add_common_arguments(parser, default_base_port=30400)
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument(
        "--killed-runs", type=int, default=2,
        help="extra runs in which the holder is killed -9 mid-way (default 1)",
    )  # fmt: skip
    parser.add_argument(
        "--ticks", nargs="+", default=["1.4:5"], metavar="SECONDS:RUNS",
        help="where the producer's route timer fires, in seconds after the kill, and how many "
        "runs per arm there (default 1.4:5: inside the window in which the candidate is down "
        "on this machine; e.g. 0.3:2 puts it before the candidate's stop, 6:2 after its "
        "registration); --killed-runs use the first",
    )  # fmt: skip
    parser.add_argument(
        "--spare-id", type=int, default=1,
        help="the brokerId the spare registration uses (default 1, the candidate's own: "
        "see the notes)",
    )  # fmt: skip
    parser.add_argument(
        "--hazards", nargs="*", choices=sorted(HAZARDS), default=sorted(HAZARDS),
        help="the hazard runs to make (default all; none: --hazards with no name)",
    )  # fmt: skip
    parser.add_argument("--max-failed-runs", type=int, default=3)
    parser.add_argument("--hold", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--namesrv", help=argparse.SUPPRESS)
    parser.add_argument("--cluster", help=argparse.SUPPRESS)
    parser.add_argument("--broker-name", help=argparse.SUPPRESS)
    parser.add_argument("--addr", help=argparse.SUPPRESS)
    parser.add_argument("--ha-addr", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.hold:
        return hold_main(args)
    ticks: list[tuple[float, int]] = []
    for text in args.ticks:
        seconds, _, runs = text.partition(":")
        try:
            ticks.append((float(seconds), int(runs or "1")))
        except ValueError:
            parser.error(f"--ticks {text!r}: SECONDS:RUNS, e.g. 1.4:5")
    if any(t < 0 or n < 1 for t, n in ticks):
        parser.error("--ticks: seconds >= 0, runs >= 1")
    facts = machine_facts(args.version)
    plan = [
        (arm, i + 1, tick) for tick, runs in ticks for i in range(runs) for arm in args.arms
    ]
    plan += [(KILLED_ARM, i + 1, ticks[0][0]) for i in range(args.killed_runs)]
    results: list[RunResult] = []
    failed: list[str] = []
    with bench_dir(NAME, args.work_dir, args.keep) as work:
        for arm, run, tick in plan:
            while True:
                try:
                    result = one_run(arm, run, tick, work, args)
                except RunFailed as exc:
                    first_line = str(exc).splitlines()[0][:300]
                    failed.append(f"{arm} tick {tick:g} run {run}: {first_line}")
                    print(f"{arm} run {run} failed: {exc}", file=sys.stderr)
                    if len(failed) > args.max_failed_runs:
                        raise
                    continue
                break
            results.append(result)
            print(
                f"{arm} {run} (tick {tick:g} s planned): tick {fmt_s(result.tick_seconds)} s, "
                f"candidate gone {_fmt(result.stopped_seconds)} s, "
                f"id 0 {_fmt(result.registered_seconds)} s, "
                f"first ack {_fmt(result.first_ack_seconds)} s, outage "
                f"{_fmt(result.outage_seconds)} s, down: {result.down_routable}, left: "
                f"{result.leftover}, wrong: {result.wrong_addrs or 'none'}, "
                f"{result.killed_cleanup} (run took {result.run_wall_seconds:.0f} s)",
                file=sys.stderr,
            )
        hazards = []
        for name in args.hazards:
            for attempt in (1, 2):
                try:
                    hazards.append((name, hazard_run(name, work, args)))
                    break
                except (RunFailed, SandboxError) as exc:
                    failed.append(f"hazard {name}: {str(exc).splitlines()[0][:300]}")
                    if attempt == 2:
                        raise
    arms = [*args.arms, *([KILLED_ARM] if args.killed_runs else [])]
    summary = _summary(results, arms, [t for t, _ in ticks])
    per_run = _per_run(results)
    ticks_table = _ticks(results)
    hazard_table = markdown_table(
        ["hazard", "moment", "the group and the topic's route on the nameservers"],
        [[HAZARDS[name], moment, view] for name, seen in hazards for moment, view in seen],
    )
    print(summary)
    print()
    print(per_run)
    print()
    print(ticks_table)
    print()
    print(hazard_table)
    notes = [
        "Times are wall clock from just before kill -9 of the master (broker-a:0). `tick`: the "
        "long-lived producer's route timer (its start + 3 s + k x 30 s), placed the planned "
        "number of seconds after the kill by timing the kill; `candidate gone`: its process "
        "no longer exists (polled every 10 ms); `spare registered`: every nameserver answered "
        "the holder's REGISTER_BROKER; `id 0 everywhere`: the first 100 ms sample round in "
        "which every nameserver lists the candidate as id 0; `holder closed`: the holder "
        "closed its last connection (or was killed); `outage`: the producer's last "
        "acknowledged send before the kill to its first acknowledged send started after it.",
        "Failovers: the daemon (`rmq-watchdog run`, the sandbox's watchdog.toml, acting, "
        "candidate_stop as configured) on a fresh sandbox per run (`sandbox up`, TLS "
        f"disabled, two nameservers); topic {TOPIC} (4 queues, created on the master and "
        "waited for on the slave and in both routes). Producer: bench/failover.py's "
        "long-lived child (PyPI rocketmq 0.4.4, librocketmq), send_sync every 50 ms.",
        f"The holder registers the candidate's address under brokerId {args.spare_id} with the "
        "candidate's own topic table and data version (GET_ALL_TOPIC_CONFIG before the kill): "
        "on the first nameserver with the compressed RegisterBrokerBody, on the others with the "
        "JSON one (watchdog/remoting/_register.py); it never registers twice and never sends "
        "UNREGISTER_BROKER; it closes each connection once that nameserver lists the candidate "
        "as id 0.",
        "Sampler: every nameserver's GET_BROKER_CLUSTER_INFO and GET_ROUTEINFO_BY_TOPIC every "
        "100 ms from before the kill to the end of the run. `route while candidate down`: the "
        f"share of samples from {CLOSE_HANDLED_SECONDS:g} s after the candidate's process is "
        "gone until the first nameserver lists it as id 0 in which that nameserver routed the "
        "topic to the group. `wrong address`: any entry of the "
        "group after the kill naming an address other than the candidate's (producers and "
        "consumers only ever reach addresses a route names). `entry left`: the group on any "
        "nameserver not exactly {0: candidate}, read "
        f"{LEFTOVER_RECHECK_SECONDS:g} s after the holder exited.",
        "The nameservers dropped the killed master (its channel closed) at most "
        + _fmt(max((r.old_master_dropped_seconds or 0.0 for r in results), default=None))
        + " s after the kill in every run; its entries before that moment are not counted as "
        "wrong addresses.",
        "Route timer outcomes (the client's log, 0.5 s before to 2.5 s after the tick): `no "
        "route for the topic` = the read got TOPIC_NOT_EXIST and the client kept its stale "
        "route (the dead master); `route changed` = it took a new route; `already re-reading "
        "on every send` = more than 5 route reads in that window, i.e. its publish info had no "
        "master queue (from this read or an earlier one) and every send read the route again.",
        "spare-killed: the holder is killed -9 once the candidate is down and "
        f"{KILL_HOLDER_BEFORE_TICK_SECONDS:g} s before the producer's timed read (or "
        f"{KILL_HOLDER_AFTER_STOP_SECONDS:g} s after the candidate's stop when that is later): "
        "its column shows how soon the nameservers dropped the spare after the kill (from the "
        "100 ms samples), and the producer's read then shows what a watchdog dying mid-way "
        "leaves clients with.",
        "Over random timer phases (the model, with this run's medians over every arm): "
        + _phase_model(results)
        + ".",
        "Failed runs (retried, not in the tables): " + ("; ".join(failed) or "none") + ".",
    ]
    publish(
        NAME,
        "Spare registration of the candidate while it restarts (issue 12, item 6)",
        [summary, "Per run:\n\n" + per_run, "The producer's route timer:\n\n" + ticks_table,
         "Hazards (a fresh sandbox each, no daemon, no producer):\n\n" + hazard_table],
        facts,
        notes,
        results_dir=args.results_dir,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
