"""The residency adapter: tenants' data stays in their regions, locked, and audited.

Its stages (see ``docs/pql/RESIDENCY.md``):

==============  =====================  =====================================================
module          hook / entry           what it does
==============  =====================  =====================================================
``policy``      ``evaluate``           the policy file and the pure, OPA-shaped evaluator
``enforce``     ``pql_check_ingest``   a write to a region the tenant may not live in: refused
``enforce``     ``pql_check_read``     a read of another region's bucket: refused unless allowed
``lock``        ``pql_check_remove``   retention, legal hold and tags of every stored object
``journal``     ``pql_on_ingest``      locks what an ingest wrote and journals mode, source, who
``audit``       ``audit``              every violation in the journal and the stored objects
``disclosure``  ``pql_disclosure``     policy and lock settings for a tenant's disclosure pack
``render``      ``as_html``            the audit as a table, JSON or the dashboard page
``cli``         ``pql_cli_commands``   ``pql residency audit|delete``
==============  =====================  =====================================================
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from pql.adapters import hookimpl
from pql.adapters.model import MetricSpec
from pql.adapters.residency import cli, disclosure, enforce, journal, lock
from pql.adapters.residency.audit import AuditReport, Violation, audit
from pql.adapters.residency.policy import Policy, evaluate
from pql.storage import IngestReport

__all__ = ["AuditReport", "Policy", "Violation", "audit", "evaluate"]


@hookimpl
def pql_check_ingest(
    engine: Any, subject: str, table: pa.Table, context: Mapping[str, str]
) -> None:
    enforce.check_write(engine, subject, table, context)


@hookimpl
def pql_on_ingest(
    engine: Any, subject: str, table: pa.Table, report: IngestReport, context: Mapping[str, str]
) -> None:
    journal.record_ingest(engine, subject, report, context)


@hookimpl
def pql_check_read(
    engine: Any, tenant: str, subject: str, regions: Sequence[str], bucket: Callable[[str], str]
) -> None:
    enforce.check_read(engine, tenant, subject, regions, bucket)


@hookimpl
def pql_check_remove(root: Path, path: str, action: str) -> None:
    lock.check_remove(root, path, action)


@hookimpl
def pql_disclosure(engine: Any, tenant: str) -> dict[str, Any] | None:
    return disclosure.section(engine, tenant)


@hookimpl
def pql_metrics() -> list[MetricSpec]:
    return [
        MetricSpec(
            "mc_residency_backfill_scans_total",
            "counter",
            "backfills and replays the residency auditor scanned",
        ),
        MetricSpec(
            "mc_residency_violations",
            "gauge",
            "residency violations the last audit found, by kind",
            labels=("kind",),
        ),
    ]


@hookimpl
def pql_cli_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    cli.register(subparsers)
