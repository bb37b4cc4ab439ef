"""The mutation sample CI runs: drawn the same way every time, and failing on a low score or on a
mutant mutmut did not judge."""

from __future__ import annotations

import random

from benchmarks.mutation import _stratified, gate

PLAN = [f"pql.plan.cost.x_f__mutmut_{i}" for i in range(1, 41)]
EXECUTE = [f"pql.execute.run.x_g__mutmut_{i}" for i in range(1, 11)]


def test_the_sample_is_the_same_for_a_seed_and_covers_every_file() -> None:
    pool = PLAN + EXECUTE
    first = _stratified(pool, 10, random.Random(1))
    assert first == _stratified(pool, 10, random.Random(1))
    assert len(first) == 10
    assert sum(n.startswith("pql.execute") for n in first) == 2  # its share: 10 of 50


def test_the_gate_passes_a_score_at_the_bar_and_fails_under_it() -> None:
    results: dict[str, int | None] = dict.fromkeys(PLAN[:9], 1) | {PLAN[9]: 0}  # 9 of 10 killed
    assert gate(PLAN[:10], results, 90) == []
    [problem] = gate(PLAN[:10], results, 91)
    assert problem == "pql/plan: 9 of 10 mutants killed (90.0%), under 91%"


def test_timeouts_count_as_killed_and_untested_mutants_are_left_apart() -> None:
    results: dict[str, int | None] = {PLAN[0]: 36, PLAN[1]: 5, PLAN[2]: 1}
    assert gate(PLAN[:3], results, 100) == []


def test_a_mutant_without_a_result_fails_the_gate() -> None:
    results: dict[str, int | None] = {PLAN[0]: 1, PLAN[1]: None, PLAN[2]: 7}
    assert gate(PLAN[:3], results, 0) == [
        f"{PLAN[1]}: not run",
        f"{PLAN[2]}: suspicious (exit 7)",
    ]
    assert gate([], {}, 0) == ["no mutant was chosen"]
