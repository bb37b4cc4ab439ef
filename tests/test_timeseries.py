"""TIMESERIES: answers equal DuckDB's ``time_bucket`` (origin at the UTC epoch, empty buckets
filled) on every combination of WHERE, GROUP BY, the join, bucket widths and windows; rollups
answer day buckets exactly and are not used for shorter ones; the bucket limit refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pql
from pql.catalog import DataType
from pql.demo import DemoData
from pql.plan.expr import Buckets, Col
from pql.plan.nodes import RollupAggregate, walk
from tests.clock import TEST_NOW
from tests.compare import assert_same_frame
from tests.sqlref import translate_prepared

WHERES = {
    "none": "",
    "where": "WHERE receipts.status != 'ok' OR receipts.latency_ms > 500",
}
JOIN_WHERES = {
    "none": "",
    "where": "WHERE decisions.effect = 'deny' AND receipts.status IS NOT NULL",
}
GROUPS = {
    "none": "",
    "one": "GROUP BY receipts.region",
    "two": "GROUP BY receipts.workflow, receipts.status",
}
JOIN_GROUPS = {"none": "", "one": "GROUP BY decisions.rule", "two": "GROUP BY rule, status"}
# (TIMESERIES, SINCE): widths from an hour to a week over windows from the default to 180 days;
# every one within the default 1,000 buckets.
SHAPES = [
    ("1h", ""),
    ("15m", "SINCE 6h"),
    ("1h", "SINCE 7d"),
    ("6h", "SINCE 30d"),
    ("1d", "SINCE 30d"),
    ("2d", "SINCE 180d"),
    ("1w", "SINCE 180d"),
]

# Clocks: midday, exactly midnight, one microsecond before midnight, and a clock 400 days before
# the data (every bucket empty).
_MIDNIGHT = TEST_NOW.replace(hour=0, minute=0, second=0, microsecond=0)
NOWS = {
    "midday": _MIDNIGHT + timedelta(hours=12, minutes=17),
    "midnight": _MIDNIGHT,
    "before-midnight": _MIDNIGHT - timedelta(microseconds=1),
}
EMPTY_NOW = TEST_NOW - timedelta(days=400)


def _text(aggs: str, join: str, where: str, group: str, width: str, since: str) -> str:
    return " ".join(
        p for p in ("FIND", aggs, join, where, group, f"TIMESERIES {width}", since) if p
    )


def _check(engine: pql.Engine, duck: Any, text: str, tenant: str, now: datetime) -> pl.DataFrame:
    prepared = engine.prepare(text, tenant=tenant, now=now)
    result = engine.execute(prepared)
    sql = translate_prepared(prepared, tenant)
    theirs = pl.from_arrow(duck.sql(sql).to_arrow_table())
    assert isinstance(theirs, pl.DataFrame)
    assert result.truncated == (theirs.height > prepared.limits.max_rows)
    assert_same_frame(result.df, theirs.head(prepared.limits.max_rows), f"{text!r}\nSQL: {sql}")
    assert result.columns[0] == "bucket"
    return result.df


@pytest.mark.parametrize(
    ("width", "since"), SHAPES, ids=[f"{w}-{s or 'default'}" for w, s in SHAPES]
)
@pytest.mark.parametrize("group", GROUPS, ids=lambda g: f"group-{g}")
@pytest.mark.parametrize("where", WHERES, ids=lambda w: f"where-{w}")
def test_receipts_match_duckdb(
    engine: pql.Engine,
    duck: Any,
    tenants: list[str],
    where: str,
    group: str,
    width: str,
    since: str,
) -> None:
    aggs = (
        "COUNT(*) AS n, AVG(receipts.latency_ms), SUM(receipts.cost_usd) AS cost, MAX(receipts.ts)"
    )
    text = _text(aggs, "", WHERES[where], GROUPS[group], width, since)
    for tenant, now in ((tenants[0], NOWS["midday"]), (tenants[-1], NOWS["midnight"])):
        _check(engine, duck, text, tenant, now)


@pytest.mark.parametrize(
    ("width", "since"), SHAPES, ids=[f"{w}-{s or 'default'}" for w, s in SHAPES]
)
@pytest.mark.parametrize("group", JOIN_GROUPS, ids=lambda g: f"group-{g}")
@pytest.mark.parametrize("where", JOIN_WHERES, ids=lambda w: f"where-{w}")
def test_join_matches_duckdb(
    engine: pql.Engine,
    duck: Any,
    tenants: list[str],
    where: str,
    group: str,
    width: str,
    since: str,
) -> None:
    aggs = "COUNT(decisions.decisionId) AS denies, MIN(receipts.latency_ms)"
    join = "JOIN receipts ON decisions.executionId = receipts.executionId"
    text = _text(aggs, join, JOIN_WHERES[where], JOIN_GROUPS[group], width, since)
    for tenant, now in ((tenants[0], NOWS["before-midnight"]), (tenants[3], NOWS["midday"])):
        _check(engine, duck, text, tenant, now)


@pytest.mark.parametrize("group", ["", "GROUP BY receipts.region"], ids=["no-group", "group"])
def test_a_window_without_rows(
    engine: pql.Engine, duck: Any, tenants: list[str], group: str
) -> None:
    """Every bucket empty: one row per bucket with COUNT 0 without GROUP BY; no groups, no rows."""
    text = f"FIND COUNT(*) AS n, SUM(receipts.cost_usd) AS s {group} TIMESERIES 1d SINCE 7d"
    df = _check(engine, duck, text, tenants[0], EMPTY_NOW)
    if group:
        assert df.height == 0
    else:
        assert df.height == 8
        assert df["n"].to_list() == [0] * 8
        assert df["s"].null_count() == 8


def test_empty_buckets_are_filled_per_group(
    engine: pql.Engine, duck: Any, tenants: list[str]
) -> None:
    """A sparse tenant over hours: most buckets are empty, yet every group has every bucket."""
    text = "FIND COUNT(*) AS n GROUP BY receipts.region TIMESERIES 1h SINCE 7d"
    df = _check(engine, duck, text, tenants[-1], NOWS["midday"])
    regions = df["region"].unique().to_list()
    assert df.height == 169 * len(regions)
    assert (df["n"] == 0).sum() > df.height // 2
    assert df["n"].sum() > 0
    for region in regions:
        buckets = df.filter(pl.col("region") == region)["bucket"]
        assert buckets.diff().drop_nulls().unique().to_list() == [timedelta(hours=1)]


def test_buckets_align_to_the_epoch(engine: pql.Engine, tenants: list[str]) -> None:
    df = engine.query(
        "FIND COUNT(receipts.executionId) TIMESERIES 1w SINCE 30d",
        tenant=tenants[0],
        now=NOWS["midday"],
    ).df
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for start in df["bucket"].to_list():
        assert (start - epoch) % timedelta(weeks=1) == timedelta(0)
    assert df["bucket"].to_list() == sorted(df["bucket"].to_list())


# -- rollups -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rolled(demo: DemoData) -> pql.Engine:
    eng = pql.Engine.in_memory(cache=False, rollup_min_rows=0)
    eng.ingest("receipts", demo.receipts)
    eng.ingest("decisions", demo.decisions)
    return eng


@pytest.mark.parametrize(
    ("text", "rollup"),
    [
        ("FIND COUNT(*) AS n, AVG(receipts.latency_ms) TIMESERIES 1d SINCE 30d", True),
        (
            "FIND COUNT(*) AS n, SUM(receipts.cost_usd) WHERE status = 'error' GROUP BY receipts.region TIMESERIES 2d SINCE 180d",
            True,
        ),
        (
            "FIND COUNT(*) AS n, MIN(receipts.ts), MAX(receipts.latency_ms) GROUP BY workflow TIMESERIES 1w SINCE 180d",
            True,
        ),
        (
            "FIND COUNT(decisions.decisionId) AS n WHERE effect = 'deny' GROUP BY rule TIMESERIES 1d SINCE 14d",
            True,
        ),
        ("FIND COUNT(*) AS n GROUP BY receipts.region TIMESERIES 6h SINCE 30d", False),
        ("FIND COUNT(receipts.executionId) AS n TIMESERIES 36h SINCE 30d", False),
        (
            "FIND COUNT(receipts.executionId) AS n TIMESERIES 1d SINCE 20h",
            False,
        ),  # no whole day in the window
        ("FIND COUNT(*) AS n WHERE latency_ms > 100 TIMESERIES 1d SINCE 30d", False),
    ],
)
@pytest.mark.parametrize("now", list(NOWS.values()), ids=list(NOWS))
def test_rollups_answer_day_buckets_exactly(
    rolled: pql.Engine, duck: Any, tenants: list[str], text: str, rollup: bool, now: datetime
) -> None:
    for tenant in (tenants[0], tenants[3]):
        prepared = rolled.prepare(text, tenant=tenant, now=now)
        used = any(isinstance(n, RollupAggregate) for n in walk(prepared.plan))
        assert used == rollup, text
        _check(rolled, duck, text, tenant, now)


# -- refusals and errors -------------------------------------------------------------------------


def test_too_many_buckets_is_refused_with_a_width_that_fits(
    engine: pql.Engine, tenants: list[str]
) -> None:
    with pytest.raises(pql.SafetyError) as caught:
        engine.query(
            "FIND COUNT(receipts.executionId) TIMESERIES 1h SINCE 180d",
            tenant=tenants[0],
            now=TEST_NOW,
        )
    error = caught.value
    assert error.code == "PQL-S012"
    assert "4,321 buckets" in error.message
    assert error.hints[0] == "use TIMESERIES 6h for 180d"
    assert error.setting == "Limits.max_buckets"
    assert error.span is not None and error.text is not None
    assert error.text[error.span.start : error.span.end] == "1h"


def test_the_bucket_limit_is_a_tenant_setting(demo: DemoData, tenants: list[str]) -> None:
    eng = pql.Engine.in_memory(limits=pql.Limits(max_buckets=10))
    eng.ingest("receipts", demo.receipts)
    text = "FIND COUNT(receipts.executionId) TIMESERIES 1d SINCE 9d"
    assert eng.query(text, tenant=tenants[0], now=NOWS["midday"]).df.height == 10
    with pytest.raises(pql.SafetyError, match="makes 11 buckets"):
        eng.query(text.replace("9d", "10d"), tenant=tenants[0], now=NOWS["midday"])


@pytest.mark.parametrize(
    ("text", "code", "pointed"),
    [
        ("FIND receipts TIMESERIES 1h", "PQL-E151", "1h"),
        ("FIND COUNT(receipts.ts) TIMESERIES 0h", "PQL-E150", "0h"),
        ("FIND COUNT(receipts.ts) TIMESERIES 1h TIMESERIES 1d", "PQL-E016", "TIMESERIES 1d"),
        (
            "FIND COUNT(receipts.ts) AS bucket TIMESERIES 1h",
            "PQL-E021",
            "COUNT(receipts.ts) AS bucket",
        ),
        ("FIND COUNT(receipts.ts) TIMESERIES", "PQL-E002", None),
    ],
)
def test_errors_point_at_the_text(
    engine: pql.Engine, tenants: list[str], text: str, code: str, pointed: str | None
) -> None:
    with pytest.raises(pql.PQLError) as caught:
        engine.query(text, tenant=tenants[0], now=TEST_NOW)
    error = caught.value
    assert error.code == code
    assert error.hints
    if pointed is not None:
        assert error.span is not None
        assert text[error.span.start : error.span.end] == pointed


def test_order_by_bucket_descending(engine: pql.Engine, tenants: list[str]) -> None:
    df = engine.query(
        "FIND COUNT(*) AS n WHERE receipts.status = 'ok' TIMESERIES 1d SINCE 7d ORDER BY bucket DESC",
        tenant=tenants[0],
        now=NOWS["midday"],
    ).df
    assert df["bucket"].to_list() == sorted(df["bucket"].to_list(), reverse=True)


# -- properties ----------------------------------------------------------------------------------

_TS = Col("receipts", "ts", DataType.TIMESTAMP)
_instants = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@given(_instants, st.integers(1, 10 * 86400))
def test_the_bucket_holds_the_instant(instant: datetime, seconds: int) -> None:
    buckets = Buckets(_TS, seconds)
    start = buckets.floor(instant)
    assert start <= instant < start + buckets.width
    assert (start - datetime(1970, 1, 1, tzinfo=UTC)) % buckets.width == timedelta(0)


@pytest.mark.parametrize("seconds", [0, -60])
def test_a_bucket_is_longer_than_zero(seconds: int) -> None:
    """A bucket of no width holds no instant (``floor`` would divide by zero)."""
    with pytest.raises(ValueError, match="longer than zero"):
        Buckets(_TS, seconds)


@given(_instants, st.integers(1, 400 * 86400), st.integers(60, 30 * 86400))
def test_every_bucket_of_the_window_is_counted(
    instant: datetime, length: int, seconds: int
) -> None:
    buckets = Buckets(_TS, seconds).over(instant, instant + timedelta(seconds=length))
    starts = buckets.starts() if buckets.count < 5000 else None
    assert buckets.count >= 1
    assert buckets.first is not None and buckets.last is not None
    assert buckets.first <= instant < buckets.first + buckets.width
    if starts is not None:
        assert len(starts) == buckets.count and starts[-1] == buckets.last


@given(st.sampled_from([0, 1, 2, 5]), st.sampled_from(["1h", "1d"]), st.sampled_from(["7d", "30d"]))
def test_bucket_counts_add_up_to_the_plain_count(
    engine: pql.Engine, tenants: list[str], which: int, width: str, since: str
) -> None:
    """Summing a time series' COUNT over its buckets gives the query's COUNT without it."""
    tenant = tenants[which]
    where = "WHERE receipts.status != 'ok'"
    series = engine.query(
        f"FIND COUNT(*) AS n {where} GROUP BY receipts.region TIMESERIES {width} SINCE {since}",
        tenant=tenant,
        now=NOWS["midday"],
    ).df
    plain = engine.query(
        f"FIND COUNT(*) AS n {where} GROUP BY receipts.region SINCE {since}",
        tenant=tenant,
        now=NOWS["midday"],
    ).df
    summed = series.group_by("region").agg(pl.col("n").sum()).sort("region")
    assert summed.rows() == plain.sort("region").rows()
