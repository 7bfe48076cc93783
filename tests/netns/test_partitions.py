"""Partitions between real hosts: no promotion without a fence, and every acknowledged message
accounted for (acked, lost, duplicated, stored on a deposed master).

The seed's layout as network namespaces (server1/2 nameservers, server3 broker-a master,
server4 its slave, plus watchdog, vantage and clients hosts), the daemon acting from the
watchdog host over SSH, real librocketmq producers in the clients host.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon_harness import runtime_info, wait_until
from tests.netns.harness import NetnsCluster, netns_cluster_in
from tests.netns.writers import Accounting, Writer, account, writing
from watchdog.act._commitlog import read_commitlog_tail
from watchdog.hosts import LocalBackend
from watchdog.model import PropertiesFile
from watchdog.remoting import (
    RemotingClient,
    RemotingError,
    get_broker_config,
    get_broker_runtime_info,
)

pytestmark = pytest.mark.integration

A0, A1 = "broker-a:0", "broker-a:1"
TOPIC = "PartitionTopic"
# The case: the watchdog and its second vantage point, and the slave (replication cut
# both ways), on one side; the master on the other; nameservers and clients reach both.
WATCHDOG_SIDE = ("watchdog", "vantage", "server4")
FAST_FENCE = '[failover]\nfence_retry = "10s"\ncanary_timeout = "40s"\n'


@pytest.fixture(params=["async", "sync"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NetnsCluster]:
    with netns_cluster_in(
        tmp_path_factory.mktemp("netns-sandbox"),
        tmp_path_factory.mktemp("netns-test"),
        "--replication",
        request.param,
    ) as c:
        yield c


def set_in_table(config: Path, table: str, lines: str) -> None:
    """Add keys to an existing TOML table of the generated config."""
    text = config.read_text()
    header = f"[{table}]\n"
    assert header in text, f"{table} not in {config}"
    config.write_text(text.replace(header, header + lines.strip() + "\n", 1))


class MasterWatch:
    """The observer (never partitioned) polls every broker: which ones answer as master and
    whether their log grows. Two masters whose logs both grow in the same 2 s are two brokers
    acknowledging writes for one brokerName at once."""

    def __init__(self, addrs: dict[str, str]) -> None:
        self.addrs = addrs
        self.samples: list[tuple[float, str, str, int]] = []  # (t, key, role, offset)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MasterWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._poll())

    async def _poll(self) -> None:
        clients = {k: RemotingClient(a, connect_timeout_seconds=0.5) for k, a in self.addrs.items()}
        try:
            while not self._stop.is_set():
                for key, client in clients.items():
                    try:
                        config = await get_broker_config(client, timeout_seconds=0.8)
                        info = await get_broker_runtime_info(client, timeout_seconds=0.8)
                        self.samples.append(
                            (
                                time.monotonic(),
                                key,
                                config.get("brokerRole", "?"),
                                int(info["commitLogMaxOffset"]),
                            )
                        )
                    except (RemotingError, KeyError, ValueError):
                        continue
                await asyncio.sleep(0.5)
        finally:
            for client in clients.values():
                await client.close()

    def two_masters_writing(self, window_seconds: float = 2.0) -> list[float]:
        """Times at which two brokers answering as master both had a growing log."""
        found: list[float] = []
        masters = [s for s in self.samples if s[2] in ("ASYNC_MASTER", "SYNC_MASTER")]
        for t, _, _, _ in masters:
            growing = set()
            for other in {k for _, k, _, _ in masters}:
                offsets = [
                    o for tt, k, _, o in masters if k == other and t - window_seconds <= tt <= t
                ]
                if len(offsets) >= 2 and max(offsets) > min(offsets):
                    growing.add(other)
            if len(growing) > 1:
                found.append(t)
        return found


def stored_keys(c: NetnsCluster) -> list[str]:
    keys: list[str] = c.client(
        ["pull-all", "--namesrv", c.namesrv, "--topic", TOPIC, "--seconds", "60"],
        timeout_seconds=120,
    )["keys"]
    return keys


def outcomes(c: NetnsCluster) -> list[str | None]:
    states = c.topology.state_dir
    return [states.outcome(f) for f in states.failover_ids()]


def candidate_touched(c: NetnsCluster) -> bool:
    states = c.topology.state_dir
    return any(
        e.get("event") == "step_done" and e.get("broker_key") == A1 and e.get("phase") == "main"
        for f in states.failover_ids()
        for e in states.journal(f)
    )


@contextlib.contextmanager
def both_writers(c: NetnsCluster) -> Iterator[tuple[Writer, Writer]]:
    """A long-lived producer (route re-read every 30 s) and one that starts per send."""
    clients = c.exec_prefix("clients")
    with (
        writing(clients, c.namesrv, TOPIC, "long", c.tmp / "long.jsonl") as long_lived,
        writing(
            clients,
            c.namesrv,
            TOPIC,
            "each",
            c.tmp / "each.jsonl",
            mode="per-send",
            interval_seconds=0.5,
        ) as per_send,
    ):
        yield long_lived, per_send


def report(name: str, accounting: Accounting, extra: str = "") -> None:
    print(f"\n[{name}] {accounting.line()}{extra}", file=sys.stderr)


def warm_up(c: NetnsCluster) -> None:
    """Create the topic, then wait until the slave holds the master's whole log (a slave learns
    its master's HA address on its 10 s register cycle): a fault before that would measure an
    empty slave, not the watchdog."""
    first = c.send_keyed(TOPIC, "warm", 20)
    assert first["failed"] == 0, first

    def in_sync() -> bool:
        m, s = runtime_info(c.addr(A0)), runtime_info(c.addr(A1))
        return bool(m and s and m["commitLogMaxOffset"] == s["commitLogMaxOffset"])

    wait_until(in_sync, 60, "the slave holding the master's log")


# --------------------------------------------------------------------------- the case


@pytest.mark.parametrize("cluster", ["async"], indirect=True)
def test_a_partition_hiding_a_live_master_is_no_promotion(cluster: NetnsCluster) -> None:
    """Watchdog, vantage point and slave cut from the master, which still serves clients and
    heartbeats the nameservers: the group waits AWAITING_FENCE, nothing is promoted, and after
    the heal every acknowledged message is there."""
    c = cluster
    master = c.addr(A0)
    warm_up(c)
    watch = MasterWatch({A0: master, A1: c.addr(A1)})
    with c.running_daemon(FAST_FENCE) as daemon, watch:
        daemon.wait_event(lambda e: e.get("state") == "HEALTHY", 60, "a HEALTHY cycle")
        with both_writers(c) as (w1, w2):
            time.sleep(5)
            cut_at = time.time()
            c.partition(WATCHDOG_SIDE, ("server3",))
            waiting = daemon.wait_event(
                lambda e: e.get("state") == "AWAITING_FENCE", 120, "AWAITING_FENCE", after=cut_at
            )
            assert "still registered on 2 nameserver(s)" in waiting["event"], waiting
            assert "not promoting until it is fenced" in waiting["event"], waiting
            # Until a second fence attempt has ended too, with the master serving clients all
            # along (an attempt on an unreachable host takes ~35 s, then fence_retry).
            deadline = time.monotonic() + 150
            while len([o for o in outcomes(c) if o is not None]) < 2:
                assert c.masters() == {master}, c.registrations()
                assert time.monotonic() < deadline, f"no second fence attempt: {outcomes(c)}"
                time.sleep(2)
            healed_at = time.time()
            c.heal()
            daemon.wait_event(
                lambda e: e.get("state") == "HEALTHY", 90, "HEALTHY after the heal", after=healed_at
            )
            time.sleep(5)
        sends = w1.sends() + w2.sends()
    assert not candidate_touched(c), "the slave was stopped or rewritten: a promotion began"
    assert set(outcomes(c)) <= {"awaiting_fence"}, outcomes(c)
    assert len(outcomes(c)) >= 2, "the fence was not retried"
    during = [s for s in sends if cut_at <= s["at"] <= healed_at]
    accounting = account(sends, stored_keys(c))
    acked_during = sum(bool(s["ok"]) for s in during)
    report("partition", accounting, f"; during it: {len(during)} sends, {acked_during} acked")
    assert accounting.lost == (), accounting.line()
    assert accounting.acked > 50, accounting.line()
    # The master kept serving clients (an ASYNC_MASTER acknowledges; a SYNC_MASTER whose slave
    # is cut stores them but answers FLUSH_SLAVE_TIMEOUT / SLAVE_NOT_AVAILABLE).
    assert during, "no send during the partition"
    assert watch.two_masters_writing() == []


def test_a_fence_command_lets_the_promotion_go_on(cluster: NetnsCluster) -> None:
    """The same partition with a STONITH-style fence command (here: kill -9 the master's JVM,
    which the watchdog host can do as a power switch would): the promotion goes on after the
    fence; SYNC_MASTER loses no acknowledged message, ASYNC_MASTER at most max_loss_bytes
    (grown by the time the fence took). The SYNC run first waits without a fence command (the
    group AWAITING_FENCE, nothing promoted), then gets one by a reload (SIGHUP)."""
    c = cluster
    master, slave = c.addr(A0), c.addr(A1)
    kill = [sys.executable, "-m", "watchdog", "sandbox", "kill", "--dir", str(c.dir),
            "--broker", A0]  # fmt: skip
    fence_command = "fence_command = [" + ", ".join(f'"{a}"' for a in kill) + "]"
    props = PropertiesFile.parse(Path(c.sandbox.info()["brokers"][0]["properties"]).read_text())
    replication = props.get("brokerRole")
    phased = replication == "SYNC_MASTER"
    set_in_table(c.config, "hosts.server3", 'connect_timeout = "2s"')
    if not phased:
        set_in_table(c.config, "hosts.server3", fence_command)
    warm_up(c)
    states = c.topology.state_dir
    with c.running_daemon(FAST_FENCE) as daemon:
        daemon.wait_event(lambda e: e.get("state") == "HEALTHY", 60, "a HEALTHY cycle")
        with both_writers(c) as (w1, w2):
            time.sleep(5)
            cut_at = time.time()
            c.partition(WATCHDOG_SIDE, ("server3",))
            if phased:
                daemon.wait_event(
                    lambda e: e.get("state") == "AWAITING_FENCE", 120, "AWAITING_FENCE",
                    after=cut_at,
                )  # fmt: skip
                assert not candidate_touched(c) and c.masters() == {master}
                reload_at = time.time()
                set_in_table(daemon.config, "hosts.server3", fence_command)
                os.kill(daemon.pid, signal.SIGHUP)
                daemon.wait_event(
                    lambda e: e.get("event") == "configuration reloaded", 30, "the reload",
                    after=reload_at,
                )  # fmt: skip
            daemon.wait_event(
                lambda e: str(e.get("event", "")).startswith("failover succeeded"),
                180,
                "a failover that succeeded",
                after=cut_at,
            )
            [failover_id] = [f for f in states.failover_ids() if states.outcome(f) == "succeeded"]
            journal = states.journal(failover_id)
            fenced = [e for e in journal if e["event"] == "fenced_by"]
            assert [e["path"] for e in fenced] == ["command"], journal
            wait_until(lambda: c.masters() == {slave}, 60, "the slave listed as master")
            assert c.state(A0) != "alive"
            c.heal()
            time.sleep(10)  # the per-send producer writes to the new master at once
        sends = w1.sends() + w2.sends()
    accounting = account(sends, stored_keys(c))
    grown = [e["max_loss_bytes"] for e in journal if e["event"] == "max_loss_bytes"]
    plan = c.topology.state_dir.plan(failover_id)
    bound = grown[-1] if grown else plan["max_loss_bytes"]
    point = next(int(e["offset"]) for e in journal if e["event"] == "promotion_offset")
    store = PropertiesFile.parse(Path(c.sandbox.info()["brokers"][0]["properties"]).read_text())
    root = store.get("storePathRootDir")
    assert root
    tail = asyncio.run(read_commitlog_tail(LocalBackend(), f"{root}/commitlog", point, None))
    report(
        f"fence command, {replication}", accounting,
        f"; old master past the promotion point: {tail.summary()}; max_loss_bytes {bound}",
    )  # fmt: skip
    assert accounting.acked > 50, accounting.line()
    if replication == "SYNC_MASTER":
        assert accounting.lost == (), accounting.line()
    else:
        assert tail.message_bytes <= bound, (tail.summary(), bound)
        assert len(accounting.lost) <= tail.messages + 1, (accounting.line(), tail.summary())
    assert master not in c.masters()


# 3.5 min, most of it the nameservers' fixed 120 s broker expiry plus fence_grace: make chaos.
# make test keeps path (c) in the fence rule's value tables (test_decide) and the partition
# tests above that wait for a fence (no promotion while a nameserver still lists the master).
@pytest.mark.long
def test_an_isolated_master_host_is_promoted_away_after_the_nameservers_drop_it(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The master's host cut from everyone (nameservers drop it after 120 s): promotion after
    fence_grace; on the heal the old master, still a master, is fenced: one master, and what
    its store held past the promotion point is reported."""
    with netns_cluster_in(
        tmp_path_factory.mktemp("netns-sandbox"), tmp_path_factory.mktemp("netns-test")
    ) as c:
        slave = c.addr(A1)
        set_in_table(c.config, "hosts.server3", 'connect_timeout = "2s"')
        warm_up(c)
        extra = '[failover]\nfence_retry = "5s"\nfence_grace = "5s"\ncanary_timeout = "40s"\n'
        with c.running_daemon(extra) as daemon:
            daemon.wait_event(lambda e: e.get("state") == "HEALTHY", 60, "a HEALTHY cycle")
            with writing(c.exec_prefix("clients"), c.namesrv, TOPIC, "long",
                         c.tmp / "long.jsonl") as w1:  # fmt: skip
                time.sleep(3)
                cut_at = time.time()
                c.isolate("server3")
                daemon.wait_event(
                    lambda e: e.get("state") == "AWAITING_FENCE", 90, "AWAITING_FENCE",
                    after=cut_at,
                )  # fmt: skip
                # The nameservers drop a silent broker after 120 s; then fence_grace (5 s).
                daemon.wait_event(
                    lambda e: str(e.get("event", "")).startswith("failover succeeded"),
                    240,
                    "a failover that succeeded",
                    after=cut_at,
                )
                took = time.time() - cut_at
                wait_until(lambda: c.masters() == {slave}, 60, "the slave listed as master")
                states = c.topology.state_dir
                [promotion] = [f for f in states.failover_ids() if states.outcome(f) == "succeeded"]
                paths = [e["path"] for e in states.journal(promotion) if e["event"] == "fenced_by"]
                assert paths == ["nameservers"], states.journal(promotion)
                assert took >= 120, f"promoted {took:.0f} s after the cut: before the drop?"
                healed_at = time.time()
                c.heal()
                # The old master answers again, as master: the split brain is fenced.
                daemon.wait_event(
                    lambda e: e.get("decision") == "fence", 90, "the returning master fenced",
                    after=healed_at,
                )  # fmt: skip
                wait_until(
                    lambda: (
                        len(states.failover_ids()) >= 2
                        and all(states.outcome(f) is not None for f in states.failover_ids())
                    ),
                    120,
                    "the fence finished",
                )
                time.sleep(5)
                assert c.masters() == {slave}, c.registrations()
            sends = w1.sends()
        accounting = account(sends, stored_keys(c))
        moved = [
            e
            for f in states.failover_ids()
            for e in states.journal(f)
            if e["event"] == "store_moved_aside"
        ]
        report(
            "isolated master host", accounting,
            f"; promoted {took:.0f} s after the cut; moved aside {moved}",
        )  # fmt: skip
        # Isolated from the clients too, it took no write after the cut; whatever it held past
        # the promotion point is reported as moved aside, and nothing else is lost.
        plan = states.plan(promotion)
        moved_messages = sum(e["messages"] or 0 for e in moved)
        assert len(accounting.lost) <= moved_messages, (accounting.line(), moved)
        for entry in moved:
            assert entry["messages"] is not None and "aside" in entry["path"]
            assert entry["bytes"] <= (plan["max_loss_bytes"] or 0), (entry, plan["max_loss_bytes"])


# --------------------------------------------------------------------------- no failover due


def no_failover_for(c: NetnsCluster, daemon: Any, seconds: float) -> list[str]:
    """Watch `seconds` of cycles; fail on any promotion started; return the states seen."""
    began = time.time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(1)
    events = [e for e in daemon.events() if e.get("decision") and _at(e) >= began]
    assert not any(e.get("decision") == "promote" for e in events), [
        e["event"] for e in events if e.get("decision") == "promote"
    ]
    assert not c.topology.state_dir.failover_ids(), "a failover was started"
    return sorted({str(e.get("state")) for e in events})


def _at(event: dict[str, Any]) -> float:
    from datetime import datetime

    stamp = event.get("timestamp")
    return datetime.fromisoformat(stamp).timestamp() if isinstance(stamp, str) else 0.0


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsCluster]:
    with netns_cluster_in(
        tmp_path_factory.mktemp("netns-sandbox"), tmp_path_factory.mktemp("netns-test")
    ) as c:
        yield c


CASES = [
    # (name, fault, expected states)
    ("the watchdog isolated", lambda c: c.isolate("watchdog"), {"ISOLATED"}),
    ("the watchdog cut from one nameserver", lambda c: c.partition(("watchdog",), ("server1",)),
     {"HEALTHY"}),
    ("the slave's host isolated", lambda c: c.isolate("server4"), {"HEALTHY", "DEGRADED"}),
    ("one-way: watchdog -> master dropped", lambda c: c.cut("watchdog", "server3"),
     {"HEALTHY", "MASTER_SDOWN"}),
    ("one-way: master -> watchdog dropped", lambda c: c.cut("server3", "watchdog"),
     {"HEALTHY", "MASTER_SDOWN"}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "fault", "expected"), CASES, ids=[n for n, _, _ in CASES])
def test_faults_that_call_for_no_failover(
    shared: NetnsCluster, name: str, fault: Any, expected: set[str]
) -> None:
    c = shared
    master = c.addr(A0)
    with c.running_daemon(FAST_FENCE, name=re.sub(r"\W+", "-", name)) as daemon:
        daemon.wait_event(lambda e: e.get("state") == "HEALTHY", 60, "a HEALTHY cycle")
        fault(c)
        try:
            seen = no_failover_for(c, daemon, 8)
        finally:
            c.heal()
        daemon.wait_event(
            lambda e: e.get("state") == "HEALTHY", 90, "HEALTHY after the heal", after=time.time()
        )
    assert set(seen) <= expected | {"HEALTHY"}, (name, seen)
    assert set(seen) & expected, (name, seen)
    assert c.masters() == {master}
