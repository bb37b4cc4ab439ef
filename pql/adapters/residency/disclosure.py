"""The residency section of a tenant's disclosure pack (``pql_disclosure``).

The policy in force for the tenant (regions, cross-region reads, retention, legal hold, where
the regions came from), the engine's region, and the lock settings of the tenant's stored
objects: how many are locked, by mode, the earliest and latest retention date, legal holds.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pql.adapters.residency.lock import LOCKS, read_lock
from pql.adapters.residency.policy import policy_for
from pql.storage.lake import parse_bucket

__all__ = ["section"]


def section(engine: Any, tenant: str) -> dict[str, Any] | None:
    """``{"residency": {...}}`` for ``tenant``, or ``None`` without a data directory."""
    data_dir: Path | None = getattr(engine, "data_dir", None)
    if data_dir is None:
        return None
    policy = policy_for(data_dir, tenant)
    root = data_dir / LOCKS
    buckets = [
        b
        for b in (sorted(root.glob(f"mc-{tenant}-*")) if root.is_dir() else [])
        if (parsed := parse_bucket(b.name)) is not None and parsed[0] == tenant
    ]
    locks = [
        lock
        for bucket in buckets
        for path in sorted(bucket.rglob("*.json"))
        if (lock := read_lock(data_dir, str(path.relative_to(root))[: -len(".json")])) is not None
        and lock.tags.get("tenant") == tenant
    ]
    modes = Counter(lock.mode for lock in locks)
    retain = sorted(lock.retain_until for lock in locks)
    return {
        "residency": {
            "policy": None if policy is None else policy.to_input(),
            "engine_region": getattr(engine, "region", None),
            "locks": {
                "objects": len(locks),
                "modes": dict(sorted(modes.items())),
                "legal_holds": sum(lock.legal_hold for lock in locks),
                "retain_until_min": retain[0].isoformat() if retain else None,
                "retain_until_max": retain[-1].isoformat() if retain else None,
                "default_retention": None
                if policy is None
                else {"mode": policy.retention.mode, "days": policy.retention.days},
            },
        }
    }
