"""The benchmark data cache: runs on cached data see the windows the data was made for, and
read its rows only when they ask for them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pql
from benchmarks.data import Clock, cached_data
from benchmarks.harness import _clock_now


def test_the_clock_starts_at_the_data_and_moves_with_the_wall() -> None:
    start = datetime(2026, 3, 2, 12, 0, 7, 123456, tzinfo=UTC)
    clock = Clock(start)
    first = clock.now()
    assert timedelta(0) <= first - start < timedelta(seconds=5)
    assert clock.now() >= first


def test_a_cached_query_floors_the_clock_like_the_engine() -> None:
    start = datetime(2026, 3, 2, 12, 0, 7, 123456, tzinfo=UTC)
    engine = pql.Engine.in_memory(cache_granularity=timedelta(seconds=10))
    floored = _clock_now(engine, Clock(start), cache=True)
    assert floored is not None and floored.second % 10 == 0 and floored.microsecond == 0
    exact = _clock_now(engine, Clock(start), cache=False)  # not floored: at or after the start
    assert exact is not None and timedelta(0) <= exact - start < timedelta(seconds=5)
    assert _clock_now(engine, None, cache=True) is None


def test_cached_data_reads_its_rows_only_when_asked(tmp_path: Path) -> None:
    built = cached_data(200, tenants=2, seed=5, cache=tmp_path)
    data = cached_data(200, tenants=2, seed=5, cache=tmp_path)  # read back
    assert built.build_s is not None and data.build_s is None and data.now == built.now
    assert data.rows() == (built.receipts.height, built.decisions.height)
    assert data.tenant_column().equals(built.receipts.get_column("tenant"))
    assert "receipts" not in vars(data) and "decisions" not in vars(data)  # nothing read yet
    assert data.receipts.equals(built.receipts) and data.decisions.equals(built.decisions)
    assert data.lake == tmp_path / "demo-200-t2-s5" / "lake" and data.lake.is_dir()
