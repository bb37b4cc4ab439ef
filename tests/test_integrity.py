"""Data loss and integrity: lost manifests, atomic multi-file ingest, out-of-range timestamps,
damaged files and statistics, unambiguous bucket names."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pql
from pql.catalog import RECEIPTS, Catalog
from pql.cli import main
from pql.errors import InputError, InternalError, PQLError
from pql.storage import Lake, MemoryStore
from pql.storage.base import GLOBAL_REGION
from pql.storage.lake import bucket_name, parse_bucket
from pql.storage.repair import rebuild_manifest
from pql.storage.validate import REGION_PATTERN, TENANT_PATTERN
from tests.clock import TEST_NOW

NOW = TEST_NOW.isoformat()
COUNT = "FIND COUNT(receipts.executionId) AS n SINCE 30d"
ERRORS = "FIND COUNT(*) AS n WHERE receipts.status = 'error' AND receipts.latency_ms >= 0 SINCE 30d"
"""Estimated from column statistics, so planning it reads the files' statistics: the filter on
a measure keeps it off the rollup (which a tenant read from files takes whenever it answers)."""


def receipts(
    n: int, *, tenant: str = "acme", region: str = "us-east-1", prefix: str = "e"
) -> pl.DataFrame:
    """``n`` receipts over the last ``n`` hours before the suite's clock."""
    return pl.DataFrame(
        {
            "executionId": [f"{prefix}{i}" for i in range(n)],
            "tenant": [tenant] * n,
            "region": [region] * n,
            "ts": [TEST_NOW - timedelta(hours=i + 1) for i in range(n)],
            "workflow": ["etl"] * n,
            "status": ["ok" if i % 3 else "error" for i in range(n)],
            "latency_ms": [float(i) for i in range(n)],
            "cost_usd": [None] * n,
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )


def count(engine: pql.Engine, tenant: str = "acme") -> int:
    return int(engine.query(COUNT, tenant=tenant, now=TEST_NOW, cache=False).df.item())


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def lake_dir(tmp_path: Path) -> Path:
    """A lake with two tenants' receipts (60 rows each, 3 days) and acme's decisions."""
    root = tmp_path / "lake"
    engine = pql.Engine(root)
    engine.ingest("receipts", receipts(60).with_columns(retries=pl.lit(1)))
    engine.ingest("receipts", receipts(60, tenant="globex"))
    return root


def data_file(root: Path, tenant: str = "acme") -> Path:
    return sorted(root.glob(f"mc-{tenant}-*-receipts/day=*/*.parquet"))[0]


# -- 1. a lost manifest ------------------------------------------------------------------------


def test_lake_without_manifest_is_an_error_not_an_empty_lake(lake_dir: Path) -> None:
    engine = pql.Engine(lake_dir)
    assert count(engine) == 60
    (lake_dir / "_pql" / "manifest.json").rename(lake_dir / "manifest.bak")
    for attempt in (lambda: count(engine), lambda: pql.Engine(lake_dir)):
        with pytest.raises(InputError) as caught:
            attempt()
        assert caught.value.code == "PQL-E100"
        assert "no manifest" in caught.value.message
        assert any("rebuild-manifest" in hint for hint in caught.value.hints)
    with pytest.raises(InputError, match="has data files but no manifest"):
        engine.ingest("receipts", receipts(5, prefix="new"))


def test_cleanup_never_runs_without_a_manifest(lake_dir: Path) -> None:
    before = files_under(lake_dir)
    manifest = lake_dir / "_pql" / "manifest.json"
    lake = Lake(lake_dir, Catalog())
    manifest.unlink()
    openers: list[Callable[[], Lake]] = [lambda: lake, lambda: Lake(lake_dir, Catalog())]
    for opened in openers:
        with pytest.raises(InputError) as caught:
            opened().gc_orphans(delete=True)
        assert caught.value.code == "PQL-E100"
    assert files_under(lake_dir) == [f for f in before if f != "_pql/manifest.json"]


def test_cleanup_never_runs_with_a_damaged_manifest(lake_dir: Path, capsys: Any) -> None:
    lake = Lake(lake_dir, Catalog())
    (lake_dir / "_pql" / "manifest.json").write_text('{"format": 1, "files": [')
    before = files_under(lake_dir)
    with pytest.raises(InputError) as caught:
        lake.gc_orphans(delete=True)
    assert caught.value.code == "PQL-E059"
    assert any("rebuild-manifest" in hint for hint in caught.value.hints)
    code, _, err = run(capsys, "lake", "orphans", "--data", str(lake_dir), "--delete")
    assert code == 2 and "PQL-E059" in err
    assert files_under(lake_dir) == before


def test_a_new_directory_is_still_an_empty_lake(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for root in (tmp_path / "empty", tmp_path / "absent"):
        engine = pql.Engine(root)
        assert count(engine) == 0
        assert Lake(root, Catalog()).gc_orphans(delete=True) == []
        engine.ingest("receipts", receipts(3))
        assert count(pql.Engine(root)) == 3


def test_the_first_ingest_writes_the_manifest_before_any_data_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "lake"
    seen: list[bool] = []
    original = Lake._write_file

    def write(self: Lake, *args: Any) -> Any:
        seen.append(self.manifest_path.is_file())
        return original(self, *args)

    monkeypatch.setattr(Lake, "_write_file", write)
    pql.Engine(root).ingest("receipts", receipts(30))
    assert seen and all(seen)


def test_rebuild_manifest_restores_every_answer(lake_dir: Path, capsys: Any) -> None:
    engine = pql.Engine(lake_dir)
    engine.ingest("decisions", _decisions(4))
    queries = [
        COUNT,
        "FIND COUNT(*) AS n, SUM(receipts.retries) AS r GROUP BY receipts.region SINCE 30d",
        "FIND COUNT(decisions.decisionId) AS n GROUP BY decisions.effect SINCE 30d",
    ]
    answers = {
        (q, t): engine.query(q, tenant=t, now=TEST_NOW, cache=False).rows()
        for q in queries
        for t in ("acme", "globex")
        if t == "acme" or "retries" not in q  # extra columns are per tenant: only acme's
    }
    (lake_dir / "_pql" / "manifest.json").unlink()

    code, out, err = run(capsys, "lake", "rebuild-manifest", "--data", str(lake_dir))
    assert code == 0, err
    assert "manifest rebuilt: 7 files, 124 rows, 2 tenants" in out

    fresh = pql.Engine(lake_dir)
    for (q, t), rows in answers.items():
        assert fresh.query(q, tenant=t, now=TEST_NOW, cache=False).rows() == rows
    assert fresh.store.extras("acme") == {"receipts": {"retries": pql.DataType.INT}}
    report = fresh.ingest("receipts", receipts(61))  # the keys are known again
    assert (report.written, report.duplicates) == (1, 60)


def test_rebuild_refuses_a_readable_manifest_and_keeps_a_damaged_one(
    lake_dir: Path, capsys: Any
) -> None:
    code, _, err = run(capsys, "lake", "rebuild-manifest", "--data", str(lake_dir))
    assert code == 2 and "PQL-E103" in err and "--force" in err
    manifest = lake_dir / "_pql" / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:40])  # truncated
    report = rebuild_manifest(lake_dir)
    assert report.files == 6 and report.replaced is not None
    assert (lake_dir / report.replaced).read_bytes().startswith(b'{"format":2')
    assert count(pql.Engine(lake_dir)) == 60


def test_rebuild_leaves_out_what_it_cannot_trust(lake_dir: Path) -> None:
    (lake_dir / "_pql" / "manifest.json").unlink()
    victim = data_file(lake_dir)
    victim.write_bytes(b"garbage")
    moved = sorted(lake_dir.glob("mc-globex-*/day=*/*.parquet"))[0]
    stray = lake_dir / "mc-acme-us-east-1-receipts" / moved.parent.name / moved.name
    stray.parent.mkdir(exist_ok=True)
    shutil.copy(moved, stray)  # globex's rows in acme's bucket
    report = rebuild_manifest(lake_dir)
    reasons = dict(report.skipped)
    assert reasons[str(victim.relative_to(lake_dir))] == "it is not a Parquet file"
    assert "another tenant" in reasons[str(stray.relative_to(lake_dir))]
    assert report.files == 5
    assert count(pql.Engine(lake_dir), "globex") == 60


# -- 2. one command, one ingest ----------------------------------------------------------------


def _two_files(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(receipts(10, prefix="a").with_columns(retries=pl.lit(1)).to_arrow(), a)
    pq.write_table(receipts(10, prefix="b").with_columns(retries=pl.lit("x")).to_arrow(), b)
    return a, b


def test_cli_ingest_of_several_files_is_all_or_nothing(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    lake = tmp_path / "lake"
    _two_files(tmp_path)
    code, _, err = run(
        capsys, "ingest", "--data", "lake", "--table", "receipts", "a.parquet", "b.parquet"
    )
    assert code == 2 and "PQL-E052" in err
    assert "b.parquet: column receipts.retries is string in this file but int in a.parquet" in err
    assert not list(lake.rglob("*.parquet"))
    assert count(pql.Engine(lake)) == 0


def test_cli_ingest_commits_all_files_once(tmp_path: Path, capsys: Any) -> None:
    lake = tmp_path / "lake"
    a, c = tmp_path / "a.parquet", tmp_path / "c.parquet"
    pq.write_table(receipts(10, prefix="a").with_columns(retries=pl.lit(1)).to_arrow(), a)
    pq.write_table(receipts(12, prefix="a").to_arrow(), c)  # 10 repeat a.parquet's keys
    code, out, _ = run(capsys, "ingest", "--data", str(lake), "--table", "receipts", str(a), str(c))
    assert code == 0
    assert "2 duplicates" not in out and "12 of 22 rows stored, 10 duplicates skipped" in out
    assert Lake(lake, Catalog()).version("acme") == 1  # one commit
    engine = pql.Engine(lake)
    assert count(engine) == 12
    nulls = "FIND COUNT(*) AS n WHERE receipts.retries IS NULL SINCE 30d"
    assert engine.query(nulls, tenant="acme", now=TEST_NOW).df.item() == 2


@pytest.mark.parametrize("kind", ["memory", "lake", "indexed"])
def test_python_ingest_of_several_tables_is_all_or_nothing(tmp_path: Path, kind: str) -> None:
    engine = _engine(kind, tmp_path)
    good = receipts(5, prefix="g").with_columns(retries=pl.lit(1))
    bad = receipts(5, prefix="b").with_columns(retries=pl.lit("x"))
    with pytest.raises(InputError) as caught:
        engine.ingest("receipts", [good, bad.to_arrow()])
    assert caught.value.code == "PQL-E052" and caught.value.message.startswith("input 1:")
    assert engine.store.version("acme") == 0 and count(engine) == 0
    report = engine.ingest("receipts", [good, receipts(3, prefix="x")])
    assert (report.written, engine.store.version("acme")) == (8, 1)


# -- 3. timestamps outside the years 1 to 9999 -------------------------------------------------


def _engine(kind: str, tmp_path: Path) -> pql.Engine:
    if kind == "memory":
        return pql.Engine.in_memory()
    return pql.Engine(tmp_path / kind, index=kind == "indexed")


FAR = 300_000_000_000_000_000  # µs since the epoch: the year 11476


def _far_ts(frame: pl.DataFrame, row: int, column: str = "ts") -> pl.DataFrame:
    values = frame.get_column("ts").dt.epoch("us").to_list()
    values[row] = FAR
    return frame.with_columns(pl.Series(column, values).cast(pl.Datetime("us", "UTC")))


OUT_OF_RANGE: list[tuple[str, Callable[[], pl.DataFrame | pa.Table], str, str]] = [
    ("year 11476", lambda: _far_ts(receipts(5), 3), "ts", "row 3"),
    ("extra column", lambda: _far_ts(receipts(5), 1, "due"), "due", "row 1"),
    (
        "before year 1",
        lambda: receipts(2).with_columns(
            ts=pl.Series([0, -62_135_596_800_000_001]).cast(pl.Datetime("us", "UTC"))
        ),
        "ts",
        "row 1",
    ),
    (
        "milliseconds",
        lambda: receipts(2).with_columns(ts=pl.Series([0, 10**16]).cast(pl.Datetime("ms"))),
        "ts",
        "row 1",
    ),
    (
        "arrow seconds that would wrap",
        lambda: (
            receipts(2).to_arrow().set_column(3, "ts", pa.array([0, 9 * 10**17], pa.timestamp("s")))
        ),
        "ts",
        "row 1",
    ),
]


@pytest.mark.parametrize("kind", ["memory", "lake", "indexed"])
@pytest.mark.parametrize(
    ("make", "column", "row"),
    [case[1:] for case in OUT_OF_RANGE],
    ids=[case[0] for case in OUT_OF_RANGE],
)
def test_timestamps_outside_years_1_to_9999_are_rejected_whole(
    tmp_path: Path, kind: str, make: Callable[[], Any], column: str, row: str
) -> None:
    engine = _engine(kind, tmp_path)
    with pytest.raises(InputError) as caught:
        engine.ingest("receipts", make())
    error = caught.value
    assert error.code == "PQL-E101" and error.exit_code == 2
    assert f"column {column} " in error.message and row in error.message
    assert engine.store.version("acme") == 0 and count(engine) == 0
    assert not list(tmp_path.rglob("*.parquet"))
    engine.ingest("receipts", receipts(4))
    assert count(engine) == 4


def test_cli_names_the_file_with_the_bad_timestamp(tmp_path: Path, capsys: Any) -> None:
    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    pq.write_table(receipts(3, prefix="g").to_arrow(), good)
    pq.write_table(_far_ts(receipts(5), 2).to_arrow(), bad)
    lake = tmp_path / "lake"
    code, _, err = run(
        capsys, "ingest", "--data", str(lake), "--table", "receipts", str(good), str(bad)
    )
    assert code == 2 and "PQL-E101" in err and f"{bad}: column ts" in err and "row 2" in err
    assert not list(lake.rglob("*.parquet"))


def test_memory_store_keeps_answering_after_a_rejected_year() -> None:
    store = MemoryStore(Catalog())
    with pytest.raises(PQLError):
        store.ingest(RECEIPTS, _far_ts(receipts(5), 0))
    assert store.tenants() == ()


# -- 6. damaged files and statistics -----------------------------------------------------------

DAMAGE: dict[str, Callable[[Path], object]] = {
    "garbage": lambda path: path.write_bytes(b"garbage\n"),
    "missing": lambda path: path.unlink(),
    "truncated": lambda path: path.write_bytes(path.read_bytes()[:-9]),
    "inside": lambda path: _damage_inside(path),
}


def _damage_inside(path: Path) -> None:
    """Overwrite the data pages: same size, same Parquet markers, unreadable rows."""
    raw = bytearray(path.read_bytes())
    footer = int.from_bytes(raw[-8:-4], "little")
    for i in range(4, len(raw) - footer - 8):
        raw[i] = (raw[i] * 31 + 7) % 256
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_file_is_named_and_quarantine_is_the_way_out(
    lake_dir: Path, damage: str, capsys: Any
) -> None:
    victim = data_file(lake_dir)
    relative = str(victim.relative_to(lake_dir))
    rows = pl.read_parquet(victim).height
    shutil.rmtree(lake_dir / "_pql" / "stats")  # statistics must read the files again
    DAMAGE[damage](victim)
    engine = pql.Engine(lake_dir)
    attempts: list[Callable[[], object]] = [
        lambda: count(engine),
        lambda: engine.explain(ERRORS, tenant="acme", now=TEST_NOW),
        lambda: engine.explain(COUNT, tenant="acme", now=TEST_NOW, analyze=True),
        lambda: engine.ingest("receipts", receipts(3, prefix="new")),
        lambda: pql.Engine(lake_dir, index=True).query(COUNT, tenant="acme", now=TEST_NOW),
    ]
    for attempt in attempts:
        with pytest.raises(InputError) as caught:
            attempt()
        assert caught.value.code == "PQL-E102", caught.value
        assert relative in caught.value.message and "'acme'" in caught.value.message
        assert any(
            f"pql lake quarantine --data {lake_dir} {relative}" in h for h in caught.value.hints
        )
    assert count(engine, "globex") == 60  # other tenants are not affected
    # A plan that reads no column statistics is still explained (COUNT would now read the
    # rollup, whose estimate summarises the window's files, and name the damaged one).
    assert "Scan receipts" in str(
        engine.explain("FIND receipts SINCE 30d", tenant="acme", now=TEST_NOW)
    )

    code, out, _ = run(capsys, "lake", "quarantine", "--data", str(lake_dir), relative)
    assert code == 0 and f"{rows:,} rows of acme's receipts" in out
    assert (lake_dir / "_pql" / "quarantine" / relative).exists() == (damage != "missing")
    for fresh in (engine, pql.Engine(lake_dir), pql.Engine(lake_dir, index=True)):
        assert count(fresh) == 60 - rows
    report = engine.ingest("receipts", receipts(3, prefix="new"))
    assert report.written == 3 and count(engine) == 63 - rows
    assert not Lake(lake_dir, Catalog()).gc_orphans()


def test_quarantine_refuses_a_file_the_lake_does_not_list(lake_dir: Path, capsys: Any) -> None:
    code, _, err = run(capsys, "lake", "quarantine", "--data", str(lake_dir), "nope.parquet")
    assert code == 2 and "PQL-E103" in err
    assert "give the file as the error named it, e.g. mc-.../day=.../part-..." in err


def test_a_quarantine_gives_the_tenant_a_version_it_never_had(lake_dir: Path) -> None:
    """Caches and snapshots are keyed by the tenant's version: after a quarantine it must be
    new, never an earlier one whose cached answers still hold the file's rows."""
    lake = Lake(lake_dir, Catalog())
    before = lake.manifest().versions["acme"]
    lake.quarantine(data_file(lake_dir))
    assert Lake(lake_dir, Catalog()).manifest().versions["acme"] > before


def test_a_failed_read_names_the_file_that_turns_out_damaged(lake_dir: Path) -> None:
    """A read of several files fails; the file found damaged afterwards is named with why."""
    lake = Lake(lake_dir, Catalog())
    entries = lake.manifest().files_of("acme", "receipts")
    victim = entries[-1]
    (lake_dir / victim.path).write_bytes(b"PAR1 cut short")
    error = lake.read_error(entries, OSError("read failed"))
    assert error.code == "PQL-E102" and victim.path in error.message
    problem = f"it has 14 bytes, the manifest says {victim.bytes:,}"
    assert error.details["problem"] == problem and error.message.endswith(problem)


def test_rebuild_counts_a_key_shared_by_two_tenants_as_no_duplicate(lake_dir: Path) -> None:
    """acme's and globex's receipts use the same keys (e0, e1, ...): a key is unique within
    one tenant's subject, so the rebuild finds no duplicates, until a tenant repeats one."""
    (lake_dir / "_pql" / "manifest.json").unlink()
    assert rebuild_manifest(lake_dir).duplicates == 0
    victim = data_file(lake_dir, "globex")
    copy = victim.with_name("part-copy.parquet")
    shutil.copyfile(victim, copy)  # globex's rows of one file, twice
    assert rebuild_manifest(lake_dir, force=True).duplicates == pl.read_parquet(victim).height


def test_a_copy_lands_in_a_folder_that_already_exists(lake_dir: Path) -> None:
    """Migration copies a tenant's files one by one: the day's folder in the new region may
    already be there (an earlier file of that day, an interrupted run)."""
    lake = Lake(lake_dir, Catalog())
    entry = lake.manifest().files_of("acme", "receipts")[0]
    target = lake_dir / lake.relocated(entry, "eu-west-1").path
    target.parent.mkdir(parents=True)
    copied = lake.copy_to(entry, "eu-west-1")
    assert target.read_bytes() == (lake_dir / entry.path).read_bytes()
    assert copied.storage == "eu-west-1" and copied.path == str(target.relative_to(lake_dir))


def test_two_tenants_storing_an_extra_column_as_different_types_are_named() -> None:
    from pql.storage.validate import _tenants_disagree

    error = _tenants_disagree(
        RECEIPTS, "retries", {"acme": pql.DataType.INT, "globex": pql.DataType.STRING}
    )
    assert error.code == "PQL-E052"
    assert error.message == (
        "column receipts.retries is int in tenant acme's stored data and string in tenant "
        "globex's; one input cannot hold both"
    )
    assert error.hints == ("ingest each tenant's rows separately",)
    assert error.details == {
        "subject": "receipts",
        "column": "retries",
        "tenants": ["acme", "globex"],
    }


@pytest.mark.parametrize("content", ["[]", '{"format": 2, "files": 5}', '{"format": ', ""])
def test_unreadable_statistics_are_rebuilt(lake_dir: Path, content: str) -> None:
    sidecar = lake_dir / "_pql" / "stats" / "acme" / "receipts.json"
    assert sidecar.is_file()
    expected = pql.Engine(lake_dir).explain(ERRORS, tenant="acme", now=TEST_NOW).estimated_rows
    sidecar.write_text(content)
    engine = pql.Engine(lake_dir)
    assert engine.query(ERRORS, tenant="acme", now=TEST_NOW).df.item() == 20
    assert engine.explain(ERRORS, tenant="acme", now=TEST_NOW).estimated_rows == expected
    assert isinstance(json.loads(sidecar.read_text()), dict)


def test_statistics_forget_a_quarantined_file(lake_dir: Path) -> None:
    engine = pql.Engine(lake_dir)
    victim = data_file(lake_dir)
    rows = pl.read_parquet(victim).height
    Lake(lake_dir, Catalog()).quarantine(victim)
    summary = engine.statistics.summary("acme", "receipts")
    assert summary is not None and summary.rows == 60 - rows


# -- 8. bucket names ---------------------------------------------------------------------------

tenants = st.from_regex(TENANT_PATTERN, fullmatch=True)
regions = st.one_of(st.from_regex(REGION_PATTERN, fullmatch=True), st.just(GLOBAL_REGION))
subjects = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True)
triples = st.tuples(tenants, regions, subjects)


@given(triples)
def test_a_bucket_name_reads_back_as_its_tenant_region_and_subject(
    triple: tuple[str, str, str],
) -> None:
    assert parse_bucket(bucket_name(*triple)) == triple


def _near(triple: tuple[str, str, str]) -> st.SearchStrategy[tuple[str, str, str]]:
    """Triples that move ``-``-separated parts between the tenant and the region."""
    tenant, region, subject = triple
    parts = f"{tenant}-{region}".split("-")
    return st.integers(1, len(parts) - 1).map(
        lambda cut: ("-".join(parts[:cut]), "-".join(parts[cut:]), subject)
    )


@given(triples.flatmap(lambda t: st.tuples(st.just(t), st.one_of(triples, _near(t)))))
def test_no_two_triples_share_a_bucket(pair: tuple[tuple[str, ...], tuple[str, ...]]) -> None:
    first, second = pair
    valid = [
        t
        for t in pair
        if re.fullmatch(TENANT_PATTERN, t[0])
        and (t[1] == GLOBAL_REGION or re.fullmatch(REGION_PATTERN, t[1]))
    ]
    if len(valid) == 2 and first != second:
        assert bucket_name(*first) != bucket_name(*second)


def test_the_issue_collision_is_refused() -> None:
    assert bucket_name("acme", "us-east-1", "receipts") == "mc-acme-us-east-1-receipts"
    with pytest.raises(InternalError) as caught:
        bucket_name("acme-us", "east-1", "receipts")
    assert caught.value.code == "PQL-X110"


@pytest.mark.parametrize("region", ["east-1", "us-east", "useast1", "us-gov-west-1", "US-EAST-1"])
def test_regions_of_another_shape_are_refused_at_ingest(tmp_path: Path, region: str) -> None:
    engine = pql.Engine(tmp_path / "lake")
    with pytest.raises(InputError) as caught:
        engine.ingest("receipts", receipts(3, tenant="acme-us", region=region))
    assert caught.value.code == "PQL-E058" and repr(region) in caught.value.message
    assert not (tmp_path / "lake").exists()


def test_demo_regions_are_valid() -> None:
    from pql.demo import REGIONS

    assert all(re.fullmatch(REGION_PATTERN, r) for r in REGIONS)


def _decisions(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "decisionId": [f"d{i}" for i in range(n)],
            "executionId": [f"e{i}" for i in range(n)],
            "tenant": ["acme"] * n,
            "region": ["eu-west-1"] * n,
            "ts": [TEST_NOW - timedelta(hours=i + 1) for i in range(n)],
            "rule": ["r"] * n,
            "effect": ["deny" if i % 2 else "allow" for i in range(n)],
            "policy_version": ["v1"] * n,
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )
