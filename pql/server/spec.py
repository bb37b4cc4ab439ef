"""The OpenAPI pieces of the built-in routes: schemas, responses, and the document builder.

Each route's endpoint carries its OpenAPI operation as an ``openapi`` attribute (:func:`operation`);
:func:`document` walks the app's routes (Starlette's :class:`BaseSchemaGenerator` finds them,
adapter routes included) and assembles the OpenAPI 3.1 document. ``python -m pql.server.spec``
prints the document of the app with the adapters of :data:`pql.server.app.DOCUMENTED_ADAPTERS`
(loaded through their entry points), which is ``docs/api/openapi.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final, TypeVar

from starlette.routing import BaseRoute
from starlette.schemas import BaseSchemaGenerator

__all__ = ["SCHEMAS", "document", "operation"]

F = TypeVar("F", bound=Callable[..., Any])

_VALUE: Final = {"type": ["string", "integer", "number", "boolean"]}

SCHEMAS: Final[dict[str, Any]] = {
    "Error": {
        "type": "object",
        "required": ["error", "request_id"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "kind", "message"],
                "properties": {
                    "code": {"type": "string", "pattern": "^PQL-[AESX][0-9]{3}$"},
                    "kind": {"type": "string"},
                    "message": {"type": "string"},
                    "line": {"type": "integer"},
                    "column": {"type": "integer"},
                    "token": {"type": "string"},
                    "hints": {"type": "array", "items": {"type": "string"}},
                    "setting": {"type": "string"},
                    "details": {"type": "object"},
                },
            },
            "request_id": {"type": "string"},
        },
    },
    "Params": {
        "type": "object",
        "description": "Values of the query's $name placeholders, bound as typed literals.",
        "additionalProperties": _VALUE,
    },
    "QueryRequest": {
        "type": "object",
        "required": ["query"],
        "additionalProperties": False,
        "properties": {
            "query": {"type": "string", "description": "PQL v1.1 text"},
            "now": {
                "type": ["string", "null"],
                "description": "fix the clock (ISO-8601); only the window moves with it",
            },
            "params": {"$ref": "#/components/schemas/Params"},
            "format": {"enum": ["json", "csv"], "default": "json"},
            "cache": {"type": "boolean", "default": True},
        },
    },
    "ExplainRequest": {
        "type": "object",
        "required": ["query"],
        "additionalProperties": False,
        "properties": {
            "query": {"type": "string"},
            "now": {"type": ["string", "null"]},
            "params": {"$ref": "#/components/schemas/Params"},
            "analyze": {"type": "boolean", "default": False},
        },
    },
    "SavedRunRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "now": {
                "type": ["string", "null"],
                "description": "fix the window's clock; signatures are judged on the server's",
            },
            "params": {"$ref": "#/components/schemas/Params"},
            "format": {"enum": ["json", "csv"], "default": "json"},
        },
    },
    "Result": {
        "type": "object",
        "required": ["columns", "rows", "truncated", "stats"],
        "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "rows": {"type": "array", "items": {"type": "array"}},
            "truncated": {"type": "boolean"},
            "stats": {"type": "object"},
        },
    },
    "Explanation": {
        "type": "object",
        "required": ["text", "plan"],
        "properties": {"text": {"type": "string"}, "plan": {"type": "object"}},
    },
    "SavedList": {
        "type": "object",
        "required": ["names"],
        "properties": {"names": {"type": "array", "items": {"type": "string"}}},
    },
}

_REASONS: Final = {
    400: "invalid query or input (PQL-E…), or a saved query's parameters (PQL-A007/8/14)",
    401: "no bearer token, or one that is not valid (PQL-A100, PQL-A101)",
    403: "the token lacks the scope (PQL-A102), or a signature check failed (PQL-A…)",
    404: "no such route (PQL-E305), saved query (PQL-A011) or tenant (PQL-E202)",
    405: "the route does not take this method (PQL-E306)",
    409: "a conflict with the resource's state, e.g. a tenant that exists with another profile "
    "(PQL-E203) or is migrating (PQL-E211)",
    413: "the body is larger than the server accepts (PQL-E304)",
    422: "refused by a safety rule (PQL-S…)",
    429: "the tenant's admission queue is full (PQL-S007); see Retry-After",
    500: "a bug in pql (PQL-X…); quote the request id",
    504: "the query ran past its deadline (PQL-S006): cancelled, or a large join left to finish",
}


def _error(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _REASONS[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if status == 429:
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return response


def operation(
    summary: str,
    *,
    ok: dict[str, Any],
    body: str | dict[str, Any] | None = None,
    errors: tuple[int, ...] = (),
    auth: bool = True,
    path_params: tuple[str, ...] = (),
) -> Callable[[F], F]:
    """Attach an OpenAPI operation to an endpoint: its 200 answer, body and error statuses.

    ``body`` is a component's name (of :data:`SCHEMAS`) or an inline schema (an adapter's).
    """

    def attach(func: F) -> F:
        statuses = sorted({*errors, 405, 500, *((401, 413) if auth else ())})
        op: dict[str, Any] = {
            "summary": summary,
            "operationId": func.__name__,
            "responses": {"200": ok} | {str(s): _error(s) for s in statuses},
        }
        if path_params:
            op["parameters"] = [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in path_params
            ]
        if body is not None:
            schema = {"$ref": f"#/components/schemas/{body}"} if isinstance(body, str) else body
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema}},
            }
        op["security"] = [{"bearer": []}] if auth else []
        func.openapi = op  # type: ignore[attr-defined]
        return func

    return attach


def json_ok(description: str, schema: str | dict[str, Any]) -> dict[str, Any]:
    """A 200 answer of JSON ``schema`` (a component's name or an inline schema)."""
    ref = {"$ref": f"#/components/schemas/{schema}"} if isinstance(schema, str) else schema
    return {"description": description, "content": {"application/json": {"schema": ref}}}


class _Generator(BaseSchemaGenerator):
    def get_schema(self, routes: list[BaseRoute]) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        for endpoint in self.get_endpoints(routes):
            op = getattr(endpoint.func, "openapi", None)
            if op is None:  # an adapter route without a description of its own
                doc = (endpoint.func.__doc__ or endpoint.func.__name__).strip().splitlines()[0]
                op = {"summary": doc, "responses": {"default": {"description": "see the adapter"}}}
            paths.setdefault(endpoint.path, {})[endpoint.http_method] = op
        return {"paths": dict(sorted(paths.items()))}


def document(routes: list[BaseRoute], version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pql",
            "version": version,
            "description": "PQL v1.1 over HTTP: every request acts for the tenant of its "
            "bearer token. See docs/api/README.md.",
        },
        **_Generator().get_schema(routes),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def dumps(doc: dict[str, Any]) -> str:
    """The document as committed: sorted keys, two-space indent, a final newline."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # pragma: no cover - regenerates docs/api/openapi.json
    import sys

    from pql.server.app import openapi_committed

    sys.stdout.write(dumps(openapi_committed()))
