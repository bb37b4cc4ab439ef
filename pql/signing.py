"""Keys, the canonical form of a saved query, and Ed25519 signatures over it.

Signing sits beside the query pipeline, not inside it: :mod:`pql.saved` uses this module to
decide whether a saved query may run, then hands its canonical text to the engine like any other
query.

* :class:`SigningKey` is a private key with its key id (``kid``). Only signers hold one; the
  engine never stores or reads private keys.
* :class:`TrustedKey` is a public key the engine trusts, with an optional validity window and a
  revocation flag; a :class:`KeyRing` holds them by key id (see :meth:`KeyRing.from_dir` for the
  files a key directory holds).
* :func:`canonical_query` prints a parsed query in its canonical text, so whitespace, comments
  and keyword case do not matter while every literal and name does; :func:`canonical_form` is the
  exact byte string a saved query's signature covers.

Every failure is a :class:`SignedQueryError` (an :class:`~pql.errors.AuthError`, exit 4) with a
stable ``PQL-A…`` code; the codes are listed in ``docs/pql/SAVED_QUERIES.md``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Final, TypeAlias

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pql.ast import to_text
from pql.errors import AuthError, InputError
from pql.parser import parse

__all__ = [
    "CANONICAL_PREFIX",
    "KID_RE",
    "BadSignatureError",
    "ExpiredError",
    "KeyFileError",
    "KeyRing",
    "NotYetValidError",
    "RevokedKeyError",
    "SignedQueryError",
    "SigningKey",
    "TrustedKey",
    "UnknownKeyError",
    "canonical_form",
    "canonical_query",
    "encode_payload",
    "format_time",
    "new_kid",
    "parse_time",
    "to_utc",
    "write_sidecar",
]

Json: TypeAlias = str | int | bool | Mapping[str, "Json"] | None
"""The values a signed document's fields take."""

CANONICAL_PREFIX: Final = b"pql-saved-query/1\n"
"""Domain separation: a signature over a saved query can never be mistaken for another use."""

KID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""What a key id looks like; it is also the stem of the key's files."""

_TIME_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_SIGNATURE_BYTES: Final = 64
_SIDECAR_KEYS: Final = frozenset({"not_before", "not_after", "revoked", "reason"})


# ---------------------------------------------------------------------------------------------
# Errors


class SignedQueryError(AuthError):
    """Base of every signature and saved-query failure (exit 4).

    Subclasses fix the stable ``CODE`` and a default ``HINT``; the message says what failed.
    """

    CODE: ClassVar[str] = "PQL-A000"
    HINT: ClassVar[str] = "see docs/pql/SAVED_QUERIES.md"

    def __init__(
        self,
        message: str,
        *,
        hints: tuple[str, ...] | list[str] = (),
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(self.CODE, message, hints=tuple(hints) or (self.HINT,), details=details)


class BadSignatureError(SignedQueryError):
    """The signature does not match the document: something signed was changed (A001)."""

    CODE = "PQL-A001"
    HINT = "a signed saved query cannot be edited; sign it again with `pql saved sign`"


class UnknownKeyError(SignedQueryError):
    """The document names a key id the key ring does not hold (A002)."""

    CODE = "PQL-A002"
    HINT = "add the signer's KID.pub to the key directory, or sign with a trusted key"


class RevokedKeyError(SignedQueryError):
    """The signing key was revoked: nothing it signed runs any more (A003)."""

    CODE = "PQL-A003"
    HINT = "sign the query again with a key that is not revoked"


class ExpiredError(SignedQueryError):
    """The saved query, or the key that signed it, is past its end of validity (A004)."""

    CODE = "PQL-A004"
    HINT = "sign the query again"


class NotYetValidError(SignedQueryError):
    """The saved query, or the key that signed it, is not valid yet (A005)."""

    CODE = "PQL-A005"
    HINT = "wait until it becomes valid, or check the clock (--now)"


class KeyFileError(SignedQueryError):
    """A key file or key directory cannot be used (A015)."""

    CODE = "PQL-A015"
    HINT = "keys are Ed25519 PEM files written by `pql keys generate`"


# ---------------------------------------------------------------------------------------------
# Time


def format_time(value: datetime) -> str:
    """The one spelling of a time inside a signed document: UTC, whole seconds, ``Z``.

    >>> format_time(datetime(2026, 3, 2, 10, 0, 5, 999, tzinfo=UTC))
    '2026-03-02T10:00:05Z'
    """
    t = value.astimezone(UTC)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}Z"


def parse_time(text: str) -> datetime:
    """Read a time written by :func:`format_time`; anything else raises ``ValueError``.

    >>> parse_time("2026-03-02T10:00:05Z").isoformat()
    '2026-03-02T10:00:05+00:00'
    """
    if not isinstance(text, str) or not _TIME_RE.fullmatch(text):
        raise ValueError(f"{text!r} is not a time like 2026-03-02T10:00:00Z")
    value = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    if format_time(value) != text:  # pragma: no cover - the pattern already pins the shape
        raise ValueError(f"{text!r} is not in canonical form")
    return value


def to_utc(value: datetime | str | None, *, what: str = "time") -> datetime:
    """A caller's time as an aware UTC datetime, truncated to whole seconds.

    ``None`` is the wall clock; a string is ISO-8601 (naive means UTC).

    >>> to_utc("2026-03-02T11:00:00+01:00").isoformat()
    '2026-03-02T10:00:00+00:00'
    """
    if value is None:
        moment = datetime.now(UTC)
    elif isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InputError(
                "PQL-E094",
                f"{what} {value!r} is not an ISO-8601 time",
                hints=("write e.g. 2026-03-02T10:00:00Z",),
            ) from None
    else:
        raise InputError("PQL-E094", f"{what} must be a datetime or ISO-8601 text, not {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC).replace(microsecond=0)
    except OverflowError:
        raise InputError(
            "PQL-E094",
            f"{what} {value!r} is out of range: in UTC it falls outside the years 1-9999",
            hints=("write a time between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z",),
        ) from None


# ---------------------------------------------------------------------------------------------
# The canonical form


def canonical_query(text: str) -> str:
    """The canonical text of a query: parsed, then printed by :func:`pql.ast.to_text`.

    Whitespace, comments and the case of keywords disappear; names, literals and parameters
    stay exactly as they are.

    >>> canonical_query("find receipts\\n  where status = 'error'  since 7d -- recent")
    'FIND receipts WHERE status = "error" SINCE 7d'
    """
    return to_text(parse(text))


def encode_payload(fields: Mapping[str, Json]) -> bytes:
    """The bytes a signature covers: a fixed prefix, then compact sorted-key JSON in UTF-8.

    >>> encode_payload({"b": "2", "a": None})
    b'pql-saved-query/1\\n{"a":null,"b":"2"}'
    """
    body = json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return CANONICAL_PREFIX + body.encode("utf-8")


def canonical_form(text: str, metadata: Mapping[str, Json]) -> bytes:
    """The canonical form of a saved query: ``metadata`` plus the canonical ``query`` of ``text``.

    >>> a = canonical_form("FIND receipts SINCE 7d", {"name": "recent"})
    >>> a == canonical_form("find   RECEIPTS since 7d", {"name": "recent"})  # a name changed
    False
    >>> a == canonical_form("Find receipts\\nSince 7d", {"name": "recent"})
    True
    """
    if "query" in metadata:
        raise ValueError("metadata must not hold 'query': it is derived from the text")
    return encode_payload({**metadata, "query": canonical_query(text)})


# ---------------------------------------------------------------------------------------------
# Keys


def new_kid(now: datetime | None = None) -> str:
    """A fresh key id: the UTC date and six random hex digits, e.g. ``20260302-1f0a9c``."""
    day = to_utc(now).strftime("%Y%m%d")
    return f"{day}-{secrets.token_hex(3)}"


def _check_kid(kid: object) -> str:
    if not isinstance(kid, str) or not KID_RE.fullmatch(kid):
        raise KeyFileError(
            f"{kid!r} is not a valid key id",
            hints=("a key id is 1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-'",),
        )
    return kid


def _aware(value: datetime | None, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise KeyFileError(f"{what} must be a datetime, not {value!r}")
    return to_utc(value)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private Ed25519 key and its key id. Held by signers, never by the engine.

    >>> key = SigningKey.generate("demo-1")
    >>> signature = key.sign(b"payload")
    >>> key.trusted().verify(b"payload", signature) is None
    True
    """

    kid: str
    private_key: Ed25519PrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        _check_kid(self.kid)

    @classmethod
    def generate(cls, kid: str | None = None) -> SigningKey:
        """A new random key (key id from :func:`new_kid` unless given)."""
        return cls(kid if kid is not None else new_kid(), Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, kid: str, pem: bytes | str) -> SigningKey:
        """A key from unencrypted PKCS#8 PEM text."""
        data = pem.encode("utf-8") if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise KeyFileError(
                f"key {kid!r} is not an unencrypted PEM private key ({exc})"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"key {kid!r} is a {type(key).__name__}, not an Ed25519 key")
        return cls(kid, key)

    @classmethod
    def from_file(cls, path: str | Path, kid: str | None = None) -> SigningKey:
        """Read ``ID.key``; the key id is the file's stem unless ``kid`` is given."""
        source = Path(path)
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise KeyFileError(
                f"cannot read the private key {str(source)!r}: {exc.strerror}"
            ) from None
        return cls.from_pem(kid if kid is not None else source.stem, data)

    def sign(self, payload: bytes) -> str:
        """The signature of ``payload``, as canonical base64."""
        return base64.b64encode(self.private_key.sign(payload)).decode("ascii")

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (keep it secret)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_pem(self) -> bytes:
        """The public key as SubjectPublicKeyInfo PEM: the ``ID.pub`` file."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def trusted(
        self, *, not_before: datetime | None = None, not_after: datetime | None = None
    ) -> TrustedKey:
        """The public half, as a key ring entry."""
        return TrustedKey(self.kid, self.private_key.public_key(), not_before, not_after)

    def write(
        self,
        directory: str | Path,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> tuple[Path, Path]:
        """Write ``DIR/ID.key`` (mode 0600) and ``DIR/ID.pub``, plus ``DIR/ID.json`` for a window.

        Existing files are never overwritten. Returns the paths of the private and public key.
        """
        out = Path(directory)
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        private, public = out / f"{self.kid}.key", out / f"{self.kid}.pub"
        for path in (private, public):
            if path.exists():
                raise InputError(
                    "PQL-E093",
                    f"{str(path)!r} already exists",
                    hints=("pick another --kid; key files are never overwritten",),
                )
        _write_new(private, self.private_pem(), 0o600)
        _write_new(public, self.public_pem(), 0o644)
        if not_before is not None or not_after is not None:
            sidecar = self.trusted(not_before=not_before, not_after=not_after).sidecar()
            _write_new(out / f"{self.kid}.json", _json_bytes(sidecar), 0o644)
        return private, public


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A public key the engine trusts, valid from ``not_before`` until before ``not_after``.

    A revoked key is refused whatever the time: a leaked key could back-date what it signs.

    >>> key = SigningKey.generate("k1").trusted(not_after=datetime(2026, 1, 1, tzinfo=UTC))
    >>> key.check_window(datetime(2026, 1, 1, tzinfo=UTC))
    Traceback (most recent call last):
    ...
    pql.signing.ExpiredError: [PQL-A004] key 'k1' expired at 2026-01-01T00:00:00Z
    """

    kid: str
    public_key: Ed25519PublicKey = field(repr=False)
    not_before: datetime | None = None
    not_after: datetime | None = None
    revoked: bool = False
    reason: str | None = None

    def __post_init__(self) -> None:
        _check_kid(self.kid)
        if not isinstance(self.public_key, Ed25519PublicKey):
            raise KeyFileError(f"key {self.kid!r} is not an Ed25519 public key")
        start = _aware(self.not_before, "not_before")
        end = _aware(self.not_after, "not_after")
        if start is not None and end is not None and end <= start:
            raise KeyFileError(
                f"key {self.kid!r} ends ({format_time(end)}) before it starts "
                f"({format_time(start)})"
            )
        object.__setattr__(self, "not_before", start)
        object.__setattr__(self, "not_after", end)

    @classmethod
    def from_pem(
        cls,
        kid: str,
        pem: bytes | str,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        revoked: bool = False,
    ) -> TrustedKey:
        """A key from SubjectPublicKeyInfo PEM text (an ``ID.pub`` file's content)."""
        data = pem.encode("utf-8") if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise KeyFileError(f"key {kid!r} is not a PEM public key ({exc})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(f"key {kid!r} is a {type(key).__name__}, not an Ed25519 key")
        return cls(kid, key, not_before, not_after, revoked)

    def verify(self, payload: bytes, signature: str) -> None:
        """Check ``signature`` (canonical base64) over ``payload``, or raise BadSignatureError."""
        raw = _decode_signature(signature)
        try:
            self.public_key.verify(raw, payload)
        except InvalidSignature:
            raise BadSignatureError(
                f"the signature does not match the document (key {self.kid!r}): "
                "a signed field was changed",
                details={"kid": self.kid},
            ) from None

    def check_window(self, now: datetime) -> None:
        """Raise unless the key is valid at ``now`` (not_before <= now < not_after)."""
        if self.not_before is not None and now < self.not_before:
            raise NotYetValidError(
                f"key {self.kid!r} is valid from {format_time(self.not_before)}, "
                f"not at {format_time(now)}",
                details={"kid": self.kid, "what": "key"},
            )
        if self.not_after is not None and now >= self.not_after:
            raise ExpiredError(
                f"key {self.kid!r} expired at {format_time(self.not_after)}",
                hints=("sign the query again with a current key",),
                details={"kid": self.kid, "what": "key"},
            )

    def status(self, now: datetime) -> str:
        """``valid``, ``revoked``, ``expired`` or ``not yet valid`` at ``now``."""
        if self.revoked:
            return "revoked"
        try:
            self.check_window(now)
        except ExpiredError:
            return "expired"
        except NotYetValidError:
            return "not yet valid"
        return "valid"

    def sidecar(self) -> dict[str, Json]:
        """The ``ID.json`` content describing this key's window and revocation."""
        return {
            "not_before": format_time(self.not_before) if self.not_before else None,
            "not_after": format_time(self.not_after) if self.not_after else None,
            "revoked": self.revoked,
            "reason": self.reason,
        }


def _decode_signature(signature: str) -> bytes:
    """Canonical base64 of 64 bytes only: any other spelling is a different document."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (ValueError, TypeError):
        raw = b""
    if len(raw) != _SIGNATURE_BYTES or base64.b64encode(raw).decode("ascii") != signature:
        raise BadSignatureError(
            "the signature is not the canonical base64 of a 64-byte Ed25519 signature"
        )
    return raw


class KeyRing:
    """The public keys the engine trusts, by key id. Immutable: changes return a new ring.

    Keys come from the embedding application (:meth:`TrustedKey.from_pem`) or a directory
    (:meth:`from_dir`).

    >>> signer = SigningKey.generate("team-2026")
    >>> ring = KeyRing([signer.trusted()])
    >>> ring.verify("team-2026", b"x", signer.sign(b"x"), now=datetime.now(UTC)).kid
    'team-2026'
    >>> ring.revoke("team-2026").get("team-2026").revoked
    True
    """

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[TrustedKey] = ()) -> None:
        table: dict[str, TrustedKey] = {}
        for key in keys:
            if key.kid in table:
                raise KeyFileError(f"the key ring holds key {key.kid!r} twice")
            table[key.kid] = key
        self._keys: Mapping[str, TrustedKey] = table

    @classmethod
    def from_dir(cls, directory: str | Path) -> KeyRing:
        """Load every ``ID.pub`` in ``directory`` with its optional ``ID.json`` sidecar.

        The sidecar holds ``{"not_before": ISO|null, "not_after": ISO|null, "revoked": bool,
        "reason": text|null}`` (each optional). Private ``*.key`` files are never read.
        """
        root = Path(directory)
        if not root.is_dir():
            raise KeyFileError(f"the key directory {str(root)!r} does not exist")
        keys = [_load_public(path) for path in sorted(root.glob("*.pub"))]
        for sidecar in root.glob("*.json"):
            if not sidecar.with_suffix(".pub").is_file():
                raise KeyFileError(f"{str(sidecar)!r} describes a key with no .pub file")
        return cls(keys)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __iter__(self) -> Iterator[TrustedKey]:
        return iter(sorted(self._keys.values(), key=lambda k: k.kid))

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeyRing({', '.join(sorted(self._keys))})"

    def get(self, kid: str) -> TrustedKey:
        """The key ``kid``; raise :class:`UnknownKeyError` if the ring does not hold it."""
        key = self._keys.get(kid)
        if key is None:
            known = ", ".join(sorted(self._keys)) or "none"
            raise UnknownKeyError(
                f"key {kid!r} is not in the key ring (trusted keys: {known})",
                details={"kid": kid},
            )
        return key

    def with_key(self, key: TrustedKey) -> KeyRing:
        """A ring that also trusts ``key`` (replacing a key of the same id)."""
        return KeyRing([*(k for k in self._keys.values() if k.kid != key.kid), key])

    def revoke(self, kid: str, reason: str | None = None) -> KeyRing:
        """A ring in which ``kid`` is revoked."""
        return self.with_key(replace(self.get(kid), revoked=True, reason=reason))

    def verify(self, kid: str, payload: bytes, signature: str, *, now: datetime) -> TrustedKey:
        """Check that key ``kid`` is known, not revoked, signed ``payload`` and is valid at ``now``.

        The checks run in that order, so a changed document is reported as a bad signature
        before any time check looks at its (untrusted) content.
        """
        key = self.get(kid)
        if key.revoked:
            why = f" ({key.reason})" if key.reason else ""
            raise RevokedKeyError(f"key {kid!r} is revoked{why}", details={"kid": kid})
        key.verify(payload, signature)
        key.check_window(now)
        return key


def _load_public(path: Path) -> TrustedKey:
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read the public key {str(path)!r}: {exc.strerror}") from None
    key = TrustedKey.from_pem(_check_kid(path.stem), pem)
    sidecar = path.with_suffix(".json")
    if not sidecar.exists():
        return key
    meta = _read_sidecar(sidecar)
    revoked = meta.get("revoked", False)
    reason = meta.get("reason")
    if not isinstance(revoked, bool) or not isinstance(reason, str | None):
        raise KeyFileError(f"{str(sidecar)!r}: 'revoked' must be true/false, 'reason' text")
    return TrustedKey(
        key.kid,
        key.public_key,
        _sidecar_time(meta, "not_before", sidecar),
        _sidecar_time(meta, "not_after", sidecar),
        revoked,
        reason,
    )


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read {str(path)!r}: {exc}") from None
    if not isinstance(meta, dict):
        raise KeyFileError(f"{str(path)!r} must hold a JSON object")
    unknown = sorted(set(meta) - _SIDECAR_KEYS)
    if unknown:
        raise KeyFileError(
            f"{str(path)!r} has unknown fields {unknown}",
            hints=(f"a key's sidecar holds only {sorted(_SIDECAR_KEYS)}",),
        )
    return meta


def _sidecar_time(meta: Mapping[str, Any], name: str, path: Path) -> datetime | None:
    value = meta.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise KeyFileError(f"{str(path)!r}: {name} must be an ISO-8601 time or null")
    try:
        return to_utc(value, what=name)
    except InputError as exc:
        raise KeyFileError(f"{str(path)!r}: {exc.message}") from None


def _json_bytes(value: Mapping[str, Json]) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` (never replacing a file) and write ``data``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.fchmod(fd, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def write_sidecar(directory: str | Path, key: TrustedKey) -> Path:
    """Replace ``DIR/ID.json`` with ``key``'s window and revocation (atomically)."""
    path = Path(directory) / f"{key.kid}.json"
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    _write_new(tmp, _json_bytes(key.sidecar()), 0o644)
    os.replace(tmp, path)
    return path
