"""``TIMESERIES`` in Polars: the bucket of each row, and the empty buckets filled in.

Buckets align to the UTC epoch: the bucket of ``ts`` starts at ``floor(ts / width) * width``
counted in microseconds since 1970-01-01T00:00:00Z. An answer has every bucket from the window's
first to its last; without ``GROUP BY`` each bucket is one row, with it each bucket is repeated
for every group that has at least one row in the window. A bucket (or a bucket of a group) with no
rows has ``COUNT`` 0 and the other aggregates null, so a chart has no gaps. Nothing is collected.
"""

from __future__ import annotations

import polars as pl

from pql.ast import AggFunc
from pql.plan.expr import BUCKET, AggSpec, Buckets, Col

__all__ = ["bucket_of", "day_bucket", "fill"]

_TS = pl.Datetime("us", "UTC")


def bucket_of(column: str, buckets: Buckets) -> pl.Expr:
    """The start of the bucket of the timestamp column ``column``, named ``bucket``."""
    width = buckets.seconds * 1_000_000
    micros = pl.col(column).dt.epoch("us")
    return (
        (micros // width * width).cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias(BUCKET)
    )


def day_bucket(column: str, buckets: Buckets) -> pl.Expr:
    """The bucket of a whole UTC day (a ``Date`` column): buckets of whole days hold whole days."""
    midnight = pl.col(column).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    width = buckets.seconds * 1_000_000
    micros = midnight.dt.epoch("us")
    return (
        (micros // width * width).cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias(BUCKET)
    )


def fill(
    frame: pl.LazyFrame, buckets: Buckets, keys: tuple[Col, ...], aggregates: tuple[AggSpec, ...]
) -> pl.LazyFrame:
    """``frame`` (aggregated by bucket and ``keys``) with every bucket of the window, per group.

    The columns come out as the plan's schema says: the bucket, the keys, the aggregates.
    """
    grid = pl.LazyFrame({BUCKET: pl.Series(BUCKET, buckets.starts(), dtype=_TS)})
    names = [k.qualified for k in keys]
    if names:
        grid = grid.join(frame.select(names).unique(), how="cross")
    joined = grid.join(frame, on=[BUCKET, *names], how="left", nulls_equal=True)
    return joined.select(
        pl.col(BUCKET),
        *(pl.col(n) for n in names),
        *(
            pl.col(a.name).fill_null(0) if a.func is AggFunc.COUNT else pl.col(a.name)
            for a in aggregates
        ),
    )
