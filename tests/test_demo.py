"""The seeded demo data generator: shape, determinism and the realism the demos rely on."""

from __future__ import annotations

import doctest
import re
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import pql.demo
from pql.catalog import DECISIONS, RECEIPTS
from pql.demo import REGIONS, RULES, WORKFLOWS, DemoData, _hex_ids, _sort_order, generate
from pql.errors import InputError, PQLError

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
N = 50_000
TENANT = re.compile(r"[a-z0-9][a-z0-9-]{1,30}")


@pytest.fixture(scope="module")
def data() -> DemoData:
    return generate(N, seed=11, now=NOW)


@pytest.fixture(scope="module")
def dense() -> DemoData:
    """Thirty days instead of 180: the same rows six times denser, so incidents stand out."""
    return generate(N, seed=11, now=NOW, days=30)


@pytest.fixture(scope="module")
def joined(data: DemoData) -> pl.DataFrame:
    receipts = data.receipts.select(
        "executionId", pl.col("ts").alias("receipt_ts"), pl.col("tenant").alias("receipt_tenant"),
        pl.col("region").alias("receipt_region"), "status",
    )  # fmt: skip
    return data.decisions.join(receipts, on="executionId", how="inner")


# --- schema ---------------------------------------------------------------------------------------


def test_receipts_have_the_catalog_columns_plus_attempt(data: DemoData) -> None:
    expected = {**RECEIPTS.polars_schema(), "attempt": pl.Int64()}
    assert data.receipts.columns == [*RECEIPTS.names, "attempt"]
    assert dict(data.receipts.schema) == expected
    assert data.receipts.height == N


def test_decisions_have_exactly_the_catalog_columns(data: DemoData) -> None:
    assert data.decisions.columns == list(DECISIONS.names)
    assert dict(data.decisions.schema) == DECISIONS.polars_schema()


def test_required_columns_are_never_null_except_the_nullable_ones(data: DemoData) -> None:
    for subject, frame in ((RECEIPTS, data.receipts), (DECISIONS, data.decisions)):
        for column in subject.columns:
            if not column.nullable:
                assert frame[column.name].null_count() == 0, column.name


def test_no_receipts_gives_empty_frames_with_the_schema() -> None:
    empty = generate(0, now=NOW)
    assert empty.receipts.height == 0
    assert empty.decisions.height == 0
    assert dict(empty.receipts.schema) == {**RECEIPTS.polars_schema(), "attempt": pl.Int64()}
    assert dict(empty.decisions.schema) == DECISIONS.polars_schema()


# --- determinism and the clock -------------------------------------------------------------------


def test_same_arguments_give_identical_frames() -> None:
    first = generate(5_000, seed=3, now=NOW, days=30, tenants=5)
    second = generate(5_000, seed=3, now=NOW, days=30, tenants=5)
    assert_frame_equal(first.receipts, second.receipts)
    assert_frame_equal(first.decisions, second.decisions)
    assert first.now == second.now == NOW


def test_a_different_seed_gives_different_data() -> None:
    first = generate(2_000, seed=1, now=NOW)
    second = generate(2_000, seed=2, now=NOW)
    assert not first.receipts.equals(second.receipts)
    assert not first.decisions.equals(second.decisions)
    shared = set(first.receipts["executionId"]) & set(second.receipts["executionId"])
    assert not shared


def test_now_defaults_to_the_current_hour() -> None:
    before = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    got = generate(10).now
    after = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    assert got in (before, after)
    assert got.tzinfo is not None
    assert got.utcoffset() == timedelta(0)


def test_now_is_read_as_utc_and_truncated_to_the_second() -> None:
    naive = generate(10, now=datetime(2026, 3, 2, 12, 30, 15, 123_456)).now
    assert naive == datetime(2026, 3, 2, 12, 30, 15, tzinfo=UTC)
    cet = timezone(timedelta(hours=1))
    aware = generate(10, now=datetime(2026, 3, 2, 13, 30, 15, tzinfo=cet)).now
    assert aware == naive
    assert aware.utcoffset() == timedelta(0)


@pytest.mark.parametrize("days", [1, 7, 180])
def test_every_timestamp_lies_in_the_window(days: int) -> None:
    got = generate(5_000, seed=5, now=NOW, days=days)
    low = NOW - timedelta(days=days)
    for frame in (got.receipts, got.decisions):
        assert frame["ts"].min() >= low  # type: ignore[operator]
        assert frame["ts"].max() <= NOW  # type: ignore[operator]


def test_rows_come_in_the_default_order(data: DemoData) -> None:
    assert data.receipts.equals(data.receipts.sort("ts", "executionId"))
    assert data.decisions.equals(
        data.decisions.sort("ts", "executionId", "decisionId", nulls_last=True)
    )


# --- ids ------------------------------------------------------------------------------------------


def test_ids_are_unique_across_the_dataset(data: DemoData) -> None:
    executions, decisions = data.receipts["executionId"], data.decisions["decisionId"]
    assert executions.n_unique() == data.receipts.height
    assert decisions.n_unique() == data.decisions.height
    assert executions.str.contains(r"^ex-[0-9a-f]{16}$").all()
    assert decisions.str.contains(r"^dec-[0-9a-f]{16}$").all()
    assert data.decisions["executionId"].drop_nulls().str.contains(r"^ex-[0-9a-f]{16}$").all()


def test_ids_are_unique_across_sizes_of_the_same_seed() -> None:
    # orphan executions are numbered after the receipts: they never collide with one
    small = generate(1_000, seed=9, now=NOW)
    receipts = set(small.receipts["executionId"])
    dangling = set(small.decisions["executionId"].drop_nulls()) - receipts
    assert dangling
    assert not dangling & receipts


# --- tenants and regions --------------------------------------------------------------------------


def test_tenants_match_the_pattern_and_have_one_or_two_regions(data: DemoData) -> None:
    for frame in (data.receipts, data.decisions):
        assert all(TENANT.fullmatch(t) for t in frame["tenant"].unique())
        assert set(frame["region"].unique()) <= set(REGIONS)
    regions = data.receipts.group_by("tenant").agg(pl.col("region").n_unique())
    assert regions["region"].max() == 2
    assert regions["region"].min() == 1
    assert data.receipts["tenant"].n_unique() == 8


def test_tenant_sizes_are_skewed(data: DemoData) -> None:
    shares = data.receipts["tenant"].value_counts(sort=True, normalize=True)
    assert shares["tenant"][0] == "acme"
    assert 0.38 <= shares["proportion"][0] <= 0.52
    assert shares["proportion"][-1] < 0.06


@pytest.mark.parametrize("tenants", [1, 3, 30])
def test_the_tenants_parameter_picks_how_many(tenants: int) -> None:
    got = generate(6_000, seed=2, now=NOW, tenants=tenants)
    names = got.receipts["tenant"].unique()
    assert len(names) == tenants
    assert all(TENANT.fullmatch(t) for t in names)
    assert set(got.decisions["tenant"].unique()) <= set(names)


def test_decisions_share_their_receipts_tenant_and_region(joined: pl.DataFrame) -> None:
    assert (joined["tenant"] == joined["receipt_tenant"]).all()
    assert (joined["region"] == joined["receipt_region"]).all()


# --- time -----------------------------------------------------------------------------------------


def test_traffic_follows_a_daily_cycle(data: DemoData) -> None:
    by_hour = (
        data.receipts.filter(pl.col("region") == "us-east-1")
        .group_by(pl.col("ts").dt.hour())
        .len()["len"]
    )
    assert by_hour.max() > 2.5 * by_hour.min()  # type: ignore[operator]


def test_weekends_are_quieter_and_recent_months_busier(data: DemoData) -> None:
    weekday = data.receipts["ts"].dt.weekday()
    assert (weekday >= 6).mean() < 2 / 7 * 0.95  # type: ignore[operator]
    first = data.receipts.filter(pl.col("ts") < NOW - timedelta(days=150)).height
    last = data.receipts.filter(pl.col("ts") >= NOW - timedelta(days=30)).height
    assert last > first * 1.05


# --- receipts -------------------------------------------------------------------------------------


def test_workflows_and_statuses(data: DemoData) -> None:
    assert set(data.receipts["workflow"].unique()) == set(WORKFLOWS)
    status = data.receipts["status"].value_counts(normalize=True)
    share = dict(zip(status["status"], status["proportion"], strict=True))
    assert share["ok"] > 0.9
    assert 0.01 < share["error"] < 0.08
    assert 0.002 < share["rollback"] < 0.03
    assert set(share) - {"ok", "error", "rollback"}  # rarely, something else
    assert sum(v for k, v in share.items() if k not in ("ok", "error", "rollback")) < 0.01


def test_latency_has_a_heavy_tail_per_workflow(data: DemoData) -> None:
    stats = data.receipts.group_by("workflow").agg(
        p50=pl.col("latency_ms").median(), p99=pl.col("latency_ms").quantile(0.99)
    )
    assert (stats["p99"] > 5 * stats["p50"]).all()
    assert stats["p50"].max() > 100 * stats["p50"].min()  # type: ignore[operator]
    assert (data.receipts["latency_ms"].drop_nulls() > 0).all()
    assert (data.receipts["cost_usd"].drop_nulls() > 0).all()


def test_null_fractions(data: DemoData) -> None:
    assert 0.015 <= data.receipts["latency_ms"].null_count() / N <= 0.025
    assert 0.024 <= data.receipts["cost_usd"].null_count() / N <= 0.036
    assert data.receipts["latency_ms"].is_nan().sum() == 0


def test_attempts_are_mostly_first_tries(data: DemoData) -> None:
    attempt = data.receipts["attempt"]
    assert attempt.min() == 1
    assert attempt.max() == 4
    assert 0.85 < (attempt == 1).mean() < 0.97  # type: ignore[operator]


def test_an_error_burst_hits_the_largest_tenant_in_the_last_three_days(dense: DemoData) -> None:
    recent = dense.receipts.filter(
        pl.col("tenant") == "acme", pl.col("ts") >= NOW - timedelta(days=3)
    )
    hourly = recent.group_by("workflow", pl.col("ts").dt.truncate("1h")).agg(
        n=pl.len(), errors=(pl.col("status") == "error").mean(), retries=pl.col("attempt").mean()
    )
    burst = hourly.filter(pl.col("n") >= 10, pl.col("errors") >= 0.25)
    assert burst.height >= 1
    assert burst["retries"].max() > 1.2  # type: ignore[operator]


# --- decisions ------------------------------------------------------------------------------------


def test_about_one_and_a_half_decisions_per_receipt(data: DemoData, joined: pl.DataFrame) -> None:
    assert 1.4 <= data.decisions.height / N <= 1.65
    per_receipt = joined.group_by("executionId").len()["len"]
    assert (per_receipt <= 4).all()
    with_none = N - per_receipt.len()
    assert 0.1 < with_none / N < 0.2


def test_an_execution_never_gets_the_same_rule_twice(joined: pl.DataFrame) -> None:
    assert joined.group_by("executionId", "rule").len()["len"].max() == 1


def test_decisions_follow_their_receipt_within_seconds(joined: pl.DataFrame) -> None:
    delay = (joined["ts"] - joined["receipt_ts"]).dt.total_microseconds()
    assert delay.min() >= 0  # type: ignore[operator]
    assert delay.median() < 1_000_000  # type: ignore[operator]
    assert delay.max() < 600_000_000  # type: ignore[operator]


def test_effects_and_rules(data: DemoData) -> None:
    assert set(data.decisions["effect"].unique()) == {"allow", "deny"}
    assert 0.005 < (data.decisions["effect"] == "deny").mean() < 0.1  # type: ignore[operator]
    assert set(data.decisions["rule"].unique()) <= set(RULES)
    assert {"budget.cap", "residency.eu", "pii.mask", "rate.limit", "approval.required"} <= set(
        data.decisions["rule"].unique()
    )


def test_deny_storms_exist(dense: DemoData) -> None:
    hourly = dense.decisions.group_by("tenant", "rule", pl.col("ts").dt.truncate("1h")).agg(
        n=pl.len(), deny=(pl.col("effect") == "deny").mean()
    )
    storms = hourly.filter(pl.col("n") >= 8, pl.col("deny") >= 0.4)
    assert storms.height >= 1
    recent = storms.filter(pl.col("tenant") == "acme", pl.col("ts") >= NOW - timedelta(days=3))
    assert recent.height >= 1  # one hits the largest tenant with the recent error burst


def test_a_blocking_deny_usually_fails_the_execution(joined: pl.DataFrame) -> None:
    denied = joined.filter(pl.col("effect") == "deny", pl.col("rule") == "approval.required")
    allowed = joined.filter(pl.col("effect") == "allow")
    denied_ok = (denied["status"] == "ok").mean()
    allowed_ok = (allowed["status"] == "ok").mean()
    assert denied_ok < allowed_ok - 0.3  # type: ignore[operator]


def test_policy_versions_move_forward(data: DemoData) -> None:
    version = pl.col("policy_version").str.strip_prefix("v").cast(pl.Int64)
    per_month = data.decisions.group_by(pl.col("ts").dt.truncate("30d").alias("m")).agg(
        low=version.min(), high=version.max()
    )
    per_month = per_month.sort("m")
    assert per_month["high"].n_unique() >= 5
    assert per_month["low"].is_sorted()
    assert data.decisions["policy_version"].str.contains(r"^v[0-9]+$").all()


def test_orphan_decisions(data: DemoData) -> None:
    total = data.decisions.height
    no_execution = data.decisions["executionId"].null_count() / total
    known = data.receipts["executionId"].implode()
    dangling = data.decisions.filter(
        pl.col("executionId").is_not_null(), ~pl.col("executionId").is_in(known)
    ).height
    assert 0.006 <= no_execution <= 0.014
    assert 0.006 <= dangling / total <= 0.014


# --- arguments and docs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"receipts": -1},
        {"receipts": 1.5},
        {"receipts": True},
        {"seed": -1},
        {"days": 0},
        {"tenants": 0},
    ],
)
def test_bad_arguments_are_input_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(InputError) as caught:
        generate(**kwargs)  # type: ignore[arg-type]
    assert isinstance(caught.value, PQLError)
    assert caught.value.exit_code == 2


def test_sort_order_breaks_ties_on_the_later_keys() -> None:
    ts = np.array([2, 1, 1, 1], dtype=np.int64)
    missing = np.array([False, True, False, False])
    key = np.array([5, 0, 9, 3], dtype=np.uint64)
    assert _sort_order(ts, missing, key).tolist() == [3, 2, 1, 0]


def test_hex_ids_sort_like_their_values_and_keep_nulls() -> None:
    values = np.array([2**64 - 1, 0, 255, 2**32], dtype=np.uint64)
    null = np.array([False, False, True, False])
    ids = _hex_ids("ex-", values, null=null)
    assert ids.to_list() == ["ex-ffffffffffffffff", "ex-0000000000000000", None,
                             "ex-0000000100000000"]  # fmt: skip
    plain = _hex_ids("dec-", values)
    assert plain.arg_sort().to_list() == np.argsort(values).tolist()


def test_the_docstring_examples_run() -> None:
    result = doctest.testmod(pql.demo, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4
    assert result.failed == 0
