"""Every hook an adapter may implement: the whole extension surface of pql, in one place.

An adapter is a module (or object) registered under the ``pql.adapters`` entry-point group whose
functions are marked with :data:`pql.adapters.hookimpl` and named like the hooks below. It
implements only the hooks it needs. The core calls these hooks and nothing else of an adapter;
it never imports an adapter package (an import-linter contract keeps it so).

Two kinds of hook:

* **Contributions** (``pql_subjects``, ``pql_safety_rules``, ``pql_preflight_checks``,
  ``pql_metrics``, ``pql_cli_commands``) are collected once, when the adapter is loaded. If one of
  them raises or conflicts with what is already registered, the adapter is reported broken and
  none of its contributions is used: an adapter is registered whole or not at all.
* **Calls** (``pql_tenant_limits``, ``pql_check_ingest``, ``pql_on_ingest``,
  ``pql_http_routes``, ``pql_disclosure``) run while the engine works. A
  :class:`~pql.errors.PQLError` they raise is a decision (a refusal) and reaches the caller;
  any other exception is reported as an internal error naming the adapter (``PQL-X201``),
  never as a traceback.

``tests/test_adapters.py`` fails if a hook here is missing from ``docs/pql/ADAPTERS.md``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import pyarrow as pa

    from pql.adapters.model import MetricSpec, PreflightCheck
    from pql.catalog import Subject
    from pql.limits import TenantLimits
    from pql.plan.safety import Rule
    from pql.storage import IngestReport

PROJECT = "pql"
hookspec = pluggy.HookspecMarker(PROJECT)

__all__ = ["PROJECT", "hookspec"]


@hookspec
def pql_subjects() -> Sequence[Subject]:
    """Subjects to add to the catalog.

    They are queryable with PQL like ``receipts`` and, like every subject, tenant-scoped: each
    must have ``tenant`` and ``ts`` columns, and a query only ever reads its own tenant's rows.
    A name that is already registered (by the core or another adapter) makes the adapter broken.
    """


@hookspec
def pql_safety_rules() -> Sequence[Rule]:
    """Safety rules that run after the core's rules, in the order returned, never instead.

    A rule is ``rule(plan, ctx) -> plan`` like those of :mod:`pql.plan.safety`; it may only refuse
    (raise :class:`~pql.errors.SafetyError` with a code of the adapter's range) and must return
    the plan it was given, unchanged: the plan was already estimated and optimized.
    """


@hookspec
def pql_cli_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add command groups to the ``pql`` command line.

    Call ``subparsers.add_parser(NAME, ...)`` and set a ``handler`` default: a function
    ``handler(args) -> int`` (the exit status) that raises :class:`~pql.errors.PQLError` for
    failures, which the command line renders. A name the core or another adapter uses makes the
    adapter broken.
    """


@hookspec
def pql_http_routes(engine: Any) -> Sequence[Any]:
    """HTTP routes to mount on the HTTP server that serves ``engine``.

    Returns Starlette route objects (``starlette.routing.Route`` or ``Mount``); the core never
    imports Starlette itself, only the HTTP server does. Paths under ``/api/`` sit behind the
    server's token check; a path the server already answers is refused (``PQL-X302``).
    """


@hookspec
def pql_tenant_limits(engine: Any, tenant: str) -> TenantLimits | None:
    """The tenant's limit profile as this adapter knows it, or ``None``.

    Asked on every query; the answers of every adapter and the engine's own profile
    (:meth:`pql.Engine.set_tenant_limits`) are combined by taking the lower of each limit, so an
    adapter can only tighten.
    """


@hookspec
def pql_check_ingest(
    engine: Any, subject: str, table: pa.Table, context: Mapping[str, str]
) -> None:
    """Look at a validated table before anything of it is written; raise to reject it whole.

    Raise a :class:`~pql.errors.PQLError` (e.g. a quota refusal) to reject the whole table.
    ``context`` is what the caller of :meth:`pql.Engine.ingest` said about the ingest: always
    ``mode`` (``live``, ``backfill`` or ``replay``), and ``source`` (a digest of the input) and
    ``who`` when known.
    """


@hookspec
def pql_on_ingest(
    engine: Any, subject: str, table: pa.Table, report: IngestReport, context: Mapping[str, str]
) -> None:
    """React to rows that were just stored (``report`` says how many were new and the files
    written; ``context`` as for :func:`pql_check_ingest`)."""


@hookspec
def pql_check_read(
    engine: Any, tenant: str, subject: str, regions: Sequence[str], bucket: Callable[[str], str]
) -> None:
    """Look at what a query is about to read, before it runs or is answered from the cache.

    ``regions`` are the storage regions of ``tenant``'s ``subject`` the query's window meets,
    sorted, found when the adapter first looks at them (a hook that decides without them costs
    the query no pass over the partition statistics); ``bucket(region)`` names the bucket.
    Called for every way a query reads: ``query``, ``execute``, ``run_saved`` and
    ``explain(analyze=True)``. Raise a :class:`~pql.errors.PQLError` to refuse.
    """


@hookspec
def pql_check_remove(root: Path, path: str, action: str) -> None:
    """Called before the lake at ``root`` deletes (``action="delete"``) or moves
    (``"quarantine"``) the file ``path`` (relative to ``root``); raise to refuse."""


@hookspec
def pql_preflight_checks() -> Sequence[PreflightCheck]:
    """Checks that ``pql tenants preflight`` runs for a tenant, each with a stable code."""


@hookspec
def pql_disclosure(engine: Any, tenant: str) -> Mapping[str, Any] | None:
    """Sections for ``tenant``'s disclosure pack: ``{name: JSON-ready document}``, or ``None``.

    Each section is written as ``NAME.json`` into the pack and covered by its signed manifest;
    a section named ``residency`` is merged into the pack's ``residency.json`` (regions,
    buckets) instead. Names are lower-case ``[a-z][a-z0-9_-]*``; the pack's own names
    (``profile``, ``keys``, ``limits``) and a name another adapter answered first are skipped.
    """


@hookspec
def pql_metrics() -> Sequence[MetricSpec]:
    """Metrics the adapter records; registered on the engine's :class:`~pql.metrics.Metrics`.

    Record values with ``engine.metrics.observe(NAME, value)`` or ``engine.metrics.inc(NAME)``.
    """
