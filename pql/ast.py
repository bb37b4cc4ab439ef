"""The typed, immutable syntax tree of a PQL query.

Nodes are frozen dataclasses. Every node carries the ``span`` of the text it came from; spans do
not take part in equality, so a query printed with :func:`to_text` and parsed again compares equal
to the original.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import TypeAlias

from pql.errors import Span

__all__ = [
    "AggFunc",
    "Aggregate",
    "And",
    "CompareOp",
    "Comparison",
    "Duration",
    "Expr",
    "Field",
    "InList",
    "IsNull",
    "Join",
    "Literal",
    "Not",
    "Or",
    "OrderItem",
    "Param",
    "Query",
    "Value",
    "to_text",
]


def _span() -> Span | None:
    return field(default=None, compare=False, repr=False, kw_only=True)


class CompareOp(enum.Enum):
    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


class AggFunc(enum.Enum):
    COUNT = "COUNT"
    SUM = "SUM"
    AVG = "AVG"
    MIN = "MIN"
    MAX = "MAX"


@dataclass(frozen=True, slots=True)
class Field:
    """``subject.column`` or a bare ``column`` (``subject`` is then ``None``)."""

    subject: str | None
    name: str
    span: Span | None = _span()

    def __str__(self) -> str:
        return f"{self.subject}.{self.name}" if self.subject else self.name


@dataclass(frozen=True, slots=True)
class Literal:
    """A string, integer, decimal or boolean literal."""

    value: str | int | float | bool
    span: Span | None = _span()

    def __post_init__(self) -> None:
        if not isinstance(self.value, (str, int, float, bool)):
            raise TypeError(f"unsupported literal {self.value!r}")


@dataclass(frozen=True, slots=True)
class Param:
    """A ``$name`` placeholder, bound to a value at run time (never spliced into text)."""

    name: str
    span: Span | None = _span()


Value: TypeAlias = Literal | Param


@dataclass(frozen=True, slots=True)
class Comparison:
    field: Field
    op: CompareOp
    value: Value
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class InList:
    field: Field
    values: tuple[Value, ...]
    negated: bool = False
    span: Span | None = _span()

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("IN needs at least one value")


@dataclass(frozen=True, slots=True)
class IsNull:
    field: Field
    negated: bool = False
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Expr, ...]
    span: Span | None = _span()

    def __post_init__(self) -> None:
        if len(self.operands) < 2:
            raise ValueError("AND needs at least two operands")


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Expr, ...]
    span: Span | None = _span()

    def __post_init__(self) -> None:
        if len(self.operands) < 2:
            raise ValueError("OR needs at least two operands")


Expr: TypeAlias = Comparison | InList | IsNull | Not | And | Or


@dataclass(frozen=True, slots=True)
class Aggregate:
    """``FUNC(field)`` or ``COUNT(*)`` (``field`` is then ``None``), with an optional alias."""

    func: AggFunc
    field: Field | None
    alias: str | None = None
    span: Span | None = _span()

    def __post_init__(self) -> None:
        if self.field is None and self.func is not AggFunc.COUNT:
            raise ValueError("only COUNT takes *")

    @property
    def default_name(self) -> str:
        arg = str(self.field) if self.field is not None else "*"
        return f"{self.func.value.lower()}({arg})"

    @property
    def name(self) -> str:
        """The output column name: the alias, or ``count(receipts.executionId)`` style."""
        return self.alias or self.default_name


@dataclass(frozen=True, slots=True)
class Join:
    subject: str
    left: Field
    right: Field
    span: Span | None = _span()
    subject_span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class Duration:
    amount: int
    unit: str
    span: Span | None = _span()

    _SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

    @property
    def seconds(self) -> int:
        return self.amount * self._SECONDS[self.unit]

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


@dataclass(frozen=True, slots=True)
class OrderItem:
    key: Field
    descending: bool = False
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class Query:
    """A whole query. ``subject`` is set for row queries, ``aggregates`` for aggregate queries."""

    subject: str | None
    aggregates: tuple[Aggregate, ...] = ()
    join: Join | None = None
    where: Expr | None = None
    group_by: tuple[Field, ...] = ()
    since: Duration | None = None
    timeseries: Duration | None = None
    """``TIMESERIES <width>``: bucket an aggregate query by time (see docs/pql/LANGUAGE.md)."""
    order_by: tuple[OrderItem, ...] = ()
    limit: int | None = None
    span: Span | None = _span()
    subject_span: Span | None = _span()
    limit_span: Span | None = _span()

    def __post_init__(self) -> None:
        if (self.subject is None) == (not self.aggregates):
            raise ValueError("a query finds either a subject or aggregates")

    @property
    def is_aggregate(self) -> bool:
        return bool(self.aggregates)


# ---------------------------------------------------------------------------------------------
# Printing: the canonical text of a query. Parsing it again gives an equal tree.


def _value_text(value: Value) -> str:
    if isinstance(value, Param):
        return f"${value.name}"
    v = value.value
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, float):
        text = repr(v)
        return text if any(c in text for c in ".eE") else text + ".0"
    return str(v)


def _expr_text(expr: Expr, parent: str = "") -> str:
    match expr:
        case Comparison(field=f, op=op, value=v):
            return f"{f} {op.value} {_value_text(v)}"
        case InList(field=f, values=vs, negated=neg):
            items = ", ".join(_value_text(v) for v in vs)
            return f"{f} {'NOT IN' if neg else 'IN'} ({items})"
        case IsNull(field=f, negated=neg):
            return f"{f} IS {'NOT NULL' if neg else 'NULL'}"
        case Not(operand=inner):
            text = _expr_text(inner, "not")
            return f"NOT {text}"
        case And(operands=ops):
            text = " AND ".join(_expr_text(o, "and") for o in ops)
            return f"({text})" if parent in ("and", "not") else text
        case Or(operands=ops):
            text = " OR ".join(_expr_text(o, "or") for o in ops)
            return f"({text})" if parent in ("and", "or", "not") else text
    raise TypeError(f"not an expression: {expr!r}")  # pragma: no cover


def to_text(query: Query) -> str:
    """The canonical one-line text of ``query``: keywords upper-case, strings double-quoted."""
    parts = ["FIND"]
    if query.subject is not None:
        parts.append(query.subject)
    else:
        aggs = []
        for agg in query.aggregates:
            text = f"{agg.func.value}({agg.field if agg.field is not None else '*'})"
            if agg.alias:
                text += f" AS {agg.alias}"
            aggs.append(text)
        parts.append(", ".join(aggs))
    if query.join is not None:
        j = query.join
        parts.append(f"JOIN {j.subject} ON {j.left} = {j.right}")
    if query.where is not None:
        parts.append(f"WHERE {_expr_text(query.where)}")
    if query.group_by:
        parts.append("GROUP BY " + ", ".join(str(f) for f in query.group_by))
    if query.since is not None:
        parts.append(f"SINCE {query.since}")
    if query.timeseries is not None:
        parts.append(f"TIMESERIES {query.timeseries}")
    if query.order_by:
        items = [f"{o.key}{' DESC' if o.descending else ''}" for o in query.order_by]
        parts.append("ORDER BY " + ", ".join(items))
    if query.limit is not None:
        parts.append(f"LIMIT {query.limit}")
    return " ".join(parts)
