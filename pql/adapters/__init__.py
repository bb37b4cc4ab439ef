"""Adapters: optional subsystems (tenancy, residency, incidents) plugged in through entry points.

An adapter is a package registered under the ``pql.adapters`` entry-point group whose functions,
marked with :data:`hookimpl`, implement hooks of :mod:`pql.adapters.hookspecs`. This package
holds only the mechanism; each adapter is a package of its own (``pql.adapters.tenancy`` is one),
which the core never imports. See ``docs/pql/ADAPTERS.md``.
"""

from __future__ import annotations

import pluggy

from pql.adapters.hookspecs import PROJECT
from pql.adapters.model import CheckOutcome, MetricSpec, PreflightCheck
from pql.adapters.registry import GROUP, AdapterInfo, Adapters, AdaptersSpec, load_adapters, resolve

__all__ = [
    "GROUP",
    "AdapterInfo",
    "Adapters",
    "AdaptersSpec",
    "CheckOutcome",
    "MetricSpec",
    "PreflightCheck",
    "hookimpl",
    "load_adapters",
    "resolve",
]

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks an adapter's function as the implementation of the hook of the same name."""
