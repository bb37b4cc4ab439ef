"""Signed saved queries: the document, its store, and the per-tenant safelist.

A saved query is one signed JSON document that travels like code and is verified on every run.
The package is split by responsibility:

- :mod:`pql.saved.errors`: the ``PQL-A006``-``A014`` errors (exit 4);
- :mod:`pql.saved.params`: :class:`ParamType`, converting callers' values, :func:`declare_params`;
- :mod:`pql.saved.fields`: what each document field may hold; reading a document's JSON exactly;
- :mod:`pql.saved.document`: :class:`SavedQuery` (signing, canonical form, JSON, verification),
  :class:`Authorized`, :func:`sign_query`;
- :mod:`pql.saved.store`: :class:`SavedStore`, SQLite at ``DATA/_pql/saved.sqlite``;
- :mod:`pql.saved.safelist`: :class:`Safelist`, per tenant free-form queries ``off``, ``audit``
  or ``enforce``, and its bounded audit log.

Keys, the canonical query text and signatures are :mod:`pql.signing`; running a cleared query is
:meth:`pql.Engine.run_saved`. Everything below is importable from ``pql.saved`` itself.
"""

from __future__ import annotations

from pql.saved.document import Authorized, SavedQuery, sign_query
from pql.saved.errors import (
    MalformedDocumentError,
    MissingParamError,
    NoSuchSavedQueryError,
    ParamTypeError,
    SafelistError,
    TamperedTextError,
    UnexpectedParamError,
    WrongNameError,
    WrongTenantError,
)
from pql.saved.fields import FORMAT, MAX_DOCUMENT, NAME_RE
from pql.saved.params import ParamType, declare_params
from pql.saved.safelist import AUDIT_TEXT_MAX, AuditRecord, Safelist, SafelistLevel, SafelistSpec
from pql.saved.store import SavedStore

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
