"""What the stores report beside the rows: where an answer came from, how much was read, and the
details of a refused ingest. ``result.stats`` and error details are part of the API
(``docs/pql/API.md``); each test here pins one of them at a case the answers do not show."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pql
from pql.demo import DemoData, generate
from pql.errors import InputError
from pql.storage import IndexedLake
from pql.storage.memory import _Table
from tests.clock import TEST_NOW

COUNT = "FIND COUNT(*) AS n GROUP BY receipts.region SINCE 30d"


@pytest.fixture(scope="module")
def data() -> DemoData:
    return generate(2_000, seed=9, now=TEST_NOW, tenants=3)


@pytest.mark.parametrize("rollup_min_rows", [0, 100_000])
def test_a_tenant_without_data_reads_nothing(data: DemoData, rollup_min_rows: int) -> None:
    engine = pql.Engine.in_memory(cache=False, rollup_min_rows=rollup_min_rows)
    engine.ingest("receipts", data.receipts)
    result = engine.query(COUNT, tenant="nobody", now=data.now)
    assert result.df.height == 0
    assert (result.stats["rows_scanned"], result.stats["partitions_read"]) == (0, 0)
    assert result.stats["path"] == "memory"


def test_a_window_without_rows_reads_no_day(data: DemoData) -> None:
    """A window between two rows of one day: no rows and no day read."""
    engine = pql.Engine.in_memory(cache=False)
    engine.ingest("receipts", data.receipts)
    tenant = str(data.receipts["tenant"][0])
    stamps = data.receipts.filter(pl.col("tenant") == tenant)["ts"].sort()
    same_day = stamps.dt.date() == stamps.dt.date().shift(1)
    gaps = pl.select(pl.when(same_day).then(stamps.diff().dt.total_microseconds())).to_series()
    widest = int(gaps.arg_max() or 0)
    assert stamps[widest].date() == stamps[widest - 1].date()
    now = stamps[widest - 1] + (stamps[widest] - stamps[widest - 1]) / 2
    since = max(int((now - stamps[widest - 1]).total_seconds() / 60) - 1, 1)
    result = engine.query(f"FIND receipts SINCE {since}m", tenant=tenant, now=now)
    assert result.df.height == 0
    assert (result.stats["rows_scanned"], result.stats["partitions_read"]) == (0, 0)


def test_a_rollup_read_while_the_index_loads_comes_from_partitions(
    data: DemoData, tmp_path: Path
) -> None:
    writer = pql.Engine(tmp_path / "lake", index=False, cache=False)
    writer.ingest("receipts", data.receipts)
    store = pql.Engine(tmp_path / "lake", cache=False).store
    assert isinstance(store, IndexedLake)
    tenant = str(data.receipts["tenant"][0])
    last = data.now.date() - timedelta(days=1)
    read = store.rollup(tenant, "receipts", last - timedelta(days=6), last)
    assert read.source == "partitions"  # the read started the tenant's load
    deadline = time.monotonic() + 60
    while store.state(tenant) != "index" and time.monotonic() < deadline:
        time.sleep(0.01)
    again = store.rollup(tenant, "receipts", last - timedelta(days=6), last)
    assert again.source == "index"
    assert again.frame.collect().height > 0


def test_a_refused_ingest_says_which_row_and_column(data: DemoData) -> None:
    engine = pql.Engine.in_memory()
    bad = data.receipts.head(5).with_columns(
        executionId=pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise(pl.col("executionId"))
    )
    with pytest.raises(InputError) as caught:
        engine.ingest("receipts", bad)
    assert caught.value.code == "PQL-E053"
    assert caught.value.details == {"column": "executionId", "row": 3, "value": "null", "rows": 1}


@settings(max_examples=300, deadline=None)
@given(
    seconds=st.lists(st.integers(0, 30), max_size=30).map(sorted),
    origin=st.integers(-5, 35),
    moves=st.lists(
        st.tuples(st.integers(-3, 3), st.sampled_from([-2, 0, 3, 10, 60])), min_size=1, max_size=40
    ),
)
def test_a_window_reads_the_rows_between_its_ends_however_it_moves(
    seconds: list[int], origin: int, moves: list[tuple[int, int]]
) -> None:
    """A table's rows for a window, kept per window length and reused while the window moves
    between the same rows, are always those a count of the rows gives: the first at or after
    its start, up to the last at or before its end (none when it ends before it starts)."""
    moments = [TEST_NOW + timedelta(seconds=s) for s in seconds]
    frame = pl.DataFrame({"ts": moments}, schema={"ts": pl.Datetime("us", "UTC")})
    table = _Table.build(frame)
    start = origin
    for step, length in moves:
        start += step
        lo = sum(s < start for s in seconds)
        after = sum(s <= start + length for s in seconds)
        first = TEST_NOW + timedelta(seconds=start)
        assert table.window(first, first + timedelta(seconds=length)) == (lo, max(lo, after))
