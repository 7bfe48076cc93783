"""Benchmark: stopping a promotion's candidate slave, graceful vs kill -9, small and big store.

What a failover does to the candidate, measured on a real 4.9.7 sandbox (broker-a master + slave,
TLS disabled): the master is killed first (as in a failover), then, per run, on the slave:

1. consumer offsets are committed to it for 6 s, one commit every 100 ms of an ever larger
   offset (UPDATE_CONSUMER_OFFSET, as a consumer does while the master is down);
2. it is stopped with the sandbox's `stop` argv (SIGTERM, wait until gone: graceful) or its
   `kill` argv (SIGKILL), run as the watchdog runs it (a child process; its wall time);
3. it is started again (`Sandbox.start`, until every nameserver lists it and it answers runtime
   info): its boot recovers the store normally after a graceful stop, abnormally (abort file)
   after a kill. The broker log's "load over" line gives the store load (recovery) alone;
4. the consumer offset it answers is compared with the last one committed: the commits lost,
   and how long before the stop the newest surviving one was made.

Two stores: small (a few hundred 200-byte messages) and big (--big-mib MiB of --message-bytes
messages, 1 KiB by default, each with a key, sent as raw SEND_BATCH_MESSAGE requests of ~3 MiB
to the master and replicated before the master is killed: recovery costs per message, so a
realistic size matters). The modes alternate, graceful first.

    .venv/bin/python bench/candidate_stop.py [--runs 3] [--big-mib 1280] [--stores small big]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file (bench/_common.py)

from bench._common import (
    add_common_arguments,
    bench_dir,
    fmt_s,
    load_average,
    machine_facts,
    markdown_table,
    median,
    publish,
    signal_process,
)
from watchdog.config import load_config
from watchdog.remoting import (
    RemotingClient,
    create_topic,
    get_broker_runtime_info,
    get_cluster_info,
)
from watchdog.tools.daemon_child import child_env
from watchdog.tools.sandbox import Sandbox

NAME = "candidate_stop"
MASTER, SLAVE = "broker-a:0", "broker-a:1"
TOPIC = "BENCH_CANDIDATE_STOP"
GROUP = "BENCH_CANDIDATE_STOP_CG"
COMMIT_SECONDS = 6.0
COMMIT_EVERY_SECONDS = 0.1
# 4.9.7 persists consumer offsets every flushConsumerOffsetInterval (5 s) from 10 s after its
# boot: a candidate in a failover has been up for long, so each run starts after that.
UP_AT_LEAST_SECONDS = 12.0
BURST = "kill, < 60 s after the fill"
SEND_BATCH_CODE = 320
BATCH_BYTES = 3 * 2**20  # under the broker's 4 MiB maxMessageSize for a whole batch
UPDATE_CONSUMER_OFFSET = 15
QUERY_CONSUMER_OFFSET = 14
IN_FLIGHT = 8
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ")


@dataclass(frozen=True)
class Run:
    store: str
    mode: str
    number: int
    store_mib: float
    stop_seconds: float  # the stop/kill argv, spawn to exit
    start_seconds: float  # Sandbox.start until registered everywhere and answering
    load_seconds: float | None  # the broker log: first line -> "load over"
    shutdown: str  # what the boot log says of the last shutdown
    committed: int
    recovered: int | None
    lost_commits: int
    lost_seconds: float  # the newest surviving commit was made this long before the stop
    load1: float


def runtime(addr: str) -> dict[str, str] | None:
    async def ask() -> dict[str, str] | None:
        client = RemotingClient(addr, connect_timeout_seconds=1.0)
        try:
            return dict(await get_broker_runtime_info(client, timeout_seconds=3.0))
        except Exception:  # noqa: BLE001 - "no answer" for this script
            return None
        finally:
            await client.close()

    return asyncio.run(ask())


def listed(nameservers: Sequence[str], addr: str) -> int:
    async def one(ns: str) -> bool:
        client = RemotingClient(ns, connect_timeout_seconds=1.0)
        try:
            info = await get_cluster_info(client, timeout_seconds=2.0)
            return any(addr in ids.values() for ids in info.broker_addrs.values())
        except Exception:  # noqa: BLE001
            return False
        finally:
            await client.close()

    async def every() -> int:
        return sum(await asyncio.gather(*(one(ns) for ns in nameservers)))

    return asyncio.run(every())


def wait_until(predicate: object, timeout_seconds: float, what: str) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_seconds:.0f} s waiting for {what}")
        time.sleep(0.3)


def _batch_item(body: bytes, key: str) -> bytes:
    """One message of a batch body, as 4.9.7's MessageDecoder.encodeMessage lays it out."""
    props = f"KEYS\x01{key}\x02".encode()
    size = 4 + 4 + 4 + 4 + 4 + len(body) + 2 + len(props)
    return b"".join(
        (struct.pack(">iiiii", size, 0, 0, 0, len(body)), body,
         struct.pack(">h", len(props)), props)
    )  # fmt: skip


def send_fill(master: str, count: int, body_bytes: int) -> float:
    """`count` messages of `body_bytes`, each with its own key, to the master's topic (batches
    of ~3 MiB); seconds taken."""
    body = os.urandom(body_bytes)

    async def go() -> float:
        client = RemotingClient(master, connect_timeout_seconds=2.0)
        began = time.monotonic()
        sent = 0
        try:
            await create_topic(client, TOPIC, read_queue_nums=4, write_queue_nums=4,
                               timeout_seconds=10.0)  # fmt: skip

            per_batch = max(1, BATCH_BYTES // (body_bytes + 64))

            async def one(first: int, n: int) -> None:
                # SEND_BATCH_MESSAGE takes SendMessageRequestHeaderV2's one-letter names.
                header = {
                    "a": "BENCH_CANDIDATE_STOP_PG",  # producerGroup
                    "b": TOPIC,
                    "c": "TBW102",  # defaultTopic
                    "d": "4",  # defaultTopicQueueNums
                    "e": str(first % 4),  # queueId
                    "f": "0",  # sysFlag
                    "g": str(int(time.time() * 1000)),  # bornTimestamp
                    "h": "0",  # flag
                    "i": "",  # properties
                    "j": "0",  # reconsumeTimes
                    "k": "false",  # unitMode
                    "m": "true",  # batch
                }
                items = b"".join(_batch_item(body, f"fill-{i}") for i in range(first, first + n))
                reply = await client.request(SEND_BATCH_CODE, header, items, timeout_seconds=60.0)
                if reply.code != 0:
                    raise RuntimeError(f"batch at {first}: code {reply.code} {reply.remark}")

            while sent < count:
                starts = []
                for _ in range(IN_FLIGHT):
                    if sent >= count:
                        break
                    n = min(per_batch, count - sent)
                    starts.append(one(sent, n))
                    sent += n
                await asyncio.gather(*starts)
        finally:
            await client.close()
        return time.monotonic() - began

    return asyncio.run(go())


async def _commit(client: RemotingClient, offset: int) -> None:
    reply = await client.request(
        UPDATE_CONSUMER_OFFSET,
        {"consumerGroup": GROUP, "topic": TOPIC, "queueId": "0", "commitOffset": str(offset)},
        timeout_seconds=3.0,
    )
    if reply.code != 0:
        raise RuntimeError(f"UPDATE_CONSUMER_OFFSET: code {reply.code} {reply.remark}")


def commit_for(addr: str, first: int, seconds: float) -> list[tuple[float, int]]:
    """Commit first, first+1, ... every 100 ms for `seconds`; (wall time, offset) of each."""

    async def go() -> list[tuple[float, int]]:
        client = RemotingClient(addr, connect_timeout_seconds=1.0)
        done: list[tuple[float, int]] = []
        try:
            end = time.monotonic() + seconds
            offset = first
            while time.monotonic() < end:
                await _commit(client, offset)
                done.append((time.time(), offset))
                offset += 1
                await asyncio.sleep(COMMIT_EVERY_SECONDS)
        finally:
            await client.close()
        return done

    return asyncio.run(go())


def query_offset(addr: str) -> int | None:
    async def go() -> int | None:
        client = RemotingClient(addr, connect_timeout_seconds=1.0)
        try:
            reply = await client.request(
                QUERY_CONSUMER_OFFSET,
                {"consumerGroup": GROUP, "topic": TOPIC, "queueId": "0"},
                timeout_seconds=3.0,
            )
        finally:
            await client.close()
        return int(reply.ext_fields["offset"]) if reply.code == 0 else None

    return asyncio.run(go())


def boot_facts(log: Path, since: int) -> tuple[float | None, str]:
    """From the broker log after byte `since`: first line -> "load over" seconds, and whether
    it says the last shutdown was normal or abnormal."""
    with log.open("rb") as fh:
        fh.seek(since)
        text = fh.read().decode(errors="replace")
    first: datetime | None = None
    loaded: datetime | None = None
    shutdown = "?"
    for line in text.splitlines():
        m = LOG_TIME.match(line)
        if m is None:
            continue
        at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
        if first is None:
            first = at
        if "last shutdown normally" in line:
            shutdown = "normal"
        elif "last shutdown abnormally" in line:
            shutdown = "abnormal"
        if loaded is None and "load over" in line:
            loaded = at
    if first is None or loaded is None:
        return None, shutdown
    return (loaded - first).total_seconds(), shutdown


def store_mib(addr: str) -> float:
    """The broker's commitLogMaxOffset in MiB: what its log holds."""
    return int((runtime(addr) or {}).get("commitLogMaxOffset", "0")) / 2**20


def one_store(
    store: str, work: Path, base_port: int, version: str, runs: int, big_mib: int,
    message_bytes: int,
) -> tuple[list[Run], list[str]]:
    notes: list[str] = []
    box = Sandbox(work / f"sandbox-{store}")
    results: list[Run] = []
    try:
        box.up(version=version, base_port=base_port, tls="disabled")
        doc = box.info()
        nameservers = [n["addr"] for n in doc["nameservers"]]
        addrs = {f"{b['broker_name']}:{b['broker_id']}": b["addr"] for b in doc["brokers"]}
        slave_log = Path(next(b["log"] for b in doc["brokers"] if b["broker_id"] == 1))
        config = load_config(box.config_path)
        slave_cfg = config.broker_by_key(SLAVE)
        assert slave_cfg is not None
        count, size = (
            (300, 200) if store == "small" else (big_mib * 2**20 // message_bytes, message_bytes)
        )
        took = send_fill(addrs[MASTER], count, size)

        def caught_up() -> bool:
            m, s = runtime(addrs[MASTER]), runtime(addrs[SLAVE])
            return bool(m and s and m["commitLogMaxOffset"] == s["commitLogMaxOffset"])

        wait_until(caught_up, 300, "the slave catching up")
        filled = time.monotonic()
        end = int((runtime(addrs[SLAVE]) or {}).get("commitLogMaxOffset", "0"))
        notes.append(
            f"{store} store: {count} messages of {size} B sent in {took:.1f} s; the slave's "
            f"commitLogMaxOffset {end} B ({end / 2**20:.0f} MiB)"
        )
        signal_process(box, MASTER, signal.SIGKILL)
        wait_until(lambda: listed(nameservers, addrs[MASTER]) == 0, 60, "the master's drop")
        first = 1_000
        booted = time.monotonic() - UP_AT_LEAST_SECONDS
        # The big store's first run kills the slave within a minute of the fill: its checkpoint
        # (flushed every 60 s) predates the burst, the worst case for abnormal recovery.
        schedule = [BURST] if store == "big" else []
        schedule += ["graceful" if n % 2 else "kill" for n in range(1, 2 * runs + 1)]
        for number, mode in enumerate(schedule, 1):
            time.sleep(max(0.0, booted + UP_AT_LEAST_SECONDS - time.monotonic()))
            if mode == BURST:
                notes.append(
                    f"{store} store: the '{BURST}' run's stop came "
                    f"{time.monotonic() - filled + COMMIT_SECONDS:.0f} s after the fill ended."
                )
            commits = commit_for(addrs[SLAVE], first, COMMIT_SECONDS)
            argv = slave_cfg.stop if mode == "graceful" else slave_cfg.kill
            load1 = load_average()[0]
            stop_began = time.time()
            done = subprocess.run(
                list(argv), capture_output=True, text=True, check=False, timeout=120,
                env=child_env(), stdin=subprocess.DEVNULL,
            )  # fmt: skip
            stop_seconds = time.time() - stop_began
            if done.returncode != 0:
                raise RuntimeError(f"{mode} {argv}: exit {done.returncode}: {done.stderr}")
            wait_until(lambda: listed(nameservers, addrs[SLAVE]) == 0, 60, "the slave's drop")
            since = slave_log.stat().st_size
            began = time.monotonic()
            box.start(SLAVE, wait_registered=True, timeout_seconds=300)
            start_seconds = time.monotonic() - began
            booted = began
            loaded, shutdown = boot_facts(slave_log, since)
            recovered = query_offset(addrs[SLAVE])
            last_at, last = commits[-1]
            survived = [(t, o) for t, o in commits if recovered is not None and o == recovered]
            lost_seconds = (stop_began - survived[0][0]) if survived else float("nan")
            results.append(
                Run(
                    store=store, mode=mode,
                    number=sum(1 for m in schedule[:number] if m == mode),
                    store_mib=store_mib(addrs[SLAVE]), stop_seconds=stop_seconds,
                    start_seconds=start_seconds, load_seconds=loaded, shutdown=shutdown,
                    committed=last, recovered=recovered,
                    lost_commits=last - recovered if recovered is not None else len(commits),
                    lost_seconds=lost_seconds, load1=load1,
                )
            )  # fmt: skip
            r = results[-1]
            print(
                f"{store} {mode} #{r.number}: stop {fmt_s(r.stop_seconds)} s, start "
                f"{fmt_s(r.start_seconds)} s (store load {r.load_seconds} s, {r.shutdown}), "
                f"offsets lost {r.lost_commits} commits ({r.lost_seconds:.1f} s), "
                f"load {load1:.2f}",
                file=sys.stderr,
            )
            first = last + 1_000
    finally:
        if box.cluster_path.exists():
            box.down()
    return results, notes


def _median_cell(values: Sequence[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    return f"{fmt_s(median(known))} ({fmt_s(min(known))}-{fmt_s(max(known))})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, default_base_port=29500)
    parser.add_argument("--runs", type=int, default=3, help="runs per mode and store")
    parser.add_argument(
        "--big-mib", type=int, default=1280, help="the big store's message bodies in MiB"
    )
    parser.add_argument(
        "--message-bytes", type=int, default=1024, help="the big store's message body size"
    )
    parser.add_argument(
        "--stores", nargs="+", choices=["small", "big"], default=["small", "big"]
    )
    args = parser.parse_args(argv)
    facts = machine_facts(args.version)
    runs: list[Run] = []
    notes: list[str] = []
    with bench_dir(NAME, args.work_dir, args.keep) as work:
        for store in args.stores:
            more, said = one_store(store, work, args.base_port, args.version, args.runs,
                                   args.big_mib, args.message_bytes)  # fmt: skip
            runs += more
            notes += said
    rows = []
    for store in args.stores:
        for mode in ("graceful", "kill", BURST):
            mine = [r for r in runs if r.store == store and r.mode == mode]
            if not mine:
                continue
            rows.append(
                [
                    store,
                    f"{median([r.store_mib for r in mine]):.0f}",
                    mode,
                    str(len(mine)),
                    _median_cell([r.stop_seconds for r in mine]),
                    _median_cell([r.start_seconds for r in mine]),
                    _median_cell([r.load_seconds for r in mine]),
                    _median_cell([r.stop_seconds + r.start_seconds for r in mine]),
                    f"{median([float(r.lost_commits) for r in mine]):.0f} "
                    f"({min(r.lost_commits for r in mine)}-{max(r.lost_commits for r in mine)})",
                    f"{min(r.load1 for r in mine):.2f}-{max(r.load1 for r in mine):.2f}",
                ]
            )
    summary = markdown_table(
        ["store", "commitlog MiB", "candidate stop", "runs", "stop s median (min-max)",
         "next boot -> registered s", "of which store load s", "stop + boot s",
         "offset commits lost (of the last 6 s, one per 100 ms)", "load (1 min)"],
        rows,
    )  # fmt: skip
    per_run = markdown_table(
        ["store", "mode", "#", "stop s", "boot s", "store load s", "boot log says",
         "committed", "recovered", "lost commits", "newest kept commit, s before stop",
         "load (1 min)"],
        [
            [r.store, r.mode, str(r.number), fmt_s(r.stop_seconds), fmt_s(r.start_seconds),
             "-" if r.load_seconds is None else fmt_s(r.load_seconds), r.shutdown,
             str(r.committed), str(r.recovered), str(r.lost_commits), f"{r.lost_seconds:.2f}",
             f"{r.load1:.2f}"]
            for r in runs
        ],
    )  # fmt: skip
    notes[:0] = [
        "The master is killed (kill -9) before the runs, as in a failover. Its address refuses "
        "connections at once here; by the 4.9.7 source, an old master that does not answer at "
        "all (host down, partition) can add up to 5 s more to the graceful stop, which waits "
        "for a running SlaveSynchronize task (not measured here).",
        "stop s: the sandbox's `stop` argv (python -m watchdog sandbox stop: SIGTERM, return "
        "once the JVM is gone) or `kill` argv (... kill --signal KILL: SIGKILL, return once "
        "gone), spawned as the watchdog spawns them; about 0.3-0.5 s of each is the Python "
        "interpreter's own start.",
        "next boot -> registered: Sandbox.start until both nameservers list it and it answers "
        "GET_BROKER_RUNTIME_INFO (what the failover's start and wait_master steps wait for); "
        "Sandbox.start polls every 0.2 s (listening) and 0.5 s (registered), so this column "
        "moves in steps (bench/broker_start.py times a start to 50 ms). store load s: from the "
        "boot's first log line to DefaultMessageStore's 'load over' (commitlog and consume "
        "queue recovery; abnormal after a kill, with the abort file).",
        "Offsets: UPDATE_CONSUMER_OFFSET to the slave every 100 ms for 6 s, the stop right "
        "after the last; then QUERY_CONSUMER_OFFSET after the boot. 4.9.7 persists "
        "consumerOffset.json every flushConsumerOffsetInterval (5 s, from 10 s after boot: "
        "each run begins >= 12 s after the slave's last boot) and at a graceful shutdown, so a "
        "kill loses what was committed since its last persist (at most 5 s); consumers then "
        "get those messages again.",
        "The page cache survives a process kill: a kill -9 of the JVM loses no data written "
        "to the commitlog (only a host crash would).",
    ]
    publish(
        NAME,
        f"Stopping the candidate slave: graceful vs kill -9 (RocketMQ {args.version})",
        [summary, "Per run:", per_run],
        facts,
        notes,
        results_dir=args.results_dir,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
