"""Game-day drill: migrate a tenant with N receipts between regions while queries keep coming.

Builds a fresh data directory (the drill tenant with N receipts and as many decisions, plus two
other tenants), records every query's answer first, then migrates the drill tenant from
us-east-1 to eu-west-1 while client threads send queries at a fixed total rate across the
tenants (the drill tenant included) and compare each answer with the one recorded before.

    python benchmarks/migration_drill.py --receipts 1000000 --qps 100

Writes ``benchmarks/results/migration-drill-{timestamp}.json``: migration time, queries served,
failed and different, latency percentiles, digests before and after.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import pql
from pql.adapters.tenancy import Registry, TenantSpec
from pql.adapters.tenancy.migrate import Report, content_digest, lake_of, migrate

QUERIES = (
    "FIND COUNT(*) AS n, SUM(receipts.cost_usd) AS c GROUP BY receipts.region SINCE 30d",
    "FIND COUNT(*) AS n WHERE receipts.status = 'error' SINCE 7d",
    "FIND receipts WHERE status = 'error' SINCE 1d ORDER BY executionId LIMIT 20",
)
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def frames(tenant: str, n: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    offsets = rng.integers(60, 30 * 86_400, n)
    ts = pl.Series([NOW] * n).dt.replace_time_zone(None) - pl.Series(
        offsets * 1_000_000, dtype=pl.Duration("us")
    )
    ids = pl.Series([f"{tenant}-{i}" for i in range(n)])
    regions = np.where(rng.random(n) < 0.7, "us-east-1", "us-west-2")
    receipts = pl.DataFrame(
        {
            "executionId": ids,
            "tenant": [tenant] * n,
            "region": regions,
            "ts": ts,
            "workflow": rng.choice(["etl", "bill", "sync"], n),
            "status": rng.choice(["ok", "ok", "ok", "error"], n),
            "latency_ms": rng.gamma(2.0, 50.0, n),
            "cost_usd": rng.random(n) / 10,
        }
    )
    decisions = pl.DataFrame(
        {
            "decisionId": ids + "-d",
            "executionId": ids,
            "tenant": [tenant] * n,
            "region": regions,
            "ts": ts,
            "rule": rng.choice(["r1", "r2"], n),
            "effect": rng.choice(["allow", "deny"], n),
            "policy_version": ["v1"] * n,
        }
    )
    return receipts, decisions


def answer(engine: pql.Engine, query: str, tenant: str) -> list[Any]:
    df = engine.query(query, tenant=tenant, now=NOW, cache=False, record=False).df
    return sorted(df.rows(), key=repr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receipts", type=int, default=1_000_000)
    parser.add_argument("--qps", type=float, default=100.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        engine = pql.Engine(root)
        started = time.perf_counter()
        for tenant, n, seed in (
            ("drill", args.receipts, 1),
            ("alpha", 20_000, 2),
            ("beta", 20_000, 3),
        ):
            receipts, decisions = frames(tenant, n, seed)
            engine.ingest("receipts", receipts)
            engine.ingest("decisions", decisions)
        load_s = time.perf_counter() - started
        Registry(root).create(
            TenantSpec(
                "drill",
                "us-east-1",
                allowed_regions=("us-east-1", "eu-west-1"),
                latency_ms=60_000,
                max_rows=100_000,
                rows_per_day=10 * args.receipts,
                bytes_stored=1 << 40,
            ),
            now=NOW,
        )
        tenants = ("drill", "alpha", "beta")
        expected = {(t, q): answer(engine, q, t) for t in tenants for q in QUERIES}
        digest_before = content_digest(lake_of(engine), "drill")

        stop = threading.Event()
        lock = threading.Lock()
        stats = {"served": 0, "failed": 0, "different": 0, "during_served": 0}
        latencies: list[float] = []
        errors: list[str] = []
        migrating = threading.Event()
        interval = args.clients / args.qps

        def client(index: int) -> None:
            tick = time.perf_counter() + index * interval / args.clients
            k = index
            while not stop.is_set():
                tenant = tenants[k % len(tenants)]
                query = QUERIES[(k // len(tenants)) % len(QUERIES)]
                k += args.clients
                began = time.perf_counter()
                try:
                    got = answer(engine, query, tenant)
                    ok, same = True, got == expected[(tenant, query)]
                except pql.PQLError as exc:
                    ok, same = False, False
                    errors.append(f"{exc.code}: {exc.message}")
                took = time.perf_counter() - began
                with lock:
                    stats["served" if ok else "failed"] += 1
                    stats["different"] += int(ok and not same)
                    stats["during_served"] += int(ok and migrating.is_set())
                    latencies.append(took * 1000)
                tick += interval
                time.sleep(max(0.0, tick - time.perf_counter()))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        migrating.set()
        began = time.perf_counter()
        report = migrate(engine, "drill", "eu-west-1", now=NOW, operator="migration-drill")
        migration_s = time.perf_counter() - began
        migrating.clear()
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join()
        assert isinstance(report, Report)
        after = {(t, q): answer(pql.Engine(root), q, t) for t in tenants for q in QUERIES}
        result = {
            "receipts": args.receipts,
            "decisions": args.receipts,
            "files_moved": len(report.plan["partitions"]),
            "bytes_moved": report.plan["bytes"],
            "load_s": round(load_s, 2),
            "migration_s": round(migration_s, 3),
            "timings_ms": report.timings_ms,
            "qps_target": args.qps,
            "queries_served": stats["served"],
            "queries_served_during_migration": stats["during_served"],
            "queries_failed": stats["failed"],
            "answers_different": stats["different"],
            "answers_equal_after_reopen": after == expected,
            "latency_ms": {
                "p50": round(float(np.percentile(latencies, 50)), 2),
                "p99": round(float(np.percentile(latencies, 99)), 2),
                "max": round(max(latencies), 2),
            },
            "digest_before": digest_before,
            "digest_after": report.digest_after,
            "digests_equal": digest_before == report.digest_after,
            "errors": errors[:10],
            "ran_at": datetime.now(UTC).isoformat(),
        }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"migration-drill-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
