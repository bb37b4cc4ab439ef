"""The HTTP face of pql: a thin, authenticated ASGI server over one :class:`~pql.Engine`.

``pql serve --data DIR`` runs it (``pip install "pql[server]"``: Starlette and uvicorn). The
server holds no query logic: it checks who is asking (a bearer token bound to one tenant and a set
of scopes, :mod:`pql.server.tokens`), hands the query to the engine for that tenant, and turns the
answer or the :class:`~pql.PQLError` into JSON. Routes, errors and tokens are described in
``docs/api/README.md``; the OpenAPI document is ``docs/api/openapi.json``.

Importing ``pql`` never imports this package's web stack: :func:`require` does, with an install
hint when it is missing.
"""

from __future__ import annotations

import importlib

from pql.errors import InputError

__all__ = ["require"]

_STACK = ("starlette", "uvicorn")


def require() -> None:
    """Check that the server's dependencies are installed (``PQL-E300`` with a hint if not)."""
    missing = []
    for name in _STACK:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise InputError(
            "PQL-E300",
            f"the HTTP server needs {' and '.join(missing)}, which are not installed",
            hints=('install the server extra: pip install "pql[server]"',),
        )
