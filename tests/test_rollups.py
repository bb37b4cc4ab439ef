"""Rollups answer exactly like the raw rows, and like DuckDB, whenever the planner uses them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pql
from pql import ast
from pql.catalog import DECISIONS, RECEIPTS, Catalog
from pql.demo import DemoData, generate
from pql.plan.expr import NOTHING
from pql.plan.nodes import Filter, Node, RollupAggregate, walk
from pql.plan.optimize import optimize
from pql.plan.rollups import MIN_ROWS, edge_windows, whole_days
from pql.storage import MemoryStore
from pql.storage.rollups import DAY, ROWS, Rollups, partials, rollup_specs, spec_for
from tests.clock import TEST_NOW
from tests.compare import assert_same_frame
from tests.sqlref import translate_prepared
from tests.strategies import POOLS

KEYS = {
    "receipts": ["tenant", "region", "workflow", "status"],
    "decisions": ["tenant", "region", "rule", "effect", "policy_version"],
}
MEASURES = {"receipts": ["latency_ms", "cost_usd"], "decisions": []}
NEVER_NULL = {"receipts": ["executionId", "ts"], "decisions": ["decisionId", "ts"]}

HAND_WRITTEN = [
    "FIND COUNT(*), AVG(receipts.latency_ms), SUM(receipts.cost_usd) GROUP BY receipts.region SINCE 180d",
    'FIND COUNT(*) WHERE receipts.status = "error" GROUP BY receipts.workflow SINCE 30d',
    'FIND AVG(receipts.latency_ms) WHERE workflow IN ("etl", "billing") GROUP BY receipts.workflow SINCE 30d',
    "FIND COUNT(receipts.executionId) SINCE 7d",
    "FIND COUNT(*) AS n, MIN(receipts.latency_ms), MAX(receipts.ts) GROUP BY status, region SINCE 90d",
    "FIND SUM(receipts.latency_ms) AS s, COUNT(receipts.latency_ms) WHERE status = 'no-such' SINCE 180d",
    "FIND MIN(receipts.ts), MAX(receipts.ts), MIN(receipts.region), MAX(receipts.workflow) SINCE 60d",
    "FIND COUNT(receipts.status), COUNT(receipts.cost_usd) WHERE NOT (status IN ('ok', 'error')) "
    "OR region != 'us-east-1' GROUP BY receipts.tenant SINCE 2w",
    "FIND AVG(receipts.cost_usd), MAX(receipts.latency_ms) WHERE status IS NOT NULL AND "
    "workflow NOT IN ('sync') GROUP BY receipts.region, receipts.status SINCE 50h ORDER BY region DESC",
    "FIND COUNT(*) AS n WHERE decisions.effect != 'allow' GROUP BY decisions.policy_version SINCE 180d",
    "FIND COUNT(decisions.decisionId), MIN(decisions.ts) WHERE effect = 'deny' GROUP BY decisions.rule SINCE 30d",
    "FIND COUNT(*) AS n WHERE decisions.rule > 'p' GROUP BY decisions.region, decisions.effect SINCE 7d LIMIT 3",
]

_MIDNIGHT = TEST_NOW.replace(hour=0, minute=0, second=0, microsecond=0)
ALL_DAYS = ((TEST_NOW - timedelta(days=400)).date(), (TEST_NOW + timedelta(days=30)).date())
NOWS = [
    _MIDNIGHT + timedelta(hours=12),  # midday: both edges partial
    _MIDNIGHT,  # midnight: the window starts on a day boundary
    _MIDNIGHT - timedelta(microseconds=1),  # the last day ends exactly
    _MIDNIGHT - timedelta(days=43) + timedelta(hours=6, minutes=30),  # rows after `now` exist
]


@pytest.fixture(scope="module")
def raw(demo: DemoData) -> pql.Engine:
    """The same data without rollups: the reference path."""
    eng = pql.Engine.in_memory(cache=False, rollups=False)
    eng.ingest("receipts", demo.receipts)
    eng.ingest("decisions", demo.decisions)
    return eng


@pytest.fixture(scope="module")
def rolled(demo: DemoData) -> pql.Engine:
    eng = pql.Engine.in_memory(cache=False, rollup_min_rows=0)
    eng.ingest("receipts", demo.receipts)
    eng.ingest("decisions", demo.decisions)
    return eng


def _rollup_nodes(plan: Node) -> list[RollupAggregate]:
    return [n for n in walk(plan) if isinstance(n, RollupAggregate)]


def _uses_rollup(engine: pql.Engine, text: str, tenant: str, now: datetime) -> bool:
    return bool(_rollup_nodes(engine.prepare(text, tenant=tenant, now=now).plan))


def check(
    rolled: pql.Engine, raw: pql.Engine, duck: Any, text: str, tenant: str, now: datetime
) -> bool:
    """The answer with rollups equals the raw path's and DuckDB's; returns whether rollups ran."""
    prepared = rolled.prepare(text, tenant=tenant, now=now)
    ours = rolled.execute(prepared)
    reference = raw.query(text, tenant=tenant, now=now)
    context = f"for {text!r} ({tenant}, now={now.isoformat()})"
    assert_same_frame(ours.df, reference.df, context + " against the raw path")
    assert ours.df.schema == reference.df.schema, context
    assert ours.truncated == reference.truncated
    sql = translate_prepared(prepared, tenant)
    theirs = pl.from_arrow(duck.sql(sql).to_arrow_table())
    assert isinstance(theirs, pl.DataFrame)
    assert_same_frame(ours.df, theirs.head(prepared.limits.max_rows), f"{context}\nSQL: {sql}")
    return bool(_rollup_nodes(prepared.plan))


# -- differential: hand-written ------------------------------------------------------------------


@pytest.mark.parametrize("text", HAND_WRITTEN)
@pytest.mark.parametrize("now", NOWS, ids=lambda n: n.isoformat())
def test_hand_written_queries_match_raw_and_duckdb(
    rolled: pql.Engine, raw: pql.Engine, duck: Any, tenants: list[str], text: str, now: datetime
) -> None:
    used = [check(rolled, raw, duck, text, tenant, now) for tenant in (tenants[0], tenants[3])]
    assert all(used), f"{text!r} should be answered from rollups"


def test_hand_written_queries_find_data(
    rolled: pql.Engine, tenants: list[str], demo: DemoData
) -> None:
    """Guard against a vacuous comparison: most answers are not empty or all zero."""
    found = 0
    for text in HAND_WRITTEN:
        df = rolled.query(text, tenant=tenants[0], now=demo.now).df
        found += df.height > 0 and any(v not in (None, 0) for v in df.row(0))
    assert found >= len(HAND_WRITTEN) - 1


# -- differential: generated ---------------------------------------------------------------------


def _field(subject: str, column: str) -> ast.Field:
    return ast.Field(subject, column)


@st.composite
def key_predicates(draw: Any, subject: str, depth: int = 0) -> ast.Expr:
    """Predicates over rollup key columns only: comparisons, IN, IS NULL, AND/OR/NOT."""
    if depth < 2 and draw(st.integers(0, 3)) == 0:
        kind = draw(st.sampled_from(["and", "or", "not"]))
        if kind == "not":
            return ast.Not(draw(key_predicates(subject, depth + 1)))
        parts = tuple(
            draw(key_predicates(subject, depth + 1)) for _ in range(draw(st.integers(2, 3)))
        )
        return ast.And(parts) if kind == "and" else ast.Or(parts)
    column = draw(st.sampled_from(KEYS[subject]))
    field = _field(subject, column)
    literal = st.sampled_from(POOLS[column]).map(ast.Literal)
    form = draw(st.integers(0, 9))
    if form <= 5:
        op = draw(st.sampled_from([ast.CompareOp.EQ, ast.CompareOp.NE] * 3 + list(ast.CompareOp)))
        return ast.Comparison(field, op, draw(literal))
    if form <= 8:
        values = tuple(draw(st.lists(literal, min_size=1, max_size=4)))
        return ast.InList(field, values, negated=draw(st.booleans()))
    return ast.IsNull(field, negated=draw(st.booleans()))


@st.composite
def rollup_aggregates(draw: Any, subject: str) -> ast.Aggregate:
    """An aggregate the rollup can answer."""
    measures, keys = MEASURES[subject], KEYS[subject]
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return ast.Aggregate(ast.AggFunc.COUNT, None)
    if choice == 1:
        column = draw(st.sampled_from(keys + measures + NEVER_NULL[subject]))
        return ast.Aggregate(ast.AggFunc.COUNT, _field(subject, column))
    if choice <= 3 and measures:
        func = draw(st.sampled_from([ast.AggFunc.SUM, ast.AggFunc.AVG]))
        return ast.Aggregate(func, _field(subject, draw(st.sampled_from(measures))))
    func = draw(st.sampled_from([ast.AggFunc.MIN, ast.AggFunc.MAX]))
    column = draw(st.sampled_from([*measures, "ts", *keys]))
    return ast.Aggregate(func, _field(subject, column))


SINCE = [
    (1, "h"),
    (6, "h"),
    (1, "d"),
    (2, "d"),
    (50, "h"),
    (7, "d"),
    (3, "w"),
    (30, "d"),
    (180, "d"),
]


@st.composite
def rollup_queries(draw: Any) -> ast.Query:
    """Aggregate queries of the rollup-eligible shape (one subject, key predicates and keys)."""
    subject = draw(st.sampled_from(["receipts", "decisions"]))
    aggs = [draw(rollup_aggregates(subject)) for _ in range(draw(st.integers(1, 3)))]
    if aggs[0].field is None:  # the first aggregate names the subject
        aggs[0] = ast.Aggregate(ast.AggFunc.COUNT, _field(subject, "ts"))
    aggs = [ast.Aggregate(a.func, a.field, f"a{i}") for i, a in enumerate(aggs)]
    group = draw(st.lists(st.sampled_from(KEYS[subject]), max_size=3, unique=True))
    where = draw(key_predicates(subject)) if draw(st.booleans()) else None
    return ast.Query(
        subject=None,
        aggregates=tuple(aggs),
        where=where,
        group_by=tuple(_field(subject, c) for c in group),
        since=ast.Duration(*draw(st.sampled_from(SINCE))),
        limit=draw(st.one_of(st.none(), st.integers(1, 5))),
    )


@given(query=rollup_queries(), now=st.sampled_from(NOWS), pick=st.integers(0, 7))
def test_generated_queries_match_raw_and_duckdb(
    rolled: pql.Engine,
    raw: pql.Engine,
    duck: Any,
    tenants: list[str],
    query: ast.Query,
    now: datetime,
    pick: int,
) -> None:
    text = ast.to_text(query)
    assert query.since is not None
    whole = whole_days(now - timedelta(seconds=query.since.seconds), now) is not None
    for tenant in (tenants[0], tenants[pick % len(tenants)], "nobody"):
        used = check(rolled, raw, duck, text, tenant, now)
        # a filter that keeps nothing (another tenant's name) is answered without the rollup
        plan = rolled.prepare(text, tenant=tenant, now=now).plan
        nothing = any(isinstance(n, Filter) and n.predicate == NOTHING for n in walk(plan))
        assert used == (whole and not nothing), (
            f"{text!r}: rollups used={used}, whole days in the window={whole}, "
            f"a filter that keeps nothing={nothing}"
        )


# -- when rollups are not used -------------------------------------------------------------------

NOT_ELIGIBLE = [
    "FIND COUNT(*) WHERE receipts.latency_ms > 100 GROUP BY receipts.region SINCE 30d",
    "FIND COUNT(*) WHERE receipts.ts >= '2026-11-01' OR status = 'error' GROUP BY receipts.region "
    "SINCE 30d",  # a bound on ts inside an OR cannot narrow the window
    "FIND COUNT(*) WHERE receipts.executionId = 'ex-0' SINCE 30d",
    "FIND COUNT(*) AS n GROUP BY receipts.attempt SINCE 30d",
    "FIND SUM(receipts.attempt) SINCE 30d",
    "FIND COUNT(receipts.attempt) SINCE 30d",
    "FIND MIN(receipts.executionId) SINCE 30d",
    "FIND COUNT(decisions.executionId) SINCE 30d",
    "FIND COUNT(decisions.decisionId) JOIN receipts ON decisions.executionId = receipts.executionId "
    "WHERE decisions.effect = 'deny' GROUP BY decisions.rule SINCE 30d",
    "FIND COUNT(*) AS n GROUP BY receipts.region SINCE 23h",  # never a whole day in the window
    "FIND receipts WHERE status = 'error' SINCE 30d",
]


@pytest.mark.parametrize("text", NOT_ELIGIBLE)
def test_queries_the_rollup_cannot_answer_read_rows(
    rolled: pql.Engine, raw: pql.Engine, duck: Any, tenants: list[str], demo: DemoData, text: str
) -> None:
    assert not _uses_rollup(rolled, text, tenants[0], demo.now)
    assert "rollup:" not in str(rolled.explain(text, tenant=tenants[0], now=demo.now))
    check(rolled, raw, duck, text, tenants[0], demo.now)


def test_a_bound_on_ts_narrows_the_window_and_rollups_cover_its_whole_days(
    rolled: pql.Engine, raw: pql.Engine, duck: Any, tenants: list[str], demo: DemoData
) -> None:
    """``ts >= X`` (or ``>``, ``<``, ``<=``) moves the scan's window instead of filtering its rows,
    so the whole days between ``X`` and now are read from rollups; the answers stay exact."""
    start = (demo.now - timedelta(days=10)).replace(hour=6, minute=30)
    end = demo.now - timedelta(days=2)
    for text in [
        f"FIND COUNT(*) WHERE receipts.ts >= '{start.isoformat()}' GROUP BY receipts.region SINCE 30d",
        f"FIND COUNT(*), SUM(receipts.cost_usd) WHERE receipts.ts > '{start.isoformat()}' AND "
        f"receipts.ts < '{end.isoformat()}' AND status = 'ok' GROUP BY receipts.workflow SINCE 30d",
    ]:
        assert check(rolled, raw, duck, text, tenants[0], demo.now), text
        scan = str(rolled.explain(text, tenant=tenants[0], now=demo.now))
        assert "receipts.ts" not in scan.split("-- cost")[0], scan  # no longer a filter
    # Bounds that leave no window stay a filter, which keeps no row.
    future = (demo.now + timedelta(days=1)).isoformat()
    text = f"FIND COUNT(*) AS n WHERE receipts.ts >= '{future}' SINCE 30d"
    assert not check(rolled, raw, duck, text, tenants[0], demo.now)
    assert rolled.query(text, tenant=tenants[0], now=demo.now).df["n"].to_list() == [0]


def test_rollups_off_plain_lake_and_custom_subjects_read_rows(
    raw: pql.Engine, demo: DemoData, tmp_path: Path
) -> None:
    text = "FIND COUNT(*) GROUP BY receipts.region SINCE 30d"
    assert not _uses_rollup(raw, text, "acme", demo.now)
    lake = pql.Engine(tmp_path / "lake", cache=False, index=False)  # the plain lake keeps none
    assert not _uses_rollup(lake, text, "acme", demo.now)
    bare = MemoryStore(pql.Catalog(), rollups=False)
    assert bare.rollup_specs() == {}
    assert not _uses_rollup(pql.Engine(store=bare), text, "acme", demo.now)


def test_rollups_are_read_only_when_enough_rows_are_skipped(
    demo: DemoData, tenants: list[str]
) -> None:
    """By default the window must hold ``MIN_ROWS`` raw rows; the demo's 6,000 do not."""
    text = HAND_WRITTEN[0]
    default = pql.Engine.in_memory(cache=False)
    default.ingest("receipts", demo.receipts)
    assert default.rollup_min_rows == MIN_ROWS
    assert not _uses_rollup(default, text, tenants[0], demo.now)
    rows = demo.receipts.filter(pl.col("tenant") == tenants[0]).height
    low = pql.Engine.in_memory(cache=False, rollup_min_rows=rows // 2)
    low.ingest("receipts", demo.receipts)
    assert _uses_rollup(low, text, tenants[0], demo.now)  # 180d: nearly all rows
    assert not _uses_rollup(low, text, tenants[-1], demo.now)  # the smallest tenant
    assert not _uses_rollup(low, text.replace("180d", "7d"), tenants[0], demo.now)


# -- explain, estimates, optimizer ---------------------------------------------------------------


def test_explain_says_where_the_rows_come_from(rolled: pql.Engine, demo: DemoData) -> None:
    text = 'FIND COUNT(*) WHERE receipts.status = "error" GROUP BY receipts.workflow SINCE 30d'
    explained = rolled.explain(text, tenant="acme", now=demo.now)
    lines = str(explained).splitlines()
    line = next(line for line in lines if "RollupAggregate" in line)
    assert "WHERE receipts.status = 'error'" in line
    found = whole_days(demo.now - timedelta(days=30), demo.now)
    assert found is not None
    first, last = found
    days = (last - first).days + 1
    edges = len(list(edge_windows(demo.now - timedelta(days=30), demo.now, first, last)))
    # On the default clock (12:00) that reads "29 full days ... 2 edge days"; at midnight 30 and 1.
    assert days + (edges == 2) == 30
    assert f"(rollup: {days} full days {first} .. {last} from rollup, {edges} edge day" in line
    assert "use-rollups" in lines[-2]
    doc = explained.to_dict()
    assert "RollupAggregate" in str(doc["plan"])
    analyzed = rolled.explain(text, tenant="acme", now=demo.now, analyze=True)
    node = next(d for d in analyzed.node_details() if d["node"] == "RollupAggregate")
    assert node["actual_rows"] == rolled.query(text, tenant="acme", now=demo.now).df.height


def test_midnight_window_has_one_edge(rolled: pql.Engine) -> None:
    now = _MIDNIGHT
    plan = rolled.prepare("FIND COUNT(*) GROUP BY receipts.region SINCE 7d", tenant="acme", now=now)
    (node,) = _rollup_nodes(plan.plan)
    today = now.date()
    expected = (today - timedelta(days=7), today - timedelta(days=1), 7)
    assert (node.first_day, node.last_day, node.days) == expected
    assert len(node.edges) == 1  # the instant `now` itself, at the start of `today`


def test_estimates_cover_the_rollup_plan(rolled: pql.Engine, demo: DemoData) -> None:
    prepared = rolled.prepare(HAND_WRITTEN[0], tenant="acme", now=demo.now)
    assert prepared.estimates is not None
    assert prepared.estimates.plan == prepared.plan  # the budget checked the plan that runs
    (node,) = _rollup_nodes(prepared.plan)
    estimate = prepared.estimates.of(node)
    assert estimate.rows >= 1
    assert estimate.cost > 0


def test_rollup_rows_scanned_are_fewer(rolled: pql.Engine, raw: pql.Engine, demo: DemoData) -> None:
    text = HAND_WRITTEN[0]
    ours = rolled.query(text, tenant="acme", now=demo.now)
    theirs = raw.query(text, tenant="acme", now=demo.now)
    assert ours.stats["rows_scanned"] < theirs.stats["rows_scanned"]


def test_optimizing_a_rollup_plan_again_changes_nothing(rolled: pql.Engine, demo: DemoData) -> None:
    prepared = rolled.prepare(HAND_WRITTEN[1], tenant="acme", now=demo.now)
    assert optimize(prepared.plan) == prepared.plan


@pytest.mark.parametrize(
    ("start", "end", "days", "edges"),
    [
        ("2026-11-20T12:00:00", "2026-11-27T12:00:00", ("2026-11-21", "2026-11-26"), 2),
        ("2026-11-20T00:00:00", "2026-11-27T00:00:00", ("2026-11-20", "2026-11-26"), 1),
        ("2026-11-20T00:00:00", "2026-11-26T23:59:59.999999", ("2026-11-20", "2026-11-26"), 0),
        ("2026-11-20T00:00:00.000001", "2026-11-21T23:59:59.999998", None, 0),
        ("2026-11-26T11:00:00", "2026-11-27T11:00:00", None, 0),
        ("9999-12-25T12:00:00", "9999-12-31T23:59:59.999999", ("9999-12-26", "9999-12-31"), 1),
        ("0001-01-01T00:00:00", "0001-01-03T05:00:00", ("0001-01-01", "0001-01-02"), 1),
        ("9999-12-31T00:00:01", "9999-12-31T23:59:59.999999", None, 0),
    ],
)
def test_whole_days_and_edges(
    start: str, end: str, days: tuple[str, str] | None, edges: int
) -> None:
    a = datetime.fromisoformat(start).replace(tzinfo=UTC)
    b = datetime.fromisoformat(end).replace(tzinfo=UTC)
    found = whole_days(a, b)
    if days is None:
        assert found is None
        return
    assert found == (date.fromisoformat(days[0]), date.fromisoformat(days[1]))
    parts = list(edge_windows(a, b, *found))
    assert len(parts) == edges
    covered = sum(((e - s) for s, e in parts), timedelta()) + timedelta(microseconds=len(parts))
    covered += timedelta(days=(found[1] - found[0]).days + 1)
    assert covered == b - a + timedelta(microseconds=1)  # edges and days tile the window


# -- incremental maintenance and tenants ---------------------------------------------------------

INCREMENTAL = [
    HAND_WRITTEN[0],
    HAND_WRITTEN[1],
    HAND_WRITTEN[4],
    HAND_WRITTEN[9],
    "FIND SUM(receipts.cost_usd), MIN(receipts.latency_ms), COUNT(*) GROUP BY receipts.tenant SINCE 180d",
]


def _batches(demo: DemoData) -> list[tuple[str, pl.DataFrame]]:
    """Ingest order: halves of shuffled rows (the second lands on days already rolled up), a
    re-sent batch with duplicates, one tenant alone, then everything again."""
    receipts = demo.receipts.sample(fraction=1.0, shuffle=True, seed=3)
    half = receipts.height // 2
    first, second = receipts.head(half), receipts.tail(receipts.height - half)
    lone = second.filter(pl.col("tenant") == "acme")
    rest = second.filter(pl.col("tenant") != "acme")
    again = pl.concat([first.head(200), rest.head(300)])
    return [
        ("receipts", first),
        ("decisions", demo.decisions.head(demo.decisions.height // 2)),
        ("receipts", again),
        ("receipts", lone),
        ("receipts", rest),
        ("decisions", demo.decisions),
    ]


def test_incremental_ingest_keeps_answers_identical(demo: DemoData, duck: Any) -> None:
    rolled = pql.Engine.in_memory(cache=False, rollup_min_rows=0)
    raw = pql.Engine.in_memory(cache=False, rollups=False)
    for subject, batch in _batches(demo):
        mine, theirs = rolled.ingest(subject, batch), raw.ingest(subject, batch)
        assert (mine.written, mine.duplicates) == (theirs.written, theirs.duplicates)
        for text in INCREMENTAL:
            for tenant in ("acme", "globex", "tyrell"):
                ours = rolled.query(text, tenant=tenant, now=demo.now)
                reference = raw.query(text, tenant=tenant, now=demo.now)
                assert_same_frame(ours.df, reference.df, f"for {text!r} ({tenant})")
    # all data is in now: the same answers as DuckDB over the full set
    for text in INCREMENTAL:
        assert check(rolled, raw, duck, text, "acme", demo.now)


def test_incremental_rollup_equals_one_built_at_once(demo: DemoData) -> None:
    rolled = pql.Engine.in_memory(cache=False, rollup_min_rows=0)
    for subject, batch in _batches(demo):
        rolled.ingest(subject, batch)
    assert isinstance(rolled.store, MemoryStore) and rolled.store.rollups is not None
    at_once = Rollups(rolled.catalog)
    for (tenant,), rows in demo.receipts.partition_by("tenant", as_dict=True).items():
        at_once.add(str(tenant), rolled.catalog["receipts"], rows)
    for tenant in ("acme", "globex", "wayne"):
        first, last = ALL_DAYS
        order = [DAY, *KEYS["receipts"]]  # rows within a day are in no particular order
        mine = rolled.store.rollups.read(tenant, "receipts", first, last).frame.collect()
        theirs = at_once.read(tenant, "receipts", first, last).frame.collect()
        assert_same_frame(mine.sort(order), theirs.sort(order), f"rollup of {tenant}")


def test_ingest_in_time_order_appends_days(demo: DemoData) -> None:
    """Batches in time order: most add new days, the ones that cut a day merge into it."""
    rolled = pql.Engine.in_memory(cache=False, rollup_min_rows=0)
    raw = pql.Engine.in_memory(cache=False, rollups=False)
    ordered = demo.receipts.sort("ts")
    size = ordered.height // 7
    for start in range(0, ordered.height, size):
        for engine in (rolled, raw):
            engine.ingest("receipts", ordered.slice(start, size))
        for text in INCREMENTAL[:3]:
            ours = rolled.query(text, tenant="acme", now=demo.now).df
            assert_same_frame(ours, raw.query(text, tenant="acme", now=demo.now).df, text)


def test_rollups_are_per_tenant(rolled: pql.Engine, demo: DemoData, tenants: list[str]) -> None:
    assert isinstance(rolled.store, MemoryStore)
    for tenant in tenants:
        got = rolled.store.rollup(tenant, "receipts", *ALL_DAYS)
        frame = got.frame.collect()
        assert frame.get_column("tenant").unique().to_list() == [tenant]
        expected = demo.receipts.filter(pl.col("tenant") == tenant).height
        assert frame.get_column(ROWS).sum() == expected
    # a tenant's answer does not change when other tenants' rows arrive
    text = HAND_WRITTEN[0]
    alone = pql.Engine.in_memory(cache=False, rollup_min_rows=0)
    alone.ingest("receipts", demo.receipts.filter(pl.col("tenant") == tenants[1]))
    before = alone.query(text, tenant=tenants[1], now=demo.now).df
    alone.ingest("receipts", demo.receipts.filter(pl.col("tenant") != tenants[1]))
    assert_same_frame(alone.query(text, tenant=tenants[1], now=demo.now).df, before, "isolation")
    assert_same_frame(rolled.query(text, tenant=tenants[1], now=demo.now).df, before, "isolation")
    nobody = rolled.query(text.replace("GROUP BY receipts.region ", ""), tenant="nobody")
    assert nobody.rows() == [(0, None, None)]


def test_where_tenant_only_narrows(rolled: pql.Engine, demo: DemoData) -> None:
    """Another tenant's name keeps no row: known when planning, so no rollup is read for it. The
    caller's own name keeps every row, and the rollup still answers."""
    text = "FIND COUNT(*) WHERE receipts.tenant = '{}' GROUP BY receipts.region SINCE 30d"
    assert not _uses_rollup(rolled, text.format("globex"), "acme", demo.now)
    assert rolled.query(text.format("globex"), tenant="acme", now=demo.now).df.height == 0
    assert _uses_rollup(rolled, text.format("acme"), "acme", demo.now)
    own = rolled.query(text.format("acme"), tenant="acme", now=demo.now).df
    assert own.equals(
        rolled.query(
            text.replace(" WHERE receipts.tenant = '{}'", ""), tenant="acme", now=demo.now
        ).df
    )


# -- null semantics ------------------------------------------------------------------------------


def _null_rows() -> pl.DataFrame:
    """Rows of tenant 'nulls' on every hour of 10 days; workflow 'quiet' never has a latency."""
    base = datetime(2026, 3, 1, tzinfo=UTC)
    hours = list(range(10 * 24))
    return pl.DataFrame(
        {
            "executionId": [f"n-{h}" for h in hours],
            "tenant": ["nulls"] * len(hours),
            "region": ["eu-west-1" if h % 3 else "us-east-1" for h in hours],
            "ts": [base + timedelta(hours=h, minutes=7) for h in hours],
            "workflow": ["quiet" if h % 2 else "busy" for h in hours],
            "status": ["ok" if h % 5 else "error" for h in hours],
            "latency_ms": [None if h % 2 else float(h) for h in hours],
            "cost_usd": [None] * len(hours),
        },
        schema_overrides={"cost_usd": pl.Float64},
    )


NULL_QUERIES = [
    "FIND SUM(receipts.latency_ms), AVG(receipts.latency_ms), COUNT(receipts.latency_ms), "
    "MIN(receipts.latency_ms), MAX(receipts.cost_usd), COUNT(*) GROUP BY receipts.workflow SINCE 7d",
    "FIND SUM(receipts.cost_usd), AVG(receipts.cost_usd), COUNT(receipts.cost_usd) SINCE 7d",
    "FIND COUNT(*), SUM(receipts.latency_ms), MIN(receipts.ts) WHERE status = 'none' SINCE 7d",
]


@pytest.mark.parametrize("text", NULL_QUERIES)
def test_sql_null_semantics(text: str) -> None:
    import duckdb

    rows = _null_rows()
    rolled = pql.Engine.in_memory(cache=False, rollup_min_rows=0)
    raw = pql.Engine.in_memory(cache=False, rollups=False)
    for engine in (rolled, raw):
        engine.ingest("receipts", rows)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("receipts_src", rows.to_arrow())
    con.execute("CREATE TABLE receipts AS SELECT * FROM receipts_src")
    con.execute("CREATE TABLE decisions (tenant VARCHAR, ts TIMESTAMPTZ)")
    now = datetime(2026, 3, 9, 15, 30, tzinfo=UTC)
    assert check(rolled, raw, con, text, "nulls", now)


# -- the indexed lake ----------------------------------------------------------------------------


def test_indexed_lake_uses_rollups_and_refreshes_them(tmp_path: Path) -> None:
    demo = generate(2_000, seed=5, now=TEST_NOW)
    indexed = pql.Engine(tmp_path / "lake", index=True, cache=False, rollup_min_rows=0)
    raw = pql.Engine.in_memory(cache=False, rollups=False)
    half = demo.receipts.height // 2
    for engine in (indexed, raw):
        engine.ingest("receipts", demo.receipts.head(half))
    text = HAND_WRITTEN[0]
    tenant = str(demo.receipts.get_column("tenant").mode()[0])
    assert _uses_rollup(indexed, text, tenant, demo.now)
    for _ in range(2):
        ours = indexed.query(text, tenant=tenant, now=demo.now).df
        assert_same_frame(ours, raw.query(text, tenant=tenant, now=demo.now).df, "indexed")
        for engine in (indexed, raw):
            engine.ingest("receipts", demo.receipts.tail(demo.receipts.height - half))


def test_a_selective_where_reads_the_rollup_once_the_window_holds_enough_rows(
    demo: DemoData,
) -> None:
    """The threshold is the window's rows, not the rows left after ``WHERE``: filtering a long
    window costs more than the rollup read (docs/pql/ROLLUPS.md). Errors are a few per cent of
    the rows, far under the threshold; the window's rows reach it exactly, or miss it by one."""
    start, end = demo.now - timedelta(days=100), demo.now - timedelta(days=10)
    frame = demo.receipts.filter((pl.col("tenant") == "acme") & pl.col("ts").is_between(start, end))
    text = 'FIND COUNT(*) WHERE receipts.status = "error" SINCE 180d'
    errors = frame.filter(pl.col("status") == "error").height
    assert 0 < errors < frame.height // 10
    for least, used in [(frame.height, True), (frame.height + 1, False)]:
        eng = pql.Engine.in_memory(cache=False, rollup_min_rows=least)
        eng.ingest("receipts", frame)
        assert _uses_rollup(eng, text, "acme", demo.now) is used, least
        assert eng.query(text, tenant="acme", now=demo.now).rows() == [(errors,)]


def test_rollups_are_read_from_exactly_rollup_min_rows(demo: DemoData) -> None:
    """``rollup_min_rows`` is the least number of rows for which rollups are read: at exactly
    that many (every partition inside the window, so the estimate is exact) they are."""
    start, end = demo.now - timedelta(days=100), demo.now - timedelta(days=10)
    frame = demo.receipts.filter((pl.col("tenant") == "acme") & pl.col("ts").is_between(start, end))
    text = HAND_WRITTEN[0]  # COUNT(*) ... GROUP BY region SINCE 180d: no filter under it
    for least, used in [(frame.height, True), (frame.height + 1, False)]:
        eng = pql.Engine.in_memory(cache=False, rollup_min_rows=least)
        eng.ingest("receipts", frame)
        assert _uses_rollup(eng, text, "acme", demo.now) is used, least


def test_a_subject_registered_later_gets_its_spec() -> None:
    """Specs are remembered per registered subject, and a subject registered after the rollups
    were made (or after a first ask found none) is rolled up as any other."""
    catalog = Catalog(subjects=(RECEIPTS,))
    rollups = Rollups(catalog)
    assert rollups.spec("receipts") is rollups.spec("receipts") is not None
    assert rollups.spec("decisions") is None and set(rollups.specs()) == {"receipts"}
    catalog.register(DECISIONS)
    assert rollups.spec("decisions") == spec_for(DECISIONS, KEYS["decisions"])
    assert set(rollups.specs()) == {"receipts", "decisions"}


def test_a_catalogs_specs_follow_its_subjects() -> None:
    """A lake's specs are remembered per catalog (planning asks on every query) while it holds
    the same subjects; a subject registered later is rolled up, and a caller's copy is its own."""
    catalog = Catalog(subjects=(RECEIPTS,))
    first = rollup_specs(catalog)
    assert first == {"receipts": spec_for(RECEIPTS)}
    first.clear()
    assert set(rollup_specs(catalog)) == {"receipts"}
    catalog.register(DECISIONS)
    assert rollup_specs(catalog) == {
        "receipts": spec_for(RECEIPTS),
        "decisions": spec_for(DECISIONS),
    }
    assert rollup_specs(Catalog(subjects=(DECISIONS,))) == {"decisions": spec_for(DECISIONS)}


_PART_ROW = st.tuples(
    st.integers(0, 3),  # day
    st.sampled_from(["eu-west-1", "us-east-1", "ap-south-1"]),
    st.sampled_from(["etl", "billing"]),
    st.sampled_from(["ok", "error"]),
    st.one_of(st.none(), st.floats(0, 1e4)),
)


def _part(rows: list[tuple[int, str, str, str, float | None]]) -> pl.DataFrame:
    start = TEST_NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    return pl.DataFrame(
        {
            "executionId": [f"e{n}" for n in range(len(rows))],
            "tenant": ["acme"] * len(rows),
            "region": [r[1] for r in rows],
            "ts": [start + timedelta(days=r[0], minutes=n) for n, r in enumerate(rows)],
            "workflow": [r[2] for r in rows],
            "status": [r[3] for r in rows],
            "latency_ms": [r[4] for r in rows],
            "cost_usd": [r[4] for r in rows],
        },
        schema=RECEIPTS.polars_schema(),
    )


@given(st.lists(st.lists(_PART_ROW, min_size=1, max_size=12), min_size=2, max_size=3))
def test_the_partials_of_a_tenants_parts_are_merged_as_if_grouped_again(
    parts: list[list[tuple[int, str, str, str, float | None]]],
) -> None:
    """A tenant kept in several regions is loaded part by part: the parts' partials are put
    together as they are when no group can be in two of them, else grouped again; either way
    the rollup is the one of all the rows at once."""
    catalog = Catalog()
    spec = spec_for(RECEIPTS)
    assert spec is not None
    frames = [partials(spec, _part(rows)) for rows in parts]
    merged = Rollups(catalog)
    merged.add_partials("acme", catalog["receipts"], frames)
    at_once = Rollups(catalog)
    at_once.add("acme", catalog["receipts"], pl.concat([_part(rows) for rows in parts]))
    order = [DAY, *KEYS["receipts"]]
    first, last = ALL_DAYS
    mine = merged.read("acme", "receipts", first, last).frame.collect().sort(order)
    theirs = at_once.read("acme", "receipts", first, last).frame.collect().sort(order)
    assert_same_frame(mine, theirs, "the parts' rollup")


def test_parts_are_apart_only_if_a_column_keeps_their_values_and_nulls_apart() -> None:
    from pql.storage.rollups import _apart

    def frame(values: list[str | None]) -> pl.DataFrame:
        return pl.DataFrame(
            {"k": values, "j": ["x"] * len(values)}, schema={"k": pl.String, "j": pl.String}
        )

    assert _apart([frame(["a", "b"]), frame(["c"])], ["j", "k"])
    assert _apart([frame(["c"]), frame(["a", None]), frame(["d", "e"])], ["k"])
    assert not _apart([frame(["a", "c"]), frame(["b"])], ["k"])  # b falls between a and c
    assert not _apart([frame(["a", None]), frame(["b", None])], ["k"])  # both have the null group
    assert not _apart([frame(["a"]), frame(["a"])], ["j", "k"])
    assert _apart([frame([None, None]), frame(["a"])], ["k"])
