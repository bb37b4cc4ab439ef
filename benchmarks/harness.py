"""An open-loop load harness for pql: constant arrival rate, latency from the scheduled send time.

Like wrk2 or k6's ``constant-arrival-rate``, requests are *scheduled* at a fixed rate (``--qps``)
whatever the engine does, and each request's latency is measured from its scheduled send time,
so time spent queueing behind slow requests shows up in the percentiles (no coordinated
omission). A pool of ``--workers`` threads runs the requests against one in-memory engine.

The workload looks like production use:

* **dashboards**: a fixed set of shapes (``DASHBOARDS``) that each tenant's dashboard repeats,
  run with the wall clock (the engine floors it to its cache granularity, so the clock advances
  every 10 s and cached windows roll over);
* **ad-hoc** analyst queries (``ADHOC``) with random predicates and windows, mostly distinct;
* tenants drawn with a Zipf skew (``--zipf``), over demo data whose tenant sizes are skewed too.

Then, single-client, the workload's distinct queries run with the cache off through pql, DuckDB
(native tables sorted by tenant and ts; SQL from ``tests/sqlref.py``) and hand-written Polars,
and the per-shape ratio pql/DuckDB is printed.

Results go to ``benchmarks/results/harness-<mode>-<stamp>.json`` and a PNG beside it (latency
over time and its histogram). Run from the repository root::

    python -m benchmarks.harness --receipts 1000000 --qps 100 --duration 60 --cache on
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import pql
from benchmarks.data import CACHE, Clock, Data, cached_data, duckdb_answer, duckdb_tables
from benchmarks.examples import PARAMS, examples
from benchmarks.timing import median_ms
from pql.demo import DemoData, generate
from pql.storage import IndexedLake, MemoryStore

RESULTS = Path(__file__).parent / "results"

DASHBOARDS: dict[str, str] = {
    "dash_status_1d": "FIND COUNT(*) GROUP BY receipts.region, receipts.status SINCE 1d",
    "dash_latency_7d": "FIND AVG(receipts.latency_ms), MAX(receipts.latency_ms) "
    "GROUP BY receipts.workflow SINCE 7d",
    "dash_cost_30d": "FIND COUNT(*), SUM(receipts.cost_usd) GROUP BY receipts.region SINCE 30d",
    "dash_errors_1d": 'FIND receipts WHERE receipts.status = "error" SINCE 1d LIMIT 50',
    "dash_denies_7d": 'FIND COUNT(decisions.decisionId) WHERE decisions.effect = "deny" '
    "GROUP BY decisions.rule SINCE 7d",
    "dash_deny_join_7d": "FIND COUNT(decisions.decisionId) JOIN receipts ON "
    'decisions.executionId = receipts.executionId WHERE decisions.effect = "deny" '
    'AND NOT (receipts.status = "ok") GROUP BY decisions.rule SINCE 7d',
}
"""Dashboard panels: every tenant's dashboard asks these again and again."""

WORKFLOWS = ("etl", "billing", "ingest", "report", "sync")
STATUSES = ("ok", "error", "rollback")


def _adhoc_slow(rng: random.Random) -> str:
    return (
        f"FIND receipts WHERE latency_ms > {rng.choice([250, 500, 1000, 2000])} AND "
        f'workflow = "{rng.choice(WORKFLOWS)}" SINCE {rng.choice([1, 3, 7, 14])}d LIMIT 100'
    )


def _adhoc_group(rng: random.Random) -> str:
    return (
        f'FIND COUNT(*), AVG(receipts.cost_usd) WHERE receipts.status = "{rng.choice(STATUSES)}" '
        f"GROUP BY receipts.workflow SINCE {rng.choice([7, 30, 90])}d"
    )


def _adhoc_wide(rng: random.Random) -> str:
    return f"FIND COUNT(*), AVG(receipts.latency_ms) GROUP BY receipts.region SINCE {rng.randint(60, 180)}d"


ADHOC: dict[str, Callable[[random.Random], str]] = {
    "adhoc_slow": _adhoc_slow,
    "adhoc_group": _adhoc_group,
    "adhoc_wide": _adhoc_wide,
}
"""Analyst queries: random predicates and windows, so mostly cache misses."""


@dataclass(frozen=True, slots=True)
class Request:
    """One scheduled query."""

    at: float  # seconds after the start, when it is due
    tenant: str
    shape: str
    text: str
    params: dict[str, Any] | None = None


@dataclass(slots=True)
class Sample:
    """What happened to one request (times in ms; ``latency`` counts from the scheduled time)."""

    at: float
    shape: str
    tenant: str
    latency_ms: float
    service_ms: float
    outcome: str  # ok | cache_hit | refused | invalid | error
    path: str | None = None  # what answered: index | partitions | memory (None: no answer)


def workload(
    tenants: list[str],
    *,
    qps: float,
    duration: float,
    adhoc_share: float,
    zipf: float,
    seed: int,
    mix: str = "dashboard",
) -> list[Request]:
    """The request schedule: constant arrival rate, Zipf-skewed tenants.

    ``mix="dashboard"``: the dashboard shapes, and ad-hoc queries with ``adhoc_share``;
    ``mix="examples"``: every contract and LANGUAGE.md example (:mod:`benchmarks.examples`),
    drawn uniformly, each with the docs' parameters.
    """
    rng = random.Random(seed)
    weights = [1 / (rank + 1) ** zipf for rank in range(len(tenants))]
    every = examples() if mix == "examples" else {}
    names = sorted(every)
    out: list[Request] = []
    for i in range(int(qps * duration)):
        tenant = rng.choices(tenants, weights)[0]
        if mix == "examples":
            shape = rng.choice(names)
            out.append(Request(i / qps, tenant, shape, every[shape], PARAMS))
            continue
        if rng.random() < adhoc_share:
            shape = rng.choice(sorted(ADHOC))
            text = ADHOC[shape](rng)
        else:
            shape = rng.choice(sorted(DASHBOARDS))
            text = DASHBOARDS[shape]
        out.append(Request(i / qps, tenant, shape, text))
    return out


def largest_share(requests: list[Request], largest: str) -> float:
    """The share of ``requests`` that go to tenant ``largest``."""
    return round(sum(r.tenant == largest for r in requests) / max(len(requests), 1), 3)


def drive(
    engine: pql.Engine,
    requests: list[Request],
    *,
    workers: int,
    cache: bool,
    clock: Clock | None = None,
) -> list[Sample]:
    """Send ``requests`` open-loop on a pool of ``workers`` threads; one sample per request.
    With a ``clock`` (cached data), each query's ``now`` is read from it."""
    samples: list[Sample] = []
    lock = threading.Lock()
    start = time.perf_counter()

    def one(req: Request) -> None:
        begun = time.perf_counter()
        outcome = "ok"
        path = None
        try:
            now = _clock_now(engine, clock, cache=cache)
            result = engine.query(
                req.text, tenant=req.tenant, params=req.params, cache=cache, now=now
            )
            path = result.stats.get("path")
            if result.stats["cache"]["hit"]:
                outcome = "cache_hit"
        except (pql.SafetyError, pql.AuthError):
            outcome = "refused"
        except (pql.QueryError, pql.InputError):
            outcome = "invalid"
        except Exception:  # counted, never fatal to the run
            outcome = "error"
        done = time.perf_counter()
        sample = Sample(
            req.at,
            req.shape,
            req.tenant,
            (done - start - req.at) * 1000,
            (done - begun) * 1000,
            outcome,
            path,
        )
        with lock:
            samples.append(sample)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for req in requests:
            delay = start + req.at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, req)
    return samples


def _clock_now(engine: pql.Engine, clock: Clock | None, *, cache: bool) -> datetime | None:
    """The ``now`` to pass for ``clock`` (``None``: the engine's own): floored to the cache
    granularity, as the engine floors its wall clock for a query that may use the cache."""
    if clock is None:
        return None
    if cache and engine.cache is not None and engine.cache_granularity > timedelta(0):
        return pql.cache.floor_clock(clock.now(), engine.cache_granularity)
    return clock.now()


def _pct(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    arr = np.asarray(values)
    return {
        "n": len(values),
        "p50": round(float(np.percentile(arr, 50)), 3),
        "p95": round(float(np.percentile(arr, 95)), 3),
        "p99": round(float(np.percentile(arr, 99)), 3),
        "max": round(float(arr.max()), 3),
    }


@contextmanager
def full_collections() -> Iterator[list[dict[str, float]]]:
    """The full (generation 2) garbage collections inside the block, each as its start (s from
    the block's start) and its length (ms): a pause of every Python thread, queries included."""
    pauses: list[dict[str, float]] = []
    started = time.perf_counter()
    began: list[float] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        now = time.perf_counter()
        if phase == "start":
            began.append(now)
        elif began:
            at = began.pop()
            pauses.append({"at_s": round(at - started, 3), "ms": round((now - at) * 1000, 1)})

    gc.callbacks.append(seen)
    try:
        yield pauses
    finally:
        gc.callbacks.remove(seen)


def summarize(samples: list[Sample], *, wall_s: float, config: dict[str, Any]) -> dict[str, Any]:
    """Percentiles overall and per shape, achieved rate, hit rate, refusals and errors."""
    outcomes = {
        o: sum(s.outcome == o for s in samples)
        for o in ("ok", "cache_hit", "refused", "invalid", "error")
    }
    answered = outcomes["ok"] + outcomes["cache_hit"]
    shapes = {}
    for shape in sorted({s.shape for s in samples}):
        mine = [s for s in samples if s.shape == shape]
        shapes[shape] = {
            "latency_ms": _pct([s.latency_ms for s in mine]),
            "service_ms": _pct([s.service_ms for s in mine]),
            "hit_rate": round(sum(s.outcome == "cache_hit" for s in mine) / len(mine), 4),
            "refused": sum(s.outcome == "refused" for s in mine),
            "errors": sum(s.outcome in ("error", "invalid") for s in mine),
        }
    return {
        "config": config,
        "requests": len(samples),
        "achieved_qps": round(len(samples) / wall_s, 2),
        "wall_s": round(wall_s, 3),
        "latency_ms": _pct([s.latency_ms for s in samples]),
        "service_ms": _pct([s.service_ms for s in samples]),
        "hit_rate": round(outcomes["cache_hit"] / answered, 4) if answered else 0.0,
        "outcomes": outcomes,
        "paths": {str(p): sum(s.path == p for s in samples) for p in {s.path for s in samples}},
        "shapes": shapes,
    }


def cold_start(samples: list[Sample], *, first_s: float = 10.0) -> dict[str, Any]:
    """For a run that starts cold: when each tenant got its first answer (seconds from the run's
    start, and that request's latency), and the latency and paths over the first ``first_s``."""
    first: dict[str, dict[str, float]] = {}
    for s in sorted(samples, key=lambda s: s.at + s.latency_ms / 1000):
        if s.tenant not in first and s.outcome in ("ok", "cache_hit"):
            done = s.at + s.latency_ms / 1000
            first[s.tenant] = {
                "answered_at_s": round(done, 3),
                "latency_ms": round(s.latency_ms, 3),
            }
    early = [s for s in samples if s.at < first_s]
    paths: dict[str, int] = {}
    for s in early:
        paths[str(s.path)] = paths.get(str(s.path), 0) + 1
    return {
        "first_answer_per_tenant": first,
        f"latency_ms_first_{first_s:g}s": _pct([s.latency_ms for s in early]),
        f"paths_first_{first_s:g}s": paths,
    }


def plot(
    samples: list[Sample], path: Path, title: str, pauses: list[dict[str, float]] | None = None
) -> None:
    """Latency over time (by outcome, with the full garbage collections' ``pauses`` as grey
    lines) and its histogram, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    for outcome, color in (
        ("ok", "tab:blue"),
        ("cache_hit", "tab:green"),
        ("refused", "tab:orange"),
        ("error", "tab:red"),
    ):
        mine = [s for s in samples if s.outcome == outcome]
        if mine:
            left.scatter(
                [s.at for s in mine], [s.latency_ms for s in mine], s=3, c=color, label=outcome
            )
    left.set(
        xlabel="scheduled send time (s)",
        ylabel="latency from schedule (ms)",
        yscale="log",
        title=title,
    )
    for n, pause in enumerate(pauses or []):
        left.axvline(
            pause["at_s"],
            color="0.6",
            linewidth=1,
            zorder=0,
            label=None if n else "full garbage collection",
        )
    left.legend(markerscale=4)
    values = np.asarray([s.latency_ms for s in samples])
    bins = np.logspace(np.log10(max(values.min(), 0.05)), np.log10(values.max() + 1), 60)
    right.hist(values, bins=bins, color="tab:blue")
    right.set(xscale="log", xlabel="latency (ms)", ylabel="requests", title="histogram")
    for q, style in ((50, "-"), (99, "--")):
        right.axvline(float(np.percentile(values, q)), color="k", linestyle=style, label=f"p{q}")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- single-client comparison ----------------------------------------------------------------


def _polars_answer(
    frames: dict[str, pl.DataFrame], shape: str, tenant: str, now: datetime, text: str
) -> pl.DataFrame | None:
    """Hand-written Polars for the dashboard shapes (``None``: no hand-written version)."""
    days = (
        {"1d": 1, "7d": 7, "30d": 30}[shape.rsplit("_", 1)[1]] if shape.startswith("dash_") else 0
    )
    if not days:
        return None
    start = now - timedelta(days=days)

    def scan(subject: str) -> pl.LazyFrame:
        return (
            frames[subject]
            .lazy()
            .filter(pl.col("tenant") == tenant, pl.col("ts").is_between(start, now))
        )

    r = d = pl.col
    if shape == "dash_status_1d":
        q = scan("receipts").group_by("region", "status").agg(pl.len()).sort("region", "status")
    elif shape == "dash_latency_7d":
        q = (
            scan("receipts")
            .group_by("workflow")
            .agg(r("latency_ms").mean().alias("avg"), r("latency_ms").max().alias("max"))
            .sort("workflow")
        )
    elif shape == "dash_cost_30d":
        q = scan("receipts").group_by("region").agg(pl.len(), r("cost_usd").sum()).sort("region")
    elif shape == "dash_errors_1d":
        q = scan("receipts").filter(r("status") == "error").sort("ts", "executionId").head(50)
    elif shape == "dash_denies_7d":
        q = (
            scan("decisions")
            .filter(d("effect") == "deny")
            .group_by("rule")
            .agg(d("decisionId").count())
            .sort("rule")
        )
    else:
        rec = scan("receipts").filter(r("status") != "ok").select("executionId")
        q = (
            scan("decisions")
            .filter(d("effect") == "deny")
            .join(rec, on="executionId", how="inner")
            .group_by("rule")
            .agg(d("decisionId").count())
            .sort("rule")
        )
    return q.collect()


def compare(
    engine: pql.Engine,
    data: DemoData | Data,
    requests: list[Request],
    *,
    repeat: int,
    per_shape: int,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """Distinct workload queries single-client (cache off): pql vs DuckDB vs hand-written Polars."""

    from tests.sqlref import translate_prepared

    frames = {
        "receipts": data.receipts.sort("tenant", "ts"),
        "decisions": data.decisions.sort("tenant", "ts"),
    }
    con = duckdb_tables(frames)
    wall = clock.now() if clock is not None else datetime.now(UTC)
    now = pql.cache.floor_clock(wall, engine.cache_granularity)
    chosen: dict[str, list[Request]] = {}
    seen: set[tuple[str, str]] = set()
    for req in requests:
        if (req.tenant, req.text) in seen or len(chosen.get(req.shape, [])) >= per_shape:
            continue
        seen.add((req.tenant, req.text))
        chosen.setdefault(req.shape, []).append(req)
    out: dict[str, Any] = {}
    for shape, reqs in sorted(chosen.items()):
        pql_ms, duck_ms, polars_ms = [], [], []
        for req in reqs:
            prepared = engine.prepare(req.text, tenant=req.tenant, now=now, params=req.params)
            sql = translate_prepared(prepared, req.tenant, now=now)
            pql_ms.append(
                median_ms(
                    partial(
                        engine.query,
                        req.text,
                        tenant=req.tenant,
                        now=now,
                        params=req.params,
                        cache=False,
                    ),
                    repeat,
                )
            )
            duck_ms.append(median_ms(partial(duckdb_answer, con, sql), repeat))
            if _polars_answer(frames, shape, req.tenant, now, req.text) is not None:
                polars_ms.append(
                    median_ms(
                        partial(_polars_answer, frames, req.shape, req.tenant, now, req.text),
                        repeat,
                    )
                )
        pql_median = round(statistics.median(pql_ms), 3)
        duck_median = round(statistics.median(duck_ms), 3)
        row: dict[str, float | None] = {
            "queries": len(reqs),
            "pql_ms": pql_median,
            "duckdb_ms": duck_median,
            "polars_ms": round(statistics.median(polars_ms), 3) if polars_ms else None,
        }
        row["ratio_pql_duckdb"] = round(pql_median / duck_median, 2) if duck_median else None
        out[shape] = row
    return out


def _max_rss_bytes() -> int:
    """The process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def open_lake(data: Path, granularity: timedelta, budget: str | None) -> pql.Engine:
    """The engine a service gets from the README on ``data``: ``Engine(DIR)``, nothing loaded."""
    return pql.Engine(data, cache_granularity=granularity, memory_budget=budget)


def main(argv: list[str] | None = None) -> int:
    """Build the data, drive the load, write the JSON summary and PNG, run the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--receipts", type=int, default=1_000_000)
    ap.add_argument("--tenants", type=int, default=8)
    ap.add_argument("--qps", type=float, default=100.0)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of load per mode")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--cache", choices=["on", "off", "both"], default="both")
    ap.add_argument("--adhoc-share", type=float, default=0.2)
    ap.add_argument(
        "--mix",
        choices=["dashboard", "examples"],
        default="dashboard",
        help="dashboard: the dashboards and --adhoc-share ad hoc; examples: every contract and "
        "LANGUAGE.md example, drawn uniformly",
    )
    ap.add_argument(
        "--zipf",
        type=float,
        help="tenant skew (default 1.1; 1.5 for --mix examples, about half the traffic on the "
        "largest of 8 tenants)",
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--compare", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--compare-repeat", type=int, default=5)
    ap.add_argument("--compare-per-shape", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--store",
        choices=["lake", "memory"],
        default="lake",
        help="lake: the default Engine(DIR) over a lake directory; memory: Engine.in_memory()",
    )
    ap.add_argument("--data", type=Path, help="the lake directory (default: a temporary one)")
    ap.add_argument(
        "--cached",
        action="store_true",
        help=f"build the data once into {CACHE.name}/ beside this script and reuse it (a lake "
        "store only); queries then run on a clock that starts at the data's own instant",
    )
    ap.add_argument("--memory-budget", help="Engine(memory_budget=...), e.g. 4GiB")
    ap.add_argument(
        "--gc-freeze",
        action="store_true",
        help="call gc.freeze() before each measured run (objects made until then are never "
        "walked by a full garbage collection again)",
    )
    ap.add_argument(
        "--start",
        choices=["cold", "restart", "warm", "both"],
        default="both",
        help="cold: a run on the engine as opened on fresh data (cache off); restart: an "
        "engine preloads every tenant and writes its index snapshots, is dropped, and a fresh "
        "Engine(DIR) on the same directory is run like cold (lake store only); warm: after "
        "preloading; both: cold, then restart (lake store), then warm",
    )
    args = ap.parse_args(argv)
    if args.zipf is None:
        args.zipf = 1.5 if args.mix == "examples" else 1.1

    t = time.perf_counter()
    clock: Clock | None = None
    data: DemoData | Data
    if args.cached:
        if args.store != "lake" or args.data is not None:
            ap.error("--cached reads its own lake: not with --store memory or --data")
        data = cached_data(args.receipts, tenants=args.tenants, seed=args.seed)
        args.data = data.lake
        clock = Clock(data.now)
        # An earlier run left index snapshots in the cached lake: the cold start is a first open
        # (deleting them is always safe, docs/pql/MEMORY.md); --start restart writes them again.
        for folder in data.lake.rglob("_snapshot"):
            shutil.rmtree(folder)
    else:
        data = generate(args.receipts, seed=args.seed, tenants=args.tenants)
    # Dashboards accept a 10 s stale window in exchange for shared cache entries (an opt-in).
    granularity = timedelta(seconds=10)
    scratch = None
    if args.store == "memory":
        engine = pql.Engine.in_memory(cache_granularity=granularity)
        engine.ingest("receipts", data.receipts)
        engine.ingest("decisions", data.decisions)
    else:
        if args.data is None:
            scratch = tempfile.TemporaryDirectory(prefix="pql-harness-")
            args.data = Path(scratch.name) / "lake"
        if isinstance(data, DemoData):
            writer = pql.Engine(args.data, index=False)
            writer.ingest("receipts", data.receipts)
            writer.ingest("decisions", data.decisions)
        # The engine a service gets from the README: Engine(DIR), opened cold.
        engine = open_lake(args.data, granularity, args.memory_budget)
    setup_s = time.perf_counter() - t
    # A cached lake's rows are read from its Parquet files only to compare (so that the
    # process's peak RSS is the engine's, not a copy of the rows beside it).
    if isinstance(data, Data):
        column = data.tenant_column()
        receipts_n, decisions_n = data.rows()
    else:
        column = data.receipts.get_column("tenant")
        receipts_n, decisions_n = data.receipts.height, data.decisions.height
    tenants = column.value_counts(sort=True)["tenant"].to_list()
    del column
    print(
        f"data: {receipts_n:,} receipts, {decisions_n:,} decisions, "
        f"{len(tenants)} tenants, {args.store} store, set up in {setup_s:.1f}s"
    )
    requests = workload(
        tenants,
        qps=args.qps,
        duration=args.duration,
        adhoc_share=args.adhoc_share,
        zipf=args.zipf,
        seed=args.seed,
        mix=args.mix,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    runs: list[tuple[str, str]] = []  # (start, cache mode)
    if args.start in ("cold", "both"):
        runs.append(("cold", "off"))  # nothing loaded, nothing cached: the engine as opened
    if args.start == "restart" or (args.start == "both" and args.store == "lake"):
        if args.store != "lake":
            ap.error("--start restart needs --store lake (snapshots are kept in the lake)")
        runs.append(("restart", "off"))  # a fresh engine on data whose snapshots are written
    if args.start in ("warm", "both"):
        runs += [
            ("warm", mode) for mode in (["on", "off"] if args.cache == "both" else [args.cache])
        ]
    for start, mode in runs:
        if start == "restart":
            t = time.perf_counter()
            engine.preload("all")
            if isinstance(engine.store, IndexedLake):
                engine.store.wait_snapshots()
            written = time.perf_counter() - t
            del engine
            gc.collect()
            engine = open_lake(args.data, granularity, args.memory_budget)
            print(f"restart: indexes loaded and snapshots written in {written:.1f}s; reopened")
        if start == "warm":
            t = time.perf_counter()
            engine.preload("all")
            engine.wait_ready()
            if isinstance(engine.store, IndexedLake):
                # Steady state: the snapshots of the loads just done are written in the
                # background after them (seconds of disk writes); a cold run measures those.
                engine.store.wait_snapshots()
            if args.warmup:
                # Polars' first runs and per-tenant statistics are not steady state: run every
                # dashboard shape once per tenant, uncached, before measuring.
                for tenant in tenants:
                    warm = DASHBOARDS if args.mix == "dashboard" else examples()
                    for text in warm.values():
                        engine.query(
                            text,
                            tenant=tenant,
                            params=PARAMS,
                            cache=False,
                            record=False,
                            now=clock.now() if clock is not None else None,
                        )
            print(f"warm-up: {time.perf_counter() - t:.1f}s")
        if engine.cache is not None:
            engine.cache.clear()
        if args.gc_freeze:  # what a service may do once warm: no full pass over these again
            gc.collect()
            gc.freeze()
        t = time.perf_counter()
        with full_collections() as pauses:
            samples = drive(engine, requests, workers=args.workers, cache=mode == "on", clock=clock)
        wall = time.perf_counter() - t
        if args.gc_freeze:
            gc.unfreeze()
        store = engine.store
        config = {
            "receipts": receipts_n,
            "decisions": decisions_n,
            "tenants": len(tenants),
            "store": args.store,
            "engine": "Engine(DIR)" if args.store == "lake" else "Engine.in_memory()",
            "start": start,
            "qps": args.qps,
            "duration_s": args.duration,
            "workers": args.workers,
            "cache": mode,
            "mix": args.mix,
            "adhoc_share": args.adhoc_share if args.mix == "dashboard" else None,
            "zipf": args.zipf,
            "largest_tenant_share": largest_share(requests, tenants[0]),
            "seed": args.seed,
            "warmup": args.warmup and start == "warm",
            "granularity_s": engine.cache_granularity.total_seconds(),
            "setup_s": round(setup_s, 1),
            "data": "cached" if clock is not None else "generated",
            "cpus": os.cpu_count(),
            # The engine's own resident data (rows, ts index, rollups); the process RSS also
            # holds the mapped snapshots' pages and, for generated (not cached) data, the
            # source frames (cached data is read for the comparison, after the runs).
            "engine_resident_bytes": (
                store.memory_bytes() if isinstance(store, MemoryStore | IndexedLake) else None
            ),
            "memory_budget_bytes": (
                store.memory_budget if isinstance(store, IndexedLake) else None
            ),
            "process_max_rss_bytes": _max_rss_bytes(),
            "gc_freeze": args.gc_freeze,
        }
        summary = summarize(samples, wall_s=wall, config=config)
        summary["gc_full_collections"] = pauses
        if start in ("cold", "restart"):
            summary["cold_start"] = cold_start(samples)
            if isinstance(store, IndexedLake):
                summary["cold_start"]["index_loads"] = {
                    tenant: {"source": i.source, "seconds": round(i.seconds, 4), "rows": i.rows}
                    for tenant, i in store.loads().items()
                }
        mix = "" if args.mix == "dashboard" else f"-{args.mix}"
        name = f"harness-{args.receipts // 1000}k-{args.store}{mix}-{start}-cache-{mode}-{stamp}"
        base = args.out / name
        summary["png"] = str(base.with_suffix(".png").name)
        plot(
            samples,
            base.with_suffix(".png"),
            f"{args.receipts:,} receipts, {args.qps:g} QPS, {args.mix} mix, {start} start, "
            f"cache {mode}",
            pauses,
        )
        base.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
        lat = summary["latency_ms"]
        print(
            f"{start} start, cache {mode}: {summary['requests']} requests, "
            f"{summary['achieved_qps']} QPS achieved, p50 {lat['p50']} p95 {lat['p95']} "
            f"p99 {lat['p99']} max {lat['max']} ms, hit rate {summary['hit_rate']}, "
            f"outcomes {summary['outcomes']}, paths {summary['paths']} -> {base}.json"
        )
        print(f"  full garbage collections: {pauses}")
        if start in ("cold", "restart"):
            cold = summary["cold_start"]
            print(f"  first 10 s: {cold['latency_ms_first_10s']}, paths {cold['paths_first_10s']}")
            print(f"  first answer per tenant: {cold['first_answer_per_tenant']}")
    if args.compare:
        result = compare(
            engine,
            data,
            requests,
            repeat=args.compare_repeat,
            per_shape=args.compare_per_shape,
            clock=clock,
        )
        mix = "" if args.mix == "dashboard" else f"-{args.mix}"
        path = args.out / f"harness-{args.receipts // 1000}k{mix}-compare-{stamp}.json"
        path.write_text(json.dumps({"receipts": receipts_n, "shapes": result}, indent=2) + "\n")
        print(f"{'shape':20} {'pql ms':>9} {'duckdb ms':>10} {'polars ms':>10} {'pql/duckdb':>10}")
        for shape, row in result.items():
            print(
                f"{shape:20} {row['pql_ms']:>9} {row['duckdb_ms']:>10} {row['polars_ms']!s:>10} {row['ratio_pql_duckdb']!s:>10}"
            )
        print(f"-> {path}")
    if scratch is not None:
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
