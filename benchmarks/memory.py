"""Resident memory of an engine holding the demo data: ``python -m benchmarks.memory``.

Generates ``--receipts`` demo receipts (about 1.55 decisions each), ingests them into an
in-memory engine, drops the generated source frames, and reports the process's current resident
set size (VmRSS) next to the engine's own estimate of its data (rows, ts index, rollups). Writes
``benchmarks/results/memory-<N>k.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import pql
from pql.demo import generate
from pql.storage import MemoryStore

RESULTS = Path(__file__).parent / "results"


def rss_bytes() -> int:
    """The current resident set size of this process (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--receipts", type=int, default=10_000_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    base = rss_bytes()
    t = time.perf_counter()
    data = generate(args.receipts, seed=args.seed)
    receipts, decisions = data.receipts.height, data.decisions.height
    engine = pql.Engine.in_memory()
    engine.ingest("receipts", data.receipts)
    engine.ingest("decisions", data.decisions)
    setup = time.perf_counter() - t
    del data
    gc.collect()
    time.sleep(1)
    store = engine.store
    assert isinstance(store, MemoryStore)
    # One query per tenant, so statistics and per-tenant state are built as in service.
    for tenant in store.tenants():
        engine.query("FIND COUNT(*) AS n WHERE receipts.status = 'ok' SINCE 7d", tenant=tenant)
    gc.collect()
    report = {
        "receipts": receipts,
        "decisions": decisions,
        "setup_s": round(setup, 1),
        "rss_bytes": rss_bytes(),
        "rss_gib": round(rss_bytes() / 2**30, 2),
        "rss_before_bytes": base,
        "engine_data_bytes": store.memory_bytes(),
        "engine_data_gib": round(store.memory_bytes() / 2**30, 2),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"memory-{args.receipts // 1000}k.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
