"""The new-process restart benchmark measures what it says: each run is a new process that maps
its indexes from snapshots in the first queries, and never imports pandas
(benchmarks/restart_process.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks import restart_process


def test_each_run_is_a_new_process_answering_from_the_indexes_it_maps(tmp_path: Path) -> None:
    out = tmp_path / "results"
    args = ["--receipts", "4000", "--tenants", "3", "--repeat", "2", "--burst", "12"]
    assert restart_process.main([*args, "--out", str(out)]) == 0
    (path,) = out.glob("restart-process-4k-*.json")
    found: dict[str, Any] = json.loads(path.read_text())
    assert found["burst"] == 12 and len(found["runs"]) == 2
    for run in found["runs"]:
        assert run["first_paths"] == ["index"]  # mapped from the snapshots, not the partitions
        assert run["pandas_imported"] is False
        assert run["import_and_open_s"] > 0
        assert run["first_max_ms"] > 0
        assert run["burst_p95_ms"] >= run["burst_p50_ms"] > 0
        assert run["warm_p95_ms"] >= run["warm_p50_ms"] > 0
        assert run["burst_over_warm_p95"] == round(run["burst_p95_ms"] / run["warm_p95_ms"], 2)
    ratios = sorted(run["burst_over_warm_p95"] for run in found["runs"])
    assert found["median"]["burst_over_warm_p95"] == round(sum(ratios) / 2, 3)
