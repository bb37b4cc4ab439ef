"""LIMIT over rows sorted first on ts: the early stop against the plain plan and DuckDB.

For the largest and the smallest tenant of the cached demo data, each query is answered by
``Engine.in_memory()`` (the same store the indexes use) with the early stop (the default) and
with it switched off, and by DuckDB on a native table sorted by tenant and ts; medians of
``--repeat`` runs, the answers of both plans compared. Results go to
``benchmarks/results/first-rows-<N>k-<stamp>.json``::

    python -m benchmarks.first_rows --receipts 10000000
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from typing import Any

import polars as pl

import pql
import pql.execute.compile as compile_module
from benchmarks.data import (
    cached_data,
    duckdb_answer,
    duckdb_tables,
    options,
    progress,
    write_result,
)
from benchmarks.timing import median_ms
from pql.execute.compile import predicate
from pql.plan.expr import Pred

QUERIES = (
    'FIND receipts WHERE receipts.status = "error" AND latency_ms > 250 SINCE 30d LIMIT 100',
    'FIND receipts WHERE status = "error" SINCE 7d LIMIT 3',
    "FIND receipts ORDER BY ts DESC SINCE 30d LIMIT 20",
    "FIND receipts WHERE latency_ms > 1000 ORDER BY ts DESC SINCE 7d LIMIT 10",
)


def _whole(
    parts: Sequence[Any],
    pred: Pred | None,
    ts: str,
    descending: bool,
    count: int,
    first_run: int,
    *,
    spans: dict[int, tuple[int, int]] | None = None,
) -> list[pl.LazyFrame]:
    """The plain plan's rows: each part's whole window, filtered (then sorted and cut as the
    early stop's are); it probes nothing, so it adds no ``spans``."""
    return [p.frame if pred is None else p.frame.filter(predicate(pred)) for p in parts]


def main(argv: list[str] | None = None) -> int:
    args = options(__doc__.split("\n")[0], repeat=15).parse_args(argv)
    from tests.sqlref import translate_prepared

    data = cached_data(args.receipts, tenants=args.tenants, seed=args.seed)
    engine = pql.Engine.in_memory(cache=False)
    engine.ingest("receipts", data.receipts)
    con = duckdb_tables({"receipts": data.receipts})
    sizes = data.receipts["tenant"].value_counts(sort=True)
    large, small = str(sizes["tenant"][0]), str(sizes["tenant"][-1])
    now = pql.cache.floor_clock(data.now, engine.cache_granularity)
    early = compile_module._firsts
    rows: list[dict[str, Any]] = []
    for text in QUERIES:
        for tenant in (large, small):
            prepared = engine.prepare(text, tenant=tenant, now=now)
            sql = translate_prepared(prepared, tenant)
            duck = median_ms(partial(duckdb_answer, con, sql), args.repeat)
            answers = []
            timings = []
            for cut in (early, _whole):  # the early stop, then the plain plan
                compile_module._firsts = cut
                engine.compiled.clear()  # a query compiled with the other cut is not reused
                timings.append(
                    median_ms(partial(engine.query, text, tenant=tenant, now=now), args.repeat)
                )
                answers.append(engine.query(text, tenant=tenant, now=now).df)
            compile_module._firsts = early
            row = {
                "query": text,
                "tenant": tenant,
                "window_rows": engine.query(text, tenant=tenant, now=now).stats["rows_scanned"],
                "duckdb_ms": duck,
                "early_ms": timings[0],
                "plain_ms": timings[1],
                "early_ratio": round(timings[0] / duck, 3),
                "plain_ratio": round(timings[1] / duck, 3),
                "same_answer": answers[0].equals(answers[1]),
            }
            rows.append(row)
            progress(json.dumps(row))
    summary = {
        "receipts": data.receipts.height,
        "repeat": args.repeat,
        "rows": rows,
    }
    path = write_result(args.out, "first-rows", args.receipts, summary)
    print(path.name)
    return 0 if all(r["same_answer"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
