"""The semantic pass: an AST checked against the catalog, with every name resolved and typed.

One public entry, :func:`analyze`. It resolves subjects and fields (qualified or bare, with "did
you mean" for typos and a clear error for ambiguity), checks types (numeric aggregates, literal vs
column types, ISO-8601 timestamps), the GROUP BY / ORDER BY rules and output names, and binds
``$parameters``. It decides nothing about safety: that is the plan's safety phase.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pql import ast
from pql.catalog import Catalog, DataType, Subject, suggest
from pql.errors import QueryError, SafetyError, Span
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

__all__ = ["Analyzed", "OrderKey", "analyze", "parse_timestamp"]

_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class OrderKey:
    """One ORDER BY key: the plan column it sorts by."""

    name: str
    descending: bool
    span: Span | None = None


@dataclass(frozen=True, slots=True)
class Analyzed:
    """A checked query, ready for planning.

    ``subjects`` lists every subject the query reads, the one it finds first. ``join`` holds the
    resolved ON columns (``None`` without a JOIN); subjects named without a JOIN are listed in
    ``unjoined`` (with where they are first named) and left for the safety phase to refuse.
    """

    query: ast.Query
    subjects: tuple[Subject, ...]
    join: tuple[Col, Col] | None
    unjoined: tuple[tuple[Subject, Span | None], ...]
    where: Pred | None
    aggregates: tuple[AggSpec, ...]
    group_by: tuple[Col, ...]
    order_by: tuple[OrderKey, ...]
    outputs: tuple[tuple[str, str], ...]
    """Pairs of (plan column, output name), in output order."""
    qualified_output: bool
    timeseries: Buckets | None = None
    """``TIMESERIES``: the buckets over the ``ts`` of the query's subject, not yet placed in a
    window (the plan does that)."""

    @property
    def base(self) -> Subject:
        return self.subjects[0]

    @property
    def is_aggregate(self) -> bool:
        return bool(self.aggregates)


def parse_timestamp(text: str, span: Span | None = None) -> datetime:
    """An ISO-8601 string as an aware UTC datetime (naive means UTC)."""
    raw = text.strip()
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise QueryError(
            "PQL-E018",
            f"{text!r} is not an ISO-8601 timestamp",
            span=span,
            hints=("write e.g. '2026-03-02T10:00:00Z' or '2026-03-02'",),
        ) from None
    return _utc(value, repr(text), span)


def _utc(value: datetime, shown: str, span: Span | None) -> datetime:
    """``value`` in UTC (naive means UTC); near year 1 or 9999 the shift may leave the range."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise QueryError(
            "PQL-E018",
            f"{shown} is outside the range of timestamps (years 1 to 9999, UTC)",
            span=span,
            hints=("write a timestamp between 0001-01-01 and 9999-12-31 in UTC",),
        ) from None


def analyze(
    query: ast.Query, catalog: Catalog, params: Mapping[str, Any] | None = None
) -> Analyzed:
    """Resolve and type-check ``query`` against ``catalog``.

    ``params`` gives the values of ``$name`` placeholders; they are bound as typed literals.
    """
    return _Analyzer(query, catalog, dict(params or {})).run()


def _agg_type(func: ast.AggFunc, arg: DataType) -> DataType:
    """The type an aggregate returns: COUNT an integer, AVG a float, the others their argument's."""
    if func is ast.AggFunc.COUNT:
        return DataType.INT
    if func is ast.AggFunc.AVG:
        return DataType.FLOAT
    return arg


class _Analyzer:
    def __init__(self, query: ast.Query, catalog: Catalog, params: dict[str, Any]) -> None:
        self.q = query
        self.catalog = catalog
        self.params = params

    # subjects ---------------------------------------------------------------------------
    def _subject(self, name: str, span: Span | None) -> Subject:
        subject = self.catalog.get(name)
        if subject is None:
            guess = suggest(name, self.catalog.names)
            hints = [f"did you mean {guess}?"] if guess else []
            hints.append(f"known subjects: {', '.join(self.catalog.names)}")
            raise QueryError("PQL-E010", f"unknown subject '{name}'", span=span, hints=hints)
        return subject

    def _all_fields(self) -> list[ast.Field]:
        q = self.q
        fields: list[ast.Field] = [a.field for a in q.aggregates if a.field is not None]
        fields += list(q.group_by)
        if q.where is not None:
            fields += _expr_fields(q.where)
        fields += [o.key for o in q.order_by]
        return fields

    def _subjects(self) -> tuple[list[Subject], list[str]]:
        q = self.q
        named: list[str] = []
        for f in self._all_fields():
            if f.subject is not None:
                self._subject(f.subject, f.span)
                if f.subject not in named:
                    named.append(f.subject)
        if q.join is not None:
            join_subject = self._subject(q.join.subject, q.join.subject_span).name
            if q.subject == join_subject:
                # A self-join cannot even be named apart; it is the join rule's refusal.
                raise SafetyError(
                    "PQL-S003",
                    f"JOIN {join_subject} with itself is not allowed: joins are only between "
                    "receipts and decisions on executionId",
                    span=q.join.span,
                    hints=("write JOIN decisions ON receipts.executionId = decisions.executionId",),
                    setting="rule: join policy",
                )
            for f in (q.join.left, q.join.right):
                if f.subject is not None:
                    self._subject(f.subject, f.span)
        if q.subject is not None:
            base = self._subject(q.subject, q.subject_span).name
        else:
            candidates = [n for n in named if q.join is None or n != q.join.subject]
            if candidates:
                base = candidates[0]
            elif q.join is not None:
                on = [f.subject for f in (q.join.left, q.join.right) if f.subject]
                others = [s for s in on if s != q.join.subject]
                base = others[0] if others else q.join.subject
            else:
                base = self._infer_base()
        order = [base]
        if q.join is not None:
            order.append(join_subject)
        unjoined = [n for n in named if n not in order]
        return [self.catalog[n] for n in order], unjoined

    def _infer_base(self) -> str:
        bare = [f for f in self._all_fields() if f.subject is None]
        for f in bare:
            owners = [s.name for s in self.catalog if f.name in s]
            if len(owners) == 1:
                return owners[0]
        span = self.q.aggregates[0].span if self.q.aggregates else self.q.span
        raise QueryError(
            "PQL-E017",
            "the query names no subject",
            span=span,
            hints=(
                "an aggregate query reads the subject its fields name: "
                'write FIND COUNT(receipts.executionId) or add WHERE receipts.status = "ok"',
            ),
        )

    # fields -----------------------------------------------------------------------------
    def _col(self, f: ast.Field) -> Col:
        if f.subject is not None:
            subject = self._subject(f.subject, f.span)
            column = subject.column(f.name)
            if column is None:
                guess = suggest(f.name, subject.names)
                hints = [f"did you mean {subject.name}.{guess}?"] if guess else []
                hints.append(f"{subject.name} has: {', '.join(subject.names)}")
                raise QueryError(
                    "PQL-E011", f"{subject.name} has no field '{f.name}'", span=f.span, hints=hints
                )
            return Col(subject.name, column.name, column.type, span=f.span)
        owners = [s for s in self.subjects if f.name in s]
        if len(owners) == 1:
            column = owners[0].column(f.name)
            assert column is not None
            return Col(owners[0].name, column.name, column.type, span=f.span)
        if len(owners) > 1:
            choices = " or ".join(f"{s.name}.{f.name}" for s in owners)
            raise QueryError(
                "PQL-E012",
                f"'{f.name}' is ambiguous: more than one subject of the query has it",
                span=f.span,
                hints=(f"write {choices}",),
            )
        pool = [n for s in self.subjects for n in s.names]
        guess = suggest(f.name, pool)
        hints = [f"did you mean {guess}?"] if guess else []
        elsewhere = [s.name for s in self.catalog if f.name in s and s not in self.subjects]
        if elsewhere:
            hints.append(f"{elsewhere[0]} has it: JOIN {elsewhere[0]} to use it")
        names = ", ".join(s.name for s in self.subjects)
        raise QueryError(
            "PQL-E011",
            f"unknown field '{f.name}' (the query reads {names})",
            span=f.span,
            hints=hints,
        )

    # values -----------------------------------------------------------------------------
    def _const(self, value: ast.Value, col: Col) -> Const:
        if isinstance(value, ast.Param):
            if value.name not in self.params:
                raise QueryError(
                    "PQL-E022",
                    f"parameter ${value.name} has no value",
                    span=value.span,
                    hints=(
                        f"bind it: engine.query(..., params={{'{value.name}': ...}}), or save the "
                        f"query and run it with `pql saved run ... --param {value.name}=...`",
                    ),
                )
            raw = self.params[value.name]
            label = f"parameter ${value.name}"
            if isinstance(raw, datetime) and col.type is DataType.TIMESTAMP:
                return Const(_utc(raw, label, value.span), DataType.TIMESTAMP, span=value.span)
            if not isinstance(raw, (str, int, float, bool)):
                raise QueryError(
                    "PQL-E024",
                    f"parameter ${value.name} has a value of type {type(raw).__name__}",
                    span=value.span,
                    hints=("parameters are strings, numbers, booleans or timestamps",),
                )
            if isinstance(raw, int) and not isinstance(raw, bool) and not -(2**63) <= raw < 2**63:
                raise QueryError(
                    "PQL-E024",
                    f"{label} does not fit in 64 bits",
                    span=value.span,
                    hints=("pass it as a float, e.g. 1.0e20",),
                )
            if isinstance(raw, str) and _SURROGATE.search(raw):
                raise QueryError(
                    "PQL-E024",
                    f"{label} is not valid Unicode text (it holds a lone surrogate)",
                    span=value.span,
                    hints=("pass text that encodes as UTF-8",),
                )
            return self._typed(raw, value.span, col, f"parameter ${value.name}")
        return self._typed(value.value, value.span, col, None)

    def _typed(self, raw: object, span: Span | None, col: Col, label: str | None) -> Const:
        shown = label or (
            f'"{raw}"'
            if isinstance(raw, str)
            else repr(raw).lower()
            if isinstance(raw, bool)
            else repr(raw)
        )
        t = col.type
        if t is DataType.TIMESTAMP:
            if isinstance(raw, str):
                return Const(parse_timestamp(raw, span), t, span=span)
            raise self._mismatch(
                col, shown, span, "compare ts with an ISO-8601 string, e.g. '2026-03-02T10:00:00Z'"
            )
        if t is DataType.STRING:
            if isinstance(raw, str):
                return Const(raw, t, span=span)
            raise self._mismatch(col, shown, span, f'quote it: {col} = "{_plain(raw)}"')
        if t.numeric:
            if isinstance(raw, (int, float)) and not isinstance(raw, bool):
                return Const(
                    raw, DataType.INT if isinstance(raw, int) else DataType.FLOAT, span=span
                )
            raise self._mismatch(col, shown, span, "write the number without quotes")
        if t is DataType.BOOL:
            if isinstance(raw, bool):
                return Const(raw, t, span=span)
            raise self._mismatch(col, shown, span, "write true or false")
        raise AssertionError(t)  # pragma: no cover

    @staticmethod
    def _mismatch(col: Col, shown: str, span: Span | None, hint: str) -> QueryError:
        return QueryError(
            "PQL-E013",
            f"{col} is {_article(col.type)} but {shown} is not",
            span=span,
            hints=(hint,),
        )

    # predicates -------------------------------------------------------------------------
    def _pred(self, expr: ast.Expr) -> Pred:
        # Iterative over AND/OR lists; NOT depth is bounded by the parser's guard.
        match expr:
            case ast.Comparison(field=f, op=op, value=v):
                col = self._col(f)
                const = self._const(v, col)
                if col.type is DataType.BOOL and op not in (ast.CompareOp.EQ, ast.CompareOp.NE):
                    raise QueryError(
                        "PQL-E013", f"{col} is a boolean: only = and != apply", span=expr.span
                    )
                return Cmp(col, op, const, span=expr.span)
            case ast.InList(field=f, values=vs, negated=neg):
                col = self._col(f)
                return In(col, tuple(self._const(v, col) for v in vs), neg, span=expr.span)
            case ast.IsNull(field=f, negated=neg):
                return Null(self._col(f), neg, span=expr.span)
            case ast.Not(operand=inner):
                return Negate(self._pred(inner), span=expr.span)
            case ast.And(operands=ops):
                return AllOf(tuple(self._pred(o) for o in ops), span=expr.span)
            case ast.Or(operands=ops):
                return AnyOf(tuple(self._pred(o) for o in ops), span=expr.span)
        raise AssertionError(expr)  # pragma: no cover

    # aggregates -------------------------------------------------------------------------
    def _aggregate(self, agg: ast.Aggregate, qualified: bool) -> AggSpec:
        col = self._col(agg.field) if agg.field is not None else None
        if col is not None:
            if agg.func in (ast.AggFunc.SUM, ast.AggFunc.AVG) and not col.type.numeric:
                raise QueryError(
                    "PQL-E014",
                    f"{agg.func.value} needs a numeric field; {col} is {_article(col.type)}",
                    span=agg.field.span if agg.field else agg.span,
                    hints=(_numeric_hint(agg.func.value, col, self.subjects),),
                )
            if agg.func in (ast.AggFunc.MIN, ast.AggFunc.MAX) and col.type is DataType.BOOL:
                raise QueryError(
                    "PQL-E014",
                    f"{agg.func.value} is not defined for booleans",
                    span=agg.span,
                    hints=(f"use COUNT({col}) with a WHERE",),
                )
        arg = "*" if col is None else (col.qualified if qualified else col.name)
        name = agg.alias or f"{agg.func.value.lower()}({arg})"
        out_type = _agg_type(agg.func, col.type if col else DataType.INT)
        return AggSpec(agg.func, col, name, out_type, span=agg.span)

    # the whole query --------------------------------------------------------------------
    def run(self) -> Analyzed:
        q = self.q
        subjects, unjoined = self._subjects()
        self.subjects = subjects
        if unjoined:
            # Resolve against them too, so the safety phase sees the real columns.
            self.subjects = subjects + [self.catalog[n] for n in unjoined]
        qualified = q.join is not None or bool(unjoined)

        join: tuple[Col, Col] | None = None
        if q.join is not None:
            join = (self._col(q.join.left), self._col(q.join.right))

        where = self._pred(q.where) if q.where is not None else None

        if q.group_by and not q.aggregates:
            span = q.group_by[0].span
            raise QueryError(
                "PQL-E015",
                "GROUP BY needs at least one aggregate",
                span=span,
                hints=(f"write FIND COUNT(*) ... GROUP BY {q.group_by[0]}",),
            )
        group = tuple(self._col(f) for f in q.group_by)
        seen: dict[str, ast.Field] = {}
        for f, col in zip(q.group_by, group, strict=True):
            if col.qualified in seen:
                raise QueryError("PQL-E023", f"{col} appears twice in GROUP BY", span=f.span)
            seen[col.qualified] = f
        aggs = tuple(self._aggregate(a, qualified) for a in q.aggregates)

        buckets = self._timeseries(subjects[0])
        outputs: list[tuple[str, str]] = []
        if q.aggregates:
            if buckets is not None:
                outputs.append((BUCKET, BUCKET))
            for col in group:
                outputs.append((col.qualified, col.qualified if qualified else col.name))
            for spec in aggs:
                outputs.append((spec.name, spec.name))
            names = [out for _, out in outputs]
            for spec in aggs:
                if names.count(spec.name) > 1:
                    raise QueryError(
                        "PQL-E021",
                        f"two output columns are named '{spec.name}'",
                        span=spec.span,
                        hints=("give one of them a name with AS",),
                    )
        else:
            for subject in subjects:
                for column in subject.columns:
                    col_name = f"{subject.name}.{column.name}"
                    outputs.append((col_name, col_name if qualified else column.name))

        order = tuple(self._order_key(o, aggs, group, buckets) for o in q.order_by)

        return Analyzed(
            query=q,
            subjects=tuple(subjects),
            join=join,
            unjoined=tuple((self.catalog[n], self._first_span(n)) for n in unjoined),
            where=where,
            aggregates=aggs,
            group_by=group,
            order_by=order,
            outputs=tuple(outputs),
            qualified_output=qualified,
            timeseries=buckets,
        )

    def _timeseries(self, base: Subject) -> Buckets | None:
        """``TIMESERIES``: only for aggregate queries, bucketing the subject's ``ts``."""
        width = self.q.timeseries
        if width is None:
            return None
        if not self.q.aggregates:
            key = base.key
            raise QueryError(
                "PQL-E151",
                f"TIMESERIES {width} needs an aggregate query; FIND {base.name} returns rows",
                span=width.span,
                hints=(
                    f"count per bucket instead: FIND COUNT({base.name}.{key}) ... "
                    f"TIMESERIES {width}",
                    "or drop TIMESERIES to get the rows",
                ),
            )
        column = base.column("ts")
        assert column is not None  # every subject has one (PQL-X011)
        ts = Col(base.name, column.name, column.type, span=width.span)
        return Buckets(ts, width.seconds, width_text=str(width), span=width.span)

    def _first_span(self, subject: str) -> Span | None:
        return next((f.span for f in self._all_fields() if f.subject == subject), None)

    def _order_key(
        self,
        item: ast.OrderItem,
        aggs: tuple[AggSpec, ...],
        group: tuple[Col, ...],
        buckets: Buckets | None,
    ) -> OrderKey:
        key = item.key
        if aggs:
            if key.subject is None and buckets is not None and key.name == BUCKET:
                return OrderKey(BUCKET, item.descending, item.span)
            if key.subject is None:
                for spec in aggs:
                    if spec.name == key.name:
                        return OrderKey(spec.name, item.descending, item.span)
            col = self._col(key)
            if col not in group:
                names = [s.name for s in aggs] + [str(g) for g in group]
                raise QueryError(
                    "PQL-E019",
                    f"ORDER BY {key} is neither a GROUP BY field nor an aggregate's name",
                    span=key.span,
                    hints=(
                        f"order by one of: {', '.join(names)}",
                        "name an aggregate with AS to order by it",
                    ),
                )
            return OrderKey(col.qualified, item.descending, item.span)
        return OrderKey(self._col(key).qualified, item.descending, item.span)


def _plain(raw: object) -> str:
    """A literal as PQL spells it (``true``, not Python's ``True``)."""
    if isinstance(raw, bool):
        return "true" if raw else "false"
    return str(raw)


def _numeric_hint(func: str, col: Col, subjects: list[Subject]) -> str:
    numeric = [f"{s.name}.{c.name}" for s in subjects for c in s.columns if c.type.numeric]
    if numeric:
        return f"use COUNT({col}), or {func} over a numeric field: {', '.join(numeric)}"
    return f"use COUNT({col}); the query's subjects have no numeric field"


def _article(t: DataType) -> str:
    return {
        DataType.STRING: "a string",
        DataType.INT: "an integer",
        DataType.FLOAT: "a number",
        DataType.BOOL: "a boolean",
        DataType.TIMESTAMP: "a timestamp",
    }[t]


def _expr_fields(expr: ast.Expr) -> list[ast.Field]:
    out: list[ast.Field] = []
    stack: list[ast.Expr] = [expr]
    while stack:
        e = stack.pop()
        match e:
            case ast.Comparison(field=f) | ast.InList(field=f) | ast.IsNull(field=f):
                out.append(f)
            case ast.Not(operand=inner):
                stack.append(inner)
            case ast.And(operands=ops) | ast.Or(operands=ops):
                stack.extend(reversed(ops))
    return out
