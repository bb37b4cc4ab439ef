"""Join codes against DuckDB and Polars: receipts-decisions joins on the largest and the smallest
tenant of a demo lake, answered by the default ``Engine(DIR)`` with every index loaded.

Run from the repository root (the data is generated once into ``benchmarks/.data``)::

    python -m benchmarks.join_codes --receipts 10000000

Each query is timed joining on the indexes' join codes and joining on the ``executionId``
strings (the compiler told not to read codes, as before they existed), and with every join an
inner join (no semi join, see ``pql/execute/joins.py``), each interleaved with the default so
that both see the same load (each query compiled afresh: a compiled query, reused, would keep
the join it was compiled with); against DuckDB on sorted native tables; and the count joins
against the same join written by hand in Polars over the tenant's in-memory frames. Every
answer is checked against DuckDB's first. The medians (cache off) go to
``benchmarks/results/join-codes-<receipts>k-<stamp>.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import polars as pl

import pql
from benchmarks.data import (
    cached_data,
    duckdb_answer,
    duckdb_tables,
    options,
    progress,
    write_result,
)
from benchmarks.timing import ab_ms, median_ms
from pql.execute import compile as compile_mod
from pql.execute import joins as joins_mod
from pql.execute.reuse import CompiledQueries
from pql.storage import IndexedLake

JOIN = "JOIN decisions ON receipts.executionId = decisions.executionId"
SHAPES = {
    # docs/pql/LANGUAGE.md's output-names example, and the same over a longer window
    "count_7d": f"FIND COUNT(*), COUNT(decisions.decisionId) {JOIN} SINCE 7d",
    "count_30d": f"FIND COUNT(*), COUNT(decisions.decisionId) {JOIN} SINCE 30d",
    # the contract's first example: denials by rule
    "deny_by_rule_7d": "FIND COUNT(decisions.decisionId) JOIN receipts ON decisions.executionId "
    '= receipts.executionId WHERE decisions.effect = "deny" GROUP BY decisions.rule SINCE 7d',
    "latency_by_rule_30d": f"FIND AVG(receipts.latency_ms) {JOIN} GROUP BY decisions.rule "
    "SINCE 30d",
}
HAND_WRITTEN = {"count_7d": 7, "count_30d": 30}
"""The shapes also written by hand in Polars: a count of the join over so many days."""


def _by_hand(
    receipts: pl.DataFrame, decisions: pl.DataFrame, now: datetime, days: int
) -> Callable[[], pl.DataFrame]:
    """The count join written by hand in Polars: each side's window, joined on the strings."""
    start = now - timedelta(days=days)

    def run() -> pl.DataFrame:
        r = receipts.lazy().filter(pl.col("ts").is_between(start, now))
        d = decisions.lazy().filter(pl.col("ts").is_between(start, now))
        joined = r.join(d, on="executionId", how="inner")
        return joined.select(pl.len(), pl.col("decisionId").count()).collect()

    return run


def main(argv: list[str] | None = None) -> None:
    ap = options(__doc__.splitlines()[0], repeat=21)
    args = ap.parse_args(argv)

    from tests.compare import assert_same_frame
    from tests.sqlref import translate_prepared

    data = cached_data(args.receipts, tenants=args.tenants, seed=args.seed)
    progress("loading every tenant's index")
    engine = pql.Engine(data.lake, cache=False)
    engine.compiled = CompiledQueries(0)
    started = time.perf_counter()
    engine.preload("all")
    engine.wait_ready()
    load_s = time.perf_counter() - started
    store = engine.store
    assert isinstance(store, IndexedLake)
    store.wait_snapshots()  # written after the loads: not beside the measurements
    con = duckdb_tables({"receipts": data.receipts, "decisions": data.decisions})
    sizes = data.receipts.group_by("tenant").len().sort("len")
    picks = {"largest": sizes["tenant"][-1], "smallest": sizes["tenant"][0]}
    now = data.now
    rows: dict[str, Any] = {}
    for which, tenant in picks.items():
        mine = {
            name: frame.filter(pl.col("tenant") == tenant).sort("ts")
            for name, frame in (("receipts", data.receipts), ("decisions", data.decisions))
        }
        for shape, text in SHAPES.items():
            progress(f"{shape}/{which}")
            prepared = engine.prepare(text, tenant=tenant, now=now)
            sql = translate_prepared(prepared, tenant)
            result = engine.query(text, tenant=tenant, now=now, cache=False)
            ours, theirs = (frame.sort(frame.columns) for frame in (result.df, con.sql(sql).pl()))
            assert_same_frame(ours, theirs, f"{shape}/{which}")
            pql_ms, strings_ms = ab_ms(
                partial(engine.query, text, tenant=tenant, now=now, cache=False),
                args.repeat,
                compile_mod._Compiler,
                "coded_inputs",
            )
            _, inner_ms = ab_ms(
                partial(engine.query, text, tenant=tenant, now=now, cache=False),
                args.repeat,
                joins_mod,
                "semi_side",
            )
            duck_ms = median_ms(partial(duckdb_answer, con, sql), args.repeat)
            row: dict[str, Any] = {
                "tenant": tenant,
                "query": text,
                "rows_out": result.df.height,
                "path": result.stats.get("path"),
                "join_codes": result.stats.get("join_codes"),
                "pql_ms": pql_ms,
                "pql_strings_ms": strings_ms,
                "pql_inner_join_ms": inner_ms,
                "duckdb_ms": duck_ms,
                "ratio_pql_duckdb": round(pql_ms / duck_ms, 2),
                "ratio_pql_strings_duckdb": round(strings_ms / duck_ms, 2),
            }
            if shape in HAND_WRITTEN:
                hand = _by_hand(mine["receipts"], mine["decisions"], now, HAND_WRITTEN[shape])
                assert hand().rows() == result.df.rows(), (shape, which)
                row["polars_ms"] = median_ms(hand, args.repeat)
                row["ratio_pql_polars"] = round(pql_ms / row["polars_ms"], 2)
            rows[f"{shape}/{which}"] = row
            print(
                f"{shape}/{which}: pql {pql_ms} ms (strings: {strings_ms} ms, inner join: "
                f"{inner_ms} ms), duckdb {duck_ms} "
                f"ms, polars {row.get('polars_ms', '-')} ms, ratio {pql_ms / duck_ms:.2f} "
                f"(strings: {strings_ms / duck_ms:.2f}) {result.stats.get('join_codes')}",
                flush=True,
            )
    summary = {
        "receipts": args.receipts,
        "tenants": args.tenants,
        "seed": args.seed,
        "index_memory_bytes": store.memory_bytes(),
        "preload_s": round(load_s, 2),
        "repeat": args.repeat,
        "shapes": rows,
    }
    print(write_result(args.out, "join-codes", args.receipts, summary))


if __name__ == "__main__":
    main()
