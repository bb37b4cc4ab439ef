"""The subjects this adapter registers: incidents, their events, and metric samples."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import polars as pl

from pql.catalog import Column, DataType, Subject

__all__ = ["INCIDENTS", "INCIDENT_EVENTS", "METRIC_SAMPLES", "event_rows", "incident_rows"]

S, F, T, N = DataType.STRING, DataType.FLOAT, DataType.TIMESTAMP, DataType.INT


def _req(name: str, type_: DataType, nullable: bool = False, doc: str = "") -> Column:
    return Column(name, type_, nullable=nullable, required=True, doc=doc)


INCIDENTS = Subject(
    name="incidents",
    key="rowId",
    order=("ts", "rowId"),
    doc="One row per incident and severity it reached (ts: when it opened).",
    columns=(
        _req("rowId", S, doc="incident id and severity, e.g. inc-...:sev1"),
        _req("tenant", S),
        _req("ts", T, doc="when the incident opened"),
        _req("incidentId", S),
        _req("severity", S, doc="sev1, sev2 or sev3: a severity the incident reached"),
        _req("series", S, doc="the series of its first signal, e.g. deny|residency"),
        _req("workflows", S, doc="comma-separated"),
        _req("rules", S, doc="comma-separated"),
        _req("policy_versions", S, doc="comma-separated"),
    ),
)

INCIDENT_EVENTS = Subject(
    name="incident_events",
    key="eventId",
    order=("ts", "eventId"),
    doc="Every mc.incident.* event (docs/audit/INCIDENT_EVENTS.schema.json).",
    columns=(
        _req("eventId", S, doc="incident id and sequence number"),
        _req("tenant", S),
        _req("ts", T),
        _req("incidentId", S),
        _req("type", S, doc="mc.incident.open, mc.incident.update or mc.incident.close"),
        _req("severity", S),
        _req("reason", S),
        _req("signals", N, doc="how many signals the event carries"),
        _req("event", S, doc="the whole event, JSON"),
    ),
)

METRIC_SAMPLES = Subject(
    name="metric_samples",
    key="sampleId",
    order=("ts", "sampleId"),
    doc="Metric samples fed in with `pql incidents ingest-metrics`.",
    columns=(
        _req("sampleId", S, doc="name, labels and ts"),
        _req("tenant", S),
        _req("ts", T),
        _req("name", S),
        _req("value", F),
        _req("labels", S, doc="canonical JSON object"),
        _req("workflow_label", S, nullable=True, doc="the workflow label, if any"),
    ),
)


def _ts(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def event_rows(events: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "eventId": [f"{e['id']}#{e['seq']}" for e in events],
            "tenant": [e["tenant"] for e in events],
            "ts": [_ts(e["ts"]) for e in events],
            "incidentId": [e["id"] for e in events],
            "type": [e["type"] for e in events],
            "severity": [e["severity"] for e in events],
            "reason": [e["reason"] for e in events],
            "signals": [len(e["signals"]) for e in events],
            "event": [json.dumps(e, sort_keys=True) for e in events],
        },
        schema=INCIDENT_EVENTS.polars_schema(),
    )


def incident_rows(events: list[dict[str, Any]]) -> pl.DataFrame:
    rows: dict[str, dict[str, Any]] = {}
    for e in events:
        if e["type"] == "mc.incident.close":
            continue
        sigs = e["signals"]
        row_id = f"{e['id']}:{e['severity']}"
        rows.setdefault(
            row_id,
            {
                "rowId": row_id,
                "tenant": e["tenant"],
                "ts": _ts(e["opened_at"]),
                "incidentId": e["id"],
                "severity": e["severity"],
                "series": sigs[0]["series"],
                "workflows": ",".join(sorted({w for s in sigs for w in s["workflows"]})),
                "rules": ",".join(sorted({r for s in sigs for r in s["rules"]})),
                "policy_versions": ",".join(
                    sorted({v for s in sigs for v in s["policy_versions"]})
                ),
            },
        )
    return pl.DataFrame(list(rows.values()), schema=INCIDENTS.polars_schema())
