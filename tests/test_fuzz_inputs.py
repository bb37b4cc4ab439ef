"""Fuzzing every way data and documents get in: ingest, saved-query import, signing and parameters.

Whatever arrives (random bytes posing as Parquet, random schemas, values out of range, mangled
signed documents, hostile parameter values), the outcome is either accepted data or a
:class:`pql.PQLError` of a user-facing kind (never ``PQL-X…``, never another exception, never a
traceback on the command line), and a rejected input leaves the stored data exactly as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from collections.abc import Callable
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pql
from pql.cli import main
from pql.demo import generate
from pql.storage.lake import SNAPSHOT_DIR
from tests.clock import TEST_NOW

FUZZ = settings(
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    deadline=None,
)
NOW = TEST_NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
USER_FACING = ("PQL-E", "PQL-S", "PQL-A")


def _user_error(exc: pql.PQLError) -> None:
    assert exc.code.startswith(USER_FACING), f"{exc.code}: {exc.message}"
    assert exc.message
    json.dumps(exc.to_dict())
    exc.render()


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the digest of its bytes; index snapshots (a cache the
    engine's loader writes in the background, ``_snapshot/`` in the buckets) are not the
    lake's data and are left out."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and not p.name.endswith(("-wal", "-shm", "-journal"))
        and SNAPSHOT_DIR not in p.parts
    }


def _data_files(root: Path) -> dict[str, str]:
    return {k: v for k, v in _snapshot(root).items() if k.startswith("mc-") or "manifest" in k}


def _run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own usage errors exit 2 too
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


# -- hostile tables ------------------------------------------------------------------------------

_SECONDS_RANGE = (-(2**62), 2**62)

_extreme_seconds = st.one_of(
    st.integers(*_SECONDS_RANGE),
    st.sampled_from(
        [
            253_402_300_800,  # 10000-01-01T00:00:00: one second past year 9999
            253_402_300_799,  # 9999-12-31T23:59:59: the last second allowed
            -62_135_596_800,  # 0001-01-01T00:00:00: the first second allowed
            -62_135_596_801,  # one second before year 1
            299_000_000_000,  # year 11476, the reviewer's example
            0,
        ]
    ),
)


def _timestamp_column(draw: st.DrawFn, rows: int) -> pa.Array:
    unit = draw(st.sampled_from(["s", "ms", "us", "ns"]))
    tz = draw(st.sampled_from([None, "UTC", "+01:00", "-11:00", "Asia/Kolkata"]))
    per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[unit]
    values: list[int | None] = []
    for _ in range(rows):
        if draw(st.booleans()):
            values.append(int(TEST_NOW.timestamp()) * per_second)
        else:
            seconds = draw(_extreme_seconds)
            value = seconds * per_second
            values.append(value if -(2**63) <= value < 2**63 else None)
    return pa.array(values, type=pa.timestamp(unit, tz=tz))


_SCALAR_TYPES: dict[str, Callable[[st.DrawFn, int], pa.Array]] = {
    "int": lambda draw, n: pa.array(
        draw(st.lists(st.integers(-(2**63), 2**63 - 1) | st.none(), min_size=n, max_size=n)),
        pa.int64(),
    ),
    "float": lambda draw, n: pa.array(
        draw(st.lists(st.floats(allow_nan=True) | st.none(), min_size=n, max_size=n)),
        pa.float64(),
    ),
    "string": lambda draw, n: pa.array(
        draw(st.lists(st.text(max_size=12) | st.none(), min_size=n, max_size=n)), pa.string()
    ),
    "bool": lambda draw, n: pa.array(
        draw(st.lists(st.booleans() | st.none(), min_size=n, max_size=n)), pa.bool_()
    ),
    "timestamp": _timestamp_column,
    "date": lambda draw, n: pa.array(
        draw(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=n, max_size=n)), pa.date32()
    ),
    "list": lambda draw, n: pa.array([[1, 2]] * n, pa.list_(pa.int64())),
    "struct": lambda draw, n: pa.array([{"a": 1}] * n, pa.struct([("a", pa.int64())])),
    "null": lambda draw, n: pa.nulls(n),
    "binary": lambda draw, n: pa.array([b"\x00\xff"] * n, pa.binary()),
}


@st.composite
def hostile_tables(draw: st.DrawFn) -> tuple[str, pa.Table]:
    """A small, mostly valid table of receipts or decisions with a few hostile changes."""
    subject = draw(st.sampled_from(["receipts", "decisions"]))
    rows = draw(st.integers(1, 4))
    base = generate(40, seed=draw(st.integers(0, 10_000)), now=TEST_NOW, days=3)
    frame = (base.receipts if subject == "receipts" else base.decisions).head(rows)
    table = frame.to_arrow()
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["drop", "retype", "extra", "ts", "tenant", "region", "null"]))
        names = table.column_names
        if kind == "drop" and len(names) > 1:
            table = table.drop_columns([draw(st.sampled_from(names))])
        elif kind == "retype":
            name = draw(st.sampled_from(names))
            new = _SCALAR_TYPES[draw(st.sampled_from(sorted(_SCALAR_TYPES)))](draw, table.num_rows)
            table = table.set_column(names.index(name), name, new)
        elif kind == "extra":
            name = draw(st.sampled_from(["retries", "attempt", "x", "ts2", "__pql_x", "", "é"]))
            if name not in names:
                new = _SCALAR_TYPES[draw(st.sampled_from(sorted(_SCALAR_TYPES)))](
                    draw, table.num_rows
                )
                table = table.append_column(name, new)
        elif kind == "ts" and "ts" in names:
            table = table.set_column(names.index("ts"), "ts", _timestamp_column(draw, rows))
        elif kind in ("tenant", "region") and kind in names:
            value = draw(st.sampled_from(["", "A", "a", "acme/../x", "x" * 40, "acme-us", "é"]))
            table = table.set_column(names.index(kind), kind, pa.array([value] * rows))
        elif kind == "null" and names:
            name = draw(st.sampled_from(names))
            table = table.set_column(names.index(name), name, pa.nulls(rows, table[name].type))
    return subject, table


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz") / "lake"
    data = generate(600, seed=3, now=TEST_NOW, days=5)
    engine = pql.Engine(root, cache=False)
    engine.ingest("receipts", data.receipts)
    engine.ingest("decisions", data.decisions)
    return root


@pytest.fixture(scope="module")
def memory() -> pql.Engine:
    data = generate(600, seed=3, now=TEST_NOW, days=5)
    engine = pql.Engine.in_memory(cache=False)
    engine.ingest("receipts", data.receipts)
    engine.ingest("decisions", data.decisions)
    return engine


PROBES = [
    "FIND COUNT(*) AS n, MAX(receipts.ts) SINCE 180d",
    "FIND COUNT(*) AS n, MIN(decisions.ts) SINCE 180d",
    "FIND receipts SINCE 7d LIMIT 3",
]


def _answers(engine: pql.Engine, tenants: tuple[str, ...]) -> list[Any]:
    """What each tenant sees; must never fail, whatever was ingested before."""
    out = []
    for tenant in tenants:
        for text in PROBES:
            out.append(engine.query(text, tenant=tenant, now=TEST_NOW).df.rows())
    return out


@FUZZ
@given(case=hostile_tables())
def test_hostile_tables_are_stored_whole_or_not_at_all(
    case: tuple[str, pa.Table], lake: Path, memory: pql.Engine
) -> None:
    subject, table = case
    plain = pql.Engine(lake, cache=False)
    for engine in (plain, memory):
        tenants = ("acme", "globex")
        before = _answers(engine, tenants)
        files = _data_files(lake) if engine is plain else {}
        try:
            engine.ingest(subject, table)
        except pql.PQLError as exc:
            _user_error(exc)
            assert _answers(engine, tenants) == before
            if engine is plain:
                assert _data_files(lake) == files, "a rejected table changed the lake"
        else:
            _answers(engine, (*tenants, *engine.store.tenants()))


# -- files on the command line -------------------------------------------------------------------


@FUZZ
@given(junk=st.binary(max_size=300), valid_first=st.booleans())
def test_random_bytes_as_parquet_store_nothing(
    junk: bytes, valid_first: bool, lake: Path, tmp_path: Path, capsys: Any
) -> None:
    good = tmp_path / "good.parquet"
    bad = tmp_path / "bad.parquet"
    extra = generate(20, seed=99, now=TEST_NOW, days=2).receipts
    pq.write_table(extra.to_arrow(), good)
    bad.write_bytes(junk)
    files = [str(good), str(bad)] if valid_first else [str(bad), str(good)]
    before = _data_files(lake)
    code, _, err = _run(capsys, "ingest", "--data", str(lake), "--table", "receipts", *files)
    assert code == 2, err
    assert "PQL-E" in err
    assert _data_files(lake) == before


@FUZZ
@given(case=hostile_tables())
def test_hostile_parquet_files_on_the_command_line(
    case: tuple[str, pa.Table], lake: Path, tmp_path: Path, capsys: Any
) -> None:
    subject, table = case
    path = tmp_path / "in.parquet"
    try:
        pq.write_table(table, path)
    except (pa.ArrowException, ValueError):
        return  # pyarrow itself cannot write this table: nothing to feed
    before = _data_files(lake)
    code, _, err = _run(capsys, "ingest", "--data", str(lake), "--table", subject, str(path))
    assert code in (0, 2), err
    if code == 2:
        assert _data_files(lake) == before
    engine = pql.Engine(lake, cache=False)
    _answers(engine, engine.store.tenants())


# -- signed documents and parameters -------------------------------------------------------------

QUERY = "FIND COUNT(*) AS n WHERE status = $status AND latency_ms > $slow AND ts > $t SINCE 30d"


@pytest.fixture(scope="module")
def signed(
    lake: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any], str]:
    keys = tmp_path_factory.mktemp("keys")
    assert main(["keys", "generate", "--out", str(keys), "--kid", "fuzz-key"]) == 0
    expires = (TEST_NOW + timedelta(days=400)).strftime("%Y-%m-%dT%H:%M:%SZ")
    argv = ["saved", "sign", "--data", str(lake), "--key", str(keys / "fuzz-key.key")]
    argv += ["--tenant", "acme", "--name", "fuzzed", "--author", "ana", "--now", NOW]
    assert main([*argv, "--expires", expires, "--param-type", "t=timestamp", QUERY]) == 0
    out = tmp_path_factory.mktemp("doc") / "doc.json"
    with out.open("w") as fh, contextlib.redirect_stdout(fh):
        assert main(["saved", "export", "--data", str(lake), "--tenant", "acme", "fuzzed"]) == 0
    return keys, json.loads(out.read_text()), "fuzzed"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "timestamp"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@FUZZ
@given(data=st.data())
def test_mangled_documents_are_refused_and_store_nothing(
    data: st.DataObject,
    signed: tuple[Path, dict[str, Any], str],
    lake: Path,
    tmp_path: Path,
    capsys: Any,
) -> None:
    keys, document, _ = signed
    doc = json.loads(json.dumps(document))
    how = data.draw(st.sampled_from(["replace", "delete", "add", "bytes", "nested"]))
    if how == "replace":
        key = data.draw(st.sampled_from(sorted(doc)))
        doc[key] = data.draw(json_values)
    elif how == "delete":
        del doc[data.draw(st.sampled_from(sorted(doc)))]
    elif how == "add":
        doc[data.draw(st.text(max_size=8))] = data.draw(json_values)
    elif how == "nested" and isinstance(doc.get("params"), dict):
        doc["params"][data.draw(st.sampled_from(["t", "status", "new"]))] = data.draw(json_values)
    raw = data.draw(st.binary(max_size=200)) if how == "bytes" else json.dumps(doc).encode()
    path = tmp_path / "doc.json"
    path.write_bytes(raw)
    _, listed, _ = _run(capsys, "saved", "list", "--data", str(lake), "--tenant", "acme")
    before = _snapshot(lake)
    code, _, err = _run(
        capsys, "saved", "import", "--data", str(lake), "--keys", str(keys), str(path)
    )
    if doc == document and how != "bytes":
        assert code == 0, err
        return
    assert code in (2, 4), err
    assert "PQL-E" in err or "PQL-A" in err
    assert _snapshot(lake) == before
    code, after, err = _run(capsys, "saved", "list", "--data", str(lake), "--tenant", "acme")
    assert code == 0, err
    assert after == listed


param_values = st.one_of(
    st.integers(-(10**400), 10**400),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "10000-01-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "nan",
            "inf",
            "-0",
            "1e309",
            str(10**400),
        ]
    ),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.binary(max_size=4),
    st.datetimes(timezones=st.sampled_from([UTC, None])),
)


@FUZZ
@given(status=param_values, slow=param_values, t=param_values)
def test_hostile_parameter_values(
    status: Any,
    slow: Any,
    t: Any,
    signed: tuple[Path, dict[str, Any], str],
    lake: Path,
    capsys: Any,
) -> None:
    keys, _, name = signed
    engine = pql.Engine(lake, cache=False)
    params = {"status": status, "slow": slow, "t": t}
    calls: list[Callable[[], pql.Result]] = [
        lambda: engine.query(QUERY, tenant="acme", now=TEST_NOW, params=params),
        lambda: engine.run_saved(
            name, tenant="acme", keyring=pql.KeyRing.from_dir(keys), params=params, now=TEST_NOW
        ),
    ]
    for call in calls:
        try:
            result = call()
        except pql.PQLError as exc:
            _user_error(exc)
        else:
            assert result.df.columns == ["n"]
    argv = ["saved", "run", "--data", str(lake), "--keys", str(keys), "--tenant", "acme", name]
    for key, value in params.items():
        argv += ["--param", f"{key}={value}"]
    code, _, err = _run(capsys, *argv, "--now", NOW)
    assert code in (0, 2, 4), err


@FUZZ
@given(moment=st.text(max_size=30) | param_values.map(str))
def test_hostile_times_when_signing_and_making_keys(moment: str, lake: Path, capsys: Any) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        keys = Path(scratch) / "k"
        argv = ["keys", "generate", "--out", str(keys), "--kid", "k1", f"--not-after={moment}"]
        code, _, err = _run(capsys, *argv)
        assert code in (0, 2), err
        if code == 0:
            pql.KeyRing.from_dir(keys)  # a key written is a key that loads
        other = Path(scratch) / "k2"
        code, _, err = _run(capsys, "keys", "generate", "--out", str(other), "--kid", "k2")
        assert code == 0, err
        name = "t-" + hashlib.sha256(moment.encode()).hexdigest()[:12]
        argv = ["saved", "sign", "--data", str(lake), "--key", str(other / "k2.key")]
        argv += ["--tenant", "acme", "--name", name, "--author", "ana", f"--expires={moment}"]
        code, _, err = _run(capsys, *argv, QUERY)
        assert code in (0, 2), err


def test_the_reviewers_examples(lake: Path, memory: pql.Engine, tmp_path: Path) -> None:
    """The concrete inputs of the hardening review, one by one."""
    row = generate(5, seed=1, now=TEST_NOW, days=1).receipts.head(1).to_arrow()
    ts = pa.array([299_000_000_000], pa.timestamp("s", tz="UTC"))
    year_11476 = row.set_column(row.column_names.index("ts"), "ts", ts)
    for engine in (memory, pql.Engine(lake, cache=False)):
        with pytest.raises(pql.PQLError) as caught:
            engine.ingest("receipts", year_11476)
        _user_error(caught.value)
        _answers(engine, ("acme",))
