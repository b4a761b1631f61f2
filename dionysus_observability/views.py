"""Pure views: ``(state, now) -> report``.

``metrics`` and ``performance`` read the state under the registry lock and return plain
data; ``*_report`` then builds the pydantic model outside the lock, so hooks wait only for
the read.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ._enums import AgentState, CheckpointState, PipelineStatus, RunOutcome, TaskStatus
from ._state import AgentRec, AgentRunRec, PipelineRec, PoolState, RegistryState
from .exceptions import UnknownEntityError
from .reports import MetricsReport, PerformanceReport, TraceReport
from .resources import ResourceSample
from .windows import QuantileSketch, Summary, merge_sketches

__all__ = [
    "agent_busy_ratio",
    "isolation_conflicts",
    "metrics",
    "metrics_report",
    "pending_by_type",
    "performance",
    "performance_report",
    "ts",
]

_BUSY = (AgentState.ANALYZING, AgentState.EXECUTING)


def ts(t: float | None) -> datetime | None:
    """Seconds since the epoch as a timezone-aware UTC datetime."""
    return None if t is None else datetime.fromtimestamp(t, UTC)


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def isolation_conflicts(agents: Iterable[AgentRec]) -> dict[tuple[str, str], list[AgentRec]]:
    """Isolation ids shared by two or more live agents: ``(kind, id) -> agents``."""
    seen: dict[tuple[str, str], list[AgentRec]] = {}
    for agent in agents:
        for kind, value in (
            ("context_window_id", agent.context_window_id),
            ("tool_session_id", agent.tool_session_id),
            ("memory_handle_id", agent.memory_handle_id),
        ):
            if value is not None:
                seen.setdefault((kind, value), []).append(agent)
    return {key: owners for key, owners in seen.items() if len(owners) > 1}


def _all_agents(state: RegistryState) -> list[AgentRec]:
    return [a for pool in state.pools.values() for a in pool.agents.values()]


def _pipeline(rec: PipelineRec, now: float) -> dict[str, Any]:
    done = rec.succeeded + rec.failed
    total = rec.total_items
    progress = min(1.0, done / total) if total else None
    eta: float | None = None
    if rec.status is PipelineStatus.RUNNING and total:
        remaining = max(0, total - done)
        elapsed = now - rec.started_at
        if remaining == 0:
            eta = 0.0
        elif done > 0 and elapsed > 0:
            eta = remaining / (done / elapsed)
    return {
        "id": rec.id,
        "kind": rec.kind,
        "status": rec.status,
        "stage": rec.stage,
        "total_items": total,
        "succeeded": rec.succeeded,
        "failed": rec.failed,
        "progress": progress,
        "started_at": ts(rec.started_at),
        "finished_at": ts(rec.finished_at),
        "eta_s": eta,
        "trace_id": rec.trace_id,
        "error": rec.error,
        "last_progress_at": ts(rec.last_progress_at),
    }


def pending_by_type(pool: PoolState) -> dict[str, int]:
    """Pending tasks of a pool by type, most first."""
    counts: dict[str, int] = {}
    for task in pool.tasks.values():
        if task.status is TaskStatus.PENDING:
            counts[task.type] = counts.get(task.type, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _pool(pool: PoolState) -> dict[str, Any]:
    by_state = {s.value: 0 for s in AgentState}
    for agent in pool.agents.values():
        by_state[agent.state.value] += 1
    live = len(pool.agents)
    busy = by_state["analyzing"] + by_state["executing"]
    return {
        "name": pool.name,
        "size": pool.size,
        "max_size": pool.max_size,
        "agents_by_state": by_state,
        "queue_depth": pool.pending,
        "max_queue": pool.max_queue,
        "tasks_by_status": {
            TaskStatus.PENDING.value: pool.pending,
            TaskStatus.IN_PROGRESS.value: pool.in_progress,
            TaskStatus.COMPLETED.value: pool.completed,
            TaskStatus.FAILED.value: pool.failed,
            TaskStatus.CANCELLED.value: pool.cancelled,
        },
        "tasks_by_type": dict(pool.submitted_by_type),
        "pending_by_type": pending_by_type(pool),
        "retries": pool.retries,
        "rejected": pool.rejected,
        "rejected_by_type": dict(pool.rejected_by_type),
        "utilization": _ratio(busy, live),
        "max_retries": pool.max_retries,
    }


def metrics(state: RegistryState, now: float) -> dict[str, Any]:
    """The data of ``MetricsReport`` (call under the registry lock)."""
    agents = _all_agents(state)
    shared = {id(a) for owners in isolation_conflicts(agents).values() for a in owners}
    agents_by_state = {s.value: 0 for s in AgentState}
    for agent in agents:
        agents_by_state[agent.state.value] += 1

    by_status = {s.value: 0 for s in PipelineStatus}
    for key, n in state.pipelines_finished_by_status.items():
        by_status[key] += n
    by_status[PipelineStatus.RUNNING.value] += len(state.pipelines)
    runs = [*state.pipelines.values(), *reversed(state.finished_pipelines.values())]

    cps = {s: 0 for s in CheckpointState}
    active_bytes = 0
    for cp in state.checkpoints.values():
        cp_state = cp.state
        if cp_state is CheckpointState.ACTIVE and cp.expires_at <= now:
            cp_state = CheckpointState.EXPIRED
        cps[cp_state] += 1
        if cp_state is CheckpointState.ACTIVE:
            active_bytes += cp.size_bytes
    rb_done = state.rollbacks_succeeded + state.rollbacks_failed

    return {
        "uptime_s": max(0.0, now - state.started_at),
        "pipelines": {
            "active": len(state.pipelines),
            "by_status": by_status,
            "items": {
                "succeeded": state.items_succeeded,
                "failed": state.items_failed,
                "total": state.items_total,
            },
            "runs": [_pipeline(rec, now) for rec in runs],
        },
        "coordination": {
            "active": sum(1 for p in state.pools.values() if p.agents or p.tasks),
            "pools": [_pool(p) for p in state.pools.values()],
        },
        "agents": {
            "total": len(agents),
            "by_state": agents_by_state,
            "items": [
                {
                    "id": a.id,
                    "pool": a.pool,
                    "state": a.state,
                    "memory": a.memory,
                    "cpu": a.cpu,
                    "current_task_id": a.current_task_id,
                    "tasks_completed": a.tasks_completed,
                    "tasks_failed": a.tasks_failed,
                    "context_switches": a.context_switches,
                    "isolated": id(a) not in shared,
                    "avg_task_time_s": (
                        a.task_time_s / a.tasks_completed if a.tasks_completed else None
                    ),
                    "health_at": ts(a.health_at),
                }
                for a in agents
            ],
        },
        "rollback": {
            "checkpoints": {
                "active": cps[CheckpointState.ACTIVE],
                "expired": cps[CheckpointState.EXPIRED] + state.checkpoints_expired_evicted,
                "restored": cps[CheckpointState.RESTORED],
                "deleted": cps[CheckpointState.DELETED],
                "total_bytes": active_bytes,
            },
            "rollbacks": {
                "total": state.rollbacks_total,
                "succeeded": state.rollbacks_succeeded,
                "failed": state.rollbacks_failed,
                "success_rate": state.rollbacks_succeeded / rb_done if rb_done else None,
                "last_duration_s": state.rollback_last_duration_s,
            },
        },
        "tools": [
            {"name": t.name, "calls": t.calls, "errors": t.errors,
             "errors_by_type": dict(t.errors_by_type)}
            for t in state.tools.values()
        ],
        "agent_runs": _agent_runs(state),
        "dropped_events": dict(state.dropped),
        "evicted": dict(state.evicted),
    }


#: Most recent finished agent runs listed in ``MetricsReport.agent_runs.recent``.
RECENT_RUNS = 20


def _run(rec: AgentRunRec) -> dict[str, Any]:
    return {
        "id": rec.id,
        "agent_id": rec.agent_id,
        "pool": rec.pool,
        "task_id": rec.task_id,
        "trace_id": rec.trace_id,
        "outcome": rec.outcome,
        "started_at": ts(rec.started_at),
        "finished_at": ts(rec.finished_at),
        "duration_s": rec.duration_s,
        "steps": rec.steps,
        "step_errors": rec.step_errors,
        "input_tokens": rec.input_tokens,
        "output_tokens": rec.output_tokens,
        "tool_calls": rec.tool_calls,
        "tool_errors": rec.tool_errors,
        "error": rec.error,
    }


def _agent_runs(state: RegistryState) -> dict[str, Any]:
    by_outcome = {o.value: 0 for o in RunOutcome}
    by_outcome.update(state.runs_by_outcome)
    recent = list(state.finished_runs)[-RECENT_RUNS:]
    return {
        "total": sum(by_outcome.values()),
        "active": len(state.open_runs),
        "by_outcome": by_outcome,
        "steps": state.run_steps,
        "input_tokens": state.run_input_tokens,
        "output_tokens": state.run_output_tokens,
        "tool_calls": state.run_tool_calls,
        "tool_errors": state.run_tool_errors,
        "recent": [_run(rec) for rec in reversed(recent)],
    }


def metrics_report(data: dict[str, Any], now: float, trace_id: str | None) -> MetricsReport:
    """Build the model from ``metrics`` data."""
    return MetricsReport.model_validate(
        {"trace_id": trace_id, "generated_at": ts(now), **data}
    )


def agent_busy_ratio(agent: AgentRec, now: float, window_s: float) -> tuple[float, float]:
    """``(busy_s, alive_s)`` of an agent within the window (time-weighted)."""
    start = max(agent.busy.window_start(now, window_s), agent.spawned_at)
    alive = max(0.0, now - start)
    busy = sum(b.busy.get(agent.id, 0.0) for _, b in agent.busy.window(now, window_s))
    if agent.busy_since is not None:
        busy += max(0.0, now - max(agent.busy_since, start))
    return min(busy, alive), alive


def performance(
    state: RegistryState, now: float, window_s: float, sample: ResourceSample
) -> dict[str, Any]:
    """The data of ``PerformanceReport`` (call under the registry lock)."""
    covered = min(window_s, state.limits.retention_s, max(now - state.started_at, 0.0))
    per_s = max(covered, 1.0)

    completed = failed = retried = rejected = 0
    durations: list[QuantileSketch] = []
    assignment: list[QuantileSketch] = []
    for pool in state.pools.values():
        for _, b in pool.counts.window(now, window_s):
            completed += b.a
            failed += b.b
            retried += b.c
            rejected += b.d
        durations.append(pool.sketches.merged(now, window_s, "x"))
        assignment.append(pool.sketches.merged(now, window_s, "y"))

    items_ok = items_bad = 0
    for _, b in state.items.window(now, window_s):
        items_ok += b.a
        items_bad += b.b
    rb_ok = rb_bad = 0
    for _, b in state.rollback_counts.window(now, window_s):
        rb_ok += b.a
        rb_bad += b.b
    rb_sketch = state.rollback_sketches.merged(now, window_s, "x")

    tool_calls = tool_errors = 0
    tools: dict[str, dict[str, Any]] = {}
    for tool in state.tools.values():
        calls = errors = 0
        for _, b in tool.counts.window(now, window_s):
            calls += b.a
            errors += b.b
        tool_calls += calls
        tool_errors += errors
        sketch = tool.sketches.merged(now, window_s, "x")
        if sketch.count:
            tools[tool.name] = Summary.of(sketch).as_dict()

    runs_ok = runs_bad = runs_max = 0
    for _, b in state.run_counts.window(now, window_s):
        runs_ok += b.a
        runs_bad += b.b
        runs_max += b.c
    runs_ended = runs_ok + runs_bad + runs_max
    run_durations = [state.run_sketches.merged(now, window_s, "x")]
    step_durations = [state.run_sketches.merged(now, window_s, "y")]

    agents = _all_agents(state)
    busy_total = alive_total = 0.0
    per_agent: dict[str, float] = {}
    for agent in agents:
        busy, alive = agent_busy_ratio(agent, now, window_s)
        busy_total += busy
        alive_total += alive
        per_agent[agent.id] = _ratio(busy, alive)
    memories = [a.memory for a in agents if a.memory is not None]
    cpus = [a.cpu for a in agents if a.cpu is not None]

    return {
        "window_s": window_s,
        "covered_s": covered,
        "throughput": {
            "tasks_completed": completed,
            "tasks_failed": failed,
            "tasks_completed_per_s": completed / per_s,
            "tasks_failed_per_s": failed / per_s,
            "pipeline_items_per_s": (items_ok + items_bad) / per_s,
            "tool_calls_per_s": tool_calls / per_s,
            "agent_runs_per_s": runs_ended / per_s,
            "tasks_retried": retried,
            "tasks_rejected": rejected,
        },
        "latency": {
            "task_duration_s": Summary.of(merge_sketches(durations)).as_dict(),
            "assignment_latency_s": Summary.of(merge_sketches(assignment)).as_dict(),
            "rollback_duration_s": Summary.of(rb_sketch).as_dict(),
            "tools": tools,
            "agent_run_duration_s": Summary.of(merge_sketches(run_durations)).as_dict(),
            "agent_step_duration_s": Summary.of(merge_sketches(step_durations)).as_dict(),
        },
        "errors": {
            "task_error_rate": _ratio(failed, completed + failed),
            "tool_error_rate": _ratio(tool_errors, tool_calls),
            "agent_run_error_rate": _ratio(runs_bad + runs_max, runs_ended),
            "pipeline_item_error_rate": _ratio(items_bad, items_ok + items_bad),
            "rollback_failure_rate": _ratio(rb_bad, rb_ok + rb_bad),
        },
        "utilization": {
            "agents_busy_ratio": _ratio(busy_total, alive_total),
            "agents": per_agent,
            "queue_saturation": {
                p.name: min(1.0, _ratio(p.pending, p.max_queue)) for p in state.pools.values()
            },
        },
        "resources": {
            "process_cpu_percent": sample.cpu_percent,
            "process_rss_bytes": sample.rss_bytes,
            "agent_memory_max": max(memories) if memories else None,
            "agent_cpu_max": max(cpus) if cpus else None,
            "process_memory_ratio": sample.memory_ratio,
        },
    }


def performance_report(
    data: dict[str, Any], now: float, trace_id: str | None
) -> PerformanceReport:
    """Build the model from ``performance`` data."""
    return PerformanceReport.model_validate(
        {"trace_id": trace_id, "generated_at": ts(now), **data}
    )


def trace_report(trace_id: str, events: list[Any], now: float) -> TraceReport:
    """The timeline of one trace; raises UnknownEntityError when it has no events."""
    if not events:
        raise UnknownEntityError(f"no recorded event carries trace id {trace_id!r}",
                                 value=trace_id, reason="unknown_trace")
    return TraceReport.model_validate(
        {
            "trace_id": trace_id,
            "generated_at": ts(now),
            "events": [
                {
                    "at": ts(e.at),
                    "kind": e.kind,
                    "entity": {"kind": e.entity_kind, "id": e.entity_id},
                    "attributes": dict(e.attributes or {}),
                }
                for e in events
            ],
        }
    )
