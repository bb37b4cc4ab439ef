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
import pql.storage.memory as memory_module
from pql import ast
from pql.demo import DemoData
from pql.examples import CONTRACT_EXAMPLES
from pql.plan.nodes import RollupAggregate, walk
from pql.storage import IndexedLake
from tests.cases import DIFFERENTIAL_CASES, WINDOW_CASES, WINDOWS
from tests.compare import assert_same_frame
from tests.paths import PATHS, SPARK, StorePath, edge_times
from tests.sqlref import translate_prepared
from tests.strategies import queries


def check(engine: pql.Engine, duck: Any, text: str, tenant: str, now: Any) -> pql.Result:
    prepared = engine.prepare(text, tenant=tenant, now=now)
    result = engine.execute(prepared)
    max_rows = prepared.limits.max_rows
    sql = translate_prepared(prepared, tenant, max_rows=max_rows)
    theirs = pl.from_arrow(duck.sql(sql).to_arrow_table())
    assert isinstance(theirs, pl.DataFrame)
    truncated = theirs.height > max_rows
    assert result.truncated == truncated, f"truncated differs for {text!r}"
    assert_same_frame(result.df, theirs.head(max_rows), f"for {text!r} ({tenant})\nSQL: {sql}")
    return result


@pytest.mark.parametrize(
    "store_path", [*PATHS, pytest.param(SPARK, marks=pytest.mark.spark)], indirect=True
)
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


def _since(window: str) -> timedelta:
    """How far back ``SINCE {window}`` reaches."""
    since = pql.parse(f"FIND receipts SINCE {window}").since
    assert since is not None
    return timedelta(seconds=since.seconds)


def test_the_data_holds_every_edge(edge_data: DemoData) -> None:
    """Guard the edge rows themselves: every tenant has a receipt at every edge instant."""
    windows = {_since(w) for w in WINDOWS}
    wanted = set(edge_times(edge_data.now, windows))
    assert edge_data.now in wanted and edge_data.now + timedelta(days=1) in wanted
    for (tenant,), rows in edge_data.receipts.partition_by("tenant", as_dict=True).items():
        assert wanted <= set(rows["ts"].to_list()), tenant


@pytest.mark.parametrize(
    "store_path", [*PATHS, pytest.param(SPARK, marks=pytest.mark.spark)], indirect=True
)
@pytest.mark.parametrize("window", WINDOWS)
def test_a_window_holds_both_its_edges(
    store_path: StorePath, edge_data: DemoData, edge_tenants: list[str], window: str
) -> None:
    """``SINCE d`` keeps ``now - d <= ts <= now``: the rows exactly at both bounds, none beyond."""
    since = _since(window)
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


# Comparisons of the tenant column: with the caller's own name, with another, in IN and NOT IN,
# with IS (NOT) NULL, and under an OR (which is not folded when planning).
TENANT_PARTS = [
    "receipts.tenant = '{own}'",
    "receipts.tenant = 'globex-2'",
    "receipts.tenant != '{own}'",
    "receipts.tenant != 'globex-2'",
    "receipts.tenant IN ('globex-2', '{own}')",
    "receipts.tenant NOT IN ('{own}')",
    "receipts.tenant IS NULL",
    "receipts.tenant IS NOT NULL",
    "(receipts.tenant = 'globex-2' OR receipts.status = 'ok')",
]


@pytest.mark.parametrize(
    "store_path", [*PATHS, pytest.param(SPARK, marks=pytest.mark.spark)], indirect=True
)
@pytest.mark.parametrize("part", TENANT_PARTS)
def test_tenant_comparisons_answer_like_sql(
    store_path: StorePath, edge_duck: Any, edge_data: DemoData, edge_tenants: list[str], part: str
) -> None:
    """``fold_tenant`` decides these when planning (every row holds the caller's tenant); the
    answers are SQL's, with a join, a grouping and a LIMIT over rows in ts order."""
    own = edge_tenants[0]
    where = part.format(own=own)
    for text in (
        f"FIND COUNT(*) AS n, COUNT(decisions.decisionId) AS d JOIN decisions ON "
        f"receipts.executionId = decisions.executionId WHERE {where} AND "
        "decisions.effect = 'deny' SINCE 30d",
        f"FIND COUNT(*) AS n WHERE {where} GROUP BY receipts.region SINCE 30d",
        f"FIND receipts WHERE {where} ORDER BY receipts.ts DESC SINCE 30d LIMIT 5",
    ):
        check(store_path.engine, edge_duck, text, own, edge_data.now)


def test_forced_rollup_paths_read_rollups(
    store_path: StorePath, edge_data: DemoData, edge_tenants: list[str]
) -> None:
    """Guard against a vacuous path: ``+rollup`` paths answer window aggregates from rollups;
    the defaults, on data this small, never do once the tenant's index is in memory (before,
    reading the tenant from files, they take the rollup: ``tests/test_rollup_files.py``)."""
    store = store_path.engine.store
    if isinstance(store, IndexedLake) and store_path.name != SPARK:
        store.preload([edge_tenants[0]])
        assert store.wait_ready(60)
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


def test_only_the_streaming_path_streams_joins_this_small(
    store_path: StorePath, edge_data: DemoData, edge_tenants: list[str]
) -> None:
    """Guard against a vacuous path: the ``streaming`` path collects every inner join on Polars'
    streaming engine (and nothing else); the others, on data this small, never do."""
    engines = {
        text: store_path.engine.query(
            text, tenant=edge_tenants[0], now=edge_data.now, cache=False
        ).stats["polars_engine"]
        for text in (
            "FIND AVG(receipts.latency_ms) JOIN decisions ON receipts.executionId = "
            "decisions.executionId GROUP BY decisions.rule SINCE 30d",
            "FIND COUNT(*) JOIN decisions ON receipts.executionId = decisions.executionId "
            "SINCE 30d",  # a semi join: no pairs built
            "FIND COUNT(*) AS n GROUP BY receipts.region SINCE 30d",
        )
    }
    streamed = list(engines.values()) == ["streaming", "in-memory", "in-memory"]
    assert streamed == (store_path.name == "streaming"), engines
    if store_path.name != "streaming":
        assert set(engines.values()) == {"in-memory"}, engines


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


def _ids(frame: pl.DataFrame, tenant: str, column: str, pattern: str) -> list[str]:
    mine = frame.filter((pl.col("tenant") == tenant) & pl.col(column).str.contains(pattern))
    return sorted(mine.get_column(column).drop_nulls().unique().to_list())


def _lookup_cases(data: DemoData, tenant: str, other: str) -> list[tuple[str, bool | None]]:
    """Queries that pin id columns to rows of ``tenant``, each with whether a path with an index
    must read it by lookup (``None``: it may decline, the rows being many of the window's).

    Per window, the receipts exactly at its lower bound, one microsecond before it, at ``now``
    and one microsecond after it (each with a decision at the same instant and one a microsecond
    earlier); generated rows; ids of ``other`` tenant, which must find nothing."""
    mine = data.receipts.filter(pl.col("tenant") == tenant)
    at = dict(zip(mine["ts"].to_list(), mine["executionId"].to_list(), strict=True))
    now, tick = data.now, timedelta(microseconds=1)
    edges = _ids(data.receipts, tenant, "executionId", "^ex-edge-")
    generated = _ids(data.receipts, tenant, "executionId", "^ex-[0-9a-f]")[:5]
    theirs = _ids(data.receipts, other, "executionId", "^ex-")[:3]
    decisions = _ids(data.decisions, tenant, "decisionId", "^dec-edge-")[::7]

    def listed(values: list[str]) -> str:
        return ", ".join(f"'{v}'" for v in values)

    cases: list[tuple[str, bool | None]] = []
    for window in WINDOWS:
        since = _since(window)
        bounds = listed([at[now - since - tick], at[now - since], at[now], at[now + tick]])
        cases += [
            (f"FIND decisions WHERE executionId IN ({bounds}) SINCE {window}", True),
            (f"FIND receipts WHERE executionId IN ({bounds}) SINCE {window}", True),
            (f"FIND decisions WHERE executionId IN ({listed(edges)}) SINCE {window}", None),
        ]
    return [
        *cases,
        (f"FIND receipts WHERE executionId = '{generated[0]}' SINCE 180d", True),
        (
            f"FIND decisions WHERE executionId = '{generated[1]}' OR executionId IS NULL "
            f"OR executionId IN ({listed(theirs)}) SINCE 180d",
            True,
        ),
        (
            f"FIND decisions WHERE decisionId IN ({listed(decisions)}) SINCE 30d "
            "ORDER BY ts DESC LIMIT 7",
            True,
        ),
        (
            f"FIND decisions WHERE (executionId IN ({listed(edges[::5] + generated)}) OR "
            "executionId IS NULL) AND effect = 'deny' SINCE 90d",
            True,
        ),
        (
            f"FIND receipts WHERE executionId IN ({listed(generated + edges[::5])}) AND NOT "
            "status = 'ok' AND latency_ms > 10 SINCE 60d ORDER BY latency_ms DESC LIMIT 3",
            True,
        ),
        (
            "FIND COUNT(*) AS n, MIN(decisions.ts) AS first WHERE decisions.executionId IN "
            f"({listed(edges[::5])}) GROUP BY decisions.rule SINCE 30d",
            True,
        ),
        (
            "FIND decisions JOIN receipts ON receipts.executionId = decisions.executionId "
            f"WHERE receipts.executionId IN ({listed(edges[::9])}) SINCE 30d",
            True,
        ),
        (f"FIND receipts WHERE executionId IN ({listed(theirs)}) SINCE 180d", True),
        (f"FIND receipts WHERE NOT executionId IN ({listed(edges)}) SINCE 1d", False),
        (f"FIND receipts WHERE executionId = '{generated[0]}' OR status = 'ok' SINCE 7d", False),
    ]


def test_key_lookups_match_duckdb(
    store_path: StorePath,
    edge_duck: Any,
    edge_data: DemoData,
    edge_tenants: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Filters on id columns answer like DuckDB, at every window edge, on every path; the paths
    with an index in memory read those rows by lookup (windows this small are scanned unless
    told otherwise), a restarted one with the lookups mapped from snapshots (each region's part
    its own); the partitions path never does."""
    monkeypatch.setattr(memory_module, "LOOKUP_MIN_WINDOW", 0)
    engine = store_path.engine
    tenant, other = edge_tenants[0], edge_tenants[-1]
    engine.preload([tenant])
    assert engine.wait_ready(timeout=120)
    found = 0
    for text, expected in _lookup_cases(edge_data, tenant, other):
        result = check(engine, edge_duck, text, tenant, edge_data.now)
        found += result.df.height > 0
        used = bool(result.stats["lookups"])
        if store_path.name == "cli":
            assert not used, text
        elif expected is not None:
            assert used == expected, f"{text} on {store_path.name}: {result.stats['lookups']}"
    assert found >= 25  # guard against a vacuous test: most of these find rows
