"""pql: an embeddable, tenant-safe query engine for workflow-orchestrator audit data.

>>> import pql
>>> engine = pql.Engine.in_memory()
>>> result = engine.query("FIND receipts SINCE 7d", tenant="acme")
>>> result.df.height, result.truncated
(0, False)

Every query runs for exactly one tenant; a query that breaks a safety rule is refused before it
runs; every failure is a :class:`PQLError` with a stable code.
"""

from pql.catalog import Catalog, Column, DataType, Subject
from pql.engine import Engine, Prepared
from pql.errors import (
    AuthError,
    InputError,
    InternalError,
    ParseError,
    PQLError,
    QueryError,
    SafetyError,
    Span,
)
from pql.limits import Limits, TenantLimits
from pql.parser import parse
from pql.result import Result
from pql.saved import ParamType, Safelist, SavedQuery, SavedStore
from pql.signing import KeyRing, SigningKey, TrustedKey

__version__ = "0.1.0"


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext pql`` in IPython or Jupyter: the ``%pql_connect`` and ``%%pql`` magics."""
    from pql.magic import load_ipython_extension as load

    load(ipython)


__all__ = [
    "AuthError",
    "Catalog",
    "Column",
    "DataType",
    "Engine",
    "InputError",
    "InternalError",
    "KeyRing",
    "Limits",
    "PQLError",
    "ParamType",
    "ParseError",
    "Prepared",
    "QueryError",
    "Result",
    "Safelist",
    "SafetyError",
    "SavedQuery",
    "SavedStore",
    "SigningKey",
    "Span",
    "Subject",
    "TenantLimits",
    "TrustedKey",
    "__version__",
    "parse",
]
