"""The errors of saved queries (``PQL-A006`` to ``A014``): all exit 4, like every signature failure.

The signing errors proper (``A001``-``A005``, ``A015``) live in :mod:`pql.signing`.
"""

from __future__ import annotations

from pql.signing import SignedQueryError

__all__ = [
    "MalformedDocumentError",
    "MissingParamError",
    "NoSuchSavedQueryError",
    "ParamTypeError",
    "SafelistError",
    "TamperedTextError",
    "UnexpectedParamError",
    "WrongNameError",
    "WrongTenantError",
]


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
