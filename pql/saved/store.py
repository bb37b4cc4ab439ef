"""Where saved queries are kept: SQLite at ``DATA/_pql/saved.sqlite`` (or in memory).

The store is untrusted by design: nothing read from it runs without verification
(:meth:`SavedQuery.authorize <pql.saved.document.SavedQuery.authorize>`).
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Final

from pql.errors import InputError
from pql.saved.document import Authorized, SavedQuery
from pql.saved.errors import NoSuchSavedQueryError
from pql.signing import KeyRing, format_time
from pql.storage import IndexedLake, Lake, S3Lake, Store

__all__ = ["SavedStore"]

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
        if isinstance(store, Lake | S3Lake):
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
