"""What a first open must read before it answers at the index's pace: every tenant's index
loaded from Parquet, with no traffic, one tenant at a time (as the engine's loader does).

A first open is an engine opened on a lake whose index snapshots are not there (they are written
by any engine after it loads a tenant, and by ``pql lake snapshots``). Each round deletes every
snapshot, then loads each tenant (the largest first) the way the default ``Engine(DIR)`` does
(rows and rollups, then the key lookups, then the snapshots written) and times both parts and
the process CPU they took. The JSON also states the budget a 100 QPS run has for them: a p95
over the first 10 s within 2x warm leaves at most 5% of those answers (0.5 s of traffic) slower
than that. Results go to ``benchmarks/results/first-open-<N>k-<stamp>.json``; from the
repository root::

    python -m benchmarks.first_open --receipts 10000000
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from benchmarks.data import (
    cached_data,
    options,
    progress,
    run_config,
    stored_rows,
    write_result,
)
from pql.catalog import Catalog
from pql.storage.indexed import IndexedLake
from pql.storage.lake import Lake

FIRST_S = 10.0
"""The window the harness reports a cold start's p95 over."""
SLOW_SHARE = 0.05
"""The share of those answers a p95 lets be slower than its bound."""


def one_round(lake: Lake, tenants: list[str]) -> dict[str, Any]:
    """Every tenant's load from Parquet (snapshots deleted first, and after)."""
    lake.drop_snapshots()
    store = IndexedLake(lake, lake.catalog, background=False)
    per_tenant: dict[str, dict[str, float]] = {}
    cpu_started, started = time.process_time(), time.perf_counter()
    for tenant in tenants:
        progress(f"loading {tenant}")
        began = time.perf_counter()
        store.load(tenant)
        total = time.perf_counter() - began
        info = store.loads()[tenant]
        if info.source != "parquet":
            raise SystemExit(f"{tenant}'s index came from {info.source!r}, not from Parquet")
        per_tenant[tenant] = {
            "rows": info.rows,
            "rows_and_rollups_s": round(info.seconds, 3),
            "with_lookups_and_snapshots_s": round(total, 3),
        }
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    store.close()
    lake.drop_snapshots()
    return {
        "tenants": per_tenant,
        "rows_and_rollups_s": round(sum(t["rows_and_rollups_s"] for t in per_tenant.values()), 3),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
    }


def main(argv: list[str] | None = None) -> int:
    args = options(__doc__.split("\n")[0], repeat=3).parse_args(argv)
    data = cached_data(args.receipts, tenants=args.tenants, seed=args.seed)
    lake = Lake(data.lake, Catalog())
    rows = stored_rows(data.lake)
    tenants = sorted(rows, key=lambda t: -rows[t])
    rounds = [one_round(lake, tenants) for _ in range(args.repeat)]
    loads = [r["rows_and_rollups_s"] for r in rounds]
    summary: dict[str, Any] = {
        "config": {**run_config(args), "stored_rows": sum(rows.values())},
        "rounds": rounds,
        "median_rows_and_rollups_s": round(statistics.median(loads), 3),
        "median_wall_s": round(statistics.median(r["wall_s"] for r in rounds), 3),
        "median_cpu_s": round(statistics.median(r["cpu_s"] for r in rounds), 3),
        "slow_answers_allowed_s": FIRST_S * SLOW_SHARE,
    }
    path = write_result(args.out, "first-open", args.receipts, summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}, indent=2))
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
