"""Polars' two engines under pql: the in-memory engine against the streaming engine, per query
shape, on the default ``Engine(DIR)`` with every index loaded.

Run from the repository root (the data is generated once into ``benchmarks/.data``)::

    python -m benchmarks.engines --receipts 10000000

pql collects most queries in the background (``collect(background=True)``), which Polars runs
on its in-memory engine: that is what lets a query past its deadline be cancelled. An inner join
reading at least ``Engine.streaming_rows`` rows runs on the streaming engine instead, in a worker
thread, left to run out past its deadline (``pql/execute/run.py``). This measures both engines
on every shape of the harness's dashboards, of the contract's and LANGUAGE.md's examples and of
the joins of ``join_codes.py``, on the largest and the smallest tenant, each through pql's own
runner: every query on the in-memory engine (A) and on the streaming engine (B), in alternating
blocks (cache off, each query compiled afresh); B's answer is checked against A's first. The
medians, the ratio B/A and the engine the default setting picks (``default``) go to
``benchmarks/results/engines-<receipts>k-<stamp>.json``, with how the default's time compares to
the faster engine's.
"""

from __future__ import annotations

import importlib
import statistics
import time
from collections.abc import Callable
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
_DEADLINE_MS = 60_000  # long enough for any shape: the deadline's own path is what is timed


def _forced(real: Callable[..., pl.DataFrame], streaming: bool) -> Any:
    """pql's ``collect`` (``real``) with the engine forced (the engine's choice ignored)."""

    def collect(frame: pl.LazyFrame, deadline: Any, **_: Any) -> pl.DataFrame:
        return real(frame, deadline, streaming=streaming)

    return collect


def _same_answers(compiled: Compiled, shape: str) -> None:
    """Fail unless the streaming engine answers ``compiled`` as the in-memory one does."""
    from tests.compare import assert_same_frame

    ours, theirs = (_RUN.collect(compiled.frame, _DEADLINE_MS, streaming=s) for s in (False, True))
    if compiled.cap is not None:
        ours, theirs = ours.head(compiled.cap), theirs.head(compiled.cap)
    assert_same_frame(ours.sort(ours.columns), theirs.sort(theirs.columns), shape)


def _ab(run: Any, repeat: int) -> tuple[float, float]:
    """Medians (ms) of ``run`` on the in-memory engine (A) and on the streaming engine (B), in
    blocks A, B, A, B of ``repeat`` calls each after one warm-up call. Not call by call: a query
    on one engine leaves work behind (its frames freed on Polars' threads) that the next call
    would pay for, so strict interleaving charges each engine part of the other's cost."""
    real = getattr(_RUN, _COLLECT)
    times: dict[bool, list[float]] = {False: [], True: []}
    try:
        for streaming in (False, True, False, True):
            setattr(_RUN, _COLLECT, _forced(real, streaming))
            run()
            for _ in range(repeat):
                started = time.perf_counter()
                run()
                times[streaming].append((time.perf_counter() - started) * 1000)
    finally:
        setattr(_RUN, _COLLECT, real)
    return round(statistics.median(times[False]), 3), round(statistics.median(times[True]), 3)


def main(argv: list[str] | None = None) -> None:
    ap = options(__doc__.splitlines()[0], repeat=11)
    args = ap.parse_args(argv)
    data = cached_data(args.receipts, tenants=args.tenants, seed=args.seed)
    progress("loading every tenant's index")
    engine = pql.Engine(data.lake, cache=False, limits=pql.Limits(deadline_ms=_DEADLINE_MS))
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
            _same_answers(compiled, f"{shape}/{which}")
            in_memory, streaming = _ab(
                lambda t=text, n=tenant: engine.query(t, tenant=n, now=data.now, cache=False),
                args.repeat,
            )
            default = first.stats["polars_engine"]
            chosen = streaming if default == "streaming" else in_memory
            rows[f"{shape}/{which}"] = {
                "query": text,
                "rows_scanned": first.stats["rows_scanned"],
                "join": bool(first.stats["join_codes"]),
                "in_memory_ms": in_memory,
                "streaming_ms": streaming,
                "ratio_streaming_in_memory": round(streaming / in_memory, 2),
                "default": default,
                "ratio_default_fastest": round(chosen / min(in_memory, streaming), 2),
            }
    ratios = [row["ratio_streaming_in_memory"] for row in rows.values()]
    missed = {
        k: r["ratio_default_fastest"] for k, r in rows.items() if r["ratio_default_fastest"] > 1.1
    }
    summary = {
        "receipts": args.receipts,
        "tenants": args.tenants,
        "seed": args.seed,
        "repeat": args.repeat,
        "median_ratio_streaming_in_memory": round(statistics.median(ratios), 2),
        "streaming_rows": engine.streaming_rows,
        "shapes_faster_streaming": sorted(
            k for k, r in rows.items() if r["ratio_streaming_in_memory"] < 0.9
        ),
        "shapes_streamed_by_default": sorted(
            k for k, r in rows.items() if r["default"] == "streaming"
        ),
        "default_over_1_1x_fastest": missed,
        "shapes": rows,
    }
    print(write_result(args.out, "engines", args.receipts, summary))


if __name__ == "__main__":
    main()
