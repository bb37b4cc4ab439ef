"""``pql demo``: generate sample data into a lake and answer example queries from it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TextIO

import polars as pl

from pql.engine import Engine
from pql.errors import PQLError

__all__ = ["DEMO_QUERIES", "run_demo"]

DEMO_QUERIES: tuple[str, ...] = (
    "FIND COUNT(receipts.executionId) SINCE 7d",
    "FIND COUNT(*), AVG(receipts.latency_ms), SUM(receipts.cost_usd) "
    "GROUP BY receipts.region SINCE 180d",
    'FIND AVG(receipts.latency_ms) AS avg_ms WHERE workflow IN ("etl", "billing") '
    "GROUP BY receipts.workflow SINCE 30d",
    'FIND receipts WHERE receipts.status = "error" AND latency_ms > 250 SINCE 30d '
    "ORDER BY latency_ms DESC LIMIT 5",
    "FIND COUNT(decisions.decisionId) AS denies "
    "JOIN receipts ON decisions.executionId = receipts.executionId "
    'WHERE decisions.effect = "deny" AND NOT (receipts.status = "ok") '
    "GROUP BY decisions.rule SINCE 7d ORDER BY denies DESC",
    "FIND receipts SINCE 365d",
    'FIND receipts WHERE receipts.status = "error" AND latncy_ms > 250',
)


def run_demo(data: Path, *, receipts: int, seed: int, out: TextIO) -> int:
    """Generate ``receipts`` demo receipts (seeded), ingest them into ``data``, run the queries."""
    from pql.demo import generate

    t = time.perf_counter()
    demo = generate(receipts, seed=seed)
    out.write(
        f"generated {demo.receipts.height:,} receipts and {demo.decisions.height:,} decisions "
        f"in {time.perf_counter() - t:.2f}s (seed {seed})\n"
    )
    engine = Engine(data)
    t = time.perf_counter()
    for subject, frame in (("receipts", demo.receipts), ("decisions", demo.decisions)):
        report = engine.ingest(subject, frame)
        out.write(
            f"ingested {subject}: {report.written:,} stored, {report.duplicates:,} duplicates "
            f"skipped, {report.partitions:,} partition files\n"
        )
    out.write(f"ingest took {time.perf_counter() - t:.2f}s into {data}\n")
    tenant = demo.receipts["tenant"].value_counts(sort=True)["tenant"][0]
    now = demo.now
    out.write(f"\nqueries for tenant {tenant!r}, now = {now.isoformat()}\n")
    with pl.Config(tbl_rows=20, tbl_cols=-1, fmt_str_lengths=40, tbl_width_chars=160):
        for text in DEMO_QUERIES:
            out.write(f"\npql> {text}\n")
            try:
                result = engine.query(text, tenant=tenant, now=now)
            except PQLError as exc:
                out.write(exc.render() + "\n")
                continue
            out.write(f"{result.df}\n")
            stats = result.stats
            out.write(
                f"-- {stats['rows']} rows; scanned {stats['rows_scanned']:,} rows in "
                f"{stats['partitions_read']} partitions; {stats['timings_ms']['total']:.1f} ms\n"
            )
    return 0
