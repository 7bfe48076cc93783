"""Benchmark: three watchdog daemons coordinated through etcd, on `sandbox up --etcd`.

Every instance is a real daemon, `python -m watchdog run -c watchdog[-N].toml`, against the
sandbox's own 3-member etcd (lease_ttl 3 s, the sandbox's setting). Three measurements:

(a) leader:  kill -9 of the leading instance -> the leader key in etcd names another instance,
             and that instance's rmq_watchdog_leader metric reads 1 (it may act). The killed
             instance is started again before the next run (one sandbox for all runs).
(b) ha:      kill -9 of the master broker and of the leading instance at the same moment -> the
             slave registered as master (brokerId 0, its own address) on every nameserver, as
             the bench polls them every 50 ms. A fresh sandbox per run.
(c) single:  one daemon, no etcd, the same sandbox otherwise (`sandbox up` without --etcd):
             kill -9 of the master only -> registered, measured the same way.

(b) and (c) alternate run by run, so both see the same machine. Each (b) run also counts the
promotions journaled for the master's death across the three state dirs and etcd: exactly one
is right. Times are taken on this script's clock (monotonic for (a), wall for (b) and (c), as
the nameserver polls are stamped).

    .venv/bin/python bench/coord_failover.py [--runs 5] [--parts a,b,c] [--promotion restart]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file (bench/_common.py)

from bench._common import (
    RESULTS_DIR,
    DaemonChild,
    bench_dir,
    fmt_s,
    machine_facts,
    markdown_table,
    median,
    publish,
)
from watchdog.config import WatchdogConfig, load_config
from watchdog.coord import EtcdUnavailable, GroupRead, read_group_of
from watchdog.observe import history_from_records, merge_history, read_history
from watchdog.remoting import RemotingClient, get_cluster_info
from watchdog.tools.daemon_child import logged_at
from watchdog.tools.sandbox import DEFAULT_VERSION, Sandbox

GROUP = "broker-a"
MASTER = "broker-a:0"
SLAVE = "broker-a:1"
POLL_SECONDS = 0.05
READY_TIMEOUT_SECONDS = 90.0
LEADER_TIMEOUT_SECONDS = 60.0
FAILOVER_TIMEOUT_SECONDS = 180.0
LEADER_METRIC = "rmq_watchdog_leader"


class RunFailed(RuntimeError):
    """A run that gives no measurement; the message says why."""


# --------------------------------------------------------------------------- instances


@dataclass
class Instance:
    name: str
    config_path: Path
    metrics: str  # host:port
    log: Path
    daemon: DaemonChild | None = None

    def start(self) -> None:
        self.daemon = DaemonChild(self.config_path, self.log)

    def kill(self) -> None:
        """SIGKILL, and reaped: the process is gone when this returns."""
        assert self.daemon is not None
        os.kill(self.daemon.pid, signal.SIGKILL)
        self.daemon.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.daemon is not None and self.daemon.is_running:
            self.daemon.stop(timeout_seconds=30)

    def leader_metric(self) -> float | None:
        """rmq_watchdog_leader as its /metrics says now; None when it does not answer."""
        try:
            with urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=1.0) as r:
                text = r.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name.split("{", 1)[0] == LEADER_METRIC:
                try:
                    return float(value.split()[0])
                except (ValueError, IndexError):
                    return None
        return None

    def wait_healthy(self, after: float) -> None:
        assert self.daemon is not None
        self.daemon.wait_for(
            lambda e: e.get("broker_name") == GROUP and e.get("state") == "HEALTHY",
            timeout_seconds=READY_TIMEOUT_SECONDS,
            what=f"{self.name}: a HEALTHY cycle",
            after=after,
        )


def instances_of(box: Sandbox, logs: Path) -> list[Instance]:
    return [
        Instance(i["name"], Path(i["config"]), i["metrics"], logs / f"{i['name']}.log")
        for i in box.info()["etcd"]["instances"]
    ]


@contextmanager
def sandbox(directory: Path, *, etcd: bool, version: str, promotion: str) -> Iterator[Sandbox]:
    """`sandbox up` (one group, master + slave, TLS off, a free port block below 32768) with
    or without --etcd; `down` whatever happens."""
    box = Sandbox(directory)
    try:
        box.up(
            version=version,
            base_port=0,
            tls="disabled",
            etcd=etcd,
            promotion="inplace" if promotion == "inplace" else "restart",
        )
        yield box
    finally:
        if box.cluster_path.exists():
            box.down()


@contextmanager
def running(instances: Sequence[Instance]) -> Iterator[None]:
    try:
        for instance in instances:
            instance.start()
        yield
    finally:
        for instance in instances:
            instance.stop()


def read_group(config: WatchdogConfig, *, with_state: bool = False) -> GroupRead | None:
    try:
        return asyncio.run(read_group_of(config, state_prefix="" if with_state else None))
    except EtcdUnavailable:
        return None


def wait_leading(config: WatchdogConfig, instances: Sequence[Instance], timeout: float) -> str:
    """Until etcd names a leader among `instances`, every one of them has published, and the
    leader's metric reads 1; the leader's name."""
    deadline = time.monotonic() + timeout
    by_name = {i.name: i for i in instances}
    while time.monotonic() < deadline:
        group = read_group(config)
        if group is not None and group.leader_name in by_name:
            published = {v.name for v in group.instances}
            if set(by_name) <= published and by_name[group.leader_name].leader_metric() == 1:
                return group.leader_name
        time.sleep(0.2)
    raise RunFailed(f"no leader with its metric at 1 among {sorted(by_name)} within {timeout} s")


# --------------------------------------------------------------------------- (a)


@dataclass(frozen=True)
class LeaderRun:
    killed: str
    new_leader: str
    key_seconds: float  # kill -> the leader key names another instance
    metric_seconds: float  # kill -> that instance's rmq_watchdog_leader is 1


def measure_leader(box: Sandbox, logs: Path, runs: int, rng: random.Random) -> list[LeaderRun]:
    instances = instances_of(box, logs)
    by_name = {i.name: i for i in instances}
    config = load_config(instances[0].config_path)
    found: list[LeaderRun] = []
    with running(instances):
        began = time.time()
        for instance in instances:
            instance.wait_healthy(began)
        leader = wait_leading(config, instances, LEADER_TIMEOUT_SECONDS)
        for run in range(runs):
            # Kill at different points of the lease's renewal (every lease_ttl / 3 = 1 s).
            time.sleep(rng.uniform(0.5, 1.5))
            killed = by_name[leader]
            t0 = time.monotonic()
            killed.kill()
            new, key_at, metric_at = None, None, None
            deadline = t0 + LEADER_TIMEOUT_SECONDS
            while time.monotonic() < deadline and metric_at is None:
                if key_at is None:
                    group = read_group(config)
                    if group is not None and group.leader_name not in (None, leader):
                        new, key_at = group.leader_name, time.monotonic()
                if new is not None and by_name[new].leader_metric() == 1:
                    metric_at = time.monotonic()
                    break
                time.sleep(POLL_SECONDS)
            if new is None or key_at is None or metric_at is None:
                raise RunFailed(f"run {run + 1}: no new leader acting after killing {leader}")
            found.append(LeaderRun(leader, new, key_at - t0, metric_at - t0))
            print(
                f"(a) run {run + 1}: {leader} killed; {new} holds the key after "
                f"{key_at - t0:.2f} s, its {LEADER_METRIC} is 1 after {metric_at - t0:.2f} s",
                file=sys.stderr,
            )
            again = time.time()
            killed.start()  # the same config, its log appended to
            killed.wait_healthy(again)
            wait_leading(config, instances, LEADER_TIMEOUT_SECONDS)
            leader = new
    return found


# --------------------------------------------------------------------------- (b), (c)


async def _registered(nameservers: Sequence[str], slave_addr: str, timeout: float) -> float:
    """Wall time at which every nameserver first lists the slave as GROUP's brokerId 0."""
    clients = [RemotingClient(ns, connect_timeout_seconds=1.0) for ns in nameservers]
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ok = 0
            for client in clients:
                try:
                    info = await get_cluster_info(client, timeout_seconds=1.0)
                except Exception:  # a nameserver busy or restarting: not yet
                    continue
                if info.broker_addrs.get(GROUP, {}).get(0) == slave_addr:
                    ok += 1
            if ok == len(clients):
                return time.time()
            await asyncio.sleep(POLL_SECONDS)
    finally:
        for client in clients:
            await client.close()
    raise RunFailed(f"{slave_addr} not registered as {GROUP}'s master within {timeout} s")


def promotions(configs: Sequence[WatchdogConfig], after: float) -> list[str]:
    """The promote failovers of GROUP journaled after `after` (wall), across every instance's
    state dir and etcd: "id outcome" each."""
    sources = [read_history(c.state_dir, GROUP) for c in configs]
    if configs[0].etcd is not None:
        group = read_group(configs[0], with_state=True)
        if group is not None:
            sources.insert(0, history_from_records(group.state, GROUP))
    rows = merge_history(*sources)
    return [
        f"{r.failover_id} {r.outcome}"
        for r in rows
        if r.kind == "promote" and (r.started_at or 0) >= after
    ]


def first_logged(instances: Sequence[Instance], after: float, text: str) -> float | None:
    """The earliest daemon log line (any instance) at or after `after` (wall) whose event
    starts with `text`: its time."""
    found = [
        logged_at(e)
        for i in instances
        if i.daemon is not None
        for e in i.daemon.events()
        if logged_at(e) >= after and str(e.get("event", "")).startswith(text)
    ]
    return min(found) if found else None


@dataclass(frozen=True)
class MasterRun:
    kind: str  # "ha" or "single"
    registered_seconds: float  # kill -> the slave registered as master everywhere
    leads_seconds: float | None  # (b): kill -> the new leader's "<name> leads now"
    started_seconds: float | None  # kill -> "failover started" (any instance's log)
    killed_instance: str | None  # (b): the leader killed with the master
    promotions: tuple[str, ...]  # journaled promotions of this death
    actor: str | None  # (b): the leader when the slave was registered


def measure_master(
    work: Path, *, ha: bool, version: str, promotion: str, rng: random.Random
) -> MasterRun:
    with sandbox(work / "sandbox", etcd=ha, version=version, promotion=promotion) as box:
        if ha:
            instances = instances_of(box, work)
        else:
            instances = [Instance("single", box.config_path, "", work / "single.log")]
        configs = [load_config(i.config_path) for i in instances]
        slave_addr = next(b.addr for b in configs[0].brokers if b.key == SLAVE)
        with running(instances):
            began = time.time()
            for instance in instances:
                instance.wait_healthy(began)
            leader = wait_leading(configs[0], instances, LEADER_TIMEOUT_SECONDS) if ha else None
            time.sleep(rng.uniform(0.5, 1.5))  # some phase of the probe interval
            master_pid = box.pid(MASTER)
            if master_pid is None:
                raise RunFailed("the master is not running")
            t0 = time.time()
            os.kill(master_pid, signal.SIGKILL)
            if leader is not None:
                next(i for i in instances if i.name == leader).kill()
            registered_at = asyncio.run(
                _registered(configs[0].nameservers, slave_addr, FAILOVER_TIMEOUT_SECONDS)
            )
            actor = None
            leads_at = None
            if ha:
                group = read_group(configs[0])
                actor = None if group is None else group.leader_name
                leads_at = first_logged(instances, t0, f"{actor} leads now")
            started_at = first_logged(instances, t0, "failover started")
            # Long enough for a second, wrong promotion to show in the journals.
            time.sleep(5.0)
            found = promotions(configs, t0 - 1.0)
    return MasterRun(
        kind="ha" if ha else "single",
        registered_seconds=registered_at - t0,
        leads_seconds=None if leads_at is None else leads_at - t0,
        started_seconds=None if started_at is None else started_at - t0,
        killed_instance=leader,
        promotions=tuple(found),
        actor=actor,
    )


# --------------------------------------------------------------------------- report


def _opt(value: float | None) -> str:
    return "-" if value is None else fmt_s(value)


def _got(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def _stats(values: Sequence[float]) -> list[str]:
    if not values:
        return ["0", "-", "-", "-", "-"]
    return [
        str(len(values)),
        fmt_s(median(values)),
        fmt_s(min(values)),
        fmt_s(max(values)),
        ", ".join(fmt_s(v) for v in values),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--parts", default="a,b,c", help="which of a, b, c (comma separated)")
    parser.add_argument("--promotion", choices=("restart", "inplace"), default="restart")
    parser.add_argument("--version", default=DEFAULT_VERSION)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    rng = random.Random(args.seed)
    facts = machine_facts(args.version)
    leader_runs: list[LeaderRun] = []
    master_runs: list[MasterRun] = []
    with bench_dir("coord-failover", args.work_dir, args.keep) as work:
        if "a" in parts:
            (work / "a").mkdir()
            with sandbox(
                work / "a" / "sandbox", etcd=True, version=args.version, promotion=args.promotion
            ) as box:
                leader_runs = measure_leader(box, work / "a", args.runs, rng)
        for run in range(args.runs):
            for kind in ("b", "c"):
                if kind not in parts:
                    continue
                run_dir = work / f"{kind}-{run + 1}"
                run_dir.mkdir()
                result = measure_master(
                    run_dir,
                    ha=kind == "b",
                    version=args.version,
                    promotion=args.promotion,
                    rng=rng,
                )
                master_runs.append(result)
                print(
                    f"({kind}) run {run + 1}: registered after {result.registered_seconds:.2f} s, "
                    f"failover started after {_opt(result.started_seconds)} s, leads now after "
                    f"{_opt(result.leads_seconds)} s"
                    + (
                        f"; killed {result.killed_instance}, {result.actor} leads; "
                        if kind == "b"
                        else "; "
                    )
                    + f"promotions journaled: {list(result.promotions)}",
                    file=sys.stderr,
                )
    tables = []
    notes = [
        "sandbox: `sandbox up [--etcd] --tls disabled`, one group (master + slave), "
        f"RocketMQ {args.version}, promotion {args.promotion}, the watchdog settings the "
        "sandbox writes (lease_ttl 3 s, etcd request timeout 1 s with --etcd); ports from a "
        "free block below 32768",
        "every instance is `python -m watchdog run -c watchdog[-N].toml --log-format json`",
    ]
    if leader_runs:
        tables.append(
            "### (a) Leader instance killed (kill -9) -> another instance leads\n\n"
            + markdown_table(
                [
                    "measured from the kill to",
                    "runs",
                    "median (s)",
                    "min (s)",
                    "max (s)",
                    "each run (s)",
                ],
                [
                    [
                        "leader key names another instance",
                        *_stats([r.key_seconds for r in leader_runs]),
                    ],
                    [
                        f"its {LEADER_METRIC} reads 1",
                        *_stats([r.metric_seconds for r in leader_runs]),
                    ],
                ],
            )  # fmt: skip
        )
        notes.append(
            "(a) one sandbox; the killed instance is restarted (and the group led again) before "
            "the next run; the kill falls at a random point of the 1 s lease renewal; etcd "
            "polled every 50 ms, /metrics likewise: "
            + "; ".join(f"{r.killed} -> {r.new_leader}" for r in leader_runs)
        )
    ha = [r for r in master_runs if r.kind == "ha"]
    single = [r for r in master_runs if r.kind == "single"]
    if ha or single:
        rows = []
        if ha:
            label = "3 instances, etcd: master + leader instance killed"
            rows += [
                [label, "registered", *_stats([r.registered_seconds for r in ha])],
                [label, "new leader: leads now", *_stats(_got(r.leads_seconds for r in ha))],
                [label, "failover started", *_stats(_got(r.started_seconds for r in ha))],
            ]
        if single:
            label = "1 instance, no etcd: master killed"
            rows += [
                [label, "registered", *_stats([r.registered_seconds for r in single])],
                [label, "failover started", *_stats(_got(r.started_seconds for r in single))],
            ]
        tables.append(
            "### (b), (c) Master killed (kill -9) -> the slave registered as master on every "
            "nameserver\n\n"
            + markdown_table(
                ["setup", "kill ->", "runs", "median (s)", "min (s)", "max (s)", "each run (s)"],
                rows,
            )
        )
        notes.append(
            "(b), (c) a fresh sandbox per run, runs alternating b, c; registered = every "
            "nameserver lists the slave's address as brokerId 0, polled every 50 ms; 'leads "
            "now' and 'failover started' are the daemons' own log lines (same machine clock)"
        )
    if ha and single:

        def med(runs: Sequence[MasterRun], what: str) -> float:
            values = {
                "registered": [r.registered_seconds for r in runs],
                "started": _got(r.started_seconds for r in runs),
                "steps": _got(
                    None if r.started_seconds is None else r.registered_seconds - r.started_seconds
                    for r in runs
                ),
            }[what]
            return median(values) if values else float("nan")

        notes.append(
            "(b) against (c), medians: registered "
            f"+{med(ha, 'registered') - med(single, 'registered'):.2f} s, failover started "
            f"+{med(ha, 'started') - med(single, 'started'):.2f} s; from failover started to "
            f"registered {med(ha, 'steps'):.2f} s (b) and {med(single, 'steps'):.2f} s (c). The "
            "difference is the wait for the killed leader's lease to lapse in etcd (lease_ttl "
            "3 s, renewed every 1 s: 2-3 s after the kill, then etcd's 500 ms expiry check and a "
            "follower's next 1 s cycle), what (a) measures; the followers had judged the master "
            "down meanwhile ('not the leader: would act'), so the new leader starts the "
            "failover in the cycle it takes the key"
        )
    if ha:
        counts = [len(r.promotions) for r in ha]
        notes.append(
            f"(b) promotions journaled per master death (any instance, etcd): {counts}; "
            + "; ".join(f"killed {r.killed_instance}, then {r.actor} led" for r in ha)
        )
    table_text = "\n\n".join(tables)
    print(table_text)
    publish(
        "coord_failover",
        "Several watchdog instances through etcd: leader killed, master and leader killed",
        [table_text],
        facts,
        notes,
        results_dir=args.results_dir,
    )


if __name__ == "__main__":
    main()
