"""The Spark executor gives the answers of the Polars executor and of DuckDB, for several tenants.

Spark runs in local mode, one session for the whole test session (starting one costs seconds).
Without Java or pyspark these tests are skipped locally, but fail in CI (``CI=true``).
"""

from __future__ import annotations

import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings

import pql
from pql import ast
from pql.deadline import Deadline
from pql.demo import DemoData, generate
from pql.examples import CONTRACT_EXAMPLES
from pql.execute.spark import SparkExecutor
from pql.execute.spark import run as spark_run
from tests.compare import assert_same_frame
from tests.sqlref import translate_prepared
from tests.strategies import queries
from tests.test_docs import LANGUAGE_BLOCKS, NOW, PARAMS, TENANT

pytestmark = pytest.mark.spark

LIMITS = pql.Limits(deadline_ms=600_000)
"""Spark in local mode on a shared machine takes seconds per query, and the first query of a
session (class loading, JIT) took more than two minutes on a heavily loaded two-core machine;
the deadline is not tested here except on purpose."""

FEW = settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))


def _lake(root: Path, receipts: pl.DataFrame, decisions: pl.DataFrame) -> Path:
    eng = pql.Engine(root, cache=False)
    eng.ingest("receipts", receipts)
    eng.ingest("decisions", decisions)
    return root


@pytest.fixture(scope="session")
def lake(demo: DemoData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _lake(tmp_path_factory.mktemp("spark") / "lake", demo.receipts, demo.decisions)


@pytest.fixture(scope="session")
def on_spark(lake: Path, spark: Any) -> pql.Engine:
    return pql.Engine(lake, executor="spark", spark=spark, cache=False, limits=LIMITS)


@pytest.fixture(scope="session")
def on_polars(lake: Path) -> pql.Engine:
    return pql.Engine(lake, cache=False, limits=LIMITS)


def three_way(
    on_spark: pql.Engine, on_polars: pql.Engine, duck: Any, text: str, tenant: str, now: Any
) -> pql.Result:
    """Spark's answer equals the Polars executor's and DuckDB's (rows, order, ``truncated``)."""
    prepared = on_spark.prepare(text, tenant=tenant, now=now)
    ours = on_spark.execute(prepared)
    assert ours.stats["executor"] == "spark"
    polars = on_polars.query(text, tenant=tenant, now=now)
    assert ours.truncated == polars.truncated, f"truncated differs for {text!r}"
    assert_same_frame(ours.df, polars.df, f"spark vs polars for {text!r} ({tenant})")
    max_rows = prepared.limits.max_rows
    sql = translate_prepared(prepared, tenant, max_rows=max_rows)
    theirs = pl.from_arrow(duck.sql(sql).to_arrow_table())
    assert isinstance(theirs, pl.DataFrame)
    assert ours.truncated == (theirs.height > max_rows)
    assert_same_frame(ours.df, theirs.head(max_rows), f"spark vs duckdb for {text!r}\nSQL: {sql}")
    return ours


MORE = [
    "FIND COUNT(*) AS n, MIN(receipts.latency_ms), MAX(receipts.ts) GROUP BY status, region "
    "SINCE 90d",
    "FIND SUM(receipts.latency_ms) AS s WHERE latency_ms IS NULL SINCE 180d",
    "FIND decisions JOIN receipts ON receipts.executionId = decisions.executionId "
    "WHERE rule IN ('budget.cap', 'pii.mask') OR receipts.latency_ms >= 1000 SINCE 30d",
    "FIND receipts WHERE ts >= '2026-11-01' AND NOT status IN ('ok') SINCE 60d",
    "FIND COUNT(*) AS n, AVG(receipts.latency_ms) AS ms GROUP BY receipts.status "
    "TIMESERIES 1d SINCE 7d",
    "FIND receipts SINCE 180d",  # more than the row cap for the largest tenant: truncated
]


@pytest.mark.parametrize(
    ("text", "which"),
    [*((t, w) for t in CONTRACT_EXAMPLES for w in (0, 3)), *((t, 1) for t in MORE)],
)
def test_examples_match_polars_and_duckdb(
    on_spark: pql.Engine,
    on_polars: pql.Engine,
    duck: Any,
    demo: DemoData,
    tenants: list[str],
    text: str,
    which: int,
) -> None:
    three_way(on_spark, on_polars, duck, text, tenants[which], demo.now)


def test_the_row_cap_truncates_on_spark(
    lake: Path, spark: Any, duck: Any, demo: DemoData, tenants: list[str]
) -> None:
    small = pql.Limits(max_rows=25, deadline_ms=120_000)
    result = three_way(
        pql.Engine(lake, executor="spark", spark=spark, cache=False, limits=small),
        pql.Engine(lake, cache=False, limits=small),
        duck,
        "FIND receipts SINCE 30d",
        tenants[0],
        demo.now,
    )
    assert result.truncated
    assert result.df.height == 25


@given(query=queries())
@FEW
def test_generated_queries_match_polars_and_duckdb(
    on_spark: pql.Engine,
    on_polars: pql.Engine,
    duck: Any,
    demo: DemoData,
    tenants: list[str],
    query: ast.Query,
) -> None:
    text = ast.to_text(query)
    for tenant in (tenants[0], tenants[-1]):
        three_way(on_spark, on_polars, duck, text, tenant, demo.now)


@pytest.fixture(scope="session")
def docs_lakes(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[pql.Engine, ...]:
    """The docs' data (same seed and clock as tests/test_docs.py) on both executors."""
    data = generate(400, seed=7, now=NOW)
    root = _lake(tmp_path_factory.mktemp("docs") / "lake", data.receipts, data.decisions)
    return (
        pql.Engine(root, executor="spark", spark=spark, cache=False, limits=LIMITS),
        pql.Engine(root, cache=False, limits=LIMITS),
    )


def test_language_examples_match_polars(docs_lakes: tuple[pql.Engine, ...]) -> None:
    """Every example of LANGUAGE.md that runs gives the same answer (or error) on Spark."""
    on_spark, on_polars = docs_lakes
    ran = 0
    for block in LANGUAGE_BLOCKS:
        try:
            expected = on_polars.query(block.text, tenant=TENANT, now=NOW, params=PARAMS)
        except pql.PQLError as exc:
            with pytest.raises(pql.PQLError) as got:
                on_spark.query(block.text, tenant=TENANT, now=NOW, params=PARAMS)
            assert got.value.code == exc.code, block.id
            continue
        answer = on_spark.query(block.text, tenant=TENANT, now=NOW, params=PARAMS)
        assert answer.truncated == expected.truncated, block.id
        assert_same_frame(answer.df, expected.df, block.id)
        ran += 1
    assert ran >= 25


@pytest.fixture(scope="session")
def alone(demo: DemoData, tenants: list[str]) -> dict[str, pql.Engine]:
    """Per tenant, an engine that holds only that tenant's rows.

    It runs on Polars, in memory: the property is that Spark, reading the shared lake, answers
    as if the tenant's rows were all there is. Spark's agreement with Polars over the same
    data is the differential tests' job; running the one-tenant side on Spark too would only
    repeat it (and double the Spark queries) and writing two more lakes costs a minute."""
    engines = {}
    for tenant in (tenants[0], tenants[2]):
        engine = pql.Engine.in_memory(cache=False, rollups=False, limits=LIMITS)
        engine.ingest("receipts", demo.receipts.filter(pl.col("tenant") == tenant))
        engine.ingest("decisions", demo.decisions.filter(pl.col("tenant") == tenant))
        engines[tenant] = engine
    return engines


@given(query=queries())
@FEW
def test_no_query_on_spark_sees_another_tenant(
    on_spark: pql.Engine,
    alone: dict[str, pql.Engine],
    demo: DemoData,
    query: ast.Query,
) -> None:
    text = ast.to_text(query)
    for tenant, own in alone.items():
        shared = on_spark.query(text, tenant=tenant, now=demo.now)
        assert shared.stats["executor"] == "spark"
        assert_same_frame(shared.df, own.query(text, tenant=tenant, now=demo.now).df, text)
        for name in shared.df.columns:
            if name.endswith("tenant"):
                assert set(shared.df[name].to_list()) <= {tenant}


def test_explain_names_the_executor(
    on_spark: pql.Engine, on_polars: pql.Engine, demo: DemoData
) -> None:
    text = "FIND COUNT(receipts.executionId) SINCE 7d"
    assert "-- executor: spark" in str(on_spark.explain(text, tenant="acme", now=demo.now))
    assert "-- executor: polars" in str(on_polars.explain(text, tenant="acme", now=demo.now))
    analyzed = on_spark.explain(text, tenant="acme", now=demo.now, analyze=True)
    polars = on_polars.explain(text, tenant="acme", now=demo.now, analyze=True)
    lines = [line for line in str(analyzed).splitlines() if "executor" not in line]
    assert lines == [line for line in str(polars).splitlines() if "executor" not in line]


def test_the_cost_budget_is_the_planners(lake: Path, spark: Any, demo: DemoData) -> None:
    tight = pql.Limits(cost_budget=10, deadline_ms=120_000)
    for engine in (
        pql.Engine(lake, executor="spark", spark=spark, limits=tight),
        pql.Engine(lake, limits=tight),
    ):
        with pytest.raises(pql.SafetyError) as refused:
            engine.query("FIND receipts SINCE 30d LIMIT 100", tenant="acme", now=demo.now)
        assert refused.value.code == "PQL-S005"


def test_the_deadline_cancels_the_spark_job_group(
    lake: Path, spark: Any, demo: DemoData, tenants: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The query's job group, named here so that a job left running can be told apart.
    named = types.SimpleNamespace(uuid4=lambda: types.SimpleNamespace(hex="deadline-test"))
    monkeypatch.setattr(spark_run, "uuid", named)
    group = "pql-deadline-test"
    engine = pql.Engine(lake, executor="spark", spark=spark, cache=False, limits=LIMITS)
    text = "FIND COUNT(*) AS n GROUP BY receipts.workflow, receipts.status SINCE 180d"
    prepared = engine.prepare(text, tenant=tenants[0], now=demo.now)
    executor = SparkExecutor.of(spark, engine.store, engine.catalog)
    compiled = executor.compile(prepared.plan)
    began = time.monotonic()
    with pytest.raises(pql.SafetyError) as late:
        executor.run(compiled, prepared.plan, Deadline(150))
    assert late.value.code == "PQL-S006"
    assert late.value.details["stage"] == "execute"
    assert time.monotonic() - began < 5, "the caller waited for the cancelled job"
    tracker = spark.sparkContext.statusTracker()

    # The query's thread may submit a job after the deadline (its planning outlasted it), which
    # is cancelled in turn: every job ends soon after, within seconds on a busy machine.
    for _ in range(300):
        if not tracker.getActiveJobsIds():
            break
        time.sleep(0.1)
    active = set(tracker.getActiveJobsIds())
    assert not active, (
        f"{active} still running, {active & set(tracker.getJobIdsForGroup(group))} the query's"
    )


def test_an_unknown_executor_is_refused(lake: Path) -> None:
    with pytest.raises(pql.InputError) as bad:
        pql.Engine(lake, executor="dask")
    assert bad.value.code == "PQL-E503"


def test_spark_needs_a_session_and_a_lake(lake: Path, spark: Any) -> None:
    with pytest.raises(pql.InputError) as no_session:
        pql.Engine(lake, executor="spark")
    assert no_session.value.code == "PQL-E501"
    from pql.storage import MemoryStore

    with pytest.raises(pql.InputError) as in_memory:
        pql.Engine(store=MemoryStore(pql.Catalog()), executor="spark", spark=spark)
    assert in_memory.value.code == "PQL-E502"
    # the default engine keeps per-tenant indexes; on Spark it reads the lake's files instead
    assert type(pql.Engine(lake, executor="spark", spark=spark).store).__name__ == "Lake"


def test_without_pyspark_the_error_says_how_to_install(lake: Path) -> None:
    script = (
        "import sys; sys.modules['pyspark'] = None\n"
        "import pql\n"
        "try:\n"
        f"    pql.Engine({str(lake)!r}, executor='spark')\n"
        "except pql.PQLError as exc:\n"
        "    print(exc.code, exc.hints[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("PQL-E500 install it with: pip install 'pql[spark]'")
