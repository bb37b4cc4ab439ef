"""Row files: each data file's rows as an index keeps them, written with it and kept with it.

An index loaded where no snapshot is maps them instead of decoding Parquet. They must never
change an answer, never be read once they do not match their data file (nor hold another
tenant's rows), and never outlive it.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

import pql
from pql.catalog import Catalog
from pql.cli import main
from pql.demo import DemoData
from pql.storage import IndexedLake, Lake, beside
from pql.storage import row_files as files
from pql.storage.beside import ROWS_DIR
from pql.storage.lake import FileEntry
from tests.clock import TEST_NOW

QUERIES = (
    "FIND COUNT(*), SUM(receipts.cost_usd) GROUP BY receipts.region SINCE 30d",
    'FIND receipts WHERE receipts.status = "error" SINCE 30d ORDER BY receipts.ts DESC LIMIT 40',
    "FIND COUNT(decisions.decisionId) JOIN receipts ON decisions.executionId = "
    'receipts.executionId WHERE decisions.effect = "deny" GROUP BY decisions.rule SINCE 90d',
    "FIND COUNT(*) AS n WHERE team = 'blue' SINCE 180d",
)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, demo: DemoData) -> Path:
    """A lake of the demo data, ingested in two steps: the second adds an extra column, so the
    first step's row files lack a column the tenant has now."""
    root = tmp_path_factory.mktemp("row-files") / "lake"
    engine = pql.Engine(root, index=False)
    midnight = TEST_NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    noon = midnight - timedelta(days=3) + timedelta(hours=12)
    for subject, frame in (("receipts", demo.receipts), ("decisions", demo.decisions)):
        engine.ingest(subject, frame.filter(pl.col("ts") < noon))
        later = frame.filter(pl.col("ts") >= noon)
        if subject == "receipts":
            later = later.with_columns(pl.lit("blue").alias("team"))
        engine.ingest(subject, later)
    return root


@pytest.fixture
def lake_dir(tmp_path: Path, written: Path) -> Path:
    root = tmp_path / "lake"
    shutil.copytree(written, root)
    return root


@pytest.fixture(scope="module")
def tenants(demo: DemoData) -> list[str]:
    counts = demo.receipts.group_by("tenant").len().sort("len", descending=True)
    return counts.get_column("tenant").to_list()


def _answers(engine: pql.Engine, tenant: str) -> list[list[tuple[object, ...]]]:
    out = []
    for text in QUERIES:
        frame = engine.query(text, tenant=tenant, now=TEST_NOW, cache=False).df
        out.append(sorted(frame.rows(), key=repr))
    return out


def _loaded(root: Path, **options: object) -> pql.Engine:
    """A fresh engine on ``root`` with every index loaded."""
    engine = pql.Engine(root, cache=False, preload="all", **options)  # type: ignore[arg-type]
    assert engine.wait_ready(120)
    return engine


def _sources(engine: pql.Engine) -> dict[str, str]:
    assert isinstance(engine.store, IndexedLake)
    return {tenant: info.source for tenant, info in engine.store.loads().items()}


def _read(path: Path) -> pl.DataFrame:
    """A row file's rows, read whole (not mapped: the file is written again after)."""
    return pl.read_ipc(io.BytesIO(path.read_bytes()))


def _row_paths(root: Path) -> list[Path]:
    return sorted(root.glob(f"mc-*/{ROWS_DIR}/*"))


def test_ingest_writes_each_data_files_rows_in_its_order(lake_dir: Path) -> None:
    entries = Lake(lake_dir, Catalog()).manifest().files
    assert len({(e.tenant, e.subject, e.storage, e.day) for e in entries}) < len(entries)
    assert len(_row_paths(lake_dir)) == len(entries)
    for entry in entries:
        saved = pl.read_ipc(files.path_of(lake_dir, entry.path, entry.bytes))
        assert saved.equals(pl.read_parquet(lake_dir / entry.path)), entry.path


def test_indexes_mapped_from_row_files_answer_as_the_data_files_do(
    lake_dir: Path, tenants: list[str]
) -> None:
    plain = pql.Engine(lake_dir, index=False)
    expected = {tenant: _answers(plain, tenant) for tenant in tenants}
    assert expected[tenants[0]][3] and expected[tenants[0]][3][0][0] > 0  # the extra column
    for folder in lake_dir.glob("mc-*/_snapshot"):
        shutil.rmtree(folder)
    mapped = _loaded(lake_dir)
    assert set(_sources(mapped).values()) == {"rows"}
    decoded = _loaded(lake_dir, snapshots=False)
    assert set(_sources(decoded).values()) == {"parquet"}
    for tenant in tenants:
        assert _answers(mapped, tenant) == expected[tenant], tenant
        assert _answers(decoded, tenant) == expected[tenant], tenant
    assert isinstance(mapped.store, IndexedLake) and mapped.store.wait_snapshots(120)
    restarted = _loaded(lake_dir)
    assert set(_sources(restarted).values()) == {"snapshot"}
    assert _answers(restarted, tenants[0]) == expected[tenants[0]]


def _foreign(path: Path) -> None:
    """The same rows, sizes and times, but every row another tenant's."""
    frame = _read(path)
    frame.with_columns(pl.lit("intruder").alias("tenant")).write_ipc(path)


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated": lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
    "garbage": lambda path: path.write_bytes(b"ARROW1" + b"\0" * 64),
    "missing": lambda path: path.unlink(),
    "a row short": lambda path: _read(path)[:-1].write_ipc(path),
    "another tenant's rows": _foreign,
    "ts in milliseconds": lambda path: (
        _read(path).with_columns(pl.col("ts").dt.cast_time_unit("ms")).write_ipc(path)
    ),
    "latency as text": lambda path: (
        _read(path).with_columns(pl.col("latency_ms").cast(pl.String)).write_ipc(path)
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_bad_row_file_is_never_read(lake_dir: Path, tenants: list[str], damage: str) -> None:
    """A row file that does not hold what the manifest says its data file holds is not read:
    its bucket's rows come from the data files, and the answers do not change."""
    tenant = tenants[0]
    catalog = Catalog()
    lake = Lake(lake_dir, catalog)
    entries = [e for e in lake.manifest().files_of(tenant, "receipts") if e.rows > 1]
    victim = entries[len(entries) // 2]
    expected = _answers(pql.Engine(lake_dir, index=False), tenant)
    DAMAGE[damage](files.path_of(lake_dir, victim.path, victim.bytes))
    subject = catalog["receipts"]
    bucket = [e for e in entries if e.storage == victim.storage]
    assert lake.saved_rows(subject, bucket) is None
    others = [
        e for e in lake.manifest().files_of(tenant, "receipts") if e.storage != victim.storage
    ]
    engine = _loaded(lake_dir)
    assert _sources(engine)[tenant] == ("mixed" if others else "parquet")
    assert _answers(engine, tenant) == expected


def test_a_row_file_lives_and_dies_with_its_data_file(lake_dir: Path, tenants: list[str]) -> None:
    lake = Lake(lake_dir, Catalog())
    tenant = tenants[-1]
    mine = [e for e in lake.manifest().files if e.tenant == tenant]
    assert lake.gc_orphans() == []
    victim = mine[0]
    lake.quarantine(victim.path)
    assert not files.path_of(lake_dir, victim.path, victim.bytes).exists()
    live = [e for e in lake.manifest().files if e.tenant == tenant]
    copies = [lake.copy_to(e, "eu-central-1") for e in live]
    for copy, entry in zip(copies, live, strict=True):
        moved = files.path_of(lake_dir, copy.path, copy.bytes)
        assert moved.read_bytes() == files.path_of(lake_dir, entry.path, entry.bytes).read_bytes()
    lake.swap(tenant, [e.path for e in live], copies, home="eu-central-1")
    assert lake.gc_orphans() == []
    purged = lake.purge_retired(tenant)
    assert purged and all(not beside.files_of(lake_dir, e.path, e.bytes) for e in purged)
    assert lake.gc_orphans() == []
    stray = FileEntry(
        f"{copies[0].path.split('/')[0]}/day=2026-01-01/part-{'0' * 32}.parquet",
        tenant, "eu-central-1", copies[0].subject, copies[0].day, 1, 10, 0, 0,
    )  # fmt: skip
    left = files.write(lake_dir, stray.path, stray.bytes, pl.DataFrame({"a": [1]}), durable=False)
    assert lake.gc_orphans() == [left]
    # The tenant's index, from the copies' row files, in its new region.
    engine = _loaded(lake_dir)
    assert _sources(engine)[tenant] == "rows"
    plain = pql.Engine(lake_dir, index=False)
    assert _answers(engine, tenant) == _answers(plain, tenant)


def test_the_rows_command_writes_the_files_a_lake_lacks(
    lake_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {p.name: _read(p) for p in _row_paths(lake_dir)}
    for folder in lake_dir.glob(f"mc-*/{ROWS_DIR}"):
        shutil.rmtree(folder)
    assert main(["lake", "rows", "--data", str(lake_dir)]) == 0
    out, err = capsys.readouterr()
    assert out == f"wrote {len(before):,} row files\n" and err == ""  # piped: no progress
    after = {p.name: _read(p) for p in _row_paths(lake_dir)}
    assert after.keys() == before.keys()
    catalog = Catalog()
    lake = Lake(lake_dir, catalog)
    for tenant in lake.tenants():  # written in the tenant's current form: they load
        for subject in catalog:
            entries = lake.manifest().files_of(tenant, subject.name)
            by_storage = {e.storage for e in entries}
            for storage in by_storage:
                bucket = [e for e in entries if e.storage == storage]
                current = lake.catalog.for_tenant(tenant)[subject.name]
                assert lake.saved_rows(current, bucket) is not None
    assert main(["lake", "rows", "--data", str(lake_dir)]) == 0
    assert capsys.readouterr().out == "every data file has its row file\n"
    _row_paths(lake_dir)[0].unlink()
    assert main(["lake", "rows", "--data", str(lake_dir)]) == 0
    assert capsys.readouterr().out == "wrote 1 row file\n"


def test_an_engine_without_snapshots_writes_no_row_files(tmp_path: Path, demo: DemoData) -> None:
    engine = pql.Engine(tmp_path / "lake", snapshots=False)
    engine.ingest("receipts", demo.receipts.head(200))
    assert _row_paths(tmp_path / "lake") == []
    assert list((tmp_path / "lake").rglob("*.parquet"))


def test_a_row_file_holds_exactly_its_data_files_columns_and_types(lake_dir: Path) -> None:
    """The layout the loads rely on: strings as string views (mapped without a copy), ``ts``
    in microseconds, UTC."""
    path = _row_paths(lake_dir)[0]
    schema = pa.ipc.open_file(pa.memory_map(str(path))).schema
    assert schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert schema.field("tenant").type == pa.string_view()
