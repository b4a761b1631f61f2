"""A live, realistic workload for the demo: pipelines, a pool of agents, checkpoints, rollbacks.

Everything here does real work and reports it through the hooks of
``dionysus_observability``:

- a **discovery** pipeline scans a real source tree (this package's own by default),
  scores each ``.py`` file by size and complexity (``ast``), one progress step per file,
  through the stages ``discovery -> assessment -> task_creation``;
- a **migration** pipeline then copies the highest-scored components into a temporary
  workspace, takes a **checkpoint** of them (sha256 per file), migrates each one with a
  ``migration`` task, tests it with a ``general`` task (stages ``migrating -> testing``)
  and finally **rolls the workspace back** to the checkpoint, verifying every checksum;
- the pool ``daedalus``: agent threads pull tasks from a real bounded queue (100 pending;
  the 101st is rejected), fail now and then and are retried on another agent up to
  ``max_retries`` attempts, while a bursty producer of Spec 020 task types backs the
  queue up at times;
- a health monitor reports each agent's memory and CPU, derived from the process's real
  numbers (psutil: RSS, per-thread CPU time) and what the agent is working on.

Two seams for other code:

- ``Workload(executor=...)``: the callable that executes one task on an agent (the
  default, ``SimulatedExecutor``, sleeps and does small real work; a smolagents agent can
  take its place).  It raises to fail the attempt.
- ``Workload(scenarios=[(at_s, fn), ...])`` and ``Workload.schedule``: callables run by a
  scenario thread at a workload time, given the workload; with ``Workload.knobs`` they
  can push an agent's memory up, hold task types in the queue, burst the producer or
  corrupt the next checkpoint.

Time: durations are *workload seconds*; ``WorkloadConfig.speed`` runs them faster
(``speed=4``: a 2 s task takes 0.5 s of wall time).  Scenario times are workload seconds
since ``start``.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import heapq
import itertools
import math
import queue
import random
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil
import structlog

import dionysus_observability as obs

__all__ = [
    "PACKAGE_DIR",
    "TASK_TYPES",
    "AgentContext",
    "ChecksumMismatchError",
    "ComponentScore",
    "FileCheckpoint",
    "Knobs",
    "Scenario",
    "SimulatedExecutor",
    "Task",
    "TaskExecutor",
    "TaskQueue",
    "Workload",
    "WorkloadConfig",
    "WorkloadStopped",
    "create_checkpoint",
    "restore_checkpoint",
    "scan_components",
    "score_file",
]

log = structlog.get_logger("demo.workload")

#: The source tree the discovery pipeline scans by default: this package's own.
PACKAGE_DIR = Path(obs.__file__).resolve().parent
#: Spec 020 task types.
TASK_TYPES = ("discovery", "migration", "heartbeat", "ingest", "research", "general")
#: Spec 020: tasks run for 50 ms (a heartbeat) to 2 s (research), in workload seconds.
MIN_TASK_S = 0.05
MAX_TASK_S = 2.0
#: Typical duration (workload seconds) per task type: (median, spread of the log-normal).
TASK_DURATIONS: dict[str, tuple[float, float]] = {
    "heartbeat": (0.06, 0.3),
    "ingest": (0.35, 0.5),
    "discovery": (0.25, 0.5),
    "research": (1.1, 0.5),
    "migration": (0.8, 0.4),
    "general": (0.25, 0.5),
}
#: Chance that one attempt of a task fails transiently (then it is retried).
FAILURE_RATES: dict[str, float] = {
    "heartbeat": 0.01,
    "ingest": 0.08,
    "discovery": 0.05,
    "research": 0.10,
    "migration": 0.12,
    "general": 0.05,
}
#: Mix of the background producer's task types (weights).
BACKGROUND_MIX: dict[str, float] = {
    "heartbeat": 0.30,
    "ingest": 0.25,
    "research": 0.15,
    "general": 0.15,
    "discovery": 0.15,
}
_MIX_TYPES = list(BACKGROUND_MIX)
_MIX_WEIGHTS = list(BACKGROUND_MIX.values())
#: Chance that a background task can never succeed (it ends FAILED after its retries):
#: about one every three minutes at the default rate.
POISON_RATE = 0.002
#: Chance that a migration produces code that does not compile (its test then fails and
#: the component counts as a failed pipeline item).
DEFECT_RATE = 0.10
#: Agent working set while running a task of each type (bytes): model context, parsed code.
WORKING_SET_BYTES: dict[str, int] = {
    "heartbeat": 1 << 20,
    "ingest": 24 << 20,
    "discovery": 32 << 20,
    "research": 64 << 20,
    "migration": 48 << 20,
    "general": 16 << 20,
}
IDLE_WORKING_SET_BYTES = 4 << 20
_MIB = 1 << 20

_TRANSIENT_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (TimeoutError, "model call exceeded 30 s"),
    (ConnectionError, "discovery service unreachable (connection reset)"),
)


class RateLimitError(RuntimeError):
    """The model provider answered 429 Too Many Requests."""


class ToolCallError(RuntimeError):
    """A tool the agent called returned an error."""


class WorkloadStopped(Exception):
    """Raised inside workload threads (and executors) when the workload is stopping."""


class ChecksumMismatchError(RuntimeError):
    """A restored file's sha256 does not match the checkpoint's manifest."""

    def __init__(self, path: str, expected: str, actual: str) -> None:
        super().__init__(
            f"checksum mismatch for {path}: expected sha256:{expected[:12]}..., "
            f"got sha256:{actual[:12]}..."
        )
        self.path = path
        self.expected = expected
        self.actual = actual


# -- tasks and the queue --------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Task:
    """One unit of work for the pool.

    Attributes:
        id: unique task id.
        type: a Spec 020 task type.
        duration_s: how long the work takes, in workload seconds.
        payload: what the work is about (``path``, ``component``, ``action``...).
        trace_id: the trace it was submitted under.
        attempts: attempts so far (assignments).
        last_agent: the agent of the last failed attempt (a retry prefers another one).
        outcome: ``completed``, ``failed`` or ``cancelled`` once it has ended.
        on_done: called with the task, from the agent's thread, when it has ended.
    """

    id: str
    type: str
    duration_s: float
    payload: dict[str, Any] = field(default_factory=dict)
    trace_id: str | None = None
    attempts: int = 0
    last_agent: str | None = None
    last_error: str | None = None
    outcome: str | None = None
    on_done: Callable[[Task], None] | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def finish(self, outcome: str) -> None:
        """Mark the task ended and notify ``on_done``."""
        self.outcome = outcome
        self.done.set()
        if self.on_done is not None:
            self.on_done(self)


class TaskQueue:
    """A bounded FIFO of pending tasks, shared by the producer, the pipelines and the agents.

    ``offer`` refuses a new task when ``max_size`` tasks are pending (Spec 020: the
    101st is rejected).  A retried task goes back with ``requeue``, which never refuses:
    the task was already admitted, so the queue may briefly hold up to one extra task per
    agent.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._items: deque[Task] = deque()
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, task: Task, on_accept: Callable[[], None] | None = None) -> bool:
        """Append ``task`` unless the queue is full; ``on_accept`` runs first, atomically.

        ``on_accept`` (the ``task_submitted`` hook) runs under the queue's lock before the
        task becomes visible, so no agent can pick up a task the registry has not seen.
        """
        with self._cond:
            if len(self._items) >= self.max_size:
                return False
            if on_accept is not None:
                on_accept()
            self._items.append(task)
            self._cond.notify()
            return True

    def requeue(self, task: Task) -> None:
        """Put a retried task back at the end of the queue (never refused)."""
        with self._cond:
            self._items.append(task)
            self._cond.notify_all()

    def take(self, accept: Callable[[Task], bool], timeout_s: float) -> Task | None:
        """Remove and return the oldest task ``accept`` takes, waiting up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for index, task in enumerate(self._items):
                    if accept(task):
                        del self._items[index]
                        return task
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def drain(self) -> list[Task]:
        """Remove and return every pending task."""
        with self._cond:
            tasks = list(self._items)
            self._items.clear()
            return tasks

    def wake_all(self) -> None:
        """Wake every waiting ``take`` (after a change of what agents accept)."""
        with self._cond:
            self._cond.notify_all()


# -- executors --------------------------------------------------------------------------


@dataclass(slots=True)
class AgentContext:
    """What an executor gets besides the task: who runs it and how to wait."""

    agent_id: str
    pool: obs.Pool
    rng: random.Random
    speed: float
    stop_event: threading.Event

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` workload seconds; raise ``WorkloadStopped`` when stopping."""
        if self.stop_event.wait(max(0.0, seconds) / self.speed):
            raise WorkloadStopped


class TaskExecutor(Protocol):
    """Executes one attempt of a task on an agent; raises to fail the attempt.

    Raising ``WorkloadStopped`` (``AgentContext.sleep`` does when stopping) cancels the
    task instead of failing it.
    """

    def __call__(self, task: Task, ctx: AgentContext) -> None: ...


class SimulatedExecutor:
    """The demo's executor: waits out the task's duration around small pieces of real work.

    - ``discovery``: parse the component with ``ast`` and count its definitions;
    - ``migration``: rewrite the workspace copy (a header; a defect when asked to);
    - ``general`` with ``action=test``: compile the workspace copy and record the verdict
      in ``payload["passed"]`` (a failing test is a result, not a failed task);
    - ``ingest``: read a file and hash it.

    An attempt fails transiently with probability ``failure_rates[type]``; a task whose
    payload says ``poison`` always fails, so it ends FAILED after its last retry.
    """

    def __init__(self, failure_rates: dict[str, float] | None = None) -> None:
        self.failure_rates = dict(FAILURE_RATES if failure_rates is None else failure_rates)

    def __call__(self, task: Task, ctx: AgentContext) -> None:
        rng = ctx.rng
        if task.payload.get("poison"):
            ctx.sleep(task.duration_s * rng.uniform(0.3, 0.9))
            raise ValueError(
                f"component {task.payload.get('component', task.id)!r} uses a dynamic import "
                "the agent cannot follow"
            )
        if rng.random() < self.failure_rates.get(task.type, 0.0):
            # A failing attempt gives up part-way through, like a timeout or a broken tool.
            ctx.sleep(task.duration_s * rng.uniform(0.3, 0.9))
            raise _transient_error(rng, ctx.agent_id)
        ctx.sleep(task.duration_s)
        path = task.payload.get("path")
        if path is not None:
            self._work(task, ctx, Path(path))

    @staticmethod
    def _work(task: Task, ctx: AgentContext, path: Path) -> None:
        if task.type == "discovery":
            tree = ast.parse(path.read_text(encoding="utf-8"))
            task.payload["definitions"] = sum(
                isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                for n in ast.walk(tree)
            )
        elif task.type == "migration":
            source = path.read_text(encoding="utf-8")
            header = f"# migrated by {ctx.agent_id} ({task.id})\n"
            defect = "def broken(:\n" if task.payload.get("defect") else ""
            path.write_text(header + source + defect, encoding="utf-8")
        elif task.type == "general" and task.payload.get("action") == "test":
            # The test task succeeds whatever the verdict; the pipeline reads the verdict.
            try:
                compile(path.read_text(encoding="utf-8"), str(path), "exec")
            except SyntaxError as exc:
                task.payload["passed"] = False
                task.payload["error"] = f"SyntaxError: {exc}"
            else:
                task.payload["passed"] = True
        elif task.type == "ingest":
            task.payload["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()


def _transient_error(rng: random.Random, agent_id: str) -> Exception:
    roll = rng.random()
    if roll < 0.35:
        cls, text = rng.choice(_TRANSIENT_ERRORS)
        return cls(text)
    if roll < 0.7:
        return RateLimitError("429 Too Many Requests from the model provider")
    return ToolCallError(f"tool 'read_component' returned no content on {agent_id}")


# -- discovery: scoring real files ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class ComponentScore:
    """A scanned source file and how hard it looks to migrate."""

    path: Path
    relative: str
    lines: int
    definitions: int
    branches: int
    size_bytes: int

    @property
    def score(self) -> float:
        """Migration difficulty: lines of code plus weighted definitions and branches."""
        return self.lines / 50 + self.definitions / 4 + self.branches / 5


_BRANCHES = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.Try, ast.With, ast.AsyncWith,
             ast.BoolOp, ast.IfExp, ast.comprehension, ast.match_case)
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def scan_components(root: Path) -> list[Path]:
    """Every ``.py`` file under ``root``, sorted, skipping caches."""
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def score_file(path: Path, root: Path) -> ComponentScore:
    """Read and parse one file and score it.

    Raises:
        OSError, UnicodeDecodeError, SyntaxError, ValueError: the file cannot be assessed.
    """
    raw = path.read_bytes()
    tree = ast.parse(raw.decode("utf-8"), filename=str(path))
    definitions = branches = 0
    for node in ast.walk(tree):
        if isinstance(node, _DEFINITIONS):
            definitions += 1
        elif isinstance(node, _BRANCHES):
            branches += 1
    lines = sum(1 for line in raw.splitlines()
                if line.strip() and not line.lstrip().startswith(b"#"))
    return ComponentScore(path, path.relative_to(root).as_posix(), lines, definitions, branches,
                          len(raw))


# -- checkpoints of real files (Spec 021) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class FileCheckpoint:
    """Backed-up copies of some files and their sha256 checksums."""

    id: str
    component: str
    store: Path
    manifest: dict[str, str]
    size_bytes: int

    @property
    def checksum(self) -> str:
        """One checksum over the manifest: ``sha256:<hex>``."""
        lines = "".join(f"{rel}:{digest}\n" for rel, digest in sorted(self.manifest.items()))
        return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def create_checkpoint(checkpoint_id: str, component: str, workspace: Path,
                      relatives: Iterable[str], store: Path) -> FileCheckpoint:
    """Copy ``relatives`` (paths under ``workspace``) into ``store`` with their checksums."""
    manifest: dict[str, str] = {}
    size = 0
    for rel in relatives:
        source = workspace / rel
        target = store / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        manifest[rel] = _sha256(target)
        size += target.stat().st_size
    return FileCheckpoint(checkpoint_id, component, store, manifest, size)


def restore_checkpoint(checkpoint: FileCheckpoint, workspace: Path) -> None:
    """Copy every backed-up file back into ``workspace`` and verify its checksum.

    Raises:
        ChecksumMismatchError: a restored file differs from the manifest.
    """
    for rel, expected in checkpoint.manifest.items():
        target = workspace / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(checkpoint.store / rel, target)
        actual = _sha256(target)
        if actual != expected:
            raise ChecksumMismatchError(rel, expected, actual)


# -- knobs and scenarios ---------------------------------------------------------------


@dataclass(slots=True)
class Knobs:
    """Live settings that scenarios change; the workload threads read them as they go.

    Attributes:
        agent_memory_extra: added to an agent's memory fraction (``{"daedalus-1": 0.5}``).
        agent_cpu_extra: added to an agent's CPU fraction.
        held_task_types: agents leave these types in the queue (a dependency is down).
        background_rate_factor: multiplies the background producer's rate.
        corrupt_next_checkpoint: damage one backed-up file before the next rollback, so
            its checksum verification fails.
        bursts: whether the producer sends its periodic bursts.
    """

    agent_memory_extra: dict[str, float] = field(default_factory=dict)
    agent_cpu_extra: dict[str, float] = field(default_factory=dict)
    held_task_types: set[str] = field(default_factory=set)
    background_rate_factor: float = 1.0
    corrupt_next_checkpoint: bool = False
    bursts: bool = True


#: A scenario step: called with the workload from the scenario thread.
Scenario = Callable[["Workload"], None]


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    """Settings of the workload; times are workload seconds.

    Attributes:
        pool: the pool name.
        agents: number of agents (threads).
        max_queue: pending tasks the queue holds (Spec 020: 100).
        max_retries: attempts per task (Spec 020: 3).
        speed: how much faster than real time the workload runs.
        source_dir: the tree the discovery pipeline scans.
        seed: seed of the random generators (None: random).
        background_rate: background tasks per second.
        first_burst_s / burst_interval_s / burst_size: when and how hard the producer bursts.
        migration_batch: components migrated per cycle.
        cycle_pause_s: pause between two discovery/migration cycles.
        health_interval_s: how often agent health is reported.
        agent_memory_budget_bytes: the memory an agent may use (memory fraction = use / it).
        file_scan_s: time to assess one file, (min, max).
    """

    pool: str = "daedalus"
    agents: int = 4
    max_queue: int = 100
    max_retries: int = 3
    speed: float = 1.0
    source_dir: Path = PACKAGE_DIR
    seed: int | None = None
    background_rate: float = 3.0
    first_burst_s: float = 25.0
    burst_interval_s: tuple[float, float] = (40.0, 70.0)
    burst_size: tuple[int, int] = (110, 150)
    migration_batch: int = 6
    cycle_pause_s: float = 5.0
    health_interval_s: float = 1.0
    agent_memory_budget_bytes: int = 256 << 20
    file_scan_s: tuple[float, float] = (0.05, 0.2)


@dataclass(slots=True, eq=False)
class _Agent:
    id: str
    variation: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    thread: threading.Thread | None = None
    native_id: int | None = None
    current: Task | None = None
    degraded: bool = False
    memory: float | None = None
    cpu_time: float | None = None


# -- the workload ------------------------------------------------------------------------


class Workload:
    """Runs the demo workload in background threads, reporting to ``registry``.

    Args:
        registry: where the hooks report (the demo uses ``obs.get_registry()``).
        config: the workload's settings.
        executor: executes one attempt of a task on an agent (``SimulatedExecutor()``).
        scenarios: ``(at_s, fn)`` pairs: ``fn(workload)`` runs at workload time ``at_s``.

    ``start`` launches the threads; ``stop`` stops them, cancels the tasks still queued
    and retires the agents.  Exceptions that escape a thread are logged and kept in
    ``errors``.
    """

    def __init__(
        self,
        registry: obs.Registry,
        config: WorkloadConfig | None = None,
        *,
        executor: TaskExecutor | None = None,
        scenarios: Sequence[tuple[float, Scenario]] = (),
    ) -> None:
        self.registry = registry
        self.config = config if config is not None else WorkloadConfig()
        if self.config.speed <= 0:
            raise ValueError(f"speed must be > 0, got {self.config.speed!r}")
        self.executor: TaskExecutor = executor if executor is not None else SimulatedExecutor()
        self.knobs = Knobs()
        self.queue = TaskQueue(self.config.max_queue)
        self.pool = registry.pool(self.config.pool, size=self.config.agents,
                                  max_queue=self.config.max_queue,
                                  max_retries=self.config.max_retries)
        self.errors: list[BaseException] = []
        self.cycles_completed = 0
        self._rng = random.Random(self.config.seed)
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._agents = [
            _Agent(f"{self.config.pool}-{i}", variation=self._rng.uniform(0.85, 1.15))
            for i in range(1, self.config.agents + 1)
        ]
        self._scenario_cond = threading.Condition()
        self._scenarios: list[tuple[float, int, Scenario]] = []
        self._scenario_seq = itertools.count()
        for at_s, fn in scenarios:
            self.schedule(at_s, fn)
        self._t0: float | None = None
        self._workdir: Path | None = None
        self._stopped: bool | None = None
        self._process = psutil.Process()
        self._files = scan_components(self.config.source_dir)

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def agent_ids(self) -> list[str]:
        """The ids of the pool's agents."""
        return [a.id for a in self._agents]

    @property
    def running(self) -> bool:
        """Whether the workload has started and not been asked to stop."""
        return self._t0 is not None and not self._stop.is_set()

    def start(self) -> Workload:
        """Spawn the agents and start every thread."""
        if self._t0 is not None:
            raise RuntimeError("the workload was already started")
        self._t0 = time.monotonic()
        self._workdir = Path(tempfile.mkdtemp(prefix="dionysus-demo-"))
        for agent in self._agents:
            token = agent.id.rsplit("-", 1)[-1]
            self.pool.agent_spawned(agent.id, context_window_id=f"cw-{token}-{self._hex()}",
                                    tool_session_id=f"ts-{token}-{self._hex()}",
                                    memory_handle_id=f"mh-{token}-{self._hex()}")
            agent.thread = self._spawn(f"agent-{agent.id}", self._agent_loop, agent)
        self._spawn("producer", self._producer_loop, self._fork_rng())
        self._spawn("pipelines", self._pipeline_loop, self._fork_rng(), self._workdir)
        self._spawn("health", self._health_loop)
        self._spawn("scenarios", self._scenario_loop)
        log.info("workload.started", pool=self.config.pool, agents=len(self._agents),
                 speed=self.config.speed)
        return self

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop every thread, cancel the queued tasks, retire the agents (once).

        Returns:
            True when every thread ended within ``timeout_s``.
        """
        if self._t0 is None:
            return True
        if self._stopped is not None:
            return self._stopped
        self._stop.set()
        self.queue.wake_all()
        with self._scenario_cond:
            self._scenario_cond.notify_all()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning("workload.threads_alive", threads=alive)
        for task in self.queue.drain():
            self.pool.task_cancelled(task.id)
            task.finish("cancelled")
        for agent in self._agents:
            if agent.thread is not None and not agent.thread.is_alive():
                self.pool.agent_retired(agent.id)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        log.info("workload.stopped", cycles=self.cycles_completed, errors=len(self.errors))
        self._stopped = not alive
        return self._stopped

    def __enter__(self) -> Workload:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- time and scenarios ---------------------------------------------------------------

    def elapsed_s(self) -> float:
        """Workload seconds since ``start`` (0 before it)."""
        if self._t0 is None:
            return 0.0
        return (time.monotonic() - self._t0) * self.config.speed

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` workload seconds; raise ``WorkloadStopped`` when stopping."""
        if self._stop.wait(max(0.0, seconds) / self.config.speed):
            raise WorkloadStopped

    def schedule(self, at_s: float, fn: Scenario) -> None:
        """Run ``fn(self)`` from the scenario thread at workload time ``at_s``."""
        with self._scenario_cond:
            heapq.heappush(self._scenarios, (at_s, next(self._scenario_seq), fn))
            self._scenario_cond.notify_all()

    def burst(self, count: int, task_type: str | None = None) -> int:
        """Submit ``count`` tasks at once (rejections included); return how many got in."""
        accepted = 0
        for _ in range(count):
            ttype = task_type or self._pick_type(self._rng)
            accepted += self.submit(self._background_task(ttype, self._rng))
        return accepted

    # -- submitting --------------------------------------------------------------------

    def new_task(self, task_type: str, duration_s: float, **payload: Any) -> Task:
        """A task with a fresh id (not yet submitted)."""
        return Task(f"{task_type}-{next(self._ids):06d}", task_type, duration_s, dict(payload))

    def submit(self, task: Task) -> bool:
        """Offer ``task`` to the queue; a full queue rejects it (``task_rejected``)."""
        with obs.trace(task.trace_id or obs.current_trace_id()) as tid:
            task.trace_id = tid
            accepted = self.queue.offer(
                task, lambda: self.pool.task_submitted(task.id, task_type=task.type))
            if not accepted:
                self.pool.task_rejected(task_type=task.type, reason="queue_full")
        return accepted

    def submit_with_backoff(self, task: Task, backoff_s: float = 1.0) -> None:
        """Submit ``task``, waiting and trying again while the queue is full (HTTP 429)."""
        while not self.submit(task):
            self.sleep(backoff_s)

    # -- threads -------------------------------------------------------------------------

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> threading.Thread:
        def run() -> None:
            try:
                target(*args)
            except WorkloadStopped:
                pass
            except Exception as exc:
                self.errors.append(exc)
                log.exception("workload.thread_crashed", thread=name)

        thread = threading.Thread(target=run, name=f"demo-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return thread

    def _fork_rng(self) -> random.Random:
        return random.Random(self._rng.getrandbits(64))

    def _hex(self) -> str:
        return f"{self._rng.getrandbits(32):08x}"

    # agents ---------------------------------------------------------------------------

    def _agent_loop(self, agent: _Agent) -> None:
        agent.native_id = threading.get_native_id()
        ctx = AgentContext(agent.id, self.pool, self._fork_rng(), self.config.speed, self._stop)
        while not self._stop.is_set():
            with agent.lock:
                if agent.degraded:
                    task = None
                else:
                    task = self.queue.take(lambda t: self._accepts(agent, t), timeout_s=0.05)
                    if task is not None:
                        agent.current = task
                        task.attempts += 1
                        self.pool.task_assigned(task.id, agent_id=agent.id)
            if task is None:
                if agent.degraded:
                    self._stop.wait(0.05)
                continue
            try:
                self._run(agent, ctx, task)
            finally:
                agent.current = None

    def _accepts(self, agent: _Agent, task: Task) -> bool:
        if task.type in self.knobs.held_task_types:
            return False
        if task.last_agent != agent.id:
            return True
        # A retry goes to another agent, unless no other agent can take it.
        return not any(a is not agent and not a.degraded for a in self._agents)

    def _run(self, agent: _Agent, ctx: AgentContext, task: Task) -> None:
        try:
            ctx.sleep(ctx.rng.uniform(0.005, 0.03))  # analyzing: read the task, plan
            self.pool.task_started(task.id)
            self.executor(task, ctx)
        except WorkloadStopped:
            self.pool.task_cancelled(task.id)
            task.finish("cancelled")
            raise
        except Exception as exc:
            retry = task.attempts < self.config.max_retries
            task.last_agent = agent.id
            task.last_error = f"{type(exc).__name__}: {exc}"
            self.pool.task_failed(task.id, error=exc, retrying=retry)
            if retry:
                self.queue.requeue(task)
            else:
                task.finish("failed")
        else:
            self.pool.task_completed(task.id)
            task.finish("completed")

    # the background producer ----------------------------------------------------------

    def _pick_type(self, rng: random.Random) -> str:
        return rng.choices(_MIX_TYPES, _MIX_WEIGHTS)[0]

    def _duration(self, task_type: str, rng: random.Random) -> float:
        median, spread = TASK_DURATIONS[task_type]
        return min(MAX_TASK_S, max(MIN_TASK_S, rng.lognormvariate(0.0, spread) * median))

    def _background_task(self, task_type: str, rng: random.Random) -> Task:
        payload: dict[str, Any] = {}
        if rng.random() < POISON_RATE:
            payload["poison"] = True
        if task_type in ("discovery", "ingest") and self._files:
            chosen = rng.choice(self._files)
            payload["path"] = str(chosen)
            payload["component"] = chosen.name
        return self.new_task(task_type, self._duration(task_type, rng), **payload)

    def _producer_loop(self, rng: random.Random) -> None:
        tick_s = 0.25
        next_burst = self.config.first_burst_s
        while True:
            self.sleep(tick_s)
            rate = self.config.background_rate * self.knobs.background_rate_factor
            for _ in range(_poisson(rng, rate * tick_s)):
                self.submit(self._background_task(self._pick_type(rng), rng))
            if self.knobs.bursts and self.elapsed_s() >= next_burst:
                size = rng.randint(*self.config.burst_size)
                accepted = self.burst(size)
                log.info("workload.burst", submitted=size, accepted=accepted)
                next_burst = self.elapsed_s() + rng.uniform(*self.config.burst_interval_s)

    # health ----------------------------------------------------------------------------

    def _health_loop(self) -> None:
        th = self.registry.thresholds
        last_wall = time.monotonic()
        self._process.cpu_percent(interval=None)
        while True:
            self.sleep(self.config.health_interval_s)
            now = time.monotonic()
            wall = max(now - last_wall, 1e-3)
            last_wall = now
            try:
                rss = self._process.memory_info().rss
                proc_cpu = self._process.cpu_percent(interval=None) / 100.0
                cpu_times = {t.id: t.user_time + t.system_time for t in self._process.threads()}
            except psutil.Error:
                continue
            for agent in self._agents:
                memory, cpu = self._agent_health(agent, rss, proc_cpu, cpu_times, wall)
                self.pool.agent_health(agent.id, memory=memory, cpu=cpu)
                unhealthy = memory >= th.agent_memory_critical or cpu >= th.agent_cpu_critical
                healthy = memory < th.agent_memory_warning and cpu < th.agent_cpu_warning
                with agent.lock:
                    if unhealthy and not agent.degraded:
                        agent.degraded = True
                        self.pool.agent_state(agent.id, "degraded")
                    elif healthy and agent.degraded and agent.current is None:
                        agent.degraded = False
                        self.pool.agent_state(agent.id, "idle")

    def _agent_health(self, agent: _Agent, rss: int, proc_cpu: float,
                      cpu_times: dict[int, float], wall: float) -> tuple[float, float]:
        """Memory and CPU fractions of one agent from the process's real numbers.

        Memory: the agent's share of the process RSS plus the working set of its current
        task (bigger for a file it parses), over its budget, smoothed.  CPU: the agent
        thread's own CPU time over the interval (psutil per-thread times), or its share of
        the process CPU when the thread is not found, plus a little model-client overhead
        while busy.
        """
        task = agent.current
        working = IDLE_WORKING_SET_BYTES
        if task is not None:
            working = WORKING_SET_BYTES.get(task.type, 16 << 20)
            path = task.payload.get("path")
            if path is not None:
                with contextlib.suppress(OSError):
                    working += Path(path).stat().st_size * 200
        share = rss / max(1, len(self._agents))
        target = (share + working) / self.config.agent_memory_budget_bytes * agent.variation
        agent.memory = target if agent.memory is None else 0.7 * agent.memory + 0.3 * target
        memory = agent.memory + self.knobs.agent_memory_extra.get(agent.id, 0.0)

        used = cpu_times.get(agent.native_id) if agent.native_id is not None else None
        if used is not None and agent.cpu_time is not None:
            cpu = (used - agent.cpu_time) / wall
        else:
            cpu = proc_cpu / max(1, len(self._agents))
        if used is not None:
            agent.cpu_time = used
        cpu = cpu * agent.variation + (0.04 if task is not None else 0.01)
        cpu += self.knobs.agent_cpu_extra.get(agent.id, 0.0)
        return _clamp(memory), _clamp(cpu)

    # scenarios -------------------------------------------------------------------------

    def _scenario_loop(self) -> None:
        while True:
            with self._scenario_cond:
                while True:
                    if self._stop.is_set():
                        raise WorkloadStopped
                    if self._scenarios:
                        wait_s = (self._scenarios[0][0] - self.elapsed_s()) / self.config.speed
                        if wait_s <= 0:
                            _, _, fn = heapq.heappop(self._scenarios)
                            break
                        self._scenario_cond.wait(wait_s)
                    else:
                        self._scenario_cond.wait()
            try:
                fn(self)
            except WorkloadStopped:
                raise
            except Exception:
                log.exception("workload.scenario_failed", scenario=getattr(fn, "__name__", fn))

    # pipelines -------------------------------------------------------------------------

    def _pipeline_loop(self, rng: random.Random, workdir: Path) -> None:
        for cycle in itertools.count(1):
            plan = self._discover(cycle, rng)
            if plan:
                self._migrate(cycle, plan, rng, workdir / f"cycle-{cycle}")
            self.cycles_completed = cycle
            self.sleep(self.config.cycle_pause_s)

    def _wait_for(self, tasks: list[Task]) -> None:
        for task in tasks:
            while not task.done.wait(0.05):
                if self._stop.is_set():
                    raise WorkloadStopped

    def _discover(self, cycle: int, rng: random.Random) -> list[ComponentScore]:
        """Discovery run: scan and score the source tree, then analyse the top components."""
        root = self.config.source_dir
        with obs.trace():
            run = self.registry.pipeline(f"discovery-{cycle}", kind="discovery")
            with _ended_on_error(run):
                run.stage("discovery")
                files = scan_components(root)
                run.set_total(len(files))
                self.sleep(0.2)
                run.stage("assessment")
                scores: list[ComponentScore] = []
                for path in files:
                    self.sleep(rng.uniform(*self.config.file_scan_s))
                    try:
                        scores.append(score_file(path, root))
                    except (OSError, ValueError, SyntaxError):
                        run.progress(failed=1)
                    else:
                        run.progress(succeeded=1)
                run.stage("task_creation")
                top = sorted(scores, key=lambda c: c.score, reverse=True)
                top = top[: self.config.migration_batch]
                tasks = [
                    self.new_task("discovery", self._duration("discovery", rng),
                                  path=str(c.path), component=c.relative)
                    for c in top
                ]
                for task in tasks:
                    self.submit_with_backoff(task)
                self._wait_for(tasks)
            run.succeed()
        return [c for c, t in zip(top, tasks, strict=True) if t.outcome == "completed"]

    def _migrate(self, cycle: int, plan: list[ComponentScore], rng: random.Random,
                 cycle_dir: Path) -> None:
        """Checkpoint, migrate and test the planned components, then roll back."""
        workspace = cycle_dir / "workspace"
        for component in plan:
            target = workspace / component.relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(component.path, target)
        rels = [c.relative for c in plan]
        rb = self.registry.rollbacks
        with obs.trace():
            checkpoint = create_checkpoint(f"cp-{cycle}", self.config.source_dir.name,
                                           workspace, rels, cycle_dir / "checkpoint")
            rb.checkpoint_created(checkpoint.id, component=checkpoint.component,
                                  files=len(checkpoint.manifest),
                                  size_bytes=checkpoint.size_bytes, checksum=checkpoint.checksum)
            run = self.registry.pipeline(f"migration-{cycle}", kind="migration",
                                         total_items=len(plan))
            with _ended_on_error(run):
                self._run_migration(run, workspace, plan, rng)
            try:
                self._rollback(checkpoint, workspace, rng)
            finally:
                shutil.rmtree(cycle_dir, ignore_errors=True)

    def _run_migration(self, run: obs.PipelineRun, workspace: Path,
                       plan: list[ComponentScore], rng: random.Random) -> None:
        finished: queue.SimpleQueue[Task] = queue.SimpleQueue()
        run.stage("migrating")
        migrations = 0
        for component in plan:
            task = self.new_task("migration", self._duration("migration", rng),
                                 path=str(workspace / component.relative),
                                 component=component.relative, defect=rng.random() < DEFECT_RATE)
            task.on_done = finished.put
            self.submit_with_backoff(task)
            migrations += 1
        tests = succeeded = 0
        while migrations or tests:
            try:
                task = finished.get(timeout=0.05)
            except queue.Empty:
                if self._stop.is_set():
                    raise WorkloadStopped from None
                continue
            if task.type == "migration":
                migrations -= 1
                if task.outcome == "completed":
                    test = self.new_task("general", self._duration("general", rng),
                                         action="test", path=task.payload["path"],
                                         component=task.payload["component"])
                    test.on_done = finished.put
                    self.submit_with_backoff(test)
                    tests += 1
                else:
                    run.progress(failed=1)
                if migrations == 0:
                    run.stage("testing")
            else:
                tests -= 1
                ok = task.outcome == "completed" and bool(task.payload.get("passed", True))
                succeeded += ok
                run.progress(succeeded=int(ok), failed=int(not ok))
        if succeeded:
            run.succeed()
        else:
            run.fail(f"none of the {len(plan)} components migrated and passed its tests")

    def _rollback(self, checkpoint: FileCheckpoint, workspace: Path, rng: random.Random) -> None:
        """Restore the workspace from the checkpoint, verifying every checksum.

        A failed test leaves a broken component behind; a clean run is rolled back too
        (a restore drill) so that every cycle starts from pristine sources.
        """
        if self.knobs.corrupt_next_checkpoint:
            self.knobs.corrupt_next_checkpoint = False
            victim = checkpoint.store / next(iter(checkpoint.manifest))
            victim.write_bytes(victim.read_bytes() + b"\n# corrupted on disk\n")
        try:
            with self.registry.rollbacks.rollback(checkpoint.id):
                # Reloading the restored component takes a moment; not interrupted by stop.
                self._stop.wait(rng.uniform(0.3, 1.2) / self.config.speed)
                restore_checkpoint(checkpoint, workspace)
        except ChecksumMismatchError as exc:
            log.error("workload.rollback_failed", checkpoint_id=checkpoint.id, error=str(exc))


@contextlib.contextmanager
def _ended_on_error(run: obs.PipelineRun) -> Iterator[None]:
    """Cancel ``run`` if the workload stops inside the block, fail it on any other error."""
    try:
        yield
    except WorkloadStopped:
        run.cancel()
        raise
    except Exception as exc:
        run.fail(exc)
        raise


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson-distributed count with the given mean (Knuth's method; small means)."""
    if mean <= 0:
        return 0
    limit = math.exp(-mean)
    count, product = 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))
