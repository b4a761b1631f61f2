"""B6: GET /metrics and /performance over real HTTP vs the same app's trivial JSON route.

A child process (``python -m bench.b6_http --serve``) builds a registry with one pool of
``AGENTS`` agents, records ``LIFECYCLES`` lifecycles of the ``bench.Workload`` mix on
the real clock, leaves ``QUEUED`` tasks pending, mounts ``create_monitoring_router`` and
a trivial ``GET /ping`` on one FastAPI app, and serves it with uvicorn on a free
loopback port.  This process then sends, through one persistent ``httpx.Client``, a
warm-up and ``ROUNDS`` rounds of the three requests in turn, and compares median
latencies.  Separate processes keep the client's work off the server's GIL.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from . import Workload, quiet_logs, result, scaled

AGENTS = 16
QUEUED = 100
LIFECYCLES = 1_000_000
MAX_RETRIES = 3
WARMUP = 50
ROUNDS = 500
TARGET = "<= 3"
PREFIX = "/api/v1/monitoring"
ROUTES = {"ping": "/ping", "metrics": f"{PREFIX}/metrics",
          "performance": f"{PREFIX}/performance?window=300"}
#: How long the server may take to record its history and start listening.
READY_TIMEOUT_S = 300.0
REQUEST_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(port: int, lifecycles: int) -> None:
    """Record the history, then serve the app on ``127.0.0.1:port`` until killed."""
    import uvicorn
    from fastapi import FastAPI

    from dionysus_observability import Registry, create_monitoring_router

    quiet_logs()
    registry = Registry()
    pool = registry.pool("bench", size=AGENTS, max_size=AGENTS, max_queue=QUEUED,
                         max_retries=MAX_RETRIES)
    agents = [f"agent-{i}" for i in range(AGENTS)]
    for i, agent in enumerate(agents):
        pool.agent_spawned(agent, context_window_id=f"cw-{i}", tool_session_id=f"ts-{i}",
                           memory_handle_id=f"mh-{i}")
        pool.agent_health(agent, memory=0.3 + i / 100, cpu=0.2 + i / 100)
    Workload(pool, agents, MAX_RETRIES, "t").run(lifecycles)
    for i in range(QUEUED):
        pool.task_submitted(f"queued-{i}", "migration")

    app = FastAPI()
    app.include_router(create_monitoring_router(registry))

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _wait_ready(client: httpx.Client, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if client.get(ROUTES["ping"]).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"the server was not ready within {READY_TIMEOUT_S:g} s")


def _get(client: httpx.Client, path: str) -> float:
    t0 = time.perf_counter()
    response = client.get(path)
    took = time.perf_counter() - t0
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} -> {response.status_code}: {response.text[:200]}")
    return took


def run() -> list[dict[str, Any]]:
    """Measure B6 and return its two rows (metrics, performance)."""
    lifecycles = scaled(LIFECYCLES, minimum=2_000)
    rounds = scaled(ROUNDS, minimum=60)
    port = _free_port()
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.b6_http", "--serve", "--port", str(port),
             "--lifecycles", str(lifecycles)],
            cwd=root, stdout=subprocess.DEVNULL, stderr=err,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}",
                              timeout=REQUEST_TIMEOUT_S) as client:
                try:
                    _wait_ready(client, proc)
                except (RuntimeError, TimeoutError) as exc:
                    err.seek(0)
                    tail = err.read().decode(errors="replace").strip()[-500:]
                    raise RuntimeError(f"{exc}: {tail}") from None
                sizes = {k: len(client.get(p).content) for k, p in ROUTES.items()}
                for _ in range(WARMUP):
                    for path in ROUTES.values():
                        _get(client, path)
                times: dict[str, list[float]] = {k: [] for k in ROUTES}
                for _ in range(rounds):
                    for key, path in ROUTES.items():
                        times[key].append(_get(client, path))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    med = {k: statistics.median(v) for k, v in times.items()}
    base = (f"{AGENTS} agents, {QUEUED} queued, {lifecycles:,} lifecycles; median GET "
            f"/ping {med['ping'] * 1e3:.3f} ms ({sizes['ping']} B)")
    return [
        result(
            f"B6.{key}",
            f"GET /{key} / GET /ping median latency (uvicorn)",
            med[key] / med["ping"],
            TARGET,
            f"median GET /{key} {med[key] * 1e3:.3f} ms ({sizes[key]:,} B) vs {base}; "
            f"{rounds} rounds after {WARMUP} warm-up, one keep-alive httpx.Client",
        )
        for key in ("metrics", "performance")
    ]


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.b6_http --serve --port P --lifecycles N``: the server side."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", action="store_true", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lifecycles", type=int, required=True)
    args = parser.parse_args(argv)
    serve(args.port, args.lifecycles)


if __name__ == "__main__":
    main()
