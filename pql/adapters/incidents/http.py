"""``GET /api/incidents`` and ``GET /api/incidents/{id}``: the tenant comes from the token.

Starlette is imported here only, when the HTTP server asks for routes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["INCIDENT_SCHEMA", "SCOPE", "routes"]

SCOPE = "incidents:read"

_TIME = {"type": "string", "description": "ISO-8601, UTC"}
_MAYBE_TIME = {"type": ["string", "null"], "description": "ISO-8601, UTC"}
INCIDENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "tenant", "severity", "state", "opened_at", "signals"],
    "properties": {
        "id": {"type": "string"},
        "tenant": {"type": "string"},
        "severity": {"enum": ["sev1", "sev2", "sev3"]},
        "state": {"enum": ["open", "closed"]},
        "opened_at": _TIME,
        "closed_at": _MAYBE_TIME,
        "acked_by": {"type": ["string", "null"]},
        "acked_at": _MAYBE_TIME,
        "mtta_s": {"type": ["number", "null"], "description": "seconds from open to ack"},
        "signals": {
            "type": "array",
            "items": {"type": "object"},
            "description": "the latest event's signals (docs/audit/INCIDENT_EVENTS.schema.json)",
        },
        "events": {
            "type": "array",
            "items": {"type": "object"},
            "description": "every mc.incident.open/update/close event, oldest first",
        },
    },
}
"""An incident as the routes answer it (``events`` only for one incident)."""


def routes(engine: Any) -> list[Any]:
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from pql.adapters.incidents.service import for_engine
    from pql.server.edge import principal
    from pql.server.errors import register_status
    from pql.server.spec import json_ok, operation

    register_status("PQL-E451", 404)

    @operation(
        "The token's tenant's incidents, in the order they opened",
        ok=json_ok(
            "the incidents",
            {
                "type": "object",
                "required": ["incidents"],
                "properties": {"incidents": {"type": "array", "items": INCIDENT_SCHEMA}},
            },
        ),
        errors=(403,),
    )
    async def list_incidents(request: Request) -> Response:
        who = principal(request, SCOPE)
        found = for_engine(engine).summaries(who.tenant)
        return JSONResponse({"incidents": [s.to_dict() for s in found]})

    @operation(
        "One incident of the token's tenant, with its events (404 for any other id)",
        ok=json_ok("the incident", INCIDENT_SCHEMA),
        errors=(403, 404),
        path_params=("id",),
    )
    async def get_incident(request: Request) -> Response:
        who = principal(request, SCOPE)
        found = for_engine(engine).get(who.tenant, request.path_params["id"])
        return JSONResponse(found.to_dict(events=True))

    return [
        Route("/api/incidents", list_incidents, methods=["GET"]),
        Route("/api/incidents/{id}", get_incident, methods=["GET"]),
    ]
