"""A labelled synthetic set: normal traffic with daily cycles, plus injected incidents.

Used by the tests, ``benchmarks/incidents_eval.py`` and ``benchmarks/gameday.py``. The same
arguments always give the same frames.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from pql.adapters.incidents.subjects import METRIC_SAMPLES
from pql.catalog import DECISIONS, RECEIPTS

__all__ = ["KINDS", "Injected", "Synthetic", "generate"]

KINDS = ("deny_storm", "latency", "rollbacks", "errors", "metric")
WORKFLOWS = ("ingest", "etl", "sync", "report")
RULES = ("residency", "budget", "pii", "ratelimit", "owner")
US = 1_000_000


@dataclass(frozen=True, slots=True)
class Injected:
    """One injected incident: where, what, when (onset = first anomalous record) and how bad."""

    tenant: str
    kind: str
    target: str
    onset: datetime
    end: datetime
    severity: str


@dataclass(frozen=True, slots=True)
class Synthetic:
    receipts: pl.DataFrame
    decisions: pl.DataFrame
    metrics: pl.DataFrame
    injected: tuple[Injected, ...]
    start: datetime
    end: datetime


def _rate(ts_us: np.ndarray, tz_shift: int) -> np.ndarray:
    hour = ((ts_us // (3600 * US)) + tz_shift) % 24 + (ts_us % (3600 * US)) / (3600 * US)
    return 0.25 + 0.75 * np.sin(np.pi * hour / 24) ** 2


def generate(
    *,
    tenants: int = 3,
    days: int = 9,
    per_hour: int = 600,
    end: datetime = datetime(2026, 3, 2, 12, tzinfo=UTC),
    incidents_per_tenant: int = 5,
    seed: int = 11,
) -> Synthetic:
    """``days`` of traffic (about ``per_hour`` executions an hour at peak) for each tenant,
    with ``incidents_per_tenant`` injected incidents (every kind in turn) in the last two days."""
    rng = np.random.default_rng(seed)
    start = end - timedelta(days=days)
    s_us = int(start.timestamp()) * US
    e_us = int(end.timestamp()) * US
    receipts, decisions, metrics, injected = [], [], [], []
    for t in range(tenants):
        tenant = f"t{t:02d}"
        shift = int(rng.integers(0, 24))
        n = int(per_hour * 24 * days * 0.62)
        ts = np.sort(rng.integers(s_us, e_us, n * 2))
        keep = rng.random(ts.size) < _rate(ts, shift) / 2
        ts = ts[keep]
        m = ts.size
        wf = rng.integers(0, len(WORKFLOWS), m)
        lat = rng.lognormal(np.log(200) + 0.3 * wf, 0.4)
        status = np.where(rng.random(m) < 0.01, 1, np.where(rng.random(m) < 0.005, 2, 0))
        rule = rng.integers(0, len(RULES), m)
        deny = rng.random(m) < 0.03
        version = np.zeros(m, dtype=np.int64)
        mts = np.arange(s_us, e_us, 30 * US)
        mval = 100 * _rate(mts, shift) * rng.normal(1, 0.05, mts.size)
        window = e_us - s_us
        for i in range(incidents_per_tenant):
            kind = KINDS[(t + i) % len(KINDS)]
            onset = s_us + int(window * (1 - (2 / days) * (i + 1) / (incidents_per_tenant + 1)))
            onset -= onset % US
            length = int(rng.integers(15, 45)) * 60 * US
            strong = i % 2 == 0
            target_i = int(rng.integers(0, len(WORKFLOWS)))
            hit = (ts >= onset) & (ts < onset + length)
            if kind == "deny_storm":
                target = RULES[target_i]
                pick = hit & (rng.random(m) < (0.6 if strong else 0.25))
                rule[pick], deny[pick], version[pick] = target_i, True, 1
            elif kind == "latency":
                target = WORKFLOWS[target_i]
                lat[hit & (wf == target_i)] *= 6 if strong else 3
            elif kind == "rollbacks":
                target = WORKFLOWS[target_i]
                status[hit & (wf == target_i) & (rng.random(m) < (0.6 if strong else 0.3))] = 2
            elif kind == "errors":
                target = WORKFLOWS[target_i]
                status[hit & (wf == target_i) & (rng.random(m) < (0.7 if strong else 0.35))] = 1
            else:
                target = "queue_depth"
                mhit = (mts >= onset) & (mts < onset + length)
                mval[mhit] *= 6 if strong else 3
            first = _first(
                ts if kind != "metric" else mts, onset, onset + length, kind, hit, wf, target_i
            )
            injected.append(
                Injected(
                    tenant,
                    kind,
                    target,
                    _dt(first),
                    _dt(onset + length),
                    "sev1" if strong else "sev2",
                )
            )
        ids = [f"ex-{tenant}-{k:07d}" for k in range(m)]
        receipts.append(
            pl.DataFrame(
                {
                    "executionId": ids,
                    "tenant": tenant,
                    "region": "eu-west-1",
                    "ts": pl.Series(ts).cast(pl.Datetime("us", "UTC")),
                    "workflow": np.array(WORKFLOWS)[wf],
                    "status": np.array(["ok", "error", "rollback"])[status],
                    "latency_ms": lat,
                    "cost_usd": np.full(m, 0.001),
                }
            )
        )
        decisions.append(
            pl.DataFrame(
                {
                    "decisionId": [f"d-{x}" for x in ids],
                    "executionId": ids,
                    "tenant": tenant,
                    "region": "eu-west-1",
                    "ts": pl.Series(ts + 1000).cast(pl.Datetime("us", "UTC")),
                    "rule": np.array(RULES)[rule],
                    "effect": np.where(deny, "deny", "allow"),
                    "policy_version": np.array(["v1", "v2"])[version],
                }
            )
        )
        labels = json.dumps({"queue": "main"}, sort_keys=True)
        metrics.append(
            pl.DataFrame(
                {
                    "sampleId": [f"m-{tenant}-{k}" for k in range(mts.size)],
                    "tenant": tenant,
                    "ts": pl.Series(mts).cast(pl.Datetime("us", "UTC")),
                    "name": "queue_depth",
                    "value": mval,
                    "labels": labels,
                    "workflow_label": pl.Series([None] * mts.size, dtype=pl.String),
                }
            )
        )
    return Synthetic(
        receipts=pl.concat(receipts).cast(RECEIPTS.polars_schema()),  # type: ignore[arg-type]
        decisions=pl.concat(decisions).cast(DECISIONS.polars_schema()),  # type: ignore[arg-type]
        metrics=pl.concat(metrics).cast(METRIC_SAMPLES.polars_schema()),  # type: ignore[arg-type]
        injected=tuple(injected),
        start=start,
        end=end,
    )


def _first(
    ts: np.ndarray, a: int, b: int, kind: str, hit: np.ndarray, wf: np.ndarray, target: int
) -> int:
    inside = ts[(ts >= a) & (ts < b)]
    return int(inside[0]) if inside.size else a


def _dt(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
