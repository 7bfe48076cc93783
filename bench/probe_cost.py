"""Benchmark: CPU and wall time of one full status probe, rmq-watchdog against mqadmin.

One status probe = every nameserver's cluster table plus every broker's runtime info (and, for
rmq-watchdog, its config too), as `rmq-watchdog status` shows them. The mqadmin equivalent
that operators script today is `mqadmin clusterList -n NS` plus `mqadmin brokerStatus -n NS -b
ADDR` for each broker: one JVM per call. All methods run interleaved in the same run on the
same sandbox, so a change of machine load hits them alike.

    .venv/bin/python bench/probe_cost.py [--runs 10] [--mqadmin-runs 5] [--base-port 29000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file (bench/_common.py)

from bench._common import (
    ChildRun,
    add_common_arguments,
    bench_dir,
    fmt_ms,
    machine_facts,
    markdown_table,
    median,
    publish,
    run_child,
    running_sandbox,
)
from watchdog.config import WatchdogConfig, load_config
from watchdog.model import ClusterSnapshot
from watchdog.observe import render_status, status_report
from watchdog.probe import Prober
from watchdog.remoting import ClientPool
from watchdog.tools.sandbox import ensure_rocketmq, java_argv

NAME = "probe_cost"
MQADMIN_MAIN = "org.apache.rocketmq.tools.command.MQAdminStartup"
# The JVM options of the distribution's bin/tools.sh, which bin/mqadmin runs.
TOOLS_SH_HEAP = "1g"
TOOLS_SH_OPTIONS = ("-server", "-Xmn256m", "-XX:MetaspaceSize=128m", "-XX:MaxMetaspaceSize=128m")
MQADMIN_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class Sample:
    wall_seconds: float
    cpu_seconds: float


@dataclass(frozen=True)
class Series:
    label: str
    samples: tuple[Sample, ...]

    @property
    def wall_median(self) -> float:
        return median([s.wall_seconds for s in self.samples])

    @property
    def cpu_median(self) -> float:
        return median([s.cpu_seconds for s in self.samples])


class ProbeFailed(RuntimeError):
    """A measured probe did not see the whole healthy cluster: its time would mean nothing."""


def check_complete(snapshot: ClusterSnapshot, config: WatchdogConfig) -> None:
    down = [ns.addr for ns in snapshot.nameservers if not ns.is_up]
    down += [f"{b.broker_name}:{b.broker_id}" for b in snapshot.brokers if not b.is_up]
    if down or len(snapshot.brokers) != len(config.brokers):
        raise ProbeFailed(f"the probe saw {', '.join(down) or 'missing brokers'} down")


async def status_once(config: WatchdogConfig, pool: ClientPool) -> str:
    """What `rmq-watchdog status` does between loading its config and printing."""
    snapshot = await Prober(config, pool).snapshot()
    check_complete(snapshot, config)
    return render_status(status_report(snapshot))


def measure(action: Callable[[], object]) -> Sample:
    # process_time counts every thread of this process (asyncio's resolver threads too).
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return Sample(time.perf_counter() - wall, time.process_time() - cpu)


def cold_probe(config: WatchdogConfig) -> Sample:
    """A fresh event loop and ClientPool (new TCP connections), closed at the end: the CLI's
    work without Python start-up."""

    async def run() -> None:
        pool = ClientPool(connect_timeout_seconds=config.probe.connect_timeout_seconds)
        try:
            await status_once(config, pool)
        finally:
            await pool.close_all()

    return measure(lambda: asyncio.run(run()))


def cli_argv(config_path: Path) -> list[str]:
    entry = Path(sys.executable).parent / "rmq-watchdog"
    if entry.is_file():
        return [str(entry), "status", "-c", str(config_path)]
    return [sys.executable, "-m", "watchdog", "status", "-c", str(config_path)]


def checked(run: ChildRun, what: str, must_contain: Sequence[str]) -> Sample:
    missing = [text for text in must_contain if text not in run.output]
    if run.timed_out or run.exit_code != 0 or missing:
        tail = "\n".join(run.output.splitlines()[-10:])
        state = "timed out" if run.timed_out else f"exit {run.exit_code}"
        raise ProbeFailed(f"{what}: {state}, missing {missing}; output ends:\n{tail}")
    return Sample(run.wall_seconds, run.cpu_seconds)


def ratio(numerator: float, denominator: float) -> str:
    value = numerator / denominator
    return f"{value:.0f}x" if value >= 100 else f"{value:.1f}x"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, default_base_port=29000)
    parser.add_argument("--runs", type=int, default=10, help="repetitions of our probes")
    parser.add_argument("--mqadmin-runs", type=int, default=5, help="repetitions of mqadmin")
    args = parser.parse_args(argv)
    if not 1 <= args.mqadmin_runs <= args.runs:
        parser.error("--mqadmin-runs must be between 1 and --runs")
    facts = machine_facts(args.version)
    lib = ensure_rocketmq(args.version)

    with bench_dir(NAME, args.work_dir, args.keep) as work, running_sandbox(
        work / "sandbox", base_port=args.base_port, version=args.version
    ) as box:
        config = load_config(box.config_path)
        ns = config.nameservers[0]
        broker_addrs = [b.addr for b in config.brokers]
        env = {**os.environ, "ROCKETMQ_HOME": str(box.dir)}  # as the sandbox runs its JVMs
        mq_home = work / "mqadmin-home"
        mq_home.mkdir()
        out = work / "child.out"

        def mqadmin(*words: str) -> ChildRun:
            return run_child(
                java_argv(
                    MQADMIN_MAIN,
                    lib,
                    TOOLS_SH_HEAP,
                    words,
                    jvm_options=[*TOOLS_SH_OPTIONS, f"-Duser.home={mq_home}"],
                ),
                output_path=out,
                env=env,
                timeout_seconds=MQADMIN_TIMEOUT_SECONDS,
            )

        def cluster_list() -> Sample:
            run = mqadmin("clusterList", "-n", ns)
            return checked(run, "mqadmin clusterList", broker_addrs)

        def broker_status(addr: str) -> Sample:
            run = mqadmin("brokerStatus", "-n", ns, "-b", addr)
            return checked(run, f"mqadmin brokerStatus {addr}", ["brokerVersionDesc", "runtime"])

        def cli() -> Sample:
            run = run_child(cli_argv(box.config_path), output_path=out, timeout_seconds=60)
            return checked(run, "rmq-watchdog status", [*broker_addrs, "ASYNC_MASTER", "SLAVE"])

        runner = asyncio.Runner()
        warm_pool = ClientPool(connect_timeout_seconds=config.probe.connect_timeout_seconds)

        def warm_probe() -> Sample:
            return measure(lambda: runner.run(status_once(config, warm_pool)))

        cold: list[Sample] = []
        warm: list[Sample] = []
        cli_runs: list[Sample] = []
        lists: list[Sample] = []
        statuses: list[Sample] = []
        totals: list[Sample] = []
        try:
            # One untimed round of each: connections for the warm pool, page cache for the jars.
            cold_probe(config)
            warm_probe()
            cli()
            cluster_list()
            # mqadmin's rounds spread evenly over the runs, all methods interleaved.
            mq_rounds = {round(k * args.runs / args.mqadmin_runs) for k in range(args.mqadmin_runs)}
            for i in range(args.runs):
                cold.append(cold_probe(config))
                warm.append(warm_probe())
                cli_runs.append(cli())
                if i in mq_rounds:
                    parts = [cluster_list(), *(broker_status(a) for a in broker_addrs)]
                    lists.append(parts[0])
                    statuses.extend(parts[1:])
                    totals.append(
                        Sample(
                            sum(p.wall_seconds for p in parts), sum(p.cpu_seconds for p in parts)
                        )
                    )
                print(f"run {i + 1}/{args.runs} done", file=sys.stderr)
        finally:
            runner.run(warm_pool.close_all())
            runner.close()

    n_brokers = len(broker_addrs)
    mq_total = Series(
        f"mqadmin clusterList + brokerStatus x{n_brokers} ({n_brokers + 1} JVMs)", tuple(totals)
    )
    ours = [
        Series("rmq-watchdog, in-process, cold (fresh ClientPool + event loop)", tuple(cold)),
        Series("rmq-watchdog, in-process, warm (reused ClientPool)", tuple(warm)),
        Series("`rmq-watchdog status` CLI (subprocess, incl. Python start-up)", tuple(cli_runs)),
    ]
    detail = [
        Series("  mqadmin clusterList (1 JVM)", tuple(lists)),
        Series("  mqadmin brokerStatus (1 JVM, per call)", tuple(statuses)),
    ]
    headers = [
        "method",
        "runs",
        "wall median ms",
        "CPU median ms",
        "CPU ratio mqadmin/this",
        "wall ratio mqadmin/this",
    ]
    rows = []
    for series in [*ours, mq_total, *detail]:
        is_detail = series in detail
        rows.append(
            [
                series.label,
                str(len(series.samples)),
                fmt_ms(series.wall_median),
                fmt_ms(series.cpu_median),
                "" if is_detail else ratio(mq_total.cpu_median, series.cpu_median),
                "" if is_detail else ratio(mq_total.wall_median, series.wall_median),
            ]
        )
    table = markdown_table(headers, rows)
    print(table)
    notes = [
        "One status probe = GET_BROKER_CLUSTER_INFO on each of the 2 nameservers plus "
        "GET_BROKER_RUNTIME_INFO and GET_BROKER_CONFIG on each of the 2 brokers (master, slave), "
        "turned into the `status` report. The mqadmin side is clusterList (the cluster table, "
        "plus each broker's runtime info for its TPS columns) and one brokerStatus (runtime "
        "info) per broker; it reads no broker configs, so it does slightly less than ours.",
        "CPU = user + sys. Ours in-process: time.process_time() of this script around the probe. "
        "Subprocesses (the CLI, each mqadmin JVM): the child's own rusage from os.wait4.",
        "mqadmin runs MQAdminStartup from the RocketMQ jars with the JVM options of the "
        "distribution's bin/tools.sh (-server -Xms1g -Xmx1g -Xmn256m -XX:MetaspaceSize=128m "
        "-XX:MaxMetaspaceSize=128m) plus the --add-opens Java 17 needs, ROCKETMQ_HOME = the "
        "sandbox folder.",
        "Methods are interleaved in one run on one sandbox; mqadmin rounds are spread evenly "
        "over the runs. One untimed warm-up of each method first. Medians.",
        "Every measured probe must see both nameservers and both brokers up (and each mqadmin "
        "call must exit 0 with the expected output), or the benchmark fails.",
        "Wall time depends heavily on the load average below (2 cores shared with other "
        "work); the CPU columns are the steadier comparison.",
    ]
    publish(
        NAME,
        "Cost of one full status probe: rmq-watchdog vs mqadmin",
        [table],
        facts,
        notes,
        results_dir=args.results_dir,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
