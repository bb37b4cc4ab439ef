"""Shared fixtures: one seeded demo dataset, an engine over it and DuckDB over the same rows."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import time_machine
from hypothesis import HealthCheck, settings

import pql
from pql import ast
from pql.demo import DemoData, generate
from pql.examples import CONTRACT_EXAMPLES
from tests.cases import DIFFERENTIAL_CASES, WINDOW_CASES
from tests.clock import TEST_NOW
from tests.paths import PATHS, SPARK, StorePath, open_path, windows_of, with_edges
from tests.strategies import SINCES

# fixtures shared by a few modules, kept beside what they serve
pytest_plugins = ["tests.reuse"]

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "nightly", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    # mutation testing (nox -s mutation): the same few examples for every mutant, no database
    "mutation",
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _fixed_wall_clock() -> Iterator[None]:
    with time_machine.travel(TEST_NOW, tick=True):
        yield


@pytest.fixture(scope="session")
def test_now() -> datetime:
    return TEST_NOW


@pytest.hookimpl(tryfirst=True)  # before pytest groups the items by their scoped parameters
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that reads the clock (through the demo data or ``test_now``) ``clock``.

    Under mutmut, which names a mutant's tests in the order of a set (modules interleaved), run
    them grouped by module in source order: each module's fixtures are then built once per run,
    not once per switch between modules (hundreds of times for a mutant that many tests reach)."""
    if "MUTANT_UNDER_TEST" in os.environ:
        first: dict[str, int] = {}
        for item in items:
            first.setdefault(item.nodeid.split("::", 1)[0], len(first))
        items.sort(key=lambda item: (first[item.nodeid.split("::", 1)[0]], item.location[1] or 0))
    for item in items:
        names = getattr(item, "fixturenames", ())
        if {"demo", "test_now", "engine", "duck", "edge_data", "store_path"} & set(names):
            item.add_marker(pytest.mark.clock)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files from the current output instead of comparing",
    )


@pytest.fixture(scope="session")
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden")) or bool(
        os.environ.get("PQL_UPDATE_GOLDEN")
    )


@pytest.fixture(scope="session")
def demo() -> DemoData:
    return generate(6_000, seed=11, now=TEST_NOW)


@pytest.fixture(scope="session")
def engine(demo: DemoData) -> pql.Engine:
    eng = pql.Engine.in_memory()
    eng.ingest("receipts", demo.receipts)
    eng.ingest("decisions", demo.decisions)
    return eng


@pytest.fixture(scope="session")
def tenants(demo: DemoData) -> list[str]:
    counts = demo.receipts["tenant"].value_counts(sort=True)
    return [str(t) for t in counts["tenant"].to_list()]


@pytest.fixture(scope="session")
def duck(demo: DemoData) -> Iterator[Any]:
    yield from _duck(demo)


def _duck(demo: DemoData) -> Iterator[Any]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    receipts = demo.receipts.to_arrow()
    decisions = demo.decisions.to_arrow()
    con.register("receipts_src", receipts)
    con.register("decisions_src", decisions)
    con.execute("CREATE TABLE receipts AS SELECT * FROM receipts_src")
    con.execute("CREATE TABLE decisions AS SELECT * FROM decisions_src")
    yield con
    con.close()


@pytest.fixture
def lake_dir(tmp_path: Path) -> Path:
    return tmp_path / "lake"


# -- every store path, at the window's edges (tests/paths.py) ---------------------------------


@pytest.fixture(scope="session")
def edge_data() -> DemoData:
    """Small generated data plus, per tenant, rows at every edge of every window the tests use."""
    windows = windows_of([*CONTRACT_EXAMPLES, *DIFFERENTIAL_CASES, *WINDOW_CASES])
    windows |= {timedelta(seconds=ast.Duration(*since).seconds) for since in SINCES}
    return with_edges(generate(1_500, seed=11, now=TEST_NOW), windows)


@pytest.fixture(scope="session")
def edge_duck(edge_data: DemoData) -> Iterator[Any]:
    yield from _duck(edge_data)


@pytest.fixture(scope="session")
def edge_tenants(edge_data: DemoData) -> list[str]:
    counts = edge_data.receipts["tenant"].value_counts(sort=True)
    return [str(t) for t in counts["tenant"].to_list()]


@pytest.fixture(scope="session")
def edge_lake(edge_data: DemoData, tmp_path_factory: pytest.TempPathFactory) -> StorePath:
    """The ``service`` path: it ingests ``edge_data`` into the lake the other lake paths read."""
    return open_path("service", edge_data, tmp_path_factory.mktemp("paths") / "lake")


@pytest.fixture(scope="session", params=PATHS)
def store_path(
    request: pytest.FixtureRequest, edge_data: DemoData, edge_lake: StorePath
) -> StorePath:
    """An engine over ``edge_data`` for each way a user reaches data (``tests.paths.PATHS``;
    a test may add ``SPARK``, the Spark executor over the same lake)."""
    if request.param == edge_lake.name:
        return edge_lake
    assert edge_lake.root is not None  # the lake the other paths read
    if request.param == SPARK:
        if "MUTANT_UNDER_TEST" in os.environ:  # pql/execute/spark is not mutated: no Spark
            pytest.skip("Spark is not started for each mutant")
        session = request.getfixturevalue("spark")
        return open_path(SPARK, edge_data, edge_lake.root, spark=session)
    return open_path(request.param, edge_data, edge_lake.root)


# -- Spark in local mode (tests/test_spark.py, and the spark store path) -------------------------


def _missing() -> str | None:
    if shutil.which("java") is None:
        return "Java is not installed (apt-get install default-jre-headless)"
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install 'pql[spark]')"
    return None


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    why = _missing()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the Spark tests must run in CI: {why}")
        pytest.skip(why)
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("pql-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.sql.sources.parallelPartitionDiscovery.threshold", "100000")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


# -- a real S3 endpoint (tests/s3server.py) ----------------------------------------------------


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, started once for the session and stopped after it."""
    pytest.importorskip("boto3")
    pytest.importorskip("moto.server")
    from tests.s3server import moto_server

    with moto_server() as url:
        yield url


@pytest.fixture
def s3(s3_server: str, tmp_path: Path) -> dict[str, Any]:
    """An empty S3 server and the options of an engine on it (``pql.Engine(LOCATION, s3=...)``)."""
    from tests.s3server import CREDENTIALS, reset

    reset(s3_server)
    return {"endpoint_url": s3_server, **CREDENTIALS, "state_dir": tmp_path / "s3-state"}
