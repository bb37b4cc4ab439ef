"""A signal: one series of one tenant found anomalous in one bucket, with its evidence."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["MEASURES", "Signal", "iso"]

MEASURES = {
    "deny": "deny decisions of rule {name} per bucket",
    "errors": "executions of workflow {name} ending in error per bucket",
    "rollbacks": "executions of workflow {name} rolled back per bucket",
    "latency": "mean latency_ms of workflow {name} per bucket",
    "metric": "mean of metric {name} per bucket",
}
"""What each kind of signal measures (``{name}``: the rule, workflow or metric)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(micros: int) -> str:
    """An ISO-8601 UTC timestamp with microseconds, e.g. ``2026-03-02T11:05:00.000000Z``."""
    return (_EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class Signal:
    """One anomalous bucket of one series, as detected (at the record that crossed)."""

    tenant: str
    key: str
    kind: str
    name: str
    bucket_start: int
    bucket_end: int
    window_start: int
    """The first record the value counts or averages (the window runs to ``detected``)."""
    detected: int
    value: float
    median: float
    mad: float
    threshold: float
    baseline_samples: int
    executions: int
    sample_executions: tuple[str, ...]
    workflows: tuple[str, ...]
    rules: tuple[str, ...]
    policy_versions: tuple[str, ...]
    execution_ids: frozenset[str]

    @property
    def ratio(self) -> float:
        """How far above normal: value over the baseline median (see ``severity``)."""
        return self.value / self.median if self.median > 0 else self.value

    def to_dict(self) -> dict[str, Any]:
        """The signal as the event contract carries it."""
        return {
            "kind": self.kind,
            "series": self.key,
            "measured": MEASURES[self.kind].format(name=self.name),
            "bucket": {"start": iso(self.bucket_start), "end": iso(self.bucket_end)},
            "window_start": iso(self.window_start),
            "detected_at": iso(self.detected),
            "value": round(self.value, 6),
            "baseline": {
                "median": round(self.median, 6),
                "mad": round(self.mad, 6),
                "threshold": round(self.threshold, 6),
                "samples": self.baseline_samples,
            },
            "executions": {"count": self.executions, "sample": list(self.sample_executions)},
            "workflows": list(self.workflows),
            "rules": list(self.rules),
            "policy_versions": list(self.policy_versions),
        }
