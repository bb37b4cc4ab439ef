"""Errors as HTTP answers: the library's code, message, hints and span as JSON, and a status.

The body of every error is ``{"error": {...}, "request_id": "..."}`` where ``error`` is
:meth:`pql.PQLError.to_dict` (``code``, ``kind``, ``message``, ``line``/``column``/``token`` when
the error has a span, ``hints``, ``setting``, ``details``). Internal errors keep their code but
not their message, which may quote Python internals: the message says to quote the request id,
and the server's log has the rest. No response carries a stack trace.
"""

from __future__ import annotations

import json
from typing import Final

from pql.errors import (
    AuthError,
    InputError,
    InternalError,
    PQLError,
    QueryError,
    SafetyError,
)

__all__ = ["RETRY_AFTER_S", "error_body", "register_status", "status_of"]

RETRY_AFTER_S: Final = 1
"""The ``Retry-After`` (seconds) of a 429: a query slot usually frees within one deadline."""

_BY_CODE: dict[str, int] = {
    "PQL-E304": 413,  # the body is larger than the server accepts
    "PQL-E305": 404,  # no such route
    "PQL-E306": 405,  # the route does not take this method
    "PQL-S006": 504,  # past the deadline
    "PQL-S007": 429,  # the admission queue is full
    "PQL-A100": 401,  # no bearer token
    "PQL-A101": 401,  # a token that is not valid
    "PQL-A102": 403,  # the token lacks the scope
    "PQL-A011": 404,  # no saved query of that name for the tenant
    "PQL-A007": 400,  # a saved query's parameter of the wrong type
    "PQL-A008": 400,  # a saved query's parameter missing
    "PQL-A014": 400,  # a parameter the saved query does not declare
}


def register_status(code: str, status: int) -> None:
    """Answer errors of ``code`` with ``status`` (adapters use it, e.g. 409 for a conflict)."""
    if not 400 <= status <= 599:
        raise ValueError(f"an error status must be 4xx or 5xx, not {status}")
    _BY_CODE[code] = status


def status_of(exc: PQLError) -> int:
    """The HTTP status of an error: by its code if registered, else by its kind."""
    status = _BY_CODE.get(exc.code)
    if status is not None:
        return status
    if isinstance(exc, (QueryError, InputError)):
        return 400
    if isinstance(exc, SafetyError):
        return 422
    if isinstance(exc, AuthError):
        return 403
    return 500


def error_body(exc: PQLError, request_id: str) -> bytes:
    """The JSON body of an error answer."""
    if isinstance(exc, InternalError) or not exc.code.startswith(("PQL-E", "PQL-S", "PQL-A")):
        detail = {
            "code": exc.code,
            "kind": InternalError.kind,
            "message": f"internal error; the server's log has it under request id {request_id}",
            "hints": ["this is a bug in pql; please report it with the request id"],
        }
    else:
        detail = exc.to_dict()
    return json.dumps({"error": detail, "request_id": request_id}, ensure_ascii=False).encode()
