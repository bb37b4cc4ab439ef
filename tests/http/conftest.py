"""A real ``pql serve`` process on 127.0.0.1 over a small lake, with tokens and saved queries."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

import pql
from pql.demo import generate
from pql.saved import SavedStore, sign_query
from pql.server.tokens import TokenStore
from pql.signing import SigningKey
from tests.clock import TEST_NOW

NOW = TEST_NOW.isoformat().replace("+00:00", "Z")
"""Every query fixes its clock: the server runs on the real wall clock, the data on the suite's."""

SIGNED_AT = "2020-01-01T00:00:00Z"
"""Saved queries are signed long ago and never expire, so they are valid on any wall clock."""


@dataclass
class Served:
    """A running server: its URL, process, data directory and the log it wrote."""

    url: str
    process: subprocess.Popen[bytes]
    data: Path
    log: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, token: str | None = None, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(data: Path, log: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """Start ``pql serve`` on a free port, wait until ready, stop it afterwards."""
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pql.cli",
                "serve",
                "--data",
                str(data),
                "--port",
                str(port),
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    url = f"http://127.0.0.1:{port}"
    served = Served(url, process, data, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"pql serve exited {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"pql serve did not get ready:\n{log.read_text()}")
            time.sleep(0.1)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:  # pragma: no cover
            process.kill()
            process.wait()


def make_lake(path: Path, receipts: int) -> tuple[list[str], pql.Engine]:
    """A lake of demo data on the suite's clock; its tenants, largest first."""
    demo = generate(receipts, seed=11, now=TEST_NOW)
    engine = pql.Engine(path)
    engine.ingest("receipts", demo.receipts)
    engine.ingest("decisions", demo.decisions)
    counts = demo.receipts["tenant"].value_counts(sort=True)
    return [str(t) for t in counts["tenant"].to_list()], engine


@dataclass
class Lake:
    path: Path
    keys: Path
    tenants: list[str]
    engine: pql.Engine
    tokens: dict[str, str]


@pytest.fixture(scope="session")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """Two tenants' tokens (``a``, ``b``, ``a-saved`` with only ``saved``, ``a-admin``), a key
    directory, and saved queries: ``errors`` for tenant a, ``b-only`` for tenant b."""
    root = tmp_path_factory.mktemp("served")
    data = root / "lake"
    tenants, engine = make_lake(data, 3_000)
    a, b = tenants[0], tenants[1]
    store = TokenStore.in_data_dir(data)
    tokens = {
        "a": store.create(a, ["query", "saved"], "tenant a")[1],
        "b": store.create(b, ["query", "saved"], "tenant b")[1],
        "a-saved": store.create(a, ["saved"], "saved only")[1],
        "a-admin": store.create(a, ["admin", "incidents:read"], "admin")[1],
    }
    keys = root / "keys"
    key = SigningKey.generate("test-key")
    key.write(keys)
    saved = SavedStore.in_data_dir(data)
    for tenant, name, text in (
        (a, "errors", "FIND COUNT(*) AS n WHERE receipts.status = $status SINCE 30d"),
        (b, "b-only", "FIND COUNT(*) AS n WHERE receipts.status = $status SINCE 30d"),
    ):
        saved.put(
            sign_query(
                text,
                key=key,
                name=name,
                tenant=tenant,
                author="tests",
                catalog=engine.catalog,
                param_types={"status": "string"},
                now=SIGNED_AT,
            )
        )
    return Lake(data, keys, tenants, engine, tokens)


@pytest.fixture(scope="session")
def server(lake: Lake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    log = tmp_path_factory.mktemp("log") / "serve.log"
    # The core's server with the adapters whose routes docs/api/openapi.json describes
    # (test_http_adapters.py covers other adapters' routes, test_http_tenants.py tenancy's).
    core = {"PQL_ADAPTERS": "tenancy,incidents"}
    for served in serve(
        lake.path, log, "--keys", str(lake.keys), "--max-body-bytes", "65536", env=core
    ):
        served.tokens = lake.tokens
        yield served
