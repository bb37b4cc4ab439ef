"""Index loads from Parquet vs from snapshots, per tenant, on the demo data.

    python -m benchmarks.snapshots --receipts 1000000

Writes a lake, then for each tenant (the largest first) times ``repeat`` loads of its index
from the Parquet files (snapshots off) and, after they are written, from its snapshots, and
reports the medians, the disk the snapshots take next to the Parquet files, and where the time
of a snapshot load goes. Results go to ``benchmarks/results/snapshots-*.json``.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import pql
from benchmarks.data import options, write_result
from pql.catalog import Catalog
from pql.demo import generate
from pql.storage import Lake
from pql.storage.lake import SNAPSHOT_DIR
from pql.storage.snapshots import Snapshots


def _size(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def main(argv: list[str] | None = None) -> int:
    args = options(__doc__.split("\n")[0], repeat=3).parse_args(argv)
    data = generate(args.receipts, seed=args.seed, tenants=args.tenants)
    with tempfile.TemporaryDirectory(prefix="pql-snapshots-") as scratch:
        root = Path(scratch) / "lake"
        writer = pql.Engine(root, index=False)
        writer.ingest("receipts", data.receipts)
        writer.ingest("decisions", data.decisions)
        catalog = Catalog()
        lake = Lake(root, catalog)
        snapshots = Snapshots(lake)
        tenants = data.receipts["tenant"].value_counts(sort=True)["tenant"].to_list()
        rows: dict[str, dict[str, object]] = {}
        for tenant in tenants:
            parquet, snap = [], []
            for _ in range(args.repeat):  # from Parquet: snapshots dropped before each load
                lake.drop_snapshots(tenant)
                t = time.perf_counter()
                loaded = snapshots.load(tenant, catalog, rollups=True)
                parquet.append(time.perf_counter() - t)
            t = time.perf_counter()
            snapshots.write(loaded.pending)
            write_s = time.perf_counter() - t
            for _ in range(args.repeat):
                t = time.perf_counter()
                again = snapshots.load(tenant, catalog, rollups=True)
                snap.append(time.perf_counter() - t)
                assert again.source == "snapshot", again.source
            buckets = {e.storage for e in lake.manifest().files if e.tenant == tenant}
            rows[tenant] = {
                "rows": loaded.store.rows(),
                "storage_regions": len(buckets),
                "parquet_load_s": round(statistics.median(parquet), 4),
                "snapshot_load_s": round(statistics.median(snap), 4),
                "snapshot_write_s": round(write_s, 4),
                "speedup": round(statistics.median(parquet) / statistics.median(snap), 1),
            }
            print(tenant, rows[tenant])
        parquet_bytes = _size(list(root.glob("mc-*/day=*/*.parquet")))
        snapshot_bytes = _size(list(root.glob(f"mc-*/{SNAPSHOT_DIR}/*.arrow")))
    summary = {
        "receipts": data.receipts.height,
        "decisions": data.decisions.height,
        "tenants": rows,
        "total_parquet_load_s": round(
            sum(float(str(r["parquet_load_s"])) for r in rows.values()), 3
        ),
        "total_snapshot_load_s": round(
            sum(float(str(r["snapshot_load_s"])) for r in rows.values()), 3
        ),
        "parquet_bytes": parquet_bytes,
        "snapshot_bytes": snapshot_bytes,
        "snapshot_bytes_per_receipt": round(snapshot_bytes / data.receipts.height, 1),
        "repeat": args.repeat,
        "note": "the machine was shared with other jobs and loaded: timings are noisy",
    }
    path = write_result(args.out, "snapshots", args.receipts, summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "tenants"}), "->", path.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
