"""Enforcement: every write and read of a tenant's bucket is decided by the policy and logged.

Writes are decided before anything is stored (``pql_check_ingest``): one decision per bucket the
table would write to. Reads are decided before a query runs or is answered from the cache
(``pql_check_read``): one decision per bucket of another region than the engine's own. Every
decision, allow or deny, is appended to ``DATA/_pql/residency/decisions.jsonl``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pql.adapters.residency.policy import evaluate, governs, in_force, policy_for
from pql.errors import SafetyError
from pql.storage.base import GLOBAL_REGION
from pql.storage.lake import bucket_name

__all__ = ["DECISIONS", "check_read", "check_write", "decide"]

DECISIONS = Path("_pql") / "residency" / "decisions.jsonl"


def decide(
    engine: Any,
    action: str,
    tenant: str,
    region: str,
    bucket: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Evaluate one access, append the decision to the audit log, and return the result."""
    data_dir: Path = engine.data_dir
    policy = policy_for(data_dir, tenant)
    document = {
        "input": {
            "action": action,
            "tenant": tenant,
            "bucket": bucket,
            "bucket_region": region,
            "engine_region": engine.region,
            "policy": None if policy is None else policy.to_input(),
        }
    }
    result = evaluate(document)["result"]
    record = {
        "at": engine.trusted_now().isoformat(),
        **document["input"],
        **dict(extra or {}),
        "allow": result["allow"],
        "deny": result["deny"],
    }
    append_line(data_dir / DECISIONS, record)
    return dict(result)


def check_write(engine: Any, subject: str, table: pa.Table, context: Mapping[str, str]) -> None:
    """Refuse (PQL-S060) a table with rows for a bucket of a region its tenant may not live in."""
    if not in_force(engine.data_dir):
        return
    regions = (
        table.column("region")
        if "region" in table.column_names
        else pa.array([GLOBAL_REGION] * table.num_rows)
    )
    pairs = pa.table({"tenant": table.column("tenant"), "region": regions})
    unique = pairs.group_by(["tenant", "region"]).aggregate([]).sort_by([("tenant", "ascending")])
    refusals: list[tuple[str, str, str, str, dict[str, Any]]] = []
    for tenant, region in zip(
        unique.column("tenant").to_pylist(), unique.column("region").to_pylist(), strict=True
    ):
        if not governs(engine.data_dir, tenant):
            continue
        stored = engine.store.storage_region(tenant, region)  # where the rows will be kept
        bucket = bucket_name(tenant, stored, subject)
        result = decide(engine, "write", tenant, stored, bucket, {"mode": context.get("mode", "")})
        if not result["allow"]:
            refusals.append((tenant, region, stored, bucket, result))
    if refusals:
        tenant, region, stored, bucket, result = refusals[0]
        reason = result["deny"][0]
        rows = pc.sum(
            pc.and_(
                pc.equal(pairs.column("tenant"), tenant), pc.equal(pairs.column("region"), region)
            )
        ).as_py()
        raise SafetyError(
            "PQL-S060",
            f"residency refuses to write {rows:,} rows of tenant {tenant!r} to bucket {bucket} "
            f"in region {stored} (rule {reason['rule']}): {reason['message']}",
            hints=(
                "nothing was written",
                f"{context.get('mode', 'live')} ingest: store the tenant's rows in one of its "
                "regions, or change its policy",
            ),
        )


def check_read(
    engine: Any,
    tenant: str,
    subject: str,
    regions: Sequence[str],
    bucket: Callable[[str], str],
) -> None:
    """Refuse (PQL-S061) a query that would read a bucket the policy does not let it read."""
    if engine.region is None or not governs(engine.data_dir, tenant):
        return
    for region in regions:
        if region == engine.region:
            continue
        name = bucket(region)
        result = decide(engine, "read", tenant, region, name)
        if not result["allow"]:
            reason = result["deny"][0]
            raise SafetyError(
                "PQL-S061",
                f"residency refuses to read tenant {tenant!r}'s bucket {name} in region "
                f"{region} from an engine in {engine.region} (rule {reason['rule']}): "
                f"{reason['message']}",
                hints=(
                    f"run the query on an engine in {region}, or narrow its window to data "
                    f"stored in {engine.region}",
                ),
            )


def append_line(path: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line (one ``write``, so lines of two processes never interleave)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
