"""Key lookups against DuckDB: queries that pick rows by ``executionId`` on the largest and the
smallest tenant of a demo lake, answered by the default ``Engine(DIR)`` with every index loaded.

Run from the repository root (``--lake`` keeps the generated lake for another run)::

    python -m benchmarks.lookup --receipts 1000000 --lake LAKE_DIR

Each query is timed with key lookups and without them (the compiler told to scan the window,
as before lookups existed), the two interleaved so that both see the same load, and against
DuckDB. The medians (cache off) go to ``benchmarks/results/lookup-<receipts>k-<stamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

import pql
from benchmarks.data import duckdb_answer, duckdb_tables
from benchmarks.timing import ab_ms, median_ms
from pql.demo import generate
from pql.execute import compile as compile_mod

RESULTS = Path(__file__).parent / "results"


def queries(decisions: pl.DataFrame, tenant: str) -> dict[str, str]:
    """The measured shapes for ``tenant``, with ids of its own rows."""
    mine = decisions.filter(pl.col("tenant") == tenant).sort("ts")
    ids = mine.get_column("executionId").drop_nulls()
    last = ids[-1]  # the newest: inside every window
    pair = f"'{ids[len(ids) // 2]}', '{last}'"
    return {
        # as docs/pql/LANGUAGE.md writes it (ids of no tenant here: only the nulls match)
        "count_null_or_in_doc_180d": "FIND COUNT(decisions.decisionId) AS n WHERE executionId "
        "IS NULL OR executionId IN ('ex-1157f8cb944e57ef', 'ex-c058e15e599c1ca8') "
        "GROUP BY decisions.executionId SINCE 180d",
        "count_null_or_in_180d": "FIND COUNT(decisions.decisionId) AS n WHERE executionId IS NULL "
        f"OR executionId IN ({pair}) GROUP BY decisions.executionId SINCE 180d",
        "find_eq_30d": f'FIND decisions WHERE executionId = "{last}" SINCE 30d',
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receipts", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=31)
    parser.add_argument("--lake", type=Path, default=None)
    parser.add_argument("--label", default="")
    args = parser.parse_args(argv)

    from tests.sqlref import translate_prepared

    data = generate(args.receipts, seed=1, tenants=args.tenants)
    lake = args.lake or Path(tempfile.mkdtemp(prefix="pql-lookup-"))
    if not (lake / ".written").exists():
        writer = pql.Engine(lake, index=False)
        writer.ingest("receipts", data.receipts)
        writer.ingest("decisions", data.decisions)
        (lake / ".written").write_text("ok")
    engine = pql.Engine(lake, cache=False)
    started = time.perf_counter()
    engine.preload("all")
    engine.wait_ready()
    load_s = time.perf_counter() - started
    con = duckdb_tables({"receipts": data.receipts, "decisions": data.decisions})
    sizes = data.decisions.group_by("tenant").len().sort("len")
    picks = {"largest": sizes["tenant"][-1], "smallest": sizes["tenant"][0]}
    now = data.now
    rows: dict[str, Any] = {}
    for which, tenant in picks.items():
        for shape, text in queries(data.decisions, tenant).items():
            prepared = engine.prepare(text, tenant=tenant, now=now)
            sql = translate_prepared(prepared, tenant)
            result = engine.query(text, tenant=tenant, now=now, cache=False)
            pql_ms, scan_ms = ab_ms(
                partial(engine.query, text, tenant=tenant, now=now, cache=False),
                args.repeat,
                compile_mod._Compiler,
                "lookup",
            )
            duck_ms = median_ms(partial(duckdb_answer, con, sql), args.repeat)
            rows[f"{shape}/{which}"] = {
                "tenant": tenant,
                "decisions": int(sizes.filter(pl.col("tenant") == tenant)["len"][0]),
                "query": text,
                "rows_out": result.df.height,
                "path": result.stats.get("path"),
                "lookups": result.stats.get("lookups"),
                "pql_ms": pql_ms,
                "pql_scan_ms": scan_ms,
                "duckdb_ms": duck_ms,
                "ratio_pql_duckdb": round(pql_ms / duck_ms, 2),
                "ratio_pql_scan_duckdb": round(scan_ms / duck_ms, 2),
            }
            print(
                f"{shape}/{which}: pql {pql_ms} ms (scanning: {scan_ms} ms), duckdb {duck_ms} ms, "
                f"ratio {pql_ms / duck_ms:.2f} (scanning: {scan_ms / duck_ms:.2f}) "
                f"{result.stats.get('lookups')}"
            )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = {
        "receipts": args.receipts,
        "tenants": args.tenants,
        "label": args.label,
        "index_memory_bytes": getattr(engine.store, "memory_bytes", lambda: None)(),
        "preload_s": round(load_s, 2),
        "repeat": args.repeat,
        "note": "2 shared cores, loaded by other work while measuring",
        "shapes": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"lookup-{args.receipts // 1000}k-{args.label or 'run'}-{stamp}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(path)


if __name__ == "__main__":
    main()
