"""The mutation sample CI runs: drawn the same way every time, and failing on a low score or on a
mutant mutmut did not judge."""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

import pytest

from benchmarks.mutation import (
    _mutmut,
    _stratified,
    equivalent,
    gate,
    listed_equivalents,
)

PLAN = [f"pql.plan.cost.x_f__mutmut_{i}" for i in range(1, 41)]
EXECUTE = [f"pql.execute.run.x_g__mutmut_{i}" for i in range(1, 11)]


def test_the_sample_is_the_same_for_a_seed_and_covers_every_file() -> None:
    pool = PLAN + EXECUTE
    first = _stratified(pool, 10, random.Random(1))
    assert first == _stratified(pool, 10, random.Random(1))
    assert len(first) == 10
    assert sum(n.startswith("pql.execute") for n in first) == 2  # its share: 10 of 50


def test_the_gate_passes_a_score_at_the_bar_and_fails_under_it() -> None:
    results: dict[str, int | None] = {**dict.fromkeys(PLAN[:9], 1), PLAN[9]: 0}  # 9 of 10 killed
    assert gate(PLAN[:10], results, 90) == []
    [problem] = gate(PLAN[:10], results, 91)
    assert problem == "pql/plan: 9 of 10 mutants killed (90.0%), under 91%"


def test_timeouts_count_as_killed_and_untested_mutants_are_left_apart() -> None:
    results: dict[str, int | None] = {PLAN[0]: 36, PLAN[1]: 5, PLAN[2]: 1}
    assert gate(PLAN[:3], results, 100) == []


def test_a_survivor_confirmed_equivalent_is_left_out_of_the_score() -> None:
    results: dict[str, int | None] = {**dict.fromkeys(PLAN[:8], 1), **dict.fromkeys(PLAN[8:10], 0)}
    assert gate(PLAN[:10], results, 88) == ["pql/plan: 8 of 10 mutants killed (80.0%), under 88%"]
    assert gate(PLAN[:10], results, 88, same={PLAN[9]}) == []  # 8 of 9 judged: 88.9%
    assert gate(PLAN[:10], results, 90, same={PLAN[9]}) == [
        "pql/plan: 8 of 9 mutants killed (88.9%), under 90%"
    ]
    # only a survivor is left out: a killed mutant named as equivalent still counts
    assert gate(PLAN[:10], results, 90, same={PLAN[0], PLAN[9]}) == [
        "pql/plan: 8 of 9 mutants killed (88.9%), under 90%"
    ]


def test_an_equivalent_confirmed_before_the_run_need_not_run() -> None:
    """A chosen mutant whose diff is confirmed equivalent beforehand is left out of the run;
    any other mutant without a result still fails the gate."""
    results: dict[str, int | None] = dict.fromkeys(PLAN[:9], 1) | {PLAN[9]: None}
    assert gate(PLAN[:10], results, 100, same={PLAN[9]}) == []
    assert gate(PLAN[:10], results, 100) == [f"{PLAN[9]}: not run"]
    assert gate(PLAN[:10], results, 100, same={PLAN[8]}) == [f"{PLAN[9]}: not run"]


def test_an_equivalent_is_confirmed_only_while_its_diff_adds_the_reviewed_line() -> None:
    listed = {PLAN[0]: "return field(kw_only=False)", PLAN[1]: "x = None"}
    diffs = {
        PLAN[0]: "--- a.py\n+++ a.py\n@@ -1 +1 @@\n-    return field(kw_only=True)\n"
        "+    return field(kw_only=False)",
        PLAN[1]: "--- a.py\n+++ a.py\n-    x = 1\n+    x = 2",  # renumbered: another mutant
        PLAN[2]: "--- a.py\n+++ a.py\n-    y = 1\n+    y = None",
    }
    assert equivalent(PLAN[:3], listed, diffs.__getitem__) == {PLAN[0]}


def test_every_listed_equivalent_says_which_line_and_why() -> None:
    """The reviewed list (benchmarks/equivalent_mutants.toml) parses, and each entry names a
    mutant of the pipeline, the line its diff adds, and a reason."""
    import tomllib

    from benchmarks.mutation import EQUIVALENT, PACKAGES, _package

    entries = tomllib.loads(EQUIVALENT.read_text(encoding="utf-8"))["mutant"]
    assert entries
    assert listed_equivalents() == {e["name"]: e["line"] for e in entries}
    for entry in entries:
        assert _package(entry["name"]) in PACKAGES, entry
        assert "__mutmut_" in entry["name"], entry
        assert entry["line"].strip() == entry["line"] and entry["line"], entry
        assert len(entry["why"].split()) >= 10, entry


def test_a_mutant_without_a_result_fails_the_gate() -> None:
    results: dict[str, int | None] = {PLAN[0]: 1, PLAN[1]: None, PLAN[2]: 7}
    assert gate(PLAN[:3], results, 0) == [
        f"{PLAN[1]}: not run",
        f"{PLAN[2]}: suspicious (exit 7)",
    ]
    assert gate([], {}, 0) == ["no mutant was chosen"]


def test_a_run_past_its_limit_is_stopped_with_the_workers_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--max-minutes: a mutmut that would run on (a hung worker, say) is stopped at the deadline,
    with every process it started, so CI fails with the gate's message, not its own time limit."""
    monkeypatch.chdir(tmp_path)  # piped, the output goes to ./mutants.log
    worker = tmp_path / "worker.pid"
    hang = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(worker)!r}, 'w').write(str(child.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(120)\n"
    )
    started = time.monotonic()
    _mutmut([sys.executable, "-c", hang], dict(os.environ), deadline=started + 3)
    assert time.monotonic() - started < 30
    assert "started" in (tmp_path / "mutants.log").read_text(encoding="utf-8")
    pid = int(worker.read_text(encoding="utf-8"))
    for _ in range(100):
        if not _running(pid):
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"worker {pid} is still running")


def _running(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (dead, not yet reaped by whoever adopted it) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
