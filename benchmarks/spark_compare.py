"""The harness's single-client per-shape table, three ways: pql on Polars, DuckDB, pql on Spark.

For each of the load harness's query shapes (``DASHBOARDS`` and ``ADHOC`` in
``benchmarks/harness.py``, the same texts and tenants its single-client comparison picks), the
same query runs ``--runs`` times after ``--warmup`` runs through

* **pql**: the default ``Engine(DIR)`` (Polars executor, per-tenant indexes preloaded), cache off;
* **DuckDB**: native tables of the same rows sorted by tenant and ts, the SQL from
  ``tests/sqlref.py`` (the differential tests' oracle), as the harness does;
* **pql on Spark**: ``Engine(DIR, executor="spark", spark=session)`` over the same lake, Spark in
  local mode (``local[2]`` by default), cache off.

Per shape: median and p95 latency, the ratios to DuckDB, and for Spark where the time goes. The
Spark breakdown comes from Spark's own status store (its REST API, read after each run): every
stage of the jobs the query started, with its submission and completion times, input bytes and
shuffle bytes. Along the query's execute time each instant is attributed to a *scan* stage (one
that read Parquet: it also filters, partially aggregates and writes shuffle files, which Spark
pipelines into that stage), else to a *shuffle/aggregate* stage (one that reads shuffle output:
the final aggregate, join or sort), else to the driver: *before the first stage* (Catalyst
analysis, optimization and physical planning, job submission), *between stages* (adaptive
re-planning, scheduling) or *after the last stage* (collecting the Arrow result into Python). pql's
own part (parse, plan, safety, and compiling the plan to a DataFrame, which lists the files on
the driver) comes from the result's ``timings_ms``. Session start (JVM and Spark context) and the
first query (class loading, JIT) are measured once.

The generated data is cached on disk (``--cache-dir``, default ``benchmarks/.data``): the lake
directory and the source frames as Parquet, keyed by receipts, tenants and seed, so the 10M lake
is built once. Results go to ``benchmarks/results/spark-compare-<N>k-<stamp>.{json,md}``. Run
from the repository root::

    python -m benchmarks.spark_compare                      # 1M receipts, 5 runs per shape
    python -m benchmarks.spark_compare --receipts 10000000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import pql
from benchmarks.data import CACHE, Data, cached_data, duckdb_answer, duckdb_tables, progress
from benchmarks.harness import RESULTS, Request, workload

SHAPES = (
    "dash_status_1d",
    "dash_latency_7d",
    "dash_cost_30d",
    "dash_errors_1d",
    "dash_denies_7d",
    "dash_deny_join_7d",
    "adhoc_slow",
    "adhoc_group",
    "adhoc_wide",
)

SPARK_PARTS = ("pql_ms", "before_ms", "scan_ms", "shuffle_ms", "between_ms", "after_ms")
"""The Spark breakdown, in the order a query goes through it (see the module's docstring)."""


def chosen_queries(tenants: list[str], *, seed: int, per_shape: int) -> dict[str, list[Request]]:
    """The first ``per_shape`` distinct queries per shape of the harness's default workload
    (the same choice its single-client comparison makes)."""
    requests = workload(tenants, qps=100.0, duration=30.0, adhoc_share=0.2, zipf=1.1, seed=seed)
    chosen: dict[str, list[Request]] = {}
    seen: set[tuple[str, str]] = set()
    for req in requests:
        if (req.tenant, req.text) in seen or len(chosen.get(req.shape, [])) >= per_shape:
            continue
        seen.add((req.tenant, req.text))
        chosen.setdefault(req.shape, []).append(req)
    return {shape: chosen[shape] for shape in SHAPES if shape in chosen}


# --- timing -----------------------------------------------------------------------------------


def _pct(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values)
    return {
        "n": len(values),
        "p50": round(float(np.percentile(arr, 50)), 3),
        "p95": round(float(np.percentile(arr, 95)), 3),
        "min": round(float(arr.min()), 3),
        "max": round(float(arr.max()), 3),
    }


def timed_runs(fn: Callable[[], Any], *, warmup: int, runs: int) -> tuple[list[float], Any]:
    """``warmup`` unmeasured calls, then ``runs`` measured ones (ms); and the last answer."""
    answer = None
    for _ in range(warmup):
        answer = fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        answer = fn()
        times.append((time.perf_counter() - t) * 1000)
    return times, answer


def _height(answer: Any) -> int:
    if isinstance(answer, pql.Result):
        return answer.df.height
    return int(answer.num_rows)


# --- Spark ------------------------------------------------------------------------------------


def spark_session(master: str, shuffle_partitions: int, driver_memory: str) -> Any:
    """A local Spark session set up as docs/scale-out.md advises (UI on for its status API)."""
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master(master)
        .appName("pql-spark-compare")
        .config("spark.driver.memory", driver_memory)
        .config("spark.ui.enabled", "true")  # the REST status API the breakdown reads
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.sources.parallelPartitionDiscovery.threshold", "100000")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


class SparkStatus:
    """Jobs and stages from the session's status store, through Spark's REST API."""

    def __init__(self, spark: Any) -> None:
        self.context = spark.sparkContext
        url = self.context.uiWebUrl
        if not url:
            raise RuntimeError("the Spark UI is off: the breakdown needs its status API")
        self.base = f"{url}/api/v1/applications/{self.context.applicationId}"

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=30) as answer:
            return json.load(answer)

    def settle(self) -> None:
        """Wait until the status store has processed every event posted so far."""
        self.context._jsc.sc().listenerBus().waitUntilEmpty()

    def job_ids(self) -> set[int]:
        self.settle()
        return {int(job["jobId"]) for job in self._get("/jobs")}

    def stages_of_jobs_after(self, before: set[int]) -> tuple[int, list[dict[str, Any]]]:
        """The number of jobs started since ``before`` was taken, and their completed stages."""
        self.settle()
        jobs = [job for job in self._get("/jobs") if int(job["jobId"]) not in before]
        stages = []
        for stage_id in sorted({s for job in jobs for s in job["stageIds"]}):
            for attempt in self._get(f"/stages/{stage_id}"):
                if attempt.get("status") == "COMPLETE":
                    stages.append(attempt)
        return len(jobs), stages


def _epoch_ms(stamp: str) -> float:
    """Spark's status timestamps (``2026-11-30T02:15:00.123GMT``) as epoch milliseconds."""
    moment = datetime.strptime(stamp.replace("GMT", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
    return moment.timestamp() * 1000


def breakdown(stages: list[dict[str, Any]], *, begin_ms: float, end_ms: float) -> dict[str, float]:
    """Attribute each millisecond of ``[begin_ms, end_ms]`` (the execute phase, epoch ms): to a
    scan stage if one runs, else to a shuffle/aggregate stage, else to the driver (before the
    first stage, between stages, after the last)."""
    spans: list[tuple[float, float, str]] = []
    for stage in stages:
        if "submissionTime" not in stage or "completionTime" not in stage:
            continue
        kind = "scan" if stage.get("inputBytes", 0) > 0 else "shuffle"
        start = max(_epoch_ms(stage["submissionTime"]), begin_ms)
        stop = min(_epoch_ms(stage["completionTime"]), end_ms)
        if stop > start:
            spans.append((start, stop, kind))
    out = dict.fromkeys(("before_ms", "scan_ms", "shuffle_ms", "between_ms", "after_ms"), 0.0)
    if not spans:
        out["before_ms"] = end_ms - begin_ms
        return out
    first = min(s for s, _, _ in spans)
    last = max(e for _, e, _ in spans)
    out["before_ms"] = first - begin_ms
    out["after_ms"] = end_ms - last
    edges = sorted({first, last, *(s for s, _, _ in spans), *(e for _, e, _ in spans)})
    for lo, hi in pairwise(edges):
        running = {k for s, e, k in spans if s < hi and e > lo}
        key = "scan_ms" if "scan" in running else "shuffle_ms" if running else "between_ms"
        out[key] += hi - lo
    return out


def spark_run(
    engine: pql.Engine, status: SparkStatus, req: Request, now: datetime
) -> dict[str, Any]:
    """One measured query on Spark: its latency and where the time went."""
    before = status.job_ids()
    t = time.perf_counter()
    result = engine.query(req.text, tenant=req.tenant, now=now, cache=False, record=False)
    total = (time.perf_counter() - t) * 1000
    end = time.time() * 1000
    timings = result.stats["timings_ms"]
    execute = timings["execute"]
    jobs, stages = status.stages_of_jobs_after(before)
    parts = breakdown(stages, begin_ms=end - execute, end_ms=end)
    parts["pql_ms"] = total - execute
    return {
        "total_ms": total,
        **parts,
        "jobs": jobs,
        "stages": len(stages),
        "tasks": sum(int(s.get("numTasks", 0)) for s in stages),
        "input_bytes": sum(int(s.get("inputBytes", 0)) for s in stages),
        "shuffle_read_bytes": sum(int(s.get("shuffleReadBytes", 0)) for s in stages),
        "executor_run_ms": sum(int(s.get("executorRunTime", 0)) for s in stages),
        "files": result.stats["partitions_read"],
        "rows": result.df.height,
    }


# --- the three sides --------------------------------------------------------------------------


@contextmanager
def load_noted(side: dict[str, Any]) -> Iterator[None]:
    """Record the machine's load average around a side's runs."""
    side["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
    t = time.perf_counter()
    yield
    side["wall_s"] = round(time.perf_counter() - t, 1)
    side["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]


def run_pql(
    data: Data, queries: dict[str, list[Request]], *, warmup: int, runs: int
) -> dict[str, Any]:
    """The default engine: Engine(DIR) with its indexes preloaded, cache off."""
    side: dict[str, Any] = {"engine": "Engine(DIR), indexes preloaded, cache off", "shapes": {}}
    with load_noted(side):
        engine = pql.Engine(data.lake)
        t = time.perf_counter()
        engine.preload("all")
        engine.wait_ready()
        side["preload_s"] = round(time.perf_counter() - t, 2)
        for shape, reqs in queries.items():
            progress(f"pql {shape}")
            times, rows = [], []
            for req in reqs:
                got, answer = timed_runs(
                    partial(
                        engine.query,
                        req.text,
                        tenant=req.tenant,
                        now=data.now,
                        cache=False,
                        record=False,
                    ),
                    warmup=warmup,
                    runs=runs,
                )
                times += got
                rows.append(_height(answer))
            side["shapes"][shape] = {"latency_ms": _pct(times), "rows": rows}
    return side


def run_duckdb(
    data: Data, queries: dict[str, list[Request]], *, warmup: int, runs: int
) -> dict[str, Any]:
    """DuckDB over native tables sorted by tenant and ts, as the harness builds them."""
    import duckdb

    from tests.sqlref import translate_prepared

    engine = pql.Engine(data.lake, index=False, cache=False)  # only to prepare the SQL
    side: dict[str, Any] = {"engine": f"duckdb {duckdb.__version__}, native tables", "shapes": {}}
    with load_noted(side):
        t = time.perf_counter()
        con = duckdb_tables({"receipts": data.receipts, "decisions": data.decisions})
        side["load_s"] = round(time.perf_counter() - t, 2)
        for shape, reqs in queries.items():
            progress(f"duckdb {shape}")
            times, rows = [], []
            for req in reqs:
                prepared = engine.prepare(req.text, tenant=req.tenant, now=data.now)
                sql = translate_prepared(prepared, req.tenant, now=data.now)
                got, answer = timed_runs(
                    partial(duckdb_answer, con, sql),
                    warmup=warmup,
                    runs=runs,
                )
                times += got
                rows.append(min(_height(answer), prepared.limits.max_rows))
            side["shapes"][shape] = {"latency_ms": _pct(times), "rows": rows}
        con.close()
    return side


def run_spark(
    data: Data,
    queries: dict[str, list[Request]],
    *,
    warmup: int,
    runs: int,
    master: str,
    shuffle_partitions: int,
    driver_memory: str,
) -> dict[str, Any]:
    """pql on Spark local mode over the same lake, with the breakdown per run."""
    import pyspark

    side: dict[str, Any] = {
        "engine": f"Engine(DIR, executor='spark'), pyspark {pyspark.__version__}, {master}",
        "master": master,
        "shuffle_partitions": shuffle_partitions,
        "driver_memory": driver_memory,
        "shapes": {},
    }
    with load_noted(side):
        t = time.perf_counter()
        spark = spark_session(master, shuffle_partitions, driver_memory)
        side["session_start_s"] = round(time.perf_counter() - t, 2)
        try:
            status = SparkStatus(spark)
            engine = pql.Engine(
                data.lake,
                executor="spark",
                spark=spark,
                cache=False,
                limits=pql.Limits(deadline_ms=600_000),
            )
            first = True
            for shape, reqs in queries.items():
                samples: list[dict[str, Any]] = []
                rows = []
                for req in reqs:
                    for i in range(warmup + runs):
                        progress(f"spark {shape} run {i + 1}/{warmup + runs}")
                        sample = spark_run(engine, status, req, data.now)
                        if first:
                            side["first_query"] = {"shape": shape, **_rounded(sample)}
                            first = False
                        if i >= warmup:
                            samples.append(sample)
                    rows.append(samples[-1]["rows"])
                side["shapes"][shape] = {
                    "latency_ms": _pct([s["total_ms"] for s in samples]),
                    "rows": rows,
                    "median": {
                        key: round(statistics.median(s[key] for s in samples), 1)
                        for key in (*SPARK_PARTS, "executor_run_ms")
                    },
                    "per_run": [_rounded(s) for s in samples],
                }
        finally:
            spark.stop()
    return side


def _rounded(sample: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in sample.items()}


# --- report -----------------------------------------------------------------------------------


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def table(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per shape: p50 and p95 of the three sides and the ratios to DuckDB."""
    out = {}
    sides = report["sides"]
    for shape in sides["duckdb"]["shapes"]:
        row: dict[str, Any] = {}
        for name in ("pql", "duckdb", "spark"):
            lat = sides[name]["shapes"][shape]["latency_ms"]
            row[f"{name}_p50_ms"], row[f"{name}_p95_ms"] = lat["p50"], lat["p95"]
        row["pql_vs_duckdb"] = _ratio(row["pql_p50_ms"], row["duckdb_p50_ms"])
        row["spark_vs_duckdb"] = _ratio(row["spark_p50_ms"], row["duckdb_p50_ms"])
        row["spark_vs_pql"] = _ratio(row["spark_p50_ms"], row["pql_p50_ms"])
        row["same_rows"] = (
            sides["pql"]["shapes"][shape]["rows"]
            == sides["duckdb"]["shapes"][shape]["rows"]
            == sides["spark"]["shapes"][shape]["rows"]
        )
        out[shape] = row
    return out


def _ms(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: the three-way table, then Spark's breakdown."""
    cfg = report["config"]
    spark = report["sides"]["spark"]
    lines = [
        f"# pql vs DuckDB vs pql on Spark: {cfg['receipts']:,} receipts",
        "",
        f"{cfg['decisions']:,} decisions, {cfg['tenants']} tenants, seed {cfg['seed']}; "
        f"{cfg['runs']} measured runs per query after {cfg['warmup']} warm-up runs, "
        f"{cfg['per_shape']} quer{'y' if cfg['per_shape'] == 1 else 'ies'} per shape "
        f"(the harness's choice), single client, cache off. {cfg['cpus']} CPUs, shared: load "
        f"average {report['loadavg_start'][0]} at the start, {report['loadavg_end'][0]} at the "
        f"end. Spark: {spark['master']}, {spark['shuffle_partitions']} shuffle partitions, "
        f"session start {spark['session_start_s']} s, first query "
        f"{spark['first_query']['total_ms'] / 1000:.1f} s ({spark['first_query']['shape']}).",
        "",
        "Latency in ms (p50 / p95); ratios of the medians.",
        "",
        "| shape | pql | DuckDB | pql on Spark | pql / DuckDB | Spark / DuckDB | Spark / pql |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for shape, row in report["table"].items():
        cells = [
            f"{_ms(row[f'{n}_p50_ms'])} / {_ms(row[f'{n}_p95_ms'])}"
            for n in ("pql", "duckdb", "spark")
        ]
        mark = "" if row["same_rows"] else " (rows differ!)"
        lines.append(
            f"| {shape}{mark} | {' | '.join(cells)} | {row['pql_vs_duckdb']} | "
            f"{row['spark_vs_duckdb']} | {row['spark_vs_pql']} |"
        )
    lines += [
        "",
        "Where Spark's time goes (medians over the measured runs, ms; the parts are medians of "
        "each part, so they need not add up to the median total exactly):",
        "",
        "| shape | total | pql: plan + compile (lists files) | before 1st stage | scan stages "
        "| shuffle/aggregate stages | between stages | after last stage (collect) | "
        "jobs / stages / tasks | files |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for shape, side in spark["shapes"].items():
        med = side["median"]
        run = side["per_run"][-1]
        lines.append(
            f"| {shape} | {_ms(side['latency_ms']['p50'])} | "
            + " | ".join(_ms(med[k]) for k in SPARK_PARTS)
            + f" | {run['jobs']} / {run['stages']} / {run['tasks']} | {run['files']} |"
        )
    lines += [
        "",
        "How the breakdown is measured: pql's part is the query's wall time minus its execute "
        "phase (`timings_ms`); the execute phase is split with the stage submission and "
        "completion times from Spark's status store (REST API, read after the run). A scan "
        "stage reads Parquet and, pipelined with it, filters, partially aggregates and writes "
        "shuffle files; a shuffle/aggregate stage reads shuffle output. Driver time before "
        "the first stage is Catalyst planning and job submission; after the last stage, "
        "the Arrow result reaching Python. Spark's timestamps have millisecond resolution.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Build or read the cached data, run the three sides, write the JSON and Markdown."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--receipts", type=int, default=1_000_000)
    ap.add_argument("--tenants", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--runs", type=int, default=5, help="measured runs per query")
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured runs per query first")
    ap.add_argument("--per-shape", type=int, default=1, help="distinct queries per shape")
    ap.add_argument("--master", default="local[2]", help="Spark master (local mode here)")
    ap.add_argument("--shuffle-partitions", type=int, default=4)
    ap.add_argument("--driver-memory", default="4g")
    ap.add_argument("--cache-dir", type=Path, default=CACHE, help="where generated data is kept")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    started = os.getloadavg()
    data = cached_data(args.receipts, tenants=args.tenants, seed=args.seed, cache=args.cache_dir)
    tenants = data.receipts["tenant"].value_counts(sort=True)["tenant"].to_list()
    queries = chosen_queries(tenants, seed=args.seed, per_shape=args.per_shape)
    print(
        f"data: {data.receipts.height:,} receipts, {data.decisions.height:,} decisions, "
        + (
            f"built in {data.build_s:.0f}s"
            if data.build_s is not None
            else f"from {args.cache_dir}"
        )
    )
    sides = {
        "pql": run_pql(data, queries, warmup=args.warmup, runs=args.runs),
        "duckdb": run_duckdb(data, queries, warmup=args.warmup, runs=args.runs),
        "spark": run_spark(
            data,
            queries,
            warmup=args.warmup,
            runs=args.runs,
            master=args.master,
            shuffle_partitions=args.shuffle_partitions,
            driver_memory=args.driver_memory,
        ),
    }
    report: dict[str, Any] = {
        "config": {
            "receipts": data.receipts.height,
            "decisions": data.decisions.height,
            "tenants": args.tenants,
            "seed": args.seed,
            "runs": args.runs,
            "warmup": args.warmup,
            "per_shape": args.per_shape,
            "now": data.now.isoformat(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "polars": pl.__version__,
            "queries": {
                shape: [{"tenant": r.tenant, "text": r.text} for r in reqs]
                for shape, reqs in queries.items()
            },
        },
        "loadavg_start": [round(x, 2) for x in started],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "sides": sides,
    }
    report["table"] = table(report)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = args.out / f"spark-compare-{args.receipts // 1000}k-{stamp}"
    base.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    base.with_suffix(".md").write_text(text)
    print(text)
    print(f"-> {base}.json, {base}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
