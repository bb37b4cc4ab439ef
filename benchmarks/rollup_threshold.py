"""When an aggregate should read the rollup: raw rows against the rollup, by window size.

For the largest and the smallest tenant of the cached demo data, each aggregate below is asked
over windows of 7 to 180 days of the default ``Engine(DIR)`` (indexes loaded first, cache off)
three ways: forced to read rows (``rollups=False``), forced to read the rollup
(``rollup_min_rows=0``), and with the default threshold
(:data:`pql.plan.rollups.MIN_ROWS`, compared with the window's rows). Each is the median of
``--repeat`` runs, the forced plans alternated; the answers are compared (floats to 1e-9 relative). Results go to
``benchmarks/results/rollup-threshold-<N>k-<stamp>.json``::

    python -m benchmarks.rollup_threshold --receipts 10000000

``--from-files`` asks the same of engines whose indexes never load (a memory budget of
:data:`FROM_FILES_BUDGET`, under any tenant's index and over the days' rollup rows), so every
query reads the tenants' files, as a first open does, or a tenant over the budget: there the
default reads the rollup whatever the window (``pql.Engine._rollup_min_rows``). Its results go
to ``rollup-threshold-from-files-<N>k-<stamp>.json``::

    python -m benchmarks.rollup_threshold --receipts 10000000 --from-files
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import polars as pl
from polars.testing import assert_frame_equal

import pql
from benchmarks.data import cached_data, options, progress, write_result

QUERIES = (
    'FIND COUNT(*) WHERE receipts.status = "error" GROUP BY receipts.workflow SINCE {d}d',
    "FIND COUNT(*) AS n WHERE status NOT IN ('ok', 'error') SINCE {d}d",
    "FIND COUNT(*), AVG(receipts.latency_ms) GROUP BY receipts.region SINCE {d}d",
)
DAYS = (7, 14, 30, 60, 180)
FROM_FILES_BUDGET = 64 * 2**20
"""``--from-files``: the engines' memory budget, under the smallest tenant's index at 10M
receipts (so none loads; the run stops if one does) and over the days' rollup rows the engine
keeps."""


def _same(ours: pl.DataFrame, reference: pl.DataFrame) -> bool:
    """The same rows in any order, floats equal to 1e-9 relative (a rollup adds in another
    order)."""
    try:
        assert_frame_equal(ours.sort(ours.columns), reference.sort(reference.columns), rel_tol=1e-9)
    except AssertionError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = options(__doc__.split("\n")[0], repeat=15)
    ap.add_argument(
        "--from-files",
        action="store_true",
        help="engines whose indexes never load: every query reads the tenants' files",
    )
    args = ap.parse_args(argv)
    data = cached_data(args.receipts, tenants=args.tenants, seed=args.seed)
    budget = FROM_FILES_BUDGET if args.from_files else None
    engines = {
        "rows": pql.Engine(data.lake, cache=False, rollups=False, memory_budget=budget),
        "rollup": pql.Engine(data.lake, cache=False, rollup_min_rows=0, memory_budget=budget),
        "default": pql.Engine(data.lake, cache=False, memory_budget=budget),
    }
    for engine in engines.values():
        engine.preload()
        engine.wait_ready()
    path_wanted = "partitions" if args.from_files else "index"
    sizes = data.tenant_column().value_counts(sort=True)
    large, small = str(sizes["tenant"][0]), str(sizes["tenant"][-1])

    def median_ms(engine: pql.Engine, text: str, tenant: str) -> float:
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            engine.query(text, tenant=tenant, now=data.now, record=False)
            times.append((time.perf_counter() - started) * 1000)
        return round(statistics.median(times), 3)

    rows: list[dict[str, Any]] = []
    for form in QUERIES:
        for tenant in (large, small):
            for days in DAYS:
                text = form.format(d=days)
                asked = {
                    name: engine.query(text, tenant=tenant, now=data.now, record=False)
                    for name, engine in engines.items()
                }
                paths = {result.stats["path"] for result in asked.values()}
                if paths != {path_wanted}:
                    raise SystemExit(f"{text} for {tenant} was answered from {paths}")
                answers = {name: result.df for name, result in asked.items()}
                timings: dict[str, list[float]] = {name: [] for name in engines}
                for _ in range(2):  # alternated: the machine's noise falls on all three
                    for name, engine in engines.items():
                        timings[name].append(median_ms(engine, text, tenant))
                best = {name: min(found) for name, found in timings.items()}
                explained = str(engines["default"].explain(text, tenant=tenant, now=data.now))
                row = {
                    "query": text,
                    "tenant": tenant,
                    "window_rows": asked["rows"].stats["rows_scanned"],
                    "rows_ms": best["rows"],
                    "rollup_ms": best["rollup"],
                    "default_ms": best["default"],
                    "default_reads": "rollup" if "RollupAggregate" in explained else "rows",
                    "faster": "rollup" if best["rollup"] < best["rows"] else "rows",
                    "same_answer": all(_same(frame, answers["rows"]) for frame in answers.values()),
                }
                rows.append(row)
                progress(json.dumps(row))
    picked_faster = sum(r["default_reads"] == r["faster"] for r in rows)
    worst = max(rows, key=lambda r: r["default_ms"] / min(r["rows_ms"], r["rollup_ms"]))
    summary = {
        "receipts": args.receipts,
        "read_from": "files" if args.from_files else "indexes",
        "memory_budget_bytes": budget,  # None: the engine's default
        "repeat": args.repeat,
        "min_rows": engines["default"].rollup_min_rows,
        "pairs": len(rows),
        "default_picked_the_faster": picked_faster,
        "worst_default_over_best": round(
            worst["default_ms"] / min(worst["rows_ms"], worst["rollup_ms"]), 2
        ),
        "rows": rows,
    }
    kind = "rollup-threshold-from-files" if args.from_files else "rollup-threshold"
    path = write_result(args.out, kind, args.receipts, summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}), "->", path.name)
    return 0 if all(r["same_answer"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
