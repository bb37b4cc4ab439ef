"""Query text -> :class:`pql.ast.Query`.

One public entry, :func:`parse`. The grammar lives in ``grammar/pql.lark`` (shipped inside the
wheel as ``pql/grammar/pql.lark``); parsing is LALR(1) and non-recursive. Guards on length,
nesting depth and list sizes run before and during the transform, so hostile input ends in a
:class:`~pql.errors.PQLError`, never a ``RecursionError``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any, Final

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from pql import ast
from pql.catalog import suggest
from pql.errors import ParseError, PQLError, SafetyError, Span

__all__ = [
    "MAX_DEPTH",
    "MAX_LIST",
    "MAX_PREDICATES",
    "MAX_TEXT",
    "build_parser",
    "grammar_text",
    "parse",
]

MAX_TEXT: Final = 20_000
"""Longest query text accepted, in characters."""
MAX_DEPTH: Final = 32
"""Deepest nesting of parentheses and NOT accepted."""
MAX_LIST: Final = 1_000
"""Most values in one ``IN (...)`` list."""
MAX_PREDICATES: Final = 512
"""Most comparisons in one WHERE clause."""

KEYWORDS: Final = (
    "FIND", "JOIN", "ON", "WHERE", "GROUP", "BY", "SINCE", "TIMESERIES", "ORDER", "LIMIT", "AND",
    "OR", "NOT", "IN", "IS", "NULL", "AS", "ASC", "DESC", "TRUE", "FALSE", "COUNT", "SUM", "AVG",
    "MIN", "MAX",
)  # fmt: skip

_TERMINAL_WORDS: Final = {
    "NAME": "a name",
    "STRING": "a string",
    "NUMBER": "a number",
    "INT": "a whole number",
    "DURATION": "a duration such as 7d",
    "PARAM": "a $parameter",
    "AGG_FUNC": "COUNT, SUM, AVG, MIN or MAX",
    "COMPARE": "a comparison (=, !=, <, <=, >, >=)",
    "EQUAL": "'='",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "DOT": "'.'",
    "STAR": "'*'",
    "DIRECTION": "ASC or DESC",
    "TRUE": "true",
    "FALSE": "false",
    "NOT": "NOT",
    "GROUP": "GROUP BY",
    "ORDER": "ORDER BY",
    "$END": "the end of the query",
}


def grammar_text() -> str:
    """The grammar, from inside the installed package or, in a source checkout, the repo."""
    packaged = resources.files("pql").joinpath("grammar/pql.lark")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    source = Path(__file__).resolve().parent.parent / "grammar" / "pql.lark"
    return source.read_text(encoding="utf-8")


@functools.cache
def _lark() -> Lark:
    return Lark(
        grammar_text(),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=False,
        cache=False,
    )


def build_parser() -> None:
    """Build the LALR parser now, once per process (it takes tens of milliseconds): an engine
    does it when it opens, so that its first query does not.

    Its lexer too: lark builds the contextual lexer's scanner of each parser state (a compiled
    regular expression of the terminals allowed there) the first time a query reaches that
    state, 45 of them for this grammar: the six dashboard queries' first parses took 13 ms
    in all, 4 ms with the scanners built here (in about 7 ms, when the engine opens, not while
    every tenant's first queries wait after a restart). A lark without these internals is left
    to build them as it goes."""
    lexer = getattr(getattr(_lark(), "parser", None), "lexer", None)
    states = getattr(lexer, "lexers", None)
    if isinstance(states, dict):
        for state in {id(found): found for found in states.values()}.values():
            getattr(state, "scanner", None)


def parse(text: str) -> ast.Query:
    """Parse PQL text into an immutable :class:`~pql.ast.Query`.

    >>> q = parse('FIND receipts WHERE status = "error" SINCE 7d')
    >>> q.subject, q.since.seconds
    ('receipts', 604800)

    Raises :class:`~pql.errors.ParseError` (with line, column, the offending token and what was
    expected) or :class:`~pql.errors.SafetyError` for input beyond the size guards.
    """
    if not isinstance(text, str):
        raise ParseError("PQL-E009", f"a query must be text, not {type(text).__name__}")
    _check_size(text)
    _check_unicode(text)
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text) from None
    _check_depth(tree, text)
    try:
        query = _ToAst(text).transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, PQLError):
            raise exc.orig_exc.with_text(text) from None
        raise
    assert isinstance(query, ast.Query)
    return query


# ---------------------------------------------------------------------------------------------
# Guards


def _check_size(text: str) -> None:
    if len(text) > MAX_TEXT:
        raise SafetyError(
            "PQL-S008",
            f"the query is {len(text):,} characters long; the most accepted is {MAX_TEXT:,}",
            hints=("split the question into several queries, or save it as a parameterized query",),
            setting="pql.parser.MAX_TEXT",
        )
    if not text.strip():
        raise ParseError(
            "PQL-E002",
            "the query is empty",
            hints=("a query starts with FIND, e.g. FIND receipts SINCE 7d",),
        )


_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _check_unicode(text: str) -> None:
    """Refuse lone surrogates (e.g. undecodable bytes from a command line): not characters."""
    found = _SURROGATE.search(text)
    if found is not None:
        raise ParseError(
            "PQL-E003",
            f"unexpected character {found.group()!r}",
            span=_point_span(text, found.start()),
            text=text,
            hints=("the query is not valid Unicode text: a lone surrogate is not a character",),
        )


def _check_depth(tree: Tree[Token], text: str) -> None:
    """Reject deep nesting without recursion (the transformer below is recursive)."""
    stack: list[tuple[Tree[Token] | Token, int]] = [(tree, 0)]
    predicates = 0
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, Tree):
            continue
        nested = depth + (1 if node.data in ("negation", "or_expr") else 0)
        if nested > MAX_DEPTH + 1:
            raise SafetyError(
                "PQL-S009",
                f"the condition is nested more than {MAX_DEPTH} levels deep",
                span=_meta_span(node),
                text=text,
                hints=("flatten the condition: NOT (a = 1 OR b = 2) is a != 1 AND b != 2",),
                setting="pql.parser.MAX_DEPTH",
            )
        if node.data == "value_list" and len(node.children) > MAX_LIST:
            raise SafetyError(
                "PQL-S010",
                f"the IN list has {len(node.children):,} values; the most accepted is {MAX_LIST:,}",
                span=_meta_span(node),
                text=text,
                hints=("narrow the list, or group by the field instead",),
                setting="pql.parser.MAX_LIST",
            )
        if node.data in ("compare", "equals", "in_list", "not_in_list", "is_null", "is_not_null"):
            predicates += 1
            if predicates > MAX_PREDICATES:
                raise SafetyError(
                    "PQL-S011",
                    f"the condition has more than {MAX_PREDICATES} comparisons",
                    span=_meta_span(node),
                    text=text,
                    hints=("use IN (...) for many values of one field",),
                    setting="pql.parser.MAX_PREDICATES",
                )
        stack.extend((child, nested) for child in node.children)


# ---------------------------------------------------------------------------------------------
# Syntax errors


def _token_span(token: Token) -> Span:
    start = token.start_pos or 0
    end = token.end_pos if token.end_pos is not None else start + len(token)
    return Span(
        token.line or 1,
        token.column or 1,
        start,
        end,
        token.end_line or token.line or 1,
        token.end_column or 0,
    )


def _point_span(text: str, pos: int) -> Span:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return Span(line, col, pos, min(pos + 1, len(text)) if pos < len(text) else pos + 1)


def _describe(expected: set[str] | frozenset[str]) -> str:
    words = []
    for name in sorted(expected):
        words.append(_TERMINAL_WORDS.get(name, name))
    words = sorted(set(words), key=lambda w: (w.startswith(("a ", "the ", "'")), w))
    return ", ".join(words)


def _syntax_error(exc: UnexpectedInput, text: str) -> PQLError:
    if isinstance(exc, UnexpectedCharacters):
        return _bad_character(exc, text)
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        token = exc.token
        expected_set = {e for e in exc.expected if not e.startswith("__")}
        hints = _hints_for(token, expected_set, text)
        return ParseError(
            "PQL-E001",
            f"unexpected {_token_words(token)}",
            span=_token_span(token),
            text=text,
            hints=(*hints, f"expected {_describe(expected_set)}"),
            details={"token": str(token), "expected": sorted(expected_set)},
        )
    # The query ended while more was expected.
    raw: set[str] = set(getattr(exc, "expected", None) or ())
    expected = {e for e in raw if not e.startswith("__")}
    end = len(text.rstrip())
    at = _point_span(text, max(end - 1, 0))
    span = Span(at.line, at.column + (1 if end else 0), end, end + 1)
    hints = [f"expected {_describe(expected)}"] if expected else []
    if expected == {"DURATION"}:
        clause = "TIMESERIES" if text.rstrip().upper().endswith("TIMESERIES") else "SINCE"
        example = "1h" if clause == "TIMESERIES" else "7d"
        hints.insert(0, f"{clause} takes a duration such as {example}")
    return ParseError("PQL-E002", "the query ends too early", span=span, text=text, hints=hints)


def _bad_character(exc: UnexpectedCharacters, text: str) -> PQLError:
    pos: int = exc.pos_in_stream or 0
    span = _point_span(text, pos)
    char = text[pos] if pos < len(text) else ""
    if char in ('"', "'"):
        line_end = text.find("\n", pos)
        end = len(text) if line_end < 0 else line_end
        return ParseError(
            "PQL-E004",
            "unterminated string",
            span=Span(span.line, span.column, pos, end),
            text=text,
            hints=(f"close the string with {char}; a string cannot span lines",),
        )
    hints: list[str] = []
    if char == "=" and pos > 0 and text[pos - 1] == "=":
        hints.append("PQL compares with a single '='")
    elif char == "!":
        hints.append("use != for 'not equal'")
    allowed: set[str] = set(exc.allowed or ())
    if allowed:
        hints.append(f"expected {_describe(allowed)}")
    return ParseError(
        "PQL-E003", f"unexpected character {char!r}", span=span, text=text, hints=hints
    )


def _token_words(token: Token) -> str:
    if token.type == "NAME":
        return f"name '{token}'"
    if token.type in ("STRING", "NUMBER", "INT", "DURATION", "PARAM"):
        return f"{_TERMINAL_WORDS[token.type].removeprefix('a ')} {token}"
    return f"'{token}'"


def _hints_for(token: Token, expected: set[str], text: str) -> list[str]:
    hints: list[str] = []
    value = str(token)
    if token.type == "NAME":
        keywords = [k for k in expected if k.isalpha() and k.isupper() and k not in _TERMINAL_WORDS]
        if "AGG_FUNC" in expected:
            keywords += ["COUNT", "SUM", "AVG", "MIN", "MAX"]
        match = suggest(value.upper(), keywords) if keywords else None
        if match:
            hints.append(f"did you mean {match}?")
        elif value.upper() in KEYWORDS:
            hints.append(f"{value.upper()} cannot stand here")
    start = token.start_pos or 0
    if value == "=" and start > 0 and text[start - 1] == "=":
        hints.append("PQL compares with a single '='")
    if token.type in ("INT", "NUMBER") and "DURATION" in expected:
        after = text[token.end_pos or 0 :][:1]
        if after in ("S", "M", "H", "D", "W"):
            hints.append(f"units are lower case: {value}{after.lower()}")
        elif after == "." or "." in value:
            hints.append("a duration is a whole number and a unit: 36h rather than 1.5d")
        else:
            hints.append(f"add a unit: {value}d, {value}h, {value}m, {value}s or {value}w")
    if token.type == "NUMBER" and "INT" in expected:
        hints.append("LIMIT takes a whole number")
    if value.upper() == "GROUP" or value.upper() == "ORDER":
        hints.append(f"write {value.upper()} BY")
    return hints


# ---------------------------------------------------------------------------------------------
# Tree -> AST


def _meta_span(tree: Tree[Any]) -> Span | None:
    meta = tree.meta
    if getattr(meta, "empty", True):
        return None
    return Span(
        meta.line, meta.column, meta.start_pos, meta.end_pos, meta.end_line, meta.end_column
    )


def _amount(raw: str) -> int:
    """The number of a duration token; above 10**9 for anything longer than ten digits."""
    digits = raw[:-1].lstrip("0") or "0"
    return 10**9 + 1 if len(digits) > 10 else int(digits)  # int() refuses huge strings


def _duration(tok: Token, code: str, empty: str, example: str) -> ast.Duration:
    """The duration a token spells; ``code`` with ``empty`` for zero, PQL-E006 when out of range."""
    raw = str(tok)
    span = _token_span(tok)
    amount = _amount(raw)
    if amount <= 0:
        raise ParseError(code, empty, span=span, hints=(example,))
    if amount > 10**9:
        raise ParseError("PQL-E006", f"the duration {raw[:40]} is out of range", span=span)
    return ast.Duration(amount, raw[-1], span=span)


# The JSON escapes (what ``ast.to_text`` prints) plus \' and \0.
_ESCAPES: Final = {
    "\\": "\\", '"': '"', "'": "'", "/": "/", "n": "\n", "t": "\t", "r": "\r", "b": "\b",
    "f": "\f", "0": "\0",
}  # fmt: skip
_ESCAPE_RE: Final = re.compile(
    r"\\(u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.)", re.DOTALL
)
"""One escape; a UTF-16 surrogate pair (``\\ud83d\\ude00``) is one escape, as in JSON."""


def _unquote(token: Token) -> str:
    body = str(token)[1:-1]

    def repl(m: re.Match[str]) -> str:
        esc = m.group(1)
        offset = (token.start_pos or 0) + 1 + m.start()
        span = Span(token.line or 1, (token.column or 1) + 1 + m.start(), offset, offset + 2)
        if esc[0] == "u" and len(esc) == 11:  # a surrogate pair: one character
            high, low = int(esc[1:5], 16), int(esc[7:], 16)
            return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
        if esc[0] == "u" and len(esc) == 5:
            code = int(esc[1:], 16)
            if 0xD800 <= code <= 0xDFFF:
                raise ParseError(
                    "PQL-E005",
                    f"the escape '\\{esc}' is half of a surrogate pair, not a character",
                    span=replace(span, end=offset + 6),
                    hints=("write the character itself, or both halves, e.g. \\ud83d\\ude00",),
                )
            return chr(code)
        if esc in _ESCAPES:
            return _ESCAPES[esc]
        raise ParseError(
            "PQL-E005",
            f"unknown escape '\\{esc}' in a string",
            span=span,
            hints=("known escapes: \\\\ \\\" \\' \\/ \\n \\t \\r \\b \\f \\0 \\uXXXX",),
        )

    return _ESCAPE_RE.sub(repl, body)


_CLAUSES: Final = {
    "where": "WHERE",
    "group_by": "GROUP BY",
    "since": "SINCE",
    "timeseries": "TIMESERIES",
    "order_by": "ORDER BY",
    "limit": "LIMIT",
}


@v_args(meta=True)
class _ToAst(Transformer[Token, Any]):
    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    def _span(self, meta: Any) -> Span | None:
        if getattr(meta, "empty", True):
            return None
        return Span(
            meta.line, meta.column, meta.start_pos, meta.end_pos, meta.end_line, meta.end_column
        )

    # values -----------------------------------------------------------------------------
    def string(self, meta: Any, children: list[Token]) -> ast.Literal:
        return ast.Literal(_unquote(children[0]), span=_token_span(children[0]))

    def number(self, meta: Any, children: list[Token]) -> ast.Literal:
        tok = children[0]
        raw = str(tok)
        value: int | float
        if any(c in raw for c in ".eE"):
            value = float(raw)
        else:
            # int() refuses digit strings longer than sys.get_int_max_str_digits(): strip
            # leading zeros and call anything with more than 19 digits too large up front.
            digits = raw.lstrip("-").lstrip("0") or "0"
            value = 2**63 if len(digits) > 19 else int(digits)
            value = -value if raw.startswith("-") else value
        if isinstance(value, float) and value in (float("inf"), float("-inf")):
            raise ParseError(
                "PQL-E006", f"the number {raw[:40]} is out of range", span=_token_span(tok)
            )
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise ParseError(
                "PQL-E006",
                f"the number {raw[:40]} does not fit in 64 bits",
                span=_token_span(tok),
                hints=("write it as a decimal, e.g. 1.0e20",),
            )
        return ast.Literal(value, span=_token_span(tok))

    def true(self, meta: Any, children: list[Token]) -> ast.Literal:
        return ast.Literal(True, span=_token_span(children[0]))

    def false(self, meta: Any, children: list[Token]) -> ast.Literal:
        return ast.Literal(False, span=_token_span(children[0]))

    def param(self, meta: Any, children: list[Token]) -> ast.Param:
        return ast.Param(str(children[0])[1:], span=_token_span(children[0]))

    def value_list(self, meta: Any, children: list[ast.Value]) -> tuple[ast.Value, ...]:
        return tuple(children)

    def field(self, meta: Any, children: list[Token]) -> ast.Field:
        if len(children) == 2:
            return ast.Field(str(children[0]), str(children[1]), span=self._span(meta))
        return ast.Field(None, str(children[0]), span=self._span(meta))

    # predicates -------------------------------------------------------------------------
    def compare(self, meta: Any, children: list[Any]) -> ast.Comparison:
        f, op, value = children
        return ast.Comparison(f, ast.CompareOp(str(op)), value, span=self._span(meta))

    def equals(self, meta: Any, children: list[Any]) -> ast.Comparison:
        f, value = children
        return ast.Comparison(f, ast.CompareOp.EQ, value, span=self._span(meta))

    def in_list(self, meta: Any, children: list[Any]) -> ast.InList:
        return ast.InList(children[0], children[-1], negated=False, span=self._span(meta))

    def not_in_list(self, meta: Any, children: list[Any]) -> ast.InList:
        return ast.InList(children[0], children[-1], negated=True, span=self._span(meta))

    def is_null(self, meta: Any, children: list[Any]) -> ast.IsNull:
        return ast.IsNull(children[0], negated=False, span=self._span(meta))

    def is_not_null(self, meta: Any, children: list[Any]) -> ast.IsNull:
        return ast.IsNull(children[0], negated=True, span=self._span(meta))

    def negation(self, meta: Any, children: list[Any]) -> ast.Not:
        return ast.Not(children[-1], span=self._span(meta))

    def or_expr(self, meta: Any, children: list[ast.Expr]) -> ast.Expr:
        if len(children) == 1:
            return children[0]
        return ast.Or(tuple(children), span=self._span(meta))

    def and_expr(self, meta: Any, children: list[ast.Expr]) -> ast.Expr:
        if len(children) == 1:
            return children[0]
        return ast.And(tuple(children), span=self._span(meta))

    # clauses ----------------------------------------------------------------------------
    def where(self, meta: Any, children: list[Any]) -> tuple[str, Any, Span | None]:
        return ("where", children[0], self._span(meta))

    def group_by(self, meta: Any, children: list[ast.Field]) -> tuple[str, Any, Span | None]:
        return ("group_by", tuple(children), self._span(meta))

    def since(self, meta: Any, children: list[Token]) -> tuple[str, Any, Span | None]:
        duration = _duration(
            children[0],
            "PQL-E007",
            "SINCE needs a duration longer than zero",
            "for example SINCE 1h or SINCE 7d",
        )
        return ("since", duration, self._span(meta))

    def timeseries(self, meta: Any, children: list[Token]) -> tuple[str, Any, Span | None]:
        duration = _duration(
            children[0],
            "PQL-E150",
            "TIMESERIES needs a bucket width longer than zero",
            "for example TIMESERIES 1h or TIMESERIES 1d",
        )
        return ("timeseries", duration, self._span(meta))

    def order_item(self, meta: Any, children: list[Any]) -> ast.OrderItem:
        desc = len(children) == 2 and str(children[1]).upper() == "DESC"
        return ast.OrderItem(children[0], descending=desc, span=self._span(meta))

    def order_by(self, meta: Any, children: list[ast.OrderItem]) -> tuple[str, Any, Span | None]:
        return ("order_by", tuple(children), self._span(meta))

    def limit(self, meta: Any, children: list[Token]) -> tuple[str, Any, Span | None]:
        raw = str(children[0])
        if len(raw) > 18:
            raise ParseError(
                "PQL-E006", f"LIMIT {raw[:40]} is out of range", span=_token_span(children[0])
            )
        return ("limit", (int(raw), _token_span(children[0])), self._span(meta))

    # query ------------------------------------------------------------------------------
    def aggregate(self, meta: Any, children: list[Any]) -> ast.Aggregate:
        func = ast.AggFunc(str(children[0]).upper())
        arg = children[1]
        alias = str(children[2]) if len(children) > 2 else None
        field = None if isinstance(arg, Token) and arg.type == "STAR" else arg
        if field is None and func is not ast.AggFunc.COUNT:
            raise ParseError(
                "PQL-E008",
                f"{func.value}(*) is not defined; only COUNT takes *",
                span=_token_span(arg),
                hints=(f"name a numeric field, e.g. {func.value}(receipts.latency_ms)",),
            )
        return ast.Aggregate(func, field, alias, span=self._span(meta))

    def find_rows(self, meta: Any, children: list[Token]) -> tuple[str, Any, Span]:
        return ("rows", str(children[0]), _token_span(children[0]))

    def find_aggregates(self, meta: Any, children: list[ast.Aggregate]) -> tuple[str, Any, None]:
        return ("aggregates", tuple(children), None)

    def join(self, meta: Any, children: list[Any]) -> ast.Join:
        subject, left, right = children
        return ast.Join(
            str(subject), left, right, span=self._span(meta), subject_span=_token_span(subject)
        )

    def start(self, meta: Any, children: list[Any]) -> ast.Query:
        kind, target, target_span = children[0]
        rest = children[1:]
        join = None
        if rest and isinstance(rest[0], ast.Join):
            join = rest[0]
            rest = rest[1:]
        clauses: dict[str, Any] = {}
        for name, value, span in rest:
            if name in clauses:
                raise ParseError(
                    "PQL-E016",
                    f"{_CLAUSES[name]} appears twice",
                    span=span,
                    hints=(f"each clause may appear once; merge the two {_CLAUSES[name]} clauses",),
                )
            clauses[name] = value
        limit, limit_span = clauses.get("limit", (None, None))
        return ast.Query(
            subject=target if kind == "rows" else None,
            aggregates=target if kind == "aggregates" else (),
            join=join,
            where=clauses.get("where"),
            group_by=clauses.get("group_by", ()),
            since=clauses.get("since"),
            timeseries=clauses.get("timeseries"),
            order_by=clauses.get("order_by", ()),
            limit=limit,
            span=self._span(meta),
            subject_span=target_span,
            limit_span=limit_span,
        )
