"""The error taxonomy: every failure `pql` reports is a :class:`PQLError`.

Errors are data. Each carries a stable ``code`` (``PQL-E…`` for invalid input, ``PQL-S…`` for
safety refusals, ``PQL-A…`` for signature and authorization failures, ``PQL-X…`` for internal
bugs), a one-line ``message``, the source ``span`` when it has one (never a fake 0:0), ``hints``
and, for limits, the ``setting`` a caller can change. The snippet with a caret is rendered once,
at the edge (CLI, notebook), by :meth:`PQLError.render`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pql.render import error_html

__all__ = [
    "AuthError",
    "InputError",
    "InternalError",
    "PQLError",
    "ParseError",
    "QueryError",
    "SafetyError",
    "Span",
]


@dataclass(frozen=True, slots=True)
class Span:
    """A region of query text: 1-based line and column, 0-based character offsets."""

    line: int
    column: int
    start: int
    end: int
    end_line: int = 0
    end_column: int = 0

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"

    def merge(self, other: Span) -> Span:
        """The smallest span covering both."""
        first, last = (self, other) if self.start <= other.start else (other, self)
        end = max(self, other, key=lambda s: s.end)
        return Span(
            first.line,
            first.column,
            first.start,
            max(last.end, end.end),
            end.end_line,
            end.end_column,
        )


class PQLError(Exception):
    """Base class of every error `pql` raises on purpose.

    ``exit_code`` is what the command line exits with for this kind of error.
    """

    exit_code: ClassVar[int] = 1
    kind: ClassVar[str] = "error"

    def __init__(
        self,
        code: str,
        message: str,
        *,
        span: Span | None = None,
        text: str | None = None,
        hints: tuple[str, ...] | list[str] = (),
        setting: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        message = _clip(message)
        super().__init__(message)
        self.code = code
        self.message = message
        self.span = span
        self.text = text
        self.hints = tuple(_clip(hint) for hint in hints)
        self.setting = setting
        self.details = dict(details or {})

    def __str__(self) -> str:
        where = f" at {self.span}" if self.span else ""
        return f"[{self.code}] {self.message}{where}"

    def with_text(self, text: str) -> PQLError:
        """Attach the query text (for rendering) if the error does not have it yet."""
        if self.text is None:
            self.text = text
        return self

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """In IPython: the rendered error (as the command line shows it)."""
        printer.text(self.render())

    def _repr_html_(self) -> str:
        """In a notebook: the rendered error with the offending text marked, no traceback."""
        return error_html(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description of the error."""
        out: dict[str, Any] = {"code": self.code, "kind": self.kind, "message": self.message}
        if self.span is not None:
            out["line"] = self.span.line
            out["column"] = self.span.column
            if self.text is not None:
                out["token"] = self.text[self.span.start : self.span.end]
        if self.hints:
            out["hints"] = list(self.hints)
        if self.setting:
            out["setting"] = self.setting
        if self.details:
            out["details"] = self.details
        return out

    def render(self) -> str:
        """The error as a person reads it: headline, the offending line with a caret, hints."""
        head = f"error[{self.code}]: {self.message}"
        lines = [head]
        if self.span is not None and self.text is not None:
            lines[0] = f"{head} (at {self.span.line}:{self.span.column})"
            src_lines = self.text.split("\n")
            if 1 <= self.span.line <= len(src_lines):
                src = src_lines[self.span.line - 1]
                gutter = str(self.span.line)
                pad = " " * len(gutter)
                width = max(1, self.span.end - self.span.start)
                if self.span.end_line and self.span.end_line != self.span.line:
                    width = max(1, len(src) - self.span.column + 1)
                width = min(width, max(1, len(src) - self.span.column + 1))
                col = self.span.column - 1
                src, col, width = _window(src, col, width)
                lines.append(f"{pad} |")
                lines.append(f"{gutter} | {_printable(src)}")
                lines.append(f"{pad} | {' ' * col}{'^' * width}")
        for hint in self.hints:
            lines.append(f"  = hint: {hint}")
        if self.setting:
            lines.append(f"  = setting: {self.setting}")
        return "\n".join(lines)


_WIDTH = 100

MESSAGE_MAX = 500
"""The longest message or hint, in characters: they quote the user's input, which may be huge."""


def _clip(text: str) -> str:
    """``text`` cut in the middle to at most :data:`MESSAGE_MAX` characters."""
    if len(text) <= MESSAGE_MAX:
        return text
    tail = MESSAGE_MAX // 5
    return f"{text[: MESSAGE_MAX - tail - 5]} ... {text[-tail:]}"


def _window(src: str, col: int, width: int) -> tuple[str, int, int]:
    """Cut a long line to about ``_WIDTH`` characters around the caret."""
    width = min(width, _WIDTH - 20)
    if len(src) <= _WIDTH:
        return src, col, width
    start = max(0, col - 30)
    end = min(len(src), start + _WIDTH)
    prefix = "..." if start > 0 else ""
    suffix = "..." if end < len(src) else ""
    return prefix + src[start:end] + suffix, col - start + len(prefix), width


def _printable(line: str) -> str:
    """Show control characters visibly so the caret stays aligned."""
    return "".join(ch if ch.isprintable() or ch == "\t" else "?" for ch in line)


class QueryError(PQLError):
    """The query is invalid: unknown names, wrong types, misuse of clauses (exit 2)."""

    exit_code = 2
    kind = "invalid query"


class ParseError(QueryError):
    """The query text does not parse (exit 2)."""

    kind = "syntax error"


class InputError(PQLError):
    """Invalid input other than query text: data files, tenants, arguments (exit 2)."""

    exit_code = 2
    kind = "invalid input"


class SafetyError(PQLError):
    """Refused by a safety rule before anything ran (exit 3)."""

    exit_code = 3
    kind = "refused"


class AuthError(PQLError):
    """Signature or authorization failure (exit 4)."""

    exit_code = 4
    kind = "not authorized"


class InternalError(PQLError):
    """A bug in pql, never the user's fault (exit 1)."""

    exit_code = 1
    kind = "internal error"
