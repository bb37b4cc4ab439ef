"""The incidents adapter: signals, incidents, the event log, the draft note.

Its stages (see ``docs/pql/INCIDENTS.md``):

================  =====================  ==================================================
module            hook / entry           what it does
================  =====================  ==================================================
``observe``       ``observations``       engine rows -> the series watched (denies, errors...)
``detect``        ``detect_bucket``      a bucket against its robust baseline -> signals
``correlate``     ``Correlator``         signals -> incidents -> mc.incident.* events
``run``           ``replay``/``TenantRun``  walks buckets in order: replay and streaming
``log``           ``append``             the hash-chained event log; ``verify_log``
``subjects``      ``pql_subjects``       incidents, incident_events, metric_samples
``metrics_in``    ``read_samples``       metric sample files -> metric_samples rows
``note``          ``draft_note``         the Markdown draft, each figure with its query
``service``       ``Incidents``          the Python API; ``pql_on_ingest`` (streaming)
``cli``           ``pql_cli_commands``   ``pql incidents ...``
``http``          ``pql_http_routes``    ``GET /api/incidents``, ``GET /api/incidents/{id}``
================  =====================  ==================================================
"""

from __future__ import annotations

import argparse
from typing import Any

import pyarrow as pa

from pql.adapters import hookimpl
from pql.adapters.incidents.service import OPEN_GAUGE, Incidents, for_engine
from pql.adapters.incidents.settings import Settings
from pql.adapters.incidents.subjects import INCIDENT_EVENTS, INCIDENTS, METRIC_SAMPLES
from pql.adapters.model import MetricSpec
from pql.catalog import Subject
from pql.storage import IngestReport

__all__ = ["Incidents", "Settings", "for_engine"]


@hookimpl
def pql_subjects() -> list[Subject]:
    return [INCIDENTS, INCIDENT_EVENTS, METRIC_SAMPLES]


@hookimpl
def pql_metrics() -> list[MetricSpec]:
    return [MetricSpec(OPEN_GAUGE, "gauge", "Incidents open (not closed) in this data directory")]


@hookimpl
def pql_on_ingest(engine: Any, subject: str, table: pa.Table, report: IngestReport) -> None:
    for_engine(engine).on_ingest(subject, table)


@hookimpl
def pql_cli_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    from pql.adapters.incidents import cli

    cli.register(subparsers)


@hookimpl
def pql_http_routes(engine: Any) -> list[Any]:
    from pql.adapters.incidents import http

    return http.routes(engine)
