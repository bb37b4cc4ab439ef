"""The edge of every request: request id, body limit, bearer token, access log, last-resort 500.

One pure ASGI middleware, outside the routes (adapter routes included), so that nothing under
``/api/`` runs without a valid token, no body larger than the limit is read whole, every response
carries ``X-Request-Id``, every request is logged as one JSON line, and an unexpected exception
becomes a JSON ``500`` with code ``PQL-X300`` (its traceback goes to the log, never the client).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pql.errors import AuthError, InputError, InternalError, PQLError
from pql.server import observe
from pql.server.errors import RETRY_AFTER_S, error_body, status_of
from pql.server.tokens import Principal, TokenStore

__all__ = ["Edge", "error_response", "principal"]

ACCESS_LOG = logging.getLogger("pql.server.access")
"""One JSON object per request (see ``docs/api/README.md``)."""
ERROR_LOG = logging.getLogger("pql.server")
"""Unexpected exceptions, with their traceback and request id."""


def error_response(exc: PQLError, scope: Mapping[str, Any]) -> Response:
    """The JSON answer for ``exc``; notes its code for the access log."""
    state = scope.get("state", {})
    request_id = str(state.get("request_id", "-"))
    state["error_code"] = exc.code
    status = status_of(exc)
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="pql"'
    if status == 429:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    return Response(
        error_body(exc, request_id),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def principal(request: Request, scope: str) -> Principal:
    """Who the request acts for, if its token has ``scope`` (else ``PQL-A102``, 403).

    Routes (adapters' too) call this first; the tenant they act for is ``principal.tenant``,
    which comes from the token and nothing else.
    """
    who = request.scope.get("state", {}).get("principal")
    if not isinstance(who, Principal):
        raise _no_token()
    if scope not in who.scopes:
        raise AuthError(
            "PQL-A102",
            f"this token does not allow {scope!r}",
            hints=(f"create a token with --scope {scope}",),
            details={"needs": scope},
        )
    return who


class _BodyTooLarge(Exception):
    """Raised from ``receive`` when the body grows past the limit."""


class Edge:
    """The ASGI middleware around the whole app (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, tokens: TokenStore, max_body_bytes: int) -> None:
        self.app = app
        self.tokens = tokens
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id = uuid.uuid4().hex
        sent = {"status": 0, "bytes": 0}

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            await send(message)

        read = 0

        async def receive_capped() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        try:
            self._admit(scope)
            await self.app(scope, receive_capped, send_marked)
        except _BodyTooLarge:
            await self._fail(self._too_large(), scope, receive, send_marked, sent)
        except PQLError as exc:
            await self._fail(exc, scope, receive, send_marked, sent)
        except Exception:
            ERROR_LOG.exception("unexpected error (request id %s)", request_id)
            crash = InternalError("PQL-X300", "unexpected error in the server")
            await self._fail(crash, scope, receive, send_marked, sent)
        finally:
            self._log(scope, state, sent, started)

    def _admit(self, scope: Scope) -> None:
        """Refuse before routing: a declared body over the limit; ``/api/`` without a token."""
        headers = dict(scope.get("headers", []))
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            raise self._too_large()
        if not scope["path"].startswith("/api/"):
            return
        auth = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _no_token()
        try:
            who = self.tokens.authenticate(token.strip())
        except PQLError as exc:
            ERROR_LOG.error("the token store cannot be read: %s", exc.message)
            raise InternalError("PQL-X301", "the token store cannot be read") from None
        if who is None:
            raise AuthError(
                "PQL-A101",
                "the bearer token is not valid (unknown, malformed or revoked)",
                hints=("ask for a token made with `pql tokens create`",),
            )
        scope["state"]["principal"] = who

    def _too_large(self) -> InputError:
        return InputError(
            "PQL-E304",
            f"the request body is larger than {self.max_body_bytes:,} bytes",
            hints=("send a smaller body; the limit is `pql serve --max-body-bytes`",),
            setting="--max-body-bytes",
            details={"max_body_bytes": self.max_body_bytes},
        )

    async def _fail(
        self, exc: PQLError, scope: Scope, receive: Receive, send: Send, sent: dict[str, int]
    ) -> None:
        if sent["status"]:  # the answer had begun: nothing more can be said to the client
            ERROR_LOG.error("error after the response started: %s", exc)
            return
        await error_response(exc, scope)(scope, receive, send)

    def _log(
        self, scope: Scope, state: Mapping[str, Any], sent: Mapping[str, int], started: float
    ) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        observe.request(scope["method"], template, sent["status"], elapsed_ms)
        who = state.get("principal")
        line = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "request_id": state.get("request_id"),
            "method": scope["method"],
            "path": scope["path"],
            "route": template,
            "status": sent["status"],
            "ms": round(elapsed_ms, 3),
            "bytes": sent["bytes"],
            "tenant": who.tenant if isinstance(who, Principal) else None,
            "token": who.token_id if isinstance(who, Principal) else None,
            "error": state.get("error_code"),
            "client": (scope.get("client") or ("-",))[0],
        }
        ACCESS_LOG.info(json.dumps(line))


def _no_token() -> AuthError:
    return AuthError(
        "PQL-A100",
        "this route needs a bearer token",
        hints=("send the header Authorization: Bearer <token> (see `pql tokens create`)",),
    )
