"""The tenant registry: one SQLite file in the data directory, ``DATA/_pql/tenants.sqlite``.

Every change is one transaction. A tenant's record: id, home region, allowed regions, budget
(maps onto the engine's per-tenant limits), quotas, trusted signing key ids, state, created and
updated. Ingest usage (rows per tenant and UTC day) is kept beside it for the quotas.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pql.errors import InputError
from pql.limits import TenantLimits
from pql.plan.safety import check_tenant_name

__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_QUOTAS",
    "MAX_NUMBER",
    "MAX_WINDOW_DAYS",
    "Budget",
    "Quotas",
    "Registry",
    "Tenant",
    "TenantSpec",
    "check_region",
]

FILE = Path("_pql") / "tenants.sqlite"
MAX_NUMBER = 2**53 - 1
"""The largest budget or quota: the largest integer a JSON client reads back exactly."""
MAX_WINDOW_DAYS = 36_500
"""The widest window a budget allows (100 years): any wider is no limit, and overflows dates."""
REGION_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
State = Literal["active", "migrating", "suspended"]
STATES = ("active", "migrating", "suspended")


@dataclass(frozen=True, slots=True)
class Budget:
    """What one query of the tenant may cost; each field lowers the engine's limit of that name."""

    cost_budget: float = 10_000_000.0
    max_rows: int = 10_000
    max_window_days: int = 90
    max_concurrent: int = 4
    latency_ms: int = 1_000
    """The latency budget the SLO probe of preflight checks (and the query deadline)."""

    def limits(self) -> TenantLimits:
        return TenantLimits(
            cost_budget=self.cost_budget,
            max_rows=self.max_rows,
            max_window=timedelta(days=self.max_window_days),
            max_concurrent=self.max_concurrent,
            deadline_ms=self.latency_ms,
        )


@dataclass(frozen=True, slots=True)
class Quotas:
    """What the tenant may store: rows ingested per UTC day and bytes stored in all."""

    rows_per_day: int = 5_000_000
    bytes_stored: int = 10 * 1024**3


DEFAULT_BUDGET = Budget()
DEFAULT_QUOTAS = Quotas()


@dataclass(frozen=True, slots=True)
class TenantSpec:
    """What ``create`` is asked for; a field left ``None`` takes its documented default."""

    id: str
    region: str
    allowed_regions: tuple[str, ...] | None = None
    cost_budget: float | None = None
    max_rows: int | None = None
    max_window_days: int | None = None
    max_concurrent: int | None = None
    latency_ms: int | None = None
    rows_per_day: int | None = None
    bytes_stored: int | None = None
    trusted_keys: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Tenant:
    """A registered tenant."""

    id: str
    home_region: str
    allowed_regions: tuple[str, ...]
    budget: Budget
    quotas: Quotas
    trusted_keys: tuple[str, ...]
    state: State
    created: datetime
    updated: datetime

    def profile(self) -> dict[str, Any]:
        """Everything ``create`` decides (not state or times): what must match on a re-create."""
        return {
            "home_region": self.home_region,
            "allowed_regions": list(self.allowed_regions),
            "budget": asdict(self.budget),
            "quotas": asdict(self.quotas),
            "trusted_keys": list(self.trusted_keys),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            **self.profile(),
            "state": self.state,
            "created": _iso(self.created),
            "updated": _iso(self.updated),
        }


def check_region(region: object, what: str = "region") -> str:
    """A region name: ``[a-z0-9][a-z0-9-]{0,62}``, as the data's ``region`` column."""
    if not isinstance(region, str) or not REGION_RE.fullmatch(region):
        raise InputError(
            "PQL-E204",
            f"{region!r} is not a valid {what}",
            hints=("a region is lower-case letters, digits and '-', e.g. us-east-1",),
        )
    return region


def resolve(spec: TenantSpec) -> tuple[Tenant, tuple[str, ...]]:
    """The tenant ``spec`` describes with defaults applied, and the fields that were defaulted."""
    tenant_id = check_tenant_name(spec.id)
    home = check_region(spec.region, "home region")
    defaulted: list[str] = []
    allowed = spec.allowed_regions
    if allowed is None:
        allowed = (home,)
        defaulted.append("allowed_regions")
    allowed = tuple(sorted({check_region(r, "allowed region") for r in allowed}))
    if home not in allowed:
        raise InputError(
            "PQL-E205",
            f"the home region {home!r} of tenant {tenant_id!r} is not one of its allowed regions "
            f"({', '.join(allowed)})",
            hints=(f"add --allow {home}",),
        )
    values: dict[str, Any] = {}
    for default in (DEFAULT_BUDGET, DEFAULT_QUOTAS):
        for f in fields(default):
            given = getattr(spec, f.name)
            if given is None:
                defaulted.append(f.name)
                continue
            top = MAX_WINDOW_DAYS if f.name == "max_window_days" else MAX_NUMBER
            if (
                isinstance(given, bool)
                or not isinstance(given, (int, float))
                or not math.isfinite(given)
                or not 0 < given <= top
            ):
                raise InputError(
                    "PQL-E207",
                    f"{f.name} must be a positive number up to {top:,}, not {given!r}",
                )
            values[f.name] = type(getattr(default, f.name))(given)
    budget = replace(DEFAULT_BUDGET, **{k: v for k, v in values.items() if hasattr(Budget, k)})
    quotas = replace(DEFAULT_QUOTAS, **{k: v for k, v in values.items() if hasattr(Quotas, k)})
    keys = spec.trusted_keys
    if keys is None:
        keys = ()
        defaulted.append("trusted_keys")
    epoch = datetime.fromtimestamp(0, UTC)
    tenant = Tenant(
        tenant_id, home, allowed, budget, quotas, tuple(sorted(set(keys))), "active", epoch, epoch
    )
    return tenant, tuple(defaulted)


class Registry:
    """The tenants of one data directory. Safe to share between threads and processes."""

    def __init__(self, data_dir: Path | str) -> None:
        self.path = Path(data_dir) / FILE
        self._file = os.fspath(self.path)  # as a string: asked on every query, with no pathlib
        self._local = threading.local()

    def exists(self) -> bool:
        """Whether the registry file has been created (no tenant registered yet if not)."""
        return os.path.isfile(self._file)

    # -- reading ---------------------------------------------------------------------------

    def get(self, tenant: str) -> Tenant | None:
        if not self.exists():
            return None
        row = self._db().execute("SELECT * FROM tenants WHERE id = ?", (tenant,)).fetchone()
        return None if row is None else _tenant(row)

    def require(self, tenant: str) -> Tenant:
        """The tenant, or ``PQL-E202`` when it is not registered."""
        found = self.get(check_tenant_name(tenant))
        if found is None:
            raise InputError(
                "PQL-E202",
                f"tenant {tenant!r} is not registered in this data directory",
                hints=(f"create it: pql tenants create {tenant} --region REGION --data DIR",),
            )
        return found

    def all(self) -> list[Tenant]:
        if not self.exists():
            return []
        return [_tenant(r) for r in self._db().execute("SELECT * FROM tenants ORDER BY id")]

    def rows_ingested(self, tenant: str, day: date) -> int:
        if not self.exists():
            return 0
        row = (
            self._db()
            .execute(
                "SELECT rows FROM usage WHERE tenant = ? AND day = ?", (tenant, day.isoformat())
            )
            .fetchone()
        )
        return int(row[0]) if row else 0

    # -- writing ---------------------------------------------------------------------------

    def create(self, spec: TenantSpec, *, now: datetime) -> tuple[Tenant, tuple[str, ...], bool]:
        """Register ``spec``: (the tenant, the fields defaulted, whether it was new).

        The same spec again is a no-op; a different one for an existing id is ``PQL-E203``.
        """
        wanted, defaulted = resolve(spec)
        with self._transaction() as db:
            row = db.execute("SELECT * FROM tenants WHERE id = ?", (wanted.id,)).fetchone()
            if row is not None:
                existing = _tenant(row)
                if existing.profile() != wanted.profile():
                    raise InputError(
                        "PQL-E203",
                        f"tenant {wanted.id!r} already exists with another profile "
                        f"({_differences(existing.profile(), wanted.profile())})",
                        hints=(
                            "create is only a no-op for the same spec; change a tenant "
                            "with its own commands",
                        ),
                        details={"existing": existing.to_dict()},
                    )
                return existing, defaulted, False
            tenant = replace(wanted, created=now, updated=now)
            db.execute(
                "INSERT INTO tenants VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _row(tenant),
            )
        return tenant, defaulted, True

    def set_state(
        self, tenant: str, state: State, *, now: datetime, home: str | None = None
    ) -> Tenant:
        """Change the tenant's state (and home region) in one transaction."""
        with self._transaction() as db:
            current = self.require(tenant)
            changed = replace(
                current, state=state, updated=now, home_region=home or current.home_region
            )
            db.execute(
                "UPDATE tenants SET state = ?, home_region = ?, updated = ? WHERE id = ?",
                (changed.state, changed.home_region, _iso(now), tenant),
            )
        return changed

    def untrust(self, tenant: str, kid: str, *, now: datetime) -> Tenant:
        """Drop ``kid`` from the tenant's trusted keys (PQL-E237 when it is not trusted)."""
        with self._transaction() as db:
            current = self.require(tenant)
            if kid not in current.trusted_keys:
                raise InputError(
                    "PQL-E237",
                    f"tenant {tenant!r} does not trust key {kid!r} "
                    f"(trusted: {', '.join(current.trusted_keys) or 'none'})",
                    hints=("`pql tenants show ID` lists the trusted keys",),
                )
            changed = replace(
                current,
                trusted_keys=tuple(k for k in current.trusted_keys if k != kid),
                updated=now,
            )
            db.execute(
                "UPDATE tenants SET trusted_keys = ?, updated = ? WHERE id = ?",
                (json.dumps(list(changed.trusted_keys)), _iso(now), tenant),
            )
        return changed

    def delete(self, tenant: str) -> Tenant:
        """Remove the tenant's record and usage; its migration journal stays (the audit trail)."""
        with self._transaction() as db:
            current = self.require(tenant)
            db.execute("DELETE FROM tenants WHERE id = ?", (tenant,))
            db.execute("DELETE FROM usage WHERE tenant = ?", (tenant,))
        return current

    def add_usage(self, counts: Mapping[str, int], day: date) -> None:
        """Count ``counts`` rows ingested on ``day`` for each tenant."""
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO usage VALUES (?, ?, ?) "
                "ON CONFLICT (tenant, day) DO UPDATE SET rows = rows + excluded.rows",
                [(t, day.isoformat(), n) for t, n in counts.items()],
            )

    def connection(self) -> sqlite3.Connection:
        """This thread's connection to the registry (for the migration journal's reads)."""
        return self._db()

    def transaction(self) -> Any:
        """A context manager: one ``BEGIN IMMEDIATE`` transaction, committed on success."""
        return self._transaction()

    # -- internals -------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    home_region TEXT NOT NULL,
    allowed_regions TEXT NOT NULL,
    budget TEXT NOT NULL,
    quotas TEXT NOT NULL,
    trusted_keys TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'migrating', 'suspended')),
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS migrations (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('migrate', 'rollback')),
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'done', 'rolled_back', 'failed')),
    plan TEXT NOT NULL,
    operator TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT
);
CREATE TABLE IF NOT EXISTS migration_files (
    migration INTEGER NOT NULL REFERENCES migrations (id),
    source TEXT NOT NULL,
    copy TEXT NOT NULL,
    PRIMARY KEY (migration, source)
);
CREATE TABLE IF NOT EXISTS usage (
    tenant TEXT NOT NULL,
    day TEXT NOT NULL,
    rows INTEGER NOT NULL,
    PRIMARY KEY (tenant, day)
);
"""


def _row(t: Tenant) -> tuple[Any, ...]:
    return (
        t.id,
        t.home_region,
        json.dumps(list(t.allowed_regions)),
        json.dumps(asdict(t.budget)),
        json.dumps(asdict(t.quotas)),
        json.dumps(list(t.trusted_keys)),
        t.state,
        _iso(t.created),
        _iso(t.updated),
    )


def _tenant(row: Sequence[Any]) -> Tenant:
    return Tenant(
        id=row[0],
        home_region=row[1],
        allowed_regions=tuple(json.loads(row[2])),
        budget=Budget(**json.loads(row[3])),
        quotas=Quotas(**json.loads(row[4])),
        trusted_keys=tuple(json.loads(row[5])),
        state=row[6],
        created=datetime.fromisoformat(row[7]),
        updated=datetime.fromisoformat(row[8]),
    )


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    out = []
    for key in old:
        if old[key] != new[key]:
            if isinstance(old[key], dict):
                out += [
                    f"{k}: {old[key][k]} vs {new[key][k]}"
                    for k in old[key]
                    if old[key][k] != new[key][k]
                ]
            else:
                out.append(f"{key}: {old[key]} vs {new[key]}")
    return "; ".join(out)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
