"""``pql demo``: generate sample data into a lake and answer example queries from it.

The demo writes synthetic rows for made-up tenants, so it only writes into a directory that is
new, empty, or that an earlier demo made: it marks its lakes with a file :data:`MARKER` and
refuses (``PQL-E141``) any other directory, so that a real lake never gets demo rows.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TextIO

import polars as pl

from pql.engine import Engine
from pql.errors import InputError, PQLError

__all__ = ["DEMO_QUERIES", "MARKER", "check_demo_dir", "run_demo"]

MARKER = ".pql-demo"
"""The file at the top of a lake that says ``pql demo`` made it (and so may add to it)."""

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
    """Generate ``receipts`` demo receipts (seeded), ingest them into ``data``, run the queries.

    ``data`` must be new, empty or a demo lake (:func:`check_demo_dir`); ``receipts`` at least 1.
    """
    from pql.demo import generate

    if isinstance(receipts, bool) or not isinstance(receipts, int) or receipts < 1:
        raise InputError(
            "PQL-E140",
            f"pql demo needs at least one receipt, not --receipts {receipts!r}",
            hints=("pass --receipts N with N of 1 or more (the default is 200,000)",),
            setting="--receipts",
        )
    check_demo_dir(data)
    t = time.perf_counter()
    demo = generate(receipts, seed=seed)
    out.write(
        f"generated {demo.receipts.height:,} receipts and {demo.decisions.height:,} decisions "
        f"in {time.perf_counter() - t:.2f}s (seed {seed})\n"
    )
    engine = Engine(data, index=False)  # one-shot: each query reads only its window
    _mark(data, seed)
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


def check_demo_dir(data: Path) -> None:
    """Refuse ``data`` unless it is new, an empty directory, or a lake ``pql demo`` made."""
    if not data.exists() or (data / MARKER).is_file():
        return
    if data.is_dir() and not any(data.iterdir()):
        return
    what = "a directory that is not empty" if data.is_dir() else "a file"
    raise InputError(
        "PQL-E141",
        f"{str(data)!r} is {what} and no demo made it: pql demo would add synthetic rows to it",
        hints=(
            "give pql demo a new or empty directory: pql demo --data NEW_DIR",
            f"a directory made by pql demo holds a {MARKER} file; only such a directory is reused",
        ),
        setting="--data",
    )


def _mark(data: Path, seed: int) -> None:
    """Write the marker that makes ``data`` a demo lake (before any demo row is written)."""
    marker = data / MARKER
    if marker.is_file():
        return
    data.mkdir(parents=True, exist_ok=True)
    note = {"made_by": "pql demo", "seed": seed, "note": "every row here is synthetic demo data"}
    marker.write_text(json.dumps(note) + "\n")
