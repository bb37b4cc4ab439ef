"""Bearer tokens for the HTTP server: each bound to one tenant and a set of scopes.

A token is ``pql_<id>_<secret>``: the ``id`` (12 hex digits) names it in listings and logs, the
secret (32 random bytes) is what proves it. Only the SHA-256 digest of the whole token is stored,
in ``DATA/_pql/tokens.json`` (mode 0600); the token itself is shown once, when it is created.
Checking a token costs one digest and one constant-time comparison (:func:`hmac.compare_digest`),
and an unknown id is compared against a dummy digest so that it takes as long as a known one.

The server rereads the file when it changes, so ``pql tokens revoke`` takes effect on the next
request without a restart.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from pql.errors import AuthError, InputError
from pql.plan.safety import check_tenant_name

__all__ = ["SCOPES", "Principal", "TokenRecord", "TokenStore"]

SCOPES: Final = ("query", "saved", "admin", "incidents:read")
"""What a token may be allowed: free-form queries and explain (``query``), signed saved queries
(``saved``), the tenant's administration routes (``admin``) and reading incidents
(``incidents:read``)."""

FORMAT: Final = "pql-tokens/1"
_TOKEN_RE: Final = re.compile(r"pql_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_DUMMY_DIGEST: Final = hashlib.sha256(b"pql: no such token").hexdigest()
_MAX_LABEL: Final = 200


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: the token's id, its tenant and its scopes."""

    token_id: str
    tenant: str
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """What the store keeps of one token: never the token, only its digest."""

    id: str
    tenant: str
    scopes: tuple[str, ...]
    sha256: str
    created_at: str
    label: str = ""
    revoked_at: str | None = None

    @property
    def status(self) -> str:
        return "revoked" if self.revoked_at else "active"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "scopes": list(self.scopes),
            "sha256": self.sha256,
            "created_at": self.created_at,
            "label": self.label,
            "revoked_at": self.revoked_at,
        }

    @classmethod
    def from_json(cls, raw: Any) -> TokenRecord:
        if not isinstance(raw, dict):
            raise ValueError("a token entry is not an object")
        scopes = raw["scopes"]
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ValueError("scopes must be a list of strings")
        revoked = raw.get("revoked_at")
        return cls(
            id=str(raw["id"]),
            tenant=str(raw["tenant"]),
            scopes=tuple(scopes),
            sha256=str(raw["sha256"]),
            created_at=str(raw["created_at"]),
            label=str(raw.get("label", "")),
            revoked_at=None if revoked is None else str(revoked),
        )


def digest(token: str) -> str:
    """The stored form of a token: the hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_scopes(scopes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``scopes`` without repeats, in :data:`SCOPES` order; an unknown one is ``PQL-E308``."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise InputError(
            "PQL-E308",
            f"unknown token scope {', '.join(map(repr, unknown))}",
            hints=(f"scopes are {', '.join(SCOPES)}",),
        )
    if not scopes:
        raise InputError(
            "PQL-E308", "a token needs at least one scope", hints=("e.g. --scope query",)
        )
    return tuple(s for s in SCOPES if s in scopes)


class TokenStore:
    """The tokens of one data directory, in ``DATA/_pql/tokens.json``.

    >>> import tempfile
    >>> store = TokenStore(Path(tempfile.mkdtemp()) / "tokens.json")
    >>> record, token = store.create("acme", ["query"])
    >>> store.authenticate(token).tenant
    'acme'
    """

    RELATIVE_PATH: Final = Path("_pql") / "tokens.json"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._records: dict[str, TokenRecord] = {}

    @classmethod
    def in_data_dir(cls, data: str | Path) -> TokenStore:
        return cls(Path(data) / cls.RELATIVE_PATH)

    # reading ------------------------------------------------------------------------------
    def records(self) -> list[TokenRecord]:
        """Every token record, oldest first."""
        return list(self._current().values())

    def authenticate(self, token: str) -> Principal | None:
        """The principal of ``token``, or ``None`` if it is unknown, malformed or revoked."""
        match = _TOKEN_RE.fullmatch(token)
        record = self._current().get(match[1]) if match else None
        expected = record.sha256 if record is not None else _DUMMY_DIGEST
        same = hmac.compare_digest(digest(token), expected)
        if record is None or not same or record.revoked_at is not None:
            return None
        return Principal(record.id, record.tenant, frozenset(record.scopes))

    def _current(self) -> dict[str, TokenRecord]:
        """The records, reread when the file changed since the last look."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {}
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if signature != self._seen:
                self._records = self._read()
                self._seen = signature
            return self._records

    def _read(self) -> dict[str, TokenRecord]:
        try:
            raw = json.loads(self.path.read_bytes())
            if not isinstance(raw, dict) or raw.get("format") != FORMAT:
                raise ValueError(f"the format is not {FORMAT!r}")
            entries = [TokenRecord.from_json(item) for item in raw["tokens"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(
                "PQL-E310",
                f"the token store {str(self.path)!r} cannot be read: {exc}",
                hints=("restore the file, or move it away and create new tokens",),
            ) from None
        return {record.id: record for record in entries}

    # writing ------------------------------------------------------------------------------
    def create(
        self, tenant: str, scopes: list[str] | tuple[str, ...], label: str = ""
    ) -> tuple[TokenRecord, str]:
        """A new token for ``tenant`` with ``scopes``: its record and the token (shown once)."""
        tenant = check_tenant_name(tenant)
        allowed = check_scopes(scopes)
        if len(label) > _MAX_LABEL or not label.isprintable():
            raise InputError(
                "PQL-E308", f"a token label must be printable and at most {_MAX_LABEL} characters"
            )
        with self._writing() as records:
            token_id = secrets.token_hex(6)
            while token_id in records:  # pragma: no cover - 48 random bits
                token_id = secrets.token_hex(6)
            token = f"pql_{token_id}_{secrets.token_urlsafe(32)}"
            record = TokenRecord(token_id, tenant, allowed, digest(token), _now(), label)
            records[token_id] = record
        return record, token

    def revoke(self, token_id: str) -> TokenRecord:
        """Revoke a token by its id; the server refuses it from its next request on."""
        with self._writing() as records:
            record = records.get(token_id)
            if record is None:
                raise AuthError(
                    "PQL-A103",
                    f"no token has the id {token_id!r}",
                    hints=("list the tokens with `pql tokens list --data DIR`",),
                )
            if record.revoked_at is None:
                record = replace(record, revoked_at=_now())
                records[token_id] = record
        return record

    @contextlib.contextmanager
    def _writing(self) -> Iterator[dict[str, TokenRecord]]:
        """The records to change, written back atomically under an exclusive file lock."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.path.with_name(".tokens.lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            records = self._read() if self.path.exists() else {}
            yield records
            payload = {"format": FORMAT, "tokens": [r.to_json() for r in records.values()]}
            temp = self.path.with_name(f".tokens.{secrets.token_hex(8)}.tmp")
            fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(payload, handle, indent=1)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        finally:
            os.close(lock)


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
