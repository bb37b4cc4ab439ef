"""The fixed-cost benchmark measures what it says: every example on both tenants, in either
order (DuckDB asked in the same rounds, after pql's asks or between them), with and without
the compiled query reused (benchmarks/fixed_cost.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks import fixed_cost
from benchmarks.examples import examples


def _run(tmp_path: Path, *flags: str) -> dict[str, Any]:
    out = tmp_path / "results"
    args = ["--receipts", "4000", "--tenants", "3", "--repeat", "2", "--out", str(out), *flags]
    assert fixed_cost.main(args) == 0
    (path,) = out.glob("fixed-cost-*.json")
    found: dict[str, Any] = json.loads(path.read_text())
    path.unlink()
    return found


def test_the_compiled_query_is_reused_on_the_wall_clock_and_not_when_turned_off(
    tmp_path: Path,
) -> None:
    back_to_back = _run(tmp_path, "--wall")
    interleaved = _run(tmp_path, "--wall", "--interleave")
    fresh = _run(tmp_path, "--wall", "--interleave", "--no-compiled-reuse", "--duckdb-between")
    assert back_to_back["order"] == "back to back"
    assert interleaved["order"] == fresh["order"] == "interleaved"
    for run in (back_to_back, interleaved, fresh):
        assert run["clock"] == "wall"
        assert run["pairs"] + len(run["refused_or_failed"]) == 2 * len(examples())
        assert run["pairs"] > 80
        done = [r for r in run["rows"] if "error" not in r]
        assert all(r["duckdb"] > 0 and r["total"] > r["execute"] > 0 for r in done)
        # The call's time outside execution holds every timed stage (each rounded to a µs).
        assert all(r["outside"] - 0.005 <= r["outside_call"] < r["total"] for r in done)
    # Interleaved, DuckDB is asked in the same rounds (``duckdb``) and back to back after them;
    # in a round after pql's asks of every pair, or (``--duckdb-between``) after each.
    assert back_to_back["duckdb_asked"] == "back to back"
    assert "after pql's asks of the round" in interleaved["duckdb_asked"]
    assert "each pair right after pql's ask of it" in fresh["duckdb_asked"]
    assert all("duckdb_back_to_back" not in r for r in back_to_back["rows"])
    for run in (interleaved, fresh):
        assert run["duckdb_asked"].startswith("in the same rounds")
        done = [r for r in run["rows"] if "error" not in r]
        assert all(r["duckdb_back_to_back"] > 0 for r in done)
        assert all(
            r["ratio_back_to_back"] == round(r["total"] / r["duckdb_back_to_back"], 3) for r in done
        )
        assert run["pairs_over_0_8_back_to_back"] == sum(
            r["ratio_back_to_back"] > 0.8 for r in done
        )
    assert back_to_back["compiled_reuse"] and not fresh["compiled_reuse"]
    assert fresh["compiled_reused_share"] == 0
    assert fresh["pairs_mostly_compiled_afresh"] == fresh["pairs"]
    assert fresh["median_outside_mostly_reused_ms"] is None
    for run in (back_to_back, interleaved):
        done = [r for r in run["rows"] if "error" not in r]
        afresh = [r for r in done if r["compiled_reused"] < 0.5]
        assert run["pairs_mostly_compiled_afresh"] == len(afresh) < len(done) / 2
        assert run["median_outside_mostly_reused_ms"] <= max(r["outside"] for r in done)
    # all but the plans with a ts constant, a time series or a rollup (5 of 51 examples)
    assert back_to_back["compiled_reused_share"] > 0.8
    assert interleaved["compiled_reused_share"] > 0.8
