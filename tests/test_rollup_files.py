"""Rollup files: each data file's rollup rows, written with it and kept with it.

They let an engine opened on data it never indexed answer aggregates without reading rows; they
must never change an answer, never outlive their data file, and never be read once they do not
match it.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import pql
from pql.catalog import Catalog
from pql.cli import main
from pql.demo import DemoData
from pql.storage import IndexedLake, Lake
from pql.storage import rollup_files as files
from pql.storage.lake import FileEntry
from pql.storage.rollup_files import ROLLUP_DIR
from pql.storage.rollups import partials, rollup_specs
from tests.clock import TEST_NOW
from tests.compare import assert_same_frame

AGGREGATES = [
    "FIND COUNT(*), SUM(receipts.cost_usd) GROUP BY receipts.region SINCE 30d",
    'FIND COUNT(*), AVG(receipts.latency_ms) WHERE receipts.status = "error" '
    "GROUP BY receipts.workflow SINCE 90d",
    'FIND COUNT(decisions.decisionId) WHERE decisions.effect = "deny" '
    "GROUP BY decisions.rule SINCE 7d",
]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, demo: DemoData) -> Path:
    """A lake of the demo data, ingested in two steps (so that some days have two files)."""
    root = tmp_path_factory.mktemp("rollup-files") / "lake"
    engine = pql.Engine(root, index=False)
    # Noon three days back: mid-day whatever the clock's time of day, so that the second
    # ingest adds a second file to that day.
    midnight = TEST_NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    noon = midnight - timedelta(days=3) + timedelta(hours=12)
    for subject, frame in (("receipts", demo.receipts), ("decisions", demo.decisions)):
        engine.ingest(subject, frame.filter(pl.col("ts") < noon))
        engine.ingest(subject, frame)
    return root


@pytest.fixture
def lake_dir(tmp_path: Path, written: Path) -> Path:
    root = tmp_path / "lake"
    shutil.copytree(written, root)
    return root


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(frame.columns)


def _rollup_paths(root: Path) -> list[Path]:
    return sorted(root.glob(f"mc-*/{ROLLUP_DIR}/*"))


def _answers(engine: pql.Engine, tenant: str) -> list[pl.DataFrame]:
    got = [engine.query(q, tenant=tenant, now=TEST_NOW, cache=False).df for q in AGGREGATES]
    return [_sorted(frame) for frame in got]


def test_ingest_writes_each_data_files_rollup_rows(lake_dir: Path) -> None:
    lake = Lake(lake_dir, Catalog())
    specs = rollup_specs(Catalog())
    entries = lake.manifest().files
    assert len({(e.tenant, e.subject, e.storage, e.day) for e in entries}) < len(entries)
    assert len(_rollup_paths(lake_dir)) == len(entries)
    for entry in entries:
        saved = files.read(lake_dir, entry.path, entry.bytes, specs[entry.subject])
        expected = partials(specs[entry.subject], pl.read_parquet(lake_dir / entry.path))
        assert saved is not None
        assert_same_frame(_sorted(files.frame([saved])), _sorted(expected))


@pytest.mark.parametrize("with_files", [True, False], ids=["rollup-files", "rows"])
def test_aggregates_answer_the_same_from_rollup_files(
    lake_dir: Path, tenants: list[str], with_files: bool
) -> None:
    """An engine whose indexes never load (budget 0) answers aggregates from the rollup files,
    or from the rows when there are none: the same answers as reading the rows."""
    if not with_files:
        for folder in lake_dir.glob(f"mc-*/{ROLLUP_DIR}"):
            shutil.rmtree(folder)
    plain = pql.Engine(lake_dir, index=False)
    partitions = pql.Engine(lake_dir, memory_budget=0, rollup_min_rows=0)
    for tenant in tenants[:3]:
        for got, expected in zip(
            _answers(partitions, tenant), _answers(plain, tenant), strict=True
        ):
            assert_same_frame(got, expected)
    stats = partitions.query(AGGREGATES[1], tenant=tenants[0], now=TEST_NOW, cache=False).stats
    assert "partitions" in str(stats)


def test_a_bad_rollup_file_is_never_read(lake_dir: Path, tenants: list[str]) -> None:
    """A rollup file that is damaged, or of other columns, is not read: the rows answer."""
    specs = rollup_specs(Catalog())
    entries = Lake(lake_dir, Catalog()).manifest().files
    expected = _answers(pql.Engine(lake_dir, index=False), tenants[0])
    for n, entry in enumerate(entries):
        path = files.path_of(lake_dir, entry.path, entry.bytes, specs[entry.subject])
        if n % 2:
            path.write_bytes(b"not an arrow file")
        else:
            pl.DataFrame({"__day": [1]}).write_ipc(path)
        assert files.read(lake_dir, entry.path, entry.bytes, specs[entry.subject]) is None
    partitions = pql.Engine(lake_dir, memory_budget=0, rollup_min_rows=0)
    for got, want in zip(_answers(partitions, tenants[0]), expected, strict=True):
        assert_same_frame(got, want)


def test_a_rollup_file_lives_and_dies_with_its_data_file(lake_dir: Path) -> None:
    lake = Lake(lake_dir, Catalog())
    spec = rollup_specs(Catalog())["receipts"]
    entries = [e for e in lake.manifest().files if e.subject == "receipts"]
    tenant = entries[0].tenant
    mine = [e for e in entries if e.tenant == tenant]
    assert lake.gc_orphans() == []
    # Quarantined: its rollup file goes with it.
    victim = mine[0]
    lake.quarantine(victim.path)
    assert not files.path_of(lake_dir, victim.path, victim.bytes, spec).exists()
    # Copied to another storage region, then swapped: the copies have theirs; the retired
    # files keep theirs until they are purged.
    live = [e for e in lake.manifest().files if e.tenant == tenant]
    copies = [lake.copy_to(e, "eu-central-1") for e in live]
    for copy in copies:
        if copy.subject == "receipts":
            assert files.read(lake_dir, copy.path, copy.bytes, spec) is not None
    lake.swap(tenant, [e.path for e in live], copies, home="eu-central-1")
    assert lake.gc_orphans() == []
    purged = lake.purge_retired(tenant)
    assert purged and all(not files._files_of(lake_dir, e.path, e.bytes) for e in purged)
    assert lake.gc_orphans() == []
    # One of a data file no commit lists (a crash, a copy by hand) is an orphan, and so is a
    # temp file a crash left.
    stray = FileEntry(
        f"{copies[0].path.split('/')[0]}/day=2026-01-01/part-{'0' * 32}.parquet",
        tenant, "eu-central-1", "receipts", copies[0].day, 1, 10, 0, 0,
    )  # fmt: skip
    left = files.write(lake_dir, stray.path, stray.bytes, spec, pl.read_parquet(
        lake_dir / copies[0].path), durable=False)  # fmt: skip
    temp = left.with_name(f".{left.name}.abc.tmp")
    temp.write_bytes(b"")
    assert lake.gc_orphans() == sorted([left, temp])
    assert lake.gc_orphans(delete=True) and lake.gc_orphans() == []
    assert files.read(lake_dir, copies[0].path, copies[0].bytes, spec) is not None


def test_a_damaged_data_file_is_named_though_its_rollup_file_is_whole(
    lake_dir: Path, tenants: list[str]
) -> None:
    """Aggregates answered from rollup files still check the data files: a damaged one is
    PQL-E102, as when its rows are read."""
    lake = Lake(lake_dir, Catalog())
    entry = next(e for e in lake.manifest().files if e.tenant == tenants[0])
    (lake_dir / entry.path).write_bytes(b"PAR1 damaged PAR1")
    store = IndexedLake(Lake(lake_dir, Catalog()), Catalog(), memory_budget=0)
    with pytest.raises(pql.InputError) as caught:
        store.rollup(tenants[0], entry.subject, entry.day, entry.day)
    assert caught.value.code == "PQL-E102" and entry.path in caught.value.message


def test_an_index_loaded_from_parquet_takes_its_rollups_from_the_files(
    lake_dir: Path, tenants: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _answers(pql.Engine(lake_dir, index=False), tenants[0])

    def refuse(*_: Any) -> None:
        raise AssertionError("rollup rows computed from the rows")

    monkeypatch.setattr("pql.storage.snapshots.partials", refuse)
    catalog = Catalog()
    store = IndexedLake(Lake(lake_dir, catalog), catalog, background=False)
    store.load(tenants[0])
    assert store.loads()[tenants[0]].source == "parquet"
    engine = pql.Engine(store=store, catalog=catalog, rollup_min_rows=0)
    got = _answers(engine, tenants[0])
    assert store.state(tenants[0]) == "index"
    for answer, want in zip(got, expected, strict=True):
        assert_same_frame(answer, want)


def test_a_tenant_read_from_files_takes_the_rollup_whatever_its_window(
    lake_dir: Path, tenants: list[str]
) -> None:
    """With the default ``rollup_min_rows``, a short window of a tenant whose index is in memory
    reads rows (as fast there as the rollup); read from files (its index not loaded yet, or over
    the budget), each day's file costs more than that day's rollup rows, so an aggregate takes
    the rollup whatever its window. A plan made before the index was loaded is not reused after
    it, and every way answers the same."""
    tenant, query = tenants[0], AGGREGATES[0]
    expected = _answers(pql.Engine(lake_dir, index=False), tenant)
    catalog = Catalog()
    store = IndexedLake(Lake(lake_dir, catalog), catalog, background=False)
    engine = pql.Engine(store=store, catalog=catalog)
    assert store.state(tenant) != "index"
    assert "RollupAggregate" in str(engine.explain(query, tenant=tenant, now=TEST_NOW))
    first = _answers(engine, tenant)  # the first query loads the index (background=False)
    assert store.state(tenant) == "index"
    assert "RollupAggregate" not in str(engine.explain(query, tenant=tenant, now=TEST_NOW))
    over_budget = pql.Engine(lake_dir, memory_budget=0)
    assert "RollupAggregate" in str(over_budget.explain(query, tenant=tenant, now=TEST_NOW))
    for answers in (first, _answers(engine, tenant), _answers(over_budget, tenant)):
        for answer, want in zip(answers, expected, strict=True):
            assert_same_frame(answer, want)


def test_the_rollups_command_writes_the_files_a_lake_lacks(
    lake_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {p.name: p.read_bytes() for p in _rollup_paths(lake_dir)}
    for folder in lake_dir.glob(f"mc-*/{ROLLUP_DIR}"):
        shutil.rmtree(folder)
    assert main(["lake", "rollups", "--data", str(lake_dir)]) == 0
    out, err = capsys.readouterr()
    assert out == f"wrote {len(before):,} rollup files\n" and err == ""  # piped: no progress
    after = {p.name: pl.read_ipc(p) for p in _rollup_paths(lake_dir)}
    assert after.keys() == before.keys()
    for name, frame in after.items():
        assert_same_frame(_sorted(frame), _sorted(pl.read_ipc(before[name])))
    assert main(["lake", "rollups", "--data", str(lake_dir)]) == 0
    assert capsys.readouterr().out == "every data file has its rollup file\n"
    _rollup_paths(lake_dir)[0].unlink()
    assert main(["lake", "rollups", "--data", str(lake_dir)]) == 0
    assert capsys.readouterr().out == "wrote 1 rollup file\n"
