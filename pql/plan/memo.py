"""Prepared plans reused: the work before execution done once per exact set of inputs.

A long-lived engine is asked the same queries again and again (dashboards, saved queries,
services). Everything :meth:`pql.Engine.prepare` does before the safety rules (analyze, build)
and the expensive safety rule (``cost-budget``: optimize, then estimate) is a pure function of
its inputs, so its outcome is kept in a :class:`PlanMemo` and reused when every input is the
same. The key (:class:`MemoKey`) holds each of them:

* the query text exactly as given, and the parameters bound to it;
* the tenant, and the query's ``now`` (which fixes the window);
* the limits in force for the tenant (its profile, re-read on every query, so a changed or
  tightened profile, or a suspended tenant, is seen at once);
* the data version of the tenant's store (the statistics and the estimates follow the data);
* the engine's safety rules and optimizer settings.

The catalog the tenant sees is checked on a hit too (a new subject or extra column makes a
new view, so the entry is not used). Nothing here skips a safety rule: on a hit every rule
still runs, in order, on the plan; only ``cost-budget`` answers from the memo, and only when
the plan it is given is equal to the one it estimated (otherwise it estimates again).
A refused query is never kept: a refusal is raised, so it is checked again every time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pql.analyze import Analyzed
from pql.catalog import Catalog
from pql.limits import Limits
from pql.plan.cost import Estimates
from pql.plan.nodes import Node
from pql.plan.safety import Rule, SafetyContext, cost_budget

__all__ = [
    "DEFAULT_MEMO_SIZE",
    "MemoEntry",
    "MemoKey",
    "PlanMemo",
    "frozen_params",
    "with_recorded_cost",
    "with_remembered_cost",
]

DEFAULT_MEMO_SIZE = 2048
"""How many prepared plans an engine keeps (each is a few kilobytes)."""


@dataclass(frozen=True, slots=True)
class MemoKey:
    """Every input of the work a :class:`MemoEntry` keeps (see the module's text)."""

    text: str
    params: Hashable
    tenant: str
    now: datetime
    limits: Limits
    version: int
    rules: tuple[Rule, ...]
    optimizer: Hashable


@dataclass(frozen=True, slots=True)
class MemoEntry:
    """What one preparation found: the analysis, the plan as built, the plan the cost rule
    estimated, its estimates and recorded refusals, and the plan that runs."""

    view: Catalog
    """The tenant's catalog view it was analyzed against (a changed catalog is a new view)."""
    analyzed: Analyzed
    built: Node
    estimated: Node
    estimates: Estimates
    would_refuse: tuple[dict[str, Any], ...]
    final: Node


def frozen_params(params: Mapping[str, Any] | None) -> Hashable | None:
    """``params`` as a hashable key, or ``None`` when a value cannot be one (no reuse then)."""
    if not params:
        return ()
    items = tuple(sorted(params.items()))
    try:
        hash(items)
    except TypeError:
        return None
    # 1, 1.0 and True are equal as keys but bind differently: keep their types.
    return tuple((name, type(value).__name__, value) for name, value in items)


class PlanMemo:
    """A thread-safe, bounded map from :class:`MemoKey` to :class:`MemoEntry`, least recently
    used dropped first."""

    def __init__(self, size: int = DEFAULT_MEMO_SIZE) -> None:
        if size < 0:
            raise ValueError("size must not be negative")
        self.size = size
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[MemoKey, MemoEntry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: MemoKey, view: Catalog) -> MemoEntry | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None or found.view is not view:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: MemoKey, entry: MemoEntry) -> None:
        if self.size == 0:
            return
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def remembered_cost(entry: MemoEntry) -> Rule:
    """The ``cost-budget`` rule answering from ``entry`` for the plan it estimated (any other
    plan is estimated as usual)."""

    def cost_budget_remembered(plan: Node, ctx: SafetyContext) -> Node:
        if plan != entry.estimated or entry.estimates.cost > ctx.limits.cost_budget:
            return cost_budget(plan, ctx)  # estimated (and refused, if it must be) afresh
        ctx.report.estimates = entry.estimates
        ctx.report.would_refuse.extend(entry.would_refuse)
        return plan

    return cost_budget_remembered


def with_recorded_cost(rules: tuple[Rule, ...], seen: list[Node]) -> tuple[Rule, ...]:
    """``rules`` with ``cost-budget`` also appending the plan it is given to ``seen`` (what a
    :class:`MemoEntry` keeps as ``estimated``); every rule runs as usual."""

    def cost_budget_recorded(plan: Node, ctx: SafetyContext) -> Node:
        seen.append(plan)
        return cost_budget(plan, ctx)

    return tuple(cost_budget_recorded if rule is cost_budget else rule for rule in rules)


def with_remembered_cost(rules: tuple[Rule, ...], entry: MemoEntry) -> tuple[Rule, ...]:
    """``rules`` with ``cost-budget`` answering from ``entry``; every other rule unchanged."""
    remembered = remembered_cost(entry)
    return tuple(remembered if rule is cost_budget else rule for rule in rules)
