"""Detection of level series with few records per bucket: the latency rule on the log scale."""

from __future__ import annotations

import numpy as np
import polars as pl

from pql.adapters.incidents.detect import History, detect_bucket, finalize_bucket
from pql.adapters.incidents.observe import SCHEMA
from pql.adapters.incidents.settings import DEFAULT

US = 1_000_000
WIDTH = DEFAULT.bucket_s * US


def _rows(bucket: int, latencies: np.ndarray) -> pl.DataFrame:
    n = latencies.size
    ts = bucket * WIDTH + (np.arange(n) * (WIDTH // (n + 1)))
    return pl.DataFrame(
        {
            "ts": ts,
            "key": "latency|etl",
            "kind": "latency",
            "value": latencies,
            "execution": [f"ex-{bucket}-{i}" for i in range(n)],
            "workflow": "etl",
            "rule": None,
            "policy_version": None,
        }
    ).cast(SCHEMA)  # type: ignore[arg-type]


def _history(rng: np.random.Generator, per_bucket: int, days: int = 8) -> tuple[History, int]:
    """``days`` of normal lognormal latency (median 200 ms, sigma 0.4), ``per_bucket`` a bucket."""
    history = History(first_bucket=0)
    last = days * 288
    for bucket in range(last):
        finalize_bucket(bucket, _rows(bucket, rng.lognormal(np.log(200), 0.4, per_bucket)),
                        history, DEFAULT)  # fmt: skip
    return history, last


def test_a_slowdown_is_seen_in_a_bucket_of_five_records() -> None:
    rng = np.random.default_rng(5)
    history, bucket = _history(rng, per_bucket=5)
    slow = _rows(bucket, rng.lognormal(np.log(200), 0.4, 5) * 3)
    found = detect_bucket("t", bucket, slow, history, DEFAULT, lambda _: None)
    assert [s.key for s in found] == ["latency|etl"]
    signal = found[0]
    assert signal.value > signal.threshold > signal.median
    assert 150 < signal.median < 260  # the geometric median, on the data's scale
    assert signal.value == float(slow.filter(pl.col("ts") <= signal.detected)["value"].mean())  # type: ignore[arg-type]


def test_normal_buckets_of_few_skewed_records_stay_quiet() -> None:
    rng = np.random.default_rng(7)
    history, first = _history(rng, per_bucket=5)
    alarms = 0
    for bucket in range(first, first + 2 * 288):
        rows = _rows(bucket, rng.lognormal(np.log(200), 0.4, 5))
        alarms += len(detect_bucket("t", bucket, rows, history, DEFAULT, lambda _: None))
        finalize_bucket(bucket, rows, history, DEFAULT)
    assert alarms == 0


def test_too_few_records_are_not_judged() -> None:
    rng = np.random.default_rng(9)
    history, bucket = _history(rng, per_bucket=5)
    few = _rows(bucket, np.full(DEFAULT.min_samples - 1, 200.0 * 20))
    assert detect_bucket("t", bucket, few, history, DEFAULT, lambda _: None) == []
