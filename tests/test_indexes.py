"""The default engine over a lake: in-memory indexes loaded in the background, under a budget.

Every path (a tenant's index, its partitions while the index loads or when it does not fit, the
rollups read from either) answers like DuckDB and like the memory store.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import pql
from pql.catalog import Catalog
from pql.demo import DemoData
from pql.errors import InputError
from pql.examples import CONTRACT_EXAMPLES
from pql.storage import IndexedLake, Lake
from pql.storage.budget import parse_budget
from pql.storage.rollup_files import ROLLUP_DIR
from pql.storage.rollups import RollupRead, partials, schema_of
from tests.cases import DIFFERENTIAL_CASES
from tests.compare import assert_same_frame
from tests.test_differential import check

COUNT = "FIND COUNT(*) AS n, SUM(receipts.latency_ms) AS s GROUP BY receipts.status SINCE 30d"


@pytest.fixture(scope="module")
def lake(demo: DemoData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("indexes") / "lake"
    writer = pql.Engine(root, index=False)
    writer.ingest("receipts", demo.receipts)
    writer.ingest("decisions", demo.decisions)
    return root


def _engine(root: Path, **options: Any) -> pql.Engine:
    """An engine over ``root`` whose indexed lake takes ``options``; rollups whenever exact."""
    catalog = Catalog()
    store = IndexedLake(Lake(root, catalog), catalog, **options)
    return pql.Engine(store=store, catalog=catalog, cache=False, rollup_min_rows=0)


def _indexed(engine: pql.Engine) -> IndexedLake:
    assert isinstance(engine.store, IndexedLake)
    return engine.store


def _gate() -> tuple[threading.Event, threading.Event, Callable[[str], None]]:
    """A loader hook that holds every load until ``release`` is set; ``started`` says one began."""
    started, release = threading.Event(), threading.Event()

    def hook(tenant: str) -> None:
        started.set()
        assert release.wait(30), "the test never released the load"

    return started, release, hook


@pytest.fixture(scope="module")
def from_index(lake: Path) -> pql.Engine:
    return _engine(lake, background=False)


@pytest.fixture(scope="module")
def from_partitions(lake: Path) -> pql.Engine:
    return _engine(lake, memory_budget=0)  # nothing fits: partitions (and rollups from them)


@pytest.mark.parametrize("text", [*CONTRACT_EXAMPLES, *DIFFERENTIAL_CASES])
def test_every_path_answers_like_duckdb(
    from_index: pql.Engine,
    from_partitions: pql.Engine,
    duck: Any,
    demo: DemoData,
    tenants: list[str],
    text: str,
) -> None:
    for tenant in (tenants[0], tenants[3]):
        got = check(from_index, duck, text, tenant, demo.now)
        assert got.stats["path"] == "index"
        fallback = check(from_partitions, duck, text, tenant, demo.now)
        assert fallback.stats["path"] == "partitions"
        assert_same_frame(fallback.df, got.df, f"for {text!r} ({tenant})")


def test_default_engine_over_a_lake_keeps_indexes_and_says_which_path_answered(
    lake: Path, demo: DemoData, tenants: list[str], engine: pql.Engine
) -> None:
    # A first open: the index is read from Parquet (with snapshots of an earlier test's engine,
    # the query would wait the milliseconds of mapping instead: tests/test_snapshots.py).
    served = pql.Engine(lake, cache=False, snapshots=False)
    assert isinstance(served.store, IndexedLake)
    first = served.query(COUNT, tenant=tenants[0], now=demo.now)
    assert first.stats["path"] == "partitions"  # its index started loading in the background
    served.preload([tenants[0]])
    assert served.wait_ready(timeout=30)
    later = served.query(COUNT, tenant=tenants[0], now=demo.now)
    assert later.stats["path"] == "index"
    memory = engine.query(COUNT, tenant=tenants[0], now=demo.now)
    assert memory.stats["path"] == "memory"
    for result in (first, later):
        assert_same_frame(result.df.sort("status"), memory.df.sort("status"))


def test_a_loading_tenant_is_answered_from_partitions_and_others_are_not_held_up(
    lake: Path, demo: DemoData, tenants: list[str], engine: pql.Engine
) -> None:
    loading, other = tenants[0], tenants[1]
    served = _engine(lake, snapshots=False)  # a load from Parquet, which queries never wait for
    store = _indexed(served)
    store.load(other)  # already in memory before the slow load starts
    started, release, hook = _gate()
    store.on_load = hook
    try:
        cold = served.query(COUNT, tenant=loading, now=demo.now)
        assert started.wait(10) and store.state(loading) == "loading"
        warm = served.query(COUNT, tenant=other, now=demo.now)
        # Both were answered while the load was still held: it blocked neither.
        assert not release.is_set() and store.state(loading) == "loading"
        assert (cold.stats["path"], warm.stats["path"]) == ("partitions", "index")
        again = served.query(COUNT, tenant=loading, now=demo.now)
        assert again.stats["path"] == "partitions"
    finally:
        release.set()
    for _ in range(300):
        if store.state(loading) == "index":
            break
        threading.Event().wait(0.1)
    ready = served.query(COUNT, tenant=loading, now=demo.now)
    assert ready.stats["path"] == "index"
    expected = engine.query(COUNT, tenant=loading, now=demo.now).df.sort("status")
    for result in (cold, again, ready):
        assert_same_frame(result.df.sort("status"), expected)
    assert_same_frame(
        warm.df.sort("status"), engine.query(COUNT, tenant=other, now=demo.now).df.sort("status")
    )


def test_preload_in_the_background_and_wait_until_ready(lake: Path, tenants: list[str]) -> None:
    served = _engine(lake)
    started, release, hook = _gate()
    _indexed(served).on_load = hook
    try:
        served.preload("all")
        assert started.wait(10)
        assert not served.ready()
        assert served.wait_ready(timeout=0.05) is False
    finally:
        release.set()
    assert served.wait_ready(timeout=60)
    assert served.ready()
    assert set(_indexed(served).loaded()) == set(tenants)


def test_preload_at_open(lake: Path, tenants: list[str]) -> None:
    served = pql.Engine(lake, preload=[tenants[2]])
    assert served.wait_ready(timeout=60)
    assert _indexed(served).loaded() == (tenants[2],)


def test_preload_a_column_of_tenants(lake: Path, tenants: list[str]) -> None:
    """A NumPy array or a Polars series of names is a list too (``== "all"`` would compare it
    element by element, and its truth value would be refused)."""
    column = pl.Series([tenants[1]]).to_numpy()
    served = pql.Engine(lake, preload=column)
    assert served.wait_ready(timeout=60)
    served.preload(pl.Series([tenants[2]]))
    assert served.wait_ready(timeout=60)
    assert set(_indexed(served).loaded()) == {tenants[1], tenants[2]}


def test_least_recently_used_tenants_are_dropped_to_stay_within_the_budget(
    lake: Path, demo: DemoData, tenants: list[str]
) -> None:
    # Sized and served from the Parquet files alike: a snapshot load counts its buffers as
    # written (a little more), and whether an earlier test of this lake left snapshots must not
    # decide what fits.
    sizes = {}
    for tenant in tenants[:3]:
        alone = _engine(lake, background=False, snapshots=False)
        _indexed(alone).load(tenant)
        sizes[tenant] = _indexed(alone).memory_bytes()
    a, b, c = tenants[:3]  # the largest first: c fits only if another goes
    served = _engine(lake, background=False, snapshots=False, memory_budget=sizes[a] + sizes[b])
    store = _indexed(served)
    for tenant in (a, b):
        assert served.query(COUNT, tenant=tenant, now=demo.now).stats["path"] == "index"
    assert store.loaded() == (a, b)
    served.query(COUNT, tenant=a, now=demo.now)  # a is now the most recently used
    assert store.loaded() == (b, a)
    assert served.query(COUNT, tenant=c, now=demo.now).stats["path"] == "index"
    assert c in store.loaded() and b not in store.loaded()  # b went first
    assert store.memory_bytes() <= store.memory_budget


def test_a_tenant_that_does_not_fit_is_served_from_its_partitions(
    lake: Path, demo: DemoData, tenants: list[str], engine: pql.Engine
) -> None:
    served = _engine(lake, background=False, memory_budget="1KiB")
    got = served.query(COUNT, tenant=tenants[0], now=demo.now)
    assert got.stats["path"] == "partitions"
    assert _indexed(served).loaded() == ()
    assert "bytes" in _indexed(served).refused()[tenants[0]]
    expected = engine.query(COUNT, tenant=tenants[0], now=demo.now).df.sort("status")
    assert_same_frame(got.df.sort("status"), expected)


def test_ingest_drops_the_index_and_the_next_load_sees_the_new_rows(
    tmp_path: Path, demo: DemoData, tenants: list[str], engine: pql.Engine
) -> None:
    root = tmp_path / "lake"
    first, rest = demo.receipts.head(3000), demo.receipts.tail(demo.receipts.height - 3000)
    pql.Engine(root, index=False).ingest("receipts", first)
    served = _engine(root, background=False)
    text = "FIND COUNT(receipts.executionId) AS n SINCE 180d"
    before = served.query(text, tenant=tenants[0], now=demo.now)
    served.ingest("receipts", rest)
    after = served.query(text, tenant=tenants[0], now=demo.now)
    assert after.stats["path"] == "index"
    whole = engine.query(text, tenant=tenants[0], now=demo.now).df.item()
    assert before.df.item() < after.df.item() == whole


def _expected_rollup(
    store: IndexedLake, data: pl.DataFrame, tenant: str, first: date, last: date
) -> pl.DataFrame:
    """The rollup rows of ``tenant``'s receipts in ``data`` for the days ``first`` to ``last``."""
    day = pl.col("ts").dt.date()
    rows = data.filter((pl.col("tenant") == tenant) & day.is_between(first, last))
    return partials(store.rollup_specs()["receipts"], rows)


def _rows_of(read: RollupRead) -> pl.DataFrame:
    frame = read.frame.collect()
    return frame.sort(frame.columns)


@pytest.mark.parametrize("with_files", [True, False], ids=["rollup-files", "rows"])
def test_rollups_from_partitions_are_kept_per_day_until_the_index_answers(
    tmp_path: Path, demo: DemoData, tenants: list[str], with_files: bool
) -> None:
    """While a tenant's index loads, the rollups its aggregates take from the data files'
    rollup files, or compute from the rows of files without one, are kept per day (counted in
    the memory): the next read over those days reads nothing. An ingest drops them (the next
    read sees the new rows), and so does the tenant's index once kept."""
    tenant = tenants[0]
    mine = demo.receipts.filter(pl.col("tenant") == tenant)
    older = mine.filter(pl.col("ts") < demo.now - timedelta(days=2))
    root, catalog = tmp_path / "lake", Catalog()
    pql.Engine(root, index=False).ingest("receipts", older)
    if not with_files:  # as a lake ingested before rollup files were written
        for folder in root.glob(f"mc-*/{ROLLUP_DIR}"):
            shutil.rmtree(folder)
    store = IndexedLake(Lake(root, catalog), catalog, snapshots=False)
    started, release, hook = _gate()
    store.on_load = hook
    last = demo.now.date() - timedelta(days=1)
    first, week = last - timedelta(days=9), last - timedelta(days=6)
    try:
        seven = store.rollup(tenant, "receipts", week, last)
        assert started.wait(10) and store.state(tenant) == "loading"
        wider = store.rollup(tenant, "receipts", first, last)
        again = store.rollup(tenant, "receipts", first, last)
        assert seven.source == wider.source == again.source == "partitions"
        if with_files:  # the rollup files answer: no row is read
            assert seven.rows == wider.rows == 0 and seven.days > wider.days > 0
        else:  # the wider read scanned only the three days the first did not
            assert 0 < wider.rows < seven.rows
        assert (again.rows, again.days) == (0, 0)
        assert store.memory_bytes() > 0 and store.loaded() == ()
        expected = _expected_rollup(store, older, tenant, first, last)
        assert_same_frame(_rows_of(again), expected.sort(expected.columns))
        # An ingest drops them: the rows of the last two days are read and counted.
        store.ingest(catalog["receipts"], mine)
        fresh = store.rollup(tenant, "receipts", first, last)
        assert fresh.source == "partitions"
        # The new files have rollup files; without them, the old files' rows are read again.
        assert (fresh.rows == 0) == with_files
        expected = _expected_rollup(store, mine, tenant, first, last)
        assert_same_frame(_rows_of(fresh), expected.sort(expected.columns))
    finally:
        release.set()
    # Once the tenant's index is kept, its own rollups answer and the kept days are dropped.
    for _ in range(300):
        indexed = store.rollup(tenant, "receipts", first, last)
        if indexed.source == "index":
            break
        threading.Event().wait(0.1)
    assert indexed.source == "index" and not store._days
    assert_same_frame(_rows_of(indexed), expected.sort(expected.columns))


def test_one_shot_commands_read_only_the_window(lake: Path) -> None:
    from pql.cli import build_parser, engine_for

    argv = ["query", "--data", str(lake), "--tenant", "acme", "FIND receipts"]
    args = build_parser().parse_args(argv)
    assert isinstance(engine_for(args).store, Lake)


def test_index_false_forces_the_plain_lake(lake: Path) -> None:
    assert isinstance(pql.Engine(lake, index=False).store, Lake)
    assert pql.Engine(lake, index=False).ready()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4GiB", 4 * 1024**3), ("2GB", 2 * 10**9), ("512 MiB", 512 * 1024**2), (1000, 1000)],
)
def test_memory_budget_sizes(text: str | int, expected: int) -> None:
    assert parse_budget(text) == expected
    assert parse_budget(None) > 0


@pytest.mark.parametrize("bad", ["lots", "-1GiB", "4 parsecs", -5, 1.5, True])
def test_a_budget_that_is_not_a_size_is_refused(lake: Path, bad: Any) -> None:
    with pytest.raises(InputError) as caught:
        pql.Engine(lake, memory_budget=bad)
    assert caught.value.code == "PQL-E160"


@pytest.mark.parametrize("bad", ["acme", True, 3, 1.5])
def test_preload_takes_all_or_a_list(lake: Path, bad: Any) -> None:
    with pytest.raises(InputError) as caught:
        pql.Engine(lake, preload=bad)
    assert caught.value.code == "PQL-E161"
    assert str(caught.value) == f"[PQL-E161] preload {bad!r} is neither 'all' nor a list of tenants"
    with pytest.raises(InputError) as caught:  # checked as well where nothing would load
        pql.Engine.in_memory().preload(bad)
    assert caught.value.code == "PQL-E161"
    with pytest.raises(InputError) as caught:
        pql.Engine(lake, preload=["acme", "Not A Tenant"])
    assert caught.value.code == "PQL-E030"


def test_rollups_from_partitions_of_no_whole_day_are_empty(lake: Path, tenants: list[str]) -> None:
    store = IndexedLake(Lake(lake, Catalog()), Catalog(), memory_budget=0)
    day = date(2026, 11, 1)
    got = store.rollup(tenants[0], "receipts", day, day - timedelta(days=1))
    assert (got.rows, got.days, got.frame.collect().height) == (0, 0, 0)
    assert got.frame.collect_schema() == schema_of(store.rollup_specs()["receipts"])
