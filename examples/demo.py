"""The live demo: a FastAPI app with the monitoring router and a realistic workload.

Run it with ``make demo`` (or ``.venv/bin/python examples/demo.py``) and open the URLs it
prints.  The workload (``examples/workload.py``) runs in background threads and reports
to the process-wide default registry, which ``monitoring_router`` serves:

- a discovery pipeline that scans and scores this package's own source files, then a
  migration pipeline that migrates and tests the highest-scored ones in a temporary
  workspace;
- the pool ``daedalus``: 4 agents pulling Spec 020 tasks from a bounded queue (100
  pending), with failures, retries, bursts that back the queue up and reject tasks, and
  health (memory, CPU) derived from the process's real numbers.  The agents are real
  smolagents agents (``examples/smol_agents.py``: ToolCallingAgents and CodeAgents driven
  by a scripted offline model) whose observed tools do each task's work, so ``/metrics``
  shows real tool calls and agent runs, and a task's trace shows its run, steps and tools;
- a checkpoint of real files (sha256) before each migration and a rollback that restores
  and verifies them after it.

Options: ``--host``/``--port`` (or ``DIONYSUS_DEMO_HOST``/``DIONYSUS_DEMO_PORT``),
``--speed`` (run the workload faster than real time), ``--duration`` (stop after that
many seconds instead of waiting for Ctrl-C), ``--seed``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import alert_scenarios
import uvicorn
from fastapi import FastAPI
from smol_agents import SmolagentsExecutor
from workload import Scenario, Workload, WorkloadConfig

import dionysus_observability as obs
from dionysus_observability import monitoring_router

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
HOST_ENV = "DIONYSUS_DEMO_HOST"
PORT_ENV = "DIONYSUS_DEMO_PORT"
PREFIX = "/api/v1/monitoring"
#: Seconds ``stop`` waits for the workload's threads at shutdown.
STOP_TIMEOUT_S = 10.0

#: Scenarios run during the demo: ``(workload second, fn(workload))``.  Scenarios that
#: induce alerts (memory climbing, a queue backing up, a failing rollback) go here.
#: ``alert_scenarios.start`` repeats a cycle of three alert kinds that fire and resolve.
SCENARIOS: list[tuple[float, Scenario]] = [(0.0, alert_scenarios.start)]


def create_app(workload: Workload) -> FastAPI:
    """The demo app: the monitoring router, and the workload running while it serves."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        workload.start()
        try:
            yield
        finally:
            await asyncio.to_thread(workload.stop, STOP_TIMEOUT_S)

    app = FastAPI(
        title="dionysus_observability demo",
        description="A live workload observed by dionysus_observability.",
        lifespan=lifespan,
    )
    app.add_middleware(obs.TraceMiddleware)
    app.include_router(monitoring_router)

    @app.get("/", summary="Where to look")
    async def index() -> dict[str, str]:
        """Links to the monitoring endpoints."""
        return endpoint_urls("")

    return app


def endpoint_urls(base: str) -> dict[str, str]:
    """The URLs worth opening, by name, under ``base`` (``http://host:port``)."""
    api = f"{base}{PREFIX}"
    return {
        "metrics": f"{api}/metrics",
        "performance": f"{api}/performance?window=60",
        "alerts": f"{api}/alerts",
        "prometheus": f"{api}/prometheus",
        "traces": f"{api}/traces/<trace_id from a run in /metrics>",
        "docs": f"{base}/docs",
    }


def banner(host: str, port: int, config: WorkloadConfig) -> str:
    """The text printed at startup: what runs and which URLs to open."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    base = f"http://{shown}:{port}"
    lines = [
        f"dionysus_observability demo: pool {config.pool!r} with {config.agents} agents, "
        f"pipelines over {config.source_dir}, speed {config.speed:g}x",
        *(f"  {name:<12} {url}" for name, url in endpoint_urls(base).items()),
        "Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def _env_port() -> int:
    raw = os.environ.get(PORT_ENV)
    if raw is None:
        return DEFAULT_PORT
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{PORT_ENV} must be a port number, got {raw!r}") from None


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (host and port default to the environment, then 127.0.0.1:8000)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default=os.environ.get(HOST_ENV, DEFAULT_HOST),
                        help=f"address to bind (env {HOST_ENV}; default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=_env_port(),
                        help=f"port to bind (env {PORT_ENV}; default {DEFAULT_PORT})")
    parser.add_argument("--duration", type=_positive, default=None, metavar="SECONDS",
                        help="stop by itself after this many seconds (default: run until Ctrl-C)")
    parser.add_argument("--speed", type=_positive, default=1.0,
                        help="run the workload this many times faster than real time")
    parser.add_argument("--seed", type=int, default=None, help="seed of the workload's randomness")
    parser.add_argument("--log-level", default="info",
                        choices=["critical", "error", "warning", "info", "debug"],
                        help="lowest level logged, by the hooks and by uvicorn")
    parser.add_argument("--log-json", action="store_true",
                        help="log JSON lines instead of console lines")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the demo until Ctrl-C (or ``--duration``); 0 when it shut down cleanly."""
    args = parse_args(argv)
    obs.configure_logging(json=args.log_json, level=args.log_level.upper())
    config = WorkloadConfig(speed=args.speed, seed=args.seed)
    registry = obs.get_registry()
    workload = Workload(registry, config, scenarios=SCENARIOS,
                        executor=SmolagentsExecutor(registry, config.pool))
    server = uvicorn.Server(uvicorn.Config(create_app(workload), host=args.host, port=args.port,
                                           log_level=args.log_level, lifespan="on",
                                           timeout_graceful_shutdown=2))
    print(banner(args.host, args.port, config), flush=True)

    def request_exit() -> None:
        print(f"--duration {args.duration:g} s reached; stopping.", flush=True)
        server.should_exit = True

    timer = None
    if args.duration is not None:
        timer = threading.Timer(args.duration, request_exit)
        timer.daemon = True
        timer.start()
    try:
        server.run()
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it handled, after a graceful shutdown
    finally:
        if timer is not None:
            timer.cancel()
        clean = workload.stop(STOP_TIMEOUT_S)
    if not clean or workload.errors:
        print(f"workload did not stop cleanly: errors={workload.errors!r}", file=sys.stderr)
        return 1
    print(f"stopped cleanly after {workload.cycles_completed} pipeline cycles.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
