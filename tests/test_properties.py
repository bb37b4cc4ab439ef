"""Property tests: the parser only ever raises pql's own errors, printing and re-parsing is the
identity, and no query ever sees another tenant's rows, on any store path (``tests/paths.py``)."""

from __future__ import annotations

import re
from typing import Any

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

import pql
from pql import ast
from pql.demo import DemoData
from pql.parser import KEYWORDS
from pql.storage.memory import Lookup
from tests.compare import assert_same_frame
from tests.paths import StorePath
from tests.strategies import queries

TOKENS = [
    *KEYWORDS, "receipts", "decisions", "status", "latency_ms", "ts", "receipts.status",
    "decisions.effect", "(", ")", ",", "=", "!=", "<", "<=", ">", ">=", "*", ".", "7d", "90m",
    "100", "-1.5e3", '"ok"', "'deny'", "$p", "GROUP BY", "ORDER BY", "IS NULL", "\n", "--c\n",
]  # fmt: skip


@given(st.text(max_size=300))
def test_parse_arbitrary_text_raises_only_pql_errors(text: str) -> None:
    try:
        pql.parse(text)
    except pql.PQLError as exc:
        assert exc.code.startswith("PQL-")


@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_parse_token_soup_raises_only_pql_errors(tokens: list[str]) -> None:
    text = " ".join(tokens)
    try:
        pql.parse(text)
    except pql.PQLError as exc:
        assert exc.span is None or 1 <= exc.span.line <= text.count("\n") + 1


@given(queries())
def test_print_then_parse_is_identity(query: ast.Query) -> None:
    text = ast.to_text(query)
    assert pql.parse(text) == query
    assert ast.to_text(pql.parse(text)) == text


def _mangle(text: str, data: Any) -> str:
    """Change keyword case and whitespace, which must not change the meaning."""
    words = re.split(r"( )", text)
    out = []
    for w in words:
        if w == " ":
            out.append(data.draw(st.sampled_from([" ", "  ", "\n", "\t ", " \n  "])))
        elif w.upper() in KEYWORDS and w.isupper():
            out.append(data.draw(st.sampled_from([w, w.lower(), w.capitalize()])))
        else:
            out.append(w)
    return "".join(out)


@given(queries(), st.data())
def test_keyword_case_and_whitespace_do_not_matter(query: ast.Query, data: Any) -> None:
    text = ast.to_text(query)
    assert pql.parse(_mangle(text, data)) == query


@given(queries(), st.sampled_from([0, 1, 2, 5]))
def test_no_query_sees_another_tenant(
    store_path: StorePath,
    edge_data: DemoData,
    edge_tenants: list[str],
    query: ast.Query,
    which: int,
) -> None:
    """The answer for a tenant is the same whether or not other tenants' data exist."""
    tenant = edge_tenants[which]
    text = ast.to_text(query)
    alone = _engine_for(edge_data, tenant)
    shared = store_path.engine.query(text, tenant=tenant, now=edge_data.now)
    own = alone.query(text, tenant=tenant, now=edge_data.now)
    # Equal within the contract's float tolerance (parallel sums may differ in the last bit).
    assert_same_frame(shared.df, own.df, text)
    for name in shared.df.columns:
        if name.endswith("tenant"):
            assert set(shared.df[name].to_list()) <= {tenant}


_ALONE: dict[str, pql.Engine] = {}


def _engine_for(demo: DemoData, tenant: str) -> pql.Engine:
    if tenant not in _ALONE:
        eng = pql.Engine.in_memory()
        eng.ingest("receipts", demo.receipts.filter(pl.col("tenant") == tenant))
        eng.ingest("decisions", demo.decisions.filter(pl.col("tenant") == tenant))
        _ALONE[tenant] = eng
    return _ALONE[tenant]


@given(st.sampled_from(["acme", "globex", "nobody"]), st.sampled_from(["=", "!=", "IN"]))
def test_naming_tenant_in_where_only_narrows(
    store_path: StorePath, edge_data: DemoData, edge_tenants: list[str], other: str, op: str
) -> None:
    tenant = edge_tenants[1]
    cond = f"tenant IN ('{other}')" if op == "IN" else f"tenant {op} '{other}'"
    result = store_path.engine.query(
        f"FIND receipts WHERE {cond} SINCE 180d LIMIT 10000", tenant=tenant, now=edge_data.now
    )
    assert set(result.df["tenant"].to_list()) <= {tenant}


@given(
    st.text(max_size=40),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)
def test_any_literal_survives_print_and_parse(text: str, number: int, real: float) -> None:
    where = ast.And(
        (
            ast.Comparison(ast.Field(None, "status"), ast.CompareOp.EQ, ast.Literal(text)),
            ast.Comparison(ast.Field(None, "attempt"), ast.CompareOp.NE, ast.Literal(number)),
            ast.Comparison(ast.Field(None, "latency_ms"), ast.CompareOp.LT, ast.Literal(real)),
        )
    )
    query = ast.Query(subject="receipts", where=where)
    assert pql.parse(ast.to_text(query)) == query


_IDS = st.sampled_from(["ex-a", "ex-b", "ex-c", "ex-d", "", "ex-é", None])


@given(
    st.lists(_IDS, max_size=60),
    st.sets(_IDS.filter(lambda v: v is not None), max_size=4),
    st.booleans(),
    st.integers(0, 60),
    st.integers(0, 60),
)
def test_a_lookup_finds_exactly_the_rows_that_hold_its_values(
    column: list[str | None], values: set[str], nulls: bool, lo: int, hi: int
) -> None:
    """Against a brute-force search: every row in ``[lo, hi)`` that holds one of the values (or
    null) is found, in ascending order, and no row outside the bounds (on these few distinct
    values no two share a hash, so nothing else either)."""
    lookup = Lookup.build(pl.Series(column, dtype=pl.String))
    hi = min(hi, len(column))
    expected = [
        i
        for i in range(lo, hi)
        if (column[i] is None and nulls) or (column[i] is not None and column[i] in values)
    ]
    assert lookup.find(values, nulls, lo, hi).tolist() == expected


_US_PER_DAY = 86_400_000_000


@given(
    st.lists(
        st.one_of(
            st.integers(-3 * _US_PER_DAY, 3 * _US_PER_DAY),  # a few days around the epoch
            st.sampled_from([-1, 0, 1, _US_PER_DAY - 1, _US_PER_DAY, _US_PER_DAY + 1]),
            st.integers(-(10**17), 10**17),  # far apart: more days than rows
        ),
        max_size=50,
    )
)
def test_a_tables_day_starts_are_the_rows_where_the_utc_date_changes(stamps: list[int]) -> None:
    """Against the dates themselves: the first row of each UTC day, whether found by binary
    search at each midnight or by one pass (rows spanning more days than they are), at the
    edges of a day and before the epoch."""
    import numpy as np

    from pql.storage.memory import _day_starts

    ts = pl.Series(sorted(stamps), dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))
    dates = ts.dt.date()
    expected = dates.ne_missing(dates.shift(1)).arg_true().to_list()
    got = _day_starts(ts.to_physical().to_numpy().astype(np.int64))
    assert list(got) == expected
