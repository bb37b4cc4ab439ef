"""Polars' two engines under pql: the in-memory engine pql runs every query on, against the
streaming engine, per query shape, on the default ``Engine(DIR)`` with every index loaded.

Run from the repository root (the data is generated once into ``benchmarks/.data``)::

    python -m benchmarks.engines --receipts 10000000

pql collects each query in the background (``collect(background=True)``), which Polars runs on
its in-memory engine: that is what lets a query past its deadline be cancelled
(``pql/execute/run.py``). The streaming engine, Polars' default for a plain ``collect()``, has no
such handle. This measures what that choice costs or saves: each shape of the harness's
dashboards and of the contract's and LANGUAGE.md's examples, on the largest and the smallest
tenant, answered as pql answers it (A) and with the same compiled query collected on the
streaming engine in a worker thread (B), in alternating blocks (cache off, each query compiled
afresh); B's answer is checked against A's first. The medians and B/A ratios go to
``benchmarks/results/engines-<receipts>k-<stamp>.json``.
"""

from __future__ import annotations

import importlib
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import polars as pl

import pql
from benchmarks.data import cached_data, options, progress, write_result
from benchmarks.examples import examples
from benchmarks.harness import DASHBOARDS
from benchmarks.join_codes import SHAPES as JOINS
from pql.execute import Compiled, compile_plan
from pql.execute.reuse import CompiledQueries

_RUN = importlib.import_module("pql.execute.run")  # the module, not the function it exports
_COLLECT = "collect"  # the function every query is collected by (patched here)
_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bench-streaming")


def _streaming(frame: pl.LazyFrame, deadline: object) -> pl.DataFrame:
    """``frame`` collected on the streaming engine in a worker thread (no deadline)."""
    return _THREADS.submit(frame.collect, engine="streaming").result()


def _same_answers(ours: pl.DataFrame, compiled: Compiled, shape: str) -> None:
    """Fail unless the streaming engine answers ``compiled`` as the in-memory one did."""
    from tests.compare import assert_same_frame

    theirs = _streaming(compiled.frame, None)
    if compiled.cap is not None:
        theirs = theirs.head(compiled.cap)
    assert_same_frame(ours.sort(ours.columns), theirs.sort(theirs.columns), shape)


def _ab(run: Any, repeat: int) -> tuple[float, float]:
    """Medians (ms) of ``run`` as pql collects (A) and on the streaming engine (B), in blocks
    A, B, A, B of ``repeat`` calls each after one warm-up call. Not call by call: a query on
    one engine leaves work behind (its frames freed on Polars' threads) that the next call
    would pay for, so strict interleaving charges each engine part of the other's cost."""
    real = getattr(_RUN, _COLLECT)
    times: dict[bool, list[float]] = {True: [], False: []}
    try:
        for use in (True, False, True, False):
            setattr(_RUN, _COLLECT, real if use else _streaming)
            run()
            for _ in range(repeat):
                started = time.perf_counter()
                run()
                times[use].append((time.perf_counter() - started) * 1000)
    finally:
        setattr(_RUN, _COLLECT, real)
    return round(statistics.median(times[True]), 3), round(statistics.median(times[False]), 3)


def main(argv: list[str] | None = None) -> None:
    ap = options(__doc__.splitlines()[0], repeat=11)
    args = ap.parse_args(argv)
    data = cached_data(args.receipts, tenants=args.tenants, seed=args.seed)
    progress("loading every tenant's index")
    engine = pql.Engine(data.lake, cache=False)
    engine.compiled = CompiledQueries(0)
    engine.preload("all")
    engine.wait_ready()
    sizes = data.receipts.group_by("tenant").len().sort("len")
    picks = {"largest": sizes["tenant"][-1], "smallest": sizes["tenant"][0]}
    shapes = {**DASHBOARDS, **examples(), **{f"join_{k}": v for k, v in JOINS.items()}}
    rows: dict[str, Any] = {}
    for which, tenant in picks.items():
        for shape, text in shapes.items():
            try:
                first = engine.query(text, tenant=tenant, now=data.now, cache=False)
            except pql.PQLError:  # an example that is refused on purpose
                continue
            progress(f"{shape}/{which}")
            prepared = engine.prepare(text, tenant=tenant, now=data.now)
            compiled = compile_plan(prepared.plan, engine.store, engine.catalog, prepared.estimates)
            _same_answers(first.df, compiled, f"{shape}/{which}")
            in_memory, streaming = _ab(
                lambda t=text, n=tenant: engine.query(t, tenant=n, now=data.now, cache=False),
                args.repeat,
            )
            rows[f"{shape}/{which}"] = {
                "query": text,
                "rows_scanned": first.stats["rows_scanned"],
                "join": bool(first.stats["join_codes"]),
                "in_memory_ms": in_memory,
                "streaming_ms": streaming,
                "ratio_streaming_in_memory": round(streaming / in_memory, 2),
            }
    ratios = [row["ratio_streaming_in_memory"] for row in rows.values()]
    summary = {
        "receipts": args.receipts,
        "tenants": args.tenants,
        "seed": args.seed,
        "repeat": args.repeat,
        "median_ratio_streaming_in_memory": round(statistics.median(ratios), 2),
        "shapes_faster_streaming": sorted(
            k for k, r in rows.items() if r["ratio_streaming_in_memory"] < 0.9
        ),
        "shapes": rows,
    }
    print(write_result(args.out, "engines", args.receipts, summary))


if __name__ == "__main__":
    main()
