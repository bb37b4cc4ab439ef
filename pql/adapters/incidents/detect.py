"""Detection: each bucket of each series against a robust baseline of the recent past.

The baseline of a bucket is the same hour of day on each of the previous ``baseline_days`` days
plus the ``recent_hours`` just before it (median and MAD of those bucket values; a count series
counts a bucket without records as 0). A bucket is anomalous at the first record, in time order,
at which it crosses the threshold: so a storm is seen while it is still arriving, and replay and
streaming, fed the same records, find the same record. Buckets too small to mean anything
(``min_count``, ``min_samples``) are never anomalous, and nothing is detected for a tenant before
``min_history_days`` of its data exist.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from pql.adapters.incidents.observe import COUNTED
from pql.adapters.incidents.settings import Settings
from pql.adapters.incidents.signals import Signal

__all__ = ["History", "detect_bucket", "finalize_bucket"]

US = 1_000_000
SAMPLE = 5
"""Sample execution ids a signal carries."""


@dataclass
class History:
    """Per series, the values of completed buckets (index -> value), and the tenant's first one."""

    first_bucket: int | None = None
    values: dict[str, dict[int, float]] = field(default_factory=dict)
    spread: dict[str, dict[int, float]] = field(default_factory=dict)
    """Per level series, the standard deviation of the records of each completed bucket."""
    sizes: dict[str, dict[int, float]] = field(default_factory=dict)
    """Per level series, the number of records of each completed bucket."""

    def add(
        self, key: str, bucket: int, value: float, spread: float | None = None, size: int = 0
    ) -> None:
        self.values.setdefault(key, {})[bucket] = value
        if spread is not None:
            self.spread.setdefault(key, {})[bucket] = spread
            self.sizes.setdefault(key, {})[bucket] = float(size)

    def prune(self, before: int) -> None:
        for table in (self.values, self.spread, self.sizes):
            for series in table.values():
                for index in [i for i in series if i < before]:
                    del series[index]


def _baseline_indices(bucket: int, settings: Settings, first: int) -> list[int]:
    per_hour = 3600 // settings.bucket_s
    per_day = 24 * per_hour
    hour_start = bucket - bucket % per_hour
    out = [
        hour_start - d * per_day + j
        for d in range(1, settings.baseline_days + 1)
        for j in range(per_hour)
    ]
    out += [bucket - j for j in range(1, settings.recent_hours * per_hour + 1)]
    return sorted(i for i in set(out) if i >= first)


def _baseline(
    key: str, kind: str, bucket: int, history: History, settings: Settings
) -> tuple[float, float, int, float] | None:
    """Median, MAD and sample count of the series' baseline, and (a level series) the pooled
    spread of one record within a bucket (:func:`_pooled`); ``None`` without enough."""
    first = history.first_bucket if history.first_bucket is not None else bucket
    indices = _baseline_indices(bucket, settings, first)
    series = history.values.get(key, {})
    if kind in COUNTED:
        values = [series.get(i, 0.0) for i in indices]
        if len(values) < 12:
            return None
        record = 0.0
    else:
        values = [series[i] for i in indices if i in series]
        if len(values) < 6:
            return None
        record = _pooled(key, [i for i in indices if i in series], history)
    arr = np.asarray(values, dtype=np.float64)
    median = float(np.median(arr))
    mad = float(np.median(np.abs(arr - median)))
    return median, mad, len(values), record


def _pooled(key: str, indices: list[int], history: History) -> float:
    """The spread of one record: the pooled standard deviation of the baseline buckets.

    Pooling (the variances weighted by their degrees of freedom) is unbiased where the median
    of per-bucket standard deviations is not: a bucket of four records has a sample standard
    deviation below the true one more often than above, which made thresholds too loose at
    night. A bucket whose spread is more than three times the median one (it straddles the
    start or end of a regression) is left out, as the median used to ignore it.
    """
    spreads = history.spread.get(key, {})
    sizes = history.sizes.get(key, {})
    sd = np.asarray([spreads.get(i, 0.0) for i in indices], dtype=np.float64)
    dof = np.asarray([max(sizes.get(i, 0.0) - 1.0, 0.0) for i in indices], dtype=np.float64)
    if not sd.size:
        return 0.0
    keep = (sd <= 3.0 * float(np.median(sd))) & (dof > 0)
    if not keep.any() or float(dof[keep].sum()) <= 0:
        return float(np.median(sd))
    return math.sqrt(float((dof[keep] * sd[keep] ** 2).sum() / dof[keep].sum()))


def _count_threshold(median: float, mad: float, settings: Settings) -> float:
    spread = max(1.4826 * mad, math.sqrt(max(median, 1.0)))
    return max(median + settings.k * spread, settings.count_ratio * max(median, 1.0))


def _tested_k(k: float, tested: int) -> float:
    """``k`` for the largest of ``tested`` runs: the tail of the largest of m Gaussian means is
    about m times that of one, and ``sqrt(k^2 + 2 ln m)`` deviations cut it back by that much."""
    return math.sqrt(k * k + 2.0 * math.log(max(tested, 1)))


def _level_threshold(
    median: float, mad: float, record: float, n: np.ndarray, settings: Settings, tested: int = 1
) -> np.ndarray:
    """The threshold of the running mean of ``n`` records: the spread of such a mean is at least
    that of one record over sqrt(n), so few records need a larger excess; ``tested`` runs judged
    at once need :func:`_tested_k` deviations each."""
    k = _tested_k(settings.k, tested)
    spread = np.maximum(max(1.4826 * mad, settings.level_floor * median), record / np.sqrt(n))
    limits: np.ndarray = np.maximum(median + k * spread, settings.level_ratio * median)
    return limits


def _log_threshold(
    median: float, mad: float, record: float, n: np.ndarray, settings: Settings, tested: int = 1
) -> np.ndarray:
    """The same rule on the log scale (latency): ``median`` and the spreads are of log values;
    ``level_floor`` and ``level_ratio`` become the factors ``1 + level_floor`` and
    ``level_ratio``."""
    k = _tested_k(settings.k, tested)
    spread = np.maximum(max(1.4826 * mad, math.log1p(settings.level_floor)), record / np.sqrt(n))
    limits: np.ndarray = median + np.maximum(k * spread, math.log(settings.level_ratio))
    return limits


def _logs(values: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.log(np.maximum(values, 1e-3))
    return out


def _window(ts: np.ndarray, j: int, width: int) -> int:
    """The index of the first record in the trailing window ``(ts[j] - width, ts[j]]``."""
    return int(np.searchsorted(ts, ts[j] - width, side="right"))


def detect_bucket(
    tenant: str,
    bucket: int,
    rows: pl.DataFrame,
    history: History,
    settings: Settings,
    workflow_of: Callable[[str], str | None],
    before: pl.DataFrame | None = None,
) -> list[Signal]:
    """The signals of one bucket, from its rows so far (sorted by ts), in (detected, key) order.

    Each record of the bucket is judged on the trailing window of one bucket length that ends
    at it (``before``: the rows of the previous bucket, which that window may reach into), so an
    onset late in a bucket is not split over two buckets: a count is the number of records in
    the window; a level is the mean of any run of the window's latest records (at least
    ``min_samples``), against the threshold for that many records.
    """
    first = history.first_bucket
    per_day = 86400 // settings.bucket_s
    if first is None or bucket < first + settings.min_history_days * per_day or not rows.height:
        return []
    width = settings.bucket_s * US
    start, end = bucket * width, (bucket + 1) * width
    previous: dict[str, pl.DataFrame] = {}
    if before is not None and before.height:
        recent = before.filter(pl.col("ts") > start - width)
        previous = {str(k): g for (k,), g in recent.group_by(["key"], maintain_order=True)}
    found: list[Signal] = []
    for (key,), current in rows.group_by(["key"], maintain_order=True):
        kind = str(current["kind"][0])
        base = _baseline(str(key), kind, bucket, history, settings)
        if base is None:
            continue
        median, mad, _, record = base
        earlier = previous.get(str(key))
        group = current if earlier is None else pl.concat([earlier, current])
        offset = group.height - current.height
        ts = group["ts"].to_numpy()
        last_of_ts = np.append(ts[1:] != ts[:-1], True)  # judged once all records tied on ts are in
        if kind in COUNTED:
            threshold = _count_threshold(median, mad, settings)
            need = max(settings.min_count, math.floor(threshold) + 1)
            hit = None
            for j in range(offset, group.height):
                if last_of_ts[j] and j - _window(ts, j, width) + 1 >= need:
                    hit = j
                    break
            if hit is None:
                continue
            lo = _window(ts, hit, width)
            window = group[lo : hit + 1]
            value = float(window.height)
        else:
            logged = kind == "latency"
            least = settings.min_samples if logged else settings.min_metric_samples
            raw = group["value"].to_numpy()
            scaled = _logs(raw) if logged else raw
            sums = np.concatenate([[0.0], np.cumsum(scaled)])
            limit = _log_threshold if logged else _level_threshold
            hit, lo = None, 0
            for j in range(offset, group.height):
                if not last_of_ts[j]:
                    continue
                # runs ending at j: starts from the window's first record to j - least + 1
                starts = np.arange(_window(ts, j, width), j - least + 2)
                if not starts.size:
                    continue
                n = j + 1 - starts
                means = (sums[j + 1] - sums[starts]) / n
                tested = int(starts.size)
                over = np.nonzero(means > limit(median, mad, record, n, settings, tested))[0]
                if over.size:  # the longest run that crosses: the most evidence
                    hit, lo = j, int(starts[int(over[0])])
                    break
            if hit is None:
                continue
            window = group[lo : hit + 1]
            threshold = float(
                limit(median, mad, record, np.asarray([window.height]), settings, tested)[0]
            )
            value = float(window["value"].mean())  # type: ignore[arg-type]
            if logged:  # reported on the scale of the data: geometric median and threshold
                base = (math.exp(median), mad, base[2], record)
                threshold = math.exp(threshold)
        at = int(ts[hit])
        found.append(
            _signal(
                tenant, str(key), kind, start, end, at, value, base, threshold, window, workflow_of
            )
        )
    return sorted(found, key=lambda s: (s.detected, s.key))


def _signal(
    tenant: str,
    key: str,
    kind: str,
    start: int,
    end: int,
    at: int,
    value: float,
    base: tuple[float, float, int, float],
    threshold: float,
    upto: pl.DataFrame,
    workflow_of: Callable[[str], str | None],
) -> Signal:
    executions = sorted({e for e in upto["execution"].to_list() if e is not None})
    ordered = [e for e in upto["execution"].to_list() if e is not None]
    workflows = {w for w in upto["workflow"].to_list() if w is not None}
    if kind == "deny":
        workflows |= {w for w in (workflow_of(e) for e in executions) if w is not None}
    name = key.split("|", 1)[1]
    return Signal(
        tenant=tenant,
        key=key,
        kind=kind,
        name=name,
        bucket_start=start,
        bucket_end=end,
        window_start=int(upto["ts"][0]),
        detected=at,
        value=value,
        median=base[0],
        mad=base[1],
        threshold=threshold,
        baseline_samples=base[2],
        executions=len(executions),
        sample_executions=tuple(dict.fromkeys(ordered))[:SAMPLE],
        workflows=tuple(sorted(workflows)),
        rules=tuple(sorted({r for r in upto["rule"].to_list() if r is not None})),
        policy_versions=tuple(
            sorted({v for v in upto["policy_version"].to_list() if v is not None})
        ),
        execution_ids=frozenset(executions),
    )


def finalize_bucket(
    bucket: int, rows: pl.DataFrame, history: History, settings: Settings
) -> dict[str, float]:
    """Record the completed bucket's value of every series in it; returns them (key -> value)."""
    out: dict[str, float] = {}
    if not rows.height:
        return out
    for (key,), group in rows.group_by(["key"], maintain_order=True):
        kind = str(group["kind"][0])
        if kind in COUNTED:
            value = float(group.height)
        else:
            least = settings.min_samples if kind == "latency" else settings.min_metric_samples
            if group.height < least:
                continue
            raw = group["value"].to_numpy()
            scaled = _logs(raw) if kind == "latency" else raw
            spread = float(np.std(scaled, ddof=1)) if scaled.size > 1 else 0.0
            history.add(str(key), bucket, float(np.mean(scaled)), spread, int(scaled.size))
            out[str(key)] = float(np.mean(raw))
            continue
        history.add(str(key), bucket, value)
        out[str(key)] = value
    return out
