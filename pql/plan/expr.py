"""Bound (name-resolved, typed) expressions that plan nodes carry."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

from pql.ast import AggFunc, CompareOp
from pql.catalog import DataType
from pql.errors import Span

__all__ = [
    "BUCKET",
    "NOTHING",
    "AggSpec",
    "AllOf",
    "AnyOf",
    "Buckets",
    "Cmp",
    "Col",
    "Const",
    "In",
    "Negate",
    "Null",
    "Pred",
    "columns_of",
    "conjuncts",
    "pred_text",
]


def _span() -> Span | None:
    return field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Col:
    """A resolved column: ``subject.name`` of a known type."""

    subject: str
    name: str
    type: DataType
    span: Span | None = _span()

    @property
    def qualified(self) -> str:
        return f"{self.subject}.{self.name}"

    def __str__(self) -> str:
        return self.qualified


ConstValue: TypeAlias = str | int | float | bool | datetime


@dataclass(frozen=True, slots=True)
class Const:
    value: ConstValue
    type: DataType
    span: Span | None = _span()

    def __str__(self) -> str:
        v = self.value
        if isinstance(v, datetime):
            return f"'{v.isoformat().replace('+00:00', 'Z')}'"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return repr(v)
        return str(v)


@dataclass(frozen=True, slots=True)
class Cmp:
    col: Col
    op: CompareOp
    value: Const
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class In:
    col: Col
    values: tuple[Const, ...]
    negated: bool = False
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class Null:
    col: Col
    negated: bool = False
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class Negate:
    operand: Pred
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class AllOf:
    operands: tuple[Pred, ...]
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class AnyOf:
    operands: tuple[Pred, ...]
    span: Span | None = _span()


Pred: TypeAlias = Cmp | In | Null | Negate | AllOf | AnyOf

NOTHING = AnyOf(())
"""The predicate that keeps no row: an OR of nothing, shown as ``false``. The planner puts it
where it knows a filter keeps nothing (see :func:`pql.plan.optimize.fold_tenant`); executors
answer it without evaluating anything on a row."""


@dataclass(frozen=True, slots=True)
class AggSpec:
    """One aggregate of an aggregate query; ``col`` is ``None`` for ``COUNT(*)``."""

    func: AggFunc
    col: Col | None
    name: str
    type: DataType
    span: Span | None = _span()

    def __str__(self) -> str:
        arg = self.col.qualified if self.col is not None else "*"
        return f"{self.func.value}({arg})"


BUCKET = "bucket"
"""The name of a time series' first column: the start of each bucket."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Buckets:
    """``TIMESERIES``: rows grouped by ``col`` (a ``ts``) floored to ``seconds``-wide buckets
    aligned to the UTC epoch. Once placed in a window (:meth:`over`), ``first`` and ``last`` are
    the starts of the first and last bucket the answer has; every bucket between them is
    returned, empty ones too."""

    col: Col
    seconds: int
    first: datetime | None = None
    last: datetime | None = None
    width_text: str = field(default="", compare=False)
    """The width as written (``60m``), for messages and ``explain``."""
    span: Span | None = _span()

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ValueError("a bucket is longer than zero")
        if (self.first is None) != (self.last is None):
            raise ValueError("a placed time series has both a first and a last bucket")

    @property
    def width(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    @property
    def placed(self) -> bool:
        return self.first is not None

    def floor(self, instant: datetime) -> datetime:
        """The start of the bucket holding ``instant``."""
        micros = (instant - _EPOCH) // timedelta(microseconds=1)
        width = self.seconds * 1_000_000
        return _EPOCH + timedelta(microseconds=micros // width * width)

    def over(self, start: datetime, end: datetime) -> Buckets:
        """These buckets placed in the window ``start <= ts <= end``."""
        return replace(self, first=self.floor(start), last=self.floor(end))

    @property
    def count(self) -> int:
        """How many buckets the answer has (0 before :meth:`over`)."""
        if self.first is None or self.last is None:
            return 0
        return (self.last - self.first) // self.width + 1

    def starts(self) -> list[datetime]:
        """The start of every bucket, in order."""
        if self.first is None:
            return []
        return [self.first + i * self.width for i in range(self.count)]

    def __str__(self) -> str:
        return f"bucket({self.col}, {self.width_text or str(self.seconds) + 's'})"


def conjuncts(pred: Pred) -> tuple[Pred, ...]:
    """The AND-ed parts of a predicate."""
    if isinstance(pred, AllOf):
        return tuple(p for op in pred.operands for p in conjuncts(op))
    return (pred,)


def columns_of(pred: Pred) -> frozenset[Col]:
    """Every column a predicate reads."""
    match pred:
        case Cmp(col=c) | In(col=c) | Null(col=c):
            return frozenset((c,))
        case Negate(operand=inner):
            return columns_of(inner)
        case AllOf(operands=ops) | AnyOf(operands=ops):
            return frozenset().union(*(columns_of(o) for o in ops))
    raise TypeError(f"not a predicate: {pred!r}")  # pragma: no cover


def pred_text(pred: Pred, parent: str = "") -> str:
    """A readable rendering, used by ``explain``."""
    match pred:
        case Cmp(col=c, op=op, value=v):
            return f"{c} {op.value} {v}"
        case In(col=c, values=vs, negated=neg):
            shown = ", ".join(str(v) for v in vs[:8]) + (", ..." if len(vs) > 8 else "")
            return f"{c} {'NOT IN' if neg else 'IN'} ({shown})"
        case Null(col=c, negated=neg):
            return f"{c} IS {'NOT NULL' if neg else 'NULL'}"
        case Negate(operand=inner):
            return f"NOT {pred_text(inner, 'not')}"
        case AllOf(operands=ops):
            text = " AND ".join(pred_text(o, "and") for o in ops)
            return f"({text})" if parent in ("and", "not") else text
        case AnyOf(operands=()):
            return "false"
        case AnyOf(operands=ops):
            text = " OR ".join(pred_text(o, "or") for o in ops)
            return f"({text})" if parent in ("and", "or", "not") else text
    raise TypeError(f"not a predicate: {pred!r}")  # pragma: no cover
