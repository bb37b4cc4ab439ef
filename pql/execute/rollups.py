"""Compile a :class:`~pql.plan.nodes.RollupAggregate`: rollup partials plus edge rows, combined.

Both sources are brought to one *partial* shape: the grain columns the answer reads, the row
count (``__rows``) and, per measure the aggregates need, its partials named after the qualified
column (``__sum(receipts.latency_ms)``, ``__count(...)``, ``__min(...)``, ``__max(...)``). A
rollup row already is a partial; the raw rows of the edge days are aggregated into partials by
the same grain columns. The final aggregation then combines partials with SQL semantics:

=================  ========================================================================
``COUNT(*)``       sum of row counts
``COUNT(key)``     sum of row counts where the key is not null
``COUNT(measure)`` sum of non-null counts (a column that is never null: sum of row counts)
``SUM(m)``         sum of sums, null when the sum of counts is 0
``AVG(m)``         sum of sums / sum of counts, null when that count is 0
``MIN``/``MAX``    minimum of minima / maximum of maxima (of the key itself for a key)
=================  ========================================================================

Nothing is collected here.
"""

from __future__ import annotations

import polars as pl

from pql.ast import AggFunc
from pql.execute.buckets import bucket_of, day_bucket
from pql.plan.expr import BUCKET, AggSpec, Col
from pql.plan.nodes import RollupAggregate
from pql.storage.rollups import DAY, ROWS, partial_name

__all__ = ["aggregate_rollup"]

_Partial = tuple[str, Col]
"""One partial of one measure column: its kind (``sum``, ``count``, ``min``, ``max``)."""


def aggregate_rollup(
    node: RollupAggregate,
    rolled: pl.LazyFrame,
    where: pl.Expr | None,
    edges: list[pl.LazyFrame],
) -> pl.LazyFrame:
    """The aggregates of ``node`` from ``rolled`` (rollup rows of its whole days, as stored),
    narrowed by ``where``, and from ``edges`` (compiled raw rows of the partial days)."""
    carried, partials = _needs(node)
    parts = [_from_rollup(node, rolled, where, carried, partials)]
    if edges:
        parts.append(_from_rows(node, pl.concat(edges, how="vertical"), carried, partials))
    frame = pl.concat(parts, how="vertical")
    grain = set(node.grain)
    exprs = [_combine(a, grain) for a in node.aggregates]
    keys = [k.qualified for k in node.keys]
    if node.buckets is not None:
        keys.insert(0, BUCKET)
    if keys:
        return frame.group_by(keys).agg(exprs)
    return frame.select(exprs)


def _needs(node: RollupAggregate) -> tuple[list[Col], list[_Partial]]:
    """The grain columns and the measure partials the final aggregation reads."""
    grain = set(node.grain)
    carried: dict[Col, None] = dict.fromkeys(node.keys)
    partials: dict[_Partial, None] = {}
    for agg in node.aggregates:
        col = agg.col
        if col is None:
            continue
        if col in grain:
            carried[col] = None
        elif agg.func in (AggFunc.SUM, AggFunc.AVG):
            partials.update(dict.fromkeys([("sum", col), ("count", col)]))
        elif agg.func is AggFunc.COUNT:
            if col.type.numeric:
                partials[("count", col)] = None
        else:
            partials[(agg.func.value.lower(), col)] = None
    return list(carried), list(partials)


def _from_rollup(
    node: RollupAggregate,
    rolled: pl.LazyFrame,
    where: pl.Expr | None,
    carried: list[Col],
    partials: list[_Partial],
) -> pl.LazyFrame:
    """Rollup rows in the partial shape (grain columns renamed to their qualified names)."""
    frame = rolled.rename({c.name: c.qualified for c in node.grain})
    if where is not None:
        frame = frame.filter(where)
    bucket = [] if node.buckets is None else [day_bucket(DAY, node.buckets)]
    return frame.select(
        *bucket,
        *(pl.col(c.qualified).cast(c.type.polars) for c in carried),
        pl.col(ROWS).cast(pl.Int64),
        *(
            pl.col(partial_name(kind, col.name))
            .cast(_dtype(kind, col))
            .alias(partial_name(kind, col.qualified))
            for kind, col in partials
        ),
    )


def _from_rows(
    node: RollupAggregate, rows: pl.LazyFrame, carried: list[Col], partials: list[_Partial]
) -> pl.LazyFrame:
    """Raw edge rows aggregated to the partial shape, by the bucket and carried grain columns."""
    exprs = [pl.len().cast(pl.Int64).alias(ROWS)]
    exprs += [
        _rows_partial(kind, col).alias(partial_name(kind, col.qualified)) for kind, col in partials
    ]
    keys = [pl.col(c.qualified).cast(c.type.polars) for c in carried]
    if node.buckets is not None:
        keys.insert(0, bucket_of(node.buckets.col.qualified, node.buckets))
    if not keys:
        return rows.select(exprs)
    return rows.group_by(keys).agg(exprs)


def _rows_partial(kind: str, col: Col) -> pl.Expr:
    value = pl.col(col.qualified)
    if kind == "sum":
        return value.sum().cast(col.type.polars)
    if kind == "count":
        return value.count().cast(pl.Int64)
    return value.min() if kind == "min" else value.max()


def _dtype(kind: str, col: Col) -> pl.DataType:
    return pl.Int64() if kind == "count" else col.type.polars


def _combine(agg: AggSpec, grain: set[Col]) -> pl.Expr:
    """One aggregate over partials, with SQL's semantics for no values."""
    col = agg.col
    rows = pl.col(ROWS)
    if col is None:
        return rows.sum().cast(pl.Int64).alias(agg.name)
    name = col.qualified
    match agg.func:
        case AggFunc.COUNT if col in grain:
            expr = rows.filter(pl.col(name).is_not_null()).sum().cast(pl.Int64)
        case AggFunc.COUNT if col.type.numeric:
            expr = pl.col(partial_name("count", name)).sum().cast(pl.Int64)
        case AggFunc.COUNT:  # a column that is never null
            expr = rows.sum().cast(pl.Int64)
        case AggFunc.SUM:
            counted = pl.col(partial_name("count", name)).sum()
            expr = pl.when(counted > 0).then(pl.col(partial_name("sum", name)).sum())
        case AggFunc.AVG:
            counted = pl.col(partial_name("count", name)).sum()
            total = pl.col(partial_name("sum", name)).sum().cast(pl.Float64)
            expr = pl.when(counted > 0).then(total / counted)
        case AggFunc.MIN | AggFunc.MAX if col in grain:
            expr = pl.col(name).min() if agg.func is AggFunc.MIN else pl.col(name).max()
        case AggFunc.MIN:
            expr = pl.col(partial_name("min", name)).min()
        case AggFunc.MAX:
            expr = pl.col(partial_name("max", name)).max()
    return expr.alias(agg.name)
