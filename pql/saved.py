"""Signed saved queries: the document, its store, and the per-tenant safelist.

A :class:`SavedQuery` is one JSON document: a name, a tenant, the author's PQL text, its
canonical text (what runs), typed ``$parameters``, the author, the signing key's id, issued-at,
not-before and expires-at times, and an Ed25519 signature over its canonical form
(:func:`pql.signing.encode_payload` of every field but the signature and the text itself; the
text is covered through its SHA-256). It travels as JSON (:meth:`SavedQuery.to_json`,
:meth:`SavedQuery.from_json`) so it can be reviewed and committed like code.

Verification runs on every run, not only on save (:meth:`SavedQuery.authorize`): the key is
known, not revoked and valid, the signature matches, the tenant and name are the caller's, the
document is inside its validity window, the text is the signed text and means the signed query,
and the caller's parameters have the declared names and types. Parameters are bound by the
semantic pass as typed literals; they are never spliced into the text.

:class:`SavedStore` keeps documents in SQLite at ``DATA/_pql/saved.sqlite``. :class:`Safelist`
decides per tenant whether free-form queries run (``off``), run and are recorded (``audit``),
or are refused (``enforce``).
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import re
import sqlite3
import sys
import threading
import unicodedata
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Final, TypeAlias

from pql import ast
from pql.analyze import analyze
from pql.catalog import Catalog, DataType
from pql.errors import InputError, PQLError
from pql.parser import MAX_TEXT, parse
from pql.plan.safety import TENANT_RE, check_tenant_name
from pql.signing import (
    KID_RE,
    ExpiredError,
    KeyRing,
    NotYetValidError,
    SignedQueryError,
    SigningKey,
    TrustedKey,
    encode_payload,
    format_time,
    parse_time,
    to_utc,
)
from pql.storage import IndexedLake, Lake, Store

__all__ = [
    "AUDIT_TEXT_MAX",
    "FORMAT",
    "MAX_DOCUMENT",
    "NAME_RE",
    "AuditRecord",
    "Authorized",
    "MalformedDocumentError",
    "MissingParamError",
    "NoSuchSavedQueryError",
    "ParamType",
    "ParamTypeError",
    "Safelist",
    "SafelistError",
    "SafelistLevel",
    "SafelistSpec",
    "SavedQuery",
    "SavedStore",
    "TamperedTextError",
    "UnexpectedParamError",
    "WrongNameError",
    "WrongTenantError",
    "declare_params",
    "sign_query",
]

FORMAT: Final = "pql-saved-query/1"
"""The ``format`` field of every saved-query document this version writes and reads."""

NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""What a saved query's name looks like."""

_PARAM_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")
MAX_DOCUMENT: Final = 256 * 1024
"""The largest saved-query document read, in bytes."""
_MAX_AUTHOR: Final = 200
_FIELDS: Final = (
    "format", "name", "tenant", "author", "params", "text", "query", "kid",
    "issued_at", "not_before", "expires_at", "text_sha256", "signature",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Errors (exit 4, like every signature failure)


class WrongTenantError(SignedQueryError):
    """The saved query is signed for another tenant than the caller's (A006)."""

    CODE = "PQL-A006"
    HINT = "a saved query runs only for the tenant it was signed for"


class ParamTypeError(SignedQueryError):
    """A parameter's value does not have the declared type (A007)."""

    CODE = "PQL-A007"
    HINT = "pass a value of the declared type (see `pql saved export`)"


class MissingParamError(SignedQueryError):
    """A declared parameter has no value (A008)."""

    CODE = "PQL-A008"
    HINT = "pass every declared parameter with --param NAME=VALUE"


class TamperedTextError(SignedQueryError):
    """The query text is not the text that was signed, or does not mean the signed query (A009)."""

    CODE = "PQL-A009"
    HINT = "a signed saved query cannot be edited; sign the new text with `pql saved sign`"


class SafelistError(SignedQueryError):
    """A free-form query was refused: the tenant's safelist level is ``enforce`` (A010)."""

    CODE = "PQL-A010"
    HINT = "sign the query with `pql saved sign` and run it with `pql saved run`"


class NoSuchSavedQueryError(SignedQueryError):
    """No saved query of that name is stored for the tenant (A011)."""

    CODE = "PQL-A011"
    HINT = "list the tenant's saved queries with `pql saved list`"


class MalformedDocumentError(SignedQueryError):
    """The document is not a well-formed saved query, so it cannot be verified (A012)."""

    CODE = "PQL-A012"
    HINT = "export the document again with `pql saved export`; it must not be edited"


class WrongNameError(SignedQueryError):
    """The stored document is signed under another name than the one asked for (A013)."""

    CODE = "PQL-A013"
    HINT = "the store was changed; import the signed document again"


class UnexpectedParamError(SignedQueryError):
    """A value was passed for a parameter the saved query does not declare (A014)."""

    CODE = "PQL-A014"
    HINT = "pass only the declared parameters (see `pql saved export`)"


# ---------------------------------------------------------------------------------------------
# Parameter types


def _to_string(value: object) -> str:
    if isinstance(value, str):
        return value
    raise TypeError("it is not text")


_FLOAT_MAX: Final = int(sys.float_info.max)


def _to_int(value: object) -> int:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a whole number")
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]{1,19}", value.strip()):
        value = int(value)
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return value
    raise ValueError("it is not a 64-bit whole number")


def _to_float(value: object) -> float:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    number = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"
    if isinstance(value, str) and re.fullmatch(number, value.strip()):
        value = float(value)
    if isinstance(value, int) and not -_FLOAT_MAX <= value <= _FLOAT_MAX:
        raise ValueError("it is too large for a 64-bit float")
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    raise ValueError("it is not a finite number")


def _to_bool(value: object) -> bool:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, bool):
        return value
    raise ValueError("write true or false")


def _to_timestamp(value: object) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("it is not an ISO-8601 time") from None
    if isinstance(value, datetime):
        stamp = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        try:
            return stamp.astimezone(UTC)
        except OverflowError:
            raise ValueError("in UTC it falls outside the years 1-9999") from None
    raise TypeError("it is not a time")


class ParamType(enum.Enum):
    """The declared type of a ``$parameter``.

    >>> ParamType.INT.convert("limit", "250")
    250
    >>> ParamType.parse("timestamp").convert("since", "2026-03-02T10:00:00Z").isoformat()
    '2026-03-02T10:00:00+00:00'
    """

    STRING = "string"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    TIMESTAMP = "timestamp"

    @classmethod
    def parse(cls, text: str) -> ParamType:
        """The type named ``text``; an unknown name is an :class:`~pql.errors.InputError`."""
        for member in cls:
            if member.value == text:
                return member
        raise InputError(
            "PQL-E091",
            f"unknown parameter type {text!r}",
            hints=(f"parameter types: {', '.join(m.value for m in cls)}",),
        )

    def convert(self, name: str, value: object) -> object:
        """``value`` as this type; text is read as the command line writes it (``k=v``).

        Raises :class:`ParamTypeError` when it is not a value of this type.
        """
        try:
            return _CONVERTERS[self](value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ParamTypeError(
                f"parameter ${name} is declared {self.value}, but {_shown(value)} is not: {exc}",
                details={"param": name, "type": self.value},
            ) from None

    def dummy(self) -> object:
        """A value of this type, to check a query's types before it is signed."""
        return _DUMMIES[self]


def _shown(value: object, width: int = 60) -> str:
    """A short ``repr`` of a caller's value, whatever its size (huge ints cannot be printed)."""
    if isinstance(value, str | bytes):
        value = value[: width + 1]
    try:
        text = repr(value)
    except ValueError:  # an int of more than sys.get_int_max_str_digits() digits
        return "a number too large to show"
    return text if len(text) <= width else text[: width - 3] + "..."


_CONVERTERS: Final[dict[ParamType, Callable[[object], object]]] = {
    ParamType.STRING: _to_string,
    ParamType.INT: _to_int,
    ParamType.FLOAT: _to_float,
    ParamType.BOOL: _to_bool,
    ParamType.TIMESTAMP: _to_timestamp,
}
_DUMMIES: Final[dict[ParamType, object]] = {
    ParamType.STRING: "x",
    ParamType.INT: 0,
    ParamType.FLOAT: 0.0,
    ParamType.BOOL: False,
    ParamType.TIMESTAMP: datetime(2000, 1, 1, tzinfo=UTC),
}


# ---------------------------------------------------------------------------------------------
# Declaring parameters: every $name is declared, by hand or from the field it is compared with


def _predicates(query: ast.Query) -> list[ast.Comparison | ast.InList | ast.IsNull]:
    """The leaf predicates of the WHERE clause, in text order (iterative: depth is unbounded)."""
    leaves: list[ast.Comparison | ast.InList | ast.IsNull] = []
    stack: list[ast.Expr] = [query.where] if query.where is not None else []
    while stack:
        expr = stack.pop()
        match expr:
            case ast.Not(operand=inner):
                stack.append(inner)
            case ast.And(operands=ops) | ast.Or(operands=ops):
                stack.extend(reversed(ops))
            case _:
                leaves.append(expr)
    return leaves


def _param_uses(query: ast.Query) -> list[tuple[str, ast.Field]]:
    """Every ``$name`` of the query with the field it is compared with, in text order."""
    uses: list[tuple[str, ast.Field]] = []
    for leaf in _predicates(query):
        match leaf:
            case ast.Comparison(field=f, value=ast.Param(name=name)):
                uses.append((name, f))
            case ast.InList(field=f, values=values):
                uses += [(v.name, f) for v in values if isinstance(v, ast.Param)]
    return uses


def _named_subjects(query: ast.Query) -> list[str]:
    """The subjects a query names: what it finds, what it joins, and qualified fields'."""
    names = [query.subject] if query.subject else []
    fields = [a.field for a in query.aggregates if a.field is not None]
    if query.join is not None:
        names.append(query.join.subject)
        fields += [query.join.left, query.join.right]
    fields += [*query.group_by, *(o.key for o in query.order_by)]
    fields += [leaf.field for leaf in _predicates(query)]
    return names + [f.subject for f in fields if f.subject]


def _field_type(f: ast.Field, query: ast.Query, catalog: Catalog) -> DataType | None:
    """The type of ``f`` where the catalog settles it; ``None`` when it is unknown or ambiguous."""
    if f.subject is not None:
        subject = catalog.get(f.subject)
        column = subject.column(f.name) if subject is not None else None
        return column.type if column is not None else None
    named = [catalog[s] for s in dict.fromkeys(_named_subjects(query)) if s in catalog]
    owners = [s for s in (named or list(catalog)) if f.name in s]
    column = owners[0].column(f.name) if len(owners) == 1 else None
    return column.type if column is not None else None


def declare_params(
    query: ast.Query,
    catalog: Catalog,
    explicit: Mapping[str, ParamType | str] | None = None,
) -> dict[str, ParamType]:
    """The type of every ``$name`` in ``query``: ``explicit`` first, else the compared field's.

    >>> declare_params(parse("FIND receipts WHERE latency_ms > $slow AND status = $s"), Catalog())
    {'s': <ParamType.STRING: 'string'>, 'slow': <ParamType.FLOAT: 'float'>}
    """
    given = {
        k: v if isinstance(v, ParamType) else ParamType.parse(v)
        for k, v in (explicit or {}).items()
    }
    uses = _param_uses(query)
    unused = sorted(set(given) - {name for name, _ in uses})
    if unused:
        raise InputError(
            "PQL-E090",
            f"--param-type declares {_names(set(unused))}, which the query does not use",
            hints=("declare only the parameters the query uses",),
        )
    declared = dict(given)
    for name, f in uses:
        if name in given:
            continue
        data_type = _field_type(f, query, catalog)
        inferred = ParamType(data_type.value) if data_type is not None else None
        if inferred is None or declared.get(name, inferred) is not inferred:
            raise InputError(
                "PQL-E090",
                f"cannot tell the type of ${name} from the field {f} it is compared with",
                hints=(f"declare it: --param-type {name}=string|int|float|bool|timestamp",),
            )
        declared[name] = inferred
    return dict(sorted(declared.items()))


# ---------------------------------------------------------------------------------------------
# Checking text fields


def _bad_chars(text: str, *, strict: bool) -> list[str]:
    """Characters a signed field may not hold: controls (but tab/newline/CR) and surrogates.

    ``strict`` (at signing) also refuses invisible format characters such as bidi overrides,
    which could make a reviewer read something other than what runs.
    """
    refused = {"Cc", "Cs", "Cf"} if strict else {"Cc", "Cs"}
    return sorted(
        {f"U+{ord(ch):04X}" for ch in text
         if ch not in "\t\n\r" and unicodedata.category(ch) in refused}
    )  # fmt: skip


def _check_sign_input(text: str, name: str, author: str) -> None:
    problems: list[str] = []
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        problems.append(f"the name {name!r} is not 1-128 characters of A-Z a-z 0-9 . _ -")
    if not isinstance(author, str) or not 0 < len(author) <= _MAX_AUTHOR or "\n" in author:
        problems.append(f"the author must be one line of 1-{_MAX_AUTHOR} characters")
    elif _bad_chars(author, strict=True):
        problems.append(f"the author holds control characters {_bad_chars(author, strict=True)}")
    if isinstance(text, str) and _bad_chars(text, strict=True):
        problems.append(
            f"the query holds invisible or control characters {_bad_chars(text, strict=True)}"
        )
    if problems:
        raise InputError("PQL-E096", "; ".join(problems), hints=("fix it and sign again",))


def _canonical(text: str) -> tuple[ast.Query, str]:
    """Parse and print ``text``; refuse it if the canonical text would mean something else."""
    tree = parse(text)
    canonical = ast.to_text(tree)
    try:
        same = parse(canonical) == tree
    except PQLError:
        same = False
    if not same:
        raise InputError(
            "PQL-E099",
            "the query cannot be signed: its canonical text does not parse back to the same query",
            hints=("a string literal probably holds a control character; remove it",),
        )
    return tree, canonical


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------
# The document


@dataclass(frozen=True, slots=True)
class SavedQuery:
    """One signed saved query. Build it with :func:`sign_query` or :meth:`create`, or read it
    with :meth:`from_json`; it is trusted only after :meth:`verify` (or :meth:`authorize`).

    >>> key = SigningKey.generate("k1")
    >>> now = datetime(2026, 3, 2, 10, tzinfo=UTC)
    >>> doc = SavedQuery.create("find receipts where status = $s since 7d", key=key,
    ...     name="by-status", tenant="acme", params={"s": ParamType.STRING}, author="ana",
    ...     issued_at=now)
    >>> doc.query
    'FIND receipts WHERE status = $s SINCE 7d'
    >>> run = doc.authorize(KeyRing([key.trusted()]), tenant="acme", now=now,
    ...                     params={"s": 'x" OR 1 = 1'})
    >>> run.text, run.params
    ('FIND receipts WHERE status = $s SINCE 7d', {'s': 'x" OR 1 = 1'})
    """

    name: str
    tenant: str
    text: str
    query: str
    params: Mapping[str, ParamType]
    author: str
    kid: str
    issued_at: datetime
    not_before: datetime
    expires_at: datetime | None
    text_sha256: str
    signature: str = field(repr=False)

    # building -----------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        text: str,
        *,
        key: SigningKey,
        name: str,
        tenant: str,
        params: Mapping[str, ParamType],
        author: str,
        issued_at: datetime,
        not_before: datetime | None = None,
        expires_at: datetime | None = None,
    ) -> SavedQuery:
        """Sign ``text`` with ``key``; ``params`` must declare exactly the query's ``$names``."""
        _check_sign_input(text, name, author)
        tree, canonical = _canonical(text)
        used = {n for n, _ in _param_uses(tree)}
        if set(params) != used:
            raise InputError(
                "PQL-E090",
                f"the query uses {_names(used)} but {_names(set(params))} are declared",
                hints=("declare every $name the query uses, and only those",),
            )
        issued = to_utc(issued_at)
        start = to_utc(not_before) if not_before is not None else issued
        end = to_utc(expires_at) if expires_at is not None else None
        if end is not None and end <= start:
            raise InputError(
                "PQL-E098",
                f"the query would expire ({format_time(end)}) before it becomes valid "
                f"({format_time(start)})",
                hints=("pick a later --expires",),
            )
        unsigned = cls(
            name, check_tenant_name(tenant), text, canonical, dict(sorted(params.items())),
            author, key.kid, issued, start, end, _sha256(text), "",
        )  # fmt: skip
        return replace(unsigned, signature=key.sign(unsigned.payload()))

    # the canonical form -------------------------------------------------------------------
    def signed_fields(self) -> dict[str, Any]:
        """Every field the signature covers: all but the signature and the text (its SHA-256)."""
        return {
            "format": FORMAT,
            "name": self.name,
            "tenant": self.tenant,
            "author": self.author,
            "params": {k: t.value for k, t in self.params.items()},
            "query": self.query,
            "kid": self.kid,
            "issued_at": format_time(self.issued_at),
            "not_before": format_time(self.not_before),
            "expires_at": format_time(self.expires_at) if self.expires_at else None,
            "text_sha256": self.text_sha256,
        }

    def payload(self) -> bytes:
        """The exact bytes the signature covers (:func:`pql.signing.encode_payload`)."""
        return encode_payload(self.signed_fields())

    # JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The document as a JSON object, fields in reading order."""
        out = self.signed_fields()
        out["text"] = self.text
        out["signature"] = self.signature
        return {name: out[name] for name in _FIELDS}

    def to_json(self) -> str:
        """The document as exported: indented JSON, UTF-8 text, one trailing newline."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, raw: str | bytes) -> SavedQuery:
        """Read an exported document; anything but a well-formed one is a
        :class:`MalformedDocumentError`. The result is not verified yet."""
        return _Reader(_load_object(raw)).document()

    # verification -------------------------------------------------------------------------
    def verify(
        self, keyring: KeyRing, *, tenant: str, now: datetime, name: str | None = None
    ) -> TrustedKey:
        """Check everything but the parameters; return the key that signed it.

        Order: key known and not revoked, signature, tenant (and ``name``), key window,
        document window, text. Raises a :class:`~pql.signing.SignedQueryError` subclass.
        """
        key = keyring.verify(self.kid, self.payload(), self.signature, now=now)
        self._check_scope(tenant, name)
        self._check_window(now)
        self._check_text()
        return key

    def authorize(
        self,
        keyring: KeyRing,
        *,
        tenant: str,
        now: datetime,
        params: Mapping[str, object] | None = None,
        name: str | None = None,
    ) -> Authorized:
        """:meth:`verify`, then :meth:`bind` the caller's parameters: what one run needs."""
        key = self.verify(keyring, tenant=tenant, now=now, name=name)
        return Authorized(self, key, self.bind(params))

    def bind(self, values: Mapping[str, object] | None) -> dict[str, object]:
        """The caller's parameter values, checked against the declarations and typed."""
        given = dict(values or {})
        unexpected = sorted(set(given) - set(self.params))
        if unexpected:
            raise UnexpectedParamError(
                f"saved query {self.name!r} has no parameter {_names(set(unexpected))} "
                f"(it declares {_names(set(self.params))})",
                details={"params": unexpected},
            )
        missing = sorted(set(self.params) - set(given))
        if missing:
            raise MissingParamError(
                f"saved query {self.name!r} needs a value for {_names(set(missing))}",
                details={"params": missing},
            )
        return {k: t.convert(k, given[k]) for k, t in self.params.items()}

    def _check_scope(self, tenant: str, name: str | None) -> None:
        if tenant != self.tenant:
            raise WrongTenantError(
                f"saved query {self.name!r} is signed for tenant {self.tenant!r}, not {tenant!r}",
                details={"signed_for": self.tenant, "tenant": tenant},
            )
        if name is not None and name != self.name:
            raise WrongNameError(
                f"the document stored as {name!r} is signed as {self.name!r}",
                details={"asked": name, "signed_as": self.name},
            )

    def _check_window(self, now: datetime) -> None:
        if now < self.not_before:
            raise NotYetValidError(
                f"saved query {self.name!r} is valid from {format_time(self.not_before)}, "
                f"not at {format_time(now)}",
                details={"what": "query"},
            )
        if self.expires_at is not None and now >= self.expires_at:
            raise ExpiredError(
                f"saved query {self.name!r} expired at {format_time(self.expires_at)}",
                hints=("sign the query again with a later --expires",),
                details={"what": "query"},
            )

    def _check_text(self) -> None:
        if _sha256(self.text) != self.text_sha256:
            raise TamperedTextError(
                f"the text of saved query {self.name!r} was changed after it was signed"
            )
        try:
            tree = parse(self.text)
        except PQLError as exc:
            raise TamperedTextError(
                f"the signed text of saved query {self.name!r} does not parse ({exc.message})"
            ) from None
        if ast.to_text(tree) != self.query:
            raise TamperedTextError(
                f"the text of saved query {self.name!r} does not mean its signed query "
                f"{self.query!r}"
            )
        if set(self.params) != {n for n, _ in _param_uses(tree)}:
            raise MalformedDocumentError(
                f"saved query {self.name!r} declares {_names(set(self.params))} but uses "
                f"{_names({n for n, _ in _param_uses(tree)})}"
            )


def _names(names: set[str]) -> str:
    return ", ".join(f"${n}" for n in sorted(names)) or "no parameters"


@dataclass(frozen=True, slots=True)
class Authorized:
    """A saved query cleared for one run: its canonical text and the typed parameter values."""

    saved: SavedQuery
    key: TrustedKey
    params: Mapping[str, object]

    @property
    def text(self) -> str:
        """The canonical text that runs (the signed ``query``, never the author's text)."""
        return self.saved.query


def sign_query(
    text: str,
    *,
    key: SigningKey,
    name: str,
    tenant: str,
    author: str,
    catalog: Catalog | None = None,
    param_types: Mapping[str, ParamType | str] | None = None,
    now: datetime | str | None = None,
    not_before: datetime | str | None = None,
    expires_at: datetime | str | None = None,
) -> SavedQuery:
    """Declare the parameters, check the query against ``catalog`` and sign it.

    A ``$name`` the query compares with a field gets that field's type unless ``param_types``
    says otherwise; the query is then analyzed with a value of each declared type, so a query
    that could never run is refused here (an :class:`~pql.errors.PQLError`, exit 2).

    >>> doc = sign_query("FIND COUNT(*) WHERE latency_ms > $slow SINCE 1d", name="slow",
    ...                  tenant="acme", author="ana", key=SigningKey.generate("k1"))
    >>> dict(doc.params)
    {'slow': <ParamType.FLOAT: 'float'>}
    """
    cat = catalog if catalog is not None else Catalog()
    declared = declare_params(parse(text), cat, param_types)
    saved = SavedQuery.create(
        text,
        key=key,
        name=name,
        tenant=tenant,
        params=declared,
        author=author,
        issued_at=to_utc(now, what="issued-at"),
        not_before=to_utc(not_before, what="not-before") if not_before is not None else None,
        expires_at=to_utc(expires_at, what="expires-at") if expires_at is not None else None,
    )
    analyze(parse(saved.query), cat, {k: t.dummy() for k, t in declared.items()})
    return saved


# ---------------------------------------------------------------------------------------------
# Reading a document: exact shape, or MalformedDocumentError


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


class _Reader:
    """Field-by-field checks of a document object, each failure a MalformedDocumentError."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj

    def document(self) -> SavedQuery:
        fields = set(self.obj)
        if fields != set(_FIELDS):
            missing, extra = sorted(set(_FIELDS) - fields), sorted(fields - set(_FIELDS))
            raise MalformedDocumentError(f"fields missing {missing}, unknown {extra}")
        if self.obj["format"] != FORMAT:
            raise MalformedDocumentError(
                f"unknown format {self.obj['format']!r}; expected {FORMAT!r}"
            )
        return SavedQuery(
            name=self.text("name", NAME_RE),
            tenant=self.text("tenant", TENANT_RE),
            text=self.text("text", max_len=MAX_TEXT),
            query=self.text("query", max_len=MAX_TEXT * 4),
            params=self.params(),
            author=self.text("author", max_len=_MAX_AUTHOR),
            kid=self.text("kid", KID_RE),
            issued_at=self.time("issued_at"),
            not_before=self.time("not_before"),
            expires_at=None if self.obj["expires_at"] is None else self.time("expires_at"),
            text_sha256=self.text("text_sha256", _SHA256_RE),
            signature=self.text("signature", max_len=200),
        )

    def text(self, key: str, pattern: re.Pattern[str] | None = None, max_len: int = 1000) -> str:
        value = self.obj[key]
        if not isinstance(value, str) or not value or len(value) > max_len:
            raise MalformedDocumentError(f"{key} must be text of 1-{max_len:,} characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise MalformedDocumentError(f"{key} {value[:80]!r} is not well-formed")
        if _bad_chars(value, strict=False):
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
                    f"params: {name[:80]!r}: {_shown(type_name)} is not a declaration"
                )
            out[name] = ParamType(type_name)
        if list(out) != sorted(out):
            raise MalformedDocumentError("params must be sorted by name")
        return out


# ---------------------------------------------------------------------------------------------
# The store


_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS saved_query (
    tenant    TEXT NOT NULL,
    name      TEXT NOT NULL,
    document  TEXT NOT NULL,
    stored_at TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID
"""

_BESIDE: weakref.WeakKeyDictionary[Store, SavedStore] = weakref.WeakKeyDictionary()


class SavedStore:
    """Saved queries of every tenant, in SQLite: ``DATA/_pql/saved.sqlite`` (or in memory).

    The store is not trusted: documents are verified when they are run, never on the way in
    alone. It never holds private keys.

    >>> store = SavedStore.in_memory()
    >>> store.names("acme")
    []
    """

    RELATIVE_PATH: ClassVar[Path] = Path("_pql") / "saved.sqlite"

    def __init__(self, path: str | Path | None = None) -> None:
        self._path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._memory: sqlite3.Connection | None = None

    @classmethod
    def in_data_dir(cls, data: str | Path) -> SavedStore:
        """The store of the data directory ``data``."""
        return cls(Path(data) / cls.RELATIVE_PATH)

    @classmethod
    def in_memory(cls) -> SavedStore:
        """A store that lives as long as the object (tests, notebooks)."""
        return cls(None)

    @classmethod
    def beside(cls, store: Store) -> SavedStore:
        """The saved-query store that goes with an engine's data store.

        A :class:`~pql.storage.Lake` keeps it in its directory, and so does an
        :class:`~pql.storage.IndexedLake` (the same directory, whatever the scan path); any
        other store gets one in-memory store for as long as it lives.
        """
        if isinstance(store, IndexedLake):
            store = store.lake
        if isinstance(store, Lake):
            return cls.in_data_dir(store.root)
        if store not in _BESIDE:
            _BESIDE[store] = cls.in_memory()
        return _BESIDE[store]

    @property
    def path(self) -> Path | None:
        """The SQLite file, or ``None`` in memory."""
        return self._path

    @contextmanager
    def _connect(self, *, create: bool) -> Iterator[sqlite3.Connection | None]:
        try:
            if self._path is None:
                with self._lock:
                    if self._memory is None:
                        self._memory = sqlite3.connect(":memory:", check_same_thread=False)
                        self._memory.execute(_SCHEMA)
                    with self._memory:
                        yield self._memory
                return
            if not create and not self._path.exists():
                yield None
                return
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self._path, timeout=30)) as con, con:
                con.execute(_SCHEMA)
                yield con
        except sqlite3.Error as exc:
            raise InputError(
                "PQL-E095",
                f"the saved-query store {str(self._path or ':memory:')!r} cannot be used: {exc}",
                hints=("check the file; import the signed documents into a fresh store",),
            ) from None

    def put(self, saved: SavedQuery) -> None:
        """Store ``saved`` under its tenant and name, replacing an older document."""
        stamp = format_time(datetime.now(UTC))
        with self._connect(create=True) as con:
            assert con is not None
            con.execute(
                "INSERT OR REPLACE INTO saved_query VALUES (?, ?, ?, ?)",
                (saved.tenant, saved.name, saved.to_json(), stamp),
            )

    def get_raw(self, tenant: str, name: str) -> str:
        """The stored JSON of ``name``; :class:`NoSuchSavedQueryError` if there is none."""
        with self._connect(create=False) as con:
            row = (
                None
                if con is None
                else con.execute(
                    "SELECT document FROM saved_query WHERE tenant = ? AND name = ?", (tenant, name)
                ).fetchone()
            )
        if row is None:
            raise NoSuchSavedQueryError(
                f"tenant {tenant!r} has no saved query {name!r}",
                details={"tenant": tenant, "name": name},
            )
        return str(row[0])

    def get(self, tenant: str, name: str) -> SavedQuery:
        """The stored document of ``name`` (read, not verified)."""
        return SavedQuery.from_json(self.get_raw(tenant, name))

    def names(self, tenant: str) -> list[str]:
        """The names of ``tenant``'s saved queries, sorted."""
        with self._connect(create=False) as con:
            rows = (
                []
                if con is None
                else con.execute(
                    "SELECT name FROM saved_query WHERE tenant = ? ORDER BY name", (tenant,)
                ).fetchall()
            )
        return [str(row[0]) for row in rows]

    def authorize(
        self,
        name: str,
        *,
        tenant: str,
        keyring: KeyRing,
        now: datetime,
        params: Mapping[str, object] | None = None,
    ) -> Authorized:
        """Load ``name`` for ``tenant``, verify it and bind ``params``: one run's clearance."""
        return self.get(tenant, name).authorize(
            keyring, tenant=tenant, now=now, params=params, name=name
        )


# ---------------------------------------------------------------------------------------------
# The safelist


class SafelistLevel(enum.Enum):
    """What a tenant's free-form (unsigned) queries may do."""

    OFF = "off"
    """Free-form queries run."""
    AUDIT = "audit"
    """Free-form queries run and are recorded in the audit log."""
    ENFORCE = "enforce"
    """Only signed saved queries run; free-form queries are refused (and recorded)."""


AUDIT_TEXT_MAX: Final = 1024
"""How many characters of a query's text an :class:`AuditRecord` keeps."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One free-form query the safelist saw at level ``audit`` or ``enforce``.

    A record keeps at most :data:`AUDIT_TEXT_MAX` characters of the text, with the length and
    SHA-256 of the whole text, so that the log stays small whatever callers send.
    """

    at: datetime
    tenant: str
    level: SafelistLevel
    admitted: bool
    text: str
    """The query text, cut to its first ``AUDIT_TEXT_MAX`` characters."""
    length: int
    """The length of the whole text, in characters."""
    sha256: str
    """The SHA-256 (hex) of the whole text in UTF-8."""

    @property
    def truncated(self) -> bool:
        """Whether ``text`` is only the start of the query."""
        return self.length > len(self.text)

    @classmethod
    def of(
        cls, text: object, *, tenant: object, level: SafelistLevel, admitted: bool
    ) -> AuditRecord:
        """The record of one query; only a bounded prefix of ``text`` is kept."""
        whole = text if isinstance(text, str) else f"<not text: {type(text).__name__}>"
        digest = hashlib.sha256(whole.encode("utf-8", "surrogatepass")).hexdigest()
        return cls(
            at=datetime.now(UTC),
            tenant=tenant if isinstance(tenant, str) else _shown(tenant),
            level=level,
            admitted=admitted,
            text=whole[:AUDIT_TEXT_MAX],
            length=len(whole),
            sha256=digest,
        )


SafelistSpec: TypeAlias = "str | SafelistLevel | Mapping[str, str | SafelistLevel] | Safelist"
"""What ``Engine(safelist=...)`` takes: one level for every tenant, a mapping tenant -> level
(the key ``"*"`` sets the level of tenants not listed, else ``off``), or a :class:`Safelist`."""


def _level(value: str | SafelistLevel) -> SafelistLevel:
    if isinstance(value, SafelistLevel):
        return value
    for member in SafelistLevel:
        if member.value == value:
            return member
    raise InputError(
        "PQL-E097",
        f"unknown safelist level {value!r}",
        hints=("safelist levels: off, audit, enforce",),
    )


class Safelist:
    """Per-tenant safelist levels and the audit log of free-form queries.

    >>> safelist = Safelist({"acme": "enforce", "*": "audit"})
    >>> safelist.admit_free_form("FIND receipts", tenant="globex")
    >>> [(r.tenant, r.admitted) for r in safelist.audit_log]
    [('globex', True)]
    >>> safelist.admit_free_form("FIND receipts", tenant="acme")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pql.saved.SafelistError: [PQL-A010] tenant 'acme' runs only signed saved queries ...

    ``sink`` is called with every record (e.g. to ship it to a log); the in-memory log keeps
    the last ``capacity`` records.
    """

    def __init__(
        self,
        levels: str | SafelistLevel | Mapping[str, str | SafelistLevel] = "off",
        *,
        capacity: int = 10_000,
        sink: Callable[[AuditRecord], None] | None = None,
    ) -> None:
        if isinstance(levels, str | SafelistLevel):
            levels = {"*": levels}
        table = {tenant: _level(level) for tenant, level in levels.items()}
        for tenant in table:
            if tenant != "*":
                check_tenant_name(tenant)
        self._default = table.pop("*", SafelistLevel.OFF)
        self._levels = table
        self._log: deque[AuditRecord] = deque(maxlen=capacity)
        self._sink = sink

    @classmethod
    def of(cls, spec: SafelistSpec) -> Safelist:
        """``spec`` as a :class:`Safelist` (a Safelist is returned as it is)."""
        return spec if isinstance(spec, Safelist) else cls(spec)

    def level_for(self, tenant: object) -> SafelistLevel:
        """The level of ``tenant`` (the default level for tenants not listed)."""
        level = self._levels.get(tenant) if isinstance(tenant, str) else None
        return level if level is not None else self._default

    @property
    def audit_log(self) -> tuple[AuditRecord, ...]:
        """The recorded free-form queries, oldest first."""
        return tuple(self._log)

    def admit_free_form(self, text: object, *, tenant: object) -> None:
        """Let a free-form query through, record it, or refuse it with :class:`SafelistError`."""
        level = self.level_for(tenant)
        if level is SafelistLevel.OFF:
            return
        admitted = level is SafelistLevel.AUDIT
        record = AuditRecord.of(text, tenant=tenant, level=level, admitted=admitted)
        self._log.append(record)
        if self._sink is not None:
            self._sink(record)
        if not admitted:
            raise SafelistError(
                f"tenant {record.tenant!r} runs only signed saved queries (safelist: enforce); "
                "free-form queries are refused",
                details={"tenant": record.tenant},
            )
