"""Enumerations shared by hooks, views and reports.  Values are lower-case strings."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AgentState",
    "AlertState",
    "CheckpointState",
    "EntityKind",
    "PipelineKind",
    "PipelineStatus",
    "RunOutcome",
    "Severity",
    "TaskStatus",
]


class AgentState(StrEnum):
    """Spec 020 agent states."""

    IDLE = "idle"
    ANALYZING = "analyzing"
    EXECUTING = "executing"
    DEGRADED = "degraded"


class TaskStatus(StrEnum):
    """Spec 020 task states."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class PipelineKind(StrEnum):
    """Spec 019 pipeline kinds."""

    DISCOVERY = "discovery"
    MIGRATION = "migration"


class PipelineStatus(StrEnum):
    """Spec 019 pipeline run states."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class CheckpointState(StrEnum):
    """Spec 021 checkpoint states."""

    ACTIVE = "active"
    EXPIRED = "expired"
    RESTORED = "restored"
    DELETED = "deleted"


class RunOutcome(StrEnum):
    """How a smolagents run ended."""

    SUCCESS = "success"
    MAX_STEPS = "max_steps"
    ERROR = "error"


class Severity(StrEnum):
    """Alert severities."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class AlertState(StrEnum):
    """Alert lifecycle states."""

    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class EntityKind(StrEnum):
    """Kinds of entity an alert or a trace event names."""

    AGENT = "agent"
    POOL = "pool"
    PIPELINE = "pipeline"
    TASK = "task"
    CHECKPOINT = "checkpoint"
    TOOL = "tool"
    PROCESS = "process"
