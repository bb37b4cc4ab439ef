"""The adapter mechanism: loading through entry points, the allowlist, broken adapters, and
every hook as the core calls it. (A real third-party package: tests/test_adapter_package.py.)"""

from __future__ import annotations

import json
import re
import tomllib
import types
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import pql
from pql import cli
from pql.adapters import (
    CheckOutcome,
    MetricSpec,
    PreflightCheck,
    hookimpl,
    hookspecs,
    load_adapters,
)
from pql.catalog import Column, DataType, Subject
from pql.limits import TenantLimits
from pql.plan.nodes import Limit, Node
from pql.plan.safety import RULES, SafetyContext
from tests.clock import TEST_NOW

ROOT = Path(__file__).resolve().parent.parent

WIDGETS = Subject(
    name="widgets",
    key="widgetId",
    order=("ts", "widgetId"),
    columns=(
        Column("widgetId", DataType.STRING, nullable=False, required=True),
        Column("tenant", DataType.STRING, nullable=False, required=True),
        Column("ts", DataType.TIMESTAMP, nullable=False, required=True),
        Column("size", DataType.INT),
    ),
)


def adapter(name: str, **hooks: Callable[..., Any]) -> types.ModuleType:
    """A module holding ``hooks`` as hook implementations, as an adapter package would."""
    module = types.ModuleType(name)
    for hook, function in hooks.items():
        function.__name__ = hook
        setattr(module, hook, hookimpl(function))
    return module


def widgets_adapter(**more: Callable[..., Any]) -> types.ModuleType:
    return adapter("widgets_adapter", pql_subjects=lambda: [WIDGETS], **more)


def engine_with(**plugins: types.ModuleType) -> pql.Engine:
    return pql.Engine.in_memory(adapters=load_adapters(plugins=plugins, entry_points=False))


def widgets_frame() -> pl.DataFrame:
    ts = TEST_NOW.replace(microsecond=0)
    return pl.DataFrame(
        {
            "widgetId": ["w1", "w2", "w3"],
            "tenant": ["acme", "acme", "zeta"],
            "ts": [ts] * 3,
            "size": [3, 5, 7],
        }
    ).with_columns(pl.col("ts").dt.replace_time_zone("UTC"))


def installed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    dist: str,
    entries: str,
    modules: dict[str, str] | None = None,
) -> None:
    """Install a distribution's metadata (and modules) on sys.path, as pip would."""
    info = tmp_path / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[pql.adapters]\n{entries}\n")
    for name, text in (modules or {}).items():
        (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))


# -- loading -----------------------------------------------------------------------------------


def test_the_built_in_adapters_come_from_entry_points() -> None:
    loaded = load_adapters()
    tenancy = next(i for i in loaded.infos if i.name == "tenancy")
    assert tenancy.status == "loaded"
    assert (tenancy.module, tenancy.distribution) == ("pql.adapters.tenancy", "pql")
    assert "tenancy" in pql.Engine.in_memory().adapters.names


def test_an_allowlist_names_the_adapters_and_an_empty_one_loads_none() -> None:
    assert load_adapters(["tenancy"]).names == ("tenancy",)
    assert load_adapters([]).names == ()
    assert pql.Engine.in_memory(adapters=()).adapters.names == ()
    with pytest.raises(pql.InputError) as caught:
        load_adapters(["tenancy", "nope"])
    assert caught.value.code == "PQL-E200" and "'nope'" in caught.value.message
    assert any("tenancy" in h for h in caught.value.hints)
    with pytest.raises(pql.InputError) as one_string:
        pql.Engine.in_memory(adapters="tenancy")
    assert one_string.value.code == "PQL-E201"


def test_an_adapter_that_cannot_be_imported_is_reported_with_an_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed(
        tmp_path,
        monkeypatch,
        "pql-needy",
        "needy = needy_adapter\ngone = no_such_adapter_module",
        {"needy_adapter": "import definitely_missing_dependency\n"},
    )
    loaded = load_adapters()
    by_name = {i.name: i for i in loaded.infos}
    assert by_name["needy"].status == "broken" and by_name["gone"].status == "broken"
    assert "definitely_missing_dependency" in by_name["needy"].error
    assert (
        by_name["needy"].hint
        == "install the missing module: pip install definitely_missing_dependency"
    )
    assert by_name["gone"].distribution == "pql-needy" and "reinstall" in by_name["gone"].hint
    assert "tenancy" in loaded.names  # the others load as usual
    engine = pql.Engine.in_memory()
    assert {i.name for i in engine.adapters.broken} == {"needy", "gone"}
    assert (
        engine.query("FIND COUNT(*) AS n WHERE receipts.status = 'ok'", tenant="acme").df.item()
        == 0
    )


def test_two_packages_with_one_adapter_name_are_both_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed(tmp_path, monkeypatch, "pql-impostor", "tenancy = json")
    loaded = load_adapters()
    assert "tenancy" not in loaded.names
    refusals = [i for i in loaded.infos if i.name == "tenancy"]
    assert len(refusals) == 2 and all("more than one package" in i.error for i in refusals)


def test_a_broken_adapter_contributes_nothing() -> None:
    def boom() -> list[Any]:
        raise RuntimeError("no rules today")

    cases = {
        "raising": widgets_adapter(pql_safety_rules=boom),
        "unknown": widgets_adapter(pql_subjectz=lambda: []),
        "wrong-args": widgets_adapter(pql_tenant_limits=lambda engine, tenant, extra: None),
        "not-a-list": widgets_adapter(pql_safety_rules=lambda: 5),
    }
    for name, plugin in cases.items():
        loaded = load_adapters(plugins={name: plugin}, entry_points=False)
        (info,) = loaded.infos
        assert info.status == "broken", name
        assert loaded.subjects == () and loaded.names == ()
        engine = pql.Engine.in_memory(adapters=loaded)
        assert "widgets" not in engine.catalog, name  # all or nothing: not half registered
    raising = load_adapters(plugins={"raising": cases["raising"]}, entry_points=False).infos[0]
    assert raising.error == "pql_safety_rules raised RuntimeError: no rules today"


def test_clashing_subjects_and_commands_are_refused() -> None:
    twice = load_adapters(
        plugins={"one": widgets_adapter(), "two": widgets_adapter()}, entry_points=False
    )
    assert twice.names == ("one",)
    assert twice.infos[1].error == "its subject 'widgets' is already registered"
    core = adapter("core", pql_subjects=lambda: [pql.catalog.RECEIPTS])
    assert load_adapters(plugins={"core": core}, entry_points=False).names == ()

    def query_command(subparsers: Any) -> None:
        subparsers.add_parser("query")

    taken = adapter("taken", pql_cli_commands=query_command)
    loaded = load_adapters(
        plugins={"taken": taken}, entry_points=False, reserved_commands=cli.core_commands()
    )
    assert loaded.infos[0].error == "its command 'query' is already taken"


# -- hooks -------------------------------------------------------------------------------------


def test_an_adapter_subject_is_queryable_and_tenant_scoped() -> None:
    engine = engine_with(widgets=widgets_adapter())
    engine.ingest("widgets", widgets_frame())
    answer = engine.query(
        "FIND COUNT(*) AS n WHERE widgets.size > 1 SINCE 1d", tenant="acme", now=TEST_NOW
    )
    assert answer.df.item() == 2
    rows = engine.query("FIND widgets SINCE 1d", tenant="zeta", now=TEST_NOW).df
    assert rows.get_column("widgetId").to_list() == ["w3"]


def test_adapter_safety_rules_run_after_the_core_rules_and_may_only_refuse() -> None:
    seen: list[str] = []

    def no_big_widgets(plan: Node, ctx: SafetyContext) -> Node:
        seen.append(type(plan).__name__)  # the core's row cap already wraps the plan
        if "size > 100" in repr(plan) or ctx.tenant == "zeta":
            raise pql.SafetyError("PQL-S050", "zeta may not look at widgets")
        return plan

    engine = engine_with(widgets=widgets_adapter(pql_safety_rules=lambda: [no_big_widgets]))
    assert engine.safety_rules[: len(RULES)] == RULES
    assert engine.safety_rules[-1].__name__ == "widgets.no_big_widgets"
    engine.query("FIND widgets SINCE 1d", tenant="acme", now=TEST_NOW)
    assert seen == ["Limit"]
    with pytest.raises(pql.SafetyError) as caught:
        engine.query("FIND widgets SINCE 1d", tenant="zeta", now=TEST_NOW)
    assert caught.value.code == "PQL-S050"
    # The core's refusals come first: an over-long window never reaches the adapter's rule.
    with pytest.raises(pql.SafetyError) as core:
        engine.query("FIND widgets SINCE 999d", tenant="zeta", now=TEST_NOW)
    assert core.value.code == "PQL-S001"
    explained = str(engine.explain("FIND widgets SINCE 1d", tenant="acme", now=TEST_NOW))
    assert "cost-budget, widgets.no-big-widgets" in explained

    def rewrites(plan: Node, ctx: SafetyContext) -> Node:
        return Limit(plan, 1)

    def crashes(plan: Node, ctx: SafetyContext) -> Node:
        raise ValueError("oops")

    for rule, code in ((rewrites, "PQL-X202"), (crashes, "PQL-X201")):
        bad = engine_with(widgets=widgets_adapter(pql_safety_rules=lambda r=rule: [r]))
        with pytest.raises(pql.InternalError) as failed:
            bad.query("FIND widgets SINCE 1d", tenant="acme", now=TEST_NOW)
        assert failed.value.code == code and "'widgets'" in failed.value.message


def test_tenant_limits_from_an_adapter_only_tighten() -> None:
    def limits(engine: Any, tenant: str) -> TenantLimits | None:
        return TenantLimits(max_rows=2, max_concurrent=1) if tenant == "acme" else None

    engine = engine_with(widgets=widgets_adapter(pql_tenant_limits=limits))
    engine.ingest("widgets", widgets_frame())
    assert engine.limits_for("acme").max_rows == 2
    assert engine.limits_for("zeta").max_rows == engine.limits.max_rows
    with pytest.raises(pql.SafetyError) as caught:
        engine.query("FIND widgets SINCE 1d LIMIT 5", tenant="acme", now=TEST_NOW)
    assert caught.value.code == "PQL-S002" and "maximum of 2 rows" in caught.value.message


def test_ingest_hooks_can_reject_a_table_whole_and_see_what_was_stored() -> None:
    stored: list[int] = []

    def check(engine: Any, subject: str, table: Any) -> None:
        if "zeta" in table.column("tenant").to_pylist():
            raise pql.SafetyError("PQL-S052", "zeta is over its quota")

    def after(engine: Any, subject: str, table: Any, report: Any) -> None:
        stored.append(report.written)

    engine = engine_with(widgets=widgets_adapter(pql_check_ingest=check, pql_on_ingest=after))
    with pytest.raises(pql.SafetyError):
        engine.ingest("widgets", widgets_frame())
    assert (
        engine.query(
            "FIND COUNT(*) AS n WHERE widgets.size > 0 SINCE 1d", tenant="acme", now=TEST_NOW
        ).df.item()
        == 0
    )  # nothing of the table was written
    engine.ingest("widgets", widgets_frame().filter(pl.col("tenant") == "acme"))
    assert stored == [2]

    def crash(engine: Any, subject: str, table: Any) -> None:
        raise KeyError("x")

    broken = engine_with(widgets=widgets_adapter(pql_check_ingest=crash))
    with pytest.raises(pql.InternalError) as caught:
        broken.ingest("widgets", widgets_frame())
    assert caught.value.code == "PQL-X201"
    assert caught.value.message.startswith("adapter 'widgets' failed in pql_check_ingest")


def test_a_read_check_sees_the_window_regions_and_they_are_found_only_if_it_looks() -> None:
    seen: list[tuple[str, list[str]]] = []
    looks = adapter(
        "looks", pql_check_read=lambda subject, regions: seen.append((subject, list(regions)))
    )
    blind = adapter("blind", pql_check_read=lambda tenant: None)
    for plugins, expected in (({"looks": looks}, 1), ({"blind": blind}, 0)):
        engine = engine_with(**plugins)
        day = TEST_NOW.replace(microsecond=0)
        frame = pl.DataFrame(
            {
                "executionId": ["a", "b", "c"],
                "tenant": ["acme"] * 3,
                "region": ["us-east-1", "eu-west-1", "ap-south-1"],
                "ts": [day, day - timedelta(days=1), day - timedelta(days=40)],
                "workflow": ["w"] * 3,
                "status": ["ok"] * 3,
                "latency_ms": [1.0] * 3,
                "cost_usd": [0.1] * 3,
            }
        ).with_columns(pl.col("ts").dt.replace_time_zone("UTC"))
        engine.ingest("receipts", frame)
        passes: list[str] = []
        stats = engine.store.stats

        def counted(tenant: str, subject: str, stats: Any = stats, passes: Any = passes) -> Any:
            passes.append(subject)
            return stats(tenant, subject)

        prepared = engine.prepare(
            "FIND COUNT(receipts.executionId) SINCE 7d", tenant="acme", now=TEST_NOW
        )
        engine.store.stats = counted  # type: ignore[method-assign]
        assert engine.execute(prepared).rows() == [(2,)]
        assert len(passes) == expected
    assert seen == [("receipts", ["eu-west-1", "us-east-1"])]


def test_window_regions_are_a_sorted_sequence_read_once() -> None:
    from pql.engine import WindowRegions
    from pql.storage import PartitionStats

    first = TEST_NOW.date() - timedelta(days=2)
    calls: list[int] = []

    def stats() -> list[PartitionStats]:
        calls.append(1)
        return [
            PartitionStats(first + timedelta(days=d), region, 1, 1, TEST_NOW, TEST_NOW)
            for d, region in (
                (-1, "zz-old-1"),
                (0, "us-east-1"),
                (1, "eu-west-1"),
                (2, "us-east-1"),
                (3, "ap-late-1"),
            )
        ]

    regions = WindowRegions(stats, first, first + timedelta(days=2))
    assert calls == []
    assert regions == ["eu-west-1", "us-east-1"] and list(regions) == ["eu-west-1", "us-east-1"]
    assert (len(regions), regions[0], regions[-1:], "us-east-1" in regions) == (
        2,
        "eu-west-1",
        ["us-east-1"],
        True,
    )
    assert calls == [1]


def test_window_regions_equal_a_sequence_of_regions_and_nothing_else() -> None:
    """Regions compare equal to a list or tuple of the same regions, never to a string (a
    string is a sequence of characters, not of regions), a set, or None; they are a mutable
    view's answer, so they cannot be hashed."""
    from pql.engine import WindowRegions
    from pql.storage import PartitionStats

    day = TEST_NOW.date()

    def stats() -> list[PartitionStats]:
        return [PartitionStats(day, region, 1, 1, TEST_NOW, TEST_NOW) for region in "ba"]

    regions = WindowRegions(stats, day, day)
    assert regions == ["a", "b"] and regions == ("a", "b")
    assert regions != "ab"
    assert regions != {"a", "b"}
    assert regions != None  # noqa: E711 - the comparison itself is what is tested
    assert regions != ["a"]
    with pytest.raises(TypeError):
        hash(regions)


def test_adapter_metrics_and_checks_are_collected() -> None:
    prometheus = pytest.importorskip("prometheus_client")
    spec = MetricSpec("mc_widgets_made", "counter", "widgets made")
    check = PreflightCheck("WID-OK", "widgets work", lambda e, t, n: CheckOutcome(True, "fine"))
    plugin = widgets_adapter(pql_metrics=lambda: [spec], pql_preflight_checks=lambda: [check])
    registry = prometheus.CollectorRegistry()
    loaded = load_adapters(plugins={"widgets": plugin}, entry_points=False)
    engine = pql.Engine.in_memory(adapters=loaded, metrics=pql.metrics.Metrics(registry=registry))
    engine.metrics.inc("mc_widgets_made", 3)
    assert registry.get_sample_value("mc_widgets_made_total") == 3
    assert loaded.checks == (check,)
    with pytest.raises(pql.InternalError) as caught:
        engine.metrics.inc("mc_never_declared")
    assert caught.value.code == "PQL-X203"


# -- the command line --------------------------------------------------------------------------


def test_pql_adapters_lists_what_is_loaded_and_warns_about_broken_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(cli.ADAPTERS_ENV, raising=False)
    installed(
        tmp_path,
        monkeypatch,
        "pql-needy",
        "needy = needy_adapter",
        {"needy_adapter": "import definitely_missing_dependency\n"},
    )
    assert cli.main(["adapters"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^tenancy  loaded  pql\.adapters\.tenancy  \(pql 0\.1\.0\)$", out, re.M)
    assert "needy  broken  needy_adapter  (pql-needy 1.0)" in out
    assert "hint: install the missing module: pip install definitely_missing_dependency" in out
    assert cli.main(["adapters", "--format", "json"]) == 0
    listed = {a["name"]: a for a in json.loads(capsys.readouterr().out)}
    assert listed["needy"]["status"] == "broken" and listed["tenancy"]["distribution"] == "pql"
    assert cli.main(["query", "--data", str(tmp_path / "none"), "--tenant", "acme", "x"]) == 2
    assert "warning[PQL-X200]: adapter 'needy' is broken" in capsys.readouterr().err
    monkeypatch.setenv(cli.ADAPTERS_ENV, "")
    assert cli.main(["adapters"]) == 0
    assert capsys.readouterr().out == "no adapters loaded\n"


# -- the rules that keep the mechanism honest --------------------------------------------------


def test_every_hook_is_documented() -> None:
    documented = (ROOT / "docs" / "pql" / "ADAPTERS.md").read_text(encoding="utf-8")
    hooks = [name for name in vars(hookspecs) if name.startswith("pql_")]
    assert len(hooks) >= 9
    missing = [h for h in hooks if f"`{h}(" not in documented]
    assert not missing, f"hooks missing from ADAPTERS.md: {missing}"


def test_the_import_contract_covers_every_core_module() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    (core,) = [c for c in contracts if c["name"] == "The core never imports an adapter"]
    modules = {
        f"pql.{p.stem}"
        for p in (ROOT / "pql").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()
    } - {"pql.adapters"}
    mechanism = {
        f"pql.adapters.{p.stem}"
        for p in (ROOT / "pql" / "adapters").glob("*.py")
        if p.stem != "__init__"
    }
    assert set(core["source_modules"]) == modules | mechanism
    adapters = {
        f"pql.adapters.{p.name}"
        for p in (ROOT / "pql" / "adapters").iterdir()
        if (p / "__init__.py").exists()
    }
    assert set(core["forbidden_modules"]) == adapters
