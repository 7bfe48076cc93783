"""A seeded nemesis against a SYNC_MASTER group with the daemon acting and a real producer:
never two brokers acknowledging writes for broker-a at once, no acknowledged message lost.

Marked `long`: `make chaos` plays it (RMQWD_NEMESIS_SECONDS=1800 there, 40 s by default when run
by hand) with a random seed (printed first; RMQWD_NEMESIS_SEED=N replays it). The daemon promotes by
restart; RMQWD_CHAOS_PROMOTION=inplace (or both, as `make chaos` sets) plays it against brokers
with the plug-in, the daemon promoting in place (tests/chaos/promotion.py).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator

import pytest

from tests.chaos.promotion import promotions
from tests.integration.daemon_harness import StateDir, wait_until
from tests.netns.harness import NEMESIS_SEED_ENV, Nemesis, NetnsCluster, netns_cluster_in
from tests.netns.test_partitions import A0, A1, TOPIC, MasterWatch, stored_keys, warm_up
from tests.netns.writers import account, writing

pytestmark = [pytest.mark.integration, pytest.mark.long]

SECONDS = float(os.environ.get("RMQWD_NEMESIS_SECONDS", "40"))
# The short run in `make test` is the same every time; `make chaos` sets its own or none.
SEED = int(os.environ.get(NEMESIS_SEED_ENV, "20261202"))


def promoted(states: StateDir, failover_id: str) -> str:
    """How a failover promoted: "in place", "by restart" (the restart path, or the fallback
    from in place), or "not" (it stopped before a new master was registered)."""
    if not states.step_event(failover_id, "wait_master"):
        return "not"
    journal = states.journal(failover_id)
    fell_back = any(e.get("event") == "fallback_started" for e in journal)
    in_place = states.step_event(failover_id, "promote_in_place") and not fell_back
    return "in place" if in_place else "by restart"


@pytest.fixture(params=promotions())
def sync_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NetnsCluster]:
    with netns_cluster_in(
        tmp_path_factory.mktemp("netns-sandbox"),
        tmp_path_factory.mktemp("netns-test"),
        "--replication",
        "sync",
        "--promotion",
        request.param,
    ) as c:
        yield c


@pytest.mark.timeout(SECONDS + 900)  # make chaos plays 30 minutes
def test_a_seeded_nemesis_never_makes_two_masters_nor_loses_an_acked_message(
    sync_cluster: NetnsCluster,
) -> None:
    c = sync_cluster
    warm_up(c)
    watch = MasterWatch({A0: c.addr(A0), A1: c.addr(A1)})
    nemesis = Nemesis(
        c,
        SECONDS,
        seed=SEED,
        gap=(4.0, 9.0),
        hosts=("server1", "server2", "server3", "server4", "watchdog", "vantage"),
        log_path=c.tmp / "nemesis.jsonl",
    )
    # An in-place sandbox's watchdog.toml ends in its [failover] table: the keys go into it.
    inplace = c.sandbox.info().get("promotion") == "inplace"
    extra = ("" if inplace else "[failover]\n") + 'fence_retry = "10s"\ncanary_timeout = "30s"\n'
    with c.running_daemon(extra) as daemon, watch:
        daemon.wait_event(lambda e: e.get("state") == "HEALTHY", 60, "a HEALTHY cycle")
        with writing(c.exec_prefix("clients"), c.namesrv, TOPIC, "n", c.tmp / "n.jsonl") as w:
            with nemesis.running():
                nemesis.wait(SECONDS + 120)
            # Everything healed and restarted: the group settles on one master that takes
            # writes again (a long-lived producer re-reads its route within 30 s).
            wait_until(lambda: len(c.masters() - {None}) == 1, 180, "one master listed")
            settled = time.time()
            wait_until(
                lambda: any(s["ok"] and s["at"] > settled for s in w.sends()),
                120,
                "an acknowledged write after the nemesis",
            )
            time.sleep(3)
        sends = w.sends()
    accounting = account(sends, stored_keys(c))
    states = c.topology.state_dir
    outcomes = [states.outcome(f) for f in states.failover_ids()]
    paths = [promoted(states, f) for f in states.failover_ids()]
    print(
        f"\n[nemesis seed {nemesis.seed}, {SECONDS:.0f} s] {accounting.line()}; "
        f"failovers {outcomes} promoted {paths}; actions: "
        + "; ".join(f"{a.at:.0f}s {a.kind} {a.detail}" for a in nemesis.actions),
        file=sys.stderr,
    )
    assert watch.two_masters_writing() == [], "two brokers took writes for broker-a at once"
    assert accounting.lost == (), accounting.line()
    assert accounting.acked > 0
