"""The first-open benchmark measures what it says: every tenant's index read from Parquet (no
snapshot), the rows and rollups timed apart from the lookups and snapshot writes, and the lake
left without snapshots (benchmarks/first_open.py)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from benchmarks import data, first_open
from pql.catalog import Catalog
from pql.storage.indexed import IndexedLake
from pql.storage.lake import SNAPSHOT_DIR, Lake


def test_each_round_reads_every_tenant_from_parquet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "data"
    monkeypatch.setattr(first_open, "cached_data", partial(data.cached_data, cache=cache))
    out = tmp_path / "results"
    args = ["--receipts", "4000", "--tenants", "3", "--repeat", "2", "--out", str(out)]
    # The lake has snapshots before the run: each round must drop them, or it times a restart.
    lake_dir = data.cached_data(4000, tenants=3, seed=7, cache=cache).lake
    lake = Lake(lake_dir, Catalog())
    written = IndexedLake(lake, lake.catalog, background=False)
    for tenant in lake.tenants():
        written.load(tenant)
    written.close()
    assert any(lake_dir.rglob(f"{SNAPSHOT_DIR}/*.arrow"))

    assert first_open.main(args) == 0

    (path,) = out.glob("first-open-4k-*.json")
    found: dict[str, Any] = json.loads(path.read_text())
    stored = sum(e.rows for e in lake.manifest().files)
    assert found["config"]["stored_rows"] == stored
    assert len(found["rounds"]) == 2
    for run in found["rounds"]:
        tenants = run["tenants"]
        assert sorted(tenants) == sorted(lake.tenants())
        assert sum(t["rows"] for t in tenants.values()) == stored
        sizes = [t["rows"] for t in tenants.values()]
        assert sizes == sorted(sizes, reverse=True)  # the largest first, as the loader does
        for t in tenants.values():
            assert 0 < t["rows_and_rollups_s"] <= t["with_lookups_and_snapshots_s"]
        each = sum(t["with_lookups_and_snapshots_s"] for t in tenants.values())
        assert run["wall_s"] >= each - 0.001 * len(tenants)  # each rounded to the millisecond
        assert run["cpu_s"] > 0
    assert found["slow_answers_allowed_s"] == 0.5
    assert not any(lake_dir.rglob(f"{SNAPSHOT_DIR}/*.arrow"))


def test_a_load_from_snapshots_stops_the_benchmark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "data"
    lake_dir = data.cached_data(4000, tenants=3, seed=7, cache=cache).lake
    lake = Lake(lake_dir, Catalog())
    monkeypatch.setattr(lake, "drop_snapshots", lambda tenant=None: 0)
    first = IndexedLake(lake, lake.catalog, background=False)
    for tenant in lake.tenants():
        first.load(tenant)
    first.close()
    with pytest.raises(SystemExit, match="not from Parquet"):
        first_open.one_round(lake, list(lake.tenants()))
