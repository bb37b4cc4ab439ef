"""Routes contributed by adapters: the ``pql_http_routes(engine)`` hook of the ``pql.adapters``
entry-point group (pluggy).

An adapter package declares ``[project.entry-points."pql.adapters"] NAME = "module"``; the module
(or object) implements ``pql_http_routes(engine)`` and returns a list of Starlette routes. The
server mounts what the installed adapters return, and nothing else: a route whose adapter is not
installed does not exist (404). A route may not take a path the server already answers. Adapter
routes sit behind the same edge as the built-in ones (a token is required under ``/api/``); they
call :func:`pql.server.edge.principal` with their scope to learn the tenant.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pluggy
from starlette.routing import BaseRoute, Route

from pql.errors import InternalError

__all__ = ["GROUP", "PROJECT", "adapter_routes", "hookimpl", "plugin_manager"]

PROJECT = "pql"
GROUP = "pql.adapters"

hookspec = pluggy.HookspecMarker(PROJECT)


class _Spec:
    @hookspec
    def pql_http_routes(self, engine: Any) -> list[BaseRoute]:  # type: ignore[empty-body]
        """The Starlette routes this adapter adds to ``pql serve``."""


def plugin_manager(plugins: Iterable[object] | None = None) -> pluggy.PluginManager:
    """A manager with the hook; the installed adapters (``plugins=None``) or the ones given."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(_Spec)
    if plugins is None:
        pm.load_setuptools_entrypoints(GROUP)
    else:
        for plugin in plugins:
            pm.register(plugin)
    return pm


def adapter_routes(
    engine: Any, taken: Iterable[BaseRoute], plugins: Iterable[object] | None = None
) -> list[BaseRoute]:
    """Every route the adapters contribute; ``PQL-X302`` if one takes a path already served."""
    pm = plugin_manager(plugins)
    seen = {(r.path, m) for r in taken if isinstance(r, Route) for m in (r.methods or ())}
    out: list[BaseRoute] = []
    for batch in pm.hook.pql_http_routes(engine=engine):
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


hookimpl = pluggy.HookimplMarker(PROJECT)
"""Mark an adapter's ``pql_http_routes`` implementation with this."""
