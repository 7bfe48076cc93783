"""Benchmark: failover side by side, rmq-watchdog on RocketMQ 4.9.7 vs 5.3.3 Controller mode.

Each run starts a fresh cluster of one system (one master + one slave on 127.0.0.1, nothing kept
from the run before), breaks its master and measures from the signal:

  (a) kill -9 -> a new master registered as id 0 on the nameserver(s) (GET_BROKER_CLUSTER_INFO
      polled every 50 ms; with two nameservers, on both);
  (b) kill -9 -> the first acknowledged write of a real client (the PyPI `rocketmq` producer,
      librocketmq, sending every 50 ms), for a long-lived producer and for one that is recreated
      after each failed send (so it fetches a fresh route);
  (c) the write outage that producer saw (last ack before the kill -> first ack after it);
  (d) SIGSTOP (a hung master) -> a new master registered as id 0.

rmq-watchdog: `rmq-watchdog sandbox` (4.9.7, two nameservers) and `rmq-watchdog run` acting
(not a dry run). RocketMQ 5.3.3: this script starts a nameserver with the controller embedded
(enableControllerInNamesrv) and two brokers in controller mode with `java -cp` on the jars
`watchdog.sandbox.ensure_rocketmq("5.3.3")` fetches. Both systems get the same detection budget
(3 s of silence, 1 s scans); the runs of the two systems are interleaved.

    .venv/bin/python bench/controller5.py [--runs 5] [--base-port 31000] [--controller-port 31100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file (bench/_common.py)

from bench._common import (
    RESULTS_DIR,
    DaemonChild,
    bench_dir,
    event_time,
    fmt_s,
    machine_facts,
    markdown_table,
    median,
    publish,
)
from watchdog.config import load_config
from watchdog.remoting import (
    RemotingClient,
    RemotingCommand,
    RemotingError,
    RequestCode,
    create_topic,
    get_cluster_info,
    invoke,
)
from watchdog.tools.sandbox import Sandbox, ensure_rocketmq, java_argv

NAME = "controller5"
WATCHDOG = "rmq-watchdog + 4.9.7"
INPLACE = "rmq-watchdog + 4.9.7 in place"
CONTROLLER = "5.3.3 Controller"
SYSTEMS = (WATCHDOG, INPLACE, CONTROLLER)
WATCHDOG_SYSTEMS = (WATCHDOG, INPLACE)
SYSTEM_CHOICES = {"watchdog": WATCHDOG, "inplace": INPLACE, "controller": CONTROLLER}
FAULTS = {"kill -9": signal.SIGKILL, "SIGSTOP": signal.SIGSTOP}
CONTROLLER_VERSION = "5.3.3"
WATCHDOG_VERSION = "4.9.7"
GROUP = "broker-a"
TOPIC = "BenchFailoverTopic"
HOST = "127.0.0.1"

POLL_SECONDS = 0.05  # nameserver poll and producer send interval
SEND_TIMEOUT_MS = 1000
NEW_MASTER_TIMEOUT_SECONDS = 150.0  # a JVM restart on a loaded 2-core machine
# A long-lived client refreshes its routes every 30 s (pollNameServerInterval), so a write can
# take 30 s past the switch: watch that long past the new master before calling it "none".
WRITE_WATCH_SECONDS = 40.0
SETUP_TIMEOUT_SECONDS = 180.0
FAILOVER_FINISH_TIMEOUT_SECONDS = 120.0

# The same detection budget for both: 3 s of silence, checked about every second.
CONTROLLER_NAMESRV_KEYS = {
    "scanNotActiveBrokerInterval": "1000",
    "scanInactiveMasterInterval": "1000",
    "enableElectUncleanMaster": "false",
    "notifyBrokerRoleChanged": "true",
}
CONTROLLER_BROKER_KEYS = {
    "controllerHeartBeatTimeoutMills": "3000",
    "brokerHeartbeatInterval": "1000",
    "syncBrokerMetadataPeriod": "1000",
    "allAckInSyncStateSet": "true",
}

NAMESRV_MAIN = "org.apache.rocketmq.namesrv.NamesrvStartup"
BROKER_MAIN = "org.apache.rocketmq.broker.BrokerStartup"


# --------------------------------------------------------------------------- remoting helpers


async def _cluster_tables(nameservers: Sequence[str]) -> list[Mapping[int, str] | None]:
    """broker-a's {id: addr} on each nameserver (None: the nameserver did not answer)."""

    async def one(addr: str) -> Mapping[int, str] | None:
        client = RemotingClient(addr, connect_timeout_seconds=1.0)
        try:
            info = await get_cluster_info(client, timeout_seconds=1.0)
            return dict(info.broker_addrs.get(GROUP, {}))
        except RemotingError:
            return None
        finally:
            await client.close()

    return list(await asyncio.gather(*(one(a) for a in nameservers)))


def cluster_tables(nameservers: Sequence[str]) -> list[Mapping[int, str] | None]:
    return asyncio.run(_cluster_tables(nameservers))


async def _request(addr: str, code: int, ext: Mapping[str, str] | None = None) -> RemotingCommand:
    client = RemotingClient(addr, connect_timeout_seconds=1.0)
    try:
        return await invoke(client, code, ext, timeout_seconds=2.0)
    finally:
        await client.close()


def request(addr: str, code: int, ext: Mapping[str, str] | None = None) -> RemotingCommand:
    return asyncio.run(_request(addr, code, ext))


def has_topic(broker_addr: str, topic: str) -> bool:
    try:
        reply = request(broker_addr, RequestCode.GET_ALL_TOPIC_CONFIG)
    except RemotingError:
        return False
    return f'"{topic}"'.encode() in reply.body


def make_topic(master_addr: str, topic: str) -> None:
    async def go() -> None:
        client = RemotingClient(master_addr, connect_timeout_seconds=1.0)
        try:
            await create_topic(
                client, topic, read_queue_nums=4, write_queue_nums=4, timeout_seconds=3.0
            )
        finally:
            await client.close()

    asyncio.run(go())


async def watch_new_master(
    nameservers: Sequence[str], old_master: str, since: float, timeout_seconds: float
) -> float | None:
    """Seconds from `since` (monotonic) until every nameserver lists broker-a id 0 at an address
    other than `old_master`; None if that does not happen within `timeout_seconds`."""
    clients = [RemotingClient(a, connect_timeout_seconds=0.5) for a in nameservers]
    try:
        while time.monotonic() - since < timeout_seconds:
            started = time.monotonic()

            async def one(client: RemotingClient) -> str | None:
                try:
                    info = await get_cluster_info(client, timeout_seconds=1.0)
                except RemotingError:
                    return None
                return info.broker_addrs.get(GROUP, {}).get(0)

            masters = await asyncio.gather(*(one(c) for c in clients))
            if all(m is not None and m != old_master for m in masters):
                return time.monotonic() - since
            await asyncio.sleep(max(0.0, POLL_SECONDS - (time.monotonic() - started)))
        return None
    finally:
        for client in clients:
            await client.close()


def wait_for(predicate: Callable[[], Any], timeout_seconds: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_seconds:.0f} s waiting for {what}")
        time.sleep(0.3)


def log_tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


# --------------------------------------------------------------------------- real producers


def producer_child(argv: Sequence[str]) -> int:
    """The child: send one message per interval and write one JSON line per send to a file
    (absolute CLOCK_MONOTONIC times, shared with the parent). Mode `steady` keeps one producer;
    `fresh` shuts it down after a failed send and starts a new one, which fetches a new route."""
    out_path, namesrv, topic, mode = argv[0], argv[1], argv[2], argv[3]
    interval = float(argv[4])
    from rocketmq.client import Message, Producer

    def new_producer() -> Any:
        producer = Producer("BenchFailoverPG", timeout=SEND_TIMEOUT_MS)
        producer.set_namesrv_addr(namesrv)
        producer.start()
        return producer

    with open(out_path, "a", buffering=1) as out:
        producer = new_producer()
        number = 0
        while True:  # until the parent kills us
            number += 1
            sent_at = time.monotonic()
            message = Message(topic)
            message.set_keys(f"{mode}-{number}")
            message.set_body(f"bench {mode} {number}")
            doc: dict[str, Any] = {"at": sent_at}
            try:
                result = producer.send_sync(message)
            except Exception as exc:  # the ctypes client raises its own exception types
                doc.update(ok=False, error=f"{type(exc).__name__}: {str(exc).strip()[:160]}")
                if mode == "fresh":
                    producer.shutdown()
                    producer = new_producer()
            else:
                # Any status means the broker stored it (SLAVE_NOT_AVAILABLE included).
                doc.update(ok=True, status=str(getattr(result.status, "name", result.status)))
            doc["end"] = time.monotonic()
            out.write(json.dumps(doc) + "\n")
            pause = sent_at + interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)


@dataclass(frozen=True)
class Send:
    at: float
    end: float
    is_ok: bool
    status: str | None
    error: str | None


class ProducerProcess:
    """One producer child; its sends read back from its file."""

    def __init__(self, path: Path, namesrv: str, mode: str) -> None:
        self.path = path
        self.mode = mode
        path.write_text("")
        self._log = path.with_suffix(".log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--producer-child", str(path),
             namesrv, TOPIC, mode, str(POLL_SECONDS)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def sends(self) -> list[Send]:
        out: list[Send] = []
        for line in self.path.read_text(errors="replace").splitlines():
            with suppress(ValueError, KeyError):
                doc = json.loads(line)
                ok, status, error = bool(doc["ok"]), doc.get("status"), doc.get("error")
                out.append(Send(float(doc["at"]), float(doc["end"]), ok, status, error))
        return out

    def acks_after(self, since: float) -> list[Send]:
        return [s for s in self.sends() if s.is_ok and s.at >= since]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self._log.close()


@dataclass(frozen=True)
class WriteOutcome:
    first_write_seconds: float | None  # kill -> end of the first ack of a send begun after it
    outage_seconds: float | None  # end of the last ack before the kill -> that first ack
    failed_sends: int
    first_error: str | None


def write_outcome(sends: Sequence[Send], killed_at: float) -> WriteOutcome:
    before = [s for s in sends if s.is_ok and s.end <= killed_at]
    after = [s for s in sends if s.is_ok and s.at >= killed_at]
    failed = [s for s in sends if not s.is_ok and s.at >= killed_at]
    if not after:
        return WriteOutcome(None, None, len(failed), failed[0].error if failed else None)
    first = after[0]
    failed = [s for s in failed if s.at < first.at]
    last_before = before[-1].end if before else killed_at
    return WriteOutcome(
        first.end - killed_at,
        first.end - last_before,
        len(failed),
        failed[0].error if failed else None,
    )


# --------------------------------------------------------------------------- one cluster each


@dataclass
class Cluster:
    """What a run needs from either system: its nameservers, master, and a way to signal it."""

    nameservers: list[str]
    master_addr: str
    slave_addr: str
    master_pid: int
    stop: Callable[[], None]
    details: dict[str, Any] = field(default_factory=dict)


def _logback(path: Path) -> None:
    # 5.x ships logback shaded under org.apache.rocketmq.logging; everything goes to stdout.
    package = "org.apache.rocketmq.logging.ch.qos.logback"
    path.write_text(
        "<configuration>\n"
        f'  <appender name="OUT" class="{package}.core.ConsoleAppender">\n'
        f'    <encoder class="{package}.classic.encoder.PatternLayoutEncoder">\n'
        "      <pattern>%d{HH:mm:ss.SSS} %-5level [%thread] %logger{0} - %msg%n</pattern>\n"
        "    </encoder>\n"
        "  </appender>\n"
        '  <root level="INFO"><appender-ref ref="OUT"/></root>\n'
        "</configuration>\n"
    )


def _properties(path: Path, values: Mapping[str, str]) -> None:
    # No trailing spaces: 5.x reads "true " as false without a word (MixAll.properties2Object).
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))


class ControllerCluster:
    """RocketMQ 5.3.3 in controller mode: one nameserver with the controller embedded, and two
    brokers (brokerId -1, role SLAVE in the files: the controller assigns ids and roles)."""

    def __init__(self, directory: Path, lib: Path, port: int) -> None:
        self.dir = directory
        self.lib = lib
        self.namesrv = f"{HOST}:{port}"
        self.controller = f"{HOST}:{port + 2}"  # the controller serves on its DLedger peer port
        self.brokers = [f"{HOST}:{port + 11}", f"{HOST}:{port + 21}"]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[Any] = []

    def _spawn(self, name: str, main: str, props: Path, heap: str) -> None:
        home = self.dir / "home" / name
        home.mkdir(parents=True, exist_ok=True)
        argv = java_argv(
            main,
            self.lib,
            heap,
            ["-c", str(props)],
            jvm_options=[
                "-Dtls.server.mode=disabled",  # no self-signed key generated at each boot
                f"-Duser.home={home}",
                f"-Drmq.logback.configurationFile={self.dir / 'rmq.logback.xml'}",
            ],
        )
        log = (self.dir / f"{name}.out").open("ab")
        self._logs.append(log)
        self.procs[name] = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ROCKETMQ_HOME": str(self.dir)},
            start_new_session=True,
        )

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"5.x {name} exited ({proc.returncode}):\n{log_tail(self.dir / f'{name}.out')}"
                )

    def _wait(self, predicate: Callable[[], Any], timeout_seconds: float, what: str) -> Any:
        def check() -> Any:
            self._check_alive()
            return predicate()

        try:
            return wait_for(check, timeout_seconds, what)
        except TimeoutError as exc:
            tails = "\n".join(f"--- {n}:\n{log_tail(self.dir / f'{n}.out', 6)}" for n in self.procs)
            raise TimeoutError(f"{exc}\n{tails}") from None

    def replica_info(self) -> tuple[int, list[int]] | None:
        """(master broker id, SyncStateSet ids) from the controller, or None."""
        try:
            reply = request(self.controller, 1004, {"brokerName": GROUP})  # GET_REPLICA_INFO
            body = json.loads(reply.body or b"{}")
            return int(reply.ext_fields.get("masterBrokerId", "-1")), list(body["syncStateSet"])
        except (RemotingError, ValueError, KeyError, TypeError):
            return None

    def _is_leader(self) -> bool:
        try:
            reply = request(self.controller, 1005)  # CONTROLLER_GET_METADATA_INFO
        except RemotingError:
            return False
        return reply.ext_fields.get("isLeader") == "true"

    def start(self, timeout_seconds: float) -> Cluster:
        deadline = time.monotonic() + timeout_seconds
        self.dir.mkdir(parents=True, exist_ok=True)
        _logback(self.dir / "rmq.logback.xml")
        namesrv_props = self.dir / "namesrv.properties"
        _properties(
            namesrv_props,
            {
                "listenPort": self.namesrv.rsplit(":", 1)[1],
                "bindAddress": HOST,
                "enableControllerInNamesrv": "true",
                "controllerDLegerGroup": "group1",
                "controllerDLegerPeers": f"n0-{self.controller}",
                "controllerDLegerSelfId": "n0",
                "controllerStorePath": str(self.dir / "controller"),
                **CONTROLLER_NAMESRV_KEYS,
            },
        )
        try:
            self._spawn("namesrv", NAMESRV_MAIN, namesrv_props, "192m")
            self._wait(self._is_leader, deadline - time.monotonic(), "the controller to lead")
            for index, addr in enumerate(self.brokers):
                port = int(addr.rsplit(":", 1)[1])
                store = self.dir / f"n{index}"
                props = self.dir / f"broker-n{index}.properties"
                _properties(
                    props,
                    {
                        "brokerClusterName": "DefaultCluster",
                        "brokerName": GROUP,
                        "brokerId": "-1",
                        "brokerRole": "SLAVE",
                        "namesrvAddr": self.namesrv,
                        "brokerIP1": HOST,
                        "brokerIP2": HOST,
                        "bindAddress": HOST,
                        "listenPort": str(port),
                        "storePathRootDir": str(store),
                        "storePathCommitLog": str(store / "commitlog"),
                        "enableControllerMode": "true",
                        "controllerAddr": self.controller,
                        **CONTROLLER_BROKER_KEYS,
                    },
                )
                self._spawn(f"n{index}", BROKER_MAIN, props, "256m")
                if index == 0:
                    # The first broker to register becomes master; start the slave after it.
                    self._wait(
                        lambda: (cluster_tables([self.namesrv])[0] or {}).get(0) == self.brokers[0],
                        deadline - time.monotonic(),
                        "n0 registered as master (id 0)",
                    )

            def slave_in_sync() -> bool:
                table = cluster_tables([self.namesrv])[0] or {}
                info = self.replica_info()
                listed = self.brokers[1] in [a for i, a in table.items() if i != 0]
                return bool(listed and info is not None and len(info[1]) == 2)

            self._wait(slave_in_sync, deadline - time.monotonic(), "n1 in the SyncStateSet")
        except BaseException:
            self.stop()
            raise
        return Cluster(
            nameservers=[self.namesrv],
            master_addr=self.brokers[0],
            slave_addr=self.brokers[1],
            master_pid=self.procs["n0"].pid,
            stop=self.stop,
        )

    def stop(self) -> None:
        """SIGKILL everything (the stores are thrown away), then reap."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
        for proc in self.procs.values():
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
        for log in self._logs:
            log.close()
        self._logs.clear()


class WatchdogCluster:
    """A 4.9.7 sandbox (two nameservers, master + slave) watched by `rmq-watchdog run`."""

    def __init__(
        self, directory: Path, base_port: int, replication: str, *, promotion: str = "restart"
    ) -> None:
        self.dir = directory
        self.base_port = base_port
        self.replication = replication
        self.promotion = promotion
        self.box = Sandbox(directory / "sandbox")
        self.daemon: DaemonChild | None = None
        self._spawned: list[int] = []

    def start(self, timeout_seconds: float) -> Cluster:
        # The in-place arm's brokers carry the promotion plug-in (sandbox up --promotion inplace).
        extra: dict[str, Any] = {"promotion": self.promotion} if self.promotion != "restart" else {}
        self.box.up(
            version=WATCHDOG_VERSION,
            replication=self.replication,  # type: ignore[arg-type]
            base_port=self.base_port,
            tls="disabled",
            timeout_seconds=timeout_seconds,
            **extra,
        )
        try:
            doc = self.box.info()
            brokers = {f"{b['broker_name']}:{b['broker_id']}": b for b in doc["brokers"]}
            master, slave = brokers[f"{GROUP}:0"], brokers[f"{GROUP}:1"]
            self.daemon = DaemonChild(self.box.config_path, self.dir / "daemon.log")
            self.daemon.wait_for(
                lambda e: e.get("broker_name") == GROUP and e.get("state") == "HEALTHY",
                timeout_seconds=60,
                what="a HEALTHY cycle",
            )
            pid = self.box.pid(f"{GROUP}:0")
            if pid is None:
                raise RuntimeError("the sandbox master is not running")
            # The JVMs `up` spawned are our children: reaped after `down`, or they stay zombies.
            self._spawned = [p["pid"] for p in [*doc["nameservers"], *doc["brokers"]] if p["pid"]]
            config = load_config(self.box.config_path)
            checks = "; ".join(
                f"`{' '.join(c.command)}` (timeout {c.timeout_seconds:g} s)"
                for c in config.secondary_checks
            )
            settings = {
                "down_after": f"{config.detect.down_after_seconds:g} s",
                "interval": f"{config.probe.interval_seconds:g} s",
                "timeout": f"{config.probe.timeout_seconds:g} s",
                "quorum": str(config.detect.quorum),
                "secondary": checks or "none",
            }
            return Cluster(
                nameservers=list(self.box.nameserver_addrs()),
                master_addr=master["addr"],
                slave_addr=slave["addr"],
                master_pid=pid,
                stop=self.stop,
                details={
                    "daemon": self.daemon,
                    "settings": settings,
                    "restart_limit": self.restart_limit,
                },
            )
        except BaseException:
            self.stop()
            raise

    def restart_limit(self) -> float | None:
        """The restart path's physical limit on this cluster, after its failover: with the
        daemon stopped, kill -9 of the new master (broker-a:1, now id 0) and start it again as it
        is; seconds from the kill until every nameserver lists it as id 0 again (abnormal store
        recovery included, as after the failover's own kill of the candidate)."""
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None
        key = f"{GROUP}:1"
        tables = cluster_tables(self.box.nameserver_addrs())
        addr = next((t.get(0) for t in tables if t), None)
        if addr is None or self.box.pid(key) is None:
            return None
        killed_at = time.monotonic()
        self.box.kill(key)
        self.box.start(key, wait_registered=True, timeout_seconds=NEW_MASTER_TIMEOUT_SECONDS)
        while time.monotonic() - killed_at < NEW_MASTER_TIMEOUT_SECONDS:
            if all(t is not None and t.get(0) == addr for t in cluster_tables(
                    self.box.nameserver_addrs())):  # fmt: skip
                return time.monotonic() - killed_at
            time.sleep(POLL_SECONDS)
        return None

    def stop(self) -> None:
        try:
            if self.daemon is not None:
                self.daemon.stop()
        finally:
            self.daemon = None
            if self.box.cluster_path.exists():
                self.box.down()
            for pid in self._spawned:
                with suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)


# --------------------------------------------------------------------------- one run


@dataclass(frozen=True)
class RunResult:
    system: str
    fault: str
    run: int
    new_master_seconds: float | None
    steady: WriteOutcome | None = None
    fresh: WriteOutcome | None = None
    odown_seconds: float | None = None  # watchdog only: its MASTER_ODOWN log line
    failover_seconds: float | None = None  # watchdog only: the failover's own duration
    note: str = ""
    steps: tuple[tuple[str, float], ...] = ()  # watchdog only: each failover step, its seconds
    restart_limit_seconds: float | None = None  # watchdog only: one broker restart, same cluster


def prepare_topic(cluster: Cluster) -> None:
    """The topic on the master, and on the slave too (metadata reaches a slave only every
    10-13 s; a topic missing on the new master would fail writes for reasons of its own)."""
    make_topic(cluster.master_addr, TOPIC)
    wait_for(lambda: has_topic(cluster.slave_addr, TOPIC), 60, f"{TOPIC} on the slave")


ROUTE_FIRST_POLL_SECONDS = 3.0  # librocketmq's route timer: first read after start
ROUTE_POLL_SECONDS = 30.0  # then every 30 s (pollNameServerInterval, not settable from Python)


def route_timer_phase(run: int) -> float:
    """Where run `run`'s kill falls in the long-lived producer's 30 s route timer (seconds
    after a timed route read): the same for every system in a run, spread evenly over the
    timer across runs (golden-ratio steps), so no system's runs all land just before a read."""
    return ((run * 0.6180339887) % 1.0) * ROUTE_POLL_SECONDS


def one_run(system: str, fault: str, run: int, cluster: Cluster) -> RunResult:
    producers: list[ProducerProcess] = []
    work = Path(cluster.details.get("work", "."))
    try:
        if fault == "kill -9":
            prepare_topic(cluster)
            namesrv = ";".join(cluster.nameservers)
            spawned = time.monotonic()
            for mode in ("steady", "fresh"):
                producers.append(ProducerProcess(work / f"producer-{mode}.jsonl", namesrv, mode))
            start = time.monotonic()
            wait_for(
                lambda: all(len(p.acks_after(start)) >= 5 for p in producers),
                60,
                "both producers writing",
            )
            time.sleep(1.0)
            # The long-lived producer's first write after the kill depends on where the kill
            # falls in its 30 s route timer (librocketmq: first read ~3 s after start, then every
            # 30 s): run i kills every system at the same phase, spread over the 30 s by run.
            phase = route_timer_phase(run)
            kill_at = spawned + ROUTE_FIRST_POLL_SECONDS + phase
            while kill_at < time.monotonic():
                kill_at += ROUTE_POLL_SECONDS
            time.sleep(kill_at - time.monotonic())
        wall_at = time.time()
        killed_at = time.monotonic()
        os.kill(cluster.master_pid, FAULTS[fault])
        new_master = asyncio.run(
            watch_new_master(
                cluster.nameservers, cluster.master_addr, killed_at, NEW_MASTER_TIMEOUT_SECONDS
            )
        )
        steady = fresh = None
        if producers:
            until = time.monotonic() + WRITE_WATCH_SECONDS
            while time.monotonic() < until and not all(p.acks_after(killed_at) for p in producers):
                time.sleep(0.2)
            for p in producers:
                p.stop()
            steady = write_outcome(producers[0].sends(), killed_at)
            fresh = write_outcome(producers[1].sends(), killed_at)
        odown = failover = limit = None
        note = ""
        steps: tuple[tuple[str, float], ...] = ()
        daemon = cluster.details.get("daemon")
        if isinstance(daemon, DaemonChild):
            odown, failover, note, steps = watchdog_timings(daemon, wall_at)
            restart = cluster.details.get("restart_limit")
            if fault == "kill -9" and callable(restart) and new_master is not None:
                limit = restart()
        return RunResult(
            system, fault, run, new_master, steady, fresh, odown, failover, note, steps, limit
        )
    finally:
        for p in producers:
            with suppress(Exception):
                p.stop()


def watchdog_timings(
    daemon: DaemonChild, wall_at: float
) -> tuple[float | None, float | None, str, tuple[tuple[str, float], ...]]:
    """MASTER_ODOWN after the fault, the failover's own duration once it finished, a note if it
    did not succeed, and its steps with their seconds."""
    odown: float | None = None
    with suppress(TimeoutError, RuntimeError):
        line = daemon.wait_for(
            lambda e: (
                e.get("broker_name") == GROUP
                and e.get("state") == "MASTER_ODOWN"
                and event_time(e) >= wall_at
            ),
            timeout_seconds=5,
            what="MASTER_ODOWN",
        )
        odown = event_time(line) - wall_at
    try:
        done = daemon.wait_for(
            lambda e: (
                str(e.get("event", "")).startswith("failover ")
                and "duration_seconds" in e
                and event_time(e) >= wall_at
            ),
            timeout_seconds=FAILOVER_FINISH_TIMEOUT_SECONDS,
            what="the failover to finish",
        )
    except (TimeoutError, RuntimeError) as exc:
        return odown, None, f"failover did not finish: {str(exc).splitlines()[0]}", ()
    note = "" if "succeeded" in str(done.get("event")) else str(done.get("event"))[:120]
    steps = tuple(
        (f"{e['step']} {e.get('broker', '')}".strip(), float(e["duration_seconds"]))
        for e in daemon.events()
        if str(e.get("event", "")).startswith("step ")
        and "step" in e
        and "duration_seconds" in e
        and event_time(e) >= wall_at
    )
    return odown, float(done["duration_seconds"]), note, steps


# --------------------------------------------------------------------------- tables


def _fmt(value: float | None) -> str:
    return fmt_s(value) if value is not None else "none"


def _median_cell(values: Sequence[float | None]) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "none"
    cell = fmt_s(median(got))
    return cell if len(got) == len(values) else f"{cell} ({len(got)}/{len(values)})"


def _median_of(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return median(got) if got else None


def summary_table(results: Sequence[RunResult], systems: Sequence[str]) -> str:
    def pick(system: str, fault: str) -> list[RunResult]:
        return [r for r in results if r.system == system and r.fault == fault]

    metrics: list[tuple[str, str, Callable[[RunResult], float | None]]] = [
        ("(e) kill -9 -> MASTER_ODOWN (the watchdog's detection)", "kill -9",
         lambda r: r.odown_seconds),
        ("(a) kill -9 -> new master id 0 on nameserver(s)", "kill -9",
         lambda r: r.new_master_seconds),
        ("(f) physical limit: one broker restart (kill -9 -> id 0 again), same cluster", "kill -9",
         lambda r: r.restart_limit_seconds),
        ("(b) kill -9 -> first write, long-lived producer", "kill -9",
         lambda r: r.steady.first_write_seconds if r.steady else None),
        ("(c) write outage, long-lived producer", "kill -9",
         lambda r: r.steady.outage_seconds if r.steady else None),
        ("(b') kill -9 -> first write, producer recreated after a failure", "kill -9",
         lambda r: r.fresh.first_write_seconds if r.fresh else None),
        ("(c') write outage, producer recreated after a failure", "kill -9",
         lambda r: r.fresh.outage_seconds if r.fresh else None),
        ("(d) SIGSTOP -> new master id 0 on nameserver(s)", "SIGSTOP",
         lambda r: r.new_master_seconds),
    ]  # fmt: skip
    ours = [s for s in systems if s in WATCHDOG_SYSTEMS]
    has_controller = CONTROLLER in systems
    rows = []
    for label, fault, get in metrics:
        cells = [label]
        medians: dict[str, float | None] = {}
        for system in systems:
            values = [get(r) for r in pick(system, fault)]
            cells.append(_median_cell(values) if any(v is not None for v in values) else "-")
            medians[system] = _median_of(values)
        if has_controller:
            controller = medians[CONTROLLER]
            for system in ours:
                mine = medians[system]
                cells.append(f"{mine / controller:.1f}" if mine and controller else "-")
        rows.append(cells)
    header = ["median seconds", *systems]
    if has_controller:
        header += [f"ratio {s.removeprefix('rmq-watchdog + 4.9.7').strip() or 'restart'} / "
                   "controller" for s in ours]  # fmt: skip
    return markdown_table(header, rows)


def step_table(results: Sequence[RunResult], systems: Sequence[str]) -> str:
    """Median seconds of each failover step (kind and broker) per watchdog system, kill -9 runs.
    Steps of one lane run side by side with the other lane's, so they do not add up."""
    ours = [s for s in systems if s in WATCHDOG_SYSTEMS]
    labels: list[str] = []
    values: dict[tuple[str, str], list[float]] = {}
    for r in results:
        if r.system not in ours or r.fault != "kill -9":
            continue
        for label, seconds in r.steps:
            if label not in labels:
                labels.append(label)
            values.setdefault((r.system, label), []).append(seconds)
    rows = [
        [label, *(_median_cell(values.get((s, label), [])) if values.get((s, label)) else "-"
                  for s in ours)]
        for label in labels
    ]  # fmt: skip
    return markdown_table(["step (kill -9 runs), median s", *ours], rows)


def _short_error(text: str) -> str:
    # librocketmq appends ",error:-1,in file <source> line:N" to every message.
    return text.split(",error:")[0].replace("|", "/")[:90]


def per_run_table(results: Sequence[RunResult]) -> str:
    rows = []
    for r in results:
        steady, fresh = r.steady, r.fresh
        rows.append(
            [
                r.system,
                r.fault,
                str(r.run),
                _fmt(r.new_master_seconds),
                _fmt(steady.first_write_seconds) if steady else "-",
                _fmt(steady.outage_seconds) if steady else "-",
                str(steady.failed_sends) if steady else "-",
                _fmt(fresh.first_write_seconds) if fresh else "-",
                _fmt(fresh.outage_seconds) if fresh else "-",
                _fmt(r.odown_seconds) if r.system in WATCHDOG_SYSTEMS else "-",
                _fmt(r.failover_seconds) if r.system in WATCHDOG_SYSTEMS else "-",
                _fmt(r.restart_limit_seconds) if r.restart_limit_seconds is not None else "-",
                ", ".join(f"{label} {seconds:.1f}" for label, seconds in r.steps) or "-",
                _short_error(r.note or (steady.first_error or "" if steady else "")),
            ]
        )
    return markdown_table(
        ["system", "fault", "run", "new master s", "first write s", "outage s", "failed sends",
         "fresh first write s", "fresh outage s", "ODOWN s", "failover s",
         "one restart s", "watchdog steps (s)", "note / first send error"],
        rows,
    )  # fmt: skip


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["--producer-child"]:
        return producer_child(args_in[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per system and fault")
    parser.add_argument(
        "--base-port", type=int, default=31000, help="the 4.9.7 sandbox's base port (~31 ports)"
    )
    parser.add_argument(
        "--controller-port",
        type=int,
        default=31100,
        help="the 5.x nameserver; the controller is +2, the brokers +11 and +21 (~25 ports)",
    )
    parser.add_argument(
        "--replication",
        choices=["sync", "async"],
        default="sync",
        help="the 4.9.7 sandbox's replication (sync matches allAckInSyncStateSet)",
    )
    parser.add_argument("--faults", nargs="+", choices=list(FAULTS), default=list(FAULTS))
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEM_CHOICES),
                        default=["watchdog", "controller"],
                        help="watchdog: the restart path; inplace: in-place promotion through "
                             "the broker plug-in (sandbox up --promotion inplace)")  # fmt: skip
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep logs and stores afterwards")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(args_in)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    facts = machine_facts(f"{WATCHDOG_VERSION} (watchdog) and {CONTROLLER_VERSION} (controller)")
    lib5 = ensure_rocketmq(CONTROLLER_VERSION)
    ensure_rocketmq(WATCHDOG_VERSION)
    systems = [s for s in SYSTEMS if s in {SYSTEM_CHOICES[c] for c in args.systems}]
    results: list[RunResult] = []
    watchdog_settings: dict[str, str] = {}
    loads: list[float] = []
    errors: list[str] = []
    with bench_dir(NAME, args.work_dir, args.keep) as work:
        for run in range(1, args.runs + 1):
            for fault in args.faults:
                for system in systems:
                    tag = {WATCHDOG: "wd", INPLACE: "ip", CONTROLLER: "c5"}[system]
                    slug = f"{tag}-{fault.split()[0]}-{run}"
                    run_dir = work / slug
                    run_dir.mkdir()
                    manager: WatchdogCluster | ControllerCluster
                    if system in WATCHDOG_SYSTEMS:
                        manager = WatchdogCluster(
                            run_dir,
                            args.base_port,
                            args.replication,
                            promotion="inplace" if system == INPLACE else "restart",
                        )
                    else:
                        manager = ControllerCluster(run_dir, lib5, args.controller_port)
                    loads.append(os.getloadavg()[0])
                    try:
                        cluster = manager.start(SETUP_TIMEOUT_SECONDS)
                    except Exception as exc:
                        message = f"{system} {fault} run {run}: setup failed: {exc}"
                        print(message, file=sys.stderr)
                        errors.append(message.splitlines()[0])
                        continue
                    cluster.details["work"] = str(run_dir)
                    watchdog_settings.update(cluster.details.get("settings", {}))
                    try:
                        result = one_run(system, fault, run, cluster)
                    except Exception as exc:
                        message = f"{system} {fault} run {run}: {type(exc).__name__}: {exc}"
                        print(message, file=sys.stderr)
                        errors.append(message.splitlines()[0])
                        continue
                    finally:
                        cluster.stop()
                        if not args.keep:
                            shutil.rmtree(run_dir / "sandbox" / "store", ignore_errors=True)
                            for sub in ("n0", "n1", "controller"):
                                shutil.rmtree(run_dir / sub, ignore_errors=True)
                    results.append(result)
                    steady = result.steady
                    print(
                        f"{system} {fault} run {run}: new master "
                        f"{_fmt(result.new_master_seconds)} s"
                        + (
                            f", first write {_fmt(steady.first_write_seconds)} s "
                            f"(fresh producer {_fmt(result.fresh.first_write_seconds)} s)"
                            if steady and result.fresh
                            else ""
                        )
                        + (f" [{result.note}]" if result.note else ""),
                        file=sys.stderr,
                    )
    summary = summary_table(results, systems)
    steps = step_table(results, systems)
    runs = per_run_table(results)
    print(summary)
    print()
    print(steps)
    print()
    print(runs)
    notes = build_notes(args, loads, errors, watchdog_settings)
    publish(
        NAME,
        "Failover side by side: rmq-watchdog on 4.9.7 vs RocketMQ 5.3.3 Controller mode",
        [
            summary,
            "Failover steps (from the daemon's log):\n\n" + steps,
            "Per run (seconds from the signal):\n\n" + runs,
        ],
        facts,
        notes,
        results_dir=args.results_dir,
    )
    return 0 if not errors else 1


def build_notes(
    args: argparse.Namespace,
    loads: Sequence[float],
    errors: Sequence[str],
    watchdog_settings: Mapping[str, str],
) -> list[str]:
    sandbox_config = watchdog_settings or {
        k: "?" for k in ("down_after", "interval", "timeout", "quorum", "secondary")
    }
    budget = ", ".join(f"{k}={v}" for k, v in {**CONTROLLER_NAMESRV_KEYS,
                                               **CONTROLLER_BROKER_KEYS}.items())  # fmt: skip
    notes = [
        "Same detection budget: rmq-watchdog with down_after "
        f"{sandbox_config['down_after']}, probe interval {sandbox_config['interval']}, probe "
        f"timeout {sandbox_config['timeout']}, quorum {sandbox_config['quorum']} (the sandbox's "
        "watchdog.toml as generated: the defaults), secondary check "
        f"{sandbox_config['secondary']}; the 5.3.3 controller with " + budget + " (defaults: "
        "controllerHeartBeatTimeoutMills=10000, both scans 5000, syncBrokerMetadataPeriod=5000).",
        "Every run starts from nothing: a new sandbox folder (stores, watchdog state dir) for "
        "4.9.7; for 5.3.3 a new folder holding the controller's DLedger store and both broker "
        "stores (brokerIdentity, epoch files), wiped together. The runs of the two systems "
        "alternate (run i: watchdog kill, controller kill, watchdog SIGSTOP, controller SIGSTOP).",
        f"4.9.7: `rmq-watchdog sandbox` with replication {args.replication}, two nameservers, "
        "TLS off; the daemon acts (not a dry run): it edits the slave's properties and restarts "
        "it as brokerId 0, so (a) includes a JVM restart. 5.3.3: one nameserver with the "
        "controller embedded (enableControllerInNamesrv, one-node DLedger group), brokers with "
        "brokerId=-1, brokerRole=SLAVE, enableControllerMode=true, allAckInSyncStateSet=true; "
        "the promoted slave switches role in place, no restart. Heaps: 4.9.7 as the sandbox "
        "(256 MB brokers, 128 MB nameservers); 5.3.3 256 MB brokers, 192 MB nameserver. "
        "TLS off for every JVM (-Dtls.server.mode=disabled).",
        "(a)/(d): GET_BROKER_CLUSTER_INFO polled every 50 ms on every nameserver of the system "
        "(2 for 4.9.7, 1 for 5.3.3) until each lists broker-a id 0 at an address other than the "
        "old master's. Times are CLOCK_MONOTONIC from just before the signal.",
        "The kill -9 of run i falls at the same phase of the long-lived producer's 30 s route "
        "timer for every system (librocketmq reads routes ~3 s after start, then every 30 s; "
        "phases spread over the timer by run: "
        + ", ".join(f"{route_timer_phase(i):.1f} s" for i in range(1, args.runs + 1))
        + " after a timed read). Such a producer writes again at its first route read that "
        "shows the new master (or, if a read finds the group registered but master-less, at "
        "once when the new master registers); a read while no broker of the group is "
        "registered (TOPIC_NOT_EXIST) keeps its stale route until the next one.",
        "(b)/(c): a real client (PyPI `rocketmq` 0.4.4, librocketmq) in a child process sends "
        f"one message every {POLL_SECONDS * 1000:.0f} ms with a {SEND_TIMEOUT_MS} ms send "
        "timeout to a topic created on the master (and present on the slave, checked with "
        "GET_ALL_TOPIC_CONFIG, before the kill). 'first write' = the end of the first "
        "acknowledged send begun after the kill (any send status counts: the broker stored it, "
        "e.g. SLAVE_NOT_AVAILABLE from a 4.9.7 SYNC_MASTER left without its slave); 'outage' = "
        "from the last ack before the kill to that one. The recreated producer (shut down and "
        "started again after each failed send, so it asks the nameserver for a fresh route) "
        "shows when the cluster itself accepts writes again. The long-lived one depends on when "
        "librocketmq re-reads the route: it periodically polls it every 30 s "
        "(pollNameServerInterval, not settable through the Python client, so the same for both "
        "systems); compare its column with the recreated producer's to see how much of (b) is "
        "the client's own delay.",
        "The 4.9.7 columns 'ODOWN s' (the daemon's MASTER_ODOWN log line), 'failover s' (its "
        "own duration of the whole failover, canary included) and 'watchdog steps' (each "
        "step's duration: stop = fence the old master / stop the candidate through `sandbox "
        "stop`, start = start the candidate as master and wait until it answers) come from "
        "the daemon's JSON log. A 4.x broker reads brokerId and brokerRole only at boot, so the "
        "watchdog must restart the slave's JVM; the 5.x controller switches roles in a running "
        "JVM. With a SYNC_MASTER and no slave left the watchdog promotes to ASYNC_MASTER "
        "(watchdog/decide/_plan.py: a lone SYNC_MASTER would answer SLAVE_NOT_AVAILABLE).",
        "(e) is the daemon's MASTER_ODOWN line; (f), the restart path's physical limit, is "
        "measured on the same cluster right after its kill -9 run: the daemon stopped, kill -9 "
        "of the new master and a start of it as it is (through the sandbox's own launcher, no "
        "CLI), until every nameserver lists it as id 0 again (abnormal recovery included, as "
        "after the failover's kill of its candidate). The failover's overhead over the limit is "
        "(a) - (e) - (f).",
        f"{INPLACE}: the same sandbox started with --promotion inplace (the broker plug-in in "
        "every broker's classpath, the watchdog configured with promotion = inplace): the "
        "candidate is promoted inside its running JVM; the run falls back to a restart if the "
        "plug-in refuses, which the steps column shows.",
        "bench/failover.py measures the 4.9.7 side alone (kill -9, async replication, "
        "producers in threads); this script has its own driver so that one producer child and "
        "one nameserver poller measure both systems alike.",
        "The 5.3.3 nameserver also connects to its own non-loopback address on its listen port "
        "(its client scans the nameserver list; bindAddress=127.0.0.1 refuses it): host-local "
        "traffic that RocketMQ itself makes.",
        "Load: a 2-core machine. "
        f"1-minute load average at the start of each run: min {min(loads, default=0):.1f}, "
        f"median {median(loads) if loads else 0:.1f}, max {max(loads, default=0):.1f}.",
    ]
    notes += [f"Failed run (left out of the tables): {e}" for e in errors]
    return notes


if __name__ == "__main__":
    sys.exit(main())
