"""`rmq-watchdog history` of in-place promotions, from journals the real executor writes against
stand-in brokers: a run that fell back to the restart path counts that path's steps and says
why (it read "7/8 steps": the fallback's steps were not counted, the failed one was planned)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.unit._act_world import A0, A1, World
from tests.unit.test_act_inplace import PluginSide, inplace_config, inplace_plan
from watchdog.observe import read_history, render_history


def journal(tmp_path: Path, *, refusal: str | None = None, is_hanging: bool = False) -> Path:
    """One failover of a dead master, the candidate's plug-in played as asked; the state dir."""

    async def main() -> Path:
        async with World(tmp_path) as world:
            await world.stop(A0)
            side = PluginSide(world, world.brokers[A1]).attach()
            side.refusal, side.is_hanging = refusal, is_hanging
            # The fence's stop alone takes 0.5 s (a second look that the old master is gone):
            # only a hanging promotion needs a short step budget, and 2 s leaves it slack.
            config = inplace_config(world, step_timeout="2s" if is_hanging else "3s")
            plan = await inplace_plan(world, config)
            result = await world.executor(config).run(plan, "fo-1")
            assert result.outcome == "succeeded", result
            return Path(config.state_dir)

    return asyncio.run(main())


def steps_cell(table: str) -> str:
    """The last column of the table's one row (the steps column ends each line)."""
    header, row = table.splitlines()
    return row[header.index("steps") :]


def test_a_run_refused_in_place_shows_the_restart_path_it_took(tmp_path: Path) -> None:
    [row] = read_history(journal(tmp_path, refusal="partial_tail"))
    # 8 planned; the in-place step (4) failed, the fallback's stop, rewrite and start stood in.
    assert (row.in_place, row.steps_done, row.steps, row.outcome) == (
        "refused",
        10,
        10,
        "succeeded",
    )
    assert steps_cell(render_history([row])) == "in place refused -> restart path: 10/10 steps"
    assert row.to_json()["in_place"] == "refused"


def test_a_run_whose_promotion_got_no_answer_failed_in_place(tmp_path: Path) -> None:
    [row] = read_history(journal(tmp_path, is_hanging=True))
    assert (row.in_place, row.steps_done, row.steps) == ("failed", 10, 10)
    assert steps_cell(render_history([row])) == "in place failed -> restart path: 10/10 steps"


def test_a_run_promoted_in_place_counts_its_own_steps(tmp_path: Path) -> None:
    [row] = read_history(journal(tmp_path))
    assert (row.in_place, row.steps_done, row.steps) == ("done", 8, 8)
    assert steps_cell(render_history([row])) == "8/8"


def test_a_run_still_in_its_fallback_counts_what_is_done(tmp_path: Path) -> None:
    state = journal(tmp_path, refusal="busy")
    path = state / "failovers" / "fo-1.jsonl"
    lines = path.read_text().splitlines()
    # Cut right after the fallback's first step (its stop) was journaled done.
    cut = next(
        i for i, line in enumerate(lines) if '"phase": "fallback"' in line and "step_done" in line
    )
    path.write_text("\n".join(lines[: cut + 1]) + "\n")
    [row] = read_history(state)
    assert (row.outcome, row.in_place, row.steps_done, row.steps) == ("running", "refused", 4, 10)
