"""Statistics, the cost estimator, the cost budget and explain's estimates."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import pql
from pql.catalog import RECEIPTS
from pql.cli import main
from pql.demo import DemoData
from pql.errors import SafetyError
from pql.limits import Limits
from pql.plan.cost import Estimates, format_cost
from pql.plan.nodes import Limit
from pql.stats import HyperLogLog, SubjectSummary, summarize
from pql.storage import IndexedLake

JOIN = (
    "FIND receipts JOIN decisions ON receipts.executionId = decisions.executionId "
    "WHERE decisions.effect = 'deny' SINCE 7d"
)

SIMPLE_FILTERS = [
    'FIND receipts WHERE status = "error" SINCE 30d',
    'FIND receipts WHERE status = "ok" SINCE 30d',
    "FIND receipts WHERE latency_ms > 250 SINCE 30d",
    'FIND receipts WHERE workflow IN ("etl", "billing") SINCE 30d',
    'FIND receipts WHERE region = "us-east-1" SINCE 90d',
    "FIND receipts WHERE cost_usd IS NULL SINCE 180d",
    'FIND receipts WHERE NOT (status = "ok") SINCE 30d',
    'FIND receipts WHERE status = "error" OR latency_ms > 1000 SINCE 30d',
    "FIND decisions WHERE effect = 'deny' SINCE 30d",
    "FIND decisions WHERE policy_version != 'v1' SINCE 30d",
    "FIND receipts SINCE 14d",
    JOIN,
]


def _q_error(estimate: float, actual: float) -> float:
    est, act = estimate + 1, actual + 1
    return max(est / act, act / est)


# -- sketches and summaries --------------------------------------------------------------------


def test_hyperloglog_counts_distinct_values_within_a_few_percent() -> None:
    values = pl.Series([f"ex-{i}" for i in range(100_000)])
    sketch = HyperLogLog().add(values).add(values.head(5_000))  # repeats do not count
    assert abs(sketch.estimate() / 100_000 - 1) < 0.05
    assert HyperLogLog().add(pl.Series(["a", "b", "a", None])).estimate() == pytest.approx(2, 0.01)


def test_hyperloglog_merges_and_round_trips() -> None:
    left = HyperLogLog().add(pl.Series([f"x{i}" for i in range(30_000)]))
    right = HyperLogLog().add(pl.Series([f"x{i}" for i in range(20_000, 50_000)]))
    union = left.merge(right)
    assert abs(union.estimate() / 50_000 - 1) < 0.05
    assert HyperLogLog.from_json(union.to_json()).estimate() == union.estimate()


def test_summaries_merge_like_the_data_they_summarize(demo: DemoData) -> None:
    frame = demo.receipts
    half = frame.height // 2
    merged = summarize(RECEIPTS, frame.head(half)).merge(summarize(RECEIPTS, frame.tail(-half)))
    whole = summarize(RECEIPTS, frame)
    assert merged.rows == whole.rows == frame.height
    for name in ("status", "region", "workflow"):
        assert merged.columns[name].mcv == whole.columns[name].mcv
        assert merged.columns[name].mcv_complete
    assert merged.columns["latency_ms"].nulls == frame["latency_ms"].null_count()
    assert merged.columns["latency_ms"].low == frame["latency_ms"].min()
    ids = merged.columns["executionId"]
    assert not ids.mcv  # ids are not counted value by value
    assert abs(ids.distinct / frame.height - 1) < 0.05
    again = SubjectSummary.from_json(json.loads(json.dumps(merged.to_json())))
    assert again.columns["status"].mcv == merged.columns["status"].mcv


def test_lake_keeps_summaries_beside_the_data_and_merges_new_files(
    demo: DemoData, lake_dir: Path
) -> None:
    engine = pql.Engine(lake_dir)
    first, second = demo.receipts.head(3_000), demo.receipts.tail(-3_000)
    engine.ingest("receipts", first)
    sidecar = lake_dir / "_pql" / "stats" / "acme" / "receipts.json"
    assert sidecar.is_file()
    engine.ingest("receipts", second)
    acme = demo.receipts.filter(pl.col("tenant") == "acme")
    summary = engine.statistics.summary("acme", "receipts")
    assert summary is not None and summary.rows == acme.height
    counts = dict(acme["status"].value_counts().iter_rows())
    assert summary.columns["status"].mcv == counts
    # A new engine reads the sidecar instead of the data.
    reopened = pql.Engine(lake_dir).statistics.summary("acme", "receipts")
    assert reopened is not None and reopened.to_json() == summary.to_json()


def test_a_lake_summarises_its_files_in_doubling_batches(
    demo: DemoData, lake_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One file first (a short deadline still gets one done), then 2, 4, ... files: many small
    partitions take a few summaries, not one each; a batch stays under the row cap."""
    engine = pql.Engine(lake_dir)
    engine.ingest("receipts", demo.receipts)
    assert isinstance(engine.store, IndexedLake)
    entries = engine.store.lake.manifest().files_of("acme", "receipts")
    assert len(entries) > 100
    (lake_dir / "_pql" / "stats" / "acme" / "receipts.json").unlink()
    heights: list[int] = []
    real = pql.stats.summarize

    def counting(subject: Any, frame: pl.DataFrame) -> Any:
        heights.append(frame.height)
        return real(subject, frame)

    monkeypatch.setattr(pql.stats, "summarize", counting)
    rows = [e.rows for e in entries]
    again = pql.Engine(lake_dir).statistics.summary("acme", "receipts")
    assert again is not None and again.rows == sum(rows) == sum(heights)
    sizes, start = [], 0
    for height in heights:  # the files of each batch, in the manifest's order
        end = start
        while sum(rows[start:end]) < height:
            end += 1
        assert sum(rows[start:end]) == height
        sizes.append(end - start)
        start = end
    assert sizes[:-1] == [2**i for i in range(len(sizes) - 1)] and sizes[-1] <= 2 ** len(sizes)
    # Under a row cap of 40 rows, a batch holds at most 40 rows, or a single file.
    monkeypatch.setattr(pql.stats, "SUMMARY_BATCH_ROWS", 40)
    heights.clear()
    (lake_dir / "_pql" / "stats" / "acme" / "receipts.json").unlink()
    capped = pql.Engine(lake_dir).statistics.summary("acme", "receipts")
    assert capped is not None and capped.to_json()["rows"] == sum(rows)
    assert all(h <= 40 or h in rows for h in heights) and len(heights) > len(sizes)


# -- estimates ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", SIMPLE_FILTERS)
def test_estimates_are_within_a_small_factor_of_actual_rows(
    engine: pql.Engine, demo: DemoData, text: str
) -> None:
    explained = engine.explain(text, tenant="acme", now=demo.now, analyze=True)
    for detail in explained.node_details():
        if detail["node"] in ("Scan", "Filter", "Join"):
            q = _q_error(detail["est_rows"], detail["actual_rows"])
            assert q < 3, f"{detail['detail']}: {detail}"


def test_aggregate_and_limit_rows(engine: pql.Engine, demo: DemoData) -> None:
    count = engine.explain(
        "FIND COUNT(receipts.executionId) GROUP BY receipts.status SINCE 30d",
        tenant="acme",
        now=demo.now,
        analyze=True,
    )
    groups = next(d for d in count.node_details() if d["node"] == "Aggregate")
    assert groups["est_rows"] == groups["actual_rows"]  # a complete list of statuses
    one = engine.explain("FIND COUNT(receipts.executionId) SINCE 7d", tenant="acme", now=demo.now)
    assert one.estimated_rows == 1
    limited = engine.explain("FIND receipts SINCE 30d LIMIT 5", tenant="acme", now=demo.now)
    assert limited.estimated_rows == 5


def test_explain_estimates_the_plan_that_runs(engine: pql.Engine, demo: DemoData) -> None:
    prepared = engine.prepare(JOIN, tenant="acme", now=demo.now)
    assert prepared.estimates is not None
    assert prepared.estimates.plan == prepared.plan
    assert isinstance(prepared.plan, Limit) and prepared.plan.cap
    explained = engine.explain(JOIN, tenant="acme", now=demo.now)
    text = str(explained)
    assert f"est_cost={format_cost(explained.estimated_cost)}" in text.splitlines()[0]
    assert "-- safety rules:" in text and "cost-budget" in text
    doc = explained.to_dict()
    assert doc["estimated_cost"] == explained.estimated_cost
    assert doc["budget"] == engine.limits.cost_budget
    assert doc["plan"]["est_rows"] == round(explained.estimated_rows, 1)
    assert doc["plan"]["inputs"][0]["node"] == "Project"


def test_unknown_tenant_costs_nothing(engine: pql.Engine, demo: DemoData) -> None:
    explained = engine.explain(JOIN, tenant="nobody", now=demo.now)
    assert explained.estimated_cost == 0


# -- the budget --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tight(demo: DemoData) -> pql.Engine:
    eng = pql.Engine.in_memory(limits=Limits(cost_budget=100))
    eng.ingest("receipts", demo.receipts)
    eng.ingest("decisions", demo.decisions)
    return eng


def test_refusal_and_explain_agree(tight: pql.Engine, demo: DemoData) -> None:
    explained = tight.explain(JOIN, tenant="acme", now=demo.now)
    assert explained.over_budget and "over budget" in str(explained)
    with pytest.raises(SafetyError) as caught:
        tight.query(JOIN, tenant="acme", now=demo.now)
    err = caught.value
    assert err.code == "PQL-S005" and err.exit_code == 3
    assert err.details["estimated_cost"] == explained.estimated_cost
    assert err.details["budget"] == 100
    assert f"estimated cost {format_cost(explained.estimated_cost)} " in err.message
    assert "budget of 100 " in err.message
    assert err.setting == "Limits.cost_budget"
    assert err.hints == (  # what a user reads, word for word
        "narrow the query: a shorter SINCE, a more selective WHERE, or an aggregate "
        "(COUNT, GROUP BY) instead of rows",
        "raise Limits.cost_budget for this tenant if the query is meant to be this big",
    )


def test_measure_mode_records_instead_of_refusing(demo: DemoData) -> None:
    eng = pql.Engine.in_memory(limits=Limits(cost_budget=100, enforce_cost=False))
    eng.ingest("receipts", demo.receipts)
    eng.ingest("decisions", demo.decisions)
    result = eng.query(JOIN, tenant="acme", now=demo.now, cache=False)
    (refusal,) = result.stats["would_refuse"]
    assert refusal["code"] == "PQL-S005"
    assert refusal["details"]["estimated_cost"] == result.stats["estimate"]["cost"]
    small = eng.query(
        "FIND COUNT(receipts.executionId) SINCE 1d", tenant="acme", now=demo.now, cache=False
    )
    assert small.stats["would_refuse"] == []


def test_tenant_limits_keep_enforcement() -> None:
    measured = Limits(enforce_cost=False)
    assert not measured.tighten(Limits(enforce_cost=False)).enforce_cost
    assert measured.tighten(Limits()).enforce_cost


def test_analyze_respects_the_budget(tight: pql.Engine, demo: DemoData) -> None:
    with pytest.raises(SafetyError, match="PQL-S005"):
        tight.explain(JOIN, tenant="acme", now=demo.now, analyze=True)


# -- the command line --------------------------------------------------------------------------


def test_cli_explain_json_and_analyze(capsys: Any, demo: DemoData, lake_dir: Path) -> None:
    engine = pql.Engine(lake_dir)
    engine.ingest("receipts", demo.receipts)
    engine.ingest("decisions", demo.decisions)
    now = demo.now.isoformat()
    base = ["explain", "--data", str(lake_dir), "--tenant", "acme", "--now", now, JOIN]
    assert main([*base[:-1], "--format", "json", JOIN]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["estimated_cost"] > 0 and doc["plan"]["node"] == "Limit"
    assert main([*base[:-1], "--analyze", JOIN]) == 0
    out = capsys.readouterr().out
    assert "actual_rows=" in out and "est_rows=" in out


def test_tenant_profile_lowers_only_what_it_sets() -> None:
    from datetime import timedelta

    import pql

    engine = pql.Engine.in_memory(limits=pql.Limits(max_rows=50_000, deadline_ms=5_000))
    engine.set_tenant_limits("acme", pql.TenantLimits(max_window=timedelta(days=30)))
    acme = engine.limits_for("acme")
    assert acme.max_window == timedelta(days=30)
    assert acme.max_rows == 50_000
    assert acme.deadline_ms == 5_000
    assert engine.limits_for("globex").max_window == timedelta(days=180)
    # A tenant can never loosen the engine's limit.
    engine.set_tenant_limits("acme", pql.TenantLimits(max_rows=10**9))
    assert engine.limits_for("acme").max_rows == 50_000
    with pytest.raises(pql.InputError):
        pql.TenantLimits(max_rows=0)


def test_tenant_max_concurrent_is_enforced_per_tenant() -> None:
    import pql

    engine = pql.Engine.in_memory()
    engine.set_tenant_limits("acme", pql.TenantLimits(max_concurrent=1, max_queued=0))
    held = engine._admitted("acme")
    held.__enter__()
    try:
        with pytest.raises(pql.SafetyError) as info:
            engine.query("FIND COUNT(receipts.executionId) SINCE 1d", tenant="acme", cache=False)
        assert info.value.code == "PQL-S007"
        assert "acme" in info.value.message
        # Another tenant still runs.
        engine.query("FIND COUNT(receipts.executionId) SINCE 1d", tenant="globex", cache=False)
    finally:
        held.__exit__(None, None, None)
    engine.query("FIND COUNT(receipts.executionId) SINCE 1d", tenant="acme", cache=False)


def test_admission_queue_waits_then_refuses_when_full() -> None:
    import threading
    import time

    from pql.execute.admission import Admission

    gate = Admission(running=1, queued=1, where="the test")
    release = threading.Event()
    entered = threading.Event()

    def hold() -> None:
        with gate.slot(timeout=1):
            entered.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    entered.wait(5)
    results: list[str] = []

    def wait_in_queue() -> None:
        with gate.slot(timeout=5):
            results.append("ran")

    waiter = threading.Thread(target=wait_in_queue)
    waiter.start()
    deadline = time.monotonic() + 5
    while gate.waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert gate.waiting == 1
    # One running, one waiting: the queue is full, the next is refused at once.
    with pytest.raises(pql.SafetyError, match="queue is full") as info, gate.slot(timeout=5):
        pass
    assert info.value.code == "PQL-S007"
    release.set()
    holder.join(5)
    waiter.join(5)
    assert results == ["ran"]
    assert gate.running == 0
    # Nobody frees the slot in time: refused after the timeout.
    with (
        gate.slot(timeout=1),
        pytest.raises(pql.SafetyError, match="came free"),
        gate.slot(timeout=0.01),
    ):
        pass


def test_join_builds_on_the_side_estimated_smaller(demo: Any) -> None:
    import pql
    from pql.plan.nodes import Join, walk

    engine = pql.Engine.in_memory(cache=False)
    engine.ingest("receipts", demo.receipts)
    engine.ingest("decisions", demo.decisions)
    text = (
        "FIND COUNT(decisions.decisionId) JOIN receipts ON decisions.executionId = "
        "receipts.executionId WHERE decisions.rule = 'pii.mask' AND decisions.effect = 'deny' "
        "GROUP BY decisions.rule SINCE 180d"
    )
    explanation = engine.explain(text, tenant="acme", now=demo.now)
    joins = [d for d in explanation.node_details() if d["node"] == "Join"]
    assert [d["build"] for d in joins] == ["left"]  # the few denied pii.mask decisions
    assert "build=left" in str(explanation)
    prepared = engine.prepare(text, tenant="acme", now=demo.now)
    join = next(n for n in walk(prepared.plan) if isinstance(n, Join))
    assert prepared.estimates is not None
    assert prepared.estimates.of(join.left).rows < prepared.estimates.of(join.right).rows
    # The answer does not depend on the build side.
    with_side = engine.query(text, tenant="acme", now=demo.now).df
    plain = engine.execute(replace(prepared, estimates=None)).df
    assert with_side.equals(plain)


def test_estimates_find_a_plan_node_and_any_node_equal_to_it(
    engine: pql.Engine, demo: DemoData
) -> None:
    """A node of the estimated plan is found as itself, an equal copy of it by equality, and a
    node of another plan not at all."""
    from pql.errors import InternalError
    from pql.plan.nodes import Scan, walk

    estimates = engine.prepare(JOIN, tenant="acme", now=demo.now).estimates
    assert estimates is not None
    nodes = list(walk(estimates.plan))
    assert len(estimates.nodes()) == len(set(nodes)) > 2
    for node in nodes:
        found = estimates.of(node)
        assert estimates.find(replace(node)) is found  # an equal node, not the same object
    assert estimates.root is estimates.of(estimates.plan)
    assert estimates.rows == estimates.root.rows and estimates.cost == estimates.root.cost
    scan = next(n for n in nodes if isinstance(n, Scan))
    other = replace(scan, start=scan.start.replace(year=scan.start.year - 1))
    assert estimates.find(other) is None
    with pytest.raises(InternalError) as missing:
        estimates.of(other)
    assert missing.value.code == "PQL-X030"
    assert missing.value.message == "no estimate for a Scan node"
    assert [n for n, _ in estimates] == nodes
    # The plan's own nodes are found without hashing any (no table by equality is built).
    fresh = Estimates(estimates.plan, [(n, estimates.of(n)) for n in estimates.nodes()])
    assert [fresh.of(n) for n in nodes] == [estimates.of(n) for n in nodes]
    assert fresh._by_node is None


def test_a_join_of_one_row_on_each_side_is_estimated_at_one_row(demo: DemoData) -> None:
    """One receipt and its one decision: one key value on each side, so the join is estimated
    at exactly one row (the key's distinct count is never taken below one)."""
    receipts = demo.receipts.filter(pl.col("tenant") == "acme")
    decided = receipts.join(demo.decisions.select("executionId").unique(), on="executionId")
    receipt = decided.sort("ts").tail(1)  # the latest receipt that has a decision, on any clock
    execution = receipt.get_column("executionId")[0]
    decision = demo.decisions.filter(pl.col("executionId") == execution).head(1)
    assert (receipt.height, decision.height) == (1, 1)
    engine = pql.Engine.in_memory(cache=False)
    engine.ingest("receipts", receipt)
    engine.ingest("decisions", decision)
    text = "FIND receipts JOIN decisions ON receipts.executionId = decisions.executionId SINCE 30d"
    explained = engine.explain(text, tenant="acme", now=demo.now)
    assert explained.estimated_rows == pytest.approx(1.0)
    assert len(engine.query(text, tenant="acme", now=demo.now)) == 1


def test_summarising_one_tenant_never_holds_up_anothers(demo: DemoData) -> None:
    """Summaries are kept per (tenant, subject) under their own lock: while one tenant's data is
    being summarised (here held inside its scan), another tenant's summary is made at once."""
    engine = pql.Engine.in_memory(cache=False)
    engine.ingest("receipts", demo.receipts)
    store = engine.store
    entered, release = threading.Event(), threading.Event()
    scan = store.scan

    def held(tenant: str, *args: Any, **kwargs: Any) -> Any:
        if tenant == "acme":
            entered.set()
            release.wait(30)
        return scan(tenant, *args, **kwargs)

    store.scan = held  # type: ignore[method-assign]
    found: dict[str, Any] = {}

    def summarise(tenant: str) -> None:
        found[tenant] = engine.statistics.summary(tenant, "receipts")

    slow = threading.Thread(target=summarise, args=("acme",))
    slow.start()
    try:
        assert entered.wait(30)
        other = threading.Thread(target=summarise, args=("globex",))
        other.start()
        other.join(10)
        done_while_held = not other.is_alive()
    finally:
        release.set()
        slow.join(30)
    assert done_while_held
    for tenant in ("acme", "globex"):
        rows = demo.receipts.filter(pl.col("tenant") == tenant).height
        summary = found[tenant]
        assert summary is not None and summary.rows == rows
