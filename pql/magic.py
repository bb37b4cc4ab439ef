"""IPython magics: ``%load_ext pql``, ``%pql_connect`` and ``%%pql`` / ``%pql``.

Only imported by IPython (through :func:`pql.load_ipython_extension`); the rest of ``pql`` never
imports IPython.

* ``%pql_connect DIR --tenant T`` opens ``pql.Engine(DIR)``; ``%pql_connect NAME --tenant T``
  uses the engine bound to ``NAME`` in the notebook instead.
* ``%%pql [--tenant T] [--now ISO-8601] [-o NAME]`` runs the cell's query and returns the
  :class:`~pql.result.Result` (shown as a table); ``-o NAME`` also binds it to ``NAME``.
  ``%pql [options] QUERY`` is the one-line form.
* ``$name`` in the query is bound to the notebook variable ``name`` as a typed parameter; its
  value is never pasted into the text.
* A :class:`~pql.errors.PQLError` is shown rendered (the caret under the offending text), never
  as a traceback; the magic then returns nothing.
"""

from __future__ import annotations

import io
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.display import display as _display

from pql import ast
from pql.engine import Engine
from pql.errors import InputError, PQLError
from pql.parser import parse
from pql.plan.safety import check_tenant_name
from pql.result import Result

__all__ = ["PQLMagics", "load_ipython_extension"]

display: Callable[..., None] = _display

_OPTION = re.compile(r"\s*(--tenant|--now|-o)(?:\s+|=)(\S+)")


def _options(line: str) -> tuple[dict[str, str], str]:
    """Leading ``--tenant T``, ``--now X`` and ``-o NAME``; the rest of the line is the query."""
    found: dict[str, str] = {}
    pos = 0
    while match := _OPTION.match(line, pos):
        found[match.group(1).lstrip("-")] = match.group(2)
        pos = match.end()
    rest = line[pos:].strip()
    if rest.startswith("-") and not rest.upper().startswith("--"):
        raise InputError(
            "PQL-E154",
            f"unknown option {rest.split()[0]!r}",
            hints=("options are --tenant T, --now ISO-8601 and -o NAME, before the query",),
        )
    return found, rest


def param_names(query: ast.Query) -> list[str]:
    """The ``$name`` placeholders of a parsed query, in order of appearance."""
    names: list[str] = []
    stack: list[ast.Expr] = [] if query.where is None else [query.where]
    while stack:
        expr = stack.pop(0)
        match expr:
            case ast.Comparison(value=ast.Param(name=name)):
                names.append(name)
            case ast.InList(values=values):
                names += [v.name for v in values if isinstance(v, ast.Param)]
            case ast.Not(operand=inner):
                stack.insert(0, inner)
            case ast.And(operands=ops) | ast.Or(operands=ops):
                stack[:0] = list(ops)
    return list(dict.fromkeys(names))


@magics_class
class PQLMagics(Magics):
    """The ``pql`` magics; one engine and default tenant per IPython session."""

    engine: Engine | None = None
    tenant: str | None = None

    @line_magic
    def pql_connect(self, line: str) -> None:
        """``%pql_connect DIR|ENGINE_NAME [--tenant T]``: the engine later cells query."""
        try:
            words = shlex.split(line)
            options = {
                words[i].lstrip("-"): words[i + 1]
                for i in range(len(words) - 1)
                if words[i] == "--tenant"
            }
            target = " ".join(
                w
                for i, w in enumerate(words)
                if w != "--tenant" and (i == 0 or words[i - 1] != "--tenant")
            )
            if not target:
                raise InputError(
                    "PQL-E154",
                    "%pql_connect needs a data directory or the name of an engine",
                    hints=(
                        "%pql_connect ./data --tenant acme, or %pql_connect engine --tenant acme",
                    ),
                )
            found = self.shell.user_ns.get(target) if self.shell is not None else None
            if isinstance(found, Engine):
                self.engine = found
            elif Path(target).is_dir():
                self.engine = Engine(target)
            else:
                raise InputError(
                    "PQL-E154",
                    f"{target!r} is neither a directory nor a pql.Engine in the notebook",
                    hints=("give the lake directory (pql demo --data DIR writes one)",),
                )
            if "tenant" in options:
                self.tenant = check_tenant_name(options["tenant"])
        except PQLError as error:
            display(error)

    @no_var_expand  # $name is a typed parameter, never text pasted by IPython
    @line_cell_magic
    def pql(self, line: str, cell: str | None = None) -> Result | None:
        """``%%pql [--tenant T] [--now X] [-o NAME]`` (cell) or ``%pql [options] QUERY`` (line)."""
        try:
            result: Result = self._run(line, cell)
            return result
        except PQLError as error:
            display(error)
            return None

    def _run(self, line: str, cell: str | None) -> Result:
        options, rest = _options(line)
        text = cell if cell is not None else rest
        if cell is not None and rest:
            raise InputError(
                "PQL-E154",
                f"unexpected {rest!r} after the options of %%pql",
                hints=("put the query in the cell, the options on the %%pql line",),
            )
        if self.engine is None:
            raise InputError(
                "PQL-E155",
                "no engine: connect first",
                hints=("%pql_connect DIR --tenant T, or %pql_connect ENGINE_NAME --tenant T",),
            )
        tenant = options.get("tenant", self.tenant)
        if tenant is None:
            raise InputError(
                "PQL-E155",
                "no tenant: every query runs for one tenant",
                hints=("pass --tenant T here or to %pql_connect",),
            )
        params = self._params(text)
        result = self.engine.query(text, tenant=tenant, now=options.get("now"), params=params)
        if "o" in options and self.shell is not None:
            self.shell.user_ns[options["o"]] = result
        return result

    def _params(self, text: str) -> dict[str, Any]:
        """The notebook values of the query's ``$names`` (bound as typed parameters)."""
        names = param_names(parse(text))
        namespace = self.shell.user_ns if self.shell is not None else {}
        missing = [n for n in names if n not in namespace]
        if missing:
            raise InputError(
                "PQL-E156",
                f"${missing[0]} is not a variable of the notebook",
                hints=(f"set it first, e.g. {missing[0]} = 'error', then run the query again",),
            )
        return {n: namespace[n] for n in names}


def _figure_png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext pql``: register the magics, and show the figures ``result.plot()`` returns
    as PNG images (they are built without pyplot, so no backend shows them by itself)."""
    ipython.register_magics(PQLMagics)
    png = ipython.display_formatter.formatters["image/png"]
    png.for_type_by_name("matplotlib.figure", "Figure", _figure_png)
