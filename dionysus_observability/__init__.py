"""dionysus_observability: one place to see and trust the health of an agent platform.

Components call the hooks (``registry.pool(...)``, ``registry.pipeline(...)``,
``registry.rollbacks``); a FastAPI router serves the aggregates::

    from fastapi import FastAPI
    from dionysus_observability import monitoring_router

    app = FastAPI()
    app.include_router(monitoring_router)
"""

from __future__ import annotations

from ._context import current_trace_id, new_trace_id, trace
from ._enums import (
    AgentState,
    AlertState,
    CheckpointState,
    EntityKind,
    PipelineKind,
    PipelineStatus,
    RunOutcome,
    Severity,
    TaskStatus,
)
from ._state import Limits
from .alertmanager import AlertmanagerNotifier, alertmanager_lifespan
from .alerts import AlertCondition, AlertRule, RuleContext, Thresholds
from .exceptions import (
    CapacityError,
    DuplicateEventError,
    InvalidTransitionError,
    InvalidValueError,
    ObservabilityError,
    UnknownEntityError,
)
from .hooks import PipelineRun, Pool, RollbackHooks
from .logging import configure_logging
from .middleware import TraceMiddleware
from .prometheus import RegistryCollector, render_rules
from .registry import Registry, get_registry, reset_registry
from .reports import Alert, AlertsReport, Entity, MetricsReport, PerformanceReport, TraceReport
from .resources import ResourceSample, ResourceSampler, StaticResources
from .router import create_monitoring_router, monitoring_router

__version__ = "0.1.0"

__all__ = [
    "AgentState",
    "Alert",
    "AlertCondition",
    "AlertRule",
    "AlertState",
    "AlertmanagerNotifier",
    "AlertsReport",
    "CapacityError",
    "CheckpointState",
    "DuplicateEventError",
    "Entity",
    "EntityKind",
    "InvalidTransitionError",
    "InvalidValueError",
    "Limits",
    "MetricsReport",
    "ObservabilityError",
    "PerformanceReport",
    "PipelineKind",
    "PipelineRun",
    "PipelineStatus",
    "Pool",
    "Registry",
    "RegistryCollector",
    "ResourceSample",
    "ResourceSampler",
    "RollbackHooks",
    "RuleContext",
    "RunOutcome",
    "Severity",
    "StaticResources",
    "TaskStatus",
    "Thresholds",
    "TraceMiddleware",
    "TraceReport",
    "UnknownEntityError",
    "alertmanager_lifespan",
    "configure_logging",
    "create_monitoring_router",
    "current_trace_id",
    "get_registry",
    "monitoring_router",
    "new_trace_id",
    "render_rules",
    "reset_registry",
    "trace",
]
