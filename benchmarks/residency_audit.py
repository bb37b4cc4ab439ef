"""How long ``pql residency audit`` takes over N receipts, on the local directory and on S3.

For each backend: a fresh store holds N generated receipts (the demo generator: 8 tenants,
180 days, a few regions each) under a residency policy that allows every tenant its regions, so
the audit is clean; then ``pql residency audit --format json`` runs as a subprocess, timed from
start to exit (the auditor's own ``seconds`` is kept too). S3 is moto's server on 127.0.0.1,
started and stopped here (an in-memory S3 endpoint: no disk or network latency of a real one;
each object costs several HTTP requests, which is what dominates).

    python -m benchmarks.residency_audit --receipts 1000000

Writes ``benchmarks/results/residency-audit-{N}-{timestamp}.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

import pql
from pql.demo import generate

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
LOCATION = "s3://pql-meta/audit"


def say(message: str) -> None:
    if sys.stderr.isatty():
        print(message, file=sys.stderr, flush=True)


def policy_for(receipts: pl.DataFrame) -> dict[str, Any]:
    """Every tenant may live in the regions its rows are in: a clean lake."""
    pairs = receipts.select("tenant", "region").unique().sort("tenant", "region")
    tenants: dict[str, Any] = {}
    for tenant, region in pairs.iter_rows():
        tenants.setdefault(
            tenant, {"regions": [], "retention": {"mode": "compliance", "days": 365}}
        )
        tenants[tenant]["regions"].append(region)
    return {"version": 1, "tenants": tenants}


def run(backend: str, data: pl.DataFrame, work: Path, env: dict[str, str]) -> dict[str, Any]:
    state = work / backend
    (state / "_pql").mkdir(parents=True)
    (state / "_pql" / "residency.json").write_text(json.dumps(policy_for(data)))
    location: str | Path = LOCATION if backend == "s3" else state
    engine = pql.Engine(location, index=False, adapters=None)
    say(f"{backend}: ingesting {data.height:,} receipts")
    started = time.perf_counter()
    report = engine.ingest("receipts", data, who="benchmark")
    ingest_s = time.perf_counter() - started
    say(f"{backend}: {report.partitions:,} objects in {ingest_s:.1f} s; auditing")
    command = [sys.executable, "-m", "pql.cli", "residency", "audit", "--data", str(location)]
    started = time.perf_counter()
    done = subprocess.run([*command, "--format", "json"], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"the audit failed: {done.stderr}")
    audit = json.loads(done.stdout)
    return {
        "backend": backend,
        "receipts": data.height,
        "objects": audit["objects"],
        "journal_entries": audit["journal_entries"],
        "violations": len(audit["violations"]),
        "ingest_seconds": round(ingest_s, 2),
        "audit_wall_seconds": round(wall, 2),
        "audit_seconds": audit["seconds"],
        "objects_per_second": round(audit["objects"] / max(audit["seconds"], 1e-9), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receipts", type=int, default=1_000_000)
    parser.add_argument("--backends", default="local,s3")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    data = generate(args.receipts, seed=7, now=NOW).receipts
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for backend in backends:
            env = dict(os.environ)
            if backend != "s3":
                results.append(run(backend, data, work, env))
                continue
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
            from tests.s3server import CREDENTIALS, moto_server

            with moto_server() as url:
                env.update(
                    AWS_ENDPOINT_URL=url,
                    AWS_ACCESS_KEY_ID=CREDENTIALS["access_key"],
                    AWS_SECRET_ACCESS_KEY=CREDENTIALS["secret_key"],
                    PQL_S3_STATE=str(work / backend),
                )
                os.environ.update(env)
                results.append(run(backend, data, work, env))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = {
        "benchmark": "residency-audit",
        "receipts": args.receipts,
        "cpus": os.cpu_count(),
        "note": "2 shared cores, loaded by other work; S3 is moto's in-memory server on 127.0.0.1",
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"residency-audit-{args.receipts // 1000}k-{stamp}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
