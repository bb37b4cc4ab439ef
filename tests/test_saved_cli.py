"""`pql keys` and `pql saved`: the command-line shape, exit codes 0/2/3/4, never a traceback."""

from __future__ import annotations

import json
import re
import sqlite3
import stat
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine

import pql
from pql.cli import main
from pql.demo import generate

NOW = "2026-03-02T12:00:00Z"
TRUSTED = datetime(2026, 3, 2, 12, 30, tzinfo=UTC)
"""The wall clock of these tests: signatures and keys are judged on it, never on ``--now``."""
QUERY = "find count(*) as n where status = $status and latency_ms > $slow group by region since 30d"


@pytest.fixture(autouse=True)
def _trusted_clock() -> Iterator[None]:
    with time_machine.travel(TRUSTED, tick=False):
        yield


def wall_clock(moment: str) -> Any:
    """Move the wall clock (the only clock validity is judged on) to ``moment``."""
    return time_machine.travel(datetime.fromisoformat(moment.replace("Z", "+00:00")), tick=False)


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("saved") / "data"
    data = generate(2_000, seed=5, now=datetime(2026, 3, 2, 12, tzinfo=UTC), days=30)
    engine = pql.Engine(root)
    engine.ingest("receipts", data.receipts)
    engine.ingest("decisions", data.decisions)
    return root


@pytest.fixture
def keys(tmp_path: Path, capsys: Any) -> Path:
    out = tmp_path / "keys"
    assert run(capsys, "keys", "generate", "--out", str(out), "--kid", "team-a")[0] == 0
    return out


@pytest.fixture
def signed(lake: Path, keys: Path, capsys: Any, request: pytest.FixtureRequest) -> str:
    """Sign QUERY under a name unique to the test; return the name."""
    name = re.sub(r"[^A-Za-z0-9-]", "-", request.node.name)[:100]
    code, _, err = run(
        capsys, "saved", "sign", "--data", str(lake), "--key", str(keys / "team-a.key"),
        "--tenant", "acme", "--name", name, "--author", "ana", "--now", NOW,
        "--expires", "2026-06-01T00:00:00Z", QUERY,
    )  # fmt: skip
    assert code == 0, err
    return name


def saved(lake: Path, keys: Path, *args: str) -> list[str]:
    return ["saved", args[0], "--data", str(lake), "--keys", str(keys), *args[1:]]


# ---------------------------------------------------------------------------------------------
# keys


def test_keys_generate_writes_a_private_and_a_public_key(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "k"
    code, stdout, _ = run(capsys, "keys", "generate", "--out", str(out))
    assert code == 0
    kid = re.search(r"key id:  (\S+)", stdout)
    assert kid is not None and re.fullmatch(r"\d{8}-[0-9a-f]{6}", kid.group(1))
    private, public = out / f"{kid.group(1)}.key", out / f"{kid.group(1)}.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")

    code, _, err = run(capsys, "keys", "generate", "--out", str(out), "--kid", kid.group(1))
    assert code == 2
    assert "error[PQL-E093]" in err and "already exists" in err


def test_keys_list_and_revoke(keys: Path, capsys: Any) -> None:
    code, out, _ = run(capsys, "keys", "list", "--keys", str(keys))
    assert code == 0
    assert out.splitlines()[1] == "team-a\tvalid\t-\t-"
    code, out, _ = run(capsys, "keys", "revoke", "--keys", str(keys), "--reason", "leak", "team-a")
    assert code == 0
    assert json.loads((keys / "team-a.json").read_text())["revoked"] is True
    assert (
        run(capsys, "keys", "list", "--keys", str(keys))[1]
        .splitlines()[1]
        .startswith("team-a\trevoked")
    )
    code, _, err = run(capsys, "keys", "revoke", "--keys", str(keys), "nobody")
    assert code == 4 and "error[PQL-A002]" in err


# ---------------------------------------------------------------------------------------------
# The whole round trip


def test_sign_export_import_verify_run_list(
    lake: Path, keys: Path, signed: str, tmp_path: Path, capsys: Any
) -> None:
    code, doc, _ = run(capsys, "saved", "export", "--data", str(lake), "--tenant", "acme", signed)
    assert code == 0
    document = json.loads(doc)
    assert document["query"] == (
        "FIND COUNT(*) AS n WHERE status = $status AND latency_ms > $slow GROUP BY region SINCE 30d"
    )
    assert document["params"] == {"slow": "float", "status": "string"}
    assert (document["kid"], document["author"], document["tenant"]) == ("team-a", "ana", "acme")
    assert document["issued_at"] == document["not_before"] == NOW

    other = tmp_path / "other"
    other.mkdir()
    path = tmp_path / "doc.json"
    path.write_text(doc)
    code, out, _ = run(capsys, *saved(other, keys, "import", str(path)))
    assert code == 0 and "imported" in out
    assert (other / "_pql" / "saved.sqlite").is_file()

    code, out, _ = run(capsys, *saved(other, keys, "verify", "--tenant", "acme", signed))
    assert code == 0 and out.startswith(f"ok: {signed!r} for tenant 'acme', signed by key")

    code, out, err = run(
        capsys, *saved(lake, keys, "run", "--tenant", "acme", "--now", NOW, signed,
                       "--param", "status=error", "--param", "slow=100", "--format", "json"),
    )  # fmt: skip
    assert code == 0, err
    answer = json.loads(out)
    code, out, _ = run(
        capsys, "query", "--data", str(lake), "--tenant", "acme", "--now", NOW, "--format",
        "json", "FIND COUNT(*) AS n WHERE status = 'error' AND latency_ms > 100 "
        "GROUP BY region SINCE 30d",
    )  # fmt: skip
    expected = json.loads(out)
    assert answer["columns"] == expected["columns"] == ["region", "n"]
    assert answer["rows"] == expected["rows"] and answer["rows"]

    code, out, _ = run(capsys, "saved", "list", "--data", str(other), "--tenant", "acme")
    assert code == 0
    assert out.splitlines() == [
        "name\tkid\tauthor\tparameters\texpires",
        f"{signed}\tteam-a\tana\t$slow: float, $status: string\t2026-06-01T00:00:00Z",
    ]


def test_a_parameter_that_looks_like_pql_stays_a_value(
    lake: Path, keys: Path, signed: str, capsys: Any
) -> None:
    code, out, err = run(
        capsys, *saved(lake, keys, "run", "--tenant", "acme", "--now", NOW, signed, "--format",
                       "json", "--param", 'status=error" OR status != "x', "--param", "slow=0"),
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["rows"] == []


# ---------------------------------------------------------------------------------------------
# Tampered documents and stores


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        (lambda d: d.update(text=d["text"].replace("> $slow", ">= $slow")), "PQL-A009"),
        (lambda d: d.update(text=d["text"].upper()), "PQL-A009"),
        (lambda d: d.update(query=d["query"].replace("> $slow", ">= $slow")), "PQL-A001"),
        (lambda d: d.update(tenant="globex"), "PQL-A001"),
        (lambda d: d.update(expires_at="2099-01-01T00:00:00Z"), "PQL-A001"),
        (lambda d: d.update(params={"slow": "string", "status": "string"}), "PQL-A001"),
        (lambda d: d.update(signature="A" * 86 + "=="), "PQL-A001"),
        (lambda d: d.update(kid="team-b"), "PQL-A002"),
        (lambda d: d.pop("signature"), "PQL-A012"),
    ],
)
def test_a_tampered_document_is_refused_with_exit_4(
    lake: Path, keys: Path, signed: str, tmp_path: Path, capsys: Any, edit: Any, code: str
) -> None:
    _, doc, _ = run(capsys, "saved", "export", "--data", str(lake), "--tenant", "acme", signed)
    document = json.loads(doc)
    edit(document)
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(document, indent=2))
    other = tmp_path / "other"
    other.mkdir()
    status, _, err = run(capsys, *saved(other, keys, "import", str(path)))
    assert (status, err.split("]")[0]) == (4, f"error[{code}")
    assert (
        run(capsys, "saved", "list", "--data", str(other), "--tenant", "acme")[1].count("\n") == 1
    )  # header only: nothing was stored


def test_a_document_that_is_not_json_is_refused(keys: Path, tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(b"\xff{not json")
    status, _, err = run(capsys, *saved(tmp_path, keys, "import", str(path)))
    assert status == 4 and "error[PQL-A012]" in err
    status, _, err = run(capsys, *saved(tmp_path, keys, "import", str(tmp_path / "none.json")))
    assert status == 2 and "error[PQL-E092]" in err


def test_a_changed_store_is_refused_on_every_run(
    lake: Path, keys: Path, signed: str, capsys: Any
) -> None:
    args = ["--tenant", "acme", "--now", NOW, signed, "--param", "status=ok", "--param", "slow=1"]
    assert run(capsys, *saved(lake, keys, "run", *args))[0] == 0
    with sqlite3.connect(lake / "_pql" / "saved.sqlite") as con:
        (raw,) = con.execute(
            "SELECT document FROM saved_query WHERE name = ?", (signed,)
        ).fetchone()
        edited = raw.replace("status = $status and", "status != $status and")
        con.execute("UPDATE saved_query SET document = ? WHERE name = ?", (edited, signed))
    status, _, err = run(capsys, *saved(lake, keys, "run", *args))
    assert status == 4 and "error[PQL-A009]" in err
    status, _, err = run(capsys, *saved(lake, keys, "verify", "--tenant", "acme", signed))
    assert status == 4 and "error[PQL-A009]" in err


def test_a_document_moved_to_another_tenant_is_refused(
    lake: Path, keys: Path, signed: str, capsys: Any
) -> None:
    with sqlite3.connect(lake / "_pql" / "saved.sqlite") as con:
        con.execute("UPDATE saved_query SET tenant = 'globex' WHERE name = ?", (signed,))
    status, _, err = run(capsys, *saved(lake, keys, "verify", "--tenant", "globex", signed))
    assert status == 4 and "error[PQL-A006]" in err and "signed for tenant 'acme'" in err
    status, _, err = run(capsys, *saved(lake, keys, "verify", "--tenant", "acme", signed))
    assert status == 4 and "error[PQL-A011]" in err


# ---------------------------------------------------------------------------------------------
# Run-time failures


@pytest.mark.parametrize(
    ("args", "clock", "code"),
    [
        (["--param", "status=error"], NOW, "PQL-A008"),
        (["--param", "status=error", "--param", "slow=fast"], NOW, "PQL-A007"),
        (["--param", "status=e", "--param", "slow=1", "--param", "tenant=globex"], NOW, "PQL-A014"),
        (["--param", "status=e", "--param", "slow=1"], "2026-06-01T00:00:00Z", "PQL-A004"),
        (["--param", "status=e", "--param", "slow=1"], "2026-03-02T11:59:59Z", "PQL-A005"),
    ],
)
def test_run_failures_exit_4_with_their_code(
    lake: Path, keys: Path, signed: str, capsys: Any, args: list[str], clock: str, code: str
) -> None:
    argv = saved(lake, keys, "run", "--tenant", "acme", signed, "--now", NOW, *args)
    with wall_clock(clock):
        status, _, err = run(capsys, *argv)
    assert (status, err.split("]")[0]) == (4, f"error[{code}")
    assert "= hint:" in err


def test_revoked_and_unknown_keys(
    lake: Path, keys: Path, signed: str, tmp_path: Path, capsys: Any
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    status, _, err = run(capsys, *saved(lake, empty, "verify", "--tenant", "acme", signed))
    assert status == 4 and "error[PQL-A002]" in err
    run(capsys, "keys", "revoke", "--keys", str(keys), "team-a")
    status, _, err = run(capsys, *saved(lake, keys, "verify", "--tenant", "acme", signed))
    assert status == 4 and "error[PQL-A003]" in err


def test_rotation_on_the_command_line(lake: Path, tmp_path: Path, capsys: Any) -> None:
    keys = tmp_path / "keys"
    t0, t1 = "2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z"
    run(capsys, "keys", "generate", "--out", str(keys), "--kid", "old", "--not-after", t1)
    run(capsys, "keys", "generate", "--out", str(keys), "--kid", "new", "--not-before", t0)
    for kid, signed_at in (("old", "2026-03-20T00:00:00Z"), ("new", t0)):
        code, _, err = run(
            capsys, "saved", "sign", "--data", str(lake), "--key", str(keys / f"{kid}.key"),
            "--tenant", "acme", "--name", f"rot-{kid}", "--now", signed_at,
            "FIND COUNT(receipts.executionId) SINCE 1d",
        )  # fmt: skip
        assert code == 0, err

    def verify(kid: str, now: str) -> tuple[int, str]:
        with wall_clock(now):
            status, _, err = run(capsys, *saved(lake, keys, "verify", "--tenant", "acme",
                                                f"rot-{kid}"))  # fmt: skip
        return status, err

    for now in (t0, "2026-04-30T23:59:59Z"):
        assert verify("old", now)[0] == 0
        assert verify("new", now)[0] == 0
    status, err = verify("old", t1)
    assert status == 4 and "error[PQL-A004]: key 'old' expired at 2026-05-01T00:00:00Z" in err
    assert verify("new", "2027-01-01T00:00:00Z")[0] == 0
    code, out, _ = run(capsys, "keys", "list", "--keys", str(keys), "--now", "2026-05-02")
    assert out.splitlines()[1:] == [
        "new\tvalid\t2026-04-01T00:00:00Z\t-",
        "old\texpired\t-\t2026-05-01T00:00:00Z",
    ]


# ---------------------------------------------------------------------------------------------
# Invalid input (exit 2) and refusals (exit 3)


@pytest.mark.parametrize(
    ("extra", "query", "needle"),
    [
        (["--param-type", "status"], QUERY, "error[PQL-E092]"),
        (["--param-type", "status=date"], QUERY, "error[PQL-E091]"),
        (["--param-type", "other=int"], QUERY, "error[PQL-E090]"),
        ([], "FIND receipts WHERE", "error[PQL-E002]"),
        ([], "FIND receipts WHERE nope = $x", "error[PQL-E090]"),
        (["--expires", "soon"], QUERY, "error[PQL-E094]"),
        (["--name", "bad name"], QUERY, "error[PQL-E096]"),
    ],
)
def test_sign_refuses_bad_input_with_exit_2(
    lake: Path, keys: Path, capsys: Any, extra: list[str], query: str, needle: str
) -> None:
    status, _, err = run(
        capsys, "saved", "sign", "--data", str(lake), "--key", str(keys / "team-a.key"),
        "--tenant", "acme", "--name", "x", *extra, query,
    )  # fmt: skip
    assert status == 2 and needle in err


def test_sign_applies_the_safety_rules(lake: Path, keys: Path, capsys: Any) -> None:
    status, _, err = run(
        capsys, "saved", "sign", "--data", str(lake), "--key", str(keys / "team-a.key"),
        "--tenant", "acme", "--name", "too-long", "FIND receipts SINCE 400d",
    )  # fmt: skip
    assert status == 3 and "error[PQL-S001]" in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["saved"], "PQL-E070"),
        (["keys"], "PQL-E070"),
        (["saved", "run", "--data", "{tmp}/none", "--keys", "{tmp}", "--tenant", "acme", "q"],
         "PQL-E071"),
        (["saved", "list", "--data", "{tmp}", "--tenant", "Not Valid"], "PQL-E030"),
        (["saved", "run", "--data", "{tmp}", "--keys", "{tmp}", "--tenant", "acme", "q",
          "--param", "x"], "PQL-E092"),
        (["saved", "sign", "--data", "{tmp}", "--key", "{tmp}/none.key", "--tenant", "acme",
          "--name", "q", "FIND receipts"], "PQL-A015"),
        (["keys", "generate", "--out", "{tmp}", "--not-after", "later"], "PQL-E094"),
    ],
)  # fmt: skip
def test_usage_errors(tmp_path: Path, capsys: Any, argv: list[str], needle: str) -> None:
    try:
        status = main([arg.replace("{tmp}", str(tmp_path)) for arg in argv])
    except SystemExit as exc:  # argparse usage errors
        status = int(exc.code or 0)
    err = capsys.readouterr().err
    assert status in (2, 4) and needle in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing was written


def test_export_of_a_missing_query(lake: Path, capsys: Any) -> None:
    status, _, err = run(capsys, "saved", "export", "--data", str(lake), "--tenant", "acme", "no")
    assert status == 4 and "error[PQL-A011]" in err


# ---------------------------------------------------------------------------------------------
# Two clocks: validity on the wall clock, --now sets only the window


COUNT_30D = "FIND COUNT(receipts.executionId) AS n SINCE 30d"


def sign(capsys: Any, lake: Path, keys: Path, name: str, *extra: str) -> None:
    code, _, err = run(
        capsys, "saved", "sign", "--data", str(lake), "--key", str(keys / "team-a.key"),
        "--tenant", "acme", "--name", name, *extra, COUNT_30D,
    )  # fmt: skip
    assert code == 0, err


def test_an_expired_query_cannot_be_revived_by_an_earlier_now(
    lake: Path, keys: Path, capsys: Any
) -> None:
    sign(capsys, lake, keys, "old", "--now", "2026-01-01T00:00:00Z",
         "--expires", "2026-02-01T00:00:00Z")  # fmt: skip
    argv = saved(lake, keys, "run", "--tenant", "acme", "old", "--now", "2026-01-15T00:00:00Z")
    status, _, err = run(capsys, *argv)
    assert status == 4 and "error[PQL-A004]: saved query 'old' expired" in err
    with wall_clock("2026-01-20T00:00:00Z"):  # the same run while it was valid
        assert run(capsys, *argv)[0] == 0


def test_a_query_signed_now_replays_a_historical_window(
    lake: Path, keys: Path, capsys: Any
) -> None:
    with wall_clock("2026-03-30T09:00:00Z"):
        sign(capsys, lake, keys, "replay")  # issued at the wall clock, after the window's end
        code, out, err = run(
            capsys, *saved(lake, keys, "run", "--tenant", "acme", "replay",
                           "--now", "2026-03-13T15:00:00Z", "--format", "json"),
        )  # fmt: skip
        assert code == 0, err
        _, literal, _ = run(
            capsys, "query", "--data", str(lake), "--tenant", "acme",
            "--now", "2026-03-13T15:00:00Z", "--format", "json", COUNT_30D,
        )  # fmt: skip
    answer = json.loads(out)
    assert answer["rows"] == json.loads(literal)["rows"] and answer["rows"][0][0] > 0
    assert answer["stats"]["window"]["end"] == "2026-03-13T15:00:00Z"


@pytest.mark.parametrize("command", ["import", "verify"])
def test_verify_and_import_take_no_clock(lake: Path, keys: Path, capsys: Any, command: str) -> None:
    tenant = ["--tenant", "acme"] if command == "verify" else []
    with pytest.raises(SystemExit) as info:
        main(saved(lake, keys, command, *tenant, "--now", NOW, "x"))
    assert info.value.code == 2 and "unrecognized arguments: --now" in capsys.readouterr().err


def test_the_real_command_judges_validity_on_the_real_wall_clock(tmp_path: Path) -> None:
    """In a subprocess (no time travel): --now cannot revive, and can replay, whatever the date."""
    real_now = time_machine.escape_hatch.datetime.datetime.now(UTC).replace(microsecond=0)

    def iso(days: float) -> str:
        return (real_now + timedelta(days=days)).isoformat().replace("+00:00", "Z")

    def pql_cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pql.cli", *argv], capture_output=True, text=True, check=False
        )

    data, keys = tmp_path / "data", tmp_path / "keys"
    data.mkdir()
    assert pql_cli("keys", "generate", "--out", str(keys), "--kid", "k").returncode == 0
    common = ["--data", str(data), "--key", str(keys / "k.key"), "--tenant", "acme"]
    query = "FIND COUNT(receipts.executionId) SINCE 1d"
    signed = pql_cli("saved", "sign", *common, "--name", "old", "--now", iso(-30),
                     "--expires", iso(-20), query)  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    assert pql_cli("saved", "sign", *common, "--name", "fresh", query).returncode == 0
    run_args = ["saved", "run", "--data", str(data), "--keys", str(keys), "--tenant", "acme"]

    revived = pql_cli(*run_args, "old", "--now", iso(-25))
    assert revived.returncode == 4 and "error[PQL-A004]" in revived.stderr
    replayed = pql_cli(*run_args, "fresh", "--now", iso(-365), "--format", "json")
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout)["stats"]["window"]["end"] == iso(-365)


# ---------------------------------------------------------------------------------------------
# Out-of-range input and bad rows: PQL errors, never exit 1


@pytest.mark.parametrize(
    ("argv", "status", "code"),
    [
        (["keys", "generate", "--out", "{tmp}/k", "--not-after", "9999-12-31T23:59:59-01:00"],
         2, "PQL-E094"),
        (["keys", "generate", "--out", "{tmp}/k", "--not-before", "0001-01-01T00:00:00+01:00"],
         2, "PQL-E094"),
        (["saved", "sign", "--data", "{lake}", "--key", "{keys}/team-a.key", "--tenant", "acme",
          "--name", "x", "--expires", "9999-12-31T23:59:59-01:00", "FIND receipts"], 2, "PQL-E094"),
        (["saved", "sign", "--data", "{lake}", "--key", "{keys}/team-a.key", "--tenant", "acme",
          "--name", "x", "--now", "0001-01-01T00:00:00+01:00", "FIND receipts"], 2, "PQL-E094"),
        (["saved", "run", "--data", "{lake}", "--keys", "{keys}", "--tenant", "acme", "since",
          "--param", "t=0001-01-01T00:00:00+01:00"], 4, "PQL-A007"),
        (["saved", "run", "--data", "{lake}", "--keys", "{keys}", "--tenant", "acme", "since",
          "--param", "t=9999-12-31T23:59:59-01:00"], 4, "PQL-A007"),
    ],
)  # fmt: skip
def test_out_of_range_times_are_pql_errors(
    lake: Path, keys: Path, tmp_path: Path, capsys: Any, argv: list[str], status: int, code: str
) -> None:
    sign_args = ["--param-type", "t=timestamp", "FIND COUNT(receipts.executionId) WHERE ts > $t"]
    code_, _, err = run(capsys, "saved", "sign", "--data", str(lake), "--key",
                        str(keys / "team-a.key"), "--tenant", "acme", "--name", "since", *sign_args)  # fmt: skip
    assert code_ == 0, err
    filled = [
        a.replace("{tmp}", str(tmp_path)).replace("{lake}", str(lake)).replace("{keys}", str(keys))
        for a in argv
    ]
    got, _, err = run(capsys, *filled)
    assert (got, err.split("]")[0]) == (status, f"error[{code}"), err


def test_an_out_of_range_key_sidecar_fails_with_a_key_error(keys: Path, capsys: Any) -> None:
    (keys / "team-a.json").write_text('{"not_after": "9999-12-31T23:59:59-01:00"}')
    status, _, err = run(capsys, "keys", "list", "--keys", str(keys))
    assert status == 4 and "error[PQL-A015]" in err and "out of range" in err


def test_a_bad_declaration_is_refused_and_a_bad_row_does_not_hide_the_others(
    lake: Path, keys: Path, signed: str, tmp_path: Path, capsys: Any
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    _, doc, _ = run(capsys, "saved", "export", "--data", str(lake), "--tenant", "acme", signed)
    bad = json.loads(doc)
    bad["params"] = {"slow": ["float"], "status": "string"}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    status, _, err = run(capsys, *saved(other, keys, "import", str(path)))
    assert status == 4 and "error[PQL-A012]" in err

    (tmp_path / "good.json").write_text(doc)
    assert run(capsys, *saved(other, keys, "import", str(tmp_path / "good.json")))[0] == 0
    with sqlite3.connect(other / "_pql" / "saved.sqlite") as con:  # the same row, in the store
        con.execute(
            "INSERT INTO saved_query VALUES ('acme', 'a-bad-one', ?, '')", (path.read_text(),)
        )
    status, out, err = run(capsys, "saved", "list", "--data", str(other), "--tenant", "acme")
    assert status == 0
    lines = out.splitlines()
    assert lines[1].startswith("a-bad-one\t") and "PQL-A012" in lines[1]
    assert lines[2].startswith(f"{signed}\tteam-a\tana\t")
    assert "1 stored document(s) of tenant 'acme' cannot be read" in err


# ---------------------------------------------------------------------------------------------
# Bounded reads


def test_import_reads_at_most_one_byte_more_than_a_document(
    keys: Path, tmp_path: Path, capsys: Any
) -> None:
    huge = tmp_path / "huge.json"
    with huge.open("wb") as handle:
        handle.truncate(64 * 1024 * 1024)  # sparse: 64 MB of zero bytes
    tracemalloc.start()
    try:
        status, _, err = run(capsys, *saved(tmp_path, keys, "import", str(huge)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 4 and "error[PQL-A012]" in err and "larger than 262,144 bytes" in err
    assert peak < 8 * 1024 * 1024, f"reading the document took {peak:,} bytes"
    if Path("/dev/zero").exists():  # an endless stream
        status, _, err = run(capsys, *saved(tmp_path, keys, "import", "/dev/zero"))
        assert status == 4 and "larger than" in err
