"""What the stores report beside the rows: where an answer came from, how much was read, and the
details of a refused ingest. ``result.stats`` and error details are part of the API
(``docs/pql/API.md``); each test here pins one of them at a case the answers do not show."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

import pql
from pql.demo import DemoData, generate
from pql.errors import InputError
from pql.storage import IndexedLake
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
