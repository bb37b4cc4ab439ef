"""``GET /api/incidents`` and ``GET /api/incidents/{id}``: the tenant comes from the token.

Starlette is imported here only, when the HTTP server asks for routes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCOPE", "routes"]

SCOPE = "incidents:read"


def routes(engine: Any) -> list[Any]:
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from pql.adapters.incidents.service import for_engine
    from pql.server.edge import principal
    from pql.server.errors import register_status

    register_status("PQL-E451", 404)

    async def list_incidents(request: Request) -> Response:
        who = principal(request, SCOPE)
        found = for_engine(engine).summaries(who.tenant)
        return JSONResponse({"incidents": [s.to_dict() for s in found]})

    async def get_incident(request: Request) -> Response:
        who = principal(request, SCOPE)
        found = for_engine(engine).get(who.tenant, request.path_params["id"])
        return JSONResponse(found.to_dict(events=True))

    return [
        Route("/api/incidents", list_incidents, methods=["GET"]),
        Route("/api/incidents/{id}", get_incident, methods=["GET"]),
    ]
