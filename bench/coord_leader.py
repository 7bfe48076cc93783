"""Benchmark: the leading watchdog instance killed (kill -9) until another instance leads.

Three instances, each a child process running a coordinator (watchdog/coord) against a real
3-member etcd cluster on 127.0.0.1 (tests/etcd_cluster.py), each calling `cycle()` every
--interval seconds as the daemon does once per probe cycle. Per run, the leading child is killed
with SIGKILL (no resign: its lease must lapse in etcd), and the time until another child's cycle
reports `is_leader` is measured on the one monotonic clock of the machine. A fresh child takes
the dead one's place before the next run. Repeated for each --ttls value (the lease TTL).

What bounds it: etcd expires the lease at most TTL after the killed leader's last renewal (sent
every TTL/3), checking expiries every 500 ms; then a follower takes the key at its next cycle.

    .venv/bin/python bench/coord_leader.py [--runs 5] [--ttls 3,10] [--interval 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file (bench/_common.py)

from bench._common import (
    RESULTS_DIR,
    bench_dir,
    fmt_s,
    machine_facts,
    markdown_table,
    median,
    publish,
)

PREFIX = "/rmq-watchdog/bench"


# --------------------------------------------------------------------------- the child


async def _child(name: str, endpoints: list[str], ttl: int, interval: float) -> None:
    from watchdog.config import EtcdSettings
    from watchdog.coord import Coordinator

    settings = EtcdSettings.model_validate({"endpoints": endpoints, "lease_ttl": f"{ttl}s"})
    was: tuple[bool, bool] | None = None
    async with Coordinator(settings, instance_name=name, prefix=PREFIX) as coord:
        while True:
            began = time.monotonic()
            view = await coord.cycle({})
            now = (view.is_reachable, view.is_leader)
            if now != was:
                line = {"t": time.monotonic(), "reachable": now[0], "leader": now[1]}
                print(json.dumps({**line, "reason": view.reason}), flush=True)
                was = now
            await asyncio.sleep(max(interval - (time.monotonic() - began), 0.0))


# --------------------------------------------------------------------------- the parent


@dataclass
class Child:
    name: str
    process: subprocess.Popen[str]
    lines: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)

    def pump(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            try:
                self.lines.put(json.loads(raw))
            except ValueError:
                continue


def spawn(name: str, endpoints: tuple[str, ...], ttl: int, interval: float, log: Path) -> Child:
    process = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--child",
            name,
            "--endpoints",
            ",".join(endpoints),
            "--ttl",
            str(ttl),
            "--interval",
            str(interval),
        ],
        stdout=subprocess.PIPE,
        stderr=log.open("ab"),
        stdin=subprocess.DEVNULL,
        text=True,
    )
    child = Child(name, process)
    threading.Thread(target=child.pump, daemon=True).start()
    return child


def wait_for(children: list[Child], want: str, deadline_seconds: float) -> tuple[Child, float]:
    """The first child whose line says `want` ("leader" or "reachable"), and when."""
    end = time.monotonic() + deadline_seconds
    while time.monotonic() < end:
        for child in children:
            try:
                line = child.lines.get_nowait()
            except queue.Empty:
                continue
            if line.get(want):
                return child, float(line["t"])
        time.sleep(0.01)
    raise RuntimeError(f"no child reported {want} within {deadline_seconds:.0f} s")


def measure(
    endpoints: tuple[str, ...], ttl: int, interval: float, runs: int, logs: Path
) -> list[float]:
    children: list[Child] = []
    try:
        for i in (1, 2, 3):
            children.append(spawn(f"wd-{i}", endpoints, ttl, interval, logs / f"wd-{i}.log"))
            time.sleep(0.3)  # wd-1 first: it takes the lead
        leader, _ = wait_for(children, "leader", 30)
        latencies: list[float] = []
        for run in range(runs):
            time.sleep(ttl / 3 * (run % 3) / 2 + 0.5)  # kill at different points of a renewal
            killed_at = time.monotonic()
            os.kill(leader.process.pid, signal.SIGKILL)
            leader.process.wait(timeout=10)
            rest = [c for c in children if c is not leader]
            new, led_at = wait_for(rest, "leader", 4 * ttl + 10)
            latencies.append(led_at - killed_at)
            print(
                f"ttl {ttl} s run {run + 1}: {leader.name} killed, {new.name} leads after "
                f"{led_at - killed_at:.3f} s",
                file=sys.stderr,
            )
            replacement = spawn(leader.name, endpoints, ttl, interval, logs / f"{leader.name}.log")
            children = [*rest, replacement]
            wait_for([replacement], "reachable", 30)
            leader = new
        return latencies
    finally:
        for child in children:
            if child.process.poll() is None:
                child.process.kill()
                child.process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ttls", default="3,10", help="lease TTLs in seconds, comma separated")
    parser.add_argument("--interval", type=float, default=1.0, help="cycle interval, seconds")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--endpoints", help=argparse.SUPPRESS)
    parser.add_argument("--ttl", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(_child(args.child, args.endpoints.split(","), args.ttl, args.interval))
        return

    from tests.etcd_cluster import ETCD, start_etcd_cluster

    facts = machine_facts("n/a (etcd only)")
    etcd_version = subprocess.run(
        [ETCD, "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[0]
    rows = []
    with bench_dir("coord-leader", None, args.keep) as work:
        for ttl in (int(t) for t in args.ttls.split(",")):
            with start_etcd_cluster(work / f"etcd-ttl{ttl}") as cluster:
                found = measure(cluster.endpoints, ttl, args.interval, args.runs, work)
            rows.append(
                [
                    f"{ttl} s",
                    fmt_s(args.interval),
                    str(len(found)),
                    fmt_s(median(found)),
                    fmt_s(min(found)),
                    fmt_s(max(found)),
                    ", ".join(fmt_s(x) for x in found),
                ]
            )
    table = markdown_table(
        ["lease_ttl", "cycle (s)", "runs", "median (s)", "min (s)", "max (s)", "each run (s)"],
        rows,
    )
    print(table)
    publish(
        "coord_leader",
        "Leader instance killed (kill -9) -> another instance leads",
        [table],
        facts,
        [
            f"{etcd_version}; 3 members on 127.0.0.1, heartbeat 100 ms, election 1 s",
            "from the SIGKILL of the leading child to the first cycle of another child that "
            "reports is_leader; each child cycles every `cycle` seconds, as the daemon does",
            "bounds: the lease lapses in etcd TTL after the last renewal (renewals every "
            "TTL/3, so between 2/3 TTL and TTL after the kill), etcd checks lease expiry every "
            "500 ms, and the next follower cycle takes the key",
        ],
        results_dir=args.results_dir,
    )


if __name__ == "__main__":
    main()
