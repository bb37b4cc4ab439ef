"""A real S3 endpoint for the tests: moto's server, started on 127.0.0.1 in a subprocess.

moto speaks the S3 protocol over HTTP like any S3-compatible store; it keeps its state in
memory, so :func:`reset` empties it between tests. It does not enforce every object-lock rule
(it lets a compliance retention be shortened, and deletes locked versions), which is why the
store checks locks itself.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

CREDENTIALS = {"access_key": "testing", "secret_key": "testing"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    """Start moto's S3 server on a free port of 127.0.0.1; yield its URL; stop it."""
    port = _free_port()
    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def reset(url: str) -> None:
    """Forget every bucket and object the server holds."""
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
