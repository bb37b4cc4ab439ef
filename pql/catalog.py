"""Subjects, their columns and types.

The catalog is what the semantic pass checks names and types against. ``receipts`` and
``decisions`` are built in; :meth:`Catalog.register` lets an embedding application or adapter add
subjects of its own. Ingest adds the extra columns it sees (they are kept and queryable) to the
tenant whose rows carried them, and only to that tenant: :meth:`Catalog.for_tenant` is what a
query of that tenant is checked against, the registered subjects widened with its own extras.
"""

from __future__ import annotations

import difflib
import enum
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

import polars as pl

from pql.errors import InputError, InternalError

__all__ = [
    "DECISIONS",
    "RECEIPTS",
    "Catalog",
    "Column",
    "DataType",
    "Extras",
    "Subject",
    "suggest",
    "type_conflict",
]


class DataType(enum.Enum):
    """The value types PQL knows."""

    STRING = "string"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    TIMESTAMP = "timestamp"

    @property
    def numeric(self) -> bool:
        return self in (DataType.INT, DataType.FLOAT)

    @property
    def polars(self) -> pl.DataType:
        return _TO_POLARS[self]

    @classmethod
    def from_polars(cls, dtype: pl.DataType) -> DataType | None:
        """The PQL type of a Polars dtype, or ``None`` if PQL cannot query it."""
        if dtype in (pl.Utf8, pl.String, pl.Categorical, pl.Enum) or isinstance(
            dtype, (pl.Categorical, pl.Enum)
        ):
            return cls.STRING
        if dtype.is_integer():
            return cls.INT
        if dtype.is_float():
            return cls.FLOAT
        if dtype == pl.Boolean:
            return cls.BOOL
        if isinstance(dtype, pl.Datetime):
            return cls.TIMESTAMP
        return None


_TO_POLARS: dict[DataType, pl.DataType] = {
    DataType.STRING: pl.String(),
    DataType.INT: pl.Int64(),
    DataType.FLOAT: pl.Float64(),
    DataType.BOOL: pl.Boolean(),
    DataType.TIMESTAMP: pl.Datetime("us", "UTC"),
}


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a subject."""

    name: str
    type: DataType
    nullable: bool = True
    required: bool = False
    doc: str = ""


@dataclass(frozen=True, slots=True)
class Subject:
    """A queryable record type, such as ``receipts``.

    ``key`` is the column that identifies a record within a tenant (duplicates are stored once);
    ``order`` the columns that give rows their default order; ``references`` the columns that
    hold another record's key (``decisions.executionId``). The key and the references are the
    subject's :attr:`ids`, which memory indexes keep a lookup for.
    """

    name: str
    columns: tuple[Column, ...]
    key: str
    order: tuple[str, ...] = ("ts",)
    doc: str = ""
    references: tuple[str, ...] = ()
    _by_name: dict[str, Column] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {c.name: c for c in self.columns}
        if len(by_name) != len(self.columns):
            raise InternalError("PQL-X010", f"subject {self.name!r} has duplicate columns")
        for needed in ("tenant", "ts", self.key, *self.order, *self.references):
            if needed not in by_name:
                raise InternalError("PQL-X011", f"subject {self.name!r} lacks column {needed!r}")
        object.__setattr__(self, "_by_name", by_name)

    def column(self, name: str) -> Column | None:
        return self._by_name.get(name)

    def never_null(self, name: str) -> bool:
        """Whether ``name`` holds a value in every stored row, whatever the catalog's
        ``nullable`` says: the key, the tenant and the timestamp (every write refuses a null in
        them, and a subject cannot be declared without them)."""
        return name in (self.key, "tenant", "ts")

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def ids(self) -> tuple[str, ...]:
        """The string columns that identify records: the key, then the references."""
        names = dict.fromkeys((self.key, *self.references))
        return tuple(n for n in names if self._by_name[n].type is DataType.STRING)

    @property
    def required(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.required)

    def with_column(self, column: Column) -> Subject:
        """A copy with one more (extra) column."""
        return replace(self, columns=(*self.columns, column))

    def polars_schema(self) -> dict[str, pl.DataType]:
        return {c.name: c.type.polars for c in self.columns}


def _req(name: str, type_: DataType, nullable: bool = False, doc: str = "") -> Column:
    return Column(name, type_, nullable=nullable, required=True, doc=doc)


S, F, T = DataType.STRING, DataType.FLOAT, DataType.TIMESTAMP

RECEIPTS = Subject(
    name="receipts",
    key="executionId",
    order=("ts", "executionId"),
    doc="One record per workflow execution.",
    columns=(
        _req("executionId", S, doc="unique within a tenant"),
        _req("tenant", S),
        _req("region", S),
        _req("ts", T, doc="execution time, UTC, microseconds"),
        _req("workflow", S),
        _req("status", S, doc="ok, error, rollback, others allowed"),
        _req("latency_ms", F, nullable=True),
        _req("cost_usd", F, nullable=True),
    ),
)

DECISIONS = Subject(
    name="decisions",
    key="decisionId",
    order=("ts", "executionId", "decisionId"),
    doc="Policy decisions taken for an execution.",
    references=("executionId",),
    columns=(
        _req("decisionId", S, doc="unique within a tenant"),
        _req("executionId", S, nullable=True, doc="the receipt it belongs to (may have none)"),
        _req("tenant", S),
        _req("region", S),
        _req("ts", T),
        _req("rule", S),
        _req("effect", S, doc="allow or deny"),
        _req("policy_version", S),
    ),
)


Extras = dict[str, dict[str, DataType]]
"""One tenant's extra columns: subject -> column -> type, each in the order first ingested."""


class Catalog:
    """The subjects an engine knows, and each tenant's extra columns.

    Iterating, ``get`` and ``[]`` give the registered subjects (their declared columns only).
    A query of one tenant is checked against :meth:`for_tenant`, which adds that tenant's extra
    columns and nobody else's. Mutated only by registration and, under the store's ingest lock,
    by :meth:`add_extras`.

    >>> catalog = Catalog()
    >>> catalog.add_extras("globex", "decisions", {"attempt": DataType.INT})
    >>> "attempt" in catalog.for_tenant("globex")["decisions"]
    True
    >>> "attempt" in catalog.for_tenant("acme")["decisions"]
    False
    """

    def __init__(self, subjects: Iterable[Subject] = (RECEIPTS, DECISIONS)) -> None:
        self._subjects: dict[str, Subject] = {}
        self._extras: dict[str, Extras] = {}
        self._views: dict[str, Catalog] = {}
        self._lock = threading.Lock()
        for subject in subjects:
            self.register(subject)

    def register(self, subject: Subject) -> None:
        """Add a subject; a second subject of the same name is refused."""
        with self._lock:
            if subject.name in self._subjects:
                raise InputError(
                    "PQL-E040", f"a subject named {subject.name!r} is already registered"
                )
            self._subjects[subject.name] = subject
            self._views.clear()

    def __getitem__(self, name: str) -> Subject:
        return self._subjects[name]

    def get(self, name: str) -> Subject | None:
        return self._subjects.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._subjects

    def __iter__(self) -> Iterator[Subject]:
        return iter(tuple(self._subjects.values()))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._subjects)

    # -- extra columns, per tenant ---------------------------------------------------------

    def for_tenant(self, tenant: str) -> Catalog:
        """The catalog as ``tenant`` sees it: every subject widened with its own extra columns.

        A snapshot (later ingests do not change it); kept until the tenant's extras change.
        """
        with self._lock:
            view = self._views.get(tenant)
            if view is None:
                mine = self._extras.get(tenant, {})
                view = Catalog(_widened(s, mine.get(s.name, {})) for s in self._subjects.values())
                self._views[tenant] = view
            return view

    def extras(self, tenant: str) -> Extras:
        """``tenant``'s extra columns: subject -> column -> type."""
        with self._lock:
            return {s: dict(cols) for s, cols in self._extras.get(tenant, {}).items() if cols}

    def extra_type(self, tenant: str, subject: str, name: str) -> DataType | None:
        """The type of ``tenant``'s extra column ``subject.name``, if it has one."""
        return self._extras.get(tenant, {}).get(subject, {}).get(name)

    def add_extras(self, tenant: str, subject: str, columns: Mapping[str, DataType]) -> None:
        """Give ``tenant``'s ``subject`` the extra ``columns`` (new ones are appended).

        A column the tenant already has with another type is refused (``PQL-E052``) and then
        nothing is added. Stores call this under their ingest lock, after checking the input
        with :func:`pql.storage.validate.check_extras`.
        """
        with self._lock:
            declared = self._subjects[subject]
            mine = self._extras.get(tenant, {})
            current = dict(mine.get(subject, {}))
            for name, type_ in columns.items():
                if name in declared:
                    continue
                known = current.get(name)
                if known is not None and known is not type_:
                    raise type_conflict(subject, name, known, type_.value, tenant)
                current[name] = type_
            if current != mine.get(subject, {}):
                self._extras[tenant] = {**mine, subject: current}
                self._views.pop(tenant, None)


def type_conflict(subject: str, name: str, stored: DataType, given: str, tenant: str) -> InputError:
    """``PQL-E052``: an extra column of ``tenant`` arrives with another type than it has."""
    return InputError(
        "PQL-E052",
        f"column {subject}.{name} is {stored.value} in tenant {tenant}'s stored data "
        f"but {given} in this input",
        hints=(
            f"cast the column to {stored.value} before ingesting "
            f"(each tenant's extra columns keep the type of their first ingest)",
        ),
        details={"subject": subject, "column": name, "tenant": tenant},
    )


def _widened(subject: Subject, extras: Mapping[str, DataType]) -> Subject:
    """``subject`` with the extra ``columns`` appended (in their order)."""
    if not extras:
        return subject
    return replace(subject, columns=(*subject.columns, *(Column(n, t) for n, t in extras.items())))


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to a misspelt name, if any is close enough."""
    pool = list(candidates)
    lowered = {c.lower(): c for c in pool}
    if name.lower() in lowered:
        return lowered[name.lower()]
    found = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    return found[0] if found else None
