"""The tenancy adapter: a tenant registry with budgets and quotas, and preflight.

Its stages (see ``docs/pql/TENANCY.md``):

=================  ====================  ==============================================
module             hook / entry          what it does
=================  ====================  ==============================================
``registry``       ``Registry.create``   the tenant registry in ``DATA/_pql/tenants.sqlite``
``quotas``         ``pql_tenant_limits`` a tenant's budget tightens the engine's limits
``quotas``         ``pql_check_ingest``  a file over a tenant's quota is rejected whole
``preflight``      ``run_preflight``     the readiness checks, each with a stable code
``migrate``        ``migrate``           move a tenant between regions: journaled, verified
``disclose``       ``disclose``          the signed disclosure pack, and its verification
``offboard``       ``delete_tenant``     revert a create, stop trusting a key
``cli``            ``pql_cli_commands``  ``pql tenants create|show|list|preflight|migrate|...``
``http``           ``pql_http_routes``   ``POST /api/tenants``, ``POST /api/tenants/{id}:migrate``
=================  ====================  ==============================================
"""

from __future__ import annotations

import argparse
from typing import Any

import pyarrow as pa

from pql.adapters import hookimpl
from pql.adapters.model import MetricSpec, PreflightCheck
from pql.adapters.tenancy import cli, preflight, quotas
from pql.adapters.tenancy.registry import Registry, Tenant, TenantSpec
from pql.limits import TenantLimits
from pql.storage import IngestReport

__all__ = ["Registry", "Tenant", "TenantSpec"]


@hookimpl
def pql_tenant_limits(engine: Any, tenant: str) -> TenantLimits | None:
    return quotas.limits_for(engine, tenant)


@hookimpl
def pql_check_ingest(engine: Any, subject: str, table: pa.Table) -> None:
    quotas.check_quotas(engine, subject, table)


@hookimpl
def pql_on_ingest(engine: Any, subject: str, table: pa.Table, report: IngestReport) -> None:
    quotas.record_usage(engine, table)


@hookimpl
def pql_metrics() -> list[MetricSpec]:
    return [
        MetricSpec(
            "mc_tenant_migration_ms",
            "histogram",
            "duration of a tenant migration or rollback, ms",
            labels=("kind",),
            buckets=(100, 500, 1_000, 5_000, 15_000, 60_000, 300_000, 900_000),
        )
    ]


@hookimpl
def pql_preflight_checks() -> list[PreflightCheck]:
    return list(preflight.CHECKS)


@hookimpl
def pql_cli_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    cli.register(subparsers)


@hookimpl
def pql_http_routes(engine: Any) -> list[Any]:
    from pql.adapters.tenancy import http

    return http.routes(engine)
