"""A small query's latency beside an index load: what a cold start's loads cost the queries
answered meanwhile.

An engine opened on data it has never indexed answers a loading tenant's queries from its
partitions while the index loads in the background, and both share the machine's cores and
Polars' one thread pool. This answers one small query (the last day of the smallest tenant, from
its partitions) again and again:

- ``alone``: nothing else runs;
- ``thread``: beside the load of the largest tenant's index from Parquet, in a thread of the
  same process (what :class:`~pql.storage.indexed.IndexedLake` does);
- ``process``: beside the same load in another process with one Polars thread (what a loader
  outside the engine's process would cost the queries).

Each mode runs ``--repeat`` times, alternated; the index snapshots are deleted before each load,
so every load reads Parquet. The p50 and p95 of each mode and their ratio to ``alone`` are
printed and written to ``benchmarks/results/contention-<N>k-<stamp>.json``. From the
repository root::

    python -m benchmarks.contention --receipts 10000000
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pql
from benchmarks.data import cached_data, options, run_config, stored_rows, write_result
from pql.catalog import Catalog
from pql.storage.indexed import IndexedLake
from pql.storage.lake import Lake

QUERY = "FIND COUNT(receipts.executionId) GROUP BY receipts.workflow SINCE 1d"
ALONE_S = 2.0


def load_once(lake: str, tenant: str) -> float:
    """Load ``tenant``'s index from the lake's Parquet files as an engine does (its snapshots
    deleted first, then written and waited for); the load's seconds."""
    catalog = Catalog()
    local = Lake(Path(lake), catalog)
    store = IndexedLake(local, catalog, background=False)
    local.drop_snapshots(tenant)
    started = time.perf_counter()
    store.load(tenant)
    seconds = time.perf_counter() - started
    store.wait_snapshots()
    local.drop_snapshots(tenant)
    return seconds


def _summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 3),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
        "max": round(ordered[-1], 3),
    }


def main(argv: list[str] | None = None) -> int:
    args = options(__doc__.split("\n")[0], repeat=3).parse_args(argv)

    data = cached_data(args.receipts, tenants=args.tenants, seed=args.seed)
    rows = stored_rows(data.lake)
    largest, smallest = max(rows, key=rows.__getitem__), min(rows, key=rows.__getitem__)
    engine = pql.Engine(data.lake, index=False, cache=False)

    def ask() -> float:
        started = time.perf_counter()
        engine.query(QUERY, tenant=smallest, now=data.now, cache=False, record=False)
        return (time.perf_counter() - started) * 1000

    def sample(running: Callable[[], bool]) -> list[float]:
        found: list[float] = []
        while running() or len(found) < 3:
            found.append(ask())
            time.sleep(0.005)
        return found

    def by_itself() -> tuple[list[float], float | None]:
        until = time.perf_counter() + ALONE_S
        return sample(lambda: time.perf_counter() < until), None

    def beside_thread() -> tuple[list[float], float | None]:
        took: list[float] = []
        worker = threading.Thread(target=lambda: took.append(load_once(str(data.lake), largest)))
        worker.start()
        found = sample(worker.is_alive)
        worker.join()
        return found, took[0]

    def beside_process() -> tuple[list[float], float | None]:
        code = (
            "import sys; from benchmarks.contention import load_once; "
            "print(load_once(sys.argv[1], sys.argv[2]))"
        )
        child = subprocess.Popen(
            [sys.executable, "-c", code, str(data.lake), largest],
            env={**os.environ, "POLARS_MAX_THREADS": "1"},
            stdout=subprocess.PIPE,
            text=True,
        )
        found = sample(lambda: child.poll() is None)
        out, _ = child.communicate()
        return found, float(out.strip().splitlines()[-1])

    for _ in range(5):  # the first answers build the engine's caches
        ask()
    runs: dict[str, Callable[[], tuple[list[float], float | None]]] = {
        "alone": by_itself,
        "thread": beside_thread,
        "process": beside_process,
    }
    latencies: dict[str, list[float]] = {name: [] for name in runs}
    loads: dict[str, list[float]] = {"thread": [], "process": []}
    for _ in range(args.repeat):
        for name, run in runs.items():
            found, seconds = run()
            latencies[name] += found
            if seconds is not None:
                loads[name].append(seconds)

    modes = {name: _summary(found) for name, found in latencies.items()}
    alone = modes["alone"]
    summary: dict[str, Any] = {
        "config": {
            **run_config(args),
            "query": QUERY,
            "query_tenant": smallest,
            "loaded_tenant": largest,
            "loaded_rows": rows[largest],
        },
        "latency_ms": modes,
        "p95_over_alone": {name: round(m["p95"] / alone["p95"], 2) for name, m in modes.items()},
        "p50_over_alone": {name: round(m["p50"] / alone["p50"], 2) for name, m in modes.items()},
        "load_s": {name: [round(s, 3) for s in found] for name, found in loads.items()},
    }
    path = write_result(args.out, "contention", args.receipts, summary)
    print(json.dumps(summary, indent=2))
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
