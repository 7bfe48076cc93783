"""Chaos matrix on real RocketMQ 4.9.7 sandboxes, with the daemon acting (not a dry run).

Each case asserts the three things an HA manager must get right: exactly one master per group
afterwards, no double promotion, and no failover where none was due. Cases already covered in
depth elsewhere are named at the bottom of this file.

The cases on real brokers run per promotion path (tests/chaos/promotion.py): `restart`, and
`inplace` (`sandbox up --promotion inplace`: the broker plug-in on every broker, the daemon
promoting through it). `make test` runs the in-place path for the one case that fails over;
`make chaos` runs every case on both. The stand-in case never plans a promotion (a dry run whose
master is never objectively down, and the plug-in is only asked when a failover is planned), so
it runs once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.promotion import promotions
from tests.integration.daemon_harness import (
    StateDir,
    Topology,
    append_config,
    masters_everywhere,
    nft_drop,
    running_daemon,
    wait_until,
)
from watchdog.remoting.standin import StandinServer

pytestmark = pytest.mark.integration


def one_master(topology: Topology) -> set[str | None]:
    return masters_everywhere(topology.nameservers, "broker-a")


def no_failover_during(daemon: Any, seconds: float) -> list[dict[str, Any]]:
    """Watch `seconds` of cycles; fail at once on any promote decision or failover start."""
    started = time.time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for event in daemon.events():
            text = str(event.get("event", ""))
            if event.get("decision") == "promote" or text.startswith("failover started"):
                raise AssertionError(f"failover where none was due: {event}\n{daemon.tail()}")
        time.sleep(0.5)
    from tests.integration.daemon_harness import _event_time

    return [e for e in daemon.events() if "decision" in e and _event_time(e) >= started]


@pytest.mark.parametrize("promotion", promotions(in_make_test=("restart", "inplace")))
def test_cut_off_from_the_master_only_is_no_failover_until_it_really_dies(
    fresh_sandbox: Any, tmp_path: Path, promotion: str
) -> None:
    """The watchdog's own packets to the master are dropped (it probes from 127.0.0.2); the
    secondary check (from 127.0.0.1, as from another host) still reaches it: no failover.
    Then the master really hangs: the secondary check agrees, and the failover happens; in
    place, the slave becomes the master in the JVM it ran as a slave."""
    sandbox = fresh_sandbox(promotion=promotion)
    topo = Topology.of(sandbox)
    master_addr = sandbox.info()["brokers"][0]["addr"]
    port = int(master_addr.rsplit(":", 1)[1])
    slave_pid = sandbox.pid("broker-a:1")
    config = append_config(
        Path(sandbox.config_path),
        '[probe]\nsource_address = "127.0.0.2"\n',
    )
    with running_daemon(config, tmp_path / "daemon.log") as daemon:
        daemon.wait_event(lambda e: e.get("state") == "HEALTHY", 60, "a healthy cycle")
        with nft_drop("127.0.0.2", [port, port - 2], table_prefix="rmqwd_chaos"):
            lines = no_failover_during(daemon, 15)
            vetoed = [e for e in lines if e.get("state") == "MASTER_SDOWN"]
            assert vetoed, [e.get("event") for e in lines]
            assert any("reaches it" in str(e["event"]) for e in vetoed), vetoed[-1]
            assert one_master(topo) == {master_addr}

            sandbox.kill("broker-a:0", "STOP")
            done = daemon.wait_event(
                lambda e: str(e.get("event", "")).startswith("failover succeeded"),
                180,
                "a failover once the master really hangs",
            )
            assert done
    state = topo.state_dir
    [failover_id] = state.failover_ids()
    new_master = sandbox.info()["brokers"][1]["addr"]
    assert one_master(topo) == {new_master}
    assert sandbox.pid("broker-a:0") is None  # fenced: the failover stopped the hung master
    if promotion == "inplace":
        journal = state.journal(failover_id)
        assert state.step_event(failover_id, "promote_in_place"), journal[-3:]
        assert not [e for e in journal if e["event"] == "fallback_started"], journal[-3:]
        assert sandbox.pid("broker-a:1") == slave_pid  # promoted in place: not restarted


@pytest.mark.parametrize("promotion", promotions())
def test_all_nameservers_down_is_no_failover(
    fresh_sandbox: Any, tmp_path: Path, promotion: str
) -> None:
    sandbox = fresh_sandbox(promotion=promotion)
    topo = Topology.of(sandbox)
    master_addr = sandbox.info()["brokers"][0]["addr"]
    with running_daemon(Path(sandbox.config_path), tmp_path / "daemon.log") as daemon:
        daemon.wait_event(lambda e: e.get("state") == "HEALTHY", 60, "a healthy cycle")
        for ns in topo.nameservers:
            sandbox.kill_nameserver(ns, "KILL")
        lines = no_failover_during(daemon, 12)
        assert lines and all(e["decision"] == "no_action" for e in lines)
        for ns in topo.nameservers:
            sandbox.start_nameserver(ns)
        daemon.wait_event(
            lambda e: e.get("state") == "HEALTHY", 90, "healthy again", after=time.time()
        )
        # Restarted nameservers learn the brokers at their next registration (every 30 s).
        wait_until(lambda: one_master(topo) == {master_addr} or None, 60, "re-registration")
        no_failover_during(daemon, 2)
    assert topo.state_dir.failover_ids() == []


@pytest.mark.parametrize("promotion", promotions())
def test_a_flapping_master_is_no_failover(
    fresh_sandbox: Any, tmp_path: Path, promotion: str
) -> None:
    """Paused and resumed faster than down_after, again and again."""
    sandbox = fresh_sandbox(promotion=promotion)
    topo = Topology.of(sandbox)
    master_addr = sandbox.info()["brokers"][0]["addr"]
    with running_daemon(Path(sandbox.config_path), tmp_path / "daemon.log") as daemon:
        daemon.wait_event(lambda e: e.get("state") == "HEALTHY", 60, "a healthy cycle")
        stop = threading.Event()

        def flap() -> None:
            while not stop.is_set():
                sandbox.kill("broker-a:0", "STOP")
                stop.wait(1.5)
                sandbox.kill("broker-a:0", "CONT")
                stop.wait(1.5)

        flapper = threading.Thread(target=flap)
        flapper.start()
        try:
            no_failover_during(daemon, 20)
        finally:
            stop.set()
            flapper.join()
            sandbox.kill("broker-a:0", "CONT")
    assert topo.state_dir.failover_ids() == []
    assert one_master(topo) == {master_addr}


def test_a_broker_answering_garbage_never_takes_the_daemon_down(tmp_path: Path) -> None:
    """Stand-in nameservers and brokers (the real ones cannot be made to send garbage): the
    master answers random bytes, then nonsense bodies, then hangs; the dry-run daemon keeps
    cycling, reports the errors, and judges the master down only by its votes."""
    ready = threading.Event()
    nodes: dict[str, Any] = {}

    def serve() -> None:
        async def main() -> None:
            server = StandinServer()
            ns = [server.add_namesrv(), server.add_namesrv()]
            master = server.add_broker("broker-a", 0, cluster="XdclassCluster", register_with=ns)
            slave = server.add_broker(
                "broker-a", 1, cluster="XdclassCluster", role="SLAVE", register_with=ns
            )
            async with server:
                nodes.update(ns=ns, master=master, slave=slave, loop=asyncio.get_running_loop())
                ready.set()
                while not nodes.get("stop"):
                    await asyncio.sleep(0.1)

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    master, slave = nodes["master"], nodes["slave"]
    loop: asyncio.AbstractEventLoop = nodes["loop"]
    ns_addrs = [n.addr for n in nodes["ns"]]
    config = tmp_path / "watchdog.toml"
    config.write_text(
        f'dry_run = true\ncluster_name = "XdclassCluster"\nnameservers = {ns_addrs!r}\n'.replace(
            "'", '"'
        )
        + f'state_dir = "{tmp_path / "state"}"\n'
        + "[metrics]\nenabled = false\n"
        + "".join(
            f'[[brokers]]\nbroker_name = "broker-a"\nbroker_id = {i}\naddr = "{b.addr}"\n'
            f'properties = "{tmp_path}/b{i}.properties"\nstart = ["true"]\nstop = ["true"]\n'
            for i, b in ((0, master), (1, slave))
        )
    )

    def fault(mode: str) -> None:
        asyncio.run_coroutine_threadsafe(master.set_fault(mode), loop).result(10)

    try:
        with running_daemon(config, tmp_path / "daemon.log") as daemon:
            daemon.wait_event(lambda e: e.get("state") == "HEALTHY", 60, "a healthy cycle")
            for mode in ("garbage", "nonsense", "hang"):
                fault(mode)
                since = time.time()
                daemon.wait_event(
                    lambda e: e.get("state") == "MASTER_SDOWN", 30, f"SDOWN on {mode}", after=since
                )
                fault("ok")
                daemon.wait_event(
                    lambda e: e.get("state") == "HEALTHY",
                    30,
                    f"healthy after {mode}",
                    after=time.time(),
                )
            assert daemon.proc.poll() is None, daemon.tail()
            # A stand-in nameserver keeps listing the broker and no secondary check is
            # configured: one vote (quorum 2), so never objectively down, never a promotion.
            assert not [e for e in daemon.events() if e.get("state") == "MASTER_ODOWN"]
    finally:
        nodes["stop"] = True
        thread.join(10)
    assert StateDir(tmp_path / "state").failover_ids() == []


# Covered elsewhere, with the same three assertions:
# - kill -9 master, old master returns, anti-flap, rollback: tests/integration/test_failover.py
# - watchdog killed after each failover step: tests/integration/test_failover_crash.py
# - SIGSTOP master, slave down, one nameserver down: tests/integration/test_daemon.py
