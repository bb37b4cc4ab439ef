"""Write a lake's index snapshots ahead of time, so that an engine's first open is a restart.

An engine opened on a lake whose snapshots are missing reads every tenant's index from Parquet
while its first queries arrive; on two cores at 10M receipts that keeps the queue growing for
seconds (``benchmarks/README.md``). An engine that finds them current maps each index in
milliseconds. :func:`prepare` builds them when no traffic waits: after a bulk ingest, or as a
deploy step before a service takes traffic (``pql lake snapshots --data DIR``).

Each tenant is loaded as an engine's loader would (:meth:`Snapshots.load
<pql.storage.snapshots.Snapshots.load>`), its lookups built, and its snapshot files written,
one tenant at a time: the memory of the largest tenant's index, never more. Tenants whose
snapshots are current already are left alone. The snapshots are the engine's own, keyed by
the tenant's data: any later ingest of a tenant makes its snapshots stale again, and the next
load (or the next run of this) writes new ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pql.catalog import Catalog
from pql.errors import InputError
from pql.storage.lake import Lake
from pql.storage.snapshots import Snapshots

__all__ = ["Prepared", "prepare"]


@dataclass(frozen=True, slots=True)
class Prepared:
    """What :func:`prepare` did."""

    written: tuple[str, ...]
    """The tenants whose snapshots were written."""
    current: tuple[str, ...]
    """The tenants whose snapshots were current already."""
    files: int
    """How many snapshot files were written."""


def prepare(
    lake: Lake,
    catalog: Catalog,
    tenants: Sequence[str] | None = None,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> Prepared:
    """Write the snapshots of ``tenants`` (``None``: every tenant with stored rows) that are
    not current; ``progress(tenant, done, total)`` after each tenant. A tenant without stored
    rows is PQL-E104."""
    known = lake.tenants()
    wanted = list(dict.fromkeys(known if tenants is None else tenants))
    unknown = [t for t in wanted if t not in known]
    if unknown:
        raise InputError(
            "PQL-E104",
            f"tenant {unknown[0]!r} has no stored rows in the lake {str(lake.root)!r}",
            hints=(f"tenants with stored rows: {', '.join(known) or 'none'}",),
        )
    snapshots = Snapshots(lake)
    written: list[str] = []
    current: list[str] = []
    files = 0
    for done, tenant in enumerate(wanted, 1):
        if snapshots.current(tenant, catalog):
            current.append(tenant)
        else:
            loaded = snapshots.load(tenant, catalog, rollups=True)
            loaded.store.add_lookups()
            files += snapshots.write(loaded.pending)
            written.append(tenant)
        if progress is not None:
            progress(tenant, done, len(wanted))
    return Prepared(tuple(written), tuple(current), files)
