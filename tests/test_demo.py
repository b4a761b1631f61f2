"""The demo (examples/demo.py) and its workload (examples/workload.py), run for real.

The end-to-end tests start ``examples/demo.py`` in a subprocess on a free loopback port
and read its endpoints over HTTP; the others drive the workload in-process against a
fresh registry.  Waiting is polling with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from _binaries import Poller, free_port

import dionysus_observability as obs

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PREFIX = "/api/v1/monitoring"
#: Longest wait for the demo to start answering, or for a condition to hold.
DEADLINE_S = 20.0
_POLL_S = 0.1
_wait_for = Poller(DEADLINE_S, _POLL_S)


def _load_workload() -> ModuleType:
    """Import examples/workload.py (examples/ is not a package)."""
    name = "demo_workload"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / "workload.py")
    if spec is None or spec.loader is None:
        raise ImportError("cannot load examples/workload.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


wl = _load_workload()


class DemoProcess:
    """``examples/demo.py`` running in a subprocess, its output in a file."""

    def __init__(self, log_path: Path, *args: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "demo.py"), "--port", str(self.port),
             "--log-level", "warning", *args],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> dict[str, Any] | None:
        """GET a monitoring endpoint; None while the server is not answering."""
        if self.proc.poll() is not None:
            pytest.fail(f"the demo exited early ({self.proc.returncode}):\n{self.output()}")
        try:
            response = httpx.get(f"{self.base}{PREFIX}{path}", timeout=2.0)
        except httpx.TransportError:
            return None
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait_exit(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the demo did not exit within {timeout_s} s:\n{self.output()[-3000:]}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


@pytest.fixture
def demo_factory(tmp_path: Path) -> Iterator[Callable[..., DemoProcess]]:
    started: list[DemoProcess] = []

    def start(*args: str) -> DemoProcess:
        demo = DemoProcess(tmp_path / f"demo-{len(started)}.log", *args)
        started.append(demo)
        return demo

    yield start
    for demo in started:
        demo.close()


def _shows_full_workload(metrics: dict[str, Any] | None) -> bool:
    if not metrics:
        return False
    pools = {p["name"]: p for p in metrics["coordination"]["pools"]}
    pool = pools.get("daedalus")
    agents = [a for a in metrics["agents"]["items"] if a["pool"] == "daedalus"]
    rollbacks = metrics["rollback"]["rollbacks"]
    return bool(
        metrics["pipelines"]["runs"]
        and pool is not None
        and len(agents) == 4
        and pool["tasks_by_status"]["completed"] > 0
        and rollbacks["total"] >= 1
        and rollbacks["succeeded"] >= 1
    )


@pytest.mark.e2e
def test_demo_serves_pipelines_pool_tasks_and_rollbacks_then_stops_after_duration(
    demo_factory: Callable[..., DemoProcess],
) -> None:
    demo = demo_factory("--speed", "5", "--duration", "8", "--seed", "7")

    metrics = _wait_for("a pipeline, 4 agents, completed tasks and a rollback in /metrics",
                        lambda: (m := demo.get("/metrics")) and _shows_full_workload(m) and m)

    kinds = {run["kind"] for run in metrics["pipelines"]["runs"]}
    assert "discovery" in kinds
    discovery = next(r for r in metrics["pipelines"]["runs"] if r["kind"] == "discovery")
    assert discovery["total_items"] and discovery["total_items"] >= 10  # real files scanned
    assert metrics["rollback"]["checkpoints"]["restored"] >= 1
    assert all(0.0 <= a["memory"] <= 1.0 for a in metrics["agents"]["items"]
               if a["memory"] is not None)
    perf = demo.get("/performance?window=300")
    assert perf is not None
    assert perf["throughput"]["tasks_completed_per_s"] > 0
    assert perf["latency"]["task_duration_s"]["count"] > 0

    assert demo.wait_exit(DEADLINE_S) == 0, demo.output()[-3000:]
    out = demo.output()
    assert f"http://127.0.0.1:{demo.port}{PREFIX}/metrics" in out
    assert f"http://127.0.0.1:{demo.port}/docs" in out
    assert "stopped cleanly" in out


@pytest.mark.e2e
def test_ctrl_c_stops_the_demo_and_its_threads_cleanly(
    demo_factory: Callable[..., DemoProcess],
) -> None:
    demo = demo_factory("--speed", "4", "--duration", "60")
    _wait_for("the demo to serve its 4 agents",
              lambda: (m := demo.get("/metrics")) and m["agents"]["total"] == 4)

    demo.proc.send_signal(signal.SIGINT)

    assert demo.wait_exit(DEADLINE_S) == 0, demo.output()[-3000:]
    out = demo.output()
    assert "stopped cleanly" in out
    assert "--duration" not in out  # it stopped on Ctrl-C, not on the timer


# -- the workload in-process ------------------------------------------------------------


def _fast_config(**overrides: Any) -> Any:
    settings: dict[str, Any] = {"speed": 20.0, "seed": 3, "first_burst_s": 1e9,
                                "cycle_pause_s": 1.0, "health_interval_s": 0.5}
    settings.update(overrides)
    return wl.WorkloadConfig(**settings)


@pytest.fixture
def fresh() -> obs.Registry:
    return obs.Registry()


def test_the_101st_pending_task_is_rejected_and_counted(fresh: obs.Registry) -> None:
    workload = wl.Workload(fresh, _fast_config())

    accepted = [workload.submit(workload.new_task("ingest", 0.1)) for _ in range(101)]

    assert accepted.count(True) == 100
    assert accepted[-1] is False
    pool = fresh.metrics().coordination.pools[0]
    assert pool.queue_depth == 100
    assert pool.rejected == 1
    assert len(workload.queue) == 100


def test_rollback_restores_checkpointed_files_and_verifies_their_checksums(
    fresh: obs.Registry, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    (workspace / "pkg").mkdir(parents=True)
    originals = {"pkg/a.py": b"x = 1\n", "pkg/b.py": b"def f():\n    return 2\n"}
    for rel, data in originals.items():
        (workspace / rel).write_bytes(data)
    cp = wl.create_checkpoint("cp-t", "pkg", workspace, list(originals), tmp_path / "store")
    fresh.rollbacks.checkpoint_created(cp.id, component=cp.component, files=len(cp.manifest),
                                       size_bytes=cp.size_bytes, checksum=cp.checksum)
    (workspace / "pkg/a.py").write_bytes(b"x = 'migrated'\n")
    (workspace / "pkg/b.py").unlink()

    with fresh.rollbacks.rollback(cp.id):
        wl.restore_checkpoint(cp, workspace)

    for rel, data in originals.items():
        assert (workspace / rel).read_bytes() == data
        assert cp.manifest[rel] == hashlib.sha256(data).hexdigest()
    assert cp.size_bytes == sum(len(d) for d in originals.values())
    rollback = fresh.metrics().rollback
    assert rollback.rollbacks.succeeded == 1
    assert rollback.checkpoints.restored == 1


def test_a_corrupted_checkpoint_fails_the_rollback_with_a_checksum_mismatch(
    fresh: obs.Registry, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "a.py").write_bytes(b"x = 1\n")
    cp = wl.create_checkpoint("cp-bad", "a", workspace, ["a.py"], tmp_path / "store")
    fresh.rollbacks.checkpoint_created(cp.id, component="a", files=1,
                                       size_bytes=cp.size_bytes, checksum=cp.checksum)
    (cp.store / "a.py").write_bytes(b"x = 2\n")

    with pytest.raises(wl.ChecksumMismatchError, match=r"a\.py"), \
            fresh.rollbacks.rollback(cp.id):
        wl.restore_checkpoint(cp, workspace)

    rollbacks = fresh.metrics().rollback.rollbacks
    assert (rollbacks.failed, rollbacks.succeeded) == (1, 0)


def test_a_workload_cycle_reports_consistently_and_every_task_ends(fresh: obs.Registry) -> None:
    workload = wl.Workload(fresh, _fast_config())
    workload.start()
    try:
        _wait_for("one discovery/migration cycle", lambda: workload.cycles_completed >= 1)
    finally:
        assert workload.stop() is True
    assert workload.errors == []

    m = fresh.metrics()
    assert m.dropped_events == {}  # every hook call was valid and in order
    pool = m.coordination.pools[0]
    ended = pool.tasks_by_status
    assert ended["pending"] == 0 and ended["in_progress"] == 0
    assert sum(pool.tasks_by_type.values()) == (
        ended["completed"] + ended["failed"] + ended["cancelled"])
    runs = {r.id: r for r in m.pipelines.runs}
    assert runs["discovery-1"].status == "succeeded"
    assert runs["discovery-1"].stage == "task_creation"
    assert runs["migration-1"].status in ("succeeded", "failed")
    assert runs["migration-1"].succeeded + runs["migration-1"].failed == (
        runs["migration-1"].total_items)
    assert m.rollback.rollbacks.total >= 1
    assert m.agents.total == 0  # retired on stop


class _AlwaysFails:
    """An executor that fails every research task and records who ran each attempt."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, task: Any, ctx: Any) -> None:
        if task.type != "research":
            return
        with self.lock:
            self.attempts.append((task.id, ctx.agent_id))
        raise TimeoutError("model call exceeded 30 s")


def test_a_failing_task_is_retried_on_other_agents_until_max_retries(
    fresh: obs.Registry,
) -> None:
    executor = _AlwaysFails()
    workload = wl.Workload(fresh, _fast_config(background_rate=0.0), executor=executor)
    task = workload.new_task("research", 0.1)
    workload.start()
    try:
        workload.submit(task)
        _wait_for("the research task to end", lambda: task.done.is_set())
    finally:
        workload.stop()

    assert task.outcome == "failed"
    agents = [agent for task_id, agent in executor.attempts if task_id == task.id]
    assert len(agents) == 3
    assert all(a != b for a, b in itertools.pairwise(agents))
    pool = fresh.metrics().coordination.pools[0]
    assert pool.tasks_by_status["failed"] == 1
    assert pool.retries == 2


def test_scheduled_scenarios_drive_agent_memory_to_degraded_and_back(
    fresh: obs.Registry,
) -> None:
    def climb(w: Any) -> None:
        w.knobs.agent_memory_extra["daedalus-1"] = 0.97

    def relieve(w: Any) -> None:
        w.knobs.agent_memory_extra.clear()

    workload = wl.Workload(fresh, _fast_config(), scenarios=[(2.0, climb)])
    workload.start()
    try:
        def state() -> str:
            agents = {a.id: a for a in fresh.metrics().agents.items}
            return str(agents["daedalus-1"].state)

        _wait_for("daedalus-1 to degrade", lambda: state() == "degraded")
        assert next(a for a in fresh.metrics().agents.items if a.id == "daedalus-1").memory >= 0.95
        workload.schedule(workload.elapsed_s(), relieve)
        _wait_for("daedalus-1 to recover", lambda: state() != "degraded")
    finally:
        workload.stop()
    assert workload.errors == []
