"""Typed ``$parameters``: the declared types, how a caller's value becomes one, and declaring them.

Every ``$name`` of a saved query is declared, by hand or from the field it is compared with
(:func:`declare_params`); at run time :meth:`ParamType.convert` turns a caller's value into a value
of the declared type, or refuses it with :class:`~pql.saved.errors.ParamTypeError`.
"""

from __future__ import annotations

import enum
import math
import re
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Final

from pql import ast
from pql.catalog import Catalog, DataType
from pql.errors import InputError
from pql.saved.errors import ParamTypeError

__all__ = ["ParamType", "declare_params", "names", "param_uses", "shown"]


def _to_string(value: object) -> str:
    if isinstance(value, str):
        return value
    raise TypeError("it is not text")


_FLOAT_MAX: Final = int(sys.float_info.max)


def _to_int(value: object) -> int:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a whole number")
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]{1,19}", value.strip()):
        value = int(value)
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return value
    raise ValueError("it is not a 64-bit whole number")


def _to_float(value: object) -> float:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    number = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"
    if isinstance(value, str) and re.fullmatch(number, value.strip()):
        value = float(value)
    if isinstance(value, int) and not -_FLOAT_MAX <= value <= _FLOAT_MAX:
        raise ValueError("it is too large for a 64-bit float")
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    raise ValueError("it is not a finite number")


def _to_bool(value: object) -> bool:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, bool):
        return value
    raise ValueError("write true or false")


def _to_timestamp(value: object) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("it is not an ISO-8601 time") from None
    if isinstance(value, datetime):
        stamp = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        try:
            return stamp.astimezone(UTC)
        except OverflowError:
            raise ValueError("in UTC it falls outside the years 1-9999") from None
    raise TypeError("it is not a time")


class ParamType(enum.Enum):
    """The declared type of a ``$parameter``.

    >>> ParamType.INT.convert("limit", "250")
    250
    >>> ParamType.parse("timestamp").convert("since", "2026-03-02T10:00:00Z").isoformat()
    '2026-03-02T10:00:00+00:00'
    """

    STRING = "string"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    TIMESTAMP = "timestamp"

    @classmethod
    def parse(cls, text: str) -> ParamType:
        """The type named ``text``; an unknown name is an :class:`~pql.errors.InputError`."""
        for member in cls:
            if member.value == text:
                return member
        raise InputError(
            "PQL-E091",
            f"unknown parameter type {text!r}",
            hints=(f"parameter types: {', '.join(m.value for m in cls)}",),
        )

    def convert(self, name: str, value: object) -> object:
        """``value`` as this type; text is read as the command line writes it (``k=v``).

        Raises :class:`ParamTypeError` when it is not a value of this type.
        """
        try:
            return _CONVERTERS[self](value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ParamTypeError(
                f"parameter ${name} is declared {self.value}, but {shown(value)} is not: {exc}",
                details={"param": name, "type": self.value},
            ) from None

    def dummy(self) -> object:
        """A value of this type, to check a query's types before it is signed."""
        return _DUMMIES[self]


def shown(value: object, width: int = 60) -> str:
    """A short ``repr`` of a caller's value, whatever its size (huge ints cannot be printed)."""
    if isinstance(value, str | bytes):
        value = value[: width + 1]
    try:
        text = repr(value)
    except ValueError:  # an int of more than sys.get_int_max_str_digits() digits
        return "a number too large to show"
    return text if len(text) <= width else text[: width - 3] + "..."


_CONVERTERS: Final[dict[ParamType, Callable[[object], object]]] = {
    ParamType.STRING: _to_string,
    ParamType.INT: _to_int,
    ParamType.FLOAT: _to_float,
    ParamType.BOOL: _to_bool,
    ParamType.TIMESTAMP: _to_timestamp,
}
_DUMMIES: Final[dict[ParamType, object]] = {
    ParamType.STRING: "x",
    ParamType.INT: 0,
    ParamType.FLOAT: 0.0,
    ParamType.BOOL: False,
    ParamType.TIMESTAMP: datetime(2000, 1, 1, tzinfo=UTC),
}


# ---------------------------------------------------------------------------------------------
# Declaring parameters: every $name is declared, by hand or from the field it is compared with


def _predicates(query: ast.Query) -> list[ast.Comparison | ast.InList | ast.IsNull]:
    """The leaf predicates of the WHERE clause, in text order (iterative: depth is unbounded)."""
    leaves: list[ast.Comparison | ast.InList | ast.IsNull] = []
    stack: list[ast.Expr] = [query.where] if query.where is not None else []
    while stack:
        expr = stack.pop()
        match expr:
            case ast.Not(operand=inner):
                stack.append(inner)
            case ast.And(operands=ops) | ast.Or(operands=ops):
                stack.extend(reversed(ops))
            case _:
                leaves.append(expr)
    return leaves


def param_uses(query: ast.Query) -> list[tuple[str, ast.Field]]:
    """Every ``$name`` of the query with the field it is compared with, in text order."""
    uses: list[tuple[str, ast.Field]] = []
    for leaf in _predicates(query):
        match leaf:
            case ast.Comparison(field=f, value=ast.Param(name=name)):
                uses.append((name, f))
            case ast.InList(field=f, values=values):
                uses += [(v.name, f) for v in values if isinstance(v, ast.Param)]
    return uses


def _named_subjects(query: ast.Query) -> list[str]:
    """The subjects a query names: what it finds, what it joins, and qualified fields'."""
    names = [query.subject] if query.subject else []
    fields = [a.field for a in query.aggregates if a.field is not None]
    if query.join is not None:
        names.append(query.join.subject)
        fields += [query.join.left, query.join.right]
    fields += [*query.group_by, *(o.key for o in query.order_by)]
    fields += [leaf.field for leaf in _predicates(query)]
    return names + [f.subject for f in fields if f.subject]


def _field_type(f: ast.Field, query: ast.Query, catalog: Catalog) -> DataType | None:
    """The type of ``f`` where the catalog settles it; ``None`` when it is unknown or ambiguous."""
    if f.subject is not None:
        subject = catalog.get(f.subject)
        column = subject.column(f.name) if subject is not None else None
        return column.type if column is not None else None
    named = [catalog[s] for s in dict.fromkeys(_named_subjects(query)) if s in catalog]
    owners = [s for s in (named or list(catalog)) if f.name in s]
    column = owners[0].column(f.name) if len(owners) == 1 else None
    return column.type if column is not None else None


def declare_params(
    query: ast.Query,
    catalog: Catalog,
    explicit: Mapping[str, ParamType | str] | None = None,
) -> dict[str, ParamType]:
    """The type of every ``$name`` in ``query``: ``explicit`` first, else the compared field's.

    >>> from pql.parser import parse
    >>> declare_params(parse("FIND receipts WHERE latency_ms > $slow AND status = $s"), Catalog())
    {'s': <ParamType.STRING: 'string'>, 'slow': <ParamType.FLOAT: 'float'>}
    """
    given = {
        k: v if isinstance(v, ParamType) else ParamType.parse(v)
        for k, v in (explicit or {}).items()
    }
    uses = param_uses(query)
    unused = sorted(set(given) - {name for name, _ in uses})
    if unused:
        raise InputError(
            "PQL-E090",
            f"--param-type declares {names(set(unused))}, which the query does not use",
            hints=("declare only the parameters the query uses",),
        )
    declared = dict(given)
    for name, f in uses:
        if name in given:
            continue
        data_type = _field_type(f, query, catalog)
        inferred = ParamType(data_type.value) if data_type is not None else None
        if inferred is None or declared.get(name, inferred) is not inferred:
            raise InputError(
                "PQL-E090",
                f"cannot tell the type of ${name} from the field {f} it is compared with",
                hints=(f"declare it: --param-type {name}=string|int|float|bool|timestamp",),
            )
        declared[name] = inferred
    return dict(sorted(declared.items()))


def names(names: set[str]) -> str:
    return ", ".join(f"${n}" for n in sorted(names)) or "no parameters"
