"""The ingest journal: ``DATA/_pql/residency/journal.jsonl``, one line per ingest that stored rows.

Each line: when, mode (``live``, ``backfill``, ``replay``), source digest, who, the engine's
region, the subject, and every object written with its tenant, region, digest and rows, and the
regions its tenant was allowed at the time (so the auditor can tell "not allowed when written").
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pql.adapters.residency.enforce import append_line
from pql.adapters.residency.objects import objects_of
from pql.adapters.residency.policy import in_force, policy_for
from pql.storage import IngestReport
from pql.storage.lake import parse_bucket

__all__ = ["JOURNAL", "entries", "record_ingest"]

JOURNAL = Path("_pql") / "residency" / "journal.jsonl"


def record_ingest(
    engine: Any, subject: str, report: IngestReport, context: Mapping[str, str]
) -> None:
    """Lock every object the ingest wrote and journal the ingest."""
    root: Path | None = engine.data_dir
    stored = objects_of(engine)
    if root is None or stored is None or not report.files or not in_force(root):
        return
    now: datetime = engine.trusted_now()
    objects = []
    for path in report.files:
        parsed = parse_bucket(path.split("/", 1)[0])
        tenant, region = (parsed[0], parsed[1]) if parsed else ("", "")
        policy = policy_for(root, tenant)
        lock = stored.lock_new(path, tenant, region, policy, now)
        objects.append(
            {
                "path": path,
                "tenant": tenant,
                "region": region,
                "sha256": lock.sha256,
                "allowed_regions": None if policy is None else list(policy.regions),
            }
        )
    append_line(
        root / JOURNAL,
        {
            "at": now.isoformat(),
            "mode": context.get("mode", "live"),
            "source": context.get("source"),
            "who": context.get("who"),
            "engine_region": engine.region,
            "subject": subject,
            "rows": report.written,
            "objects": objects,
        },
    )


def entries(root: Path) -> Iterator[dict[str, Any]]:
    """The journal's entries, oldest first; a damaged line is skipped and yields nothing."""
    path = root / JOURNAL
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                yield entry
