"""The per-tenant safelist: whether free-form queries run, run and are recorded, or are refused."""

from __future__ import annotations

import enum
import hashlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, TypeAlias

from pql.errors import InputError
from pql.plan.safety import check_tenant_name
from pql.saved.errors import SafelistError
from pql.saved.params import shown

__all__ = ["AUDIT_TEXT_MAX", "AuditRecord", "Safelist", "SafelistLevel", "SafelistSpec"]


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
            tenant=tenant if isinstance(tenant, str) else shown(tenant),
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
    pql.saved.errors.SafelistError: [PQL-A010] tenant 'acme' runs only signed saved queries ...

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
