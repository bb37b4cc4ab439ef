"""Plan -> Spark DataFrame. Compiles; never collects.

The Spark twin of :mod:`pql.execute.compile`: one public entry, :func:`compile_plan`, dispatch by
node type, an unknown node a loud internal error. Scans read only the tenant's bucket files of the
days that meet the window (from the lake's manifest), only the columns the plan reads, and are
then narrowed to exactly the tenant and the window, as the Polars executor does.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import reduce
from typing import TYPE_CHECKING, Any

from pql.ast import AggFunc, CompareOp
from pql.catalog import Catalog, DataType
from pql.errors import InternalError
from pql.execute.compile import ScanInfo
from pql.execute.joins import Side, aggregate_input, counts_rows
from pql.plan.expr import (
    BUCKET,
    AggSpec,
    AllOf,
    AnyOf,
    Buckets,
    Cmp,
    Col,
    Const,
    In,
    Negate,
    Null,
    Pred,
)
from pql.plan.nodes import (
    Aggregate,
    Filter,
    Join,
    Limit,
    Node,
    Project,
    RollupAggregate,
    Scan,
    Sort,
)
from pql.storage.base import current_subject, micros
from pql.storage.lake import Lake

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["SparkCompiled", "compile_plan"]


@dataclass(slots=True)
class SparkCompiled:
    """A Spark query ready to run, and what compiling it learned about the scans."""

    frame: DataFrame
    cap: int | None
    scans: list[ScanInfo] = field(default_factory=list)

    @property
    def rows_scanned(self) -> int:
        return sum(s.rows for s in self.scans)

    @property
    def partitions_read(self) -> int:
        return sum(s.partitions for s in self.scans)


def compile_plan(plan: Node, spark: SparkSession, lake: Lake, catalog: Catalog) -> SparkCompiled:
    """Turn a safe, optimized plan into a :class:`SparkCompiled` query over ``lake``'s files."""
    compiler = _Compiler(spark, lake, catalog)
    if isinstance(plan, Limit) and plan.cap:
        # One row more than the cap tells the runner whether rows were cut.
        return SparkCompiled(
            compiler.compile(plan.input).limit(plan.count + 1), plan.count, compiler.scans
        )
    return SparkCompiled(compiler.compile(plan), None, compiler.scans)


def c(name: str) -> Column:
    """The column ``name``; plan names hold dots (``receipts.ts``), so they are quoted."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


@dataclass(slots=True)
class _Compiler:
    spark: SparkSession
    lake: Lake
    catalog: Catalog
    scans: list[ScanInfo] = field(default_factory=list)

    def compile(self, node: Node) -> DataFrame:
        match node:
            case Scan():
                return self.scan(node)
            case Filter(input=inner, predicate=pred):
                return self.compile(inner).where(predicate(pred))
            case Join():
                return self.join(node)
            case Aggregate(keys=keys, aggregates=aggs, buckets=buckets):
                frame = aggregate_input(node, self.catalog, self.compile, self.join)
                exprs = [_aggregate(a, self.catalog) for a in aggs]
                names = [c(k.qualified) for k in keys]
                if buckets is not None:
                    bucket = _bucket_of(buckets.col.qualified, buckets)
                    grouped = frame.groupBy(bucket, *names).agg(*exprs)
                    return self.fill(grouped, buckets, keys, aggs)
                if keys:
                    return frame.groupBy(*names).agg(*exprs)
                return frame.agg(*exprs)
            case Sort(input=inner, keys=keys):
                return self.compile(inner).orderBy(
                    *(
                        c(k.name).desc_nulls_last() if k.descending else c(k.name).asc_nulls_last()
                        for k in keys
                    )
                )
            case Limit(input=inner, count=count):
                return self.compile(inner).limit(count)
            case Project(input=inner, columns=cols):
                return self.compile(inner).select(*(c(src).alias(out) for src, out in cols))
            case RollupAggregate():
                raise InternalError(
                    "PQL-X501",
                    "a rollup plan reached the Spark executor, which reads no rollups",
                    hints=("the engine plans without rollups for Spark; this is a bug in pql",),
                )
        raise InternalError(
            "PQL-X502", f"the Spark compiler met an unknown node {type(node).__name__}"
        )

    def scan(self, node: Scan) -> DataFrame:
        from pyspark.sql import functions as F

        subject = current_subject(self.catalog, self.catalog[node.subject], node.tenant)
        low, high = micros(node.start), micros(node.end)
        files = [
            e
            for e in self.lake.manifest().files_of(node.tenant, subject.name)
            if e.ts_min <= high and e.ts_max >= low
        ]
        self.scans.append(ScanInfo(node.subject, len(files), sum(e.rows for e in files)))
        schema = _schema(subject.columns)
        if files:
            self.lake.check_files(files)
            frame = self.spark.read.schema(schema).parquet(
                *(str(self.lake.root / e.path) for e in files)
            )
        else:
            frame = self.spark.createDataFrame([], schema)
        # The bucket holds one tenant's files; the filters are defence in depth, and the files
        # hold whole days, so the window is cut exactly here.
        frame = frame.where(
            (F.col("tenant") == F.lit(node.tenant))
            & F.col("ts").between(_lit_ts(node.start), _lit_ts(node.end))
        )
        return frame.select(*(F.col(col.name).alias(col.qualified) for col in node.columns))

    def join(self, node: Join, semi: Side | None = None) -> DataFrame:
        """The inner join of ``node``'s inputs; with ``semi``, that side's rows that have a
        match (Spark's ``left_semi``, see :func:`~pql.execute.joins.semi_side`)."""
        lk, rk = node.keys()
        left, right = self.compile(node.left), self.compile(node.right)
        if semi is None:
            return left.join(right, c(lk.qualified) == c(rk.qualified), "inner")
        if semi == "right":
            left, right, lk, rk = right, left, rk, lk
        return left.join(
            right.select(c(rk.qualified)), c(lk.qualified) == c(rk.qualified), "left_semi"
        )

    def fill(
        self,
        frame: DataFrame,
        buckets: Buckets,
        keys: tuple[Col, ...],
        aggregates: tuple[AggSpec, ...],
    ) -> DataFrame:
        """Every bucket of the window, per group (as :func:`pql.execute.buckets.fill`)."""
        from pyspark.sql import functions as F
        from pyspark.sql.types import LongType, StructField, StructType

        starts = [(micros(s),) for s in buckets.starts()]
        grid = self.spark.createDataFrame(
            starts, StructType([StructField("_start", LongType(), False)])
        ).select(F.timestamp_micros(F.col("_start")).alias("_grid"))
        names = [k.qualified for k in keys]
        if names:
            grid = grid.crossJoin(
                frame.select(*(c(n).alias(f"_g{i}") for i, n in enumerate(names))).distinct()
            )
        cond = reduce(
            operator.and_,
            [
                F.col("_grid") == c(BUCKET),
                *(F.col(f"_g{i}").eqNullSafe(c(n)) for i, n in enumerate(names)),
            ],
        )
        joined = grid.join(frame, cond, "left")
        return joined.select(
            F.col("_grid").alias(BUCKET),
            *(F.col(f"_g{i}").alias(n) for i, n in enumerate(names)),
            *(
                F.coalesce(c(a.name), F.lit(0).cast("long")).alias(a.name)
                if a.func is AggFunc.COUNT
                else c(a.name)
                for a in aggregates
            ),
        )


_SPARK_TYPES = {
    DataType.STRING: "string",
    DataType.INT: "long",
    DataType.FLOAT: "double",
    DataType.BOOL: "boolean",
    DataType.TIMESTAMP: "timestamp",
}


def _schema(columns: Any) -> Any:
    from pyspark.sql.types import StructField, StructType, _parse_datatype_string

    return StructType(
        [StructField(col.name, _parse_datatype_string(_SPARK_TYPES[col.type])) for col in columns]
    )


def _lit_ts(value: datetime) -> Column:
    from pyspark.sql import functions as F

    return F.timestamp_micros(F.lit(micros(value)))


def _bucket_of(column: str, buckets: Buckets) -> Column:
    """The start of the bucket of ``column``, aligned to the UTC epoch (as the Polars side)."""
    from pyspark.sql import functions as F

    width = buckets.seconds * 1_000_000
    start = F.floor(F.unix_micros(c(column)) / F.lit(width)) * F.lit(width)
    return F.timestamp_micros(start.cast("long")).alias(BUCKET)


def _const(value: Const) -> Column:
    from pyspark.sql import functions as F

    if value.type is DataType.TIMESTAMP and isinstance(value.value, datetime):
        return _lit_ts(value.value)
    return F.lit(value.value)


_OPS: dict[CompareOp, Callable[[Any, Any], Any]] = {
    CompareOp.EQ: operator.eq,
    CompareOp.NE: operator.ne,
    CompareOp.LT: operator.lt,
    CompareOp.LE: operator.le,
    CompareOp.GT: operator.gt,
    CompareOp.GE: operator.ge,
}


def predicate(pred: Pred) -> Column:
    """A bound predicate as a Spark column; Spark SQL has the same three-valued logic."""
    match pred:
        case Cmp(col=col, op=op, value=value):
            result: Column = _OPS[op](c(col.qualified), _const(value))
            return result
        case In(col=col, values=values, negated=negated):
            column = c(col.qualified)
            if col.type.numeric and any(v.type is DataType.FLOAT for v in values):
                member = column.cast("double").isin([float(v.value) for v in values])  # type: ignore[arg-type]
            else:
                member = column.isin([_const(v) for v in values])
            return ~member if negated else member
        case Null(col=col, negated=negated):
            return c(col.qualified).isNotNull() if negated else c(col.qualified).isNull()
        case Negate(operand=inner):
            return ~predicate(inner)
        case AllOf(operands=ops):
            return reduce(operator.and_, (predicate(o) for o in ops))
        case AnyOf(operands=()):  # NOTHING: no row
            from pyspark.sql import functions as F

            return F.lit(False)
        case AnyOf(operands=ops):
            return reduce(operator.or_, (predicate(o) for o in ops))
    raise InternalError(
        "PQL-X503", f"the Spark compiler met an unknown predicate {type(pred).__name__}"
    )


def _aggregate(spec: AggSpec, catalog: Catalog) -> Column:
    from pyspark.sql import functions as F

    if spec.col is None or counts_rows(spec, catalog):
        return F.count(F.lit(1)).alias(spec.name)
    col = c(spec.col.qualified)
    match spec.func:
        case AggFunc.COUNT:
            expr = F.count(col)
        case AggFunc.SUM:
            expr = F.sum(col)  # SQL: the sum of no values is NULL
        case AggFunc.AVG:
            expr = F.avg(col.cast("double"))
        case AggFunc.MIN:
            expr = F.min(col)
        case AggFunc.MAX:
            expr = F.max(col)
    return expr.alias(spec.name)
