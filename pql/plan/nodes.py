"""The logical plan: a closed set of immutable nodes.

Every node knows its ``schema()`` (output column names and types; inside a plan columns are
always qualified, ``receipts.ts``), its ``inputs()`` and the ``span`` of the text it came from.
Rewrites build new nodes; nothing is mutated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import TypeAlias

from pql.catalog import DataType
from pql.errors import InternalError, Span
from pql.plan.expr import BUCKET, AggSpec, Buckets, Col, Pred, columns_of

__all__ = [
    "Aggregate",
    "Filter",
    "Join",
    "Limit",
    "Node",
    "Project",
    "RollupAggregate",
    "Scan",
    "Schema",
    "Sort",
    "SortKey",
    "walk",
]

Schema: TypeAlias = tuple[tuple[str, DataType], ...]


def _span() -> Span | None:
    return field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Scan:
    """Rows of one subject for one tenant with ``start <= ts <= end``, reading ``columns``."""

    subject: str
    tenant: str
    start: datetime
    end: datetime
    columns: tuple[Col, ...]
    span: Span | None = _span()

    def __post_init__(self) -> None:
        if not self.tenant:
            raise ValueError("a scan always has a tenant")
        if self.start > self.end:
            raise ValueError("scan window is empty")
        if any(c.subject != self.subject for c in self.columns):
            raise ValueError("a scan reads only its own subject's columns")

    def schema(self) -> Schema:
        return tuple((c.qualified, c.type) for c in self.columns)

    def inputs(self) -> tuple[Node, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class Filter:
    input: Node
    predicate: Pred
    span: Span | None = _span()

    def __post_init__(self) -> None:
        names = {n for n, _ in self.input.schema()}
        missing = [c.qualified for c in columns_of(self.predicate) if c.qualified not in names]
        if missing:
            raise ValueError(f"filter reads columns its input lacks: {missing}")

    def schema(self) -> Schema:
        return self.input.schema()

    def inputs(self) -> tuple[Node, ...]:
        return (self.input,)


@dataclass(frozen=True, slots=True)
class Join:
    """Inner equi-join. Keys of ``None`` mean no condition: a Cartesian product (never run)."""

    left: Node
    right: Node
    left_key: Col | None
    right_key: Col | None
    span: Span | None = _span()

    def schema(self) -> Schema:
        return self.left.schema() + self.right.schema()

    def inputs(self) -> tuple[Node, ...]:
        return (self.left, self.right)

    def keys(self) -> tuple[Col, Col]:
        """The two join keys; ``PQL-X004`` for a join without a condition, which the safety
        phase refuses, so no executor ever runs one."""
        if self.left_key is None or self.right_key is None:
            raise InternalError("PQL-X004", "a join without a condition reached an executor")
        return self.left_key, self.right_key


def _aggregate_schema(
    buckets: Buckets | None, keys: tuple[Col, ...], aggregates: tuple[AggSpec, ...]
) -> Schema:
    """The bucket start (a time series), then the group keys, then the aggregates."""
    first: Schema = () if buckets is None else ((BUCKET, DataType.TIMESTAMP),)
    return (
        first
        + tuple((k.qualified, k.type) for k in keys)
        + tuple((a.name, a.type) for a in aggregates)
    )


def _check_buckets(buckets: Buckets | None, input_names: set[str] | None) -> None:
    if buckets is None:
        return
    if not buckets.placed:
        raise ValueError("a time series in a plan is placed in its window")
    if input_names is not None and buckets.col.qualified not in input_names:
        raise ValueError(f"time series column {buckets.col} not in input")


@dataclass(frozen=True, slots=True)
class Aggregate:
    """Groups by ``keys`` (and, for ``TIMESERIES``, by ``buckets`` first: every bucket of the
    window is in the answer, per group, empty ones with ``COUNT`` 0 and other aggregates null)."""

    input: Node
    keys: tuple[Col, ...]
    aggregates: tuple[AggSpec, ...]
    buckets: Buckets | None = None
    span: Span | None = _span()

    def __post_init__(self) -> None:
        if not self.aggregates:
            raise ValueError("an aggregate node needs at least one aggregate")
        _check_buckets(self.buckets, {n for n, _ in self.input.schema()})

    def schema(self) -> Schema:
        return _aggregate_schema(self.buckets, self.keys, self.aggregates)

    def inputs(self) -> tuple[Node, ...]:
        return (self.input,)


@dataclass(frozen=True, slots=True)
class SortKey:
    name: str
    descending: bool = False

    def __str__(self) -> str:
        return f"{self.name} {'DESC' if self.descending else 'ASC'}"


@dataclass(frozen=True, slots=True)
class Sort:
    """Order rows by ``keys``; nulls always sort last."""

    input: Node
    keys: tuple[SortKey, ...]
    span: Span | None = _span()

    def __post_init__(self) -> None:
        names = {n for n, _ in self.input.schema()}
        missing = [k.name for k in self.keys if k.name not in names]
        if missing:
            raise ValueError(f"sort keys not in input: {missing}")

    def schema(self) -> Schema:
        return self.input.schema()

    def inputs(self) -> tuple[Node, ...]:
        return (self.input,)


@dataclass(frozen=True, slots=True)
class Limit:
    """Keep the first ``count`` rows; ``cap`` marks the safety row cap (more rows: truncated)."""

    input: Node
    count: int
    cap: bool = False
    span: Span | None = _span()

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("limit is negative")

    def schema(self) -> Schema:
        return self.input.schema()

    def inputs(self) -> tuple[Node, ...]:
        return (self.input,)


@dataclass(frozen=True, slots=True)
class Project:
    """Select and rename: ``columns`` pairs an input column with its output name."""

    input: Node
    columns: tuple[tuple[str, str], ...]
    span: Span | None = _span()

    def __post_init__(self) -> None:
        types = dict(self.input.schema())
        missing = [src for src, _ in self.columns if src not in types]
        if missing:
            raise ValueError(f"projected columns not in input: {missing}")
        outs = [out for _, out in self.columns]
        if len(set(outs)) != len(outs):
            raise ValueError(f"duplicate output names: {outs}")

    def schema(self) -> Schema:
        types = dict(self.input.schema())
        return tuple((out, types[src]) for src, out in self.columns)

    def inputs(self) -> tuple[Node, ...]:
        return (self.input,)


@dataclass(frozen=True, slots=True)
class RollupAggregate:
    """An :class:`Aggregate` of one subject answered from the store's per-day rollups.

    The whole UTC days ``first_day`` to ``last_day`` of the window are read from the rollup of
    ``subject`` for ``tenant`` (rows grouped by the ``grain`` columns, see
    :mod:`pql.storage.rollups`), narrowed by ``predicate``; the partial days at either end come
    from the raw rows of ``edges`` (already filtered). Both are combined into the aggregates.
    ``predicate`` and ``keys`` read only ``grain`` columns, so the answer is exact.
    """

    subject: str
    tenant: str
    first_day: date
    last_day: date
    grain: tuple[Col, ...]
    predicate: Pred | None
    keys: tuple[Col, ...]
    aggregates: tuple[AggSpec, ...]
    edges: tuple[Node, ...] = ()
    buckets: Buckets | None = None
    """``TIMESERIES`` buckets of whole days (a multiple of a day, aligned to the epoch)."""
    span: Span | None = _span()

    def __post_init__(self) -> None:
        if not self.tenant:
            raise ValueError("a rollup aggregate always has a tenant")
        _check_buckets(self.buckets, None)
        if self.buckets is not None and self.buckets.seconds % 86_400:
            raise ValueError("a rollup answers only time series of whole days")
        if not self.aggregates:
            raise ValueError("an aggregate node needs at least one aggregate")
        if self.first_day > self.last_day:
            raise ValueError("a rollup aggregate needs at least one whole day")
        grain = set(self.grain)
        read = set(self.keys) | (set() if self.predicate is None else columns_of(self.predicate))
        if not read <= grain:
            raise ValueError(f"rollup keys and predicate read non-grain columns: {read - grain}")
        names = {c.qualified for c in self.keys} | {
            a.col.qualified for a in self.aggregates if a.col is not None
        }
        if self.buckets is not None:
            names.add(self.buckets.col.qualified)
        for edge in self.edges:
            missing = names - {n for n, _ in edge.schema()}
            if missing:
                raise ValueError(f"an edge lacks columns the aggregate reads: {missing}")

    @property
    def days(self) -> int:
        """How many whole days come from the rollup."""
        return (self.last_day - self.first_day).days + 1

    @property
    def days_window(self) -> tuple[datetime, datetime]:
        """The instants of the whole days: the first midnight to the last microsecond."""
        return (
            datetime.combine(self.first_day, time(), UTC),
            datetime.combine(self.last_day, time.max, UTC),
        )

    def schema(self) -> Schema:
        return _aggregate_schema(self.buckets, self.keys, self.aggregates)

    def inputs(self) -> tuple[Node, ...]:
        return self.edges


Node: TypeAlias = Scan | Filter | Join | Aggregate | Sort | Limit | Project | RollupAggregate


def walk(node: Node) -> list[Node]:
    """All nodes of a plan, root first (pre-order), without recursion."""
    out: list[Node] = []
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        out.append(current)
        stack.extend(reversed(current.inputs()))
    return out
