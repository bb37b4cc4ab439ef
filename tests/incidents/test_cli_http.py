"""The incidents commands and HTTP routes, over a data directory with two tenants' incidents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

import pql
from pql import cli
from pql.adapters.incidents import for_engine
from pql.adapters.incidents.synth import generate
from pql.server.tokens import TokenStore
from tests.http.conftest import Served, serve


@dataclass
class Lake:
    path: Path
    ids: dict[str, list[str]]
    """Incident ids per tenant."""


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    root = tmp_path_factory.mktemp("incidents") / "lake"
    s = generate(tenants=2, days=8, per_hour=500, incidents_per_tenant=3)
    engine = pql.Engine(root, adapters=["incidents"])
    for subject, frame in (("receipts", s.receipts), ("decisions", s.decisions)):
        engine.ingest(subject, frame)
    service = for_engine(engine)
    ids: dict[str, list[str]] = {}
    for tenant in ("t00", "t01"):
        events = service.replay(tenant, s.end - timedelta(days=1), s.end)
        service.record(events)
        ids[tenant] = list(dict.fromkeys(e["id"] for e in events))
    assert ids["t00"] and ids["t01"]
    return Lake(root, ids)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["incidents", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_show_ack_close(
    lake: Lake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data", str(lake.path)]
    code, out, _ = _run(capsys, "list", *data, "--tenant", "t00", "--format", "json")
    assert code == 0
    listed = json.loads(out)
    assert [i["id"] for i in listed] == lake.ids["t00"]
    assert all(i["tenant"] == "t00" for i in listed)
    first = lake.ids["t00"][0]
    code, out, _ = _run(capsys, "show", *data, "--tenant", "t00", first)
    shown = json.loads(out)
    assert code == 0 and shown["id"] == first and shown["events"][0]["type"] == "mc.incident.open"
    # another tenant's id looks exactly like a missing one
    theirs = _run(capsys, "show", *data, "--tenant", "t01", first)
    missing = _run(capsys, "show", *data, "--tenant", "t01", "inc-nope")
    assert theirs[0] == missing[0] == 2
    assert "PQL-E451" in theirs[2] and "PQL-E451" in missing[2]
    assert "Traceback" not in theirs[2]
    opened = shown["opened_at"]
    acked = opened[:11] + "23:59:00Z" if opened[11:13] < "23" else opened
    code, out, _ = _run(
        capsys, "ack", *data, "--tenant", "t00", "--by", "ana", "--now", acked, first
    )
    assert code == 0 and "acknowledged by ana" in out
    code, out, _ = _run(capsys, "show", *data, "--tenant", "t00", first)
    again = json.loads(out)
    assert again["acked_by"] == "ana" and again["mtta_s"] is not None and again["mtta_s"] >= 0
    code, out, _ = _run(
        capsys, "close", *data, "--tenant", "t00", "--by", "ana", "--now", acked, first
    )
    assert code == 0 and "closed" in out
    code, out, _ = _run(capsys, "show", *data, "--tenant", "t00", first)
    assert json.loads(out)["state"] == "closed"
    code, out, _ = _run(capsys, "verify-log", *data)
    assert code == 0 and "chain intact" in out


def test_note_edit_and_reviewed(
    lake: Lake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data", str(lake.path)]
    incident = lake.ids["t01"][0]
    code, draft, _ = _run(capsys, "note", *data, "--tenant", "t01", incident)
    assert code == 0 and "DRAFT" in draft
    folder = lake.path / "_pql" / "evidence" / "incidents" / incident
    assert not (folder / "published.md").exists()
    edited = tmp_path / "edit.md"
    edited.write_text(
        draft.replace("DRAFT, not reviewed", "edited by on-call") + "\nRoot cause: x\n"
    )
    code, out, _ = _run(capsys, "note", *data, "--tenant", "t01", incident, "--edit", str(edited))
    assert code == 0 and "saved v2.md" in out
    assert (folder / "v1.md").read_text() == draft  # the draft is kept
    assert not (folder / "published.md").exists()  # an edit publishes nothing
    code, out, _ = _run(capsys, "note", *data, "--tenant", "t01", incident)
    assert "Root cause: x" in out
    code, out, _ = _run(capsys, "note", *data, "--tenant", "t01", incident, "--reviewed", "lee")
    assert code == 0 and (folder / "published.md").exists()
    published = (folder / "published.md").read_text()
    assert "Root cause: x" in published and "lee" in published
    # a tenant cannot touch another tenant's note
    code, _, err = _run(capsys, "note", *data, "--tenant", "t00", incident, "--reviewed", "x")
    assert code == 2 and "PQL-E451" in err


GOOD_JSONL = (
    '{"tenant": "t00", "ts": "2026-03-02T11:00:00Z", "name": "queue_depth", "value": 812, '
    '"labels": {"queue": "main", "workflow": "etl"}}\n'
    '{"tenant": "t00", "ts": "2026-03-02T11:00:30Z", "name": "queue_depth", "value": 640}\n'
)
GOOD_CSV = (
    "tenant,ts,name,value,labels\n"
    't00,2026-03-02T11:00:00Z,queue_depth,812,"{""queue"": ""main""}"\n'
    "t00,2026-03-02T11:00:30Z,queue_depth,640,\n"
)


def _samples(path: Path) -> int:
    engine = pql.Engine(path, adapters=["incidents"])
    found = engine.query("FIND metric_samples SINCE 30d", tenant="t00", now="2026-03-02T12:00:00Z")
    return found.df.height


@pytest.mark.parametrize(("suffix", "text"), [(".jsonl", GOOD_JSONL), (".csv", GOOD_CSV)])
def test_ingest_metrics_both_formats(
    suffix: str, text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    source = tmp_path / f"samples{suffix}"
    source.write_text(text)
    code, out, err = _run(capsys, "ingest-metrics", "--data", str(data), str(source))
    assert code == 0, err
    assert "2 samples stored" in out
    assert _samples(data) == 2
    code, out, _ = _run(capsys, "ingest-metrics", "--data", str(data), str(source))
    assert code == 0 and "0 samples stored, 2 duplicates" in out


BAD = [
    (".jsonl", GOOD_JSONL + "{not json\n", 3),
    (".jsonl", GOOD_JSONL + '{"tenant": "t00", "ts": "yesterday", "name": "q", "value": 1}\n', 3),
    (".jsonl", '{"tenant": "t00", "ts": "2026-03-02T11:00:00Z", "name": "q"}\n', 1),
    (
        ".jsonl",
        GOOD_JSONL + '{"tenant": "t00", "ts": "2026-03-02T11:00:00Z", "name": "q", '
        '"value": 1, "labels": [1]}\n',
        3,
    ),
    (".csv", GOOD_CSV + "t00,2026-03-02T11:01:00Z,queue_depth,lots,\n", 4),
    (".csv", GOOD_CSV + 't00,2026-03-02T11:01:00Z,queue_depth,1,"{broken"\n', 4),
]


@pytest.mark.parametrize(("suffix", "text", "line"), BAD)
def test_ingest_metrics_bad_input_names_the_line_and_writes_nothing(
    suffix: str, text: str, line: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    source = tmp_path / f"samples{suffix}"
    source.write_text(text)
    code, _, err = _run(capsys, "ingest-metrics", "--data", str(data), str(source))
    assert code == 2
    assert "PQL-E452" in err and f"{source.name}:{line}:" in err
    assert "Traceback" not in err
    assert _samples(data) == 0


def test_ingest_metrics_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "ingest-metrics", "--data", str(tmp_path), str(tmp_path / "x.csv"))
    assert code == 2 and "PQL-E452" in err


# -- HTTP, over a real server process ---------------------------------------------------------


@pytest.fixture(scope="module")
def served(lake: Lake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    store = TokenStore.in_data_dir(lake.path)
    tokens = {
        "t00": store.create("t00", ["incidents:read"], "t00 on-call")[1],
        "t01": store.create("t01", ["incidents:read"], "t01 on-call")[1],
        "t00-query": store.create("t00", ["query"], "no incidents scope")[1],
    }
    log = tmp_path_factory.mktemp("incidents-serve") / "serve.log"
    for server in serve(lake.path, log, env={"PQL_ADAPTERS": "incidents"}):
        server.tokens = tokens
        yield server


def test_http_lists_and_shows_only_the_tokens_tenant(served: Served, lake: Lake) -> None:
    with served.client(served.tokens["t00"]) as client:
        listed = client.get("/api/incidents")
        one = client.get(f"/api/incidents/{lake.ids['t00'][-1]}")
    assert listed.status_code == 200
    body = listed.json()["incidents"]
    assert {i["id"] for i in body} == set(lake.ids["t00"])
    assert {i["tenant"] for i in body} == {"t00"}
    assert one.status_code == 200
    shown = one.json()
    assert shown["id"] == lake.ids["t00"][-1] and shown["events"]
    assert all(e["tenant"] == "t00" for e in shown["events"])
    with served.client(served.tokens["t01"]) as client:
        theirs = client.get("/api/incidents").json()["incidents"]
    assert {i["id"] for i in theirs} == set(lake.ids["t01"])


def test_http_wall_another_tenants_id_is_the_same_404_as_a_missing_one(
    served: Served, lake: Lake
) -> None:
    with served.client(served.tokens["t00"]) as client:
        theirs = client.get(f"/api/incidents/{lake.ids['t01'][0]}")
        nobody = client.get("/api/incidents/inc-20260302T000000-00000000")
    assert theirs.status_code == nobody.status_code == 404
    a, b = theirs.json(), nobody.json()
    assert a["error"]["code"] == b["error"]["code"] == "PQL-E451"
    assert "t01" not in theirs.text.replace(lake.ids["t01"][0], "")


def test_http_needs_the_incidents_scope(served: Served) -> None:
    import httpx

    assert httpx.get(f"{served.url}/api/incidents").status_code == 401
    with served.client(served.tokens["t00-query"]) as client:
        response = client.get("/api/incidents")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "PQL-A102"
