"""Where the stored objects are: the local directory or S3, behind one interface.

The journal, the auditor and the governed delete ask an :class:`Objects` for what they need:
the objects stored, whether one exists, its digest and the tenants of its rows, its lock, and
to lock a new one or delete one its lock allows. :class:`LocalObjects` keeps locks in sidecars
(:mod:`pql.adapters.residency.lock`) and enforces them itself; :class:`S3Objects` reads them
from the server (retention, legal hold, tags, the bucket's object-lock setting) and lengthens
them to the policy's, and checks each delete itself before the server sees it
(:class:`pql.storage.S3Lake`).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pyarrow.compute as pc
import pyarrow.parquet as pq

from pql.adapters.residency import lock as local
from pql.adapters.residency.enforce import DECISIONS, append_line
from pql.adapters.residency.lock import Lock
from pql.adapters.residency.policy import Policy
from pql.errors import InputError
from pql.storage import IndexedLake, S3Lake
from pql.storage.s3 import S3Lock

__all__ = ["LocalObjects", "Objects", "S3Objects", "objects_of"]

PREFETCH = 16
"""How many objects an S3 audit reads at once."""


class Objects(Protocol):
    """The stored objects of one lake, as the residency adapter sees them."""

    root: Path
    """The local directory of the adapter's files (journal, decisions, policy)."""
    unlocked: str
    """The evidence of an object without a lock."""

    def stored(self) -> Iterator[str]: ...
    def prefetch(self, paths: Iterable[str]) -> None: ...
    def exists(self, path: str) -> bool: ...
    def digest(self, path: str) -> str: ...
    def tenants_in(self, path: str) -> list[str]: ...
    def lock(self, path: str) -> Lock | None: ...
    def lock_new(
        self, path: str, tenant: str, region: str, policy: Policy | None, now: datetime
    ) -> Lock: ...
    def delete(
        self, path: str, *, now: datetime | None, bypass_governance: bool, who: str | None
    ) -> None: ...


def objects_of(engine: Any) -> Objects | None:
    """The objects of ``engine``'s store (``None`` for a store without any, e.g. in memory)."""
    store = engine.store
    lake = store.lake if isinstance(store, IndexedLake) else store
    if isinstance(lake, S3Lake):
        return S3Objects(lake)
    root: Path | None = engine.data_dir
    return None if root is None else LocalObjects(root)


class LocalObjects:
    """Files of a local data directory, locked by sidecars."""

    unlocked = "no lock sidecar (no retention, no tags)"

    def __init__(self, root: Path) -> None:
        self.root = root

    def stored(self) -> Iterator[str]:
        for path in sorted(self.root.glob("mc-*/day=*/*.parquet")):
            yield path.relative_to(self.root).as_posix()

    def prefetch(self, paths: Iterable[str]) -> None:
        """Nothing to do: local files are read when asked."""

    def exists(self, path: str) -> bool:
        return (self.root / path).is_file()

    def digest(self, path: str) -> str:
        return local.file_digest(self.root / path)

    def tenants_in(self, path: str) -> list[str]:
        column = pq.read_table(self.root / path, columns=["tenant"]).column("tenant")
        return [str(t) for t in pc.unique(column).to_pylist()]

    def lock(self, path: str) -> Lock | None:
        return local.read_lock(self.root, path)

    def lock_new(
        self, path: str, tenant: str, region: str, policy: Policy | None, now: datetime
    ) -> Lock:
        return local.lock_object(self.root, path, tenant, region, policy, now)

    def delete(
        self, path: str, *, now: datetime | None, bypass_governance: bool, who: str | None
    ) -> None:
        local.delete_object(self.root, path, now=now, bypass_governance=bypass_governance, who=who)


class S3Objects:
    """Objects of an :class:`~pql.storage.S3Lake`, locked by the server's object lock."""

    unlocked = "no object lock (no retention on the object, or none enabled on its bucket)"

    def __init__(self, lake: S3Lake) -> None:
        self.lake = lake
        self.root = lake.root
        self._read: dict[str, tuple[str, list[str]]] = {}
        self._locks: dict[str, S3Lock | None] = {}

    def stored(self) -> Iterator[str]:
        return self.lake.objects()

    def prefetch(self, paths: Iterable[str]) -> None:
        """Read the locks and contents of ``paths`` concurrently (each is several requests
        that wait on the network); later questions about them are answered from memory."""

        def fetch(path: str) -> None:
            self._locks[path] = found = self.lake.lock_of(path)
            if found is not None:
                self._content(path)

        with ThreadPoolExecutor(max_workers=PREFETCH) as pool:
            list(pool.map(fetch, dict.fromkeys(paths)))

    def _lock_of(self, path: str) -> S3Lock | None:
        if path not in self._locks:
            self._locks[path] = self.lake.lock_of(path)
        return self._locks[path]

    def exists(self, path: str) -> bool:
        return self._lock_of(path) is not None

    def _content(self, path: str) -> tuple[str, list[str]]:
        """The digest and the tenants of an object's current bytes (fetched once)."""
        if path not in self._read:
            payload = self.lake.get_bytes(path)
            try:
                column = pq.read_table(io.BytesIO(payload), columns=["tenant"]).column("tenant")
                tenants = [str(t) for t in pc.unique(column).to_pylist()]
            except (OSError, ValueError, KeyError):
                tenants = []
            self._read[path] = (hashlib.sha256(payload).hexdigest(), tenants)
        return self._read[path]

    def digest(self, path: str) -> str:
        return self._content(path)[0]

    def tenants_in(self, path: str) -> list[str]:
        return self._content(path)[1]

    def lock(self, path: str) -> Lock | None:
        found = self._lock_of(path)
        if found is None or found.mode is None or not found.bucket_locked:
            return None
        return _as_lock(found)

    def lock_new(
        self, path: str, tenant: str, region: str, policy: Policy | None, now: datetime
    ) -> Lock:
        """Lengthen the retention the store wrote to the policy's (never shortened) and put its
        legal hold; the lock as the server then reports it."""
        if policy is not None:
            until = now + timedelta(days=policy.retention.days)
            self.lake.extend_retention(path, policy.retention.mode, until, policy.legal_hold)
        found = self.lake.lock_of(path)
        if found is None:
            raise InputError("PQL-E404", f"{path} is not a stored object of {self.lake.location}")
        return _as_lock(found)

    def delete(
        self, path: str, *, now: datetime | None, bypass_governance: bool, who: str | None
    ) -> None:
        """Delete ``path`` if its lock allows (checked here, whatever the server would allow);
        a governance bypass needs ``who`` and is logged."""
        if bypass_governance and not who:
            raise InputError("PQL-E403", "a governance bypass needs the name of who asks for it")
        when = now or datetime.now(UTC)
        gone = self.lake.delete_object(path, now=when, bypass_governance=bypass_governance)
        bypassed = gone.mode == "GOVERNANCE" and gone.retain_until and when < gone.retain_until
        if bypass_governance and bypassed:
            append_line(
                self.root / DECISIONS,
                {
                    "at": when.isoformat(),
                    "action": "delete-bypass-governance",
                    "object": path,
                    "who": who,
                    "tenant": gone.tags.get("tenant"),
                    "bucket_region": gone.tags.get("region"),
                    "allow": True,
                    "deny": [],
                },
            )


def _as_lock(found: S3Lock) -> Lock:
    return Lock(
        object=found.path,
        sha256=found.sha256 or "",
        bytes=found.bytes,
        written=found.written,
        retain_until=found.retain_until or found.written,
        mode=(found.mode or "").lower(),
        legal_hold=found.legal_hold,
        tags=dict(found.tags),
    )
