"""Correlation: signals of one tenant that overlap and share what they touch form one incident.

A signal joins an open incident of its tenant that already has its series or shares a workflow,
rule, policy version or execution with it; otherwise it opens a new one. A new series joining, or
a change of severity, emits ``mc.incident.update``; ``quiet_s`` without an anomalous bucket
closes the incident (``mc.incident.close``).

Severity (magnitude and breadth): the magnitude of a series is its peak bucket value over its
baseline median (a count's median floored at ``min_count``); the breadth is how many series the
incident has. ``sev1``: magnitude >= 25, or >= 10 with two or more series; ``sev2``: magnitude
>= 5, or three or more series; ``sev3`` otherwise.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from pql.adapters.incidents.observe import COUNTED
from pql.adapters.incidents.settings import Settings
from pql.adapters.incidents.signals import Signal, iso

__all__ = ["Correlator", "Incident", "severity"]


def severity(magnitude: float, breadth: int) -> str:
    """The severity for a peak magnitude and a number of series (see the module docstring)."""
    if magnitude >= 25 or (magnitude >= 10 and breadth >= 2):
        return "sev1"
    if magnitude >= 5 or breadth >= 3:
        return "sev2"
    return "sev3"


@dataclass
class Incident:
    """One incident as correlation builds it."""

    id: str
    tenant: str
    opened: int
    signals: dict[str, Signal] = field(default_factory=dict)
    peaks: dict[str, float] = field(default_factory=dict)
    workflows: set[str] = field(default_factory=set)
    rules: set[str] = field(default_factory=set)
    policy_versions: set[str] = field(default_factory=set)
    executions: set[str] = field(default_factory=set)
    last_active_end: int = 0
    severity: str = "sev3"
    seq: int = 0
    closed: bool = False

    def touches(self, signal: Signal) -> bool:
        return (
            signal.key in self.signals
            or bool(self.workflows & set(signal.workflows))
            or bool(self.rules & set(signal.rules))
            or bool(self.policy_versions & set(signal.policy_versions))
            or bool(self.executions & signal.execution_ids)
        )

    def take(self, signal: Signal) -> bool:
        """Add ``signal``; whether its series is new to the incident."""
        new = signal.key not in self.signals
        if new:
            self.signals[signal.key] = signal
        self.workflows |= set(signal.workflows)
        self.rules |= set(signal.rules)
        self.policy_versions |= set(signal.policy_versions)
        self.executions |= signal.execution_ids
        self.last_active_end = max(self.last_active_end, signal.bucket_end)
        return new

    def magnitude(self, settings: Settings) -> float:
        return max(
            (self.peaks.get(k, _ratio(s, s.value, settings)) for k, s in self.signals.items()),
            default=0.0,
        )

    def rate(self, settings: Settings) -> str:
        return severity(self.magnitude(settings), len(self.signals))


def _ratio(signal: Signal, value: float, settings: Settings) -> float:
    if signal.kind in COUNTED:
        return value / max(signal.median, float(settings.min_count))
    return value / signal.median if signal.median > 0 else 0.0


def _incident_id(signal: Signal) -> str:
    digest = hashlib.sha256(f"{signal.tenant}|{signal.key}|{signal.detected}".encode()).hexdigest()
    return f"inc-{iso(signal.detected)[:19].replace('-', '').replace(':', '')}-{digest[:8]}"


class Correlator:
    """The incidents of one tenant and the events they emitted, in order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.incidents: list[Incident] = []
        self.events: list[dict[str, Any]] = []

    def copy(self) -> Correlator:
        import copy

        return copy.deepcopy(self)

    @property
    def open(self) -> list[Incident]:
        return [i for i in self.incidents if not i.closed]

    def signal(self, signal: Signal) -> None:
        """Place one signal: join an incident it touches, or open a new one."""
        for incident in self.open:
            if incident.touches(signal):
                before = incident.severity
                new = incident.take(signal)
                incident.peaks[signal.key] = max(
                    incident.peaks.get(signal.key, 0.0), _ratio(signal, signal.value, self.settings)
                )
                incident.severity = max(before, incident.rate(self.settings), key=_rank)
                if new:
                    self._emit(
                        incident,
                        "mc.incident.update",
                        signal.detected,
                        f"signal {signal.key} joined",
                    )
                elif incident.severity != before:
                    self._emit(
                        incident,
                        "mc.incident.update",
                        signal.detected,
                        f"severity {before} -> {incident.severity}",
                    )
                return
        incident = Incident(_incident_id(signal), signal.tenant, signal.detected)
        incident.take(signal)
        incident.peaks[signal.key] = _ratio(signal, signal.value, self.settings)
        incident.severity = incident.rate(self.settings)
        self.incidents.append(incident)
        self._emit(incident, "mc.incident.open", signal.detected, f"signal {signal.key}")

    def bucket_done(self, end: int, values: dict[str, float]) -> None:
        """A bucket ending at ``end`` is complete: peak values, severity changes, quiet closes."""
        for incident in self.open:
            before = incident.severity
            for key, signal in incident.signals.items():
                if key in values and incident.last_active_end == end:
                    ratio = _ratio(signal, values[key], self.settings)
                    incident.peaks[key] = max(incident.peaks.get(key, 0.0), ratio)
            incident.severity = max(before, incident.rate(self.settings), key=_rank)
            if incident.severity != before:
                self._emit(
                    incident, "mc.incident.update", end, f"severity {before} -> {incident.severity}"
                )
            if end - incident.last_active_end >= self.settings.quiet_s * 1_000_000:
                incident.closed = True
                self._emit(
                    incident, "mc.incident.close", end, f"quiet for {self.settings.quiet_s} s"
                )

    def _emit(self, incident: Incident, kind: str, at: int, reason: str) -> None:
        incident.seq += 1
        self.events.append(
            {
                "id": incident.id,
                "seq": incident.seq,
                "ts": iso(at),
                "type": kind,
                "tenant": incident.tenant,
                "severity": incident.severity,
                "reason": reason,
                "opened_at": iso(incident.opened),
                "signals": [s.to_dict() for s in incident.signals.values()],
            }
        )


def _rank(sev: str) -> int:
    return {"sev3": 0, "sev2": 1, "sev1": 2}[sev]
