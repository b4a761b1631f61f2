"""Registry state: plain slotted records and the bounded buckets they write into.

Only hooks (under the registry lock) mutate these; views read them under the same lock.
Nothing here imports anything above it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from ._enums import AgentState, CheckpointState, PipelineStatus, TaskStatus
from .windows import QuantileSketch, Ring

#: Seconds per counter bucket and per sketch bucket.
COUNT_BUCKET_S = 1.0
SKETCH_BUCKET_S = 10.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps that keep memory bounded whatever the event count; evictions are counted."""

    retention_s: float = 3600.0
    finished_tasks_per_pool: int = 10_000
    finished_pipelines: int = 200
    checkpoints: int = 10_000
    rollback_history: int = 1_000
    retired_agents: int = 256
    trace_events: int = 20_000
    task_types: int = 32
    tools: int = 256
    pools: int = 64
    recent_failures: int = 100
    agents_per_pool: int = 1024
    agent_runs: int = 1_000
    open_agent_runs: int = 1_024


class CountBucket:
    """Per-second counters of one pool (or one registry-wide series)."""

    __slots__ = ("a", "b", "c", "d")

    def __init__(self) -> None:
        self.a = 0  # completed / succeeded / calls
        self.b = 0  # failed / errors
        self.c = 0  # retried
        self.d = 0  # rejected


class SketchPair:
    """Two quantile sketches filled over one sketch bucket, and agents' busy seconds."""

    __slots__ = ("busy", "x", "y")

    def __init__(self) -> None:
        self.x = QuantileSketch()  # task duration / rollback duration / tool latency
        self.y = QuantileSketch()  # assignment latency
        self.busy: dict[str, float] = {}  # agent id -> busy seconds in this bucket


def count_ring(limits: Limits) -> Ring[CountBucket]:
    """A ring of per-second counters covering the retention."""
    return Ring(COUNT_BUCKET_S, int(limits.retention_s / COUNT_BUCKET_S) + 1, CountBucket)


def sketch_ring(limits: Limits) -> Ring[SketchPair]:
    """A ring of sketch pairs covering the retention."""
    return Ring(SKETCH_BUCKET_S, int(limits.retention_s / SKETCH_BUCKET_S) + 1, SketchPair)


#: Upper bounds (seconds) of the cumulative latency histograms that Prometheus scrapes.
#: Each set spans the latency it measures and holds the spec target as a bound, so that
#: an exported rule compares against an exact bucket: Spec 020's 0.5 s assignment target,
#: Spec 021's 30 s rollback target.
ASSIGNMENT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                        60.0, 300.0)
TASK_DURATION_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                           600.0, 1800.0, 3600.0)
ROLLBACK_BUCKETS_S = (0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0, 300.0,
                      600.0)
TOOL_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                  60.0, 120.0)


class CumulativeHistogram:
    """Fixed-bucket counts since start, derived from a sketch ring at no per-sample cost.

    The ring's sketches answer "the last N seconds"; Prometheus needs counts that only
    grow.  Whenever the ring moves on, every bucket older than the previous one is folded
    into a since-start sketch (``Ring.on_advance``, before the ring can forget it), and a
    snapshot adds the newer buckets.  Counts are read off the sketch's bins, so a sample
    up to 1.9% above a bound may be counted at that bound; a sample recorded so late that
    its bucket was already folded counts in the windows only.  Hooks note exemplars
    (the latest traced sample of each bucket) only for traced samples.
    """

    __slots__ = ("bounds", "exemplars", "field", "folded", "folded_upto", "ring")

    def __init__(self, bounds: tuple[float, ...], ring: Ring[SketchPair], field: str) -> None:
        self.bounds = bounds
        self.ring = ring
        self.field = field
        self.folded = QuantileSketch()
        self.folded_upto = ring.newest_index - 2
        #: per bucket: (trace_id, value, at) of the latest sample recorded with a trace id
        self.exemplars: list[tuple[str, float, float] | None] = [None] * (len(bounds) + 1)
        ring.on_advance.append(self._fold)

    def note(self, value: float, trace_id: str, at: float) -> None:
        """Make a traced sample its bucket's exemplar."""
        self.exemplars[bisect_left(self.bounds, value)] = (trace_id, value, at)

    def _fold(self, new_index: int) -> None:
        upto = new_index - 2
        if upto > self.folded_upto:
            for _, bucket in self.ring.between(self.folded_upto + 1, upto):
                self.folded.merge(getattr(bucket, self.field))
            self.folded_upto = upto

    def snapshot(
        self,
    ) -> tuple[list[tuple[float, int, tuple[str, float, float] | None]], float]:
        """``([(upper_bound, cumulative_count, exemplar), ...], sum)``, ending with +Inf."""
        total = self.folded.copy()
        for _, bucket in self.ring.between(self.folded_upto + 1, self.ring.newest_index):
            total.merge(getattr(bucket, self.field))
        counts = [*total.count_le(self.bounds), total.count]
        bounds = (*self.bounds, float("inf"))
        return list(zip(bounds, counts, self.exemplars, strict=True)), total.sum


@dataclass(slots=True, eq=False)
class TaskRec:
    """A task the pool holds now (pending or in progress)."""

    id: str
    type: str
    submitted_at: float
    trace_id: str | None
    status: TaskStatus = TaskStatus.PENDING
    queued_at: float = 0.0
    agent_id: str | None = None
    assigned_at: float | None = None
    started_at: float | None = None
    attempts: int = 0


@dataclass(slots=True, eq=False)
class AgentRec:
    """One agent of a pool."""

    id: str
    pool: str
    spawned_at: float
    context_window_id: str | None
    tool_session_id: str | None
    memory_handle_id: str | None
    #: the pool's sketch ring, whose buckets hold this agent's busy seconds
    busy: Ring[SketchPair]
    state: AgentState = AgentState.IDLE
    memory: float | None = None
    cpu: float | None = None
    health_at: float | None = None
    health_trace_id: str | None = None
    current_task_id: str | None = None
    last_task_id: str | None = None
    tasks_completed: int = 0
    tasks_failed: int = 0
    task_time_s: float = 0.0
    context_switches: int = 0
    busy_since: float | None = None
    state_since: float = 0.0
    retired_at: float | None = None
    # alert onsets, stamped by the health and state hooks
    memory_level_since: dict[str, float] = field(default_factory=dict)
    cpu_level_since: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class FailureRec:
    """A task that ended FAILED after its last attempt."""

    at: float
    task_id: str
    task_type: str
    error: str | None
    trace_id: str | None
    agent_id: str | None


@dataclass(slots=True, eq=False)
class PoolState:
    """One coordination pool: its agents, the tasks it holds, and its windows."""

    name: str
    size: int
    max_size: int
    max_queue: int
    max_retries: int
    created_at: float
    counts: Ring[CountBucket]
    sketches: Ring[SketchPair]
    agents: dict[str, AgentRec] = field(default_factory=dict)
    retired: OrderedDict[str, AgentRec] = field(default_factory=OrderedDict)
    tasks: dict[str, TaskRec] = field(default_factory=dict)
    #: finished task ids in two generations: ``finished`` fills up to ``finished_cap / 2``
    #: and then becomes ``finished_old`` (the previous old generation is evicted).
    finished: dict[str, TaskStatus] = field(default_factory=dict)
    finished_old: dict[str, TaskStatus] = field(default_factory=dict)
    pending: int = 0
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    retries: int = 0
    rejected: int = 0
    rejected_by_type: dict[str, int] = field(default_factory=dict)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    last_rejected_at: float | None = None
    submitted_by_type: dict[str, int] = field(default_factory=dict)
    failures: deque[FailureRec] = field(default_factory=lambda: deque(maxlen=100))
    queue_over_since: float | None = None
    #: pending count at which the queue counts as building up (Thresholds ratio)
    queue_warn_at: int = 80
    # the current count and sketch buckets, valid for cur_from <= now < cur_until
    cur_from: float = 0.0
    cur_until: float = -1.0
    cur_k_from: float = 0.0
    cur_c: CountBucket = field(default_factory=CountBucket)
    cur_k: SketchPair = field(default_factory=SketchPair)
    finished_half: int = 5_000
    #: raw task-type strings -> normalised names (bounded)
    type_names: dict[str, str] = field(default_factory=dict)
    #: since-start histograms that Prometheus scrapes (the sketches above are windowed)
    assignment_hist: CumulativeHistogram = field(init=False)
    duration_hist: CumulativeHistogram = field(init=False)

    def __post_init__(self) -> None:
        self.assignment_hist = CumulativeHistogram(ASSIGNMENT_BUCKETS_S, self.sketches, "y")
        self.duration_hist = CumulativeHistogram(TASK_DURATION_BUCKETS_S, self.sketches, "x")


@dataclass(slots=True, eq=False)
class PipelineRec:
    """One discovery or migration run."""

    id: str
    kind: str
    started_at: float
    trace_id: str | None
    total_items: int | None = None
    status: PipelineStatus = PipelineStatus.RUNNING
    stage: str | None = None
    succeeded: int = 0
    failed: int = 0
    finished_at: float | None = None
    last_progress_at: float = 0.0
    error: str | None = None


@dataclass(slots=True, eq=False)
class CheckpointRec:
    """One Spec 021 checkpoint."""

    id: str
    component: str
    files: int
    size_bytes: int
    checksum: str | None
    created_at: float
    expires_at: float
    trace_id: str | None
    state: CheckpointState = CheckpointState.ACTIVE
    ended_at: float | None = None


@dataclass(slots=True, eq=False)
class RollbackRec:
    """One rollback attempt."""

    checkpoint_id: str
    component: str | None
    started_at: float
    duration_s: float
    succeeded: bool
    error: str | None
    trace_id: str | None


@dataclass(slots=True, eq=False)
class ToolRec:
    """Calls of one tool."""

    name: str
    counts: Ring[CountBucket]
    sketches: Ring[SketchPair]
    calls: int = 0
    errors: int = 0
    errors_by_type: dict[str, int] = field(default_factory=dict)
    last_error_at: float | None = None
    latency_hist: CumulativeHistogram = field(init=False)
    # the current count and sketch buckets, valid for cur_from <= now < cur_until
    cur_from: float = 0.0
    cur_until: float = -1.0
    cur_c: CountBucket = field(default_factory=CountBucket)
    cur_k: SketchPair = field(default_factory=SketchPair)

    def __post_init__(self) -> None:
        self.latency_hist = CumulativeHistogram(TOOL_BUCKETS_S, self.sketches, "x")


@dataclass(slots=True, eq=False)
class AgentRunRec:
    """One smolagents run: open while the agent runs, then kept among the recent runs."""

    id: str
    agent_id: str
    pool: str | None
    task_id: str | None
    trace_id: str
    started_at: float
    steps: int = 0
    step_errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    outcome: str | None = None
    finished_at: float | None = None
    duration_s: float | None = None
    error: str | None = None


@dataclass(slots=True, eq=False)
class TraceEvent:
    """One recorded event that carried a trace id."""

    at: float
    kind: str
    entity_kind: str
    entity_id: str
    trace_id: str
    attributes: dict[str, Any] | None = None


@dataclass(slots=True, eq=False)
class RegistryState:
    """Everything a registry holds.  Views read it; hooks write it; both under the lock."""

    limits: Limits
    started_at: float
    pools: dict[str, PoolState] = field(default_factory=dict)
    pipelines: dict[str, PipelineRec] = field(default_factory=dict)
    finished_pipelines: OrderedDict[str, PipelineRec] = field(default_factory=OrderedDict)
    pipelines_finished_by_status: dict[str, int] = field(default_factory=dict)
    items_succeeded: int = 0
    items_failed: int = 0
    items_total: int = 0
    items: Ring[CountBucket] = field(init=False)
    checkpoints: OrderedDict[str, CheckpointRec] = field(default_factory=OrderedDict)
    checkpoints_expired_evicted: int = 0
    rollback_history: deque[RollbackRec] = field(default_factory=deque)
    rollbacks_total: int = 0
    rollbacks_succeeded: int = 0
    rollbacks_failed: int = 0
    rollback_last_duration_s: float | None = None
    rollback_counts: Ring[CountBucket] = field(init=False)
    rollback_sketches: Ring[SketchPair] = field(init=False)
    rollback_hist: CumulativeHistogram = field(init=False)
    tools: dict[str, ToolRec] = field(default_factory=dict)
    trace_events: deque[TraceEvent] = field(default_factory=deque)
    dropped: dict[str, int] = field(default_factory=dict)
    evicted: dict[str, int] = field(default_factory=dict)
    #: smolagents runs: open ones by id, the most recent finished ones, totals since
    #: start, per-second counts (a success, b error, c max_steps) and sketches (x run
    #: duration, y step duration)
    open_runs: OrderedDict[str, AgentRunRec] = field(default_factory=OrderedDict)
    finished_runs: deque[AgentRunRec] = field(default_factory=deque)
    run_seq: int = 0
    runs_by_outcome: dict[str, int] = field(default_factory=dict)
    run_steps: int = 0
    run_input_tokens: int = 0
    run_output_tokens: int = 0
    run_tool_calls: int = 0
    run_tool_errors: int = 0
    run_counts: Ring[CountBucket] = field(init=False)
    run_sketches: Ring[SketchPair] = field(init=False)

    def __post_init__(self) -> None:
        self.run_counts = count_ring(self.limits)
        self.run_sketches = sketch_ring(self.limits)
        self.finished_runs = deque(maxlen=self.limits.agent_runs)
        self.items = count_ring(self.limits)
        self.rollback_counts = count_ring(self.limits)
        self.rollback_sketches = sketch_ring(self.limits)
        self.rollback_hist = CumulativeHistogram(ROLLBACK_BUCKETS_S, self.rollback_sketches, "x")
        self.rollback_history = deque(maxlen=self.limits.rollback_history)
        self.trace_events = deque(maxlen=self.limits.trace_events)

    def evict(self, kind: str, n: int = 1) -> None:
        """Count ``n`` evictions of ``kind``."""
        self.evicted[kind] = self.evicted.get(kind, 0) + n

    def event(
        self,
        at: float,
        kind: str,
        entity_kind: str,
        entity_id: str,
        trace_id: str,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        """Append a trace event (callers check ``trace_id is not None`` first)."""
        events = self.trace_events
        if len(events) == events.maxlen:
            self.evict("trace_events")
        events.append(TraceEvent(at, kind, entity_kind, entity_id, trace_id, attributes))
