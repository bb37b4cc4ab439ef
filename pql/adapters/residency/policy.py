"""Residency policy as data: the versioned policy file, where each tenant's policy comes from,
and the pure evaluator.

The policy file is ``DATA/_pql/residency.json`` (format in ``docs/pql/RESIDENCY.md``)::

    {"version": 1,
     "tenants": {"acme": {"regions": ["us-east-1"], "cross_region_reads": false,
                          "retention": {"mode": "compliance", "days": 365},
                          "legal_hold": false}}}

A tenant's storage regions come from the tenancy registry (its allowed regions) when the registry
knows the tenant, from the policy file otherwise. The evaluator takes an OPA-shaped input document
and returns an OPA-shaped result, so an OPA deployment could take its place:
``{"input": {...}}`` -> ``{"result": {"allow": bool, "deny": [reason, ...]}}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pql.errors import InputError

__all__ = [
    "FILE",
    "VERSION",
    "Policy",
    "Retention",
    "evaluate",
    "load_policies",
    "policy_for",
]

FILE = Path("_pql") / "residency.json"
VERSION = 1
REGION_RE = re.compile(r"[a-z]{2}-[a-z]{1,20}-[0-9]{1,3}|global")
LockMode = Literal["compliance", "governance"]


@dataclass(frozen=True, slots=True)
class Retention:
    """How long every stored object of the tenant is locked, and how."""

    mode: LockMode = "compliance"
    days: int = 365


@dataclass(frozen=True, slots=True)
class Policy:
    """One tenant's residency policy."""

    tenant: str
    regions: tuple[str, ...]
    cross_region_reads: bool = False
    retention: Retention = Retention()
    legal_hold: bool = False
    source: str = "file"
    """Where the regions came from: ``file`` or ``tenancy``."""

    def to_input(self) -> dict[str, Any]:
        """The policy as the evaluator's input carries it."""
        return {
            "regions": list(self.regions),
            "cross_region_reads": self.cross_region_reads,
            "retention": {"mode": self.retention.mode, "days": self.retention.days},
            "legal_hold": self.legal_hold,
            "source": self.source,
        }


def load_policies(data_dir: Path) -> dict[str, Policy] | None:
    """The policies of the policy file, or ``None`` when there is none. PQL-E402 when invalid."""
    path = data_dir / FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _invalid(path, f"it is not JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("version") != VERSION:
        raise _invalid(path, f"its version must be {VERSION}")
    tenants = raw.get("tenants", {})
    if not isinstance(tenants, dict):
        raise _invalid(path, "'tenants' must be an object")
    return {name: _policy(path, name, body) for name, body in tenants.items()}


def in_force(data_dir: Path | None) -> bool:
    """Whether residency applies to the data directory: a policy file or a tenant registry."""
    if data_dir is None:
        return False
    return (data_dir / FILE).is_file() or (data_dir / "_pql" / "tenants.sqlite").is_file()


def governs(data_dir: Path | None, tenant: str) -> bool:
    """Whether residency decides for ``tenant``: always under a policy file (a tenant it does
    not list is denied), and under a tenant registry alone only for the tenants registered
    there (an unregistered one, such as a preflight's synthetic shadow tenant, is not managed)."""
    if data_dir is None:
        return False
    if (data_dir / FILE).is_file():
        return True
    return _registered_regions(data_dir, tenant) is not None


def policy_for(data_dir: Path, tenant: str) -> Policy | None:
    """``tenant``'s policy: regions from the tenancy registry when it knows the tenant, the rest
    (and the regions otherwise) from the policy file; ``None`` when neither knows the tenant."""
    policies = load_policies(data_dir) or {}
    from_file = policies.get(tenant)
    registered = _registered_regions(data_dir, tenant)
    if registered is None:
        return from_file
    base = from_file or Policy(tenant, registered)
    return Policy(
        tenant,
        registered,
        base.cross_region_reads,
        base.retention,
        base.legal_hold,
        source="tenancy",
    )


def _registered_regions(data_dir: Path, tenant: str) -> tuple[str, ...] | None:
    if not (data_dir / "_pql" / "tenants.sqlite").is_file():
        return None
    from pql.adapters.tenancy.registry import Registry

    found = Registry(data_dir).get(tenant)
    return None if found is None else tuple(found.allowed_regions)


def _policy(path: Path, tenant: str, body: object) -> Policy:
    if not isinstance(body, dict):
        raise _invalid(path, f"tenant {tenant!r} must be an object")
    regions = body.get("regions")
    if (
        not isinstance(regions, list)
        or not regions
        or not all(isinstance(r, str) and REGION_RE.fullmatch(r) for r in regions)
    ):
        raise _invalid(path, f"tenant {tenant!r} needs 'regions', a list of regions")
    cross = body.get("cross_region_reads", False)
    hold = body.get("legal_hold", False)
    if not isinstance(cross, bool) or not isinstance(hold, bool):
        raise _invalid(path, f"tenant {tenant!r}: cross_region_reads and legal_hold are booleans")
    retention = body.get("retention", {})
    if not isinstance(retention, dict):
        raise _invalid(path, f"tenant {tenant!r}: 'retention' must be an object")
    mode = retention.get("mode", "compliance")
    days = retention.get("days", 365)
    if mode not in ("compliance", "governance"):
        raise _invalid(path, f"tenant {tenant!r}: retention mode is compliance or governance")
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise _invalid(path, f"tenant {tenant!r}: retention days is a whole number >= 0")
    return Policy(tenant, tuple(sorted(set(regions))), cross, Retention(mode, days), hold)


def _invalid(path: Path, why: str) -> InputError:
    return InputError(
        "PQL-E402",
        f"the residency policy {path.name} is invalid: {why}",
        hints=("see docs/pql/RESIDENCY.md for the policy file format",),
    )


# -- the evaluator -----------------------------------------------------------------------------


def evaluate(document: Mapping[str, Any]) -> dict[str, Any]:
    """Decide one access: ``{"input": {...}}`` -> ``{"result": {"allow", "deny"}}``.

    The input: ``action`` (``write`` or ``read``), ``tenant``, ``bucket``, ``bucket_region``,
    ``engine_region`` (or null) and ``policy`` (as :meth:`Policy.to_input`, or null). Pure: the
    decision depends on nothing else. Each reason is ``{"rule", "message"}``; allowed when none.
    """
    data = document.get("input", {})
    action = data.get("action")
    tenant = data.get("tenant")
    bucket = data.get("bucket")
    region = data.get("bucket_region")
    engine_region = data.get("engine_region")
    policy = data.get("policy")
    deny: list[dict[str, str]] = []
    if not isinstance(policy, Mapping):
        deny.append(
            _reason("no-policy", f"tenant {tenant!r} has no residency policy (bucket {bucket})")
        )
    else:
        allowed = list(policy.get("regions", []))
        if action == "write" and region not in allowed:
            deny.append(
                _reason(
                    "region-not-allowed",
                    f"tenant {tenant!r} may not live in {region} (bucket {bucket}); "
                    f"its regions: {', '.join(allowed) or 'none'}",
                )
            )
        if (
            action == "read"
            and engine_region is not None
            and region != engine_region
            and not policy.get("cross_region_reads", False)
        ):
            deny.append(
                _reason(
                    "cross-region-read",
                    f"an engine in {engine_region} may not read tenant {tenant!r}'s bucket "
                    f"{bucket} in {region}: cross-region reads are not allowed",
                )
            )
    if action not in ("write", "read"):
        deny.append(_reason("unknown-action", f"unknown action {action!r}"))
    return {"result": {"allow": not deny, "deny": deny}}


def _reason(rule: str, message: str) -> dict[str, str]:
    return {"rule": rule, "message": message}
