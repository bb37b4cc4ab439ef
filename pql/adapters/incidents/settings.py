"""The detection settings: bucket size, baseline, thresholds and quiet period (documented)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from pql.errors import InputError

__all__ = ["DEFAULT", "Settings", "load_settings", "save_settings"]


@dataclass(frozen=True, slots=True)
class Settings:
    """How signals are detected and grouped; every field is documented in docs/pql/INCIDENTS.md."""

    bucket_s: int = 300
    """Length of a detection bucket, seconds."""
    baseline_days: int = 7
    """Days back whose same hour of day forms the baseline."""
    recent_hours: int = 2
    """Hours just before a bucket that also join its baseline."""
    min_history_days: int = 1
    """Days of a tenant's data needed before anything is detected for it."""
    min_count: int = 6
    """A count bucket (denies, errors, rollbacks) below this is too small to mean anything."""
    min_samples: int = 4
    """A latency bucket needs this many executions (a metric bucket: ``min_metric_samples``)."""
    min_metric_samples: int = 3
    """Samples a metric bucket needs."""
    k: float = 5.0
    """How many robust deviations (1.4826 x MAD) above the median a bucket must be; a level run
    judged with ``m`` runs at one record needs ``sqrt(k**2 + 2 ln m)``."""
    count_ratio: float = 2.5
    """A count must also be this many times the baseline median (median floored at 1)."""
    level_ratio: float = 1.8
    """A latency or metric level must also be this many times the baseline median."""
    level_floor: float = 0.15
    """The deviation of a level is at least this fraction of its median."""
    quiet_s: int = 1800
    """An incident with no anomalous bucket for this long is closed."""
    streaming: bool = False
    """Whether ingest drives detection (``pql incidents stream --on``)."""

    @property
    def bucket(self) -> timedelta:
        return timedelta(seconds=self.bucket_s)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT = Settings()

FILE = "settings.json"


def load_settings(folder: Path | None) -> Settings:
    """The settings saved in ``folder`` (DATA/_pql/incidents), or the defaults."""
    if folder is None or not (folder / FILE).exists():
        return DEFAULT
    try:
        saved = json.loads((folder / FILE).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(
            "PQL-E450", f"the incidents settings {folder / FILE} cannot be read: {exc}"
        ) from None
    return with_values(DEFAULT, saved)


def with_values(base: Settings, values: dict[str, Any]) -> Settings:
    """``base`` with ``values`` set; an unknown name or a bad value is ``PQL-E450``."""
    known = {f.name: f for f in fields(Settings)}
    clean: dict[str, Any] = {}
    for name, value in values.items():
        if name not in known:
            raise InputError(
                "PQL-E450",
                f"unknown incidents setting {name!r}",
                hints=(f"known settings: {', '.join(sorted(known))}",),
            )
        want = type(getattr(base, name))
        if want is bool and not isinstance(value, bool):
            raise InputError("PQL-E450", f"incidents setting {name} must be true or false")
        if want in (int, float) and (
            isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
        ):
            raise InputError("PQL-E450", f"incidents setting {name} must be a positive number")
        clean[name] = want(value)
    return replace(base, **clean)


def save_settings(folder: Path, settings: Settings) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FILE).write_text(json.dumps(settings.to_dict(), indent=2, sort_keys=True) + "\n")
