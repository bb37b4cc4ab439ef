"""The ASGI app: the built-in routes over one engine, the adapters' routes, and the edge.

===========================  =================  ================================================
route                        scope              what it does
===========================  =================  ================================================
``POST /api/pql``            ``query``          ``Engine.query`` for the token's tenant
``POST /api/explain``        ``query``          ``Engine.explain``
``GET /api/saved``           ``saved``          the names of the tenant's saved queries
``POST /api/saved/{n}:run``  ``saved``          verify and run a signed saved query
``GET /healthz``             none               the process answers
``GET /readyz``              none               the tenants' indexes are in memory (else 503)
``GET /metrics``             none               Prometheus text format
``GET /openapi.json``        none               this app's OpenAPI document
===========================  =================  ================================================

Every engine call runs on a worker thread; the engine's admission decides what waits and what is
refused (429).
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import anyio.to_thread
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from pql import __version__
from pql.cli_output import isoformat
from pql.engine import Engine
from pql.errors import InputError
from pql.limits import TenantLimits
from pql.result import Result
from pql.saved import SavedStore
from pql.server import observe, spec
from pql.server.adapters import adapter_routes
from pql.server.edge import Edge, error_response, principal
from pql.server.spec import json_ok, operation
from pql.server.tokens import TokenStore
from pql.signing import KeyRing

__all__ = [
    "DEFAULT_MAX_BODY",
    "DOCUMENTED_ADAPTERS",
    "Server",
    "create_app",
    "openapi_committed",
    "openapi_without_adapters",
]

DEFAULT_MAX_BODY: Final = 1024 * 1024
"""The largest request body read, in bytes (``pql serve --max-body-bytes``)."""

DOCUMENTED_ADAPTERS: Final = ("tenancy", "incidents")
"""The package's own adapters whose routes ``docs/api/openapi.json`` describes with the built-in
ones (loaded by name through their entry points: the core imports no adapter)."""


class Server:
    """What the routes share: the engine, the keys, readiness and per-tenant admission shares."""

    def __init__(
        self,
        engine: Engine,
        *,
        keys: Path | None = None,
        tenant_share: TenantLimits | None = None,
        saved: SavedStore | None = None,
    ) -> None:
        self.engine = engine
        self.saved = saved if saved is not None else engine.saved_store
        self.keys = keys
        self.tenant_share = tenant_share
        self._shared: set[str] = set()
        self._lock = threading.Lock()

    def preload(self) -> None:
        """Start loading every tenant's index in the background (an engine with indexes)."""
        self.engine.preload("all")

    def ready(self) -> bool:
        """Whether the engine's preloaded indexes are in memory (``GET /readyz``)."""
        return self.engine.ready()

    def share(self, tenant: str) -> None:
        """Give ``tenant`` its own admission share on its first query (``--tenant-max-*``)."""
        if self.tenant_share is None or tenant in self._shared:
            return
        with self._lock:
            if tenant not in self._shared:
                self.engine.set_tenant_limits(tenant, self.tenant_share)
                self._shared.add(tenant)

    def keyring(self) -> KeyRing:
        """The trusted keys, read on every saved run so that a revocation applies at once."""
        return KeyRing.from_dir(self.keys) if self.keys is not None else KeyRing()


# ---------------------------------------------------------------------------------------------
# request bodies

_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "query": (str,),
    "now": (str, type(None)),
    "params": (dict,),
    "format": (str,),
    "cache": (bool,),
    "analyze": (bool,),
}


async def _body(
    request: Request, fields: tuple[str, ...], required: tuple[str, ...]
) -> dict[str, Any]:
    """The JSON object of the body, with only ``fields`` (typed) and every ``required`` one."""
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise InputError(
            "PQL-E301",
            "the request body is not valid JSON",
            hints=('send a JSON object, e.g. {"query": "FIND receipts SINCE 1d"}',),
        ) from None
    if not isinstance(body, dict):
        raise InputError("PQL-E301", "the request body must be a JSON object")
    for name, value in body.items():
        if name not in fields:
            hint = (
                "the tenant comes from the bearer token, never from the request"
                if name == "tenant"
                else f"the fields are {', '.join(fields)}"
            )
            raise InputError("PQL-E302", f"unknown field {name!r} in the body", hints=(hint,))
        if not isinstance(value, _TYPES[name]) or (
            name != "cache" and name != "analyze" and isinstance(value, bool)
        ):
            raise InputError("PQL-E302", f"the field {name!r} has the wrong type")
    if body.get("format", "json") not in ("json", "csv"):
        raise InputError("PQL-E302", "format must be 'json' or 'csv'")
    missing = [name for name in required if name not in body]
    if missing:
        raise InputError("PQL-E303", f"the body lacks the field {missing[0]!r}")
    return body


def _answer(result: Result, fmt: str) -> Response:
    """The response of an answer; called on the worker thread that ran the query, so that
    encoding it (JSON or CSV) never holds up the event loop."""
    if fmt == "csv":
        return Response(
            isoformat(result.df).write_csv(),
            media_type="text/csv",
            headers={"X-PQL-Truncated": "true" if result.truncated else "false"},
        )
    return Response(result.to_json(), media_type="application/json")


def _query_answer(engine: Engine, fmt: str, text: str, **kwargs: Any) -> Response:
    """Run a query and encode its answer, in one trip to a worker thread."""
    return _answer(engine.query(text, **kwargs), fmt)


_RESULT_OK: Final = {
    "description": "the answer: JSON (the contract's shape) or CSV",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/Result"}},
        "text/csv": {"schema": {"type": "string"}},
    },
}


# ---------------------------------------------------------------------------------------------
# routes


def _routes(server: Server) -> list[BaseRoute]:
    engine = server.engine

    @operation(
        "Execute PQL v1.1 (safe subset) for the token's tenant",
        ok=_RESULT_OK,
        body="QueryRequest",
        errors=(400, 403, 422, 429, 504),
    )
    async def run_query(request: Request) -> Response:
        who = principal(request, "query")
        body = await _body(request, ("query", "now", "params", "format", "cache"), ("query",))
        server.share(who.tenant)
        return await run_in_threadpool(
            _query_answer,
            engine,
            body.get("format", "json"),
            body["query"],
            tenant=who.tenant,
            now=body.get("now"),
            params=body.get("params"),
            cache=body.get("cache", True),
        )

    @operation(
        "The plan a query would run, its estimates and the rules applied",
        ok=json_ok("the explanation: text and the plan as data", "Explanation"),
        body="ExplainRequest",
        errors=(400, 403, 422, 429, 504),
    )
    async def explain(request: Request) -> Response:
        who = principal(request, "query")
        body = await _body(request, ("query", "now", "params", "analyze"), ("query",))
        server.share(who.tenant)
        explained = await run_in_threadpool(
            engine.explain,
            body["query"],
            tenant=who.tenant,
            now=body.get("now"),
            params=body.get("params"),
            analyze=body.get("analyze", False),
        )
        return JSONResponse({"text": str(explained), "plan": explained.to_dict()})

    @operation(
        "The names of the tenant's saved queries",
        ok=json_ok("the names, sorted", "SavedList"),
        errors=(403,),
    )
    async def list_saved(request: Request) -> Response:
        who = principal(request, "saved")
        names = await run_in_threadpool(server.saved.names, who.tenant)
        return JSONResponse({"names": names})

    @operation(
        "Verify and run a signed saved query of the token's tenant",
        ok=_RESULT_OK,
        body="SavedRunRequest",
        errors=(400, 403, 404, 422, 429, 504),
        path_params=("name",),
    )
    async def run_saved(request: Request) -> Response:
        who = principal(request, "saved")
        body = await _body(request, ("now", "params", "format"), ())
        server.share(who.tenant)
        name = request.path_params["name"]
        return await run_in_threadpool(
            _run_saved,
            server,
            name,
            who.tenant,
            body.get("params"),
            body.get("now"),
            body.get("format", "json"),
        )

    @operation("The process is up", ok=json_ok("up", {"type": "object"}), auth=False)
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @operation(
        "Ready: every tenant's index is in memory",
        ok=json_ok("ready", {"type": "object"}),
        auth=False,
    )
    async def readyz(request: Request) -> Response:
        ready = server.ready()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    readyz.openapi["responses"]["503"] = json_ok("not ready yet", {"type": "object"})  # type: ignore[attr-defined]

    @operation(
        "Prometheus metrics of the engine and the server",
        ok={
            "description": "text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        auth=False,
    )
    async def metrics(request: Request) -> Response:
        payload, content_type = observe.exposition()
        return Response(payload, headers={"Content-Type": content_type})

    @operation(
        "This server's OpenAPI document (with its adapters' routes)",
        ok=json_ok("OpenAPI 3.1", {"type": "object"}),
        auth=False,
    )
    async def openapi(request: Request) -> Response:
        return JSONResponse(spec.document(request.app.routes, __version__))

    return [
        Route("/api/pql", run_query, methods=["POST"]),
        Route("/api/explain", explain, methods=["POST"]),
        Route("/api/saved", list_saved, methods=["GET"]),
        Route("/api/saved/{name}:run", run_saved, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]


def _run_saved(
    server: Server,
    name: str,
    tenant: str,
    params: dict[str, Any] | None,
    now: str | None,
    fmt: str,
) -> Response:
    """A saved run, as the engine does it: the signature judged on the engine's own clock, the
    caller's ``now`` moving only the window; the answer encoded on the same worker thread."""
    result = server.engine.run_saved(
        name, tenant=tenant, keyring=server.keyring(), params=params, now=now, store=server.saved
    )
    return _answer(result, fmt)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405 as pql errors (every other status is ours already)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        err = InputError("PQL-E306", f"{request.url.path} does not take {request.method}", hints=())
    else:
        err = InputError(
            "PQL-E305", f"no route {request.url.path}", hints=("see /openapi.json for the routes",)
        )
    response = error_response(err, request.scope)
    response.headers.update(exc.headers or {})
    return response


def create_app(
    engine: Engine,
    tokens: TokenStore,
    *,
    keys: Path | None = None,
    saved: SavedStore | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    tenant_share: TenantLimits | None = None,
    plugins: Mapping[str, object] | None = None,
    threads: int | None = None,
) -> Starlette:
    """The app over ``engine``: built-in routes (saved queries from ``saved``, default: the store
    beside the engine's data), then the adapters' (``plugins=None``: the engine's loaded
    adapters; a mapping name -> object: exactly those). ``threads`` sizes the worker pool
    (default: enough for every query the engine admits to run or wait, so admission, not the
    pool, queues)."""
    server = Server(engine, keys=keys, tenant_share=tenant_share, saved=saved)
    routes = _routes(server)
    routes += adapter_routes(engine, routes, plugins)
    workers = threads or engine.limits.max_concurrent + engine.limits.max_queued + 8

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = workers
        server.preload()
        yield

    app = Starlette(
        routes=routes,
        middleware=[Middleware(Edge, tokens=tokens, max_body_bytes=max_body_bytes)],
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.server = server
    return app


def openapi_without_adapters() -> dict[str, Any]:
    """The OpenAPI document of the built-in routes alone."""
    server = Server(Engine.in_memory(adapters=()))
    return spec.document(_routes(server), __version__)


def openapi_committed() -> dict[str, Any]:
    """The OpenAPI document of ``docs/api/openapi.json``: the built-in routes and those of the
    adapters in :data:`DOCUMENTED_ADAPTERS` (what ``pql serve`` answers with only those
    loaded)."""
    engine = Engine.in_memory(adapters=DOCUMENTED_ADAPTERS)
    routes = _routes(Server(engine))
    routes += adapter_routes(engine, routes)
    return spec.document(routes, __version__)
