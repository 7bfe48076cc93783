"""A long healthy run: how often does the watchdog cry wolf? Counts every non-healthy verdict.

A dry-run daemon watches an untouched sandbox for `--minutes` (default 10) while a real producer
writes to it; the table counts cycles by group state and decision. Any MASTER_SDOWN, MASTER_ODOWN
or promote decision on a healthy cluster is a false alarm.

    .venv/bin/python -m bench.healthy_soak --minutes 10
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file (bench/_common.py)

from bench._common import (
    DaemonChild,
    add_common_arguments,
    bench_dir,
    dry_run_copy,
    machine_facts,
    markdown_table,
    running_sandbox,
    write_result,
)


def _produce(namesrv: str, stop: threading.Event, counts: Counter[str]) -> None:
    from rocketmq.client import Message, Producer

    producer = Producer("WatchdogSoakPG")
    producer.set_namesrv_addr(namesrv)
    producer.start()
    try:
        while not stop.is_set():
            msg = Message("WatchdogSoakTopic")
            msg.set_body("soak " + "x" * 500)
            try:
                ok = int(producer.send_sync(msg).status) == 0
            except Exception:  # the native client raises its own types
                ok = False
            counts["acked" if ok else "failed"] += 1
            stop.wait(0.05)
    finally:
        producer.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, default_base_port=29500)
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    facts = machine_facts(args.version)
    with (
        bench_dir("healthy_soak", args.work_dir, args.keep) as work,
        running_sandbox(work / "sandbox", base_port=args.base_port, version=args.version) as box,
    ):
        config = dry_run_copy(box.config_path, work / "watchdog-dry.toml")
        namesrv = ";".join(box.nameserver_addrs())
        sends: Counter[str] = Counter()
        stop = threading.Event()
        producer = threading.Thread(target=_produce, args=(namesrv, stop, sends), daemon=True)
        with DaemonChild(config, work / "daemon.log") as daemon:
            daemon.wait_for(
                lambda e: e.get("state") == "HEALTHY",
                timeout_seconds=60,
                what="first healthy cycle",
            )
            producer.start()
            started = time.monotonic()
            time.sleep(args.minutes * 60)
            elapsed = time.monotonic() - started
            stop.set()
            producer.join(timeout=30)
            lines = [e for e in daemon.events() if "decision" in e and "cycle" in e]
        overruns = sum(1 for e in daemon.events() if e.get("event") == "cycle overran its interval")
    states = Counter(str(e["state"]) for e in lines)
    decisions = Counter(str(e["decision"]) for e in lines)
    false_alarms = sum(states[s] for s in ("MASTER_SDOWN", "MASTER_ODOWN")) + decisions["promote"]
    rows = [[state, str(count)] for state, count in sorted(states.items())]
    rows += [[f"decision {d}", str(c)] for d, c in sorted(decisions.items())]
    rows += [
        ["false alarms (SDOWN, ODOWN or promote)", str(false_alarms)],
        ["cycle overruns", str(overruns)],
        ["producer sends acked / failed", f"{sends['acked']} / {sends['failed']}"],
        ["observed", f"{elapsed / 60:.1f} min, {len(lines)} cycles"],
    ]
    table = markdown_table(["what", "cycles"], rows)
    print(table)
    write_result(
        "healthy_soak",
        "Healthy run: verdicts of a dry-run daemon on an untouched sandbox",
        [table],
        facts,
        [
            "probe.interval 1 s, detect.down_after 3 s, quorum 2, one local secondary check.",
            "The machine was shared with other work while this ran; see the load average.",
        ],
        results_dir=Path(args.results_dir),
    )


if __name__ == "__main__":
    main()
