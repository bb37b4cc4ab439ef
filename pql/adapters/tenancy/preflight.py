"""Preflight: is a tenant ready? Each check has a stable code and a fix hint.

The tenancy adapter contributes the checks below through ``pql_preflight_checks``; other
adapters (residency) add theirs the same way, and :func:`run_preflight` runs every check the
engine's adapters contribute, in order.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from pql.adapters.model import CheckOutcome, PreflightCheck
from pql.adapters.tenancy.quotas import registry_of, stored_bytes
from pql.adapters.tenancy.registry import Tenant
from pql.errors import PQLError
from pql.signing import KeyRing

__all__ = ["CHECKS", "CheckResult", "run_preflight", "synthetic_tenant"]

KEY_MARGIN = timedelta(days=30)
KEYS_DIR: ContextVar[Path | None] = ContextVar("KEYS_DIR", default=None)
"""Where the trusted public keys are (``pql tenants preflight --keys``); default DATA/_pql/keys."""
PROBE = "FIND COUNT(*) AS n WHERE receipts.status = 'ok' SINCE 1d"


@dataclass(frozen=True, slots=True)
class CheckResult:
    code: str
    title: str
    ok: bool
    detail: str
    hint: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "title": self.title,
            "ok": self.ok,
            "detail": self.detail,
            "hint": self.hint,
        }


def synthetic_tenant(tenant: str) -> str:
    """The shadow tenant synthetic records are written under: never the tenant's own answers."""
    return f"syn-{hashlib.sha256(tenant.encode()).hexdigest()[:12]}"


def _tenant(engine: Any, tenant: str) -> Tenant | None:
    registry = registry_of(engine)
    return registry.get(tenant) if registry is not None else None


def registered(engine: Any, tenant: str, now: datetime) -> CheckOutcome:
    found = _tenant(engine, tenant)
    if found is None:
        return CheckOutcome(False, "not registered", f"pql tenants create {tenant} --region R")
    if found.state != "active":
        return CheckOutcome(False, f"state is {found.state}", "finish or roll back the migration")
    return CheckOutcome(True, f"active since {found.created.date().isoformat()}")


def residency(engine: Any, tenant: str, now: datetime) -> CheckOutcome:
    found = _tenant(engine, tenant)
    if found is None:
        return CheckOutcome(False, "no tenant", "create the tenant first")
    if found.home_region not in found.allowed_regions:
        return CheckOutcome(False, f"home {found.home_region} is not allowed", "fix the regions")
    return CheckOutcome(
        True, f"home {found.home_region}; allowed {', '.join(found.allowed_regions)}"
    )


def budget(engine: Any, tenant: str, now: datetime) -> CheckOutcome:
    found = _tenant(engine, tenant)
    if found is None:
        return CheckOutcome(False, "no tenant", "create the tenant first")
    limits = engine.limits_for(tenant)
    return CheckOutcome(
        True,
        f"cost budget {limits.cost_budget:,.0f}, {limits.max_rows:,} rows, "
        f"{limits.max_window.days}d window, {limits.max_concurrent} concurrent",
    )


def quotas(engine: Any, tenant: str, now: datetime) -> CheckOutcome:
    found = _tenant(engine, tenant)
    registry = registry_of(engine)
    if found is None or registry is None:
        return CheckOutcome(False, "no tenant", "create the tenant first")
    used = stored_bytes(engine, tenant)
    rows = registry.rows_ingested(tenant, now.date())
    detail = (
        f"{rows:,} of {found.quotas.rows_per_day:,} rows today; "
        f"{used:,} of {found.quotas.bytes_stored:,} bytes"
    )
    if used >= found.quotas.bytes_stored or rows >= found.quotas.rows_per_day:
        return CheckOutcome(False, detail, "raise the quota or reduce the data")
    return CheckOutcome(True, detail)


def keys(engine: Any, tenant: str, now: datetime) -> CheckOutcome:
    found = _tenant(engine, tenant)
    if found is None:
        return CheckOutcome(False, "no tenant", "create the tenant first")
    directory = KEYS_DIR.get() or (engine.data_dir / "_pql" / "keys")
    ring = KeyRing.from_dir(directory) if Path(directory).is_dir() else KeyRing()
    good = []
    for kid in found.trusted_keys:
        if kid not in ring:
            continue
        key = ring.get(kid)
        if key.revoked or key.status(now) != "valid":
            continue
        if key.not_after is not None and key.not_after < now + KEY_MARGIN:
            continue
        good.append(kid)
    if not good:
        return CheckOutcome(
            False,
            f"no trusted key of {len(found.trusted_keys)} is unrevoked and valid for 30 more days",
            "pql keys generate --out KEYS, then create the tenant with --trust-key KID",
        )
    return CheckOutcome(True, f"valid keys: {', '.join(good)}")


def slo_probe(engine: Any, tenant: str, now: datetime) -> CheckOutcome:
    found = _tenant(engine, tenant)
    if found is None:
        return CheckOutcome(False, "no tenant", "create the tenant first")
    started = time.perf_counter()
    try:
        engine.query(PROBE, tenant=tenant, now=now, cache=False, record=False)
    except PQLError as exc:
        return CheckOutcome(False, f"the probe failed: {exc}", "see the error's hint")
    took = (time.perf_counter() - started) * 1000
    budget_ms = found.budget.latency_ms
    if took > budget_ms:
        return CheckOutcome(False, f"{took:.0f} ms > {budget_ms} ms", "raise latency_ms or index")
    return CheckOutcome(True, f"{took:.1f} ms within {budget_ms} ms")


def synthetic(engine: Any, tenant: str, now: datetime) -> CheckOutcome:
    found = _tenant(engine, tenant)
    if found is None:
        return CheckOutcome(False, "no tenant", "create the tenant first")
    shadow = synthetic_tenant(tenant)
    stamp = now.replace(microsecond=0)
    run = f"preflight-{stamp.strftime('%Y%m%dT%H%M%S')}"
    receipt = pl.DataFrame(
        {
            "executionId": [run],
            "tenant": [shadow],
            "region": [found.home_region],
            "ts": [stamp],
            "workflow": ["preflight"],
            "status": ["ok"],
            "latency_ms": [1.0],
            "cost_usd": [0.0],
        }
    )
    decision = pl.DataFrame(
        {
            "decisionId": [f"{run}-d"],
            "executionId": [run],
            "tenant": [shadow],
            "region": [found.home_region],
            "ts": [stamp],
            "rule": ["preflight"],
            "effect": ["allow"],
            "policy_version": ["synthetic"],
        }
    )
    try:
        engine.ingest("receipts", receipt)
        engine.ingest("decisions", decision)
        read = engine.query(
            f"FIND COUNT(*) AS n JOIN decisions ON receipts.executionId = decisions.executionId "
            f"WHERE receipts.executionId = '{run}' SINCE 1d",
            tenant=shadow,
            now=now,
            cache=False,
            record=False,
        )
    except PQLError as exc:
        return CheckOutcome(False, f"synthetic workflow failed: {exc}", "see the error's hint")
    if read.df.item() != 1:
        return CheckOutcome(False, "the synthetic records did not read back", "check the store")
    return CheckOutcome(True, f"receipt and decision written and read back as {shadow}")


def disclosure(engine: Any, tenant: str, now: datetime) -> CheckOutcome:
    from pql.adapters.tenancy.disclose import disclose, load_operator_key, verify_pack

    found = _tenant(engine, tenant)
    if found is None:
        return CheckOutcome(False, "no tenant", "create the tenant first")
    hint = "pql tenants operator-key create --data DIR"
    try:
        key = load_operator_key(engine.data_dir)
    except PQLError as exc:
        return CheckOutcome(False, exc.message, hint)
    with tempfile.TemporaryDirectory(prefix="pql-pack-") as scratch:
        out = Path(scratch) / "pack"
        public = Path(scratch) / "operator.pub"
        public.write_bytes(key.public_pem())
        try:
            written = disclose(
                engine, tenant, out, now=now, keys_dir=KEYS_DIR.get(), signing_key=key
            )
            verify_pack(out, public_key=public)
        except PQLError as exc:
            return CheckOutcome(False, f"the sample pack failed: {exc}", "see the error's hint")
    return CheckOutcome(
        True,
        f"{len(written.files)} files written, signed by {key.kid} and verified",
    )


CHECKS = (
    PreflightCheck("TEN-REGISTERED", "tenant registered and active", registered, 10),
    PreflightCheck("TEN-RESIDENCY", "home region among the allowed regions", residency, 20),
    PreflightCheck("TEN-BUDGET", "query budget in force", budget, 30),
    PreflightCheck("TEN-QUOTA", "quotas set and not exhausted", quotas, 40),
    PreflightCheck("TEN-KEYS", "a trusted signing key valid for 30 more days", keys, 50),
    PreflightCheck("TEN-SLO", "a probe query within the latency budget", slo_probe, 60),
    PreflightCheck("TEN-SYNTHETIC", "a synthetic workflow written and read back", synthetic, 70),
    PreflightCheck(
        "TEN-DISCLOSURE", "a disclosure pack sample signed and verified", disclosure, 80
    ),
)


def run_preflight(engine: Any, tenant: str, now: datetime) -> list[CheckResult]:
    """Every check the engine's adapters contribute, in order; an exception is a failed check."""
    results = []
    for check in engine.adapters.checks:
        try:
            outcome = check.run(engine, tenant, now)
        except Exception as exc:
            outcome = CheckOutcome(
                False,
                f"the check raised {type(exc).__name__}: {exc}",
                "a bug in the adapter that contributes this check",
            )
        results.append(
            CheckResult(
                check.code,
                check.title,
                outcome.ok,
                outcome.detail,
                "" if outcome.ok else outcome.hint,
            )
        )
    return results
