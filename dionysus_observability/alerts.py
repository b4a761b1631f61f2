"""Alert thresholds, rules and their lifecycle."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Thresholds"]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Alert thresholds; every default comes from a spec (see docs/alerts.md).

    Ratios are fractions 0.0-1.0 and durations seconds.
    """

    agent_memory_warning: float = 0.85
    agent_memory_critical: float = 0.95
    agent_cpu_warning: float = 0.90
    agent_cpu_critical: float = 0.98
    #: queue depth / max_queue above which the queue is building up (Spec 020 cap: 100).
    queue_warning_ratio: float = 0.8
    task_failure_rate: float = 0.2
    task_failure_min_tasks: int = 5
    #: Spec 020: submit -> agent pickup within 500 ms.
    assignment_latency_p95_s: float = 0.5
    #: Spec 021: a rollback completes in under 30 s.
    rollback_slow_s: float = 30.0
    pipeline_stall_s: float = 600.0
    process_memory_ratio: float = 0.9
    window_s: float = 300.0
