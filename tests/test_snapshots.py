"""Index snapshots: a restarted engine loads them instead of Parquet and answers the same; any
change of a tenant's stored data makes its snapshots unusable; damaged ones are ignored and
rewritten; they stay in the tenant's buckets and out of the way of the lake's maintenance."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from threading import Thread
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pql
import pql.storage.memory as memory_module
from pql.adapters.residency import audit
from pql.adapters.tenancy import Registry, TenantSpec
from pql.adapters.tenancy.migrate import migrate, purge_retired, rollback
from pql.catalog import Catalog
from pql.cli import main
from pql.demo import DemoData, generate
from pql.errors import InternalError
from pql.storage import IndexedLake, Lake, MemoryStore
from pql.storage import snapshots as snapshots_module
from pql.storage.base import sort_columns
from pql.storage.codes import JoinCodes, prove
from pql.storage.lake import SNAPSHOT_DIR, Manifest, parse_bucket
from pql.storage.repair import rebuild_manifest
from pql.storage.snapshots import Snapshots, tenant_key
from tests.clock import TEST_NOW
from tests.paths import copy_lake, split_tenants, write_lake

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, tzinfo=UTC)

# A shared, loaded machine can take more than the default deadline for a fresh engine's first
# queries; the answers, not the timings, are what these tests check.
LIMITS = pql.Limits(deadline_ms=120_000)

QUERIES = (
    "FIND receipts SINCE 7d ORDER BY executionId LIMIT 200",
    "FIND COUNT(*) AS n, AVG(receipts.latency_ms) AS l GROUP BY receipts.region SINCE 60d",
    "FIND COUNT(decisions.decisionId) AS n JOIN receipts ON decisions.executionId = "
    "receipts.executionId WHERE decisions.effect = 'deny' GROUP BY decisions.rule SINCE 30d",
)


@pytest.fixture(scope="module")
def demo() -> DemoData:
    return generate(3_000, seed=9, tenants=3, now=TEST_NOW)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, demo: DemoData) -> Path:
    return write_lake(tmp_path_factory.mktemp("written"), demo)


@pytest.fixture
def lake(tmp_path: Path, written: Path) -> Path:
    return copy_lake(written, tmp_path)


def opened(root: Path, **options: object) -> pql.Engine:
    """A fresh engine on ``root`` with every index loaded and every snapshot due written."""
    engine = pql.Engine(root, cache=False, preload="all", limits=LIMITS, **options)  # type: ignore[arg-type]
    assert isinstance(engine.store, IndexedLake)
    assert engine.store.wait_snapshots(120)
    return engine


def sources(engine: pql.Engine) -> dict[str, str]:
    assert isinstance(engine.store, IndexedLake)
    return {tenant: info.source for tenant, info in engine.store.loads().items()}


def answers(engine: pql.Engine, tenant: str) -> list[list[tuple[object, ...]]]:
    out = []
    for text in QUERIES:
        result = engine.query(text, tenant=tenant, now=TEST_NOW, cache=False)
        rows = [tuple(_rounded(v) for v in row) for row in result.df.rows()]
        out.append(sorted(rows, key=repr))
    return out


def _rounded(value: object) -> object:
    """Floats to 9 significant digits: a rollup sums in another order than a scan."""
    return float(f"{value:.9g}") if isinstance(value, float) else value


def same_as_partitions(engine: pql.Engine, root: Path) -> None:
    """Every tenant's answers from ``engine``'s indexes equal those read from the partitions."""
    plain = pql.Engine(root, index=False, cache=False, limits=LIMITS)
    for tenant in plain.store.tenants():
        assert engine.query(QUERIES[0], tenant=tenant, now=TEST_NOW).stats["path"] == "index"
        assert answers(engine, tenant) == answers(plain, tenant), tenant


def snapshot_files(root: Path, tenant: str | None = None, kind: str = "*") -> list[Path]:
    """The snapshot files (of ``tenant``; of one ``kind``: rows, rollup, lookup) under ``root``."""
    return sorted(
        p
        for p in root.glob(f"mc-*/{SNAPSHOT_DIR}/*.{kind}.arrow")
        if tenant is None or (parse_bucket(p.parent.parent.name) or ("",))[0] == tenant
    )


def test_a_restarted_engine_loads_the_snapshots_and_answers_the_same(lake: Path) -> None:
    first = opened(lake)
    tenants = set(first.store.tenants())
    assert set(sources(first).values()) == {"parquet"}
    files = snapshot_files(lake)
    # One file per bucket (tenant, storage region, subject), inside that bucket.
    buckets = {p.parent.parent.name for p in files}
    assert buckets == {p.name for p in lake.glob("mc-*") if any(p.glob("day=*"))}
    assert all(p.suffix == ".arrow" for p in files)
    restarted = opened(lake)
    assert sources(restarted) == dict.fromkeys(tenants, "snapshot")
    same_as_partitions(restarted, lake)
    assert snapshot_files(lake) == files  # read, not rewritten


def test_the_snapshots_command_makes_a_first_open_a_restart(
    lake: Path, demo: DemoData, capsys: pytest.CaptureFixture[str]
) -> None:
    """``pql lake snapshots`` writes what an engine's loads would, before any engine opens: the
    first engine then maps every index, and answers as the partitions do. It writes nothing for
    tenants whose snapshots are current, and again for one whose data changed."""
    tenants = Lake(lake, Catalog()).tenants()
    assert snapshot_files(lake) == []
    assert main(["lake", "snapshots", "--data", str(lake)]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # piped: no progress line
    assert re.fullmatch(
        rf"wrote the snapshots of {len(tenants)} tenants \((\d+) files\) in [0-9.]+s: "
        rf"{', '.join(tenants)}\n",
        out,
    ), out
    files = snapshot_files(lake)
    assert {p.name.split(".")[1] for p in files} == {"rows", "rollup", "lookup"}
    first = opened(lake)
    assert sources(first) == dict.fromkeys(tenants, "snapshot")
    same_as_partitions(first, lake)
    assert snapshot_files(lake) == files  # nothing left to write
    assert main(["lake", "snapshots", "--data", str(lake)]) == 0
    assert capsys.readouterr().out == f"current already: {', '.join(tenants)}\n"
    more = demo.receipts.filter(pl.col("tenant") == "acme").head(5)
    pql.Engine(lake, index=False).ingest(
        "receipts", more.with_columns(pl.col("executionId") + "-s")
    )
    assert main(["lake", "snapshots", "--data", str(lake), "--tenant", "acme"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("wrote the snapshots of 1 tenant (") and out.endswith("s: acme\n")
    assert sources(opened(lake))["acme"] == "snapshot"
    assert main(["lake", "snapshots", "--data", str(lake), "--tenant", "nobody"]) == 2
    err = capsys.readouterr().err
    assert "PQL-E104" in err and "tenant 'nobody' has no stored rows" in err
    assert f"tenants with stored rows: {', '.join(tenants)}" in err and "Traceback" not in err


def test_snapshots_can_be_turned_off(lake: Path) -> None:
    engine = opened(lake, snapshots=False)
    assert isinstance(engine.store, IndexedLake) and engine.store.snapshots is None
    assert set(sources(engine).values()) == {"parquet"}
    assert snapshot_files(lake) == []
    opened(lake)  # written by an engine that keeps them ...
    again = opened(lake, snapshots=False)  # ... and not read by one that does not
    assert set(sources(again).values()) == {"parquet"}
    same_as_partitions(again, lake)


def test_an_ingest_makes_the_tenants_snapshots_unusable(lake: Path, demo: DemoData) -> None:
    opened(lake)
    more = demo.receipts.filter(pl.col("tenant") == "acme").head(50)
    more = more.with_columns(pl.col("executionId") + "-again", pl.col("ts") - timedelta(minutes=1))
    pql.Engine(lake, index=False).ingest("receipts", more)
    restarted = opened(lake)
    found = sources(restarted)
    assert found.pop("acme") == "parquet"
    assert set(found.values()) == {"snapshot"}  # the other tenants did not change
    same_as_partitions(restarted, lake)
    assert sources(opened(lake))["acme"] == "snapshot"  # written again, for the new data
    # Only the current snapshot of each bucket is kept: its rows, their rollup partials and
    # the lookups of their id columns.
    for folder in {p.parent for p in snapshot_files(lake)}:
        names = sorted(p.name for p in folder.glob("*.arrow"))
        key = names[0].split(".")[0]
        assert names == [f"{key}.{kind}.arrow" for kind in ("lookup", "rollup", "rows")], names


def test_new_extra_columns_make_the_snapshots_unusable(lake: Path, demo: DemoData) -> None:
    opened(lake)
    more = demo.receipts.filter(pl.col("tenant") == "acme").head(5)
    more = more.with_columns(pl.col("executionId") + "-x", pl.lit("blue").alias("team"))
    pql.Engine(lake, index=False).ingest("receipts", more)
    restarted = opened(lake)
    assert sources(restarted)["acme"] == "parquet"
    result = restarted.query("FIND COUNT(*) AS n WHERE team = 'blue' SINCE 180d", tenant="acme")
    assert result.df["n"][0] == 5
    same_as_partitions(restarted, lake)


def test_the_key_covers_everything_the_index_depends_on(lake: Path) -> None:
    catalog = Catalog()
    manifest = Lake(lake, catalog).manifest()
    key = tenant_key(manifest, catalog, "acme")
    fresh = Catalog()  # another process, after a restart: the same key
    assert key == tenant_key(Lake(lake, fresh).manifest(), fresh, "acme")
    assert key != tenant_key(manifest, catalog, "globex")
    mine = next(e for e in manifest.files if e.tenant == "acme")
    changed = [
        replace(manifest, versions={**manifest.versions, "acme": manifest.versions["acme"] + 1}),
        manifest.without(mine),
        replace(
            manifest,
            files=tuple(replace(e, rows=e.rows + 1) if e == mine else e for e in manifest.files),
        ),
        replace(manifest, homes={"acme": "eu-west-1"}),
        replace(manifest, extras={"acme": {"receipts": {"team": pql.DataType.STRING}}}),
    ]
    for other in changed:
        assert tenant_key(other, catalog, "acme") != key
    # Another tenant's change leaves acme's key as it was.
    theirs = next(e for e in manifest.files if e.tenant == "globex")
    assert tenant_key(manifest.without(theirs), catalog, "acme") == key
    # Retired files are never read: they do not change the key (their swap changed the version).
    assert tenant_key(replace(manifest, retired=(mine,)), catalog, "acme") == key


def test_a_damaged_snapshot_is_ignored_and_written_again(lake: Path) -> None:
    opened(lake)
    victims = snapshot_files(lake, "acme", "rows")
    truncated, garbage = victims[0], victims[1]
    with open(truncated, "r+b") as handle:
        handle.truncate(truncated.stat().st_size // 2)
    garbage.write_bytes(b"ARROW1" + b"\0" * 100)
    restarted = opened(lake)
    assert sources(restarted)["acme"] == "mixed"
    same_as_partitions(restarted, lake)
    assert sources(opened(lake))["acme"] == "snapshot"  # rewritten whole


def test_damaged_rollup_partials_are_computed_again_from_the_snapshot(lake: Path) -> None:
    opened(lake)
    rollup = next(p for p in snapshot_files(lake, "acme") if p.name.endswith(".rollup.arrow"))
    rollup.write_bytes(rollup.read_bytes()[:-64])
    restarted = opened(lake)
    assert sources(restarted)["acme"] == "snapshot"  # the rows were good
    same_as_partitions(restarted, lake)
    catalog = Catalog()
    again = Snapshots(Lake(lake, catalog)).load("acme", catalog, rollups=True)
    again.store.add_lookups()
    assert again.source == "snapshot"
    assert not any(item.files() for item in again.pending)  # written again, whole


def test_another_tenants_snapshot_under_the_right_name_is_refused(lake: Path) -> None:
    opened(lake)
    acme = snapshot_files(lake, "acme")
    globex = snapshot_files(lake, "globex")
    # Overwrite each of acme's snapshots with a globex one of the same subject.
    for target in acme:
        subject = target.parent.parent.name.rsplit("-", 1)[1]
        source = next(p for p in globex if p.parent.parent.name.endswith(f"-{subject}"))
        shutil.copyfile(source, target)
    restarted = opened(lake)
    assert sources(restarted)["acme"] == "parquet"
    same_as_partitions(restarted, lake)


def _rewritten(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    """Replace the Arrow IPC file at ``path`` with one of the table ``change`` makes of its
    table (a new file renamed over it: an engine may still map the old one)."""
    table = change(ipc.open_file(pa.BufferReader(path.read_bytes())).read_all())
    temp = path.with_name(f"{path.name}.new")
    with open(temp, "wb") as handle, ipc.new_file(handle, table.schema) as writer:
        writer.write_table(table)
    temp.replace(path)


def test_a_rows_snapshot_names_its_tenant_once_and_the_load_gives_every_row_that_name(
    lake: Path,
) -> None:
    opened(lake)
    for tenant in ("acme", "globex"):
        files = snapshot_files(lake, tenant, "rows")
        assert files
        for path in files:
            schema = ipc.open_file(pa.memory_map(str(path))).schema
            assert "tenant" not in schema.names, path.name  # no 16-byte view a row
            assert (schema.metadata or {})[b"pql.tenant"] == tenant.encode()
    restarted = opened(lake)
    assert sources(restarted) == dict.fromkeys(sources(restarted), "snapshot")
    catalog = Catalog()
    loaded = Snapshots(Lake(lake, catalog)).load("acme", catalog, rollups=False)
    for subject in catalog:
        columns = list(subject.polars_schema())
        got = loaded.store.scan("acme", subject, EARLIEST, LATEST, columns)
        frame = got.frame.collect()
        assert frame.height and frame.columns == columns
        assert frame.get_column("tenant").unique().to_list() == ["acme"]
        assert frame.get_column("tenant").dtype == pl.String
    same_as_partitions(restarted, lake)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda t: t.replace_schema_metadata({b"pql.tenant": b"globex"}), id="another-tenant"
        ),
        pytest.param(lambda t: t.replace_schema_metadata({}), id="no-tenant"),
        pytest.param(
            lambda t: t.append_column("tenant", pa.array(["acme"] * t.num_rows)),
            id="a-tenant-column",
        ),
    ],
)
def test_a_rows_snapshot_that_does_not_name_its_tenant_as_the_only_one_is_refused(
    lake: Path, change: Callable[[pa.Table], pa.Table]
) -> None:
    """The rows, row count and time range are acme's own; only the tenant named is not."""
    opened(lake)
    for path in snapshot_files(lake, "acme", "rows"):
        _rewritten(path, change)
    restarted = opened(lake)
    assert sources(restarted)["acme"] == "parquet"
    assert sources(restarted)["globex"] == "snapshot"
    same_as_partitions(restarted, lake)
    assert sources(opened(lake))["acme"] == "snapshot"  # written again, whole


def test_a_snapshot_is_never_written_with_another_tenants_rows(lake: Path) -> None:
    catalog = Catalog()
    snapshots = Snapshots(Lake(lake, catalog))
    loaded = snapshots.load("acme", catalog, rollups=True)
    item = next(p for p in loaded.pending if p.rows is not None and p.rows.height > 1)
    mixed = item.rows
    assert mixed is not None
    mixed = mixed.with_columns(
        pl.when(pl.int_range(pl.len()) == 1)
        .then(pl.lit("globex"))
        .otherwise(pl.col("tenant"))
        .alias("tenant")
    )
    with pytest.raises(InternalError) as caught:
        snapshots_module._rows_table(mixed, "acme")
    assert caught.value.code == "PQL-X062"
    assert snapshots.write([replace(item, rows=mixed)]) == 0
    assert not item.rows_path.exists()
    assert not list(item.rows_path.parent.glob(".*.tmp"))  # no temp file left behind
    assert snapshots.write([item]) >= 1  # its own rows are written
    assert item.rows_path.exists()


def test_a_snapshot_of_data_changed_meanwhile_is_not_written(lake: Path, demo: DemoData) -> None:
    """An ingest between reading a tenant's rows and writing its snapshot: nothing is written,
    so the next load reads the Parquet files (and the new rows)."""
    catalog = Catalog()
    snapshots = Snapshots(Lake(lake, catalog))
    loaded = snapshots.load("acme", catalog, rollups=True)
    assert loaded.source == "parquet" and loaded.pending
    more = demo.receipts.filter(pl.col("tenant") == "acme").head(3)
    pql.Engine(lake, index=False).ingest(
        "receipts", more.with_columns(pl.col("executionId") + "-n")
    )
    assert snapshots.write(loaded.pending) == 0
    assert snapshot_files(lake, "acme") == []
    assert sources(opened(lake))["acme"] == "parquet"


def test_a_snapshot_write_never_recreates_a_lake_that_went_away(lake: Path) -> None:
    """A snapshot is a cache: when its lake (or its manifest) is gone by the time it is written,
    nothing is written, nothing is raised, and no folder of the lake comes back."""
    catalog = Catalog()
    snapshots = Snapshots(Lake(lake, catalog))
    loaded = snapshots.load("acme", catalog, rollups=True)
    assert loaded.pending
    (lake / "_pql" / "manifest.json").unlink()
    assert snapshots.write(loaded.pending) == 0
    assert snapshot_files(lake, "acme") == []
    shutil.rmtree(lake)
    assert snapshots.write(loaded.pending) == 0
    assert not lake.exists()


def test_a_snapshot_write_and_an_ingest_never_wait_for_each_other(
    lake: Path, demo: DemoData
) -> None:
    """An ingest holds the lake's thread lock, then takes its lock file; a snapshot written
    meanwhile takes them in the same order, so neither waits for the other forever (taking
    the file first, then the lock to read the manifest, hung a migration for good)."""
    catalog = Catalog()
    store = Lake(lake, catalog)
    snapshots = Snapshots(store)
    loaded = snapshots.load("acme", catalog, rollups=True)
    more = demo.receipts.filter(pl.col("tenant") == "acme").head(3)
    writer = threading.Thread(target=snapshots.write, args=(loaded.pending,), daemon=True)
    done = threading.Event()

    def ingest_while_the_writer_runs() -> None:
        with store._lock:  # an ingest has begun in this thread
            writer.start()
            time.sleep(0.5)  # the writer reaches the locks meanwhile
            store.ingest(catalog["receipts"], more.with_columns(pl.col("executionId") + "-n"))
        done.set()

    threading.Thread(target=ingest_while_the_writer_runs, daemon=True).start()
    assert done.wait(60), "the ingest waited for the snapshot writer, which waited for it"
    writer.join(60)
    assert not writer.is_alive()
    assert snapshot_files(lake, "acme") == []  # written for data that changed meanwhile: not kept


def test_a_closed_engine_starts_no_load_and_still_answers(lake: Path) -> None:
    with pql.Engine(lake, cache=False, limits=LIMITS) as engine:
        assert isinstance(engine.store, IndexedLake)
        engine.query(QUERIES[0], tenant="acme", now=TEST_NOW)  # starts acme's load
        engine.preload("all")
    assert engine.close(120)  # again: already stopped
    loader = engine.store._loader
    assert loader is None or not loader.is_alive()
    loaded = set(engine.store.loaded())
    answered = engine.query(QUERIES[0], tenant="globex", now=TEST_NOW)
    assert set(engine.store.loaded()) == loaded
    if "globex" not in loaded:
        assert engine.store.state("globex") == "partitions"
        assert answered.stats["path"] == "partitions"
    plain = pql.Engine(lake, index=False, cache=False, limits=LIMITS)
    for tenant in plain.store.tenants():
        assert answers(engine, tenant) == answers(plain, tenant), tenant


_EXIT_MID_LOAD = """
import sys, threading, time
import pql
from pql.storage import IndexedLake

started = threading.Event()

def hold(tenant: str) -> None:  # the first load is under way when the script ends
    with open(sys.argv[2], "a") as log:
        log.write(f"{tenant} ")
    started.set()
    time.sleep(0.5)
    with open(sys.argv[2], "a") as log:
        log.write("held")

engine = pql.Engine(sys.argv[1], cache=False)
assert isinstance(engine.store, IndexedLake)
engine.store.on_load = hold
engine.preload("all")
assert started.wait(60)
print("exiting", flush=True)
"""


def test_a_process_that_exits_mid_load_without_closing_stops_the_loader(
    lake: Path, tmp_path: Path
) -> None:
    """A service that exits without ``Engine.close()`` while a load runs: at interpreter exit
    the loader is stopped as ``close()`` does (the step under way ends, the queued loads are
    dropped). Left to die as a daemon thread, it was torn down wherever it was, and inside an
    Arrow write to a Python file that aborted the process ("Fatal Python error")."""
    log = tmp_path / "loads.log"
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_MID_LOAD, str(lake), str(log)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("exiting\n", "")
    first = log.read_text().split()[0]
    assert log.read_text() == f"{first} held"  # the load under way ended; no other started


def test_a_restart_digests_each_tenant_once(
    lake: Path, demo: DemoData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether a tenant can be mapped and its load both need its key: one digest at one
    manifest; a changed manifest (an ingest) is digested again, to a new key."""
    opened(lake)
    snapshots = Snapshots(Lake(lake, Catalog()))
    catalog = snapshots.lake.catalog
    calls: list[str] = []
    real = snapshots_module.tenant_key

    def counted(manifest: Manifest, catalog: Catalog, tenant: str) -> str:
        calls.append(tenant)
        return real(manifest, catalog, tenant)

    monkeypatch.setattr(snapshots_module, "tenant_key", counted)
    assert snapshots.current("acme", catalog)
    assert snapshots.load("acme", catalog, rollups=True).source == "snapshot"
    assert calls == ["acme"]
    before = snapshots.key(snapshots.lake.manifest(), catalog, "acme")
    acme = demo.receipts.filter(pl.col("tenant") == "acme").head(1)
    pql.Engine(lake, index=False).ingest(
        "receipts", acme.with_columns(pl.lit("x-1").alias("executionId"))
    )
    after = snapshots.key(snapshots.lake.manifest(), catalog, "acme")
    assert calls == ["acme", "acme"] and after != before
    assert not snapshots.current("acme", catalog)


def test_ingest_while_the_loader_writes_snapshots(lake: Path, demo: DemoData) -> None:
    engine = pql.Engine(lake, cache=False, preload="all", limits=LIMITS)
    acme = demo.receipts.filter(pl.col("tenant") == "acme")
    for i in range(5):  # ingests race the loads and the snapshot writes
        engine.ingest("receipts", acme.head(20).with_columns(pl.col("executionId") + f"-{i}"))
    assert isinstance(engine.store, IndexedLake) and engine.store.wait_snapshots(120)
    engine.preload("all")
    assert engine.store.wait_snapshots(120)
    same_as_partitions(engine, lake)
    same_as_partitions(opened(lake), lake)


def test_quarantine_and_a_rebuilt_manifest_drop_the_snapshots(lake: Path) -> None:
    opened(lake)
    plain = Lake(lake, Catalog())
    victim = next(e for e in plain.manifest().files if e.tenant == "acme")
    plain.quarantine(victim.path)
    assert snapshot_files(lake, "acme") == [] and snapshot_files(lake, "globex")
    restarted = opened(lake)
    assert sources(restarted)["acme"] == "parquet"
    same_as_partitions(restarted, lake)
    report = rebuild_manifest(lake, force=True)
    assert report.skipped == ()  # the snapshots are not data files
    assert snapshot_files(lake) == []
    restarted = opened(lake)
    assert set(sources(restarted).values()) == {"parquet"}
    same_as_partitions(restarted, lake)


def test_maintenance_does_not_mistake_snapshots_for_data(lake: Path) -> None:
    opened(lake)
    plain = Lake(lake, Catalog())
    assert plain.gc_orphans() == []
    found = audit(lake)
    listed = len(plain.manifest().files)
    assert found.objects == listed  # the parquet files only
    assert not any(SNAPSHOT_DIR in v.object for v in found.violations)


@pytest.fixture
def registered(lake: Path) -> Path:
    Registry(lake).create(
        TenantSpec(
            "acme",
            "us-east-1",
            allowed_regions=("us-east-1", "eu-west-1", "ap-south-1"),
            latency_ms=60_000,
        ),
        now=TEST_NOW,
    )
    return lake


def _regions(root: Path, tenant: str) -> set[str]:
    return {
        parsed[1]
        for p in snapshot_files(root, tenant)
        if (parsed := parse_bucket(p.parent.parent.name)) is not None
    }


def test_migration_rollback_and_purge_leave_no_snapshot_behind(registered: Path) -> None:
    root = registered
    engine = opened(root)
    before = _regions(root, "acme")
    assert before and "ap-south-1" not in before
    migrate(engine, "acme", "ap-south-1", now=TEST_NOW)
    assert snapshot_files(root, "acme") == []  # none left in the regions it left
    moved = opened(root)
    assert sources(moved)["acme"] == "parquet"
    assert _regions(root, "acme") == {"ap-south-1"}  # written where its rows live now
    same_as_partitions(moved, root)
    rollback(moved, "acme", now=TEST_NOW)
    assert snapshot_files(root, "acme") == []
    back = opened(root)
    assert sources(back)["acme"] == "parquet"
    assert _regions(root, "acme") == before
    same_as_partitions(back, root)
    migrate(back, "acme", "ap-south-1", now=TEST_NOW)
    opened(root)
    purge_retired(back, "acme")
    assert snapshot_files(root, "acme") == []
    again = opened(root)
    assert _regions(root, "acme") == {"ap-south-1"}
    same_as_partitions(again, root)


@settings(max_examples=40, deadline=None)
@given(
    buckets=st.lists(st.integers(0, 2), min_size=1, max_size=120),
    instants=st.integers(1, 5),
    start=st.integers(0, 6),
    length=st.integers(0, 6),
    nulls=st.booleans(),
)
def test_a_store_kept_in_parts_answers_like_one_table(
    buckets: list[int], instants: int, start: int, length: int, nulls: bool
) -> None:
    """A tenant kept in several parts (each sorted, as its regions' snapshots are): a scan of
    any window merges the parts' windows into ts order, with the same rows as one sorted table
    holding them all; a lookup finds the same rows in the parts as in that table. Few instants:
    rows share a ts within and across parts; some ids are null."""
    from unittest import mock

    from pql.catalog import DECISIONS
    from pql.storage import memory
    from pql.storage.base import sort_columns
    from pql.storage.memory import MemoryStore

    order = sort_columns(DECISIONS)
    demo = generate(120, seed=3, now=TEST_NOW, tenants=1)
    tenant = demo.decisions["tenant"][0]
    rows = demo.decisions.head(len(buckets)).with_columns(
        ts=TEST_NOW + pl.duration(days=pl.int_range(pl.len()) % instants),
        executionId=pl.when(pl.int_range(pl.len()) % 5 == 0).then(None).otherwise("executionId"),
        part=pl.Series(buckets[: min(len(buckets), demo.decisions.height)]),
    )
    parts = [
        rows.filter(pl.col("part") == i).drop("part").sort(order) for i in sorted(set(rows["part"]))
    ]
    split, whole = MemoryStore(Catalog()), MemoryStore(Catalog())
    split.load_stored(tenant, DECISIONS, parts, ordered=True)
    whole.load_stored(tenant, DECISIONS, pl.concat(parts))
    assert len(split.lookups_of(tenant, "decisions")) == len(parts)
    first = TEST_NOW + timedelta(days=start)
    last = first + timedelta(days=length)
    got = split.scan(tenant, DECISIONS, first, last)
    assert got.ordered and got.exact
    frame = got.frame.collect()
    assert frame["ts"].is_sorted()
    one = whole.scan(tenant, DECISIONS, first, last)
    assert (got.rows, got.partitions > 0) == (one.rows, one.partitions > 0)
    assert frame.sort(order).equals(one.frame.collect().sort(order))
    wanted = {e for e in rows["executionId"].head(3).to_list() if e is not None}
    kept = pl.col("executionId").is_in(list(wanted))
    kept = kept | pl.col("executionId").is_null() if nulls else kept
    with (
        mock.patch.object(memory, "LOOKUP_MIN_WINDOW", 0),
        mock.patch.object(memory, "LOOKUP_SHARE", 1.0),
    ):
        found = split.lookup(tenant, DECISIONS, "executionId", wanted, nulls, first, last)
        alone = whole.lookup(tenant, DECISIONS, "executionId", wanted, nulls, first, last)
    assert found is not None and alone is not None
    expected = one.frame.collect().filter(kept).sort(order)
    assert found.frame.collect().filter(kept).sort(order).equals(expected)
    assert alone.frame.collect().filter(kept).sort(order).equals(expected)


def test_snapshots_keep_strings_as_views_so_a_load_maps_them_without_a_copy(lake: Path) -> None:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    opened(lake)
    files = snapshot_files(lake, kind="rows") + snapshot_files(lake, kind="rollup")
    assert files
    for path in files:
        schema = ipc.open_file(pa.memory_map(str(path))).schema
        strings = [
            f.type for f in schema if pa.types.is_string(f.type) or f.type == pa.large_string()
        ]
        assert strings == [], (path.name, strings)  # every string column is a string view
        assert any(f.type == pa.string_view() for f in schema), path.name


def test_a_tenant_of_several_regions_is_kept_in_its_parts_with_their_saved_lookups(
    lake: Path,
) -> None:
    """Loaded from snapshots, a tenant kept in several regions is served from one sorted part
    per region, each with the lookups saved beside its rows (used once checked, after the
    load: nothing is built or written), a scan comes in ts order, and the answers are the
    partitions'."""
    from pql.storage.base import sort_columns
    from pql.storage.memory import MemoryStore

    opened(lake)  # writes the snapshots
    catalog = Catalog()
    snapshots = Snapshots(Lake(lake, catalog))
    tenant = split_tenants(lake)[0]
    loaded = snapshots.load(tenant, catalog, rollups=True)
    assert loaded.source == "snapshot"
    store = loaded.store
    subject = catalog["decisions"]
    parts = store.lookups_of(tenant, "decisions")
    assert len(parts) >= 2 and not any(parts)  # mapped, not used before they are checked
    before = store.memory_bytes()
    assert store.add_lookups()
    codes = sum(  # only the join codes are added: mapped from the lookups files
        c.nbytes for name in ("receipts", "decisions") for c in _codes_of(store, tenant, name)
    )
    assert codes and store.memory_bytes() == before + codes
    parts = store.lookups_of(tenant, "decisions")
    assert all(set(part) == {"decisionId", "executionId"} for part in parts)
    mapped = [lookup for part in parts for lookup in part.values()]
    assert not any(lookup.hashes.flags.owndata for lookup in mapped)  # the files' pages
    assert not any(item.files() for item in loaded.pending)
    scan = store.scan(tenant, subject, TEST_NOW - timedelta(days=400), TEST_NOW)
    assert scan.exact and scan.single_tenant and scan.ordered
    rows = scan.frame.collect()
    assert rows["ts"].is_sorted()
    table = store.table(tenant, "decisions")
    assert table is not None and rows.height == table.height
    order = sort_columns(subject)
    assert rows.sort(order).equals(table.sort(order))
    engine = pql.Engine(store=store, catalog=catalog, cache=False, limits=LIMITS)
    assert answers(engine, tenant) == answers(pql.Engine(lake, index=False, limits=LIMITS), tenant)
    empty = MemoryStore(catalog)
    with pytest.raises(pql.PQLError, match="PQL-X061"):
        empty.load_stored(tenant, subject, [])


def test_damaged_lookups_are_built_again_and_rewritten(lake: Path) -> None:
    """A lookups file that is truncated, unsorted, points past its rows or is not an Arrow file
    is not used: the rows still map from their snapshot, the lookups are built again (the
    answers stay the partitions') and written again."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.ipc as ipc

    opened(lake)
    files = snapshot_files(lake, "acme", "lookup")
    assert len(files) >= 2
    table = ipc.open_file(pa.memory_map(str(files[0]))).read_all()
    column = table.column_names[0]
    assert column.endswith(":hash")
    values = table.column(column).to_numpy()
    reversed_ = table.set_column(0, column, pa.array(values[::-1].copy()))
    rows = table.column_names[1]
    past = table.set_column(1, rows, pa.array(np.full(table.num_rows, 2**31, dtype=np.uint32)))
    damages: list[Callable[[Path], object]] = [
        lambda path: path.write_bytes(path.read_bytes()[:-100]),
        lambda path: path.write_bytes(b"not arrow at all"),
        lambda path: _write_table(path, reversed_),
        lambda path: _write_table(path, past),
        lambda path: _write_table(path, table.replace_schema_metadata({})),
    ]
    for damage in damages:
        damage(files[0])
        restarted = opened(lake)
        assert sources(restarted)["acme"] == "snapshot"  # the rows mapped
        same_as_partitions(restarted, lake)
        # written again whole: the next restart maps it
        assert ipc.open_file(pa.memory_map(str(files[0]))).read_all().equals(table)


def test_a_lookup_fits_its_column_only_when_whole_sorted_and_inside() -> None:
    """The check a mapped lookup passes before it is used: a built one fits its column; one
    with a row past the end, unsorted hashes, a missing entry or null rows out of order does
    not."""
    import numpy as np

    from pql.storage.memory import Lookup

    built = Lookup.build(pl.Series(["b", None, "a", "c", None, "a"]))
    assert built.fits(6)
    assert not built.fits(5) and not built.fits(7)
    past = Lookup(
        built.hashes, np.where(built.rows == built.rows.max(), 6, built.rows), built.nulls
    )
    unsorted = Lookup(built.hashes[::-1].copy(), built.rows, built.nulls)
    short = Lookup(built.hashes[1:], built.rows[1:], built.nulls)
    nulls = Lookup(built.hashes, built.rows, built.nulls[::-1].copy())
    assert not any(bad.fits(6) for bad in (past, unsorted, short, nulls))
    assert Lookup.build(pl.Series([], dtype=pl.String)).fits(0)


def _write_table(path: Path, table: object) -> None:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    assert isinstance(table, pa.Table)
    with ipc.new_file(str(path), table.schema) as writer:
        writer.write_table(table)


def test_a_restarted_engines_first_queries_wait_for_the_mapped_index_not_the_partitions(
    lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a restart every tenant's snapshots are there: a tenant's first query waits the
    milliseconds its index takes to map instead of reading its partitions."""
    from pql.storage import indexed

    opened(lake)
    monkeypatch.setattr(indexed, "MAPPED_WAIT", 120.0)  # a loaded machine: never time out here
    restarted = pql.Engine(lake, cache=False, limits=LIMITS)
    assert isinstance(restarted.store, IndexedLake)
    for tenant in restarted.store.tenants():
        assert restarted.store.snapshots is not None
        assert restarted.store.snapshots.current(tenant, restarted.catalog)
        assert restarted.query(QUERIES[0], tenant=tenant, now=TEST_NOW).stats["path"] == "index"
    assert sources(restarted) == dict.fromkeys(restarted.store.tenants(), "snapshot")
    assert restarted.wait_ready(120)
    same_as_partitions(restarted, lake)
    # Without snapshots nothing is mapped: the first query reads the partitions meanwhile.
    for folder in lake.glob(f"mc-*/{SNAPSHOT_DIR}"):
        shutil.rmtree(folder)
    cold = pql.Engine(lake, cache=False, limits=LIMITS)
    assert isinstance(cold.store, IndexedLake) and cold.store.snapshots is not None
    assert not cold.store.snapshots.current("acme", cold.catalog)
    cold.close(120)


def test_the_loader_maps_tenants_with_snapshots_before_it_reads_any_from_parquet(
    lake: Path,
) -> None:
    opened(lake)
    largest = max(Lake(lake, Catalog()).tenants(), key=lambda t: _rows(lake, t))
    for path in snapshot_files(lake, largest):
        path.unlink()
    order: list[str] = []
    catalog = pql.Engine(lake, index=False).catalog  # the adapters' subjects are in the key
    store = IndexedLake(Lake(lake, catalog), catalog, on_load=order.append)
    store.preload("all")  # the largest first, were it not for the snapshots of the others
    assert store.wait_snapshots(120)
    assert order[-1] == largest and len(order) == len(store.tenants()), order
    assert store.loads()[largest].source == "parquet"


def _rows(root: Path, tenant: str) -> int:
    return sum(e.rows for e in Lake(root, Catalog()).manifest().files if e.tenant == tenant)


@contextlib.contextmanager
def _mapping_held(lake: Path, tenant: str) -> Iterator[tuple[IndexedLake, pql.Engine, Thread]]:
    """An engine on ``lake`` (its snapshots written) whose first query of ``tenant``, started
    in a thread, holds its mapping (in the store's ``on_load``) until the block ends."""
    opened(lake).close(120)
    started, release = threading.Event(), threading.Event()

    def held(loading: str) -> None:
        if loading == tenant and not started.is_set():
            started.set()
            assert release.wait(60)

    catalog = pql.Engine(lake, index=False).catalog  # the adapters' subjects are in the key
    store = IndexedLake(Lake(lake, catalog), catalog, on_load=held)
    engine = pql.Engine(store=store, catalog=catalog, cache=False, limits=LIMITS)
    mapper = threading.Thread(
        target=engine.query, args=(QUERIES[0],), kwargs={"tenant": tenant, "now": TEST_NOW}
    )
    mapper.start()
    try:
        assert started.wait(60), "the first query did not start mapping"
        yield store, engine, mapper
    finally:
        release.set()
        mapper.join(60)


def test_a_query_waits_for_a_held_mapping_no_longer_than_the_bound(
    lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The query that finds a tenant missing maps its index itself; another query of the same
    tenant that finds that mapping under way waits for it at most ``MAPPED_WAIT``, then reads
    the partitions, with the same answer."""
    from pql.storage import indexed

    monkeypatch.setattr(indexed, "MAPPED_WAIT", 0.2)
    with _mapping_held(lake, "acme") as (store, engine, _):
        waited = time.perf_counter()
        answered = engine.query(QUERIES[0], tenant="acme", now=TEST_NOW)
        waited = time.perf_counter() - waited
        assert answered.stats["path"] == "partitions"
        assert 0.2 <= waited < 30  # the bound, not the held mapping (60 s)
    plain = pql.Engine(lake, index=False, cache=False, limits=LIMITS)
    assert answers(engine, "acme") == answers(plain, "acme")
    store.close(120)


@pytest.mark.parametrize("bound", [30.0, 0.3], ids=["mapping-ends-first", "bound-ends-first"])
def test_the_loader_finishes_a_mapped_index_only_when_no_query_is_mapping_one(
    lake: Path, monkeypatch: pytest.MonkeyPatch, bound: float
) -> None:
    """A restart's first queries map their tenants' indexes side by side; the loader's
    finishing of those already mapped (their lookups' checks) waits while any query maps one,
    at most ``MAPPED_WAIT`` before each, so the maps get the cores first."""
    from pql.storage import indexed

    monkeypatch.setattr(indexed, "MAPPED_WAIT", bound)
    with _mapping_held(lake, "globex") as (store, engine, mapper):
        began = time.perf_counter()
        store.preload(["acme"])  # mapped by the loader, then finished by it
        if bound > 1:
            time.sleep(1.0)
            assert store.state("acme") == "index"  # mapped: its queries are answered
            assert not store.ready()  # not finished while globex's mapping is held
        else:
            assert store.wait_ready(30)  # finished after the bound, globex still held
            assert 0.3 <= time.perf_counter() - began < 20
            assert mapper.is_alive()
    assert store.wait_ready(30)
    assert engine.query(QUERIES[0], tenant="acme", now=TEST_NOW).stats["path"] == "index"
    store.close(120)


@pytest.mark.parametrize("interleaved", [False, True], ids=["in-order", "interleaved"])
def test_files_in_order_are_loaded_without_a_sort(
    tmp_path: Path, demo: DemoData, interleaved: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bucket's files, each sorted by ingest, in order of their times, are loaded as they are
    read; two ingests whose times interleave (a day with two files) are sorted: either way the
    index holds the bucket's rows in the subject's order."""
    catalog = Catalog()
    subject = catalog["receipts"]
    tenant = str(demo.receipts.get_column("tenant")[0])
    rows = demo.receipts.filter(pl.col("tenant") == tenant).sort("ts")
    engine = pql.Engine(tmp_path / "lake", index=False)
    if interleaved:  # every other row first: each day gets two files whose times overlap
        numbered = rows.with_row_index("n")
        for odd in (0, 1):
            engine.ingest("receipts", numbered.filter(pl.col("n") % 2 == odd).drop("n"))
    else:
        engine.ingest("receipts", rows)
    lake = Lake(tmp_path / "lake", catalog)
    files = lake.manifest().files_of(tenant, "receipts")
    sorts: list[object] = []
    real = pl.DataFrame.sort

    def noted_sort(*a: Any, **k: Any) -> pl.DataFrame:
        sorts.append(a)
        return real(*a, **k)

    monkeypatch.setattr(pl.DataFrame, "sort", noted_sort)
    loaded = [
        Snapshots(lake)._from_parquet(tenant, subject, group)
        for group in snapshots_module._buckets(lake.manifest(), tenant, subject).values()
    ]
    monkeypatch.undo()
    assert len(sorts) == (len(loaded) if interleaved else 0)
    for frame in loaded:
        order = sort_columns(subject)
        assert frame.equals(frame.sort(order)) and frame.n_chunks() == 1
    assert sum(frame.height for frame in loaded) == rows.height
    assert (len(files) > len({(e.storage, e.day) for e in files})) == interleaved


def _codes_of(store: MemoryStore, tenant: str, subject: str) -> list[JoinCodes]:
    """The join codes of each part of ``tenant``'s ``subject`` in ``store``."""
    return [c for part in store._tables[(tenant, subject)].parts for c in part.codes.values()]


def _proved_in_files(lake: Path, tenant: str) -> list[list[str]]:
    """What each of ``tenant``'s lookups files says was proved (its ``pql.join_codes``)."""
    said = []
    for path in sorted(lake.glob(f"mc-{tenant}-*/{SNAPSHOT_DIR}/*.lookup.arrow")):
        metadata = ipc.open_file(pa.memory_map(str(path))).schema.metadata or {}
        said.append(json.loads(metadata.get(b"pql.join_codes", b"null")))
    return said


def test_a_restart_makes_join_codes_without_counting_again(
    lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Snapshots say which columns' join codes were proved distinct at their key; a restart
    whose every part says so makes the codes without counting the values, and joins on them.
    A lookups file that says nothing (an older one) has them counted again."""
    opened(lake)  # loads from Parquet, proves, writes the snapshots
    tenant = sorted(sources(opened(lake)))[0]
    files = _proved_in_files(lake, tenant)
    assert files and all(said == ["executionId"] for said in files), files
    counted: list[bool] = []
    real = prove

    def spy(*args: Any, proved: bool = False) -> int | None:
        counted.append(not proved)
        return real(*args, proved=proved)

    monkeypatch.setattr(memory_module, "prove", spy)
    engine = opened(lake)
    assert set(sources(engine).values()) == {"snapshot"}
    assert counted and not any(counted)  # every tenant's codes made without counting
    text = "FIND COUNT(*) JOIN decisions ON receipts.executionId = decisions.executionId SINCE 30d"
    got = engine.query(text, tenant=tenant, now=TEST_NOW)
    assert sorted(got.stats["join_codes"]) == ["decisions.executionId", "receipts.executionId"]
    plain = pql.Engine(lake, index=False).query(text, tenant=tenant, now=TEST_NOW)
    assert got.df.rows() == plain.df.rows()

    # One part's file without the word: that tenant's values are counted again, and the file
    # is written again with it.
    path = sorted(lake.glob(f"mc-{tenant}-*-decisions/{SNAPSHOT_DIR}/*.lookup.arrow"))[0]
    table = ipc.open_file(pa.BufferReader(path.read_bytes())).read_all()
    metadata = dict(table.schema.metadata or {})
    del metadata[b"pql.join_codes"]
    _rewrite(path, table.replace_schema_metadata(metadata))
    counted.clear()
    opened(lake)
    assert counted.count(True) == 1  # the one tenant, counted
    assert all(said == ["executionId"] for said in _proved_in_files(lake, tenant))


def _rewrite(path: Path, table: pa.Table) -> None:
    """``table`` in place of the file at ``path`` (replaced, not written over: engines map it)."""
    temp = path.with_name(f".{path.name}.tmp")
    with ipc.new_file(str(temp), table.schema) as writer:
        writer.write_table(table)
    temp.replace(path)


def test_a_restart_maps_the_join_codes_saved_in_row_order(
    lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lookups file keeps a join column's hashes in row order too: a restart maps them as
    its join codes instead of scattering the sorted hashes back over every row. Codes that are
    not the column's (reversed, zeroed, its sorted hashes) fail the check on sampled rows and
    are made again; a file without them (an older one) gets them written."""
    opened(lake)
    tenant = sorted(sources(opened(lake)))[0]
    path = sorted(lake.glob(f"mc-{tenant}-*-decisions/{SNAPSHOT_DIR}/*.lookup.arrow"))[0]
    table = ipc.open_file(pa.BufferReader(path.read_bytes())).read_all()
    assert "executionId:code" in table.column_names  # a join column
    assert "decisionId:code" not in table.column_names  # an id no join uses
    scattered: list[str] = []
    agree = memory_module._codes_agree

    def spy(values: pl.Series, codes: Any) -> bool:
        ok = agree(values, codes)
        if not ok:
            scattered.append(str(values.name))
        return ok

    monkeypatch.setattr(memory_module, "_codes_agree", spy)
    text = "FIND COUNT(*) JOIN decisions ON receipts.executionId = decisions.executionId SINCE 30d"
    plain = pql.Engine(lake, index=False).query(text, tenant=tenant, now=TEST_NOW).df.rows()

    engine = opened(lake)
    store = engine.store
    assert isinstance(store, IndexedLake)
    index = store._loaded(tenant)
    assert index is not None
    parts = index.lookups_of(tenant, "decisions")
    for part in parts:
        join_codes = part["executionId"].codes
        assert join_codes is not None
        assert not join_codes.flags.owndata  # mapped
    assert scattered == []
    got = engine.query(text, tenant=tenant, now=TEST_NOW)
    assert "decisions.executionId" in got.stats["join_codes"]
    assert got.df.rows() == plain

    codes = table.column("executionId:code").to_numpy()
    at = table.column_names.index("executionId:code")
    for bad in (codes[::-1].copy(), codes * 0, table.column("executionId:hash").to_numpy()):
        _rewrite(path, table.set_column(at, "executionId:code", pa.array(bad)))
        scattered.clear()
        engine = opened(lake)
        assert scattered == ["executionId"]  # checked, refused, made from the lookup
        assert engine.query(text, tenant=tenant, now=TEST_NOW).df.rows() == plain
    # written again whole (the codes it lacked): the next restart maps them
    assert ipc.open_file(pa.memory_map(str(path))).read_all().equals(table)

    _rewrite(path, table.drop_columns(["executionId:code"]))  # as an older pql wrote it
    opened(lake)
    assert ipc.open_file(pa.memory_map(str(path))).read_all().equals(table)
