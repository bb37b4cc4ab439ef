"""Move a tenant's files from one storage region to another, journaled, verified, reversible.

A migration plans (every file of the tenant not yet in the target region, with rows, bytes and
SHA-256), copies each file into the target region's buckets (:meth:`Lake.copy_to`), verifies
each copy (digest and row count), switches in one manifest commit (:meth:`Lake.swap`: the copies
are read, the originals retired, the target becomes the tenant's storage region), checks that
an order-independent digest of all the tenant's rows is unchanged, and records the new home
region. The rows themselves, and so their ``region`` column, are never rewritten.

Every step is journaled in the registry (``migrations``, ``migration_files``) before the next
one starts, so a process killed at any point is finished by running the same command again:
copies already verified are not made twice, a switch already committed is not undone.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import signal
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from pql.adapters.tenancy.registry import Registry, Tenant, _iso, check_region
from pql.errors import InputError, SafetyError
from pql.storage.base import from_micros
from pql.storage.lake import FileEntry, Lake
from pql.storage.validate import REGION_PATTERN

__all__ = [
    "KILL_AT",
    "Plan",
    "Report",
    "content_digest",
    "lake_of",
    "migrate",
    "plan_migration",
    "purge_retired",
    "rollback",
]

KILL_AT = "PQL_MIGRATION_KILL_AT"
"""Testing only: kill the migrating process (SIGKILL) at a named step, e.g. ``copied:2``."""
METRIC = "mc_tenant_migration_ms"
EVIDENCE_DIR = Path("_pql") / "evidence"
_HASH_SEED = 1109


@dataclass(frozen=True, slots=True)
class PlannedFile:
    """One file to copy: where it is, where its copy goes, and what must come out."""

    source: FileEntry
    target: str
    digest: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.source.path,
            "target": self.target,
            "subject": self.source.subject,
            "day": self.source.day.isoformat(),
            "rows": self.source.rows,
            "bytes": self.source.bytes,
            "sha256": self.digest,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    """What a migration will do; what ``--dry-run`` prints."""

    tenant: str
    source: str
    target: str
    files: tuple[PlannedFile, ...]
    buckets: tuple[str, ...]
    policy: tuple[dict[str, Any], ...]
    throughput_bytes_s: float
    expected_s: float

    @property
    def rows(self) -> int:
        return sum(f.source.rows for f in self.files)

    @property
    def bytes(self) -> int:
        return sum(f.source.bytes for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "source": self.source,
            "target": self.target,
            "partitions": [f.to_dict() for f in self.files],
            "rows": self.rows,
            "bytes": self.bytes,
            "target_buckets": list(self.buckets),
            "policy": list(self.policy),
            "throughput_bytes_s": round(self.throughput_bytes_s),
            "expected_s": round(self.expected_s, 3),
        }


@dataclass(slots=True)
class Report:
    """What a migration (or rollback) did: the evidence written to ``DATA/_pql/evidence``."""

    kind: str
    tenant: str
    source: str
    target: str
    journal_id: int
    plan: dict[str, Any]
    digest_before: dict[str, Any]
    digest_after: dict[str, Any]
    operator: str
    started: str
    finished: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    resumed: bool = False
    evidence: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "tenant": self.tenant,
            "source": self.source,
            "target": self.target,
            "journal_id": self.journal_id,
            "resumed": self.resumed,
            "operator": self.operator,
            "started": self.started,
            "finished": self.finished,
            "timings_ms": self.timings_ms,
            "digest_before": self.digest_before,
            "digest_after": self.digest_after,
            "unchanged": self.digest_before == self.digest_after,
            "plan": self.plan,
            "evidence": list(self.evidence),
        }


# -- reading -----------------------------------------------------------------------------------


def lake_of(engine: Any) -> Lake:
    """The engine's lake; a migration moves files, so it needs one (PQL-E219)."""
    store = getattr(engine.store, "lake", engine.store)
    if not isinstance(store, Lake):
        raise InputError(
            "PQL-E219",
            "migration needs an engine on a data directory (a lake); this one keeps data in memory",
            hints=("open the engine with pql.Engine(DATA_DIR)",),
        )
    return store


def content_digest(lake: Lake, tenant: str) -> dict[str, Any]:
    """An order-independent digest of every row of ``tenant`` the lake serves, per subject.

    Each row (columns by name) is hashed with fixed seeds and the hashes are summed modulo
    2**64, so the digest does not depend on how rows are split into files or ordered in them.
    """
    manifest = lake.manifest()
    out: dict[str, Any] = {}
    for subject in sorted({e.subject for e in manifest.files if e.tenant == tenant}):
        entries = manifest.files_of(tenant, subject)
        low = from_micros(min(e.ts_min for e in entries))
        high = from_micros(max(e.ts_max for e in entries))
        frame = lake.scan(tenant, lake.catalog[subject], low, high).frame.collect()
        frame = frame.select(sorted(frame.columns))
        hashes = frame.hash_rows(seed=_HASH_SEED).to_numpy()
        total = int(np.sum(hashes, dtype=np.uint64)) if len(hashes) else 0
        out[subject] = {"rows": frame.height, "digest": f"{total:016x}"}
    return out


def plan_migration(engine: Any, tenant: str, target: str) -> Plan:
    """The plan of moving ``tenant`` to ``target``, refusing what policy forbids. Writes nothing."""
    registry = Registry(engine.data_dir)
    found = registry.require(tenant)
    _check_target(target)
    _check_state(registry, found, "migrate", target)
    return _plan(lake_of(engine), found, target)


def _plan(lake: Lake, tenant: Tenant, target: str) -> Plan:
    policy = (
        {
            "check": "target region allowed",
            "ok": target in tenant.allowed_regions,
            "detail": f"{target} among {', '.join(tenant.allowed_regions)}",
        },
        {
            "check": "target differs from home",
            "ok": target != tenant.home_region,
            "detail": f"home {tenant.home_region}",
        },
    )
    if target not in tenant.allowed_regions:
        raise SafetyError(
            "PQL-S054",
            f"region {target!r} is not one of tenant {tenant.id!r}'s allowed regions "
            f"({', '.join(tenant.allowed_regions)})",
            hints=("a tenant's data only moves to a region its residency allows",),
        )
    if target == tenant.home_region:
        raise InputError(
            "PQL-E213",
            f"tenant {tenant.id!r} is already at home in {target!r}",
            hints=("nothing to move",),
        )
    entries = [e for e in lake.manifest().files if e.tenant == tenant.id and e.storage != target]
    started = time.perf_counter()
    files = tuple(
        PlannedFile(e, lake.relocated(e, target).path, lake.digest(e))
        for e in sorted(entries, key=lambda e: (e.subject, e.day, e.path))
    )
    took = max(time.perf_counter() - started, 1e-6)
    size = sum(f.source.bytes for f in files)
    throughput = size / took if size else 0.0
    # A copy reads and writes every byte, then reads the copy again to verify it.
    expected = 3 * size / throughput if throughput else 0.0
    buckets = sorted({f.target.split("/", 1)[0] for f in files})
    return Plan(
        tenant.id, tenant.home_region, target, files, tuple(buckets), policy, throughput, expected
    )


# -- the journal -------------------------------------------------------------------------------


def _open_journal(registry: Registry, tenant: str) -> tuple[int, str, str, dict[str, Any]] | None:
    row = (
        registry.connection()
        .execute(
            "SELECT id, kind, target, plan FROM migrations "
            "WHERE tenant = ? AND state = 'running' ORDER BY id DESC LIMIT 1",
            (tenant,),
        )
        .fetchone()
    )
    return None if row is None else (int(row[0]), str(row[1]), str(row[2]), json.loads(row[3]))


def _check_target(target: str) -> None:
    check_region(target, "target region")
    if not re.fullmatch(REGION_PATTERN, target):
        raise InputError(
            "PQL-E210",
            f"{target!r} is not a storage region (buckets are named by regions like us-east-1)",
            hints=("a storage region is three '-'-separated parts ending in a number",),
        )


def _check_state(registry: Registry, tenant: Tenant, kind: str, target: str | None) -> bool:
    """Whether a journaled run of the same command is to be resumed; refuse other states."""
    if tenant.state == "suspended":
        raise InputError(
            "PQL-E211",
            f"tenant {tenant.id!r} is suspended; a suspended tenant is not migrated",
            hints=("reactivate the tenant first",),
        )
    running = _open_journal(registry, tenant.id)
    if tenant.state == "migrating" or running is not None:
        if running is not None and running[1] == kind and (target is None or running[2] == target):
            return True
        what = f"{running[1]} to {running[2]}" if running else "a migration"
        raise InputError(
            "PQL-E211",
            f"tenant {tenant.id!r} is migrating ({what}); one migration at a time",
            hints=(
                "finish it by running the same command again, or roll it back with "
                f"`pql tenants migrate {tenant.id} --rollback`",
            ),
        )
    return False


def _kill_at(step: str) -> None:
    if os.environ.get(KILL_AT) == step:
        os.kill(os.getpid(), signal.SIGKILL)


# -- running -----------------------------------------------------------------------------------


def migrate(
    engine: Any,
    tenant: str,
    target: str,
    *,
    now: datetime,
    dry_run: bool = False,
    operator: str | None = None,
) -> Plan | Report:
    """Move ``tenant``'s files to storage region ``target`` (a :class:`Plan` when ``dry_run``).

    Running it again after a crash resumes the journaled migration and finishes it.
    """
    registry = Registry(engine.data_dir)
    found = registry.require(tenant)
    _check_target(target)
    resuming = _check_state(registry, found, "migrate", target)
    lake = lake_of(engine)
    if dry_run:
        if resuming:
            raise InputError(
                "PQL-E211",
                f"tenant {tenant!r} is migrating to {target!r}; there is nothing to plan",
                hints=("run the same command without --dry-run to finish it",),
            )
        return _plan(lake, found, target)
    clock = time.perf_counter()
    timings: dict[str, float] = {}
    who = operator or _operator()
    if resuming:
        journal_id, doc = _resume(registry, tenant)
    else:
        plan = _plan(lake, found, target)
        timings["plan"] = _ms(clock)
        doc = {
            "plan": plan.to_dict(),
            "retire": [f.source.path for f in plan.files],
            "digest_before": content_digest(lake, tenant),
        }
        journal_id = _begin(registry, tenant, "migrate", found.home_region, target, doc, who, now)
        _kill_at("begun")
    copies = _copy_all(lake, registry, journal_id, tenant, doc, timings)
    step = time.perf_counter()
    lake.swap(tenant, doc["retire"], copies, home=target)
    timings["switch"] = _ms(step)
    _kill_at("switched")
    return _finish(
        engine,
        lake,
        registry,
        "migrate",
        journal_id,
        tenant,
        doc,
        now,
        who,
        clock,
        timings,
        resuming,
        restore=(doc["retire"], copies, doc["plan"]["source"]),
    )


def rollback(engine: Any, tenant: str, *, now: datetime, operator: str | None = None) -> Report:
    """Switch ``tenant`` back to the region its last migration left, from the retained copy."""
    registry = Registry(engine.data_dir)
    found = registry.require(tenant)
    resuming = _check_state(registry, found, "rollback", None)
    lake = lake_of(engine)
    clock = time.perf_counter()
    timings: dict[str, float] = {}
    who = operator or _operator()
    if resuming:
        journal_id, doc = _resume(registry, tenant)
    else:
        row = (
            registry.connection()
            .execute(
                "SELECT id, source, target, plan FROM migrations WHERE tenant = ? "
                "AND kind = 'migrate' AND state = 'done' ORDER BY id DESC LIMIT 1",
                (tenant,),
            )
            .fetchone()
        )
        if row is None or found.home_region != row[2]:
            raise InputError(
                "PQL-E212",
                f"tenant {tenant!r} has no completed migration to roll back",
                hints=("`pql tenants show ID` shows its home region",),
            )
        migrated = json.loads(row[3])
        copies = [
            str(p)
            for (p,) in registry.connection().execute(
                "SELECT copy FROM migration_files WHERE migration = ? ORDER BY source", (row[0],)
            )
        ]
        retired = {e.path: e for e in lake.manifest().retired if e.tenant == tenant}
        missing = [p for p in migrated["retire"] if p not in retired]
        if missing:
            raise InputError(
                "PQL-E217",
                f"the old copy of tenant {tenant!r} in {row[1]!r} is gone ({len(missing)} files "
                "purged); there is nothing to switch back to",
                hints=("migrate the tenant to that region again instead",),
            )
        doc = {
            "plan": {"source": row[2], "target": row[1], "of_migration": int(row[0])},
            "retire": copies,
            "activate": [retired[p].to_json() for p in migrated["retire"]],
            "digest_before": content_digest(lake, tenant),
        }
        journal_id = _begin(registry, tenant, "rollback", row[2], row[1], doc, who, now)
    activate = [FileEntry.from_json(e) for e in doc["activate"]]
    step = time.perf_counter()
    lake.swap(tenant, doc["retire"], activate, home=doc["plan"]["target"])
    timings["switch"] = _ms(step)
    _kill_at("switched")
    return _finish(
        engine,
        lake,
        registry,
        "rollback",
        journal_id,
        tenant,
        doc,
        now,
        who,
        clock,
        timings,
        resuming,
        restore=(doc["retire"], activate, doc["plan"]["source"]),
    )


def _begin(
    registry: Registry,
    tenant: str,
    kind: str,
    source: str,
    target: str,
    doc: dict[str, Any],
    who: str,
    now: datetime,
) -> int:
    """Journal a new ``kind`` run and mark the tenant migrating, in one transaction; its id."""
    with registry.transaction() as db:
        cursor = db.execute(
            "INSERT INTO migrations (tenant, kind, source, target, state, plan, operator, "
            "started) VALUES (?, ?, ?, ?, 'running', ?, ?, ?)",
            (tenant, kind, source, target, json.dumps(doc), who, _iso(now)),
        )
        journal_id = int(cursor.lastrowid or 0)
        db.execute(
            "UPDATE tenants SET state = 'migrating', updated = ? WHERE id = ?",
            (_iso(now), tenant),
        )
    return journal_id


def _resume(registry: Registry, tenant: str) -> tuple[int, dict[str, Any]]:
    """The id and document of ``tenant``'s open journal entry (the caller checked there is one)."""
    journal = _open_journal(registry, tenant)
    assert journal is not None
    journal_id, _, _, doc = journal
    return journal_id, doc


def purge_retired(engine: Any, tenant: str) -> tuple[FileEntry, ...]:
    """Delete ``tenant``'s retired files (the old copies migrations kept). Explicit and final."""
    registry = Registry(engine.data_dir)
    found = registry.require(tenant)
    if found.state == "migrating" or _open_journal(registry, tenant) is not None:
        raise InputError(
            "PQL-E218",
            f"tenant {tenant!r} is migrating; its old copy is kept until the migration ends",
            hints=("finish or roll back the migration first",),
        )
    return lake_of(engine).purge_retired(tenant)


def _copy_all(
    lake: Lake,
    registry: Registry,
    journal_id: int,
    tenant: str,
    doc: dict[str, Any],
    timings: dict[str, float],
) -> list[FileEntry]:
    """Copy and verify every planned file not yet journaled as copied; journal each."""
    step = time.perf_counter()
    done = {
        str(s): str(c)
        for s, c in registry.connection().execute(
            "SELECT source, copy FROM migration_files WHERE migration = ?", (journal_id,)
        )
    }
    by_path = {e.path: e for e in (*lake.manifest().files, *lake.manifest().retired)}
    copies = []
    for index, planned in enumerate(doc["plan"]["partitions"], start=1):
        source = by_path[planned["path"]]
        target = doc["plan"]["target"]
        if planned["path"] in done:
            copies.append(lake.relocated(source, target))
            continue
        copy = lake.copy_to(source, target)
        digest = lake.digest(copy)
        rows = pq.read_metadata(lake.root / copy.path).num_rows
        if digest != planned["sha256"] or rows != planned["rows"]:
            raise InputError(
                "PQL-E214",
                f"the copy {copy.path!r} does not match its original {source.path!r} "
                f"(sha256 {digest[:12]} vs {planned['sha256'][:12]}, rows {rows} vs "
                f"{planned['rows']})",
                hints=("the original changed or the disk is failing; run the command again",),
            )
        with registry.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO migration_files VALUES (?, ?, ?)",
                (journal_id, source.path, copy.path),
            )
        copies.append(copy)
        _kill_at(f"copied:{index}")
    timings["copy"] = _ms(step)
    return copies


def _finish(
    engine: Any,
    lake: Lake,
    registry: Registry,
    kind: str,
    journal_id: int,
    tenant: str,
    doc: dict[str, Any],
    now: datetime,
    operator: str,
    clock: float,
    timings: dict[str, float],
    resumed: bool,
    restore: tuple[list[str], list[FileEntry], str],
) -> Report:
    """Check the rows are unchanged, record the new home, write the evidence."""
    step = time.perf_counter()
    after = content_digest(lake, tenant)
    timings["verify"] = _ms(step)
    plan = doc["plan"]
    if after != doc["digest_before"]:
        retired, activated, home = restore
        lake.swap(tenant, [e.path for e in activated], _entries(lake, retired), home=home)
        with registry.transaction() as db:
            db.execute("UPDATE migrations SET state = 'failed' WHERE id = ?", (journal_id,))
            db.execute("UPDATE tenants SET state = 'active' WHERE id = ?", (tenant,))
        raise InputError(
            "PQL-E215",
            f"tenant {tenant!r}'s rows changed during the {kind} (digest before "
            f"{doc['digest_before']}, after {after}); switched back, nothing was lost",
            hints=("was data ingested for the tenant meanwhile? run the command again",),
        )
    finished = datetime.now(now.tzinfo) if now.tzinfo else now
    with registry.transaction() as db:
        db.execute(
            "UPDATE migrations SET state = 'done', finished = ? WHERE id = ?",
            (_iso(finished), journal_id),
        )
        if kind == "rollback":
            db.execute(
                "UPDATE migrations SET state = 'rolled_back' WHERE id = ?",
                (plan["of_migration"],),
            )
        db.execute(
            "UPDATE tenants SET state = 'active', home_region = ?, updated = ? WHERE id = ?",
            (plan["target"], _iso(now), tenant),
        )
    _kill_at("done")
    timings["total"] = _ms(clock)
    started = (
        registry.connection()
        .execute("SELECT started FROM migrations WHERE id = ?", (journal_id,))
        .fetchone()[0]
    )
    report = Report(
        kind=kind,
        tenant=tenant,
        source=plan["source"],
        target=plan["target"],
        journal_id=journal_id,
        plan=plan,
        digest_before=doc["digest_before"],
        digest_after=after,
        operator=operator,
        started=str(started),
        finished=_iso(finished),
        timings_ms=timings,
        resumed=resumed,
    )
    report.evidence = write_evidence(Path(engine.data_dir), report)
    engine.metrics.observe(METRIC, timings["total"], kind=kind)
    return report


def _entries(lake: Lake, paths: list[str]) -> list[FileEntry]:
    manifest = lake.manifest()
    known = {e.path: e for e in (*manifest.files, *manifest.retired)}
    return [known[p] for p in paths if p in known]


def _operator() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


# -- evidence ----------------------------------------------------------------------------------


def write_evidence(data_dir: Path, report: Report) -> tuple[str, ...]:
    """The report as JSON and Markdown under ``DATA/_pql/evidence``; their paths."""
    folder = data_dir / EVIDENCE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{report.kind}-{report.tenant}-{report.journal_id:06d}"
    doc = report.to_dict()
    doc["evidence"] = [f"{stem}.json", f"{stem}.md"]
    (folder / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (folder / f"{stem}.md").write_text(_markdown(doc))
    return tuple(str(folder / name) for name in doc["evidence"])


def _markdown(doc: dict[str, Any]) -> str:
    plan = doc["plan"]
    lines = [
        f"# {doc['kind'].capitalize()} of tenant `{doc['tenant']}`: "
        f"{doc['source']} -> {doc['target']}",
        "",
        f"- run by: {doc['operator']}",
        f"- started: {doc['started']}; finished: {doc['finished']}"
        + (" (resumed after an interruption)" if doc["resumed"] else ""),
        f"- journal entry: {doc['journal_id']}",
        f"- rows unchanged: {'yes' if doc['unchanged'] else 'NO'}",
        "",
        "## Timings (ms)",
        "",
        *[f"- {k}: {v:,.1f}" for k, v in doc["timings_ms"].items()],
        "",
        "## Digests of the tenant's rows",
        "",
        "| subject | rows before | digest before | rows after | digest after |",
        "|---------|-------------|---------------|------------|--------------|",
    ]
    for subject, before in doc["digest_before"].items():
        after = doc["digest_after"].get(subject, {"rows": 0, "digest": "-"})
        lines.append(
            f"| {subject} | {before['rows']:,} | `{before['digest']}` | {after['rows']:,} | "
            f"`{after['digest']}` |"
        )
    partitions = plan.get("partitions", [])
    if partitions:
        lines += [
            "",
            "## Plan",
            "",
            f"{len(partitions)} files, {plan['rows']:,} rows, {plan['bytes']:,} bytes, "
            f"to {', '.join(plan['target_buckets'])}",
            "",
            "| file | rows | bytes | sha256 |",
            "|------|------|-------|--------|",
            *[
                f"| `{p['path']}` | {p['rows']:,} | {p['bytes']:,} | `{p['sha256']}` |"
                for p in partitions
            ],
        ]
    return "\n".join(lines) + "\n"
