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


MEAN_RATE = 0.625
"""The mean of :func:`_rate` over a day (its peak is 1)."""

INTENSITY = {"sev1": 3.0, "sev2": 1.5}
"""Injected anomalous records per bucket of a count incident (deny storm, error or rollback
burst), as a multiple of the target workflow's *mean* executions per 5 minutes: failing retries
arrive at that rate whatever the organic traffic at the hour (a retry storm does not sleep at
night)."""

FACTOR = {"sev1": 6.0, "sev2": 3.0}
"""How much a latency regression slows the target workflow, and a metric anomaly raises it."""


def generate(
    *,
    tenants: int = 3,
    days: int = 9,
    per_hour: int = 600,
    end: datetime = datetime(2026, 3, 2, 12, tzinfo=UTC),
    incidents_per_tenant: int = 5,
    seed: int = 11,
) -> Synthetic:
    """``days`` of traffic (``per_hour`` executions an hour at each tenant's daily peak, a quarter
    of that at its trough) for each tenant, with ``incidents_per_tenant`` injected incidents
    (every kind in turn, sev1 and sev2 in turn) spread over the last two days.

    Injection (the labels are what was injected, ``onset`` is its first anomalous record):

    - deny storm: a guard denies failing retries of a workflow on one rule, under a new policy
      version: extra executions (status ``error``) with a ``deny`` decision, at
      ``INTENSITY[sev]`` times the workflow's mean rate;
    - error burst, rollback burst: extra executions of the workflow ending in ``error`` /
      ``rollback`` at that rate;
    - latency regression: every execution of the workflow in the window is ``FACTOR[sev]``
      times slower;
    - metric anomaly: ``queue_depth`` is ``FACTOR[sev]`` times its level.
    """
    rng = np.random.default_rng(seed)
    start = end - timedelta(days=days)
    s_us = int(start.timestamp()) * US
    e_us = int(end.timestamp()) * US
    receipts, decisions, metrics, injected = [], [], [], []
    for t in range(tenants):
        tenant = f"t{t:02d}"
        shift = int(rng.integers(0, 24))
        # thinning: uniform draws kept with probability rate(ts) give per_hour at the peak
        draws = int(per_hour * 24 * days)
        ts = np.sort(rng.integers(s_us, e_us, draws))
        ts = ts[rng.random(ts.size) < _rate(ts, shift)]
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
        per_bucket = per_hour * MEAN_RATE / len(WORKFLOWS) / 12  # a workflow's mean, 5 minutes
        extra: list[tuple[np.ndarray, int, int, int]] = []  # (ts, workflow, status, deny rule)
        for i in range(incidents_per_tenant):
            kind = KINDS[(t + i) % len(KINDS)]
            sev = "sev1" if i % 2 == 0 else "sev2"
            onset = s_us + int(window * (1 - (2 / days) * (i + 1) / (incidents_per_tenant + 1)))
            onset += int(rng.integers(0, 3600)) * US  # not on a bucket edge
            length = int(rng.integers(15, 45)) * 60 * US
            target_i = int(rng.integers(0, len(WORKFLOWS)))
            hit = (ts >= onset) & (ts < onset + length)
            if kind in ("deny_storm", "errors", "rollbacks"):
                count = int(rng.poisson(INTENSITY[sev] * per_bucket * length / (300 * US)))
                at = np.sort(rng.integers(onset, onset + length, max(count, 1)))
                code = {"deny_storm": 1, "errors": 1, "rollbacks": 2}[kind]
                rule_i = int(rng.integers(0, len(RULES))) if kind == "deny_storm" else -1
                extra.append((at, target_i, code, rule_i))
                target = RULES[rule_i] if kind == "deny_storm" else WORKFLOWS[target_i]
                first = int(at[0])
            elif kind == "latency":
                target = WORKFLOWS[target_i]
                slow = hit & (wf == target_i)
                lat[slow] *= FACTOR[sev]
                first = int(ts[slow][0]) if slow.any() else onset
            else:
                target = "queue_depth"
                mhit = (mts >= onset) & (mts < onset + length)
                mval[mhit] *= FACTOR[sev]
                first = int(mts[mhit][0])
            injected.append(Injected(tenant, kind, target, _dt(first), _dt(onset + length), sev))
        if extra:
            x_ts = np.concatenate([e[0] for e in extra])
            x_wf = np.concatenate([np.full(e[0].size, e[1]) for e in extra])
            x_status = np.concatenate([np.full(e[0].size, e[2]) for e in extra])
            x_rule = np.concatenate([np.full(e[0].size, e[3]) for e in extra])
            x_lat = rng.lognormal(np.log(200) + 0.3 * x_wf, 0.4)
            storm = x_rule >= 0
            ts = np.concatenate([ts, x_ts])
            wf = np.concatenate([wf, x_wf])
            lat = np.concatenate([lat, x_lat])
            status = np.concatenate([status, x_status])
            rule = np.concatenate(
                [rule, np.where(storm, x_rule, rng.integers(0, len(RULES), x_ts.size))]
            )
            deny = np.concatenate([deny, storm | (rng.random(x_ts.size) < 0.03)])
            version = np.concatenate([version, storm.astype(np.int64)])
            order = np.argsort(ts, kind="stable")
            ts, wf, lat, status = ts[order], wf[order], lat[order], status[order]
            rule, deny, version = rule[order], deny[order], version[order]
            m = ts.size
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


def _dt(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
