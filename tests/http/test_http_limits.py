"""Admission (429 with Retry-After) and the deadline (504) over HTTP, on a larger lake."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from pql.server.tokens import TokenStore
from tests.http.conftest import NOW, Served, make_lake, serve

HEAVY = (
    "FIND COUNT(decisions.decisionId) JOIN receipts ON decisions.executionId = "
    'receipts.executionId WHERE NOT (receipts.status = "ok") GROUP BY decisions.rule SINCE 180d'
)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("big")
    tenants, _ = make_lake(root / "lake", 30_000)
    token = TokenStore.in_data_dir(root / "lake").create(tenants[0], ["query"])[1]
    return root / "lake", token


@pytest.fixture
def limited(
    big: tuple[Path, str], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Served]:
    for served in serve(big[0], tmp_path / "serve.log", *request.param):
        served.tokens = {"a": big[1]}
        yield served


@pytest.mark.parametrize(
    "limited", [("--tenant-max-concurrent", "1", "--tenant-max-queued", "0")], indirect=True
)
def test_full_admission_queue_is_429_with_retry_after(limited: Served) -> None:
    body = {"query": HEAVY, "now": NOW, "cache": False}

    def one(_: int) -> httpx.Response:
        with limited.client(limited.tokens["a"]) as client:
            return client.post("/api/pql", json=body)

    refused: list[httpx.Response] = []
    for _ in range(5):  # a burst of 12 at once: one runs, none may wait, the rest are refused
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(one, range(12)))
        assert {a.status_code for a in answers} <= {200, 429}
        refused = [a for a in answers if a.status_code == 429]
        if refused:
            break
    assert refused, "no request was refused"
    assert refused[0].headers["retry-after"] == "1"
    assert refused[0].json()["error"]["code"] == "PQL-S007"


@pytest.mark.parametrize("limited", [("--deadline-ms", "1")], indirect=True)
def test_past_the_deadline_is_504(limited: Served) -> None:
    rows = (
        "FIND receipts JOIN decisions ON receipts.executionId = decisions.executionId "
        "SINCE 180d LIMIT 10000"
    )
    answers = []
    with limited.client(limited.tokens["a"]) as client:
        for text in (rows, HEAVY) * 3:  # a deadline is a race: some may still finish in 1 ms
            answers.append(
                client.post("/api/pql", json={"query": text, "now": NOW, "cache": False})
            )
    assert {a.status_code for a in answers} <= {200, 504}
    late = [a for a in answers if a.status_code == 504]
    assert late, "no query ran past a 1 ms deadline"
    assert late[0].json()["error"]["code"] == "PQL-S006"
