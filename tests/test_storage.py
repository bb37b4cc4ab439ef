"""Storage: validation, deduplication, atomic append-only lake, memory store, pruning, tenancy."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pql.storage.lake as lake_module
from pql.catalog import DECISIONS, RECEIPTS, Catalog, DataType, Subject
from pql.errors import InputError, PQLError, SafetyError
from pql.storage import IndexedLake, IngestReport, Lake, MemoryStore, Store, validate
from pql.storage.base import LookupStore, RowsKeyStore, provides
from pql.storage.rollup_files import ROLLUP_DIR
from pql.storage.rollups import RollupStore
from pql.storage.s3 import S3Lake

T0 = datetime(2024, 3, 1, tzinfo=UTC)
ALL_TIME = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
REPO = Path(__file__).resolve().parents[1]


# -- data --------------------------------------------------------------------------------------


def receipts(
    n: int,
    *,
    tenant: str = "acme",
    region: str = "us-east-1",
    start: datetime = T0,
    step: timedelta = timedelta(hours=1),
    prefix: str = "e",
    first: int = 0,
) -> pl.DataFrame:
    """``n`` valid receipts with keys ``{prefix}{i}``; receipt ``i`` is at ``start + i * step``."""
    ids = range(first, first + n)
    return pl.DataFrame(
        {
            "executionId": [f"{prefix}{i}" for i in ids],
            "tenant": [tenant] * n,
            "region": [region] * n,
            "ts": [start + step * i for i in ids],
            "workflow": ["etl" if i % 2 else "billing" for i in ids],
            "status": ["ok" if i % 3 else "error" for i in ids],
            "latency_ms": [float(i) for i in ids],
            "cost_usd": [None if i % 5 == 0 else i / 100 for i in ids],
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )


def decisions(n: int, *, tenant: str = "acme", start: datetime = T0) -> pl.DataFrame:
    """``n`` valid decisions; every third has no execution."""
    return pl.DataFrame(
        {
            "decisionId": [f"d{i}" for i in range(n)],
            "executionId": [None if i % 3 == 0 else f"e{i}" for i in range(n)],
            "tenant": [tenant] * n,
            "region": ["eu-west-1"] * n,
            "ts": [start + timedelta(minutes=7 * i) for i in range(n)],
            "rule": [f"r{i % 4}" for i in range(n)],
            "effect": ["deny" if i % 4 == 0 else "allow" for i in range(n)],
            "policy_version": ["v1"] * n,
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC"), "executionId": pl.String},
    )


def everything(store: Store, tenant: str, subject: Subject = RECEIPTS) -> pl.DataFrame:
    """All of ``tenant``'s rows in ``subject``, in the subject's order."""
    scan = store.scan(tenant, subject, *ALL_TIME)
    return scan.frame.collect().sort(list(subject.order))


# -- stores ------------------------------------------------------------------------------------


@dataclass
class Kit:
    """A store under test, how to reopen it, and what is stored (for a lake or S3)."""

    kind: str
    catalog: Catalog
    store: Store
    root: Path
    s3: dict[str, Any] | None = None

    def reopen(self) -> Store:
        """A fresh store (new catalog) over the same data; the same object for memory."""
        if self.kind == "memory":
            return self.store
        if self.s3 is not None:
            return S3Lake(S3_LOCATION, Catalog(), **self.s3)
        return Lake(self.root, Catalog())

    def snapshot(self) -> tuple[bytes | None, frozenset[str]]:
        """The manifest bytes and every file under the root (empty for memory); on S3, every
        version of every object in every bucket, so any write shows."""
        if self.s3 is not None:
            return None, s3_versions(self.s3)
        manifest = self.root / "_pql" / "manifest.json"
        files = frozenset(
            str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()
        )
        return (manifest.read_bytes() if manifest.exists() else None), files


S3_LOCATION = "s3://pql-meta/storage"


def s3_versions(options: dict[str, Any]) -> frozenset[str]:
    """``bucket/key@version`` of every object version and delete marker on the server."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=options["endpoint_url"],
        aws_access_key_id=options["access_key"],
        aws_secret_access_key=options["secret_key"],
        region_name="us-east-1",
    )
    found = set()
    for bucket in client.list_buckets().get("Buckets", []):
        pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket["Name"])
        for page in pages:
            for item in (*page.get("Versions", []), *page.get("DeleteMarkers", [])):
                found.add(f"{bucket['Name']}/{item['Key']}@{item['VersionId']}")
    return frozenset(found)


@pytest.fixture(params=["lake", "memory", "s3"])
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Kit:
    """Each store the engine can keep data in: the local lake, memory and S3 (moto's server)."""
    catalog = Catalog()
    root = tmp_path / "lake"
    if request.param == "s3":
        options: dict[str, Any] = request.getfixturevalue("s3")
        return Kit("s3", catalog, S3Lake(S3_LOCATION, catalog, **options), root, options)
    store: Store = Lake(root, catalog) if request.param == "lake" else MemoryStore(catalog)
    return Kit(request.param, catalog, store, root)


@pytest.fixture
def lake_kit(tmp_path: Path) -> Kit:
    catalog = Catalog()
    root = tmp_path / "lake"
    return Kit("lake", catalog, Lake(root, catalog), root)


def parquet_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet"))


# -- round trip --------------------------------------------------------------------------------


def test_stores_implement_the_protocol(kit: Kit) -> None:
    assert isinstance(kit.store, Store)


def test_provides_answers_as_isinstance_does(kit: Kit) -> None:
    """``provides`` decides once per type of store what ``isinstance`` decides every time."""
    stores: list[object] = [kit.store, object()]
    if isinstance(kit.store, Lake | S3Lake):
        stores.append(IndexedLake(kit.store, kit.catalog, background=False))
    for store in stores:
        for protocol in (Store, LookupStore, RowsKeyStore, RollupStore):
            for _ in range(2):  # decided, then remembered
                assert provides(store, protocol) is isinstance(store, protocol)
    assert provides(MemoryStore(kit.catalog), RowsKeyStore)
    assert not provides(Lake(kit.root, kit.catalog), RowsKeyStore)


def test_round_trip_receipts_and_decisions(kit: Kit) -> None:
    rows = receipts(50)
    report = kit.store.ingest(RECEIPTS, rows)
    expected = IngestReport("receipts", 50, 50, 0, ("acme",), 3, ())
    assert dataclasses.replace(report, files=()) == expected
    assert len(report.files) in (0, 3)  # the files written: none in memory, one a day in a lake
    assert all(f.startswith("mc-acme-us-east-1-receipts/day=") for f in report.files)
    got = everything(kit.store, "acme")
    assert got.schema == pl.Schema(RECEIPTS.polars_schema())
    assert got.equals(rows)

    made = decisions(20)
    assert kit.store.ingest(DECISIONS, made).written == 20
    back = everything(kit.store, "acme", DECISIONS)
    assert back.equals(made.sort(list(DECISIONS.order)))
    assert back.schema == pl.Schema(DECISIONS.polars_schema())


def test_round_trip_survives_reopen(kit: Kit) -> None:
    kit.store.ingest(RECEIPTS, receipts(30))
    again = kit.reopen()
    assert everything(again, "acme").equals(receipts(30))
    assert again.tenants() == ("acme",)
    assert again.version("acme") == 1


def test_pyarrow_input_with_dictionary_and_view_strings(kit: Kit) -> None:
    table = receipts(10).to_arrow()
    status = table.column("status").combine_chunks().dictionary_encode()
    workflow = table.column("workflow").cast(pa.string_view())
    region = table.column("region").cast(pa.large_string())
    table = table.set_column(table.schema.get_field_index("status"), "status", status)
    table = table.set_column(table.schema.get_field_index("workflow"), "workflow", workflow)
    table = table.set_column(table.schema.get_field_index("region"), "region", region)
    assert kit.store.ingest(RECEIPTS, table).written == 10
    assert everything(kit.store, "acme").equals(receipts(10))


def test_projection_and_empty_scan_keep_the_schema(kit: Kit) -> None:
    empty = kit.store.scan("acme", RECEIPTS, *ALL_TIME)
    assert (empty.partitions, empty.rows) == (0, 0)
    assert empty.frame.collect().schema == pl.Schema(RECEIPTS.polars_schema())
    kit.store.ingest(RECEIPTS, receipts(5))
    scan = kit.store.scan("acme", RECEIPTS, *ALL_TIME, columns=["ts", "executionId"])
    assert scan.frame.collect().columns == ["ts", "executionId"]
    nothing = kit.store.scan("nobody", RECEIPTS, *ALL_TIME, columns=["status"])
    assert nothing.frame.collect().schema == pl.Schema({"status": pl.String})


def test_empty_input_writes_nothing(kit: Kit) -> None:
    before = kit.snapshot()
    report = kit.store.ingest(RECEIPTS, receipts(0))
    assert (report.rows_in, report.written, report.partitions, report.tenants) == (0, 0, 0, ())
    assert kit.snapshot() == before
    assert kit.store.version("acme") == 0


def test_nullable_columns_accept_nulls(kit: Kit) -> None:
    rows = receipts(4).with_columns(latency_ms=pl.lit(None, pl.Float64))
    assert kit.store.ingest(RECEIPTS, rows).written == 4
    assert everything(kit.store, "acme")["latency_ms"].null_count() == 4


def test_float_columns_accept_integers(kit: Kit) -> None:
    rows = receipts(3).with_columns(latency_ms=pl.Series([1, 2, 3], dtype=pl.Int32))
    kit.store.ingest(RECEIPTS, rows)
    got = everything(kit.store, "acme")["latency_ms"]
    assert got.dtype == pl.Float64
    assert got.to_list() == [1.0, 2.0, 3.0]


# -- duplicates --------------------------------------------------------------------------------


def test_duplicates_within_one_input_keep_the_first(kit: Kit) -> None:
    rows = receipts(10)
    repeat = rows.head(3).with_columns(status=pl.lit("changed"))
    report = kit.store.ingest(RECEIPTS, pl.concat([rows, repeat]))
    assert (report.rows_in, report.written, report.duplicates) == (13, 10, 3)
    assert report.duplicate_keys == ("e0", "e1", "e2")
    stored = everything(kit.store, "acme")
    assert stored.equals(rows)
    assert "changed" not in stored["status"].to_list()


def test_duplicates_across_ingests_and_reopen(kit: Kit) -> None:
    kit.store.ingest(RECEIPTS, receipts(10))
    report = kit.store.ingest(RECEIPTS, receipts(10, first=5))
    assert (report.written, report.duplicates) == (5, 5)
    assert report.duplicate_keys == ("e5", "e6", "e7", "e8", "e9")
    again = kit.reopen()
    third = again.ingest(RECEIPTS, receipts(20))
    assert (third.written, third.duplicates) == (5, 15)
    assert everything(again, "acme").equals(receipts(20))


def test_all_duplicates_write_nothing(kit: Kit) -> None:
    kit.store.ingest(RECEIPTS, receipts(8))
    before = kit.snapshot()
    if kit.kind != "memory":  # the snapshot sees what is stored, so an unchanged one means it
        assert before[1]
    report = kit.store.ingest(RECEIPTS, receipts(8))
    assert (report.written, report.duplicates, report.partitions) == (0, 8, 0)
    assert kit.snapshot() == before
    assert kit.store.version("acme") == 1


def test_duplicate_keys_are_capped_at_twenty(kit: Kit) -> None:
    kit.store.ingest(RECEIPTS, receipts(30))
    report = kit.store.ingest(RECEIPTS, receipts(30))
    assert report.duplicates == 30
    assert len(report.duplicate_keys) == 20


def test_same_key_in_two_tenants_is_not_a_duplicate(kit: Kit) -> None:
    kit.store.ingest(RECEIPTS, receipts(5, tenant="acme"))
    report = kit.store.ingest(RECEIPTS, receipts(5, tenant="globex"))
    assert (report.written, report.duplicates) == (5, 0)
    assert kit.store.tenants() == ("acme", "globex")


def test_same_key_in_another_region_is_a_duplicate(kit: Kit) -> None:
    kit.store.ingest(RECEIPTS, receipts(5, region="us-east-1"))
    report = kit.store.ingest(RECEIPTS, receipts(5, region="eu-west-1"))
    assert (report.written, report.duplicates) == (0, 5)


def test_decisions_deduplicate_on_decision_id(kit: Kit) -> None:
    kit.store.ingest(DECISIONS, decisions(6))
    report = kit.store.ingest(DECISIONS, decisions(9))
    assert (report.written, report.duplicates) == (3, 6)
    assert report.duplicate_keys[:2] == ("d0", "d1")


def test_keys_read_for_one_tenant_or_subject_are_not_lent_to_another(kit: Kit) -> None:
    """A store that keeps the keys it has read (the S3 store, per tenant and subject) checks
    another tenant's or subject's rows with the same keys against their own keys only."""
    kit.store.ingest(RECEIPTS, receipts(5, prefix="k"))
    again = kit.store.ingest(RECEIPTS, receipts(5, prefix="k"))  # acme's receipt keys are read
    assert (again.written, again.duplicates) == (0, 5)
    tenant = kit.store.ingest(RECEIPTS, receipts(5, tenant="globex", prefix="k"))
    assert (tenant.written, tenant.duplicates) == (5, 0)
    same_ids = decisions(5).with_columns(pl.col("decisionId").str.replace("d", "k"))
    subject = kit.store.ingest(DECISIONS, same_ids)
    assert (subject.written, subject.duplicates) == (5, 0)
    for who, what in (("acme", RECEIPTS), ("globex", RECEIPTS), ("acme", DECISIONS)):
        assert everything(kit.store, who, what).height == 5


_CONCURRENT = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime, timedelta
    import polars as pl
    from pql.catalog import RECEIPTS, Catalog
    from pql.storage import Lake
    n = 3000
    rows = pl.DataFrame({
        "executionId": [f"e{i}" for i in range(n)], "tenant": ["acme"] * n,
        "region": ["us-east-1"] * n,
        "ts": [datetime(2024, 3, 1, tzinfo=UTC) + timedelta(minutes=i) for i in range(n)],
        "workflow": ["etl"] * n, "status": ["ok"] * n, "latency_ms": [1.0] * n,
        "cost_usd": [0.5] * n,
    })
    lake = Lake(sys.argv[1], Catalog())
    for part in range(3):
        report = lake.ingest(RECEIPTS, rows.slice(part * 1000, 2000))
        print(report.written, report.duplicates)
    """
)


def test_concurrent_processes_store_each_record_once(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONCURRENT, str(root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    counts = [tuple(map(int, line.split())) for out, _ in outputs for line in out.splitlines()]
    assert sum(written for written, _ in counts) == 3000
    assert sum(written + dups for written, dups in counts) == 3 * (2000 + 2000 + 1000)
    lake = Lake(root, Catalog())
    stored = everything(lake, "acme")
    assert stored.height == 3000
    assert stored["executionId"].n_unique() == 3000
    assert lake.version("acme") == sum(1 for written, _ in counts if written)


# -- rejection ---------------------------------------------------------------------------------


def _with(rows: pl.DataFrame, row: int, **values: Any) -> pl.DataFrame:
    """``rows`` with the given columns replaced at one row."""
    out = rows.with_row_index("__i")
    for name, value in values.items():
        dtype = rows.schema[name]
        out = out.with_columns(
            pl.when(pl.col("__i") == row)
            .then(pl.lit(value, dtype=dtype))
            .otherwise(pl.col(name))
            .alias(name)
        )
    return out.drop("__i")


BAD_INPUTS: list[tuple[str, Subject, Callable[[], pl.DataFrame], str, tuple[str, ...]]] = [
    (
        "missing columns",
        RECEIPTS,
        lambda: receipts(5).drop("status", "cost_usd"),
        "PQL-E050",
        ("status", "cost_usd"),
    ),
    (
        "wrong type",
        RECEIPTS,
        lambda: receipts(5).with_columns(latency_ms=pl.col("latency_ms").cast(pl.String)),
        "PQL-E051",
        ("latency_ms", "String", "float64"),
    ),
    (
        "date for ts",
        RECEIPTS,
        lambda: receipts(5).with_columns(ts=pl.col("ts").dt.date()),
        "PQL-E051",
        ("column ts", "Date", "timestamp"),
    ),
    (
        "null key",
        RECEIPTS,
        lambda: _with(receipts(5), 3, executionId=None),
        "PQL-E053",
        ("executionId", "row 3"),
    ),
    (
        "null ts",
        RECEIPTS,
        lambda: _with(receipts(5), 2, ts=None),
        "PQL-E053",
        ("column ts", "row 2"),
    ),
    (
        "bad tenant",
        RECEIPTS,
        lambda: _with(receipts(5), 4, tenant="Acme Corp"),
        "PQL-E054",
        ("'Acme Corp'", "row 4"),
    ),
    (
        "one-letter tenant",
        RECEIPTS,
        lambda: _with(receipts(5), 0, tenant="a"),
        "PQL-E054",
        ("'a'", "row 0"),
    ),
    (
        "path in region",
        RECEIPTS,
        lambda: _with(receipts(5), 1, region="../etc"),
        "PQL-E058",
        ("'../etc'", "row 1"),
    ),
    (
        "bad effect",
        DECISIONS,
        lambda: _with(decisions(6), 5, effect="maybe"),
        "PQL-E055",
        ("effect", "'maybe'", "row 5", "allow"),
    ),
    (
        "unsupported extra",
        RECEIPTS,
        lambda: receipts(3).with_columns(tags=pl.Series([["a"], [], ["b"]])),
        "PQL-E056",
        ("tags",),
    ),
]


@pytest.mark.parametrize(
    ("subject", "make", "code", "mentions"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_is_rejected_whole(
    kit: Kit,
    subject: Subject,
    make: Callable[[], pl.DataFrame],
    code: str,
    mentions: tuple[str, ...],
) -> None:
    kit.store.ingest(RECEIPTS, receipts(3, prefix="keep"))
    before = kit.snapshot()
    with pytest.raises(InputError) as caught:
        kit.store.ingest(subject, make())
    error = caught.value
    assert error.code == code
    assert error.exit_code == 2
    text = error.message + " ".join(error.hints)
    for word in mentions:
        assert word in text, (word, text)
    assert kit.snapshot() == before
    assert kit.store.version("acme") == 1
    assert everything(kit.store, "acme")["executionId"].to_list() == ["keep0", "keep1", "keep2"]
    assert "tags" not in kit.catalog.for_tenant("acme")[subject.name]


def test_missing_column_lists_them_all_with_a_suggestion() -> None:
    rows = receipts(2).rename({"executionId": "executionid"}).drop("workflow")
    with pytest.raises(InputError) as caught:
        validate(RECEIPTS, rows, Catalog())
    assert "executionId, workflow" in caught.value.message
    assert any("'executionid'" in hint for hint in caught.value.hints)


def test_rejected_input_does_not_create_the_lake(tmp_path: Path) -> None:
    root = tmp_path / "new"
    lake = Lake(root, Catalog())
    with pytest.raises(InputError):
        lake.ingest(RECEIPTS, receipts(2).drop("ts"))
    assert not root.exists()
    lake.ingest(RECEIPTS, receipts(2))
    assert (root / "_pql" / "manifest.json").is_file()


def test_non_table_input_is_refused() -> None:
    with pytest.raises(InputError, match=r"pyarrow\.Table or a polars\.DataFrame"):
        validate(RECEIPTS, [{"executionId": "x"}], Catalog())


def test_integer_overflow_is_an_input_error() -> None:
    rows = receipts(1).with_columns(big=pl.Series([2**64 - 1], dtype=pl.UInt64))
    with pytest.raises(InputError) as caught:
        validate(RECEIPTS, rows, Catalog())
    assert caught.value.code == "PQL-E051"


# -- timestamps --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype",
    [
        pl.Datetime("ms", "UTC"),
        pl.Datetime("ns", "UTC"),
        pl.Datetime("us"),
        pl.Datetime("ms"),
        pl.Datetime("ns"),
    ],
    ids=str,
)
def test_ts_is_normalized_to_micro_seconds_utc(kit: Kit, dtype: pl.Datetime) -> None:
    rows = receipts(5, step=timedelta(hours=5, milliseconds=1))
    naive = rows.with_columns(pl.col("ts").dt.replace_time_zone(None))
    source = naive if dtype.time_zone is None else rows
    kit.store.ingest(RECEIPTS, source.with_columns(pl.col("ts").cast(dtype)))
    got = everything(kit.store, "acme")
    assert got.schema["ts"] == pl.Datetime("us", "UTC")
    assert got["ts"].to_list() == rows["ts"].to_list()


def test_other_time_zones_are_converted_to_utc() -> None:
    rows = receipts(3)
    paris = rows.with_columns(pl.col("ts").dt.convert_time_zone("Europe/Paris"))
    out = validate(RECEIPTS, paris, Catalog())
    assert out["ts"].dtype == pl.Datetime("us", "UTC")
    assert out["ts"].to_list() == rows["ts"].to_list()


def test_validate_returns_canonical_types_and_leaves_the_catalog_alone() -> None:
    catalog = Catalog()
    rows = receipts(3).with_columns(
        pl.col("status").cast(pl.Categorical),
        pl.col("ts").dt.replace_time_zone(None).dt.cast_time_unit("ns"),
        pl.col("latency_ms").cast(pl.Float32),
        retries=pl.Series([1, 2, 3], dtype=pl.Int8),
        seen=pl.Series([datetime(2024, 1, 1)] * 3).dt.cast_time_unit("ms"),
    )
    out = validate(RECEIPTS, rows, catalog)
    expected = RECEIPTS.polars_schema()
    expected.update(retries=pl.Int64(), seen=pl.Datetime("us", "UTC"))
    assert out.schema == pl.Schema(expected)
    assert "retries" not in catalog.for_tenant("acme")["receipts"]


# -- extra columns -----------------------------------------------------------------------------


def test_extra_columns_are_kept_and_typed(kit: Kit) -> None:
    rows = receipts(4).with_columns(
        retries=pl.Series([0, 1, 2, 3], dtype=pl.Int16),
        team=pl.lit("data"),
        flaky=pl.Series([True, False, None, True]),
        score=pl.Series([0.5, 1.5, 2.5, None], dtype=pl.Float32),
    )
    kit.store.ingest(RECEIPTS, rows)
    kit.store.ingest(RECEIPTS, receipts(2, first=10))  # a later file without them
    expected = {"retries": DataType.INT, "team": DataType.STRING, "flaky": DataType.BOOL}
    expected["score"] = DataType.FLOAT
    assert kit.store.extras("acme") == {"receipts": expected}
    assert kit.store.extras("globex") == {}
    assert kit.catalog.for_tenant("acme")["receipts"].column("retries") is not None
    assert kit.catalog["receipts"].column("retries") is None  # the declared columns only
    got = everything(kit.store, "acme")
    assert got.schema["retries"] == pl.Int64
    assert got.schema["score"] == pl.Float64
    assert got["retries"].to_list() == [0, 1, 2, 3, None, None]
    assert got["team"].to_list() == ["data"] * 4 + [None, None]
    for name, type_ in (kit.reopen().extras("acme").get("receipts") or {}).items():
        assert expected[name] is type_


def test_lake_reopen_restores_extras_into_the_catalog(lake_kit: Kit) -> None:
    lake_kit.store.ingest(RECEIPTS, receipts(3).with_columns(retries=pl.lit(2)))
    catalog = Catalog()
    lake = Lake(lake_kit.root, catalog)
    column = catalog.for_tenant("acme")["receipts"].column("retries")
    assert column is not None
    assert column.type is DataType.INT
    empty = lake.scan("acme", RECEIPTS, T0 - timedelta(days=9), T0 - timedelta(days=8))
    assert empty.frame.collect().schema["retries"] == pl.Int64


def test_conflicting_extra_type_is_rejected(kit: Kit) -> None:
    kit.store.ingest(RECEIPTS, receipts(3).with_columns(retries=pl.lit(2)))
    before = kit.snapshot()
    bad = receipts(3, first=10).with_columns(retries=pl.lit("two"), fresh=pl.lit(1))
    with pytest.raises(InputError) as caught:
        kit.store.ingest(RECEIPTS, bad)
    assert caught.value.code == "PQL-E052"
    assert "retries" in caught.value.message
    assert kit.snapshot() == before
    assert "fresh" not in kit.catalog.for_tenant("acme")["receipts"]
    assert kit.store.ingest(RECEIPTS, receipts(3, first=10).with_columns(retries=pl.lit(7)))


def test_reserved_column_names_are_refused() -> None:
    with pytest.raises(InputError, match="__pql_day"):
        validate(RECEIPTS, receipts(1).with_columns(__pql_day=pl.lit(1)), Catalog())


# -- scans, pruning, stats ---------------------------------------------------------------------


def _thirty_days(store: Store) -> pl.DataFrame:
    rows = receipts(30 * 6, step=timedelta(hours=4))
    store.ingest(RECEIPTS, rows)
    return rows


def test_lake_scan_reads_only_the_days_of_the_window(lake_kit: Kit) -> None:
    rows = _thirty_days(lake_kit.store)
    assert len(parquet_files(lake_kit.root)) == 30
    start, end = T0 + timedelta(days=10), T0 + timedelta(days=11, hours=23)
    scan = lake_kit.store.scan("acme", RECEIPTS, start, end)
    assert (scan.partitions, scan.rows, scan.exact) == (2, 12, False)
    inside = {f"day={(T0 + timedelta(days=d)).date().isoformat()}" for d in (10, 11)}
    for path in parquet_files(lake_kit.root):
        if path.parent.name not in inside:
            path.write_bytes(b"not parquet")  # reading any other file would now fail
    got = scan.frame.collect()
    days = [(T0 + timedelta(days=d)).date() for d in (10, 11)]
    assert got.equals(rows.filter(pl.col("ts").dt.date().is_in(days)))


def test_memory_scan_is_an_exact_slice(kit: Kit) -> None:
    rows = _thirty_days(kit.store)
    start, end = T0 + timedelta(days=10, hours=3), T0 + timedelta(days=12, hours=4)
    scan = kit.store.scan("acme", RECEIPTS, start, end)
    got = scan.frame.collect()
    if not scan.exact:
        got = got.filter(pl.col("ts").is_between(start, end))
    assert got.equals(rows.filter(pl.col("ts").is_between(start, end)))
    if kit.kind == "memory":
        assert (scan.exact, scan.partitions, scan.rows) == (True, 3, got.height)


def test_scan_accepts_naive_window_bounds_as_utc(kit: Kit) -> None:
    kit.store.ingest(RECEIPTS, receipts(48))
    start = datetime(2024, 3, 1, 10)
    end = datetime(2024, 3, 1, 12)
    scan = kit.store.scan("acme", RECEIPTS, start, end)
    got = scan.frame.collect().filter(
        pl.col("ts").is_between(start.replace(tzinfo=UTC), end.replace(tzinfo=UTC))
    )
    assert got.height == 3


def test_reversed_window_is_empty(kit: Kit) -> None:
    kit.store.ingest(RECEIPTS, receipts(10))
    scan = kit.store.scan("acme", RECEIPTS, T0 + timedelta(hours=5), T0)
    assert (
        scan.frame.collect().filter(pl.col("ts").is_between(T0 + timedelta(hours=5), T0)).height
        == 0
    )


def test_bucket_layout_and_sorted_files(lake_kit: Kit) -> None:
    rows = pl.concat(
        [
            receipts(40, step=timedelta(hours=-1), start=T0 + timedelta(days=1)),
            receipts(10, region="eu-west-1", prefix="x"),
            receipts(10, tenant="globex"),
        ]
    )
    lake_kit.store.ingest(RECEIPTS, rows)
    lake_kit.store.ingest(DECISIONS, decisions(5))
    buckets = sorted(p.name for p in lake_kit.root.iterdir() if p.is_dir() and p.name != "_pql")
    assert buckets == [
        "mc-acme-eu-west-1-decisions",
        "mc-acme-eu-west-1-receipts",
        "mc-acme-us-east-1-receipts",
        "mc-globex-us-east-1-receipts",
    ]
    for path in parquet_files(lake_kit.root):
        assert path.name.startswith("part-")
        assert path.parent.name.startswith("day=")
        frame = pl.read_parquet(path)
        day = path.parent.name.removeprefix("day=")
        assert frame["ts"].dt.date().cast(pl.String).unique().to_list() == [day]
        assert frame.equals(frame.sort(["ts", "executionId"]))
        assert frame["tenant"].n_unique() == 1


def test_manifest_lists_every_file_with_its_stats(lake_kit: Kit) -> None:
    rows = pl.concat(
        [receipts(30, step=timedelta(hours=2)), receipts(5, region="eu-west-1", prefix="x")]
    )
    lake_kit.store.ingest(RECEIPTS, rows)
    manifest = json.loads((lake_kit.root / "_pql" / "manifest.json").read_text())
    listed = {entry["path"] for entry in manifest["files"]}
    on_disk = {str(p.relative_to(lake_kit.root)) for p in parquet_files(lake_kit.root)}
    assert listed == on_disk
    assert manifest["versions"] == {"acme": 1}
    assert sum(entry["rows"] for entry in manifest["files"]) == 35
    for entry in manifest["files"]:
        assert entry["bytes"] == (lake_kit.root / entry["path"]).stat().st_size
    stats = lake_kit.store.stats("acme", "receipts")
    assert [(s.day.isoformat(), s.region, s.rows) for s in stats] == [
        ("2024-03-01", "eu-west-1", 5),
        ("2024-03-01", "us-east-1", 12),
        ("2024-03-02", "us-east-1", 12),
        ("2024-03-03", "us-east-1", 6),
    ]
    assert stats[1].ts_min == T0
    assert stats[1].ts_max == T0 + timedelta(hours=22)


def test_stats_agree_between_stores(tmp_path: Path) -> None:
    rows = pl.concat(
        [receipts(30, step=timedelta(hours=2)), receipts(5, region="eu-west-1", prefix="x")]
    )
    lake, memory = Lake(tmp_path, Catalog()), MemoryStore(Catalog())
    for store in (lake, memory):
        store.ingest(RECEIPTS, rows.head(20))
        store.ingest(RECEIPTS, rows)

    def key(store: Store) -> list[tuple[Any, ...]]:
        return [
            (s.day, s.region, s.rows, s.ts_min, s.ts_max) for s in store.stats("acme", "receipts")
        ]

    assert key(lake) == key(memory)
    assert all(s.bytes > 0 for s in memory.stats("acme", "receipts"))
    assert [s.files for s in lake.stats("acme", "receipts")] == [1, 1, 2, 1]
    assert lake.stats("globex", "receipts") == memory.stats("globex", "receipts") == []


def test_versions_bump_per_tenant(kit: Kit) -> None:
    kit.store.ingest(RECEIPTS, receipts(3))
    kit.store.ingest(RECEIPTS, pl.concat([receipts(4), receipts(2, tenant="globex")]))
    assert (kit.store.version("acme"), kit.store.version("globex")) == (2, 1)
    kit.store.ingest(DECISIONS, decisions(2, tenant="globex"))
    assert (kit.store.version("acme"), kit.store.version("globex")) == (2, 2)
    assert kit.store.version("nobody") == 0


def test_a_second_lake_object_sees_new_commits(lake_kit: Kit) -> None:
    other = Lake(lake_kit.root, Catalog())
    lake_kit.store.ingest(RECEIPTS, receipts(5).with_columns(retries=pl.lit(1)))
    assert other.version("acme") == 1
    assert everything(other, "acme").height == 5
    assert other.extras("acme") == {"receipts": {"retries": DataType.INT}}
    report = other.ingest(RECEIPTS, receipts(6))
    assert (report.written, report.duplicates) == (1, 5)
    assert lake_kit.store.version("acme") == 2


# -- lake failures -----------------------------------------------------------------------------


def test_crash_before_the_manifest_leaves_nothing_visible(
    lake_kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = lake_kit.store
    assert isinstance(lake, Lake)
    lake.ingest(RECEIPTS, receipts(2, prefix="old"))
    before = lake_kit.snapshot()[0]

    def crash(path: Path, payload: bytes) -> None:
        raise OSError("simulated crash before the manifest is replaced")

    monkeypatch.setattr(lake_module, "_atomic_write", crash)
    with pytest.raises(OSError, match="simulated crash"):
        lake.ingest(RECEIPTS, receipts(48).with_columns(extra=pl.lit(1)))
    monkeypatch.undo()

    assert len(parquet_files(lake_kit.root)) == 1 + 2  # the two orphan day files exist…
    assert lake_kit.snapshot()[0] == before  # …but the manifest does not list them
    for store in (lake, Lake(lake_kit.root, Catalog())):
        assert everything(store, "acme")["executionId"].to_list() == ["old0", "old1"]
        assert store.version("acme") == 1
        assert store.extras("acme") == {}
    orphans = lake.gc_orphans()  # the two day files and their rollup files
    assert len(orphans) == 4 and sum(p.parent.name == ROLLUP_DIR for p in orphans) == 2
    report = lake.ingest(RECEIPTS, receipts(48))
    assert (report.written, report.duplicates) == (48, 0)
    assert everything(Lake(lake_kit.root, Catalog()), "acme").height == 50


def test_gc_orphans_never_touches_committed_files(lake_kit: Kit) -> None:
    lake = lake_kit.store
    assert isinstance(lake, Lake)
    lake.ingest(RECEIPTS, receipts(30))
    stray = lake_kit.root / "mc-acme-us-east-1-receipts" / "day=2024-03-01" / "part-stray.parquet"
    stray.write_bytes(b"x")
    assert lake.gc_orphans() == [stray]
    assert lake.gc_orphans(delete=True) == [stray]
    assert not stray.exists()
    assert everything(lake, "acme").height == 30
    assert (lake_kit.root / "_pql" / "manifest.json").exists()


def test_gc_orphans_asks_the_removal_guards_to_delete(lake_kit: Kit) -> None:
    """Each orphan is put to the guards as a ``delete`` (what an object lock refuses) first."""
    lake = lake_kit.store
    assert isinstance(lake, Lake)
    lake.ingest(RECEIPTS, receipts(30))
    stray = lake_kit.root / "mc-acme-us-east-1-receipts" / "day=2024-03-01" / "part-stray.parquet"
    stray.write_bytes(b"x")
    asked: list[tuple[str, str]] = []

    def locked(action: str, path: str) -> None:
        asked.append((action, path))
        if action == "delete":
            raise SafetyError("PQL-S062", f"{path} is locked")

    lake.removal_guards.append(locked)
    with pytest.raises(SafetyError):
        lake.gc_orphans(delete=True)
    assert asked == [("delete", stray.relative_to(lake_kit.root).as_posix())]
    assert stray.exists()
    lake.removal_guards.remove(locked)
    assert lake.gc_orphans(delete=True) == [stray]
    assert not stray.exists()


def test_root_that_is_a_file_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("hello")
    with pytest.raises(InputError) as caught:
        Lake(path, Catalog())
    assert caught.value.code == "PQL-E059"


def test_unreadable_manifest_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "_pql").mkdir()
    (tmp_path / "_pql" / "manifest.json").write_text("{not json")
    with pytest.raises(InputError) as caught:
        Lake(tmp_path, Catalog())
    assert caught.value.code == "PQL-E059"


def test_unknown_subject_is_refused(kit: Kit) -> None:
    other = Subject("other", RECEIPTS.columns, key="executionId")
    with pytest.raises(PQLError):
        kit.store.ingest(other, receipts(1))


# -- tenant isolation (property) ---------------------------------------------------------------

TENANTS = ("acme", "globex", "initech")

record = st.fixed_dictionaries(
    {
        "tenant": st.sampled_from(TENANTS),
        "region": st.sampled_from(("us-east-1", "eu-west-1")),
        "key": st.integers(0, 15),
        "minute": st.integers(0, 4 * 24 * 60),
    }
)
batches = st.lists(st.lists(record, max_size=25), min_size=1, max_size=3)
windows = st.tuples(st.integers(-60, 5 * 24 * 60), st.integers(0, 3 * 24 * 60))


def _frame(batch: list[dict[str, Any]]) -> pl.DataFrame:
    n = len(batch)
    return pl.DataFrame(
        {
            "executionId": [f"k{r['key']}" for r in batch],
            "tenant": [r["tenant"] for r in batch],
            "region": [r["region"] for r in batch],
            "ts": [T0 + timedelta(minutes=r["minute"]) for r in batch],
            "workflow": ["etl"] * n,
            "status": [f"{r['tenant']}-{r['minute']}" for r in batch],
            "latency_ms": [1.0] * n,
            "cost_usd": [None] * n,
        },
        schema=RECEIPTS.polars_schema(),
    )


def _expected(all_batches: list[list[dict[str, Any]]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The model: the first record of each (tenant, key) wins."""
    model: dict[tuple[str, str], dict[str, Any]] = {}
    for batch in all_batches:
        for r in batch:
            model.setdefault((r["tenant"], f"k{r['key']}"), r)
    return model


@contextmanager
def _fresh(kind: str) -> Iterator[Store]:
    """A new, empty store of ``kind`` (hypothesis cannot use function-scoped fixtures)."""
    if kind == "memory":
        yield MemoryStore(Catalog())
        return
    with tempfile.TemporaryDirectory() as root:
        yield Lake(root, Catalog(), durable=False)


@pytest.mark.parametrize("kind", ["lake", "memory"])
@settings(deadline=None)
@given(all_batches=batches, window=windows)
def test_a_scan_returns_exactly_its_tenants_first_records(
    kind: str, all_batches: list[list[dict[str, Any]]], window: tuple[int, int]
) -> None:
    start = T0 + timedelta(minutes=window[0])
    end = start + timedelta(minutes=window[1])
    with _fresh(kind) as store:
        for batch in all_batches:
            store.ingest(RECEIPTS, _frame(batch))
        model = _expected(all_batches)
        for tenant in TENANTS:
            scan = store.scan(tenant, RECEIPTS, start, end)
            read = scan.frame.collect()
            assert set(read["tenant"].to_list()) <= {tenant}
            assert read.height == scan.rows
            got = read.filter(pl.col("ts").is_between(start, end))
            if scan.exact:
                assert got.equals(read)
                assert read.equals(read.sort(["ts", "executionId"]))
            expected = sorted(
                (key, f"{tenant}-{r['minute']}")
                for (owner, key), r in model.items()
                if owner == tenant and start <= T0 + timedelta(minutes=r["minute"]) <= end
            )
            assert sorted(zip(got["executionId"], got["status"], strict=True)) == expected
