"""The HTTP face under load: ``pql serve`` vs the in-process engine on the same workload.

Builds a lake of demo data, starts ``pql serve`` on 127.0.0.1 (a real process), and drives the
workload of :mod:`benchmarks.harness` open loop at ``--qps`` (latency from each request's
scheduled send time, so queueing shows) twice: through an in-process ``Engine(lake, index=True)``
(what the server runs) and over HTTP with keep-alive clients (one ``httpx.Client`` per worker
thread). It reports both p95s and their difference (the goal: HTTP within 5 ms).

``--soak SECONDS`` drives only the server, for that long, sampling its resident memory every
``--rss-every`` seconds, and reports whether anything was dropped (no answer, or an answer other
than the expected 200/4xx) and how RSS moved. Results go to ``benchmarks/results/``::

    python -m benchmarks.http_harness --receipts 200000 --qps 100 --duration 60
    python -m benchmarks.http_harness --receipts 200000 --qps 100 --soak 600
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

import pql
from benchmarks.harness import RESULTS, Request, Sample, _pct, drive, summarize, workload
from pql.demo import generate
from pql.server.tokens import TokenStore


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def start_server(data: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``pql serve`` on a free port, ready (every tenant's index loaded)."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pql.cli", "serve", "--data", str(data), "--port", str(port),
         "--access-log", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("pql serve did not get ready")


def drive_http(
    url: str, tokens: dict[str, str], requests: list[Request], *, workers: int
) -> list[Sample]:
    """Like :func:`benchmarks.harness.drive`, over HTTP: keep-alive client per worker thread."""
    samples: list[Sample] = []
    lock = threading.Lock()
    local = threading.local()
    start = time.perf_counter()

    def one(req: Request) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=url, timeout=30)
        begun = time.perf_counter()
        try:
            response = client.post(
                "/api/pql",
                json={"query": req.text},
                headers={"Authorization": f"Bearer {tokens[req.tenant]}"},
            )
            code = response.status_code
            outcome = (
                "ok" if code == 200 else "refused" if code in (422, 429, 504) else
                "invalid" if 400 <= code < 500 else "error"
            )  # fmt: skip
        except httpx.HTTPError:
            outcome = "dropped"
        done = time.perf_counter()
        sample = Sample(
            req.at, req.shape, req.tenant, (done - start - req.at) * 1000,
            (done - begun) * 1000, outcome,
        )  # fmt: skip
        with lock:
            samples.append(sample)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for req in requests:
            delay = start + req.at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, req)
    return samples


def _sample_rss(
    pid: int, every: float, stop: threading.Event, out: list[tuple[float, int]]
) -> None:
    begun = time.perf_counter()
    while not stop.wait(every):
        out.append((round(time.perf_counter() - begun, 1), _rss_bytes(pid)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--receipts", type=int, default=200_000)
    ap.add_argument("--tenants", type=int, default=8)
    ap.add_argument("--qps", type=float, default=100.0)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of load per side")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--adhoc-share", type=float, default=0.2)
    ap.add_argument("--zipf", type=float, default=1.1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--soak", type=float, default=0.0, help="soak the server this many seconds")
    ap.add_argument("--rss-every", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="pql-http-harness-"))
    data = generate(args.receipts, seed=args.seed, tenants=args.tenants)
    lake = work / "lake"
    writer = pql.Engine(lake)
    writer.ingest("receipts", data.receipts)
    writer.ingest("decisions", data.decisions)
    tenants = sorted(str(t) for t in data.receipts["tenant"].unique().to_list())
    store = TokenStore.in_data_dir(lake)
    tokens = {t: store.create(t, ["query"], "harness")[1] for t in tenants}
    process, url = start_server(lake, work / "access.log")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    # The output folder is where the file is; its absolute path would only name this machine.
    config = {k: v for k, v in vars(args).items() if k != "out"}
    report: dict[str, Any] = {"config": config, "cpus": os.cpu_count()}
    try:
        if args.soak > 0:
            requests = workload(tenants, qps=args.qps, duration=args.soak,
                                adhoc_share=args.adhoc_share, zipf=args.zipf, seed=args.seed)  # fmt: skip
            rss: list[tuple[float, int]] = [(0.0, _rss_bytes(process.pid))]
            stop = threading.Event()
            sampler = threading.Thread(
                target=_sample_rss, args=(process.pid, args.rss_every, stop, rss), daemon=True
            )
            sampler.start()
            t = time.perf_counter()
            samples = drive_http(url, tokens, requests, workers=args.workers)
            wall = time.perf_counter() - t
            stop.set()
            sampler.join()
            outcomes = {o: sum(s.outcome == o for s in samples) for o in
                        ("ok", "refused", "invalid", "error", "dropped")}  # fmt: skip
            tenth = max(1, len(rss) // 10)
            first = sum(r for _, r in rss[:tenth]) / tenth
            last = sum(r for _, r in rss[-tenth:]) / tenth
            report["soak"] = {
                "seconds": args.soak,
                "scheduled": len(requests),
                "answered": len(samples) - outcomes["dropped"],
                "outcomes": outcomes,
                "achieved_qps": round(len(samples) / wall, 2),
                "latency_ms": _pct([s.latency_ms for s in samples]),
                "rss_mib": {
                    "first_tenth_avg": round(first / 2**20, 1),
                    "last_tenth_avg": round(last / 2**20, 1),
                    "max": round(max(r for _, r in rss) / 2**20, 1),
                    "growth_pct": round((last - first) / first * 100, 2),
                },
                "rss_series": [(at, round(r / 2**20, 1)) for at, r in rss],
            }
            name = f"http-soak-{int(args.soak)}s-{stamp}.json"
        else:
            requests = workload(tenants, qps=args.qps, duration=args.duration,
                                adhoc_share=args.adhoc_share, zipf=args.zipf, seed=args.seed)  # fmt: skip
            engine = pql.Engine(lake, index=True)
            for tenant in tenants:  # what the server did before it said ready
                engine.store.load(tenant)  # type: ignore[attr-defined]
            t = time.perf_counter()
            local = drive(engine, requests, workers=args.workers, cache=True)
            local_summary = summarize(local, wall_s=time.perf_counter() - t, config=config)
            t = time.perf_counter()
            remote = drive_http(url, tokens, requests, workers=args.workers)
            remote_summary = summarize(remote, wall_s=time.perf_counter() - t, config=config)
            p95_local = local_summary["latency_ms"]["p95"]
            p95_http = remote_summary["latency_ms"]["p95"]
            report |= {
                "in_process": local_summary,
                "http": remote_summary,
                "http_dropped": sum(s.outcome == "dropped" for s in remote),
                "p95_ms": {
                    "in_process": p95_local,
                    "http": p95_http,
                    "difference": round(p95_http - p95_local, 3),
                },
                "p50_ms": {
                    "in_process": local_summary["latency_ms"]["p50"],
                    "http": remote_summary["latency_ms"]["p50"],
                },
            }
            name = f"http-{args.receipts // 1000}k-{stamp}.json"
    finally:
        process.terminate()
        process.wait(timeout=15)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / name
    path.write_text(json.dumps(report, indent=2) + "\n")
    brief = report.get("p95_ms") or {k: v for k, v in report["soak"].items() if k != "rss_series"}
    print(json.dumps(brief, indent=2))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
