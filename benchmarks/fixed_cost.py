"""Fixed cost per query: where the time goes outside execution, per example, vs DuckDB.

Every example of the contract (:data:`pql.examples.CONTRACT_EXAMPLES`) and every runnable
``pql`` example of ``docs/pql/LANGUAGE.md`` is asked, single-client and with the result cache
off, of the default ``Engine(DIR)`` (indexes loaded first) for the largest and the smallest
tenant. For each (example, tenant) the script reports the medians of:

* each stage outside execution (``parse``, ``analyze``, ``plan``, ``safety``, ``optimize``,
  ``compile``; a reused prepared plan reports ``prepare`` instead) and their sum, ``outside``;
* ``read``, the data compiling reads (the store's reads of the window, its rollup or lookup,
  and the first rows' probes), which is data access, not planning: ``outside_with_reads`` is
  ``outside`` plus ``read``, the time before ``execute`` as a whole;
* ``execute`` and the whole call (``total``, as the caller sees it);
* ``outside_call``: ``total`` less ``execute`` and ``read``, everything the call spent neither
  running nor reading data, including what no stage times (the tenant's limits, the adapters'
  read checks, admission, building the result, metrics);
* DuckDB on native tables sorted by tenant and ts (SQL from ``tests/sqlref.py``), and the ratio
  pql/DuckDB of the medians.

By default every query gives the same fixed ``now``, so after the first it is a hit of the plan
memo. ``--wall`` asks as a service does, on the wall clock (no ``now``): the generated data then
ends at the present, and a query reuses the plan of the same query asked within the engine's
``plan_reuse``, moved to its own window (``pql/plan/memo.py``), and the Polars query compiled
for it when it reads the same rows (``pql/execute/reuse.py``; ``--no-compiled-reuse`` compiles
every query afresh). Each pair is asked ``--repeat`` times back to back; ``--interleave`` asks
every pair once per round instead, so the same query comes back only a round later. DuckDB is
then asked in the same rounds, each pair after pql has asked every pair of the round, so each
engine's query follows its own work as in a service that runs one of them: a DuckDB query just
before a pql query leaves the CPU caches cold for the Python that plans it, which is DuckDB's
cost, not pql's (``benchmarks/README.md`` gives both orders). ``--duckdb-between`` keeps the
former order (DuckDB's ask of a pair right after pql's). ``duckdb`` and ``ratio`` come from
the asks in the rounds, and ``duckdb_back_to_back`` and ``ratio_back_to_back`` keep DuckDB
asked ``--repeat`` times in a row after the rounds, the order most favourable to it.

On the wall clock a pair's window may cross a stored row between two asks, and its query is
then compiled afresh: the summary counts the pairs whose asks mostly compiled afresh
(``pairs_mostly_compiled_afresh``; their medians are a fresh compile's) and gives the median
``outside`` of the others (``median_outside_mostly_reused_ms``).

Results go to ``benchmarks/results/fixed-cost-<N>k-<stamp>.json`` (``-wall`` before the stamp
with ``--wall``). Run from the repository root::

    python -m benchmarks.fixed_cost --receipts 1000000
    python -m benchmarks.fixed_cost --receipts 1000000 --wall
    python -m benchmarks.fixed_cost --data LAKE_DIR      # an existing lake (its newest day is now)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

import pql
from benchmarks.data import duckdb_answer, duckdb_tables
from benchmarks.examples import PARAMS, examples
from pql.execute.reuse import CompiledQueries
from pql.storage import IndexedLake

RESULTS = Path(__file__).parent / "results"
OUTSIDE = ("parse", "analyze", "plan", "safety", "optimize", "prepare", "compile")
"""The stages outside execution, as ``result.stats["timings_ms"]`` names them."""


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 4) if values else 0.0


def ask(engine: pql.Engine, text: str, tenant: str, now: datetime | None) -> dict[str, float]:
    """One query's stages outside execution (their sum ``outside``), ``read``, ``execute``,
    ``total`` as the caller sees it, and whether the compiled query was reused (1 or 0)."""
    t = time.perf_counter()
    result = engine.query(text, tenant=tenant, now=now, params=PARAMS, cache=False, record=False)
    total = (time.perf_counter() - t) * 1000
    timings = result.stats["timings_ms"]
    sample = {stage: timings[stage] for stage in OUTSIDE if stage in timings}
    sample["outside"] = sum(sample.values())
    sample["read"] = timings.get("read", 0.0)
    sample["outside_with_reads"] = sample["outside"] + sample["read"]
    sample["execute"] = timings.get("execute", 0.0)
    sample["total"] = total
    sample["outside_call"] = total - sample["execute"] - sample["read"]
    sample["compiled_reused"] = float(bool(result.stats.get("compiled_reused")))
    return sample


def first(engine: pql.Engine, text: str, tenant: str, now: datetime | None) -> str | None:
    """Ask ``text`` once (a warm-up, not measured): the error code if it fails."""
    try:
        engine.query(text, tenant=tenant, now=now, params=PARAMS, cache=False, record=False)
    except pql.PQLError as exc:
        return exc.code
    return None


def sql_for(engine: pql.Engine, text: str, tenant: str, now: datetime | None) -> Callable[[], str]:
    """``text`` as DuckDB SQL (``tests/sqlref.py``) for ``tenant``: a function giving the SQL
    of the window ending at ``now``, or (``None``) at the wall clock when it is called. The
    query is prepared once, here, so that translating it again later does not touch the plans
    the engine keeps (which would help pql's next ask)."""
    from tests.sqlref import translate_prepared

    prepared = engine.prepare(text, tenant=tenant, now=now, params=PARAMS)

    def sql() -> str:
        return translate_prepared(
            prepared, tenant, now=prepared.now if now is not None else datetime.now(UTC)
        )

    return sql


def duck_ms(con: Any, sql: str) -> float:
    """Milliseconds DuckDB takes to answer ``sql`` as an Arrow table."""
    t = time.perf_counter()
    duckdb_answer(con, sql)
    return (time.perf_counter() - t) * 1000


def _ratio(mine: float, theirs: float) -> float | None:
    return round(mine / theirs, 3) if theirs else None


def summarize(
    engine: pql.Engine,
    con: Any,
    text: str,
    tenant: str,
    now: datetime | None,
    sql_of: Callable[[], str],
    samples: list[dict[str, float]],
    repeat: int,
    duck_in_rounds: list[float] | None = None,
) -> dict[str, Any]:
    """Medians of ``samples`` (pql) and of DuckDB: asked in the same rounds as pql
    (``duck_in_rounds``, with ``--interleave``) and ``repeat`` times in a row the last window
    (``sql_of``, from ``sql_for``)."""
    sql = sql_of()
    duckdb_answer(con, sql)
    duck = [duck_ms(con, sql) for _ in range(repeat)]
    names = {name for sample in samples for name in sample} - {"compiled_reused"}
    row: dict[str, Any] = {
        name: _median([sample[name] for sample in samples if name in sample])
        for name in sorted(names)
    }
    row["compiled_reused"] = round(sum(x["compiled_reused"] for x in samples) / len(samples), 3)
    if duck_in_rounds is None:
        row["duckdb"] = _median(duck)
    else:
        row["duckdb"] = _median(duck_in_rounds)
        row["duckdb_back_to_back"] = _median(duck)
        row["ratio_back_to_back"] = _ratio(row["total"], row["duckdb_back_to_back"])
    row["ratio"] = _ratio(row["total"], row["duckdb"])
    row["path"] = engine.query(
        text, tenant=tenant, now=now, params=PARAMS, cache=False, record=False
    ).stats.get("path")
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--receipts", type=int, default=1_000_000)
    ap.add_argument("--tenants", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data", type=Path, help="an existing lake (default: generate one)")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--wall",
        action="store_true",
        help="ask on the wall clock, as a service does (generated data only: it ends now)",
    )
    ap.add_argument(
        "--plan-reuse",
        type=float,
        default=None,
        metavar="SECONDS",
        help="the engine's plan_reuse (default: the engine's own; 0: every wall-clock query "
        "is prepared afresh, the baseline)",
    )
    ap.add_argument(
        "--interleave",
        action="store_true",
        help="ask every (example, tenant) once per round, REPEAT rounds, instead of REPEAT "
        "times back to back",
    )
    ap.add_argument(
        "--duckdb-between",
        action="store_true",
        help="with --interleave: ask DuckDB each pair right after pql's ask of it, not after "
        "pql's asks of the whole round",
    )
    ap.add_argument(
        "--no-compiled-reuse",
        action="store_true",
        help="compile every query afresh (the baseline of pql/execute/reuse.py)",
    )
    args = ap.parse_args(argv)
    if args.wall and args.data is not None:
        ap.error("--wall needs generated data (it must end at the present); leave out --data")
    quiet = not sys.stdout.isatty()

    scratch = None
    t = time.perf_counter()
    if args.data is None:
        from pql.demo import generate

        now = datetime.now(UTC) if args.wall else datetime(2026, 3, 2, 12, tzinfo=UTC)
        demo = generate(args.receipts, seed=args.seed, tenants=args.tenants, now=now)
        scratch = tempfile.TemporaryDirectory(prefix="pql-fixed-cost-")
        args.data = Path(scratch.name) / "lake"
        writer = pql.Engine(args.data, index=False)
        writer.ingest("receipts", demo.receipts)
        writer.ingest("decisions", demo.decisions)
    options: dict[str, Any] = {}
    if args.plan_reuse is not None:
        options["plan_reuse"] = timedelta(seconds=args.plan_reuse)
    engine = pql.Engine(args.data, cache=False, preload="all", **options)
    engine.wait_ready()
    if args.no_compiled_reuse:
        engine.compiled = CompiledQueries(0)
    store = engine.store
    assert isinstance(store, IndexedLake)
    # Steady state: the snapshots of the loads just done are written in the background after
    # them (seconds of disk writes and CPU at 10M), which would run beside the first rounds.
    store.wait_snapshots()
    lake = store.lake
    frames: dict[str, pl.DataFrame] = {}
    for subject in ("receipts", "decisions"):
        parts = [
            lake.scan(
                tenant,
                engine.catalog[subject],
                datetime(1970, 1, 1, tzinfo=UTC),
                datetime(9999, 1, 1, tzinfo=UTC),
            ).frame.collect()
            for tenant in lake.tenants()
        ]
        frames[subject] = pl.concat(parts, how="diagonal_relaxed")
    receipts = frames["receipts"]
    sizes = receipts["tenant"].value_counts(sort=True)
    large, small = sizes["tenant"][0], sizes["tenant"][-1]
    ts_max = receipts["ts"].max()
    assert isinstance(ts_max, datetime)
    now = ts_max.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    con = duckdb_tables(frames)
    setup_s = time.perf_counter() - t
    if not quiet:
        print(f"{receipts.height:,} receipts; large {large}, small {small}; setup {setup_s:.1f}s")

    asked = None if args.wall else now
    pairs = [
        (name, text, size, tenant)
        for name, text in examples().items()
        for size, tenant in (("large", large), ("small", small))
    ]
    rows: list[dict[str, Any]] = []
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}

    def report(row: dict[str, Any]) -> None:
        rows.append(row)
        if not quiet and "error" not in row:
            print(
                f"{row['example']:12} {row['tenant']:5} outside {row['outside']:7.3f} "
                f"call {row['outside_call']:7.3f} "
                f"exec {row['execute']:8.3f} total {row['total']:8.3f} "
                f"duckdb {row['duckdb']:8.3f} ratio {row['ratio']}"
            )

    if args.interleave:  # every pair once per round: a pair comes back a whole round later
        runnable = []
        for name, text, size, tenant in pairs:
            code = first(engine, text, tenant, asked)
            if code is None:
                runnable.append((name, text, size, tenant))
            else:
                rows.append({"example": name, "tenant": size, "query": text, "error": code})
        duck: dict[tuple[str, str], list[float]] = {}
        sqls = {
            (name, size): sql_for(engine, text, tenant, asked)
            for name, text, size, tenant in runnable
        }

        def ask_duckdb(name: str, size: str) -> None:
            sql = sqls[name, size]()  # this round's window, translated before the clock starts
            duck.setdefault((name, size), []).append(duck_ms(con, sql))

        for _ in range(args.repeat):
            for name, text, size, tenant in runnable:
                samples.setdefault((name, size), []).append(ask(engine, text, tenant, asked))
                if args.duckdb_between:
                    ask_duckdb(name, size)
            if not args.duckdb_between:
                for name, _, size, _ in runnable:
                    ask_duckdb(name, size)
        for name, text, size, tenant in runnable:
            got = summarize(
                engine,
                con,
                text,
                tenant,
                asked,
                sqls[name, size],
                samples[name, size],
                args.repeat,
                duck[name, size],
            )
            report({"example": name, "tenant": size, "query": text, **got})
    else:  # each pair asked ``repeat`` times back to back
        for name, text, size, tenant in pairs:
            code = first(engine, text, tenant, asked)
            if code is not None:
                rows.append({"example": name, "tenant": size, "query": text, "error": code})
                continue
            mine = [ask(engine, text, tenant, asked) for _ in range(args.repeat)]
            sql_of = sql_for(engine, text, tenant, asked)
            got = summarize(engine, con, text, tenant, asked, sql_of, mine, args.repeat)
            report({"example": name, "tenant": size, "query": text, **got})
    ran = [r for r in rows if "error" not in r]
    outside = [r["outside"] for r in ran]
    reused = [r["outside"] for r in ran if r["compiled_reused"] >= 0.5]
    ratios = [r["ratio"] for r in ran if r["ratio"] is not None]
    warm = [r["ratio_back_to_back"] for r in ran if r.get("ratio_back_to_back") is not None]
    summary = {
        "receipts": receipts.height,
        "clock": "wall" if args.wall else "fixed",
        "plan_reuse_s": engine.plan_reuse.total_seconds(),
        "compiled_reuse": engine.compiled.size > 0,
        "order": "interleaved" if args.interleave else "back to back",
        "compiled_reused_share": round(statistics.fmean([r["compiled_reused"] for r in ran]), 3)
        if ran
        else None,
        "tenants": {"large": large, "small": small},
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "repeat": args.repeat,
        "pairs": len(ran),
        "refused_or_failed": [
            {"example": r["example"], "tenant": r["tenant"], "code": r["error"]}
            for r in rows
            if "error" in r
        ],
        "median_outside_ms": _median(outside),
        # A pair's medians are a fresh compile's when most of its asks compiled afresh (on the
        # wall clock: its window crossed a stored row since the last ask): how many, and the
        # median of the others.
        "pairs_mostly_compiled_afresh": sum(r["compiled_reused"] < 0.5 for r in ran),
        "median_outside_mostly_reused_ms": _median(reused) if reused else None,
        "median_outside_with_reads_ms": _median([r["outside_with_reads"] for r in ran]),
        "median_outside_call_ms": _median([r["outside_call"] for r in ran]),
        "max_outside_ms": round(max(outside), 4) if outside else None,
        "median_ratio_pql_duckdb": _median(ratios),
        "max_ratio_pql_duckdb": max(ratios) if ratios else None,
        "pairs_over_0_8": sum(r > 0.8 for r in ratios),
        **(
            {
                "duckdb_asked": (
                    "in the same rounds as pql, "
                    + (
                        "each pair right after pql's ask of it"
                        if args.duckdb_between
                        else "after pql's asks of the round"
                    )
                    + " (ratio); back to back after the rounds (ratio_back_to_back)"
                ),
                "median_ratio_back_to_back": _median(warm),
                "max_ratio_back_to_back": max(warm) if warm else None,
                "pairs_over_0_8_back_to_back": sum(r > 0.8 for r in warm),
            }
            if args.interleave
            else {"duckdb_asked": "back to back"}
        ),
        "stage_medians_ms": {
            s: _median([r[s] for r in ran if s in r])
            for s in (*OUTSIDE, "read", "execute", "outside", "outside_with_reads", "outside_call")
        },
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    kind = ("-wall" if args.wall else "") + ("-interleaved" if args.interleave else "")
    kind += "-duckdb-between" if args.interleave and args.duckdb_between else ""
    path = args.out / f"fixed-cost-{receipts.height // 1000}k{kind}-{stamp}.json"
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    head = {k: v for k, v in summary.items() if k != "rows"}
    print(json.dumps(head, indent=2, default=str))
    print(f"-> {path}")
    if scratch is not None:
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
