"""pql's answers equal DuckDB's for the equivalent SQL on the same data, on every store path.

The data (``edge_data``) has rows exactly at every edge of every window queried here, so a bound
off by one microsecond on any path (``store_path``, see ``tests/paths.py``) changes an answer.
"""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import given

import pql
from pql import ast
from pql.demo import DemoData
from pql.examples import CONTRACT_EXAMPLES
from pql.plan.nodes import RollupAggregate, walk
from tests.cases import DIFFERENTIAL_CASES, WINDOW_CASES, WINDOWS
from tests.compare import assert_same_frame
from tests.paths import StorePath, edge_times
from tests.sqlref import translate
from tests.strategies import queries


def check(engine: pql.Engine, duck: Any, text: str, tenant: str, now: Any) -> pql.Result:
    prepared = engine.prepare(text, tenant=tenant, now=now)
    result = engine.execute(prepared)
    max_rows = prepared.limits.max_rows
    sql = translate(
        prepared.analyzed,
        tenant=tenant,
        now=prepared.now,
        window=prepared.window,
        max_rows=max_rows,
    )
    theirs = pl.from_arrow(duck.sql(sql).to_arrow_table())
    assert isinstance(theirs, pl.DataFrame)
    truncated = theirs.height > max_rows
    assert result.truncated == truncated, f"truncated differs for {text!r}"
    assert_same_frame(result.df, theirs.head(max_rows), f"for {text!r} ({tenant})\nSQL: {sql}")
    return result


@pytest.mark.parametrize("text", [*CONTRACT_EXAMPLES, *DIFFERENTIAL_CASES, *WINDOW_CASES])
@pytest.mark.parametrize("which", [0, 3])
def test_examples_match_duckdb(
    store_path: StorePath,
    edge_duck: Any,
    edge_data: DemoData,
    edge_tenants: list[str],
    text: str,
    which: int,
) -> None:
    check(store_path.engine, edge_duck, text, edge_tenants[which], edge_data.now)


def test_the_data_holds_every_edge(edge_data: DemoData) -> None:
    """Guard the edge rows themselves: every tenant has a receipt at every edge instant."""
    windows = {
        timedelta(seconds=pql.parse(f"FIND receipts SINCE {w}").since.seconds) for w in WINDOWS
    }  # type: ignore[union-attr]
    wanted = set(edge_times(edge_data.now, windows))
    assert edge_data.now in wanted and edge_data.now + timedelta(days=1) in wanted
    for (tenant,), rows in edge_data.receipts.partition_by("tenant", as_dict=True).items():
        assert wanted <= set(rows["ts"].to_list()), tenant


@pytest.mark.parametrize("window", WINDOWS)
def test_a_window_holds_both_its_edges(
    store_path: StorePath, edge_data: DemoData, edge_tenants: list[str], window: str
) -> None:
    """``SINCE d`` keeps ``now - d <= ts <= now``: the rows exactly at both bounds, none beyond."""
    since = timedelta(seconds=pql.parse(f"FIND receipts SINCE {window}").since.seconds)  # type: ignore[union-attr]
    now, tick = edge_data.now, timedelta(microseconds=1)
    for tenant in (edge_tenants[0], edge_tenants[-1]):
        for subject in ("receipts", "decisions"):
            text = f"FIND MIN({subject}.ts) AS first, MAX({subject}.ts) AS last SINCE {window}"
            got = store_path.engine.query(text, tenant=tenant, now=now).df.row(0)
            assert got == (now - since, now), f"{text} ({tenant}) on {store_path.name}"
            # one microsecond narrower on each side loses exactly the edge rows
            inner = store_path.engine.query(text, tenant=tenant, now=now - tick).df.row(0)
            assert inner[1] == now - tick, f"{text} ({tenant}, now - 1µs) on {store_path.name}"


@pytest.mark.parametrize(("low", "high"), [(">=", "<="), (">", "<"), (">=", "<"), (">", "<=")])
def test_bounds_on_ts_keep_their_edges(
    store_path: StorePath,
    edge_duck: Any,
    edge_data: DemoData,
    edge_tenants: list[str],
    low: str,
    high: str,
) -> None:
    """A comparison of ``ts`` with a constant narrows the scan's window (``narrow_windows``):
    on rows exactly at the bound, and one microsecond either side, it keeps what SQL keeps."""
    now, tick = edge_data.now, timedelta(microseconds=1)
    for start, end in [
        (now - timedelta(days=7), now - timedelta(days=1)),
        (now - timedelta(days=7) - tick, now - timedelta(days=1) + tick),
        (now - timedelta(days=30) + tick, now),
        (now - timedelta(days=60), now + timedelta(days=1)),  # both beyond the window
    ]:
        text = (
            "FIND COUNT(*) AS n, MIN(receipts.ts) AS first, MAX(receipts.ts) AS last "
            f"WHERE receipts.ts {low} '{start.isoformat()}' AND ts {high} '{end.isoformat()}' "
            "SINCE 30d"
        )
        check(store_path.engine, edge_duck, text, edge_tenants[0], now)


def test_forced_rollup_paths_read_rollups(
    store_path: StorePath, edge_data: DemoData, edge_tenants: list[str]
) -> None:
    """Guard against a vacuous path: ``+rollup`` paths answer window aggregates from rollups;
    the defaults, on data this small, never do."""
    used = [
        any(
            isinstance(node, RollupAggregate)
            for node in walk(
                store_path.engine.prepare(text, tenant=edge_tenants[0], now=edge_data.now).plan
            )
        )
        for text in WINDOW_CASES[: len(WINDOWS)]
    ]
    if store_path.rollups_forced:
        assert all(used[2:]), used  # windows of 7 days and more always hold a whole UTC day
    else:
        assert not any(used), used


def test_row_cap_truncates_like_sql(
    engine: pql.Engine, duck: Any, demo: Any, tenants: list[str]
) -> None:
    small = pql.Engine.in_memory(limits=pql.Limits(max_rows=25))
    small.ingest("receipts", demo.receipts)
    result = check(small, duck, "FIND receipts SINCE 30d", tenants[0], demo.now)
    assert result.truncated
    assert result.df.height == 25


def test_contract_examples_return_rows(engine: pql.Engine, demo: Any, tenants: list[str]) -> None:
    """Guard against a vacuous differential test: the examples must find data."""
    nonempty = sum(
        engine.query(text, tenant=tenants[0], now=demo.now).df.height > 0
        for text in CONTRACT_EXAMPLES
    )
    assert nonempty == len(CONTRACT_EXAMPLES)


@given(query=queries())
def test_generated_queries_match_duckdb(
    store_path: StorePath,
    edge_duck: Any,
    edge_data: DemoData,
    edge_tenants: list[str],
    query: ast.Query,
) -> None:
    text = ast.to_text(query)
    for tenant in (edge_tenants[0], edge_tenants[-1]):
        check(store_path.engine, edge_duck, text, tenant, edge_data.now.astimezone(UTC))
