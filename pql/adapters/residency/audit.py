"""The auditor: scan the ingest journal and the stored objects and report every violation.

Kinds (each with its evidence):

====================  ========================================================================
kind                  found when
====================  ========================================================================
region-not-allowed    an object lives in a region its tenant may not live in, now or when
                      it was written (the journal keeps the regions allowed then)
foreign-rows          a tenant's bucket holds rows of another tenant
lock-missing          an object has no lock (no sidecar)
retention-short       its retention is shorter, or its mode weaker, than the policy's
tags-wrong            its tenant/region tags are missing or do not match its bucket
cross-region-write    a backfill or replay wrote to a region other than its engine's, or to
                      more than one region
digest-mismatch       an object's digest no longer matches the journal
object-missing        a journal entry names an object that is gone
====================  ========================================================================
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pql.adapters.residency.journal import entries
from pql.adapters.residency.lock import Lock
from pql.adapters.residency.objects import LocalObjects, Objects
from pql.adapters.residency.policy import Policy, governs, policy_for
from pql.storage.lake import parse_bucket

__all__ = ["KINDS", "AuditReport", "Violation", "audit"]

KINDS = (
    "region-not-allowed",
    "foreign-rows",
    "lock-missing",
    "retention-short",
    "tags-wrong",
    "cross-region-write",
    "digest-mismatch",
    "object-missing",
)
CROSSING_MODES = ("backfill", "replay")


@dataclass(frozen=True, slots=True)
class Violation:
    """One violation: its kind, where (tenant, region, object), when written, and the evidence."""

    kind: str
    tenant: str
    region: str
    object: str
    at: str
    evidence: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What one audit found, and how much it looked at."""

    violations: tuple[Violation, ...]
    objects: int
    journal_entries: int
    backfill_scans: int
    seconds: float

    def counts(self) -> dict[str, int]:
        return {k: sum(v.kind == k for v in self.violations) for k in KINDS}

    def to_dict(self) -> dict[str, Any]:
        return {
            "violations": [v.to_dict() for v in self.violations],
            "counts": self.counts(),
            "objects": self.objects,
            "journal_entries": self.journal_entries,
            "backfill_scans": self.backfill_scans,
            "seconds": round(self.seconds, 3),
        }


def audit(source: Path | Objects, *, since: datetime | None = None) -> AuditReport:
    """Audit the lake at ``source`` (a local data directory, or the objects of a store, e.g.
    :class:`~pql.adapters.residency.objects.S3Objects`): its objects and journal entries written
    at or after ``since``."""
    import time

    started = time.perf_counter()
    stored = LocalObjects(source) if isinstance(source, Path) else source
    root = stored.root
    policies = _Policies(root)
    found: list[Violation] = []
    journal = [e for e in entries(root) if _after(e.get("at"), since)]
    recorded: dict[str, dict[str, Any]] = {}
    scans = 0
    for entry in journal:
        if entry.get("mode") in CROSSING_MODES:
            scans += 1
            found.extend(_crossing(entry))
        for obj in entry.get("objects", []):
            recorded[str(obj.get("path"))] = {**obj, "at": entry.get("at", "")}
    listed = list(stored.stored())
    stored.prefetch([*recorded, *listed])
    for path, obj in recorded.items():
        found.extend(_journalled(stored, path, obj))
    objects = 0
    for path in listed:
        parsed = parse_bucket(path.split("/", 1)[0])
        if parsed is None:
            continue
        lock = stored.lock(path)
        written = lock.written.isoformat() if lock else recorded.get(path, {}).get("at", "")
        if not _after(written, since):
            continue
        objects += 1
        tenant, region, _subject = parsed
        policy = policies.get(tenant)
        # A tenant residency does not decide for (under a registry alone, an unregistered one
        # such as preflight's synthetic shadow tenant) is audited as enforcement treats it:
        # its objects' locks and tags are checked, its regions are not.
        governed = policy is not None or governs(root, tenant)
        found.extend(_object(stored, path, lock, tenant, region, written, policy, governed))
    unique = {(v.kind, v.object): v for v in reversed(found)}  # one per kind and object
    found = sorted(unique.values(), key=lambda v: (v.at, v.tenant, v.region, v.kind, v.object))
    return AuditReport(tuple(found), objects, len(journal), scans, time.perf_counter() - started)


class _Policies:
    """Each tenant's current policy, looked up once per audit."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.known: dict[str, Policy | None] = {}

    def get(self, tenant: str) -> Policy | None:
        if tenant not in self.known:
            self.known[tenant] = policy_for(self.root, tenant)
        return self.known[tenant]


def _after(at: object, since: datetime | None) -> bool:
    if since is None:
        return True
    try:
        return datetime.fromisoformat(str(at)) >= since
    except ValueError:
        return True  # an undated record is always audited


def _crossing(entry: dict[str, Any]) -> list[Violation]:
    objects = entry.get("objects", [])
    regions = sorted({str(o.get("region")) for o in objects})
    home = entry.get("engine_region")
    outside = [r for r in regions if home is not None and r != home]
    if not outside and len(regions) <= 1:
        return []
    first = objects[0] if objects else {}
    where = f"from an engine in {home}" if home else "from an engine of no declared region"
    return [
        Violation(
            "cross-region-write",
            str(first.get("tenant", "")),
            ",".join(outside or regions),
            str(first.get("path", "")),
            str(entry.get("at", "")),
            f"{entry.get('mode')} by {entry.get('who')} (source {entry.get('source')}) {where} "
            f"wrote {len(objects)} objects to regions {', '.join(regions)}",
        )
    ]


def _journalled(stored: Objects, path: str, obj: dict[str, Any]) -> list[Violation]:
    tenant, region, at = str(obj.get("tenant")), str(obj.get("region")), str(obj.get("at"))
    if not stored.exists(path):
        return [
            Violation(
                "object-missing", tenant, region, path, at, "the journal names it; it is gone"
            )
        ]
    found = []
    digest = stored.digest(path)
    if digest != obj.get("sha256"):
        found.append(
            Violation(
                "digest-mismatch",
                tenant,
                region,
                path,
                at,
                f"journal sha256 {str(obj.get('sha256'))[:16]}..., stored {digest[:16]}...",
            )
        )
    allowed = obj.get("allowed_regions")
    if isinstance(allowed, list) and region not in allowed:
        found.append(
            Violation(
                "region-not-allowed",
                tenant,
                region,
                path,
                at,
                f"when written, {tenant} was allowed only {', '.join(allowed)}",
            )
        )
    return found


def _object(
    stored: Objects,
    path: str,
    lock: Lock | None,
    tenant: str,
    region: str,
    at: str,
    policy: Policy | None,
    governed: bool = True,
) -> list[Violation]:
    found = []

    def add(kind: str, evidence: str) -> None:
        found.append(Violation(kind, tenant, region, path, at, evidence))

    if policy is None:
        if governed:
            add("region-not-allowed", f"tenant {tenant} has no residency policy")
    elif region not in policy.regions:
        add("region-not-allowed", f"now {tenant} may live only in {', '.join(policy.regions)}")
    try:
        others = sorted(t for t in stored.tenants_in(path) if t != tenant)
    except (OSError, ValueError, KeyError):  # unreadable: the digest check tells the change
        others = []
    if others:
        add("foreign-rows", f"rows of {', '.join(others)} in {tenant}'s bucket")
    if lock is None:
        add("lock-missing", stored.unlocked)
        return found
    if policy is not None:
        wanted = timedelta(days=policy.retention.days)
        if lock.retain_until - lock.written < wanted:
            add(
                "retention-short",
                f"retained until {lock.retain_until.date()}, the policy wants {wanted.days} days "
                f"from {lock.written.date()}",
            )
        elif policy.retention.mode == "compliance" and lock.mode != "compliance":
            add("retention-short", f"mode {lock.mode}, the policy wants compliance")
    expected = {"tenant": tenant, "region": region}
    if lock.tags != expected:
        add("tags-wrong", f"tags {lock.tags}, expected {expected}")
    return found
