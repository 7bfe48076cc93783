"""The fuzz harnesses (fuzz/targets.py) in `make test`: the committed corpus replayed, then a
few thousand inputs per target made by hypothesis (and cheap mutants of each), derandomized so
CI sees the same inputs every run.

FUZZ_EXAMPLES=N runs N generated inputs per target instead (`make fuzz` runs this file with a
large N); the per-target counts are written to fuzz/work/hypothesis.json.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fuzz.strategies import INPUTS, mutate
from fuzz.targets import TARGETS, corpus_files

# Each input hypothesis draws (1-10 ms to make) is followed by _MUTANTS cheap mutants of it
# (microseconds), so a target sees ~3,000 inputs in 1-2 s: ~15 s for all on the 2-core machine.
_MUTANTS = 24
_DEFAULT_DRAWS = {target: 160 for target in TARGETS} | {"config": 80, "client": 100}
# FUZZ_EXAMPLES=N: about N inputs per target (draws and their mutants together).
_LONG = int(os.environ.get("FUZZ_EXAMPLES", "0"))
_COUNTS: dict[str, dict[str, float]] = {}


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    yield
    if _LONG and _COUNTS:
        out = Path(__file__).resolve().parents[2] / "fuzz" / "work" / "hypothesis.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        total = int(sum(c["inputs"] for c in _COUNTS.values()))
        out.write_text(json.dumps({"total_inputs": total, "targets": _COUNTS}, indent=2) + "\n")


def test_every_target_has_a_seed_corpus_and_a_strategy() -> None:
    assert set(INPUTS) == set(TARGETS)
    for target in TARGETS:
        assert corpus_files(target), f"fuzz/corpus/{target}/ is empty"


def test_corpus_stays_small() -> None:
    files = [p for t in TARGETS for p in corpus_files(t)]
    assert sum(p.stat().st_size for p in files) < 200_000


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_corpus_replays_cleanly(target: str) -> None:
    harness = TARGETS[target]
    for path in corpus_files(target):
        try:
            harness(path.read_bytes())
        except BaseException as exc:
            raise AssertionError(f"fuzz/corpus/{target}/{path.name}: {exc!r}") from exc


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_generated_inputs_keep_the_contract(target: str) -> None:
    harness = TARGETS[target]
    count = 0

    @settings(
        max_examples=_LONG // (_MUTANTS + 1) if _LONG else _DEFAULT_DRAWS[target],
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(INPUTS[target], st.integers(0, 2**32 - 1))
    def run(data: bytes, seed: int) -> None:
        nonlocal count
        count += 1
        harness(data)
        rng = random.Random(seed)
        for _ in range(_MUTANTS):
            mutant = mutate(data, rng)
            count += 1
            try:
                harness(mutant)
            except BaseException as exc:
                raise AssertionError(
                    f"mutant {mutant!r:.2000} of the drawn input: {exc!r}"
                ) from exc

    started = time.monotonic()
    run()
    _COUNTS[target] = {"inputs": count, "seconds": round(time.monotonic() - started, 1)}
