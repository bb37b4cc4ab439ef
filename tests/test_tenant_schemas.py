"""Extra columns belong to the tenant that ingested them, on every store.

A tenant's names, types, "did you mean" hints, row-query columns and errors never depend on
another tenant's data, and two tenants may ingest the same extra column with different types.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pql
from pql.catalog import DataType
from pql.saved import SavedStore, sign_query
from pql.signing import KeyRing, SigningKey
from tests.clock import TEST_NOW

NOW = TEST_NOW
KINDS = ("memory", "lake", "indexed")


# -- data --------------------------------------------------------------------------------------


def receipts(tenant: str, n: int = 6, **extras: pl.Series | Any) -> pl.DataFrame:
    """``n`` receipts of ``tenant`` in the last hours before ``NOW``, with ``extras`` added."""
    frame = pl.DataFrame(
        {
            "executionId": [f"{tenant}-e{i}" for i in range(n)],
            "tenant": [tenant] * n,
            "region": ["us-east-1"] * n,
            "ts": [NOW - timedelta(hours=i + 1) for i in range(n)],
            "workflow": ["etl" if i % 2 else "billing" for i in range(n)],
            "status": ["ok" if i % 3 else "error" for i in range(n)],
            "latency_ms": [float(10 * i) for i in range(n)],
            "cost_usd": [i / 100 for i in range(n)],
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )
    return frame.with_columns(**extras)


def decisions(tenant: str, n: int = 6, **extras: pl.Series | Any) -> pl.DataFrame:
    """``n`` decisions of ``tenant``, one per receipt of :func:`receipts`, with ``extras``."""
    frame = pl.DataFrame(
        {
            "decisionId": [f"{tenant}-d{i}" for i in range(n)],
            "executionId": [f"{tenant}-e{i}" for i in range(n)],
            "tenant": [tenant] * n,
            "region": ["us-east-1"] * n,
            "ts": [NOW - timedelta(hours=i + 1) for i in range(n)],
            "rule": [f"r{i % 3}" for i in range(n)],
            "effect": ["deny" if i % 2 else "allow" for i in range(n)],
            "policy_version": ["v1"] * n,
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )
    return frame.with_columns(**extras)


# -- engines -----------------------------------------------------------------------------------


def open_engine(kind: str, root: Path) -> pql.Engine:
    """A new engine of ``kind`` over ``root`` (memory engines ignore it)."""
    if kind == "memory":
        return pql.Engine.in_memory(cache=False)
    return pql.Engine(root, index=kind == "indexed", cache=False)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def outcome(engine: pql.Engine, text: str, tenant: str, **params: Any) -> tuple[Any, ...]:
    """What a tenant sees for ``text``: columns, types and rows, or the error as data."""
    try:
        result = engine.query(text, tenant=tenant, now=NOW, params=params)
    except pql.PQLError as error:
        return ("error", error.code, error.message, tuple(error.hints))
    frame = result.df
    return ("rows", tuple(frame.columns), tuple(map(str, frame.dtypes)), tuple(frame.rows()))


# -- the reported scenario ---------------------------------------------------------------------

ACME_QUERIES = (
    "FIND decisions SINCE 7d",
    "FIND decisions WHERE merger_targe = 'x' SINCE 7d",
    "FIND decisions WHERE decisions.merger_targe = 'x' SINCE 7d",
    "FIND COUNT(*) AS n WHERE attempt > $a SINCE 7d",
    "FIND COUNT(*) AS n WHERE decisions.attempt = 'x' SINCE 7d",
    "FIND receipts JOIN decisions ON receipts.executionId = decisions.executionId SINCE 7d",
)


def ingest_acme(engine: pql.Engine) -> None:
    engine.ingest("receipts", receipts("acme", attempt=pl.Series([1, 2, 1, 3, 1, 2])))
    engine.ingest("decisions", decisions("acme"))


def ingest_globex(engine: pql.Engine) -> None:
    engine.ingest(
        "decisions",
        decisions(
            "globex",
            attempt=pl.Series([1, 2, 3, 4, 5, 6]),
            merger_target=pl.Series(["initech"] * 6),
        ),
    )


def test_another_tenants_extra_columns_are_invisible(kind: str, tmp_path: Path) -> None:
    alone = open_engine(kind, tmp_path / "alone")
    ingest_acme(alone)
    shared = open_engine(kind, tmp_path / "shared")
    ingest_acme(shared)
    ingest_globex(shared)

    engines = [shared]
    if kind != "memory":  # the per-tenant schemas survive reopening the lake
        engines.append(open_engine(kind, tmp_path / "shared"))
    for engine in engines:
        for text in ACME_QUERIES:
            assert outcome(engine, text, "acme", a=1) == outcome(alone, text, "acme", a=1), text
        columns = engine.query("FIND decisions SINCE 7d", tenant="acme", now=NOW).df.columns
        assert "merger_target" not in columns and "attempt" not in columns
        typo = outcome(engine, "FIND decisions WHERE merger_targe = 'x' SINCE 7d", "acme")
        assert typo[:2] == ("error", "PQL-E011")
        assert not any("merger_target" in hint for hint in typo[3])
        count = engine.query("FIND COUNT(*) AS n WHERE attempt > $a SINCE 7d", tenant="acme",
                             now=NOW, params={"a": 1})  # fmt: skip
        assert count.df["n"].to_list() == [3]
        found = engine.query("FIND decisions SINCE 7d", tenant="globex", now=NOW).df
        assert found.columns[-2:] == ["attempt", "merger_target"]
        hint = outcome(engine, "FIND decisions WHERE merger_targe = 'x' SINCE 7d", "globex")
        assert any("merger_target" in h for h in hint[3])


def test_another_tenants_ingest_leaves_a_tenants_cached_answer_valid(
    kind: str, tmp_path: Path
) -> None:
    if kind == "memory":
        engine = pql.Engine.in_memory()
    else:
        engine = pql.Engine(tmp_path, index=kind == "indexed")
    ingest_acme(engine)
    first = engine.query("FIND decisions SINCE 7d", tenant="acme", now=NOW)
    ingest_globex(engine)
    again = engine.query("FIND decisions SINCE 7d", tenant="acme", now=NOW)
    assert again.stats["cache"]["hit"] is True
    assert again.df.equals(first.df)
    globex = engine.query("FIND decisions SINCE 7d", tenant="globex", now=NOW)
    assert globex.stats["cache"]["hit"] is False
    assert globex.df.columns[-2:] == ["attempt", "merger_target"]


def test_two_tenants_keep_one_extra_column_name_with_different_types(
    kind: str, tmp_path: Path
) -> None:
    engine = open_engine(kind, tmp_path / "lake")
    ingest_globex(engine)  # decisions.attempt is an int for globex
    engine.ingest("decisions", decisions("acme", attempt=pl.Series(["a", "b", "a", "c", "a", "b"])))
    engine.ingest("decisions", decisions("acme", n=8, attempt=pl.Series(["z"] * 8)))

    engines = [engine]
    if kind != "memory":
        engines.append(open_engine(kind, tmp_path / "lake"))
    for each in engines:
        acme = each.query(
            "FIND COUNT(*) AS n WHERE decisions.attempt = 'a' SINCE 7d", tenant="acme", now=NOW
        )
        assert acme.df["n"].to_list() == [3]
        globex = each.query(
            "FIND COUNT(*) AS n WHERE decisions.attempt > 4 SINCE 7d", tenant="globex", now=NOW
        )
        assert globex.df["n"].to_list() == [2]
        mixed = outcome(each, "FIND COUNT(*) WHERE decisions.attempt > 4 SINCE 7d", "acme")
        assert mixed[:2] == ("error", "PQL-E013")
        rows = each.query("FIND decisions SINCE 7d", tenant="acme", now=NOW).df
        assert rows.schema["attempt"] == pl.String
        assert each.catalog.for_tenant("globex")["decisions"].column("attempt") is not None

    # Each tenant's own type still holds for its own later ingests.
    with pytest.raises(pql.PQLError) as caught:
        engine.ingest("decisions", decisions("globex", n=7, attempt=pl.Series(["x"] * 7)))
    assert caught.value.code == "PQL-E052"
    assert "globex" in caught.value.message


def test_a_signed_query_of_one_tenant_ignores_another_tenants_columns(
    kind: str, tmp_path: Path
) -> None:
    engine = open_engine(kind, tmp_path / "lake")
    ingest_acme(engine)
    ingest_globex(engine)
    key = SigningKey.generate("team-a")
    saved = sign_query(
        "FIND COUNT(*) AS n WHERE attempt > $a SINCE 7d", key=key, name="retried",
        tenant="acme", author="ana", catalog=engine.catalog, now=NOW - timedelta(minutes=1),
    )  # fmt: skip
    assert {k: v.value for k, v in saved.params.items()} == {"a": "int"}
    store = SavedStore(tmp_path / "saved.sqlite")
    store.put(saved)
    result = engine.run_saved(
        "retried", tenant="acme", keyring=KeyRing([key.trusted()]), params={"a": 1}, now=NOW,
        store=store,
    )  # fmt: skip
    assert result.df["n"].to_list() == [3]


def test_a_file_with_two_tenants_is_checked_against_each(kind: str, tmp_path: Path) -> None:
    engine = open_engine(kind, tmp_path / "lake")
    engine.ingest("decisions", decisions("acme", attempt=pl.Series(["a"] * 6)))
    both = pl.concat(
        [
            decisions("globex", attempt=pl.Series(list(range(6)))),
            decisions("acme", n=8, attempt=pl.Series(list(range(8)))).tail(2),
        ]
    )
    with pytest.raises(pql.PQLError) as caught:
        engine.ingest("decisions", both)
    assert caught.value.code == "PQL-E052"
    assert "acme" in caught.value.message
    assert engine.store.version("globex") == 0
    assert engine.catalog.extras("globex") == {}


# -- concurrent ingest of one tenant -----------------------------------------------------------


def race(engine: pql.Engine, inputs: Sequence[pl.DataFrame]) -> list[object]:
    """Ingest every input from its own thread, all released at once; each one's outcome."""
    barrier = threading.Barrier(len(inputs))
    outcomes: list[object] = [None] * len(inputs)

    def ingest(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = engine.ingest("receipts", inputs[i])
        except pql.PQLError as error:
            outcomes[i] = error

    threads = [threading.Thread(target=ingest, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_ingests_of_conflicting_types_let_exactly_one_win(
    kind: str, tmp_path: Path
) -> None:
    runs = 25 if kind == "memory" else 8
    for run in range(runs):
        engine = open_engine(kind, tmp_path / f"lake{run}")
        as_int = receipts("acme", x=pl.Series([1, 2, 3, 4, 5, 6]))
        as_string = receipts("acme", n=12, x=pl.Series(["a"] * 12)).tail(6)
        outcomes = race(engine, (as_int, as_string))

        errors = [o for o in outcomes if isinstance(o, pql.PQLError)]
        assert len(errors) == 1, (run, outcomes)
        assert errors[0].code == "PQL-E052"
        int_won = errors[0] is outcomes[1]
        column = engine.catalog.for_tenant("acme")["receipts"].column("x")
        assert column is not None
        assert column.type.value == ("int" if int_won else "string")
        where = "x = 2" if int_won else "x = 'a'"
        got = engine.query(f"FIND COUNT(*) AS n WHERE {where} SINCE 7d", tenant="acme", now=NOW)
        assert got.df["n"].to_list() == [1 if int_won else 6]
        assert engine.query("FIND receipts SINCE 7d", tenant="acme", now=NOW).df.height == 6


# -- the property: tenant A never sees tenant B's data -----------------------------------------

NAMES = ("x", "attempt", "merger_target", "flag", "xx", "attemp", "region2")
TYPES: dict[str, Callable[[int], pl.Series]] = {
    "int": lambda n: pl.Series(list(range(n)), dtype=pl.Int64),
    "float": lambda n: pl.Series([i / 2 for i in range(n)], dtype=pl.Float64),
    "string": lambda n: pl.Series([f"v{i % 3}" for i in range(n)], dtype=pl.String),
    "bool": lambda n: pl.Series([i % 2 == 0 for i in range(n)], dtype=pl.Boolean),
    "timestamp": lambda n: pl.Series(
        [NOW - timedelta(minutes=i) for i in range(n)], dtype=pl.Datetime("us", "UTC")
    ),
}

extras = st.dictionaries(st.sampled_from(NAMES), st.sampled_from(sorted(TYPES)), max_size=3)
batches = st.lists(
    st.tuples(st.sampled_from(["receipts", "decisions"]), extras), min_size=1, max_size=3
)


def probes(names: tuple[str, ...]) -> list[str]:
    """Queries whose answer, columns, hints or error would show another tenant's columns."""
    out = ["FIND receipts SINCE 7d", "FIND decisions SINCE 7d"]
    for name in names:
        out += [
            f"FIND COUNT(*) AS n WHERE {name} IS NOT NULL SINCE 7d",
            f"FIND COUNT(*) AS n WHERE receipts.{name} = 1 SINCE 7d",
            f"FIND COUNT(decisions.{name}) AS n SINCE 7d",
            f"FIND decisions WHERE {name}_ = 'v1' SINCE 7d",
            f"FIND COUNT(*) AS n WHERE {name} > $p SINCE 7d",
            f"FIND MAX(receipts.{name}) AS m GROUP BY receipts.status SINCE 7d",
        ]
    return out


def ingest_batches(
    engine: pql.Engine, tenant: str, plan: list[tuple[str, dict[str, str]]]
) -> list[str]:
    """Ingest ``plan`` for ``tenant``; the outcome of each ingest (a report or an error code)."""
    seen: list[str] = []
    for i, (subject, columns) in enumerate(plan):
        make = receipts if subject == "receipts" else decisions
        rows = make(tenant, n=4 + i).tail(4)
        rows = rows.with_columns(**{name: TYPES[t](rows.height) for name, t in columns.items()})
        try:
            engine.ingest(subject, rows)
            seen.append("ok")
        except pql.PQLError as error:
            seen.append(error.code)
    return seen


def view_of(engine: pql.Engine, tenant: str, plan: list[tuple[str, dict[str, str]]]) -> list[Any]:
    """Everything ``tenant`` can observe: its ingests' outcomes, its schema and its answers."""
    seen: list[Any] = [ingest_batches(engine, tenant, plan)]
    schema = engine.catalog.for_tenant(tenant)
    seen.append([(s.name, [(c.name, c.type) for c in s.columns]) for s in schema])
    seen += [outcome(engine, text, tenant, p=1) for text in probes(NAMES)]
    return seen


def tenant_view_alone_and_beside(
    kind: str,
    a_plan: list[tuple[str, dict[str, str]]],
    b_plan: list[tuple[str, dict[str, str]]],
    b_first: bool,
) -> tuple[list[Any], list[Any]]:
    """Tenant acme's view on an engine of its own, and beside globex's data."""
    with tempfile.TemporaryDirectory() as tmp:
        with open_engine(kind, Path(tmp, "alone")) as alone:
            mine = view_of(alone, "acme", a_plan)
        with open_engine(kind, Path(tmp, "beside")) as beside:
            if b_first:
                ingest_batches(beside, "globex", b_plan)
            theirs = view_of(beside, "acme", a_plan)
            if not b_first:
                ingest_batches(beside, "globex", b_plan)
                theirs[1:] = view_of(beside, "acme", [])[1:]
        if kind != "memory":
            with open_engine(kind, Path(tmp, "beside")) as reopened:
                theirs[1:] = view_of(reopened, "acme", [])[1:]
    return mine, theirs


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=12)
@given(a_plan=batches, b_plan=batches, b_first=st.booleans())
def test_a_tenants_view_never_depends_on_another_tenants_data(
    kind: str,
    a_plan: list[tuple[str, dict[str, str]]],
    b_plan: list[tuple[str, dict[str, str]]],
    b_first: bool,
) -> None:
    mine, theirs = tenant_view_alone_and_beside(kind, a_plan, b_plan, b_first)
    assert theirs == mine


# -- the lake keeps each tenant's extras in its manifest ---------------------------------------


def test_the_manifest_keeps_extras_per_tenant(tmp_path: Path) -> None:
    engine = open_engine("lake", tmp_path)
    ingest_acme(engine)
    ingest_globex(engine)
    raw = json.loads((tmp_path / "_pql" / "manifest.json").read_bytes())
    assert raw["format"] == 2
    assert raw["extras"] == {
        "acme": {"receipts": {"attempt": "int"}},
        "globex": {"decisions": {"attempt": "int", "merger_target": "string"}},
    }


def test_a_format_1_manifest_gives_each_tenant_the_extras_its_files_hold(tmp_path: Path) -> None:
    engine = open_engine("lake", tmp_path)
    ingest_acme(engine)
    ingest_globex(engine)
    engine.ingest("receipts", receipts("globex"))
    path = tmp_path / "_pql" / "manifest.json"
    raw = json.loads(path.read_bytes())
    raw["format"] = 1  # one set of extras for the whole lake, as earlier versions wrote it
    raw["extras"] = {
        "receipts": {"attempt": "int"},
        "decisions": {"attempt": "int", "merger_target": "string"},
    }
    path.write_text(json.dumps(raw))

    reopened = open_engine("lake", tmp_path)
    assert reopened.store.extras("acme") == {"receipts": {"attempt": DataType.INT}}
    assert reopened.store.extras("globex") == {
        "decisions": {"attempt": DataType.INT, "merger_target": DataType.STRING}
    }
    for text in ACME_QUERIES:
        assert outcome(reopened, text, "acme", a=1) == outcome(engine, text, "acme", a=1), text
    reopened.ingest("decisions", decisions("acme", n=8, attempt=pl.Series(["s"] * 8)))
    assert json.loads(path.read_bytes())["format"] == 2
    assert reopened.store.extras("acme")["decisions"] == {"attempt": DataType.STRING}
