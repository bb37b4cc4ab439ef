"""The benchmark data cache's clock: runs on cached data see the windows the data was made for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pql
from benchmarks.data import Clock
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
