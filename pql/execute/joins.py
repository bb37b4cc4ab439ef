"""What a join above which only some columns are read needs, for every executor.

Two rules, both from the catalog rather than from any subject's name:

- ``COUNT`` of a column that is never null (:meth:`~pql.catalog.Subject.never_null`: a
  subject's key, ``tenant``, ``ts``) counts rows, so no value of the column is read.
- A join whose answer reads no column of one side, when that side joins on its subject's key
  (unique within a tenant: an ingest stores a record once), is a semi join: each row of the
  other side meets at most one row of it, so the inner join's rows are the other side's rows
  that have a match, and no pair needs building.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar

from pql.ast import AggFunc
from pql.catalog import Catalog
from pql.plan.expr import AggSpec
from pql.plan.nodes import Aggregate, Join, Node

__all__ = ["Side", "aggregate_input", "counts_rows", "semi_side"]

Side = Literal["left", "right"]
F = TypeVar("F")


def counts_rows(spec: AggSpec, catalog: Catalog) -> bool:
    """Whether ``spec`` counts rows: ``COUNT(*)``, or ``COUNT`` of a column never null."""
    return spec.col is None or (
        spec.func is AggFunc.COUNT and catalog[spec.col.subject].never_null(spec.col.name)
    )


def semi_side(node: Aggregate, catalog: Catalog) -> Side | None:
    """The side of ``node``'s input join whose rows a semi join keeps (the other side joins on
    its key and none of its columns is read above the join); ``None``: an inner join, or no
    join directly below ``node``."""
    join = node.input
    if not isinstance(join, Join):
        return None
    read = {k.qualified for k in node.keys}
    read |= {a.col.qualified for a in node.aggregates if a.col and not counts_rows(a, catalog)}
    if node.buckets is not None:
        read.add(node.buckets.col.qualified)
    lk, rk = join.keys()
    if rk.name == catalog[rk.subject].key and not read & _names(join.right):
        return "left"
    if lk.name == catalog[lk.subject].key and not read & _names(join.left):
        return "right"
    return None


def aggregate_input(
    node: Aggregate,
    catalog: Catalog,
    compile_node: Callable[[Node], F],
    join: Callable[[Join, Side | None], F],
) -> F:
    """The frame an executor aggregates for ``node``: its input join as a semi join when
    :func:`semi_side` finds a side to keep, else its input compiled as it is. ``compile_node`` and
    ``join`` are the executor's own (a Polars or a Spark frame)."""
    semi = semi_side(node, catalog)
    if semi is not None and isinstance(node.input, Join):
        return join(node.input, semi)
    return compile_node(node.input)


def _names(node: Node) -> set[str]:
    return {name for name, _ in node.schema()}
