"""A tiny adapter for the tests: incidents per tenant, a conflict, and a bug."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from pql.adapters import hookimpl
from pql.errors import InputError
from pql.server.edge import principal
from pql.server.errors import register_status

register_status("PQL-E318", 404)
register_status("PQL-E319", 409)


def _incidents(tenant: str) -> list[dict[str, str]]:
    return [{"id": f"inc-{tenant}-1", "tenant": tenant}]


async def list_incidents(request: Request) -> Response:
    who = principal(request, "incidents:read")
    return JSONResponse({"incidents": _incidents(who.tenant)})


async def get_incident(request: Request) -> Response:
    who = principal(request, "incidents:read")
    wanted = request.path_params["id"]
    for incident in _incidents(who.tenant):
        if incident["id"] == wanted:
            return JSONResponse(incident)
    raise InputError("PQL-E318", f"no incident {wanted!r}")


async def create_tenant(request: Request) -> Response:
    principal(request, "admin")
    raise InputError("PQL-E319", "that tenant exists already")


async def boom(request: Request) -> Response:
    raise RuntimeError("internal detail that must not leak")


@hookimpl
def pql_http_routes(engine: Any) -> list[BaseRoute]:
    return [
        Route("/api/incidents", list_incidents, methods=["GET"]),
        Route("/api/incidents/{id}", get_incident, methods=["GET"]),
        Route("/api/tenants", create_tenant, methods=["POST"]),
        Route("/api/boom", boom, methods=["GET"]),
    ]
