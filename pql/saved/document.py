"""The saved-query document: building and signing it, its canonical form, JSON, and verification.

A :class:`SavedQuery` is one JSON document: a name, a tenant, the author's PQL text, its
canonical text (what runs), typed ``$parameters``, the author, the signing key's id, issued-at,
not-before and expires-at times, and an Ed25519 signature over its canonical form
(:func:`pql.signing.encode_payload` of every field but the signature and the text itself; the
text is covered through its SHA-256).

Verification runs on every run, not only on save (:meth:`SavedQuery.authorize`): the key is
known, not revoked and valid, the signature matches, the tenant and name are the caller's, the
document is inside its validity window, the text is the signed text and means the signed query,
and the caller's parameters have the declared names and types. Parameters are bound by the
semantic pass as typed literals; they are never spliced into the text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pql import ast
from pql.analyze import analyze
from pql.catalog import Catalog
from pql.errors import InputError, PQLError
from pql.parser import parse
from pql.plan.safety import check_tenant_name
from pql.saved.errors import (
    MalformedDocumentError,
    MissingParamError,
    TamperedTextError,
    UnexpectedParamError,
    WrongNameError,
    WrongTenantError,
)
from pql.saved.fields import FIELDS, FORMAT, MAX_AUTHOR, NAME_RE, bad_chars, read_fields
from pql.saved.params import ParamType, declare_params, names, param_uses
from pql.signing import (
    ExpiredError,
    KeyRing,
    NotYetValidError,
    SigningKey,
    TrustedKey,
    encode_payload,
    format_time,
    to_utc,
)

__all__ = ["Authorized", "SavedQuery", "sign_query"]


def _check_sign_input(text: str, name: str, author: str) -> None:
    problems: list[str] = []
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        problems.append(f"the name {name!r} is not 1-128 characters of A-Z a-z 0-9 . _ -")
    if not isinstance(author, str) or not 0 < len(author) <= MAX_AUTHOR or "\n" in author:
        problems.append(f"the author must be one line of 1-{MAX_AUTHOR} characters")
    elif bad_chars(author, strict=True):
        problems.append(f"the author holds control characters {bad_chars(author, strict=True)}")
    if isinstance(text, str) and bad_chars(text, strict=True):
        problems.append(
            f"the query holds invisible or control characters {bad_chars(text, strict=True)}"
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


@dataclass(frozen=True, slots=True)
class SavedQuery:
    """One signed saved query. Build it with :func:`sign_query` or :meth:`create`, or read it
    with :meth:`from_json`; it is trusted only after :meth:`verify` (or :meth:`authorize`).

    >>> from datetime import UTC
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
        used = {n for n, _ in param_uses(tree)}
        if set(params) != used:
            raise InputError(
                "PQL-E090",
                f"the query uses {names(used)} but {names(set(params))} are declared",
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
        return {name: out[name] for name in FIELDS}

    def to_json(self) -> str:
        """The document as exported: indented JSON, UTF-8 text, one trailing newline."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, raw: str | bytes) -> SavedQuery:
        """Read an exported document; anything but a well-formed one is a
        :class:`MalformedDocumentError`. The result is not verified yet."""
        return cls(**read_fields(raw))

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
                f"saved query {self.name!r} has no parameter {names(set(unexpected))} "
                f"(it declares {names(set(self.params))})",
                details={"params": unexpected},
            )
        missing = sorted(set(self.params) - set(given))
        if missing:
            raise MissingParamError(
                f"saved query {self.name!r} needs a value for {names(set(missing))}",
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
        if set(self.params) != {n for n, _ in param_uses(tree)}:
            raise MalformedDocumentError(
                f"saved query {self.name!r} declares {names(set(self.params))} but uses "
                f"{names({n for n, _ in param_uses(tree)})}"
            )


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
    """Declare the parameters, check the query against ``tenant``'s view of ``catalog``, sign it.

    A ``$name`` the query compares with a field gets that field's type unless ``param_types``
    says otherwise; the query is then analyzed with a value of each declared type, so a query
    that could never run is refused here (an :class:`~pql.errors.PQLError`, exit 2).

    >>> doc = sign_query("FIND COUNT(*) WHERE latency_ms > $slow SINCE 1d", name="slow",
    ...                  tenant="acme", author="ana", key=SigningKey.generate("k1"))
    >>> dict(doc.params)
    {'slow': <ParamType.FLOAT: 'float'>}
    """
    cat = (catalog if catalog is not None else Catalog()).for_tenant(tenant)
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
