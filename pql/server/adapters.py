"""Routes contributed by adapters: the ``pql_http_routes(engine)`` hook (docs/pql/ADAPTERS.md).

The server mounts what the engine's loaded adapters return, and nothing else: a route whose
adapter is not loaded (not installed, not allowed, or broken) does not exist (404). A route may
not take a path the server already answers. Adapter routes sit behind the same edge as the
built-in ones (a token is required under ``/api/``); they call
:func:`pql.server.edge.principal` with their scope to learn the tenant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from starlette.routing import BaseRoute, Route

from pql.adapters import Adapters, load_adapters
from pql.errors import InternalError

__all__ = ["adapter_routes"]


def adapter_routes(
    engine: Any, taken: Iterable[BaseRoute], plugins: Mapping[str, object] | None = None
) -> list[BaseRoute]:
    """Every route the adapters contribute; ``PQL-X302`` if one takes a path already served.

    ``plugins=None``: the engine's loaded adapters; a mapping name -> object: exactly those.
    """
    adapters: Adapters = (
        engine.adapters if plugins is None else load_adapters(plugins=plugins, entry_points=False)
    )
    seen = {(r.path, m) for r in taken if isinstance(r, Route) for m in (r.methods or ())}
    out: list[BaseRoute] = []
    for batch in adapters.call("pql_http_routes", engine=engine):
        for route in batch or ():
            if not isinstance(route, BaseRoute):
                raise InternalError(
                    "PQL-X302", f"an adapter returned {route!r}, which is not a Starlette route"
                )
            if isinstance(route, Route):
                clash = {(route.path, m) for m in (route.methods or ())} & seen
                if clash:
                    raise InternalError(
                        "PQL-X302",
                        f"an adapter's route {route.path} is already served",
                        hints=("uninstall one of the adapters that serve it",),
                    )
                seen |= {(route.path, m) for m in (route.methods or ())}
            out.append(route)
    return out
