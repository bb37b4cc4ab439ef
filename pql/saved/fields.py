"""What each field of a saved-query document may hold, and reading a document's JSON exactly.

Reading is strict: the exact set of fields, each of its JSON type and shape, no duplicate keys,
no control characters, at most :data:`MAX_DOCUMENT` bytes; anything else is a
:class:`~pql.saved.errors.MalformedDocumentError`.
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import datetime
from typing import Any, Final

from pql.parser import MAX_TEXT
from pql.plan.safety import TENANT_RE
from pql.saved.errors import MalformedDocumentError
from pql.saved.params import ParamType, shown
from pql.signing import KID_RE, parse_time

__all__ = ["FIELDS", "FORMAT", "MAX_AUTHOR", "MAX_DOCUMENT", "NAME_RE", "bad_chars", "read_fields"]

FORMAT: Final = "pql-saved-query/1"
"""The ``format`` field of every saved-query document this version writes and reads."""

NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""What a saved query's name looks like."""

_PARAM_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")
MAX_DOCUMENT: Final = 256 * 1024
"""The largest saved-query document read, in bytes."""
MAX_AUTHOR: Final = 200
FIELDS: Final = (
    "format", "name", "tenant", "author", "params", "text", "query", "kid",
    "issued_at", "not_before", "expires_at", "text_sha256", "signature",
)  # fmt: skip


def bad_chars(text: str, *, strict: bool) -> list[str]:
    """Characters a signed field may not hold: controls (but tab/newline/CR) and surrogates.

    ``strict`` (at signing) also refuses invisible format characters such as bidi overrides,
    which could make a reviewer read something other than what runs.
    """
    refused = {"Cc", "Cs", "Cf"} if strict else {"Cc", "Cs"}
    return sorted(
        {f"U+{ord(ch):04X}" for ch in text
         if ch not in "\t\n\r" and unicodedata.category(ch) in refused}
    )  # fmt: skip


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate keys {sorted({k for k in keys if keys.count(k) > 1})}")
    return dict(pairs)


def _load_object(raw: str | bytes) -> dict[str, Any]:
    if len(raw) > MAX_DOCUMENT:
        raise MalformedDocumentError(f"the document is larger than {MAX_DOCUMENT:,} bytes")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        value = json.loads(text, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        raise MalformedDocumentError(f"the document is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise MalformedDocumentError("the document must be a JSON object")
    return value


def read_fields(raw: str | bytes) -> dict[str, Any]:
    """The checked fields of a document's JSON, as :class:`~pql.saved.document.SavedQuery`
    takes them; anything but a well-formed document is a :class:`MalformedDocumentError`."""
    return _Reader(_load_object(raw)).fields()


class _Reader:
    """Field-by-field checks of a document object, each failure a MalformedDocumentError."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj

    def fields(self) -> dict[str, Any]:
        fields = set(self.obj)
        if fields != set(FIELDS):
            missing, extra = sorted(set(FIELDS) - fields), sorted(fields - set(FIELDS))
            raise MalformedDocumentError(f"fields missing {missing}, unknown {extra}")
        if self.obj["format"] != FORMAT:
            raise MalformedDocumentError(
                f"unknown format {self.obj['format']!r}; expected {FORMAT!r}"
            )
        return {
            "name": self.text("name", NAME_RE),
            "tenant": self.text("tenant", TENANT_RE),
            "text": self.text("text", max_len=MAX_TEXT),
            "query": self.text("query", max_len=MAX_TEXT * 4),
            "params": self.params(),
            "author": self.text("author", max_len=MAX_AUTHOR),
            "kid": self.text("kid", KID_RE),
            "issued_at": self.time("issued_at"),
            "not_before": self.time("not_before"),
            "expires_at": None if self.obj["expires_at"] is None else self.time("expires_at"),
            "text_sha256": self.text("text_sha256", _SHA256_RE),
            "signature": self.text("signature", max_len=200),
        }

    def text(self, key: str, pattern: re.Pattern[str] | None = None, max_len: int = 1000) -> str:
        value = self.obj[key]
        if not isinstance(value, str) or not value or len(value) > max_len:
            raise MalformedDocumentError(f"{key} must be text of 1-{max_len:,} characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise MalformedDocumentError(f"{key} {value[:80]!r} is not well-formed")
        if bad_chars(value, strict=False):
            raise MalformedDocumentError(f"{key} holds control characters")
        return value

    def time(self, key: str) -> datetime:
        try:
            return parse_time(self.obj[key])
        except ValueError as exc:
            raise MalformedDocumentError(f"{key}: {exc}") from None

    def params(self) -> dict[str, ParamType]:
        raw = self.obj["params"]
        if not isinstance(raw, dict):
            raise MalformedDocumentError("params must map parameter names to types")
        out: dict[str, ParamType] = {}
        for name, type_name in raw.items():
            if (
                not _PARAM_RE.fullmatch(name)
                or not isinstance(type_name, str)
                or type_name not in {t.value for t in ParamType}
            ):
                raise MalformedDocumentError(
                    f"params: {name[:80]!r}: {shown(type_name)} is not a declaration"
                )
            out[name] = ParamType(type_name)
        if list(out) != sorted(out):
            raise MalformedDocumentError("params must be sorted by name")
        return out
