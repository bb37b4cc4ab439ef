"""``POST /api/tenants`` and ``POST /api/tenants/{id}:migrate``: the tenant comes from the token.

Both need the ``admin`` scope and act only on the tenant of the request's token:

* ``POST /api/tenants`` registers the token's tenant, as ``pql tenants create`` does (the same
  documented defaults, the same list of defaulted fields, the same spec again is a no-op, another
  spec is ``PQL-E203``, 409). The body has no tenant id: a token is created for a tenant id
  before that tenant is registered (``pql tokens create --tenant ID --scope admin``), and its
  first ``POST /api/tenants`` creates it. 201 when created, 200 when it already was.
* ``POST /api/tenants/{id}:migrate`` plans (``dry_run``), runs or rolls back (``rollback``) a
  migration of the token's tenant, as ``pql tenants migrate`` does; the run happens on a worker
  thread, so the server keeps answering. For any ``id`` other than the token's tenant the answer
  is the same 404 whether that tenant exists or not.

Starlette is imported here only, when the HTTP server asks for routes.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from pql.adapters.tenancy.registry import (
    MAX_NUMBER,
    MAX_WINDOW_DAYS,
    Budget,
    Quotas,
    Registry,
    TenantSpec,
)
from pql.errors import InputError

__all__ = ["SCOPE", "STATUSES", "routes"]

SCOPE: Final = "admin"

STATUSES: Final = {
    "PQL-E202": 404,  # no such tenant (or not the token's)
    "PQL-E203": 409,  # the tenant exists with another profile
    "PQL-E211": 409,  # the tenant is migrating (or suspended)
    "PQL-E212": 409,  # nothing to roll back
    "PQL-E213": 409,  # already at home in the target region
    "PQL-E214": 409,  # a copy does not match its original: run again
    "PQL-E215": 409,  # the rows changed during the migration: switched back, run again
    "PQL-E217": 409,  # the old copy was purged: nothing to roll back to
}
"""The HTTP status of the tenancy errors that are not the default of their kind (400, 422)."""

_INTEGERS: Final = (
    "max_rows",
    "max_window_days",
    "max_concurrent",
    "latency_ms",
    "rows_per_day",
    "bytes_stored",
)
_NUMBERS: Final = ("cost_budget",)
_LISTS: Final = ("allowed_regions", "trusted_keys")
_CREATE_FIELDS: Final = ("region", *_LISTS, *_NUMBERS, *_INTEGERS)
_MIGRATE_FIELDS: Final = ("to", "dry_run", "rollback")


def _defaults() -> dict[str, Any]:
    return {
        name: getattr(default, name)
        for default in (Budget(), Quotas())
        for name in default.__dataclass_fields__
    }


CREATE_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["region"],
    "additionalProperties": False,
    "description": "The token's tenant, as `pql tenants create` takes it; every field left out "
    "takes its documented default and is listed in the answer's `defaulted`.",
    "properties": {
        "region": {"type": "string", "description": "the home region, e.g. us-east-1"},
        "allowed_regions": {
            "type": "array",
            "items": {"type": "string"},
            "description": "default: the home region only",
        },
        "trusted_keys": {
            "type": "array",
            "items": {"type": "string"},
            "description": "trusted signing key ids; default none",
        },
        **{
            name: {
                "type": "number" if name in _NUMBERS else "integer",
                "exclusiveMinimum": 0,
                "maximum": MAX_WINDOW_DAYS if name == "max_window_days" else MAX_NUMBER,
                "default": value,
            }
            for name, value in _defaults().items()
        },
    },
}

_TENANT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": [
        "id",
        "home_region",
        "allowed_regions",
        "budget",
        "quotas",
        "trusted_keys",
        "state",
        "created",
        "updated",
    ],
    "properties": {
        "id": {"type": "string"},
        "home_region": {"type": "string"},
        "allowed_regions": {"type": "array", "items": {"type": "string"}},
        "budget": {"type": "object"},
        "quotas": {"type": "object"},
        "trusted_keys": {"type": "array", "items": {"type": "string"}},
        "state": {"enum": ["active", "migrating", "suspended"]},
        "created": {"type": "string"},
        "updated": {"type": "string"},
    },
}

CREATED_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["tenant", "created", "defaulted"],
    "properties": {
        "tenant": _TENANT_SCHEMA,
        "created": {"type": "boolean", "description": "false: it existed with this spec"},
        "defaulted": {"type": "array", "items": {"type": "string"}},
    },
}

MIGRATE_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": False,
    "description": "Exactly one of `to` and `rollback: true`; `dry_run` only with `to`.",
    "properties": {
        "to": {"type": "string", "description": "the target storage region"},
        "dry_run": {"type": "boolean", "default": False, "description": "plan, write nothing"},
        "rollback": {
            "type": "boolean",
            "default": False,
            "description": "switch back to the copy the last migration retired",
        },
    },
}

_PLAN_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "a dry run: the plan (`pql tenants migrate --dry-run --format json`)",
    "required": [
        "tenant",
        "source",
        "target",
        "partitions",
        "rows",
        "bytes",
        "target_buckets",
        "policy",
        "throughput_bytes_s",
        "expected_s",
    ],
    "properties": {
        "tenant": {"type": "string"},
        "source": {"type": "string"},
        "target": {"type": "string"},
        "partitions": {"type": "array", "items": {"type": "object"}},
        "rows": {"type": "integer"},
        "bytes": {"type": "integer"},
        "target_buckets": {"type": "array", "items": {"type": "string"}},
        "policy": {"type": "array", "items": {"type": "object"}},
        "throughput_bytes_s": {"type": "integer"},
        "expected_s": {"type": "number"},
    },
}

_REPORT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "a run or rollback: the report written to the evidence folder",
    "required": [
        "kind",
        "tenant",
        "source",
        "target",
        "journal_id",
        "resumed",
        "operator",
        "started",
        "finished",
        "timings_ms",
        "digest_before",
        "digest_after",
        "unchanged",
        "plan",
        "evidence",
    ],
    "properties": {
        "kind": {"enum": ["migrate", "rollback"]},
        "tenant": {"type": "string"},
        "source": {"type": "string"},
        "target": {"type": "string"},
        "journal_id": {"type": "integer"},
        "resumed": {"type": "boolean"},
        "operator": {"type": "string"},
        "started": {"type": "string"},
        "finished": {"type": "string"},
        "timings_ms": {"type": "object"},
        "digest_before": {"type": "object"},
        "digest_after": {"type": "object"},
        "unchanged": {"type": "boolean"},
        "plan": {"type": "object"},
        "evidence": {
            "type": "array",
            "items": {"type": "string"},
            "description": "paths relative to the data directory",
        },
    },
}

MIGRATED_SCHEMA: Final[dict[str, Any]] = {"oneOf": [_REPORT_SCHEMA, _PLAN_SCHEMA]}


# -- bodies ------------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_body(raw: bytes, fields: tuple[str, ...]) -> dict[str, Any]:
    """The JSON object of a body with only ``fields`` (``PQL-E301``/``E302``, as the server)."""
    try:
        body = json.loads(raw, parse_constant=_reject_constant) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise InputError(
            "PQL-E301",
            "the request body is not valid JSON",
            hints=('send a JSON object, e.g. {"region": "us-east-1"}',),
        ) from None
    if not isinstance(body, dict):
        raise InputError("PQL-E301", "the request body must be a JSON object")
    for name in body:
        if name not in fields:
            hint = (
                "the tenant comes from the bearer token, never from the request"
                if name in ("tenant", "id")
                else f"the fields are {', '.join(fields)}"
            )
            raise InputError("PQL-E302", f"unknown field {name!r} in the body", hints=(hint,))
    return body


def _wrong_type(name: str, what: str) -> InputError:
    return InputError("PQL-E302", f"the field {name!r} must be {what}")


def create_spec(tenant: str, body: dict[str, Any]) -> TenantSpec:
    """The :class:`TenantSpec` of a ``POST /api/tenants`` body for the token's ``tenant``."""
    if "region" not in body:
        raise InputError(
            "PQL-E303",
            "the body lacks the field 'region'",
            hints=('e.g. {"region": "us-east-1"}; every other field has a default',),
        )
    if not isinstance(body["region"], str):
        raise _wrong_type("region", "a string")
    values: dict[str, Any] = {}
    for name in _LISTS:
        if name in body:
            value = body[name]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise _wrong_type(name, "a list of strings")
            values[name] = tuple(value)
    for name in (*_NUMBERS, *_INTEGERS):
        if name in body:
            value = body[name]
            kinds = (int, float) if name in _NUMBERS else (int,)
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise _wrong_type(name, "a number" if name in _NUMBERS else "an integer")
            values[name] = value
    return TenantSpec(id=tenant, region=body["region"], **values)


def migrate_args(body: dict[str, Any]) -> tuple[str | None, bool, bool]:
    """``(to, dry_run, rollback)`` of a ``POST /api/tenants/{id}:migrate`` body."""
    to = body.get("to")
    if to is not None and not isinstance(to, str):
        raise _wrong_type("to", "a string")
    flags = []
    for name in ("dry_run", "rollback"):
        value = body.get(name, False)
        if not isinstance(value, bool):
            raise _wrong_type(name, "true or false")
        flags.append(value)
    dry_run, rollback = flags
    if rollback == (to is not None):
        raise InputError(
            "PQL-E220",
            "give exactly one of 'to' and 'rollback': true",
            hints=('{"to": "eu-west-1", "dry_run": true} or {"rollback": true}',),
        )
    if rollback and dry_run:
        raise InputError("PQL-E220", "a rollback has no dry run")
    return to, dry_run, rollback


def not_yours(tenant_id: str) -> InputError:
    """What a token gets for any tenant id but its own, whether that tenant exists or not."""
    return InputError(
        "PQL-E202",
        f"no tenant {tenant_id!r} for this token",
        hints=("a token acts only on the tenant it was created for",),
    )


# -- running -----------------------------------------------------------------------------------


class _Running:
    """The tenants this process is migrating: a second request for one is refused at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tenants: set[str] = set()

    def claim(self, tenant: str) -> bool:
        with self._lock:
            if tenant in self._tenants:
                return False
            self._tenants.add(tenant)
            return True

    def release(self, tenant: str) -> None:
        with self._lock:
            self._tenants.discard(tenant)


def _migrate(
    engine: Any, running: _Running, tenant: str, operator: str, args: tuple[str | None, bool, bool]
) -> dict[str, Any]:
    """Plan, run or roll back (on a worker thread); the plan or the report as a document."""
    from pql.adapters.tenancy.migrate import Plan, Report, migrate, rollback

    to, dry_run, back = args
    now = datetime.now(UTC)
    if dry_run:
        assert to is not None
        return migrate(engine, tenant, to, now=now, dry_run=True).to_dict()
    if not running.claim(tenant):
        raise InputError(
            "PQL-E211",
            f"tenant {tenant!r} is migrating (a request of this server is running it); "
            "one migration at a time",
            hints=("wait for that request's answer",),
        )
    outcome: Plan | Report
    try:
        if back:
            outcome = rollback(engine, tenant, now=now, operator=operator)
        else:
            assert to is not None
            outcome = migrate(engine, tenant, to, now=now, operator=operator)
    finally:
        running.release(tenant)
    doc = outcome.to_dict()
    data = Path(engine.data_dir).resolve()
    doc["evidence"] = [_relative(path, data) for path in doc["evidence"]]
    return doc


def _relative(path: str, data: Path) -> str:
    """An evidence path relative to the data directory (the server's paths are not the
    client's business)."""
    try:
        return Path(path).resolve().relative_to(data).as_posix()
    except ValueError:
        return Path(path).name


def _create(engine: Any, spec: TenantSpec) -> dict[str, Any]:
    tenant, defaulted, created = Registry(engine.data_dir).create(spec, now=datetime.now(UTC))
    return {"tenant": tenant.to_dict(), "created": created, "defaulted": list(defaulted)}


# -- routes ------------------------------------------------------------------------------------


def routes(engine: Any) -> list[Any]:
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from pql.server.edge import principal
    from pql.server.errors import register_status
    from pql.server.spec import json_ok, operation

    for code, status in STATUSES.items():
        register_status(code, status)
    running = _Running()

    @operation(
        "Register the token's tenant (documented defaults; the same spec again is a no-op)",
        ok=json_ok("the tenant existed with this spec: nothing changed", CREATED_SCHEMA),
        body=CREATE_SCHEMA,
        errors=(400, 403, 409),
    )
    async def create_tenant(request: Request) -> Response:
        who = principal(request, SCOPE)
        spec = create_spec(who.tenant, parse_body(await request.body(), _CREATE_FIELDS))
        doc = await run_in_threadpool(_create, engine, spec)
        return JSONResponse(doc, status_code=201 if doc["created"] else 200)

    create_tenant.openapi["responses"]["201"] = json_ok(  # type: ignore[attr-defined]
        "the tenant was created; `defaulted` lists the fields that took their default",
        CREATED_SCHEMA,
    )

    @operation(
        "Plan, run or roll back a migration of the token's tenant to another storage region",
        ok=json_ok("the plan (dry run) or the report (run, rollback)", MIGRATED_SCHEMA),
        body=MIGRATE_SCHEMA,
        errors=(400, 403, 404, 409, 422),
        path_params=("id",),
    )
    async def migrate_tenant(request: Request) -> Response:
        who = principal(request, SCOPE)
        tenant_id = request.path_params["id"]
        if tenant_id != who.tenant:
            raise not_yours(tenant_id)
        args = migrate_args(parse_body(await request.body(), _MIGRATE_FIELDS))
        operator = f"token {who.token_id} over HTTP"
        doc = await run_in_threadpool(_migrate, engine, running, who.tenant, operator, args)
        return JSONResponse(doc)

    return [
        Route("/api/tenants", create_tenant, methods=["POST"]),
        Route("/api/tenants/{id}:migrate", migrate_tenant, methods=["POST"]),
    ]
