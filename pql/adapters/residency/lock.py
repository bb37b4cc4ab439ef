"""Object lock on the local directory: a retention date, a mode, a legal hold and tags per file.

Every data file an ingest writes gets a sidecar ``DATA/_pql/locks/<file>.json``::

    {"version": 1, "object": "mc-acme-us-east-1-receipts/day=.../part-....parquet",
     "sha256": "...", "bytes": 1234, "written": "...", "retain_until": "...",
     "mode": "compliance", "legal_hold": false,
     "tags": {"tenant": "acme", "region": "us-east-1"}}

The library enforces it: before the retention date (or while a legal hold is on) a compliance
object cannot be deleted or replaced by anyone (PQL-S062); a governance object only through
:func:`delete_object` with ``bypass_governance=True`` and a name, which is logged (PQL-S063
otherwise). The lake's own deletes and moves (orphan collection, quarantine) ask
:func:`check_remove` first (the ``pql_check_remove`` hook).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pql.adapters.residency.enforce import DECISIONS, append_line
from pql.adapters.residency.policy import Policy
from pql.errors import InputError, SafetyError
from pql.storage.lake import atomic_write

__all__ = ["LOCKS", "Lock", "check_remove", "delete_object", "file_digest", "read_lock"]

LOCKS = Path("_pql") / "locks"
VERSION = 1


@dataclass(frozen=True, slots=True)
class Lock:
    """The lock of one stored object, as its sidecar keeps it."""

    object: str
    sha256: str
    bytes: int
    written: datetime
    retain_until: datetime
    mode: str
    legal_hold: bool
    tags: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "object": self.object,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "written": self.written.isoformat(),
            "retain_until": self.retain_until.isoformat(),
            "mode": self.mode,
            "legal_hold": self.legal_hold,
            "tags": dict(self.tags),
        }

    def locked_at(self, now: datetime) -> bool:
        return self.legal_hold or now < self.retain_until


def sidecar(root: Path, path: str) -> Path:
    return root / LOCKS / f"{path}.json"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lock_object(
    root: Path, path: str, tenant: str, region: str, policy: Policy | None, now: datetime
) -> Lock:
    """Write the sidecar of a new object with the policy's retention (default: compliance,
    365 days) and tags; returns the lock."""
    target = sidecar(root, path)
    if target.exists():
        raise SafetyError(
            "PQL-S062", f"object {path} is already locked: it cannot be written again"
        )
    retention_days = 365 if policy is None else policy.retention.days
    lock = Lock(
        object=path,
        sha256=file_digest(root / path),
        bytes=(root / path).stat().st_size,
        written=now,
        retain_until=now + timedelta(days=retention_days),
        mode="compliance" if policy is None else policy.retention.mode,
        legal_hold=False if policy is None else policy.legal_hold,
        tags={"tenant": tenant, "region": region},
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, json.dumps(lock.to_json(), sort_keys=True).encode("utf-8"))
    return lock


def read_lock(root: Path, path: str) -> Lock | None:
    """The lock of ``path``, or ``None`` when it has no (readable) sidecar."""
    try:
        raw = json.loads(sidecar(root, path).read_text(encoding="utf-8"))
        return Lock(
            object=str(raw["object"]),
            sha256=str(raw["sha256"]),
            bytes=int(raw["bytes"]),
            written=datetime.fromisoformat(raw["written"]),
            retain_until=datetime.fromisoformat(raw["retain_until"]),
            mode=str(raw["mode"]),
            legal_hold=bool(raw["legal_hold"]),
            tags={str(k): str(v) for k, v in dict(raw.get("tags") or {}).items()},
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_remove(
    root: Path,
    path: str,
    action: str,
    *,
    now: datetime | None = None,
    bypass_by: str | None = None,
) -> None:
    """Refuse to delete, move or replace a locked object (see the module docs)."""
    lock = read_lock(root, path)
    when = now or datetime.now(UTC)
    if lock is None or not lock.locked_at(when):
        return
    where = f"object {path} (tenant {lock.tags.get('tenant')}, region {lock.tags.get('region')})"
    if lock.legal_hold:
        raise SafetyError(
            "PQL-S062",
            f"cannot {action} {where}: it is under legal hold",
            hints=("a legal hold is lifted only by whoever placed it",),
        )
    if lock.mode == "compliance":
        raise SafetyError(
            "PQL-S062",
            f"cannot {action} {where}: compliance retention until {lock.retain_until.isoformat()}",
            hints=("nobody can remove a compliance-locked object before its retention date",),
        )
    if bypass_by is None:
        raise SafetyError(
            "PQL-S063",
            f"cannot {action} {where}: governance retention until {lock.retain_until.isoformat()}",
            hints=("pql residency delete --bypass-governance --who NAME removes it, audited",),
        )
    append_line(
        root / DECISIONS,
        {
            "at": when.isoformat(),
            "action": f"{action}-bypass-governance",
            "object": path,
            "who": bypass_by,
            "tenant": lock.tags.get("tenant"),
            "bucket_region": lock.tags.get("region"),
            "allow": True,
            "deny": [],
        },
    )


def delete_object(
    root: Path,
    path: str,
    *,
    now: datetime | None = None,
    bypass_governance: bool = False,
    who: str | None = None,
) -> None:
    """Delete a stored object if its lock allows; a governance bypass needs ``who``."""
    if bypass_governance and not who:
        raise InputError("PQL-E403", "a governance bypass needs the name of who asks for it")
    if not (root / path).is_file():
        raise InputError("PQL-E404", f"{path} is not a stored object of {root.name}")
    check_remove(root, path, "delete", now=now, bypass_by=who if bypass_governance else None)
    os.remove(root / path)
