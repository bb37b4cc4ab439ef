"""Undoing an onboarding: stop trusting a key, and remove a tenant that holds no data.

Both keep the audit trail: the migration journal stays in the registry, the evidence folder and
the residency decision log are never touched, and removing a tenant writes its last record to
``DATA/_pql/evidence/delete-{tenant}-{time}.json``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from pql.adapters.tenancy.migrate import EVIDENCE_DIR, _open_journal, _operator
from pql.adapters.tenancy.registry import Registry, Tenant, _iso
from pql.errors import InputError
from pql.signing import KeyRing, write_sidecar

__all__ = ["delete_tenant", "revoke_key"]


def revoke_key(
    data_dir: Path | str,
    tenant: str,
    kid: str,
    *,
    now: datetime,
    keys_dir: Path | str | None = None,
    reason: str | None = None,
) -> tuple[Tenant, Path | None]:
    """Stop ``tenant`` trusting ``kid``; with ``keys_dir``, also mark the key revoked there.

    Returns the changed tenant and the key's sidecar written (``None`` without ``keys_dir``).
    """
    changed = Registry(data_dir).untrust(tenant, kid, now=now)
    if keys_dir is None:
        return changed, None
    key = KeyRing.from_dir(keys_dir).get(kid)
    return changed, write_sidecar(keys_dir, replace(key, revoked=True, reason=reason))


def delete_tenant(
    engine: Any, tenant: str, *, now: datetime, operator: str | None = None
) -> tuple[Tenant, Path]:
    """Remove ``tenant`` from the registry; refused while it migrates or holds data files.

    Returns the removed record and the evidence file written.
    """
    registry = Registry(engine.data_dir)
    found = registry.require(tenant)
    if found.state == "migrating" or _open_journal(registry, tenant) is not None:
        raise InputError(
            "PQL-E235",
            f"tenant {tenant!r} is migrating; it is not removed while a migration is open",
            hints=("finish or roll back the migration first",),
        )
    store = getattr(engine.store, "lake", engine.store)
    manifest = getattr(store, "manifest", None)
    held = [e for e in manifest().files if e.tenant == tenant] if manifest is not None else []
    if held:
        raise InputError(
            "PQL-E236",
            f"tenant {tenant!r} still holds {len(held)} data files; a tenant with data is not "
            "removed (its rows are history, and residency may lock them)",
            hints=("suspend the tenant instead, or remove its data under its retention rules",),
        )
    removed = registry.delete(tenant)
    folder = Path(engine.data_dir) / EVIDENCE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"delete-{tenant}-{now.strftime('%Y%m%dT%H%M%S')}.json"
    doc = {
        "kind": "delete",
        "tenant": tenant,
        "at": _iso(now),
        "operator": operator or _operator(),
        "record": removed.to_dict(),
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return removed, path
