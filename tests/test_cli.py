"""The command line: output formats and every exit status, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest

import pql
from pql.cli import main
from pql.demo import DemoData

NOW = "2026-11-27T11:00:00Z"


@pytest.fixture(scope="module")
def small() -> DemoData:
    from pql.demo import generate

    return generate(1_500, seed=5, now=pql.analyze.parse_timestamp(NOW))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, small: DemoData) -> Path:
    root = tmp_path_factory.mktemp("cli") / "lake"
    engine = pql.Engine(root)
    engine.ingest("receipts", small.receipts)
    engine.ingest("decisions", small.decisions)
    return root


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def top_tenant(small: DemoData) -> str:
    return str(small.receipts["tenant"].value_counts(sort=True)["tenant"][0])


def test_query_json_shape(capsys: Any, data_dir: Path, small: DemoData) -> None:
    code, out, err = run(
        capsys,
        "query",
        "--data",
        str(data_dir),
        "--tenant",
        top_tenant(small),
        "--now",
        NOW,
        "--format",
        "json",
        "FIND receipts SINCE 7d LIMIT 3",
    )
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == {"columns", "rows", "truncated", "stats"}
    assert doc["columns"][:4] == ["executionId", "tenant", "region", "ts"]
    assert len(doc["rows"]) == 3
    assert doc["rows"][0][3].endswith("Z")  # ISO-8601 UTC
    assert doc["truncated"] is False
    assert doc["stats"]["partitions_read"] >= 1


def test_query_table_and_csv(capsys: Any, data_dir: Path, small: DemoData) -> None:
    base = ["query", "--data", str(data_dir), "--tenant", top_tenant(small), "--now", NOW]
    code, out, _ = run(capsys, *base, "FIND COUNT(*) AS n GROUP BY receipts.status SINCE 180d")
    assert code == 0
    assert "status" in out and "rows" in out
    code, out, _ = run(capsys, *base, "--format", "csv", "FIND receipts SINCE 7d LIMIT 2")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("executionId,tenant,region,ts")
    assert len(lines) == 3
    assert lines[1].split(",")[3].endswith("Z")


def test_truncated_flag(capsys: Any, tmp_path: Path, small: DemoData) -> None:
    engine = pql.Engine(tmp_path / "lake")
    engine.ingest("receipts", small.receipts)
    code, out, _ = run(
        capsys,
        "query",
        "--data",
        str(tmp_path / "lake"),
        "--tenant",
        top_tenant(small),
        "--now",
        NOW,
        "--format",
        "json",
        "FIND receipts SINCE 180d",
    )
    doc = json.loads(out)
    assert code == 0
    assert len(doc["rows"]) == min(10_000, doc["stats"]["rows"])


@pytest.mark.parametrize(
    ("query", "code", "token"),
    [
        ("FIND receipts WHER status = 'ok'", 2, "PQL-E001"),
        ("FIND receipts WHERE latncy_ms > 3", 2, "PQL-E011"),
        ("FIND receipts SINCE 365d", 3, "PQL-S001"),
        ("FIND receipts LIMIT 20000", 3, "PQL-S002"),
        ("FIND receipts WHERE decisions.effect = 'deny'", 3, "PQL-S004"),
    ],
)
def test_exit_codes_for_bad_queries(
    capsys: Any, data_dir: Path, query: str, code: int, token: str
) -> None:
    got, out, err = run(
        capsys, "query", "--data", str(data_dir), "--tenant", "acme", "--now", NOW, query
    )
    assert got == code
    assert token in err
    assert "Traceback" not in err
    assert out == ""


def test_bad_tenant_and_now_exit_2(capsys: Any, data_dir: Path) -> None:
    code, _, err = run(
        capsys, "query", "--data", str(data_dir), "--tenant", "ACME!", "FIND receipts"
    )
    assert code == 2 and "PQL-E030" in err
    code, _, err = run(
        capsys,
        "query",
        "--data",
        str(data_dir),
        "--tenant",
        "acme",
        "--now",
        "yesterday",
        "FIND receipts",
    )
    assert code == 2 and "PQL-E031" in err


def test_missing_data_dir_exit_2(capsys: Any, tmp_path: Path) -> None:
    code, _, err = run(
        capsys, "query", "--data", str(tmp_path / "nope"), "--tenant", "acme", "FIND receipts"
    )
    assert code == 2 and "PQL-E071" in err


def test_usage_error_exit_2(capsys: Any) -> None:
    with pytest.raises(SystemExit) as info:
        main(["query", "--tenant", "acme"])
    assert info.value.code == 2


def test_internal_error_exit_1_without_traceback(
    capsys: Any, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pql.Engine, "query", boom)
    code, _, err = run(
        capsys, "query", "--data", str(data_dir), "--tenant", "acme", "FIND receipts"
    )
    assert code == 1
    assert "PQL-X000" in err and "disk on fire" in err and "Traceback" not in err


def test_explain(capsys: Any, data_dir: Path) -> None:
    code, out, _ = run(
        capsys,
        "explain",
        "--data",
        str(data_dir),
        "--tenant",
        "acme",
        "--now",
        NOW,
        "FIND COUNT(*) AS n WHERE receipts.status = 'error' GROUP BY receipts.region",
    )
    assert code == 0
    assert "Scan receipts tenant=acme" in out and "safety rules:" in out


def test_ingest_cli_reports_duplicates_and_rejects_bad_files(
    capsys: Any, tmp_path: Path, small: DemoData
) -> None:
    good = tmp_path / "r.parquet"
    pq.write_table(small.receipts.to_arrow(), good)
    bad = tmp_path / "bad.parquet"
    pq.write_table(small.receipts.drop("status").to_arrow(), bad)
    lake = str(tmp_path / "lake")
    code, out, _ = run(capsys, "ingest", "--data", lake, "--table", "receipts", str(good))
    assert code == 0 and f"{small.receipts.height:,} of" in out
    code, out, _ = run(capsys, "ingest", "--data", lake, "--table", "receipts", str(good))
    assert code == 0 and f"{small.receipts.height:,} duplicates" in out
    before = sorted(p.name for p in Path(lake).rglob("*.parquet"))
    code, _, err = run(capsys, "ingest", "--data", lake, "--table", "receipts", str(good), str(bad))
    assert code == 2 and "status" in err and "bad.parquet" in err
    assert sorted(p.name for p in Path(lake).rglob("*.parquet")) == before
    code, _, err = run(capsys, "ingest", "--data", lake, "--table", "receipts", str(tmp_path / "x"))
    assert code == 2 and "PQL-E057" in err


def test_demo_command(capsys: Any, tmp_path: Path) -> None:
    code, out, _ = run(capsys, "demo", "--data", str(tmp_path / "demo"), "--receipts", "3000")
    assert code == 0
    assert "pql> FIND COUNT(receipts.executionId) SINCE 7d" in out
    assert "PQL-S001" in out  # the demo shows a refusal too


def test_subprocess_bad_query_has_no_traceback(data_dir: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pql.cli",
            "query",
            "--data",
            str(data_dir),
            "--tenant",
            "acme",
            "FIND receipts WHERE (((status = 'ok'",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "1:" in proc.stderr


def test_result_frames(data_dir: Path, small: DemoData) -> None:
    result = pql.Engine(data_dir).query("FIND receipts SINCE 7d", tenant=top_tenant(small), now=NOW)
    assert isinstance(result.df, pl.DataFrame)
    assert result.to_arrow().num_rows == result.df.height


def _strict_json(text: str) -> Any:
    """Parse ``text`` as strict JSON: ``NaN`` and ``Infinity`` are refused."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_json_output_is_strict_json(capsys: Any, tmp_path: Path, small: DemoData) -> None:
    """Non-finite floats print as null (they used to print as Infinity and NaN)."""
    rows = small.receipts.filter(pl.col("tenant") == top_tenant(small)).head(3)
    rows = rows.with_columns(
        pl.Series("latency_ms", [float("inf"), float("nan"), float("-inf")]),
        pl.Series("cost_usd", [1.0, float("inf"), 2.0]),
    )
    lake = tmp_path / "lake"
    pql.Engine(lake).ingest("receipts", rows)
    argv = ["query", "--data", str(lake), "--tenant", top_tenant(small), "--now", NOW]
    for text in (
        "FIND receipts SINCE 180d",
        "FIND SUM(receipts.latency_ms), AVG(receipts.cost_usd), MAX(receipts.latency_ms) SINCE 180d",
    ):
        code, out, err = run(capsys, *argv, "--format", "json", text)
        assert code == 0, err
        answer = _strict_json(out)
        assert None in [v for row in answer["rows"] for v in row]
    code, out, _ = run(capsys, *argv, "--format", "json", "FIND receipts SINCE 180d")
    answer = _strict_json(out)
    values = [row[answer["columns"].index("latency_ms")] for row in answer["rows"]]
    assert values == [None, None, None]


def test_explain_json_is_strict_json(capsys: Any, data_dir: Path, small: DemoData) -> None:
    argv = ["explain", "--data", str(data_dir), "--tenant", top_tenant(small), "--now", NOW]
    code, out, _ = run(capsys, *argv, "--format", "json", "FIND receipts SINCE 7d")
    assert code == 0
    assert _strict_json(out)["plan"]


def test_dumps_writes_null_for_non_finite_floats() -> None:
    from pql.result import dumps

    text = dumps({"a": float("inf"), "b": [float("nan"), (float("-inf"), 1.5)], "c": "x"})
    assert _strict_json(text) == {"a": None, "b": [None, [None, 1.5]], "c": "x"}


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """``pql query ... | head -1``: the reader goes away; no X040, no traceback, exit 0."""
    now = pql.analyze.parse_timestamp(NOW)
    n = 20_000
    receipts = pl.DataFrame(
        {
            "executionId": [f"ex-{i:08d}" for i in range(n)],
            "tenant": "acme",
            "region": "us-east-1",
            "ts": pl.datetime_range(
                now - pl.duration(seconds=n), now, "1s", time_zone="UTC", eager=True
            ).head(n),
            "workflow": "w" * 400,  # 10,000 rows of over 400 bytes: more than any pipe holds
            "status": "ok",
            "latency_ms": 1.0,
            "cost_usd": 0.5,
        }
    )
    lake = tmp_path / "lake"
    pql.Engine(lake).ingest("receipts", receipts)
    argv = ["--data", str(lake), "--tenant", "acme", "--now", NOW]
    for fmt in ("table", "csv", "json"):
        proc = subprocess.Popen(
            [sys.executable, "-m", "pql.cli", "query", *argv, "--format", fmt, "FIND receipts"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 0, (fmt, err)
        assert first.strip()
        assert err == "", fmt


def test_demo_needs_at_least_one_receipt(capsys: Any, tmp_path: Path) -> None:
    target = tmp_path / "demo"
    code, _, err = run(capsys, "demo", "--data", str(target), "--receipts", "0")
    assert code == 2
    assert "PQL-E140" in err and "--receipts" in err and "Traceback" not in err
    assert not target.exists()
    code, _, err = run(capsys, "demo", "--data", str(target), "--receipts", "-5")
    assert code == 2 and "PQL-E140" in err


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def test_demo_refuses_a_lake_it_did_not_make(capsys: Any, tmp_path: Path, small: DemoData) -> None:
    lake = tmp_path / "real"
    engine = pql.Engine(lake)
    engine.ingest("receipts", small.receipts)
    before = _files(lake)
    code, _, err = run(capsys, "demo", "--data", str(lake), "--receipts", "300")
    assert code == 2
    assert "PQL-E141" in err and "synthetic" in err and "Traceback" not in err
    assert _files(lake) == before  # not one row added
    tenant = top_tenant(small)
    count = pql.Engine(lake).query(
        "FIND COUNT(receipts.executionId) AS n SINCE 180d", tenant=tenant, now=NOW
    )
    assert count.df["n"].item() == small.receipts.filter(pl.col("tenant") == tenant).height
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    code, _, err = run(capsys, "demo", "--data", str(other), "--receipts", "300")
    assert code == 2 and "PQL-E141" in err
    assert _files(other) == {"notes.txt": 4}


def test_demo_reuses_its_own_lake_and_empty_dirs(capsys: Any, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "demo", "--data", str(empty), "--receipts", "300", "--seed", "1")
    assert code == 0, err
    assert (empty / ".pql-demo").is_file()
    code, out, err = run(capsys, "demo", "--data", str(empty), "--receipts", "300", "--seed", "2")
    assert code == 0, err
    assert "ingested receipts: 300 stored" in out
