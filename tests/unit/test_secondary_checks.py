"""Secondary checks: run only for a silent master, and count only if begun after the silence."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from tests.unit._worlds import A0, PROBE, World, settings
from watchdog.detect import DetectorState, detect
from watchdog.model import SecondaryObservation


def odown_with_check(started_at: float | None, is_alive: bool | None) -> bool:
    world = World(master_down=(10.0, 1e9))  # hung: still registered on both nameservers
    state = DetectorState.initial()
    verdict = None
    for t in range(0, 16):
        snap = world.snapshot(float(t))
        if t >= 10:
            snap = replace(
                snap, secondary=(SecondaryObservation("dc2", A0, is_alive, "", started_at),)
            )
        state, verdict = detect(state, snap, settings(quorum=2), PROBE)
    assert verdict is not None
    return verdict.groups[0].is_odown


def test_a_check_begun_after_the_silence_confirms_a_hung_master() -> None:
    assert odown_with_check(started_at=10.5, is_alive=False)


def test_a_check_begun_before_the_silence_counts_for_nothing() -> None:
    # "down" from a check that started before the master went quiet is not evidence...
    assert not odown_with_check(started_at=5.0, is_alive=False)


def test_an_old_alive_answer_does_not_veto_forever() -> None:
    # ...and neither is an "alive" from then; a fresh "alive" does veto.
    assert not odown_with_check(started_at=12.0, is_alive=True)


def test_background_checks_run_only_for_masters_that_do_not_answer() -> None:
    from watchdog.config import parse_config
    from watchdog.probe import Prober

    calls: list[str] = []

    async def runner(name: str, addr: str) -> SecondaryObservation:
        calls.append(addr)
        return SecondaryObservation(name, addr, None)

    config = parse_config(
        {
            "cluster_name": "XdclassCluster",
            "nameservers": ["127.0.0.1:9876"],
            "secondary_checks": [{"name": "dc2", "host": "local"}],
            "brokers": [
                {
                    "broker_name": "broker-a",
                    "broker_id": i,
                    "addr": a,
                    "properties": "/p",
                    "start": ["x"],
                    "stop": ["y"],
                }
                for i, a in ((0, A0), (1, "127.0.0.1:10921"))
            ],
        }
    )
    prober = Prober(config, pool=None, secondary_runner=runner)  # type: ignore[arg-type]
    healthy = World().snapshot(1.0)
    hung = World(master_down=(0.0, 1e9)).snapshot(1.0)
    assert asyncio.run(prober._secondary(healthy.brokers, {})) == ()
    assert calls == []
    results = asyncio.run(prober._secondary(hung.brokers, {}))
    assert calls == [A0] and len(results) == 1
