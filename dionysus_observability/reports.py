"""Pydantic response models: the JSON edge.  Field names are the public contract (API.md).

Timestamps are timezone-aware UTC datetimes (ISO-8601 in JSON), durations seconds, ratios
fractions 0.0-1.0, sizes bytes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ._enums import AgentState, AlertState, EntityKind, PipelineStatus, RunOutcome, Severity

__all__ = [
    "AgentInfo",
    "AgentRunInfo",
    "AgentRunsSection",
    "AgentsSection",
    "Alert",
    "AlertsReport",
    "CheckpointStats",
    "CoordinationSection",
    "Entity",
    "ErrorRates",
    "ItemCounts",
    "LatencySection",
    "MetricsReport",
    "PerformanceReport",
    "PipelineRunInfo",
    "PipelinesSection",
    "PoolInfo",
    "Quantiles",
    "ResourcesSection",
    "RollbackSection",
    "RollbackStats",
    "Throughput",
    "ToolInfo",
    "TraceEventInfo",
    "TraceReport",
    "UtilizationSection",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Report(_Model):
    trace_id: str | None = Field(description="The trace id of the request that built this.")
    generated_at: datetime = Field(description="When the report was built (UTC).")


class Quantiles(_Model):
    """A latency summary in seconds; values are null when count is 0."""

    count: int
    mean: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    max: float | None

    @classmethod
    def empty(cls) -> Quantiles:
        """The summary of no samples."""
        return cls(count=0, mean=None, p50=None, p90=None, p95=None, p99=None, max=None)


# -- /metrics -------------------------------------------------------------------------


class ItemCounts(_Model):
    """Pipeline items over every run since start."""

    succeeded: int
    failed: int
    total: int = Field(description="Sum of the runs' known total_items.")


class PipelineRunInfo(_Model):
    """One pipeline run (running, or recently finished)."""

    id: str
    kind: str
    status: PipelineStatus
    stage: str | None
    total_items: int | None
    succeeded: int
    failed: int
    progress: float | None = Field(description="(succeeded+failed)/total_items, 0..1.")
    started_at: datetime
    finished_at: datetime | None
    eta_s: float | None = Field(description="Estimated seconds to finish at the current rate.")
    trace_id: str | None
    error: str | None = None
    last_progress_at: datetime | None = None


class PipelinesSection(_Model):
    """Spec 019 pipelines."""

    active: int
    by_status: dict[str, int]
    items: ItemCounts
    runs: list[PipelineRunInfo]


class PoolInfo(_Model):
    """One Spec 020 coordination pool."""

    name: str
    size: int
    max_size: int
    agents_by_state: dict[str, int]
    queue_depth: int
    max_queue: int
    tasks_by_status: dict[str, int] = Field(
        description="pending/in_progress: held now; completed/failed/cancelled: since start."
    )
    tasks_by_type: dict[str, int] = Field(description="Tasks submitted since start, by type.")
    pending_by_type: dict[str, int]
    retries: int
    rejected: int
    rejected_by_type: dict[str, int]
    utilization: float = Field(description="Busy live agents / live agents, now.")
    max_retries: int


class CoordinationSection(_Model):
    """Spec 020 pools."""

    active: int
    pools: list[PoolInfo]


class AgentInfo(_Model):
    """One live agent."""

    id: str
    pool: str
    state: AgentState
    memory: float | None
    cpu: float | None
    current_task_id: str | None
    tasks_completed: int
    tasks_failed: int
    context_switches: int
    isolated: bool = Field(description="No isolation id shared with another live agent.")
    avg_task_time_s: float | None = None
    health_at: datetime | None = None


class AgentsSection(_Model):
    """Live agents of every pool."""

    total: int
    by_state: dict[str, int]
    items: list[AgentInfo]


class CheckpointStats(_Model):
    """Spec 021 checkpoints."""

    active: int
    expired: int
    restored: int
    deleted: int
    total_bytes: int = Field(description="Bytes held by active checkpoints.")


class RollbackStats(_Model):
    """Spec 021 rollbacks since start."""

    total: int
    succeeded: int
    failed: int
    success_rate: float | None
    last_duration_s: float | None


class RollbackSection(_Model):
    """The rollback safety net."""

    checkpoints: CheckpointStats
    rollbacks: RollbackStats


class ToolInfo(_Model):
    """Calls of one smolagents tool since start."""

    name: str
    calls: int
    errors: int
    errors_by_type: dict[str, int] = Field(default_factory=dict)


class AgentRunInfo(_Model):
    """One finished smolagents run."""

    id: str
    agent_id: str
    pool: str | None
    task_id: str | None
    trace_id: str
    outcome: RunOutcome
    started_at: datetime
    finished_at: datetime
    duration_s: float
    steps: int
    step_errors: int
    input_tokens: int
    output_tokens: int
    tool_calls: int
    tool_errors: int
    error: str | None


class AgentRunsSection(_Model):
    """smolagents runs since start: outcomes, steps, tokens, tool calls; the latest runs."""

    total: int = 0
    active: int = 0
    by_outcome: dict[str, int] = Field(default_factory=dict)
    steps: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    recent: list[AgentRunInfo] = Field(default_factory=list,
                                       description="The latest finished runs, newest first.")


class MetricsReport(_Report):
    """GET /metrics: pipelines, pools, agents, rollbacks, tools, dropped events."""

    uptime_s: float
    pipelines: PipelinesSection
    coordination: CoordinationSection
    agents: AgentsSection
    rollback: RollbackSection
    tools: list[ToolInfo]
    agent_runs: AgentRunsSection = Field(default_factory=AgentRunsSection)
    dropped_events: dict[str, int] = Field(description="Hook events dropped, by reason.")
    evicted: dict[str, int] = Field(description="Old records evicted to bound memory, by kind.")


# -- /performance ---------------------------------------------------------------------


class Throughput(_Model):
    """Counts and rates within the window."""

    tasks_completed: int
    tasks_failed: int
    tasks_completed_per_s: float
    tasks_failed_per_s: float
    pipeline_items_per_s: float
    tool_calls_per_s: float
    agent_runs_per_s: float = 0.0
    tasks_retried: int = 0
    tasks_rejected: int = 0


class LatencySection(_Model):
    """Latency summaries within the window."""

    task_duration_s: Quantiles
    assignment_latency_s: Quantiles
    rollback_duration_s: Quantiles
    tools: dict[str, Quantiles]
    agent_run_duration_s: Quantiles = Field(default_factory=lambda: Quantiles.empty())
    agent_step_duration_s: Quantiles = Field(default_factory=lambda: Quantiles.empty())


class ErrorRates(_Model):
    """failures / (successes + failures) within the window; 0.0 when nothing ended."""

    task_error_rate: float
    tool_error_rate: float
    agent_run_error_rate: float = Field(
        default=0.0, description="Runs that ended in error or at max steps / runs ended.")
    pipeline_item_error_rate: float
    rollback_failure_rate: float


class UtilizationSection(_Model):
    """Time-weighted agent busy ratios within the window, and queue saturation now."""

    agents_busy_ratio: float
    agents: dict[str, float]
    queue_saturation: dict[str, float]


class ResourcesSection(_Model):
    """Process resources (psutil) and the highest agent samples."""

    process_cpu_percent: float
    process_rss_bytes: int
    agent_memory_max: float | None
    agent_cpu_max: float | None
    process_memory_ratio: float = 0.0


class PerformanceReport(_Report):
    """GET /performance: throughput, latency, errors, utilization, resources."""

    window_s: float
    covered_s: float = Field(description="Seconds of the window with recorded data.")
    throughput: Throughput
    latency: LatencySection
    errors: ErrorRates
    utilization: UtilizationSection
    resources: ResourcesSection


# -- /alerts --------------------------------------------------------------------------


class Entity(_Model):
    """An entity an alert or event is about."""

    kind: EntityKind
    id: str


class Alert(_Model):
    """One alert: a rule and an entity set, with its lifecycle."""

    id: str = Field(description="Stable fingerprint of rule and affected entities.")
    rule: str
    severity: Severity
    state: AlertState
    summary: str
    affected: list[Entity]
    value: float | None
    threshold: float | None
    started_at: datetime = Field(description="When the condition began.")
    updated_at: datetime
    resolved_at: datetime | None
    trace_ids: list[str]


class AlertsReport(_Report):
    """GET /alerts."""

    counts: dict[str, int]
    alerts: list[Alert]


# -- /traces --------------------------------------------------------------------------


class TraceEventInfo(_Model):
    """One recorded event of a trace."""

    at: datetime
    kind: str
    entity: Entity
    attributes: dict[str, Any]


class TraceReport(_Report):
    """GET /traces/{trace_id}: the recorded events of one trace, oldest first."""

    events: list[TraceEventInfo]
