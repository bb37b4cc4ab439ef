"""The Python API: replay, streaming, the recorded incidents, ack and close.

>>> from pql.adapters.incidents import Incidents      # doctest: +SKIP
>>> inc = Incidents(engine); inc.stream(); engine.ingest("decisions", rows)  # doctest: +SKIP
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from pql.adapters.incidents import log as log_mod
from pql.adapters.incidents.run import TenantRun, replay
from pql.adapters.incidents.settings import Settings, load_settings, save_settings
from pql.adapters.incidents.subjects import event_rows, incident_rows
from pql.errors import InputError

__all__ = ["OPEN_GAUGE", "Incidents", "Summary", "for_engine"]

OPEN_GAUGE = "mc_incidents_open_total"
WATCHED = ("receipts", "decisions", "metric_samples")
_services: weakref.WeakKeyDictionary[Any, Incidents] = weakref.WeakKeyDictionary()
_services_lock = threading.Lock()


def for_engine(engine: Any) -> Incidents:
    """The one :class:`Incidents` of ``engine`` (its streaming state lives there)."""
    with _services_lock:
        found = _services.get(engine)
        if found is None:
            found = _services[engine] = Incidents(engine)
            if found.folder is not None:
                found.on_open.append(_draft)
        return found


def _draft(service: Incidents, event: dict[str, Any]) -> None:
    from pql.adapters.incidents.note import draft_note, save_version

    assert service.folder is not None
    save_version(service.folder, event["id"], draft_note(event))


@dataclass
class Summary:
    """An incident as recorded: its events, its ack, its state."""

    id: str
    tenant: str
    severity: str
    state: str
    opened_at: str
    closed_at: str | None = None
    acked_by: str | None = None
    acked_at: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, events: bool = False) -> dict[str, Any]:
        out = {
            "id": self.id,
            "tenant": self.tenant,
            "severity": self.severity,
            "state": self.state,
            "opened_at": self.opened_at,
            "closed_at": self.closed_at,
            "acked_by": self.acked_by,
            "acked_at": self.acked_at,
            "mtta_s": self.mtta_s,
            "signals": self.events[-1]["signals"] if self.events else [],
        }
        if events:
            out["events"] = self.events
        return out

    @property
    def mtta_s(self) -> float | None:
        if self.acked_at is None:
            return None
        return (_parse(self.acked_at) - _parse(self.opened_at)).total_seconds()


def _parse(text: str) -> datetime:
    from pql.signing import to_utc

    return to_utc(text)


class Incidents:
    """Incidents of one engine: detection, the event log, ack and close."""

    def __init__(self, engine: Any, settings: Settings | None = None) -> None:
        self.engine = engine
        root = getattr(engine, "data_dir", None)
        self.folder: Path | None = Path(root) / "_pql" / "incidents" if root else None
        self.settings = settings or load_settings(self.folder)
        self._runs: dict[str, TenantRun] = {}
        self._memory_log: list[dict[str, Any]] = []
        self._lock = threading.RLock()
        self.on_open: list[Any] = []
        """Callables ``f(incidents, event)`` run after an incident opens (the draft note)."""

    @property
    def log_path(self) -> Path | None:
        return self.folder / "events.jsonl" if self.folder else None

    # detection --------------------------------------------------------------------------
    def replay(self, tenant: str, start: datetime, until: datetime) -> list[dict[str, Any]]:
        """The events over ``[start, until]``; nothing is recorded (see :meth:`record`)."""
        return replay(self.engine, tenant, start, until, self.settings)

    def stream(self, on: bool = True) -> None:
        """Let ingest drive detection (saved in the data directory when there is one)."""
        from dataclasses import replace

        self.settings = replace(self.settings, streaming=on)
        if self.folder is not None:
            save_settings(self.folder, self.settings)

    def on_ingest(self, subject: str, table: pa.Table) -> list[dict[str, Any]]:
        """Streaming: detect on the rows just stored; records and returns the new events."""
        if not self.settings.streaming or subject not in WATCHED or table.num_rows == 0:
            return []
        import polars as pl

        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        spans = frame.group_by("tenant").agg(
            pl.col("ts").min().alias("a"), pl.col("ts").max().alias("b")
        )
        out: list[dict[str, Any]] = []
        with self._lock:
            for tenant, first, last in sorted(spans.iter_rows()):
                run = self._runs.get(tenant)
                if run is None:
                    run = self._runs[tenant] = TenantRun(self.engine, tenant, first, self.settings)
                out += run.advance(last)
            self.record(out)
        return out

    # the record -------------------------------------------------------------------------
    def record(self, events: list[dict[str, Any]]) -> None:
        """Append events to the log and the subjects; opens run the ``on_open`` callables."""
        if not events:
            return
        with self._lock:
            self._append([{"event": e} for e in events])
            self.engine.ingest("incident_events", event_rows(events))
            self.engine.ingest("incidents", incident_rows(events))
            self._gauge()
            for event in events:
                if event["type"] == "mc.incident.open":
                    for callback in self.on_open:
                        callback(self, event)

    def _append(self, items: list[dict[str, Any]]) -> None:
        if self.log_path is not None:
            log_mod.append(self.log_path, items)
        else:
            self._memory_log.extend(items)

    def _entries(self) -> list[dict[str, Any]]:
        if self.log_path is not None:
            return log_mod.entries(self.log_path)
        return list(self._memory_log)

    def summaries(self, tenant: str | None = None) -> list[Summary]:
        """Every recorded incident (of ``tenant``), in the order they opened."""
        found: dict[str, Summary] = {}
        for item in self._entries():
            if "event" in item:
                e = item["event"]
                s = found.get(e["id"])
                if s is None:
                    s = found[e["id"]] = Summary(
                        e["id"], e["tenant"], e["severity"], "open", e["opened_at"]
                    )
                s.events.append(e)
                s.severity = e["severity"]
                if e["type"] == "mc.incident.close":
                    s.state, s.closed_at = "closed", e["ts"]
            elif "ack" in item:
                a = item["ack"]
                s = found.get(a["id"])
                if s is not None and s.acked_at is None:
                    s.acked_by, s.acked_at = a["by"], a["at"]
                    if s.state == "open":
                        s.state = "acknowledged"
        return [s for s in found.values() if tenant is None or s.tenant == tenant]

    def get(self, tenant: str, incident: str) -> Summary:
        """One incident of ``tenant``; another tenant's looks exactly like a missing one."""
        for s in self.summaries(tenant):
            if s.id == incident:
                return s
        raise InputError(
            "PQL-E451",
            f"no incident {incident!r} for tenant {tenant!r}",
            hints=("list them with `pql incidents list --tenant T --data DIR`",),
        )

    def ack(self, tenant: str, incident: str, who: str, at: datetime) -> Summary:
        """Acknowledge: records who and when (MTTA is measured from the open event)."""
        found = self.get(tenant, incident)
        if found.acked_at is None:
            self._append(
                [
                    {
                        "ack": {
                            "id": incident,
                            "tenant": tenant,
                            "by": who,
                            "at": at.isoformat().replace("+00:00", "Z"),
                        }
                    }
                ]
            )
            self._gauge()
        return self.get(tenant, incident)

    def close(self, tenant: str, incident: str, who: str, at: datetime) -> Summary:
        """Close by hand: an ``mc.incident.close`` event naming who closed it."""
        found = self.get(tenant, incident)
        if found.state != "closed":
            last = found.events[-1]
            from pql.adapters.incidents.run import _us
            from pql.adapters.incidents.signals import iso

            self.record(
                [
                    {
                        **last,
                        "seq": last["seq"] + 1,
                        "ts": iso(_us(at)),
                        "type": "mc.incident.close",
                        "reason": f"closed by {who}",
                    }
                ]
            )
        return self.get(tenant, incident)

    def open_count(self) -> int:
        return sum(1 for s in self.summaries() if s.state != "closed")

    def _gauge(self) -> None:
        self.engine.metrics.observe(OPEN_GAUGE, float(self.open_count()))
