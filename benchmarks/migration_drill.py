"""Game-day drill: migrate a tenant with N receipts between regions while queries keep coming.

Builds a fresh data directory (the drill tenant with N receipts and as many decisions, plus two
other tenants), records every query's answer first, then migrates the drill tenant from
us-east-1 to eu-west-1 while client threads send queries at a fixed total rate across the
tenants (the drill tenant included) and compare each answer with the one recorded before.

The load is open-loop: queries arrive on a fixed schedule whatever the latency, and a pool of
workers serves them; latency counts from the scheduled arrival (queueing included). The file
reports the arrival rate achieved, p50/p95/max latency and failures over the whole run and over
the migration alone.

    python benchmarks/migration_drill.py --receipts 1000000 --qps 100

Writes ``benchmarks/results/migration-drill-{timestamp}.json``: migration time, queries served,
failed and different, latency percentiles, digests before and after.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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
LIMITS = pql.Limits(deadline_ms=60_000, max_rows=100_000)
"""A deadline long enough that a query slowed by a loaded machine is counted slow, not failed."""


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


def agree(got: list[Any], want: list[Any]) -> bool:
    """Whether two answers agree: every value equal, floats to 1e-9 relative.

    A float sum's last bits depend on the order it adds in, and the index (per-day partials)
    and the partitions add in different orders, so exact equality would count rounding as a
    changed answer; a lost or doubled row changes a count or a sum far beyond this tolerance.
    """
    if len(got) != len(want):
        return False
    for row, other in zip(got, want, strict=True):
        if len(row) != len(other):
            return False
        for a, b in zip(row, other, strict=True):
            if isinstance(a, float) and isinstance(b, float):
                if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
                    return False
            elif a != b:
                return False
    return True


def summary(
    records: list[tuple[float, float, bool, bool]],
    issued: list[float],
    window: tuple[float, float] | None,
) -> dict[str, Any]:
    """Arrivals, achieved rate, served, failed, different and latency of the queries that
    arrived in ``window`` (all when ``None``)."""
    low, high = window if window is not None else (min(issued), max(issued))
    inside = [r for r in records if low <= r[0] <= high]
    arrived = sum(low <= a <= high for a in issued)
    span = max(high - low, 1e-9)
    latencies = [r[1] for r in inside]
    return {
        "seconds": round(span, 3),
        "arrivals": arrived,
        "achieved_qps": round(arrived / span, 2),
        "served": sum(r[2] for r in inside),
        "failed": sum(not r[2] for r in inside),
        "different": sum(r[2] and not r[3] for r in inside),
        "latency_ms": {
            "p50": round(float(np.percentile(latencies, 50)), 2) if latencies else None,
            "p95": round(float(np.percentile(latencies, 95)), 2) if latencies else None,
            "max": round(max(latencies), 2) if latencies else None,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receipts", type=int, default=1_000_000)
    parser.add_argument("--qps", type=float, default=100.0)
    parser.add_argument("--workers", type=int, default=12, help="threads serving queries")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before/after")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        engine = pql.Engine(root, limits=LIMITS)
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
                max_concurrent=16,
                rows_per_day=10 * args.receipts,
                bytes_stored=1 << 40,
            ),
            now=NOW,
        )
        tenants = ("drill", "alpha", "beta")
        expected = {(t, q): answer(engine, q, t) for t in tenants for q in QUERIES}
        digest_before = content_digest(lake_of(engine), "drill")

        # Open loop: queries arrive on a fixed schedule (one every 1/qps s, round-robin over
        # tenants and queries) whether or not earlier ones have finished; a pool of workers
        # serves them. Latency is measured from the scheduled arrival, so time spent waiting
        # for a worker counts (no coordinated omission).
        lock = threading.Lock()
        records: list[tuple[float, float, bool, bool]] = []  # arrival, latency ms, ok, same
        errors: list[str] = []
        differences: list[dict[str, Any]] = []
        interval = 1.0 / args.qps
        pool = ThreadPoolExecutor(max_workers=args.workers)
        stop = threading.Event()

        def serve(arrival: float, tenant: str, query: str) -> None:
            try:
                got = answer(engine, query, tenant)
                ok, same = True, agree(got, expected[(tenant, query)])
            except pql.PQLError as exc:
                ok, same = False, False
                with lock:
                    errors.append(f"{exc.code}: {exc.message}")
            took = (time.perf_counter() - arrival) * 1000
            with lock:
                records.append((arrival, took, ok, same))
                if ok and not same:
                    differences.append(
                        {
                            "tenant": tenant,
                            "query": query,
                            "arrival_s": round(arrival, 3),
                            "got": repr(got[:5]),
                            "expected": repr(expected[(tenant, query)][:5]),
                        }
                    )

        issued: list[float] = []

        def dispatcher() -> None:
            first = time.perf_counter()
            k = 0
            while not stop.is_set():
                arrival = first + k * interval
                delay = arrival - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                tenant = tenants[k % len(tenants)]
                query = QUERIES[(k // len(tenants)) % len(QUERIES)]
                issued.append(arrival)
                pool.submit(serve, arrival, tenant, query)
                k += 1

        sender = threading.Thread(target=dispatcher)
        sender.start()
        time.sleep(args.warmup)
        began = time.perf_counter()
        report = migrate(engine, "drill", "eu-west-1", now=NOW, operator="migration-drill")
        ended = time.perf_counter()
        migration_s = ended - began
        time.sleep(args.warmup)
        stop.set()
        sender.join()
        pool.shutdown(wait=True)
        assert isinstance(report, Report)
        after = {
            (t, q): answer(pql.Engine(root, limits=LIMITS), q, t) for t in tenants for q in QUERIES
        }
        result = {
            "receipts": args.receipts,
            "decisions": args.receipts,
            "files_moved": len(report.plan["partitions"]),
            "bytes_moved": report.plan["bytes"],
            "load_s": round(load_s, 2),
            "migration_s": round(migration_s, 3),
            "timings_ms": report.timings_ms,
            "load": "open loop: fixed arrival schedule, round-robin over tenants and queries",
            "qps_target": args.qps,
            "workers": args.workers,
            "deadline_ms": LIMITS.deadline_ms,
            "all": summary(records, issued, None),
            "during_migration": summary(records, issued, (began, ended)),
            "queries_failed": sum(not r[2] for r in records),
            "answers_different": sum(r[2] and not r[3] for r in records),
            "answers_equal_after_reopen": all(agree(after[k], v) for k, v in expected.items()),
            "digest_before": digest_before,
            "digest_after": report.digest_after,
            "digests_equal": digest_before == report.digest_after,
            "errors": errors[:10],
            "differences": [
                {**d, "arrival_s": round(d["arrival_s"] - began, 3)} for d in differences[:10]
            ],
            "migration_window_s": [0.0, round(migration_s, 3)],
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
