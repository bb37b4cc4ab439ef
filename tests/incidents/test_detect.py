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
    before = _rows(first - 1, rng.lognormal(np.log(200), 0.4, 5))
    for bucket in range(first, first + 2 * 288):
        rows = _rows(bucket, rng.lognormal(np.log(200), 0.4, 5))
        alarms += len(detect_bucket("t", bucket, rows, history, DEFAULT, lambda _: None, before))
        finalize_bucket(bucket, rows, history, DEFAULT)
        before = rows
    assert alarms == 0


def test_a_slowdown_late_in_a_bucket_is_seen_at_the_next_record() -> None:
    """Three slow records at the end of a bucket, one at the start of the next: the bucket alone
    holds too few, the trailing window reaching back into the bucket before holds enough."""
    rng = np.random.default_rng(11)
    history, bucket = _history(rng, per_bucket=5)
    before = _rows(bucket - 1, np.array([190.0, 120.0, 210.0, 800.0, 750.0, 1100.0]))
    now = _rows(bucket, np.array([900.0]))
    assert detect_bucket("t", bucket, now, history, DEFAULT, lambda _: None) == []
    found = detect_bucket("t", bucket, now, history, DEFAULT, lambda _: None, before)
    assert [s.key for s in found] == ["latency|etl"]
    signal = found[0]
    assert signal.detected == int(now["ts"][0])
    assert signal.bucket_start == bucket * WIDTH <= signal.detected
    assert signal.window_start < signal.bucket_start  # the window reaches into the bucket before
    both = pl.concat([before, now])
    window = both.filter(pl.col("ts") >= signal.window_start)
    assert signal.value == float(window["value"].mean())  # type: ignore[arg-type]
    assert signal.value > signal.threshold


def test_too_few_records_are_not_judged() -> None:
    rng = np.random.default_rng(9)
    history, bucket = _history(rng, per_bucket=5)
    few = _rows(bucket, np.full(DEFAULT.min_samples - 1, 200.0 * 20))
    assert detect_bucket("t", bucket, few, history, DEFAULT, lambda _: None) == []
