"""Budgets and quotas as the engine enforces them: limits per query, quotas per ingest."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from pql.adapters.tenancy.registry import Registry
from pql.errors import SafetyError
from pql.limits import TenantLimits

__all__ = ["check_quotas", "limits_for", "record_usage", "registry_of", "stored_bytes"]

_registries: dict[Path, Registry] = {}


def _registry(data: Path) -> Registry:
    """One registry per data directory as the engine spells it: no path resolved per query.

    Its constructor touches no file, so a registry created later is still seen."""
    found = _registries.get(data)
    if found is None:
        key = data.resolve()
        found = _registries[data] = _registries.setdefault(key, Registry(key))
    return found


def registry_of(engine: Any) -> Registry | None:
    """The registry of the engine's data directory, or ``None`` (no directory, no tenants yet)."""
    data: Path | None = getattr(engine, "data_dir", None)
    if data is None:
        return None
    found = _registry(data)
    return found if found.exists() else None


def limits_for(engine: Any, tenant: str) -> TenantLimits | None:
    """The registered tenant's budget as a limit profile; a suspended tenant is refused.

    Asked on every query: one ``stat`` of the registry file, inside :meth:`Registry.get`."""
    data: Path | None = getattr(engine, "data_dir", None)
    found = _registry(data).get(tenant) if data is not None else None
    if found is None:
        return None
    if found.state == "suspended":
        raise SafetyError(
            "PQL-S051",
            f"tenant {tenant!r} is suspended",
            hints=("an operator suspended this tenant; ask them to reactivate it",),
        )
    return found.budget.limits()


def stored_bytes(engine: Any, tenant: str) -> int:
    """Bytes of the tenant's committed files in the lake (0 for a store without files)."""
    store = getattr(engine.store, "lake", engine.store)
    manifest = getattr(store, "manifest", None)
    if manifest is None:
        return 0
    return sum(e.bytes for e in manifest().files if e.tenant == tenant)


def check_quotas(engine: Any, subject: str, table: pa.Table, now: datetime | None = None) -> None:
    """Refuse the whole table if any registered tenant in it would go over a quota."""
    registry = registry_of(engine)
    if registry is None:
        return
    today = (now or datetime.now(UTC)).date()
    rows = Counter(table.column("tenant").to_pylist())
    share = table.nbytes / max(table.num_rows, 1)
    for tenant, count in sorted(rows.items()):
        found = registry.get(tenant)
        if found is None:
            continue
        done = registry.rows_ingested(tenant, today)
        if done + count > found.quotas.rows_per_day:
            raise SafetyError(
                "PQL-S052",
                f"ingest refused: tenant {tenant!r} would ingest {done + count:,} rows on "
                f"{today.isoformat()}, above its quota of {found.quotas.rows_per_day:,} rows a day "
                f"({done:,} already ingested); nothing was written",
                hints=("split the file over days, or raise the tenant's rows_per_day quota",),
                setting="tenant quota rows_per_day",
            )
        stored = stored_bytes(engine, tenant)
        adding = int(share * count)
        if stored + adding > found.quotas.bytes_stored:
            raise SafetyError(
                "PQL-S053",
                f"ingest refused: tenant {tenant!r} would store about {stored + adding:,} bytes, "
                f"above its quota of {found.quotas.bytes_stored:,} bytes; nothing was written",
                hints=("raise the tenant's bytes_stored quota",),
                setting="tenant quota bytes_stored",
            )


def record_usage(engine: Any, table: pa.Table, now: datetime | None = None) -> None:
    """Count the table's rows per registered tenant against today's quota."""
    registry = registry_of(engine)
    if registry is None:
        return
    counts = Counter(table.column("tenant").to_pylist())
    known = {t: n for t, n in counts.items() if registry.get(t) is not None}
    if known:
        registry.add_usage(known, (now or datetime.now(UTC)).date())
