"""Execution on Apache Spark: the same safe plans, compiled to Spark over the lake's files.

:class:`SparkExecutor` is what an engine built with ``executor="spark"`` runs plans with. pyspark
is an optional extra (``pip install 'pql[spark]'``), imported only when a Spark engine is built.
See ``docs/scale-out.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from pql.catalog import Catalog
from pql.deadline import Deadline
from pql.errors import InputError
from pql.execute.spark.compile import SparkCompiled, compile_plan
from pql.plan.nodes import Node
from pql.storage.base import Store
from pql.storage.lake import Lake

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["SparkCompiled", "SparkExecutor", "require_pyspark"]


def require_pyspark() -> None:
    """Import pyspark, or say how to install it (``PQL-E500``)."""
    try:
        import pyspark.sql  # noqa: F401
    except ImportError:
        raise InputError(
            "PQL-E500",
            "the Spark executor needs pyspark, which is not installed",
            hints=("install it with: pip install 'pql[spark]' (Spark also needs Java 17+)",),
        ) from None


@dataclass(frozen=True, slots=True)
class SparkExecutor:
    """Compiles plans to Spark DataFrames over ``lake``'s files and runs them on ``spark``."""

    spark: SparkSession
    lake: Lake
    catalog: Catalog

    @classmethod
    def of(cls, spark: Any, store: Store, catalog: Catalog) -> SparkExecutor:
        """Check what a Spark engine was given: a SparkSession, and a lake to read."""
        require_pyspark()
        from pyspark.sql import SparkSession

        if not isinstance(spark, SparkSession):
            raise InputError(
                "PQL-E501",
                "executor='spark' needs a SparkSession (spark=...)",
                hints=(
                    "build one, e.g. SparkSession.builder.master('local[2]').getOrCreate(), "
                    "and pass pql.Engine(DIR, executor='spark', spark=session)",
                ),
            )
        if not isinstance(store, Lake):
            raise InputError(
                "PQL-E502",
                f"the Spark executor reads a lake directory, not a {type(store).__name__}",
                hints=("use pql.Engine(DIR, executor='spark', spark=...) over a lake directory",),
            )
        return cls(spark, store, catalog)

    def compile(self, plan: Node) -> SparkCompiled:
        return compile_plan(plan, self.spark, self.lake, self.catalog)

    def run(
        self, compiled: SparkCompiled, plan: Node, deadline: Deadline | None
    ) -> tuple[pl.DataFrame, bool]:
        from pql.execute.spark.run import run

        return run(compiled, self.spark, plan.schema(), deadline)

    def count(self, plan: Node, deadline: Deadline | None) -> int:
        """How many rows ``plan`` produces (for ``explain --analyze``)."""
        from pyspark.sql import functions as F

        from pql.execute.spark.run import collect

        compiled = self.compile(plan)
        table = collect(compiled.frame.agg(F.count(F.lit(1)).alias("n")), self.spark, deadline)
        rows = int(table.column("n")[0].as_py())
        return rows if compiled.cap is None else min(rows, compiled.cap)
