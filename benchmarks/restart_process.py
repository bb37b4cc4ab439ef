"""A restart in a new process: what a restarted service's first queries wait for.

The load harness's ``--start restart`` reopens the engine in the process that has just loaded
it, so everything the engine imports on first use is imported already, which a new process is
not. This starts a new Python process for each run, on the cached demo data (its snapshots
written first, ``pql lake snapshots``), and in it imports pql, opens ``pql.Engine(DIR)`` with the
README's defaults, and then:

- ``first``: every tenant's first query at once, one thread each (traffic after a deploy);
- ``burst``: ``--burst`` more queries right after, from four threads, every tenant in turn,
  each a dashboard shape of the load harness in turn, while the engine finishes its indexes;
- ``warm``: once every index is finished, the same burst again.

Per run it reports the seconds to import pql and open the engine, the slowest first answer,
the bursts' p50 and p95 and their ratio (burst / warm), and whether pandas was imported. The
runs' medians are printed and everything is written to
``benchmarks/results/restart-process-<N>k-<stamp>.json``. From the repository root::

    python -m benchmarks.restart_process --receipts 10000000
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.data import cached_data, options, write_result
from pql.catalog import Catalog
from pql.storage.lake import Lake
from pql.storage.prepare import prepare

# Run in the new process: argv is the lake, the data's instant, the burst's size. Prints JSON.
_RUN = """
import json, statistics, sys, threading, time
started = time.perf_counter()
import pql
from datetime import datetime
from benchmarks.harness import DASHBOARDS
root, now, burst = sys.argv[1], datetime.fromisoformat(sys.argv[2]), int(sys.argv[3])
engine = pql.Engine(root)
opened = time.perf_counter() - started
tenants = sorted(engine.store.tenants())
shapes = [DASHBOARDS[name] for name in sorted(DASHBOARDS)]

def ask(tenant, text, into):
    begun = time.perf_counter()
    engine.query(text, tenant=tenant, now=now, cache=False)
    into.append(time.perf_counter() - begun)

def together(work):
    threads = [threading.Thread(target=job) for job in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

def burst_of(into):
    def worker(first):
        for k in range(first, burst, 4):
            ask(tenants[k % len(tenants)], shapes[k % len(shapes)], into)
    together([lambda first=i: worker(first) for i in range(4)])

first = []
together([lambda t=t: ask(t, shapes[0], first) for t in tenants])
paths = sorted(engine.query(shapes[0], tenant=t, now=now).stats["path"] for t in tenants)
after = []
burst_of(after)
assert engine.store.wait_ready(600)
warm = []
burst_of(warm)

def quantile(values, q):
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]

print(json.dumps({
    "import_and_open_s": round(opened, 3),
    "first_max_ms": round(1e3 * max(first), 2),
    "first_paths": sorted(set(paths)),
    "burst_p50_ms": round(1e3 * statistics.median(after), 2),
    "burst_p95_ms": round(1e3 * quantile(after, 0.95), 2),
    "warm_p50_ms": round(1e3 * statistics.median(warm), 2),
    "warm_p95_ms": round(1e3 * quantile(warm, 0.95), 2),
    "pandas_imported": "pandas" in sys.modules,
}))
"""


def run_once(lake: Path, now: str, burst: int) -> dict[str, Any]:
    """One new process on ``lake``: its figures (see the module docs)."""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", _RUN, str(lake), now, str(burst)],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    )
    found: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    found["burst_over_warm_p95"] = round(found["burst_p95_ms"] / found["warm_p95_ms"], 2)
    return found


def main(argv: list[str] | None = None) -> int:
    ap = options(__doc__.split("\n")[0], repeat=5)
    ap.add_argument("--burst", type=int, default=200, help="queries in each burst")
    args = ap.parse_args(argv)
    data = cached_data(args.receipts, tenants=args.tenants, seed=args.seed)
    catalog = Catalog()
    written = prepare(Lake(data.lake, catalog), catalog)  # nothing when they are current
    runs = [run_once(data.lake, data.now.isoformat(), args.burst) for _ in range(args.repeat)]
    keys = [k for k, v in runs[0].items() if isinstance(v, float | int) and not isinstance(v, bool)]
    medians = {k: round(statistics.median(run[k] for run in runs), 3) for k in keys}
    for i, run in enumerate(runs, 1):
        print(f"run {i}: " + ", ".join(f"{k} {run[k]}" for k in keys))
    print("median: " + ", ".join(f"{k} {v}" for k, v in medians.items()))
    summary = {
        "benchmark": "restart_process",
        "receipts": args.receipts,
        "tenants": args.tenants,
        "burst": args.burst,
        "snapshots_written_first": len(written.written),
        "runs": runs,
        "median": medians,
    }
    path = write_result(args.out, "restart-process", args.receipts, summary)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
