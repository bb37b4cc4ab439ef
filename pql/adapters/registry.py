"""Finding, loading and calling adapters: entry points in, one :class:`Adapters` out.

:func:`load_adapters` reads the ``pql.adapters`` entry-point group (built-in adapters are
registered there exactly like third-party ones), keeps the allowed ones, imports each, checks its
hooks against :mod:`pql.adapters.hookspecs` and collects its contributions. An adapter that
cannot be imported, implements an unknown hook, raises while contributing, or clashes with
another (same name, subject or command) is reported as *broken* with the reason and contributes
nothing: adapters are registered whole or not at all, and a broken one never stops the rest.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

import pluggy

from pql.adapters import hookspecs
from pql.adapters.model import MetricSpec, PreflightCheck
from pql.catalog import DECISIONS, RECEIPTS, Subject
from pql.errors import InputError, InternalError, PQLError

__all__ = ["GROUP", "AdapterInfo", "Adapters", "AdaptersSpec", "load_adapters"]

GROUP = "pql.adapters"
"""The entry-point group adapters register under."""

CORE_SUBJECTS = (RECEIPTS.name, DECISIONS.name)

log = logging.getLogger("pql.adapters")

Status = Literal["loaded", "broken"]


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    """One adapter as ``pql adapters`` shows it: where it comes from and what it adds."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    status: Status
    error: str = ""
    hint: str = ""
    hooks: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "hint": self.hint,
            "hooks": list(self.hooks),
            "subjects": list(self.subjects),
            "commands": list(self.commands),
            "rules": list(self.rules),
            "checks": list(self.checks),
            "metrics": list(self.metrics),
        }


@dataclass(frozen=True, slots=True)
class _Source:
    """An adapter found but not yet loaded."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    load: Callable[[], object]


@dataclass(slots=True)
class _Loaded:
    plugin: object
    subjects: tuple[Subject, ...] = ()
    rules: tuple[Callable[..., Any], ...] = ()
    checks: tuple[PreflightCheck, ...] = ()
    metrics: tuple[MetricSpec, ...] = ()
    commands: tuple[str, ...] = ()


_Impl = tuple[str, Callable[..., Any], tuple[str, ...]]
"""An implementation of a hook: the adapter's name, the function, the arguments it takes."""


class _Broken(Exception):
    """Why an adapter cannot be registered (never leaves this module)."""

    def __init__(self, reason: str, hint: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


@dataclass
class Adapters:
    """The adapters loaded for an engine or a command line, with everything they contribute.

    The core reaches adapters only through this object: contributions as attributes
    (``subjects``, ``safety_rules``, ``checks``, ``metrics``) and calls through :meth:`call`.
    """

    infos: tuple[AdapterInfo, ...] = ()
    _loaded: dict[str, _Loaded] = field(default_factory=dict)
    _manager: pluggy.PluginManager = field(default_factory=lambda: _manager())
    _found: dict[str, tuple[_Impl, ...]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def none(cls) -> Adapters:
        """No adapters at all."""
        return cls()

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the adapters loaded (broken ones excluded), in load order."""
        return tuple(self._loaded)

    @property
    def broken(self) -> tuple[AdapterInfo, ...]:
        return tuple(i for i in self.infos if i.status == "broken")

    @property
    def subjects(self) -> tuple[Subject, ...]:
        return tuple(s for a in self._loaded.values() for s in a.subjects)

    @property
    def safety_rules(self) -> tuple[Callable[..., Any], ...]:
        return tuple(r for a in self._loaded.values() for r in a.rules)

    @property
    def checks(self) -> tuple[PreflightCheck, ...]:
        found = [c for a in self._loaded.values() for c in a.checks]
        return tuple(sorted(found, key=lambda c: (c.order, c.code)))

    @property
    def metrics(self) -> tuple[MetricSpec, ...]:
        return tuple(m for a in self._loaded.values() for m in a.metrics)

    def implements(self, hook: str) -> bool:
        """Whether any loaded adapter implements ``hook``."""
        return bool(self._implementations(hook))

    def call(self, hook: str, **kwargs: Any) -> list[Any]:
        """Call ``hook`` on every loaded adapter implementing it, in load order.

        Returns the answers that are not ``None``. A :class:`~pql.errors.PQLError` raised by an
        adapter is its decision and propagates; any other exception becomes ``PQL-X201`` naming
        the adapter and the hook. Like pluggy, an implementation gets only the arguments it
        names, so a hook can gain arguments without breaking the adapters written before.
        """
        answers: list[Any] = []
        for name, function, argnames in self._implementations(hook):
            try:
                answer = function(**{k: v for k, v in kwargs.items() if k in argnames})
            except PQLError:
                raise
            except Exception as exc:
                raise InternalError(
                    "PQL-X201",
                    f"adapter {name!r} failed in {hook}: {type(exc).__name__}: {exc}",
                    hints=(f"this is a bug in the adapter {name!r}; disable it or report it",),
                ) from exc
            if answer is not None:
                answers.append(answer)
        return answers

    def add_cli_commands(self, subparsers: argparse._SubParsersAction[Any]) -> None:
        """Let every loaded adapter add its command groups (checked when it was loaded)."""
        for _name, function, _args in self._implementations("pql_cli_commands"):
            function(subparsers=subparsers)

    def _implementations(self, hook: str) -> tuple[_Impl, ...]:
        """``hook``'s implementations in load order, found once: the loaded adapters do not
        change after :func:`load_adapters` (a hook is asked on every query)."""
        found = self._found.get(hook)
        if found is None:
            caller = getattr(self._manager.hook, hook)
            by_plugin = {impl.plugin_name: impl for impl in caller.get_hookimpls()}
            found = self._found[hook] = tuple(
                (name, by_plugin[name].function, tuple(by_plugin[name].argnames))
                for name in self._loaded
                if name in by_plugin
            )
        return found


AdaptersSpec = Adapters | Sequence[str] | None
"""What ``pql.Engine(adapters=...)`` takes: ``None`` (every installed adapter), a list of the
names allowed (``()``: none) or an :class:`Adapters` already loaded."""


def load_adapters(
    allow: Sequence[str] | None = None,
    *,
    plugins: Mapping[str, object] | None = None,
    entry_points: bool = True,
    reserved_commands: Iterable[str] = (),
) -> Adapters:
    """Load the installed adapters (``allow``: only those named; ``()``: none).

    ``plugins`` adds adapters given as objects (name -> module or object), as if installed;
    ``entry_points=False`` skips the installed ones. ``reserved_commands`` are the command
    names of the core's command line, which no adapter may take. A name in ``allow`` that is not
    installed is an error (``PQL-E200``); a broken adapter is not (see :attr:`Adapters.broken`).
    """
    sources = _sources(entry_points, plugins or {})
    if allow is not None:
        allowed = list(dict.fromkeys(allow))
        missing = [n for n in allowed if n not in {s.name for s in sources}]
        if missing:
            known = sorted({s.name for s in sources})
            raise InputError(
                "PQL-E200",
                f"adapter {missing[0]!r} is not installed",
                hints=(
                    f"installed adapters: {', '.join(known) or 'none'}",
                    "install the package that provides it, or remove it from the allowed list",
                ),
            )
        sources = [s for s in sources if s.name in allowed]
    adapters = Adapters()
    infos: list[AdapterInfo] = []
    counts: dict[str, int] = {}
    for source in sources:
        counts[source.name] = counts.get(source.name, 0) + 1
    taken_subjects = set(CORE_SUBJECTS)
    taken_commands = set(reserved_commands)
    for source in sources:
        try:
            if counts[source.name] > 1:
                others = sorted(str(s.distribution) for s in sources if s.name == source.name)
                raise _Broken(
                    f"the name {source.name!r} is registered by more than one package "
                    f"({', '.join(others)})",
                    "uninstall all but one of them",
                )
            loaded = _register(adapters._manager, source, taken_subjects, taken_commands)
        except _Broken as exc:
            log.warning("adapter %r is broken and was not loaded: %s", source.name, exc.reason)
            infos.append(_info(source, "broken", error=exc.reason, hint=exc.hint))
            continue
        adapters._loaded[source.name] = loaded
        taken_subjects.update(s.name for s in loaded.subjects)
        taken_commands.update(loaded.commands)
        infos.append(_info(source, "loaded", loaded=loaded, manager=adapters._manager))
    adapters.infos = tuple(infos)
    adapters._found.clear()  # found from here on, once every adapter is in
    return adapters


def resolve(spec: AdaptersSpec) -> Adapters:
    """The adapters ``spec`` names (see :data:`AdaptersSpec`)."""
    if isinstance(spec, Adapters):
        return spec
    if isinstance(spec, str):
        raise InputError("PQL-E201", "adapters must be a list of names, not one string")
    return load_adapters(spec)


# -- loading ----------------------------------------------------------------------------------


def _manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


def _sources(entry_points: bool, plugins: Mapping[str, object]) -> list[_Source]:
    found: dict[tuple[str, str, str | None], _Source] = {}
    if entry_points:
        for ep in metadata.entry_points(group=GROUP):
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            found.setdefault(
                (ep.name, ep.value, dist), _Source(ep.name, ep.value, dist, version, ep.load)
            )
    sources = sorted(found.values(), key=lambda s: (s.name, s.distribution or ""))
    for name, plugin in plugins.items():
        module = getattr(plugin, "__name__", type(plugin).__name__)
        sources.append(_Source(name, str(module), None, None, _constant(plugin)))
    return sources


def _constant(plugin: object) -> Callable[[], object]:
    return lambda: plugin


def _register(
    manager: pluggy.PluginManager,
    source: _Source,
    taken_subjects: set[str],
    taken_commands: set[str],
) -> _Loaded:
    """Import, check and collect one adapter; unregister it again if anything fails."""
    plugin = _import(source)
    try:
        manager.register(plugin, name=source.name)
    except ValueError as exc:  # pluggy: the same object registered twice
        raise _Broken(f"cannot be registered: {exc}") from None
    except pluggy.PluginValidationError as exc:
        raise _Broken(f"a hook does not match its specification: {exc}") from None
    try:
        return _collect(manager, source.name, plugin, taken_subjects, taken_commands)
    except BaseException:
        manager.unregister(name=source.name)
        raise


def _import(source: _Source) -> object:
    try:
        return source.load()
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        hint = (
            f"install the missing module: pip install {missing}"
            if missing and missing != source.module.split(":")[0]
            else f"reinstall the package that provides it ({source.distribution or 'unknown'})"
        )
        raise _Broken(f"cannot be imported: {exc}", hint) from None
    except Exception as exc:
        raise _Broken(
            f"failed while importing: {type(exc).__name__}: {exc}",
            f"this is a bug in the adapter; report it to {source.distribution or 'its authors'}",
        ) from None


def _collect(
    manager: pluggy.PluginManager,
    name: str,
    plugin: object,
    taken_subjects: set[str],
    taken_commands: set[str],
) -> _Loaded:
    unknown = [hook for hook, caller in _hooks_of(manager, name) if not caller.has_spec()]
    if unknown:
        raise _Broken(
            f"implements unknown hooks: {', '.join(unknown)}",
            "see docs/pql/ADAPTERS.md for the hooks pql offers",
        )
    loaded = _Loaded(plugin)
    subjects = tuple(_contribution(manager, name, "pql_subjects"))
    for subject in subjects:
        if not isinstance(subject, Subject):
            raise _Broken(f"pql_subjects returned {subject!r}, not a pql.catalog.Subject")
        if subject.name in taken_subjects:
            raise _Broken(f"its subject {subject.name!r} is already registered")
    if len({s.name for s in subjects}) != len(subjects):
        raise _Broken("pql_subjects returned two subjects with the same name")
    loaded.subjects = subjects
    rules = tuple(_contribution(manager, name, "pql_safety_rules"))
    for rule in rules:
        if not callable(rule):
            raise _Broken(f"pql_safety_rules returned {rule!r}, which is not callable")
    loaded.rules = tuple(_guarded_rule(name, r) for r in rules)
    checks = tuple(_contribution(manager, name, "pql_preflight_checks"))
    for check in checks:
        if not isinstance(check, PreflightCheck):
            raise _Broken(f"pql_preflight_checks returned {check!r}, not a PreflightCheck")
    loaded.checks = checks
    metrics = tuple(_contribution(manager, name, "pql_metrics"))
    for spec in metrics:
        if not isinstance(spec, MetricSpec):
            raise _Broken(f"pql_metrics returned {spec!r}, not a MetricSpec")
    loaded.metrics = metrics
    loaded.commands = _commands(manager, name, taken_commands)
    return loaded


def _hooks_of(manager: pluggy.PluginManager, name: str) -> list[tuple[str, Any]]:
    plugin = manager.get_plugin(name)
    callers = manager.get_hookcallers(plugin) or []
    return [(caller.name, caller) for caller in callers]


def _contribution(manager: pluggy.PluginManager, name: str, hook: str) -> list[Any]:
    """What the adapter ``name`` answers to ``hook`` (a list), or :class:`_Broken`."""
    caller = getattr(manager.hook, hook)
    for impl in caller.get_hookimpls():
        if impl.plugin_name != name:
            continue
        try:
            answer = impl.function()
        except Exception as exc:
            raise _Broken(f"{hook} raised {type(exc).__name__}: {exc}") from None
        if answer is None:
            return []
        if isinstance(answer, (str, bytes)) or not isinstance(answer, Iterable):
            raise _Broken(f"{hook} must return a list, not {type(answer).__name__}")
        return list(answer)
    return []


def _commands(manager: pluggy.PluginManager, name: str, taken: set[str]) -> tuple[str, ...]:
    """The command groups the adapter adds, learnt by adding them to a scratch parser."""
    caller = manager.hook.pql_cli_commands
    impls = [impl for impl in caller.get_hookimpls() if impl.plugin_name == name]
    if not impls:
        return ()
    scratch = argparse.ArgumentParser(add_help=False)
    sub = scratch.add_subparsers()
    try:
        impls[0].function(subparsers=sub)
    except Exception as exc:
        raise _Broken(f"pql_cli_commands raised {type(exc).__name__}: {exc}") from None
    names = tuple(sub.choices)
    clash = sorted(set(names) & taken)
    if clash:
        raise _Broken(f"its command {clash[0]!r} is already taken")
    return names


def _guarded_rule(adapter: str, rule: Callable[..., Any]) -> Callable[..., Any]:
    """``rule`` as the safety phase runs it: it may refuse, never rewrite, never crash."""

    def guarded(plan: Any, ctx: Any) -> Any:
        try:
            answer = rule(plan, ctx)
        except PQLError:
            raise
        except Exception as exc:
            raise InternalError(
                "PQL-X201",
                f"adapter {adapter!r} failed in its safety rule {rule.__name__}: "
                f"{type(exc).__name__}: {exc}",
                hints=(f"this is a bug in the adapter {adapter!r}; disable it or report it",),
            ) from exc
        if answer is not plan:
            raise InternalError(
                "PQL-X202",
                f"adapter {adapter!r}'s safety rule {rule.__name__} changed the plan",
                hints=(
                    "an adapter's safety rule may only refuse; it must return the plan as given",
                ),
            )
        return plan

    guarded.__name__ = f"{adapter}.{getattr(rule, '__name__', 'rule')}"
    guarded.__doc__ = rule.__doc__
    return guarded


def _info(
    source: _Source,
    status: Status,
    *,
    error: str = "",
    hint: str = "",
    loaded: _Loaded | None = None,
    manager: pluggy.PluginManager | None = None,
) -> AdapterInfo:
    if loaded is None or manager is None:
        return AdapterInfo(
            source.name, source.module, source.distribution, source.version, status, error, hint
        )
    return AdapterInfo(
        name=source.name,
        module=source.module,
        distribution=source.distribution,
        version=source.version,
        status=status,
        hooks=tuple(sorted(h for h, _ in _hooks_of(manager, source.name))),
        subjects=tuple(s.name for s in loaded.subjects),
        commands=loaded.commands,
        rules=tuple(r.__name__ for r in loaded.rules),
        checks=tuple(c.code for c in loaded.checks),
        metrics=tuple(m.name for m in loaded.metrics),
    )
