"""Alert thresholds, the built-in rules, custom rules and the alert lifecycle.

Rules are pure functions: they read the registry state (under the registry lock), the
time, the thresholds and one resource sample, and yield ``AlertCondition`` values, one
per condition that holds (or recently held).  The ``AlertEngine`` turns conditions into
alerts with a lifecycle in the spirit of Prometheus alerting rules:

* a condition seen for less than its rule's ``for`` duration is a *pending* alert;
* once it has held for ``for`` seconds the alert is *firing*;
* when the condition clears the alert is *resolved* (after ``keep_firing_for_s``, if
  set), and stays visible for ``resolved_retention_s``.

One alert exists per rule and entity set; its ``id`` is a fingerprint of both, so a
condition that persists is one alert however often it is queried.  ``started_at`` is
the onset the hooks recorded (an agent's memory crossing the warning level, the queue
going over its ratio, a rollback failing), never the time of the query.

Evaluation happens when alerts are read.  Conditions that the state keeps as events
(task failures, rollbacks, pipeline runs, rejections, retired agents) carry the time
they ended, so an alert that came and went between two queries still shows up, as
resolved, with exact times.  Gauge-like conditions (memory, CPU, a degraded agent, the
queue depth, a stall, process memory) are judged at evaluation time, as Prometheus
judges a gauge at each evaluation: a spike that began and ended between two queries is
not seen, and a gauge alert's ``resolved_at`` is the first evaluation that found it
cleared.  See docs/alerts.md.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from ._enums import AgentState, AlertState, EntityKind, PipelineStatus, Severity, TaskStatus
from ._log import logger
from ._state import (
    AgentRec,
    CountBucket,
    FailureRec,
    PoolState,
    RegistryState,
    RollbackRec,
    SketchPair,
)
from .exceptions import InvalidValueError, ObservabilityError
from .reports import Alert, AlertsReport, Entity
from .resources import ResourceSample
from .views import isolation_conflicts, pending_by_type, ts
from .windows import QuantileSketch, Ring, merge_sketches

if TYPE_CHECKING:
    from .registry import Registry
    from .reports import MetricsReport, PerformanceReport

__all__ = [
    "ALERT_STATE_FILTERS",
    "BUILTIN_RULES",
    "RULE_ERROR",
    "AlertCondition",
    "AlertEngine",
    "AlertRule",
    "AlertStateFilter",
    "RuleContext",
    "SeverityFilter",
    "Thresholds",
    "fingerprint",
]

#: The ``state`` values ``registry.alerts`` and GET /alerts accept.
AlertStateFilter = Literal["active", "firing", "pending", "resolved", "all"]
ALERT_STATE_FILTERS: tuple[str, ...] = ("active", "firing", "pending", "resolved", "all")
#: The ``severity`` values they accept.
SeverityFilter = Literal["critical", "warning", "info"]

#: The rule name of the alert raised when a rule itself raises.
RULE_ERROR = "rule_error"
#: Most trace ids an alert carries (the most recent causes).
MAX_TRACE_IDS = 10
#: Most resolved alerts kept (the oldest go first), whatever the retention.
MAX_RESOLVED_ALERTS = 1_000
#: Hex digits of the sha256 fingerprint used as an alert id.
FINGERPRINT_HEX = 16
#: Most 10-second steps a latency onset search walks back (ten minutes).
MAX_LATENCY_ONSET_STEPS = 60
#: Most failed tasks a task_failures alert names.
MAX_AFFECTED_TASKS = 10
#: Longest summary kept (a custom rule's or an exception's text is cut).
MAX_SUMMARY_LENGTH = 500

_STATE_ORDER = {AlertState.FIRING: 0, AlertState.PENDING: 1, AlertState.RESOLVED: 2}
_SEVERITY_ORDER = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
_SEVERITY_VALUES = frozenset(s.value for s in Severity)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Alert thresholds and durations; every default comes from a spec (docs/alerts.md).

    Ratios are fractions 0.0-1.0 and durations seconds.  ``<rule>_for_s`` is how long a
    rule's condition must hold before its alert fires (Prometheus ``for``); each default
    is at most 300 s, and 0 for rules about events (a failed rollback fires at once).

    Raises:
        InvalidValueError: a value is negative, not finite, a ratio is outside 0..1, or
            a warning level is above its critical level.
    """

    agent_memory_warning: float = 0.85
    agent_memory_critical: float = 0.95
    agent_cpu_warning: float = 0.90
    agent_cpu_critical: float = 0.98
    #: queue depth / max_queue at which the queue is building up (Spec 020 cap: 100).
    queue_warning_ratio: float = 0.8
    task_failure_rate: float = 0.2
    task_failure_min_tasks: int = 5
    #: Spec 020: submit -> agent pickup within 500 ms.
    assignment_latency_p95_s: float = 0.5
    #: fewest assignments in the window before the p95 is judged.
    assignment_latency_min_samples: int = 5
    #: Spec 021: a rollback completes in under 30 s.
    rollback_slow_s: float = 30.0
    pipeline_stall_s: float = 600.0
    process_memory_ratio: float = 0.9
    #: the window that rate-based and event-based rules look at.
    window_s: float = 300.0

    agent_high_memory_for_s: float = 60.0
    agent_high_cpu_for_s: float = 120.0
    agent_degraded_for_s: float = 60.0
    task_failures_for_s: float = 0.0
    queue_buildup_for_s: float = 60.0
    assignment_latency_for_s: float = 60.0
    rollback_failed_for_s: float = 0.0
    rollback_slow_for_s: float = 0.0
    pipeline_failed_for_s: float = 0.0
    pipeline_stalled_for_s: float = 0.0
    isolation_breach_for_s: float = 0.0
    process_high_memory_for_s: float = 60.0
    #: a firing alert whose condition clears keeps firing this long (Prometheus
    #: ``keep_firing_for``), so that a value flapping around its threshold does not flap
    #: the alert.
    keep_firing_for_s: float = 0.0
    #: how long a resolved alert stays visible (Alertmanager shows 15 minutes of history
    #: in its default group repeat; ours is a plain retention).
    resolved_retention_s: float = 900.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise InvalidValueError(
                    f"Thresholds.{f.name} must be a finite number >= 0, got {value!r:.80}",
                    value=value,
                )
        for name in ("agent_memory_warning", "agent_memory_critical", "agent_cpu_warning",
                     "agent_cpu_critical", "queue_warning_ratio", "task_failure_rate",
                     "process_memory_ratio"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise InvalidValueError(
                    f"Thresholds.{name} is a ratio in (0, 1], got {value!r}", value=value)
        for low, high in (("agent_memory_warning", "agent_memory_critical"),
                          ("agent_cpu_warning", "agent_cpu_critical")):
            if getattr(self, low) > getattr(self, high):
                raise InvalidValueError(
                    f"Thresholds.{low} ({getattr(self, low)}) is above {high} "
                    f"({getattr(self, high)})", value=getattr(self, low))
        if self.window_s <= 0:
            raise InvalidValueError("Thresholds.window_s must be > 0", value=self.window_s)

    def for_s(self, rule: str) -> float:
        """The ``for`` duration of a built-in rule (0.0 for names without one)."""
        value = getattr(self, f"{rule}_for_s", 0.0)
        return float(value)


# -- conditions, rules, context ------------------------------------------------------------

EntityLike = Entity | tuple[EntityKind | str, str]


@dataclass(frozen=True, slots=True)
class AlertCondition:
    """One condition a rule found: the entities it hits and how bad it is.

    Attributes:
        affected: the entities, as ``(kind, id)`` pairs or ``Entity`` models; kinds are
            agent, pool, pipeline, task, checkpoint, tool or process.  With the rule
            name (and ``key``) they make the alert's fingerprint.
        summary: one human sentence.
        severity: critical, warning or info.
        value: the measured value (a ratio, seconds, a count), or None.
        threshold: the threshold it was compared with, or None.
        started_at: when the condition began, in registry-clock seconds; None means
            "first seen by an evaluation".  May be a zero-argument callable, computed
            only when the alert is new (for onsets that are costly to find).
        ended_at: when the condition stopped holding, if it is known to have stopped
            (or will stop: a time after now keeps it active until then).  Lets an
            alert that came and went between two queries appear, resolved.
        trace_ids: trace ids of the events that caused it.
        for_s: overrides the rule's ``for`` duration for this condition.
        key: extra identity for conditions whose entities alone are not unique (an
            agent id in two pools); part of the fingerprint, not shown.
        identity: the entities that identify the alert when ``affected`` lists more
            (the latest failed tasks of a pool): the fingerprint uses these instead, so
            the alert keeps its id while the list changes.  Default: ``affected``.
    """

    affected: Sequence[EntityLike]
    summary: str
    severity: Severity | str = Severity.WARNING
    value: float | None = None
    threshold: float | None = None
    started_at: float | Callable[[], float] | None = None
    ended_at: float | None = None
    trace_ids: Sequence[str | None] = ()
    for_s: float | None = None
    key: str = ""
    identity: Sequence[EntityLike] | None = None


class RuleContext:
    """What a custom rule reads: the time, the thresholds, a resource sample, the reports.

    Custom rules run outside the registry lock, so ``metrics()`` and ``performance()``
    are safe to call (each is built once per evaluation).  A rule must not call
    ``registry.alerts()``: that raises, and the rule shows up as a ``rule_error``.

    Attributes:
        now: the evaluation time, registry-clock seconds.
        thresholds: the registry's ``Thresholds``.
        resources: the process sample used by ``process_high_memory``.
        registry: the registry being evaluated.
    """

    __slots__ = ("_metrics", "_performance", "now", "registry", "resources", "thresholds")

    def __init__(self, registry: Registry, now: float, resources: ResourceSample) -> None:
        self.registry = registry
        self.now = now
        self.thresholds = registry.thresholds
        self.resources = resources
        self._metrics: MetricsReport | None = None
        self._performance: dict[float, PerformanceReport] = {}

    @property
    def time(self) -> datetime:
        """``now`` as a timezone-aware UTC datetime."""
        return _dt(self.now)

    def metrics(self) -> MetricsReport:
        """The registry's ``MetricsReport`` (built once per evaluation)."""
        if self._metrics is None:
            self._metrics = self.registry.metrics()
        return self._metrics

    def performance(self, window_s: float | None = None) -> PerformanceReport:
        """The ``PerformanceReport`` over ``window_s`` (``thresholds.window_s`` if None)."""
        window = float(window_s if window_s is not None else self.thresholds.window_s)
        report = self._performance.get(window)
        if report is None:
            report = self._performance[window] = self.registry.performance(window)
        return report


@runtime_checkable
class AlertRule(Protocol):
    """A custom rule: a name and ``evaluate(ctx) -> iterable of AlertCondition``.

    A plain callable ``fn(ctx)`` works too; its name is ``fn.name`` or ``fn.__name__``.
    Optional attributes: ``for_s`` (default 0.0) and ``keep_firing_for_s`` (default the
    thresholds' ``keep_firing_for_s``).
    """

    name: str

    def evaluate(self, ctx: RuleContext) -> Iterable[AlertCondition]:
        """Yield one condition per entity set the rule finds unhealthy now."""
        ...


BuiltinFn = Callable[[RegistryState, float, Thresholds, ResourceSample],
                     Iterable[AlertCondition]]


@dataclass(frozen=True, slots=True)
class _Builtin:
    name: str
    fn: BuiltinFn


@dataclass(frozen=True, slots=True)
class _Custom:
    name: str
    call: Callable[[RuleContext], Iterable[AlertCondition]]
    for_s: float
    keep_firing_for_s: float | None


# -- helpers shared by the built-in rules -------------------------------------------------


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _ids(values: Iterable[str | None]) -> list[str]:
    """Distinct non-empty trace ids, most recent last, at most MAX_TRACE_IDS."""
    out: list[str] = []
    seen: set[str] = set()
    for v in values:
        if v and v not in seen:
            seen.add(v)
            out.append(v)
    return out[-MAX_TRACE_IDS:]


def _horizon(now: float, th: Thresholds) -> float:
    """Conditions that ended before this can no longer add or change an alert."""
    return now - th.resolved_retention_s - th.keep_firing_for_s


def _bound(value: float) -> Callable[[], float]:
    """An onset that is only a bound (the records before it were evicted).

    Passed as a callable, the engine uses it for a new alert but never takes a later
    value for "the condition began again" on an alert it tracks.
    """
    return lambda: value


def _window_bounds(ring: Ring[Any], now: float, window_s: float) -> tuple[int, int, int]:
    """``(hi, span, oldest)``: the window's newest bucket, buckets before it, oldest kept."""
    b = ring.bucket_s
    hi = int(now // b)
    oldest = hi - ring.n + 1
    lo = max(int((now - window_s) // b), oldest)
    return hi, hi - lo, oldest


# -- agents -------------------------------------------------------------------------------


def _level_condition(
    agent: AgentRec,
    what: str,
    value: float | None,
    since: dict[str, float],
    warning: float,
    critical: float,
    ended_at: float | None,
) -> AlertCondition:
    critical_now = "critical" in since
    level = "critical" if critical_now else "warning"
    threshold = critical if critical_now else warning
    shown = _pct(value) if value is not None else "unknown"
    if ended_at is None:
        summary = (f"agent {agent.id} (pool {agent.pool}): {what} at {shown}, at or over the "
                   f"{_pct(threshold)} {level} level")
    else:
        summary = (f"agent {agent.id} (pool {agent.pool}) retired with {what} at {shown}, "
                   f"over the {_pct(threshold)} {level} level")
    return AlertCondition(
        affected=[(EntityKind.AGENT, agent.id)],
        summary=summary,
        severity=Severity.CRITICAL if critical_now else Severity.WARNING,
        value=value,
        threshold=threshold,
        started_at=min(since.values()),
        ended_at=ended_at,
        trace_ids=[agent.health_trace_id],
        key=agent.pool,
    )


def _agent_levels(what: str) -> BuiltinFn:
    def rule(state: RegistryState, now: float, th: Thresholds,
             sample: ResourceSample) -> Iterator[AlertCondition]:
        if what == "memory":
            warning, critical = th.agent_memory_warning, th.agent_memory_critical
        else:
            warning, critical = th.agent_cpu_warning, th.agent_cpu_critical
        horizon = _horizon(now, th)
        for pool in state.pools.values():
            for agent in pool.agents.values():
                since = agent.memory_level_since if what == "memory" else agent.cpu_level_since
                if since:
                    value = agent.memory if what == "memory" else agent.cpu
                    yield _level_condition(agent, what, value, since, warning, critical, None)
            for agent in pool.retired.values():
                since = agent.memory_level_since if what == "memory" else agent.cpu_level_since
                if since and agent.retired_at is not None and agent.retired_at >= horizon:
                    value = agent.memory if what == "memory" else agent.cpu
                    yield _level_condition(agent, what, value, since, warning, critical,
                                           agent.retired_at)

    rule.__name__ = f"agent_high_{what}"
    return rule


def agent_high_memory(state: RegistryState, now: float, th: Thresholds,
                      sample: ResourceSample) -> Iterable[AlertCondition]:
    """An agent's memory at or over ``agent_memory_warning`` (critical over the critical level).

    Onset: the health sample that first crossed the warning level (stamped by
    ``agent_health``).  An agent retired while high ends the condition at retirement.
    """
    return _agent_levels("memory")(state, now, th, sample)


def agent_high_cpu(state: RegistryState, now: float, th: Thresholds,
                   sample: ResourceSample) -> Iterable[AlertCondition]:
    """An agent's CPU at or over ``agent_cpu_warning`` (critical over the critical level)."""
    return _agent_levels("cpu")(state, now, th, sample)


def agent_degraded(state: RegistryState, now: float, th: Thresholds,
                   sample: ResourceSample) -> Iterator[AlertCondition]:
    """An agent in the DEGRADED state (Spec 020: unhealthy, receives no tasks).

    Onset: the state change.  An agent retired while degraded ends it at retirement.
    """
    horizon = _horizon(now, th)
    for pool in state.pools.values():
        for agent in pool.agents.values():
            if agent.state is AgentState.DEGRADED:
                yield AlertCondition(
                    affected=[(EntityKind.AGENT, agent.id)],
                    summary=f"agent {agent.id} (pool {pool.name}) is degraded and receives "
                            "no tasks",
                    value=now - agent.state_since,
                    started_at=agent.state_since,
                    trace_ids=[agent.health_trace_id],
                    key=pool.name,
                )
        for agent in pool.retired.values():
            if (agent.state is AgentState.DEGRADED and agent.retired_at is not None
                    and agent.retired_at >= horizon):
                yield AlertCondition(
                    affected=[(EntityKind.AGENT, agent.id)],
                    summary=f"agent {agent.id} (pool {pool.name}) was retired while degraded",
                    value=agent.retired_at - agent.state_since,
                    started_at=agent.state_since,
                    ended_at=agent.retired_at,
                    trace_ids=[agent.health_trace_id],
                    key=pool.name,
                )


def isolation_breach(state: RegistryState, now: float, th: Thresholds,
                     sample: ResourceSample) -> Iterator[AlertCondition]:
    """Live agents sharing a context window, tool session or memory handle (critical).

    One alert per set of agents that share ids, naming every one of them.  Onset: the
    spawn of the latest of them (the moment the sharing began).
    """
    agents = [a for pool in state.pools.values() for a in pool.agents.values()]
    groups: dict[tuple[tuple[str, str], ...], tuple[list[AgentRec], list[str]]] = {}
    for (kind, shared), owners in isolation_conflicts(agents).items():
        key = tuple(sorted((a.pool, a.id) for a in owners))
        entry = groups.setdefault(key, (owners, []))
        entry[1].append(f"{kind} {shared}")
    for key, (owners, what) in groups.items():
        names = sorted(a.id for a in owners)
        yield AlertCondition(
            affected=[(EntityKind.AGENT, name) for name in names],
            summary=f"agents {' and '.join(names)} share {', '.join(sorted(what))}: "
                    "isolation breached",
            severity=Severity.CRITICAL,
            value=float(len(owners)),
            started_at=max(a.spawned_at for a in owners),
            key=";".join(f"{p}/{a}" for p, a in key),
        )


# -- the pool: failures, queue, latency ---------------------------------------------------


def _counts_rate_onset(ring: Ring[CountBucket], now: float, window_s: float,
                       rate: float, min_tasks: int) -> float:
    """When the pool's windowed failure rate last began to hold (to the second).

    Slides the window back one bucket at a time, as if the rule had been evaluated every
    second, while the condition still held; bounded by the ring (the retention).
    """
    hi, span, oldest = _window_bounds(ring, now, window_s)
    done: dict[int, tuple[int, int]] = {
        idx: (bk.a, bk.b) for idx, bk in ring.window(now, ring.n * ring.bucket_s)}
    ok = sum(done.get(i, (0, 0))[0] for i in range(hi - span, hi + 1))
    bad = sum(done.get(i, (0, 0))[1] for i in range(hi - span, hi + 1))
    end = hi
    while end - 1 - span >= oldest:
        leaving = done.get(end, (0, 0))
        entering = done.get(end - 1 - span, (0, 0))
        ok2 = ok - leaving[0] + entering[0]
        bad2 = bad - leaving[1] + entering[1]
        total = ok2 + bad2
        if total < min_tasks or bad2 / total < rate:
            break
        ok, bad, end = ok2, bad2, end - 1
    return end * ring.bucket_s


def task_failures(state: RegistryState, now: float, th: Thresholds,
                  sample: ResourceSample) -> Iterator[AlertCondition]:
    """Tasks failing: per pool, the failure rate over ``window_s``; per task, a final failure.

    * Rate: tasks that ended FAILED / (completed + failed) over the window, at least
      ``task_failure_min_tasks`` ended; affected: the pool.  Onset: the second from which
      the windowed rate has held (as if evaluated every second).
    * Tasks that ended FAILED after their last attempt, one alert per pool and task
      type: affected: the pool, the latest failed tasks (up to ``MAX_AFFECTED_TASKS``)
      and their agents.  It begins with a final failure and holds until ``window_s``
      after the last one of the run (failures less than ``window_s`` apart).
    """
    window = th.window_s
    horizon = _horizon(now, th)
    for pool in state.pools.values():
        ok = bad = 0
        for _, bucket in pool.counts.window(now, window):
            ok += bucket.a
            bad += bucket.b
        total = ok + bad
        if total and total >= th.task_failure_min_tasks and bad / total >= th.task_failure_rate:
            counts = pool.counts

            def onset(counts: Ring[CountBucket] = counts) -> float:
                return _counts_rate_onset(counts, now, window, th.task_failure_rate,
                                          th.task_failure_min_tasks)

            recent = [f for f in pool.failures if f.at >= now - window]
            types: dict[str, int] = {}
            for f in recent:
                types[f.task_type] = types.get(f.task_type, 0) + 1
            by_type = ", ".join(f"{t} {n}" for t, n in sorted(types.items(),
                                                              key=lambda kv: -kv[1]))
            yield AlertCondition(
                affected=[(EntityKind.POOL, pool.name)],
                summary=(f"pool {pool.name}: {bad} of {total} tasks failed in the last "
                         f"{window:g} s ({_pct(bad / total)}, threshold "
                         f"{_pct(th.task_failure_rate)})"
                         + (f"; by type: {by_type}" if by_type else "")),
                value=bad / total,
                threshold=th.task_failure_rate,
                started_at=onset,
                trace_ids=_ids(f.trace_id for f in recent),
                key="rate",
            )
        yield from _final_failures(pool, now, window, horizon)


def _final_failures(pool: PoolState, now: float, window: float,
                    horizon: float) -> Iterator[AlertCondition]:
    """One condition per task type whose tasks ended FAILED within ``window`` of each other."""
    failures = pool.failures
    by_type: dict[str, list[FailureRec]] = {}
    for f in failures:
        by_type.setdefault(f.task_type, []).append(f)
    # when the deque is full, older failures of a chain may have been evicted
    evicting = failures.maxlen is not None and len(failures) >= failures.maxlen
    for task_type, recs in by_type.items():
        last = recs[-1].at
        if last + window < horizon:
            continue
        first = len(recs) - 1
        while first > 0 and recs[first].at - recs[first - 1].at < window:
            first -= 1
        chain = recs[first:]
        start = chain[0].at
        # the chain may go on into evicted failures: then its start is only a bound
        started = _bound(start) if evicting and chain[0] is recs[0] else start
        shown = chain[-MAX_AFFECTED_TASKS:]
        agents = list(dict.fromkeys(f.agent_id for f in shown if f.agent_id))
        latest = shown[-1]
        n = len(chain)
        tasks = ", ".join(f.task_id for f in reversed(shown))
        yield AlertCondition(
            affected=[(EntityKind.POOL, pool.name),
                      *((EntityKind.TASK, f.task_id) for f in reversed(shown)),
                      *((EntityKind.AGENT, a) for a in agents)],
            identity=[(EntityKind.POOL, pool.name)],
            key=f"failed:{task_type}",
            summary=(f"pool {pool.name}: {n} {task_type} task{'s' if n > 1 else ''} ended "
                     f"FAILED after the last attempt ({tasks}"
                     + (", ..." if n > len(shown) else "") + ")"
                     + (f"; latest: {latest.error}" if latest.error else "")),
            value=float(n),
            started_at=started,
            ended_at=last + window,
            trace_ids=_ids(f.trace_id for f in shown),
        )


def _rejection_episode(pool: PoolState, now: float, window_s: float) -> float | None:
    """Start of the run of rejections that ends with the latest (gaps under ``window_s``)."""
    ring = pool.counts
    times = sorted((idx for idx, bk in ring.window(now, ring.n * ring.bucket_s) if bk.d),
                   reverse=True)
    if not times:
        return pool.last_rejected_at
    start = times[0]
    gap = window_s / ring.bucket_s
    for idx in times[1:]:
        if start - idx >= gap:
            break
        start = idx
    return min(start * ring.bucket_s, pool.last_rejected_at or math.inf)


def queue_buildup(state: RegistryState, now: float, th: Thresholds,
                  sample: ResourceSample) -> Iterator[AlertCondition]:
    """A pool's queue at or over ``queue_warning_ratio`` of ``max_queue``, or rejecting.

    Warning while the depth is over the ratio (onset: the submission that crossed it);
    critical, and firing at once, while a task was rejected in the last ``window_s``.
    The summary names the task types piling up.  A rejection episode that ended between
    two queries still shows, resolved ``window_s`` after its last rejection.
    """
    window = th.window_s
    for pool in state.pools.values():
        over = pool.queue_over_since
        last_rej = pool.last_rejected_at
        rejecting = last_rej is not None and last_rej + window > now
        rej_start = (_rejection_episode(pool, now, window)
                     if last_rej is not None and last_rej + window >= _horizon(now, th)
                     else None)
        if over is None and rej_start is None:
            continue
        ratio = pool.pending / pool.max_queue if pool.max_queue else 0.0
        types = pending_by_type(pool)
        piling = ", ".join(f"{t} {n}" for t, n in list(types.items())[:6])
        rejected = 0
        for _, bucket in pool.counts.window(now, window):
            rejected += bucket.d
        parts = [f"pool {pool.name}: {pool.pending}/{pool.max_queue} tasks pending"]
        if piling:
            parts.append(f"piling up: {piling}")
        if rejecting:
            by_type = ", ".join(f"{t} {n}" for t, n in sorted(
                pool.rejected_by_type.items(), key=lambda kv: -kv[1])[:6])
            parts.append(f"{rejected} rejected in the last {window:g} s"
                         + (f" (since start: {by_type})" if by_type else ""))
        pending_traces = []
        for task in pool.tasks.values():
            if task.status is TaskStatus.PENDING and task.trace_id:
                pending_traces.append(task.trace_id)
                if len(pending_traces) >= MAX_TRACE_IDS:
                    break
        starts = [t for t in (over, rej_start if rejecting else None) if t is not None]
        if starts:
            yield AlertCondition(
                affected=[(EntityKind.POOL, pool.name)],
                summary="; ".join(parts),
                severity=Severity.CRITICAL if rejecting else Severity.WARNING,
                value=ratio,
                threshold=th.queue_warning_ratio,
                started_at=min(starts),
                trace_ids=pending_traces,
                for_s=0.0 if rejecting else None,
            )
        elif rej_start is not None and last_rej is not None:
            yield AlertCondition(
                affected=[(EntityKind.POOL, pool.name)],
                summary=(f"pool {pool.name} rejected tasks from the full queue; the last "
                         f"rejection was {now - last_rej:.0f} s ago"),
                severity=Severity.CRITICAL,
                value=ratio,
                threshold=th.queue_warning_ratio,
                started_at=rej_start,
                ended_at=last_rej + window,
                for_s=0.0,
            )


def _p95(sketch: QuantileSketch) -> float | None:
    return sketch.quantiles((0.95,))[0]


def _latency_onset(ring: Ring[SketchPair], now: float, window_s: float, limit: float,
                   min_samples: int) -> float:
    """When the windowed assignment p95 began to exceed ``limit`` (to ten seconds)."""
    hi, span, oldest = _window_bounds(ring, now, window_s)
    data = {idx: pair.y for idx, pair in ring.window(now, ring.n * ring.bucket_s)}
    end = hi
    for _ in range(MAX_LATENCY_ONSET_STEPS):
        prev = end - 1
        if prev - span < oldest:
            break
        sketch = merge_sketches([data[i] for i in range(prev - span, prev + 1) if i in data])
        p95 = _p95(sketch)
        if sketch.count < min_samples or p95 is None or p95 <= limit:
            break
        end = prev
    return end * ring.bucket_s


def assignment_latency(state: RegistryState, now: float, th: Thresholds,
                       sample: ResourceSample) -> Iterator[AlertCondition]:
    """A pool's p95 submit-to-pickup latency over ``window_s`` above Spec 020's 500 ms.

    Judged once at least ``assignment_latency_min_samples`` assignments happened in the
    window.  Onset: the ten-second bucket from which the windowed p95 has been over.
    """
    window = th.window_s
    limit = th.assignment_latency_p95_s
    for pool in state.pools.values():
        sketch = merge_sketches([pair.y for _, pair in pool.sketches.window(now, window)])
        p95 = _p95(sketch)
        if sketch.count < th.assignment_latency_min_samples or p95 is None or p95 <= limit:
            continue
        sketches = pool.sketches

        def onset(sketches: Ring[SketchPair] = sketches) -> float:
            return _latency_onset(sketches, now, window, limit,
                                  th.assignment_latency_min_samples)

        yield AlertCondition(
            affected=[(EntityKind.POOL, pool.name)],
            summary=(f"pool {pool.name}: p95 assignment latency {p95:.3f} s over the last "
                     f"{window:g} s ({sketch.count} assignments), above the "
                     f"{limit:g} s target"),
            value=p95,
            threshold=limit,
            started_at=onset,
        )


# -- rollbacks ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Episode:
    start: float
    last: float
    #: the episode begins with the oldest retained record of a full history
    truncated: bool = False
    count: int = 0
    worst: float = 0.0
    end: float | None = None
    recs: list[RollbackRec] = field(default_factory=list)


def _rollback_episodes(
    history: deque[RollbackRec], bad: Callable[[RollbackRec], bool], hold_s: float
) -> dict[str, _Episode]:
    """The latest episode of bad rollbacks per checkpoint.

    An episode starts with a bad rollback, gathers the bad ones that follow within
    ``hold_s`` of each other, and ends at the next good rollback of the checkpoint or
    ``hold_s`` after its last bad one.
    """
    episodes: dict[str, _Episode] = {}
    full = history.maxlen is not None and len(history) >= history.maxlen
    for n, rec in enumerate(history):
        at = rec.started_at + rec.duration_s
        ep = episodes.get(rec.checkpoint_id)
        if bad(rec):
            if ep is None or ep.end is not None or at >= ep.last + hold_s:
                ep = episodes[rec.checkpoint_id] = _Episode(start=at, last=at,
                                                            truncated=full and n == 0)
            ep.last = at
            ep.count += 1
            ep.worst = max(ep.worst, rec.duration_s)
            ep.recs.append(rec)
        elif ep is not None and ep.end is None and at < ep.last + hold_s:
            ep.end = at
    return episodes


def _component(ep: _Episode) -> str:
    comp = next((r.component for r in reversed(ep.recs) if r.component), None)
    return f" ({comp})" if comp else ""


def rollback_failed(state: RegistryState, now: float, th: Thresholds,
                    sample: ResourceSample) -> Iterator[AlertCondition]:
    """A rollback of a checkpoint failed (critical).

    Holds until a later rollback of the same checkpoint succeeds, or ``window_s`` after
    the last failure.
    """
    horizon = _horizon(now, th)
    episodes = _rollback_episodes(state.rollback_history, lambda r: not r.succeeded,
                                  th.window_s)
    for cp, ep in episodes.items():
        end = ep.end if ep.end is not None else ep.last + th.window_s
        if end < horizon:
            continue
        error = next((r.error for r in reversed(ep.recs) if r.error), None)
        times = "once" if ep.count == 1 else f"{ep.count} times"
        yield AlertCondition(
            affected=[(EntityKind.CHECKPOINT, cp)],
            summary=(f"rollback to checkpoint {cp}{_component(ep)} failed {times}"
                     + (f": {error}" if error else "")),
            severity=Severity.CRITICAL,
            value=float(ep.count),
            started_at=_bound(ep.start) if ep.truncated else ep.start,
            ended_at=end,
            trace_ids=_ids(r.trace_id for r in ep.recs),
        )


def rollback_slow(state: RegistryState, now: float, th: Thresholds,
                  sample: ResourceSample) -> Iterator[AlertCondition]:
    """A rollback took ``rollback_slow_s`` (Spec 021: 30 s) or longer.

    Holds until a later rollback of the same checkpoint is fast, or ``window_s`` after
    the last slow one.
    """
    horizon = _horizon(now, th)
    limit = th.rollback_slow_s
    episodes = _rollback_episodes(state.rollback_history, lambda r: r.duration_s >= limit,
                                  th.window_s)
    for cp, ep in episodes.items():
        end = ep.end if ep.end is not None else ep.last + th.window_s
        if end < horizon:
            continue
        yield AlertCondition(
            affected=[(EntityKind.CHECKPOINT, cp)],
            summary=(f"rollback to checkpoint {cp}{_component(ep)} took {ep.worst:.1f} s, "
                     f"at or over the {limit:g} s target"),
            value=ep.worst,
            threshold=limit,
            started_at=_bound(ep.start) if ep.truncated else ep.start,
            ended_at=end,
            trace_ids=_ids(r.trace_id for r in ep.recs),
        )


# -- pipelines ----------------------------------------------------------------------------


def pipeline_failed(state: RegistryState, now: float, th: Thresholds,
                    sample: ResourceSample) -> Iterator[AlertCondition]:
    """A pipeline run ended failed (critical).

    Holds ``window_s`` after the failure, or until a new run with the same id starts.
    """
    horizon = _horizon(now, th)
    for rec in state.finished_pipelines.values():
        if rec.status is not PipelineStatus.FAILED or rec.finished_at is None:
            continue
        end = rec.finished_at + th.window_s
        rerun = state.pipelines.get(rec.id)
        if rerun is not None and rerun.started_at >= rec.finished_at:
            end = min(end, rerun.started_at)
        if end < horizon:
            continue
        done = rec.succeeded + rec.failed
        yield AlertCondition(
            affected=[(EntityKind.PIPELINE, rec.id)],
            summary=(f"{rec.kind} pipeline {rec.id} failed"
                     + (f" in stage {rec.stage}" if rec.stage else "")
                     + (f" after {done} items ({rec.failed} failed)" if done else "")
                     + (f": {rec.error}" if rec.error else "")),
            severity=Severity.CRITICAL,
            value=float(rec.failed),
            started_at=rec.finished_at,
            ended_at=end,
            trace_ids=[rec.trace_id],
        )


def pipeline_stalled(state: RegistryState, now: float, th: Thresholds,
                     sample: ResourceSample) -> Iterator[AlertCondition]:
    """A running pipeline with no progress (items, stage) for ``pipeline_stall_s``.

    Onset: the last progress plus ``pipeline_stall_s``.  A run that finished after
    stalling ends the condition when it finished.
    """
    limit = th.pipeline_stall_s
    horizon = _horizon(now, th)
    for rec in state.pipelines.values():
        last = max(rec.last_progress_at, rec.started_at)
        idle = now - last
        if rec.status is PipelineStatus.RUNNING and idle >= limit:
            yield AlertCondition(
                affected=[(EntityKind.PIPELINE, rec.id)],
                summary=(f"{rec.kind} pipeline {rec.id} made no progress for {idle:.0f} s"
                         + (f" (stage {rec.stage})" if rec.stage else "")),
                value=idle,
                threshold=limit,
                started_at=last + limit,
                trace_ids=[rec.trace_id],
            )
    for rec in state.finished_pipelines.values():
        last = max(rec.last_progress_at, rec.started_at)
        if (rec.finished_at is not None and rec.finished_at - last >= limit
                and rec.finished_at >= horizon):
            yield AlertCondition(
                affected=[(EntityKind.PIPELINE, rec.id)],
                summary=(f"{rec.kind} pipeline {rec.id} made no progress for "
                         f"{rec.finished_at - last:.0f} s before it ended "
                         f"{rec.status.value}"),
                value=rec.finished_at - last,
                threshold=limit,
                started_at=last + limit,
                ended_at=rec.finished_at,
                trace_ids=[rec.trace_id],
            )


# -- the process --------------------------------------------------------------------------


def process_high_memory(state: RegistryState, now: float, th: Thresholds,
                        sample: ResourceSample) -> Iterator[AlertCondition]:
    """This process's RSS at or over ``process_memory_ratio`` of the machine's memory.

    The sampler keeps no history, so the onset is the first evaluation that saw it.
    """
    ratio = sample.memory_ratio
    if sample.total_memory_bytes and ratio >= th.process_memory_ratio:
        yield AlertCondition(
            affected=[(EntityKind.PROCESS, str(os.getpid()))],
            summary=(f"process {os.getpid()} uses {_pct(ratio)} of the machine's memory "
                     f"({sample.rss_bytes / 2**20:.0f} MiB), at or over "
                     f"{_pct(th.process_memory_ratio)}"),
            value=ratio,
            threshold=th.process_memory_ratio,
        )


#: The built-in rules in evaluation order: ``(name, function)``.
BUILTIN_RULES: tuple[_Builtin, ...] = (
    _Builtin("agent_high_memory", agent_high_memory),
    _Builtin("agent_high_cpu", agent_high_cpu),
    _Builtin("agent_degraded", agent_degraded),
    _Builtin("task_failures", task_failures),
    _Builtin("queue_buildup", queue_buildup),
    _Builtin("assignment_latency", assignment_latency),
    _Builtin("rollback_failed", rollback_failed),
    _Builtin("rollback_slow", rollback_slow),
    _Builtin("pipeline_failed", pipeline_failed),
    _Builtin("pipeline_stalled", pipeline_stalled),
    _Builtin("isolation_breach", isolation_breach),
    _Builtin("process_high_memory", process_high_memory),
)
_RESERVED = frozenset({r.name for r in BUILTIN_RULES} | {RULE_ERROR})


# -- the engine ---------------------------------------------------------------------------


def fingerprint(rule: str, affected: Iterable[tuple[str, str]], key: str = "") -> str:
    """The stable id of an alert: sha256 of the rule, key and sorted entities, truncated."""
    text = "\x1f".join([rule, key, *(f"{k}:{i}" for k, i in sorted(affected))])
    return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_HEX]


@dataclass(slots=True)
class _Obs:
    """A normalised condition, ready for the lifecycle."""

    rule: str
    fp: str
    severity: Severity
    affected: tuple[tuple[str, str], ...]
    summary: str
    value: float | None
    threshold: float | None
    started_at: float | Callable[[], float] | None
    ended_at: float | None
    trace_ids: tuple[str, ...]
    for_s: float
    keep_s: float


@dataclass(slots=True, eq=False)
class _Tracked:
    """One alert's lifecycle state, kept by the engine between evaluations."""

    id: str
    rule: str
    severity: Severity
    state: AlertState
    summary: str
    affected: tuple[tuple[str, str], ...]
    value: float | None
    threshold: float | None
    started_at: float
    updated_at: float
    trace_ids: tuple[str, ...]
    for_s: float
    keep_s: float
    #: the last time the condition was known to hold
    last_seen: float
    #: when the condition stopped holding (exact, or the first evaluation that missed it)
    cleared_at: float | None = None
    resolved_at: float | None = None

    def to_model(self) -> Alert:
        return Alert(
            id=self.id,
            rule=self.rule,
            severity=self.severity,
            state=self.state,
            summary=self.summary,
            affected=[Entity(kind=EntityKind(k), id=i) for k, i in self.affected],
            value=self.value,
            threshold=self.threshold,
            started_at=_dt(self.started_at),
            updated_at=_dt(self.updated_at),
            resolved_at=ts(self.resolved_at),
            trace_ids=list(self.trace_ids),
        )


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _finite(x: Any) -> float | None:
    if x is None or isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


_LogRecord = tuple[str, str, dict[str, Any]]


def _custom(rule: Any) -> _Custom:
    name = getattr(rule, "name", None) or getattr(rule, "__name__", None)
    if not isinstance(name, str) or not name:
        raise InvalidValueError(
            f"a custom alert rule needs a non-empty str name, got {rule!r:.80}", value=rule)
    evaluate = getattr(rule, "evaluate", None)
    call = evaluate if callable(evaluate) else rule if callable(rule) else None
    if call is None:
        raise InvalidValueError(
            f"custom alert rule {name!r} is neither callable nor has evaluate(ctx)", value=rule)
    if name in _RESERVED:
        raise InvalidValueError(
            f"custom alert rule name {name!r} is taken by a built-in rule", value=name)
    for_s = getattr(rule, "for_s", 0.0)
    keep = getattr(rule, "keep_firing_for_s", None)
    for what, value in (("for_s", for_s), ("keep_firing_for_s", keep)):
        if value is not None and (_finite(value) is None or value < 0):
            raise InvalidValueError(
                f"custom alert rule {name!r}: {what} must be seconds >= 0, got {value!r:.80}",
                value=value)
    return _Custom(name, call, float(for_s), None if keep is None else float(keep))


class AlertEngine:
    """Evaluates the rules of one registry and keeps the alerts' lifecycle.

    Held by the registry (``registry.alerts()`` drives it).  Its memory is bounded by
    the conditions the bounded state can produce plus at most ``MAX_RESOLVED_ALERTS``
    resolved alerts, and one evaluation costs the same after a million events as after
    ten: rules read only bounded state.

    Args:
        rules: custom rules, evaluated after the built-in ones.

    Raises:
        InvalidValueError: a rule has no name, a built-in's name, a duplicate name, or
            neither ``evaluate`` nor ``__call__``.
    """

    def __init__(self, rules: Iterable[Any] = ()) -> None:
        customs = [_custom(r) for r in rules]
        names = [c.name for c in customs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InvalidValueError(f"custom alert rule names repeat: {dupes}", value=dupes)
        self._customs = tuple(customs)
        self._alerts: dict[str, _Tracked] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    @property
    def rule_names(self) -> tuple[str, ...]:
        """Names of every rule evaluated, built-in first."""
        return (*(r.name for r in BUILTIN_RULES), *(c.name for c in self._customs))

    # -- public -------------------------------------------------------------------------

    def alerts(
        self,
        registry: Registry,
        state: AlertStateFilter | str = "active",
        severity: SeverityFilter | Severity | str | None = None,
    ) -> tuple[float, list[Alert]]:
        """Evaluate the rules now and return ``(now, alerts)`` matching the filters.

        Raises:
            InvalidValueError: ``state`` or ``severity`` is not one of the accepted values.
            ObservabilityError: called from inside a rule (reason ``reentrant``).
        """
        wanted_state = _state_filter(state)
        wanted_severity = _severity_filter(severity)
        if getattr(self._local, "busy", False):
            raise ObservabilityError(
                "registry.alerts() was called from inside an alert rule; a rule reads "
                "ctx.metrics() / ctx.performance() instead", reason="reentrant")
        self._local.busy = True
        try:
            with self._lock:
                now, logs = self._evaluate(registry)
                chosen = [
                    rec for rec in self._alerts.values()
                    if rec.state in wanted_state
                    and (wanted_severity is None or rec.severity is wanted_severity)
                ]
                chosen.sort(key=lambda r: (_STATE_ORDER[r.state], _SEVERITY_ORDER[r.severity],
                                           r.started_at, r.id))
                models = [rec.to_model() for rec in chosen]
        finally:
            self._local.busy = False
        for method, event, kw in logs:
            getattr(logger, method)(event, **kw)
        return now, models

    def report(
        self,
        registry: Registry,
        state: AlertStateFilter | str = "active",
        severity: SeverityFilter | Severity | str | None = None,
        trace_id: str | None = None,
    ) -> AlertsReport:
        """The ``AlertsReport`` of GET /alerts: the alerts and their counts per severity."""
        now, alerts = self.alerts(registry, state, severity)
        counts = {s.value: 0 for s in Severity}
        for alert in alerts:
            counts[alert.severity.value] += 1
        return AlertsReport(trace_id=trace_id, generated_at=_dt(now), counts=counts,
                            alerts=alerts)

    # -- evaluation ---------------------------------------------------------------------

    def _evaluate(self, registry: Registry) -> tuple[float, list[_LogRecord]]:
        now = registry.now()
        sample = registry.resources.sample()
        th = registry.thresholds
        seen: dict[str, _Obs] = {}
        failed: dict[str, str] = {}
        with registry._lock:
            state = registry._state
            for rule in BUILTIN_RULES:
                try:
                    self._collect(rule.name, rule.fn(state, now, th, sample),
                                  th.for_s(rule.name), th.keep_firing_for_s, seen)
                except Exception as exc:  # a bug in a rule must not break the endpoint
                    failed[rule.name] = _error_text(exc)
        if self._customs:
            ctx = RuleContext(registry, now, sample)
            for custom in self._customs:
                keep = (custom.keep_firing_for_s if custom.keep_firing_for_s is not None
                        else th.keep_firing_for_s)
                try:
                    self._collect(custom.name, custom.call(ctx), custom.for_s, keep, seen)
                except Exception as exc:  # isolated: becomes a rule_error alert
                    failed[custom.name] = _error_text(exc)
        for name, error in failed.items():
            fp = fingerprint(RULE_ERROR, (), name)
            seen[fp] = _Obs(RULE_ERROR, fp, Severity.WARNING, (),
                            f"alert rule {name} raised {error}"[:MAX_SUMMARY_LENGTH],
                            None, None, None, None, (), 0.0, 0.0)
        logs: list[_LogRecord] = []
        self._apply(seen, set(failed), now, th, logs)
        return now, logs

    def _collect(self, rule: str, conditions: Iterable[AlertCondition], for_s: float,
                 keep_s: float, seen: dict[str, _Obs]) -> None:
        """Normalise a rule's conditions into ``seen``; raise on anything malformed.

        All or nothing: a rule whose output is malformed adds no condition.
        """
        batch: dict[str, _Obs] = {}
        for cond in conditions:
            obs = _normalise(rule, cond, for_s, keep_s)
            old = batch.get(obs.fp)
            if old is None or _SEVERITY_ORDER[obs.severity] < _SEVERITY_ORDER[old.severity]:
                batch[obs.fp] = obs
        for fp, obs in batch.items():
            if callable(obs.started_at):
                rec = self._alerts.get(fp)
                if rec is None or rec.state is AlertState.RESOLVED:
                    obs.started_at = float(obs.started_at())
                else:
                    obs.started_at = rec.started_at
        seen.update(batch)

    def _apply(self, seen: dict[str, _Obs], failed: set[str], now: float,
               th: Thresholds, logs: list[_LogRecord]) -> None:
        """Move every alert along its lifecycle given this evaluation's conditions."""
        alerts = self._alerts
        for fp, obs in seen.items():
            rec = alerts.get(fp)
            start = None if callable(obs.started_at) else obs.started_at
            ended = obs.ended_at is not None and obs.ended_at <= now
            if rec is not None and rec.state is not AlertState.RESOLVED:
                grace = rec.keep_s if rec.state is AlertState.FIRING else 0.0
                if start is None or start <= rec.last_seen + grace or start > now:
                    self._refresh(rec, obs, now, ended, logs)
                    continue
                # The condition cleared and began again since the last evaluation: the
                # old episode ended at the latest when the new one began.
                if rec.cleared_at is None or rec.cleared_at > start:
                    rec.cleared_at = start
                self._settle(rec, now, logs, until=start)
                rec = alerts.get(fp)
            if (rec is not None and rec.resolved_at is not None and ended
                    and (start is None or start < rec.resolved_at)):
                continue  # an episode that has already resolved
            self._open(fp, obs, rec, now, ended, th, logs)
        for fp, rec in list(alerts.items()):
            if fp in seen or rec.state is AlertState.RESOLVED or rec.rule in failed:
                continue  # seen, over, or its rule raised (its alerts stay as they were)
            if rec.cleared_at is None:
                rec.cleared_at = now
            self._settle(rec, now, logs)
        self._expire(now, th)

    def _open(self, fp: str, obs: _Obs, prev: _Tracked | None, now: float, ended: bool,
              th: Thresholds, logs: list[_LogRecord]) -> None:
        """A new episode: a new alert, or a resolved one whose condition holds again."""
        start = now if obs.started_at is None or callable(obs.started_at) else obs.started_at
        start = min(start, now)
        if prev is not None and prev.resolved_at is not None:
            start = max(start, prev.resolved_at)
        hold_until = obs.ended_at if ended and obs.ended_at is not None else now
        if ended:
            if hold_until - start < obs.for_s:
                return  # it cleared before its `for`: it never fired
            if now - (hold_until + obs.keep_s) >= th.resolved_retention_s:
                return  # it would already have left the resolved list
        rec = _Tracked(
            id=fp, rule=obs.rule, severity=obs.severity, state=AlertState.PENDING,
            summary=obs.summary, affected=obs.affected, value=obs.value,
            threshold=obs.threshold, started_at=start, updated_at=now,
            trace_ids=obs.trace_ids, for_s=obs.for_s, keep_s=obs.keep_s,
            last_seen=hold_until,
        )
        self._alerts[fp] = rec
        firing = hold_until - start >= obs.for_s
        self._transition(rec, AlertState.FIRING if firing else AlertState.PENDING, now, logs,
                         fresh=True)
        if ended:
            rec.cleared_at = hold_until
            self._settle(rec, now, logs)

    def _refresh(self, rec: _Tracked, obs: _Obs, now: float, ended: bool,
                 logs: list[_LogRecord]) -> None:
        """An active alert whose condition holds still (or is reported to have ended)."""
        hold_until = obs.ended_at if ended and obs.ended_at is not None else now
        changed = (rec.summary != obs.summary or rec.value != obs.value
                   or rec.threshold != obs.threshold or rec.trace_ids != obs.trace_ids
                   or rec.affected != obs.affected)
        if obs.severity is not rec.severity:
            previous = rec.severity
            rec.severity = obs.severity
            changed = True
            logs.append(_log_record("warning", "alert.severity_changed", rec,
                                    previous_severity=previous.value))
        rec.summary, rec.value, rec.threshold = obs.summary, obs.value, obs.threshold
        rec.trace_ids, rec.for_s, rec.keep_s = obs.trace_ids, obs.for_s, obs.keep_s
        rec.affected = obs.affected
        rec.last_seen = max(rec.last_seen, hold_until)
        if changed:
            rec.updated_at = now
        if rec.state is AlertState.PENDING and hold_until - rec.started_at >= rec.for_s:
            self._transition(rec, AlertState.FIRING, now, logs)
        if ended:
            rec.cleared_at = hold_until
            self._settle(rec, now, logs)
        else:
            rec.cleared_at = None

    def _settle(self, rec: _Tracked, now: float, logs: list[_LogRecord],
                until: float | None = None) -> None:
        """The condition cleared at ``rec.cleared_at``.

        A pending alert is dropped (it never fired).  A firing one resolves
        ``keep_s`` after the clearing, or at ``until`` (the condition began again) if
        that comes first; until then it keeps firing.
        """
        cleared = rec.cleared_at if rec.cleared_at is not None else now
        if rec.state is AlertState.PENDING:
            del self._alerts[rec.id]
            logs.append(_log_record("info", "alert.inactive", rec, previous_state="pending"))
        elif rec.state is AlertState.FIRING:
            resolve_at = cleared + rec.keep_s
            if until is not None:
                resolve_at = min(resolve_at, until)
            elif now < resolve_at:
                return
            rec.resolved_at = min(resolve_at, now)
            self._transition(rec, AlertState.RESOLVED, now, logs)

    def _transition(self, rec: _Tracked, new: AlertState, now: float,
                    logs: list[_LogRecord], *, fresh: bool = False) -> None:
        """Set the alert's state and log the change."""
        previous = None if fresh else rec.state.value
        rec.state = new
        rec.updated_at = now
        if new is AlertState.FIRING:
            method = "error" if rec.severity is Severity.CRITICAL else "warning"
        else:
            method = "info"
        logs.append(_log_record(method, f"alert.{new.value}", rec, previous_state=previous))

    def _expire(self, now: float, th: Thresholds) -> None:
        """Forget resolved alerts past the retention (and the oldest beyond the cap)."""
        resolved = [r for r in self._alerts.values() if r.state is AlertState.RESOLVED]
        kept = []
        for rec in resolved:
            if rec.resolved_at is not None and now - rec.resolved_at >= th.resolved_retention_s:
                del self._alerts[rec.id]
            else:
                kept.append(rec)
        if len(kept) > MAX_RESOLVED_ALERTS:
            kept.sort(key=lambda r: r.resolved_at or 0.0)
            for rec in kept[: len(kept) - MAX_RESOLVED_ALERTS]:
                del self._alerts[rec.id]


def _log_record(method: str, event: str, rec: _Tracked, **extra: Any) -> _LogRecord:
    """A structured log event about one alert: ``(logger method, event, fields)``."""
    out: dict[str, Any] = {
        "alert_id": rec.id,
        "rule": rec.rule,
        "severity": rec.severity.value,
        "state": rec.state.value,
        "affected": [f"{k}:{i}" for k, i in rec.affected],
        "trace_ids": list(rec.trace_ids),
        "summary": rec.summary,
        "value": rec.value,
        "started_at": _dt(rec.started_at).isoformat(),
    }
    if rec.resolved_at is not None:
        out["resolved_at"] = _dt(rec.resolved_at).isoformat()
    out.update({k: v for k, v in extra.items() if v is not None})
    return (method, event, out)


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _normalise(rule: str, cond: Any, for_s: float, keep_s: float) -> _Obs:
    if not isinstance(cond, AlertCondition):
        raise TypeError(f"yielded {type(cond).__name__}, not AlertCondition")
    try:
        severity = Severity(str(cond.severity).lower())
    except ValueError:
        raise ValueError(f"unknown severity {cond.severity!r:.40}") from None
    affected = _entities(cond.affected)
    identity = affected if cond.identity is None else _entities(cond.identity)
    started = cond.started_at
    if started is not None and not callable(started) and _finite(started) is None:
        raise ValueError(f"started_at must be seconds, got {started!r:.40}")
    if cond.ended_at is not None and _finite(cond.ended_at) is None:
        raise ValueError(f"ended_at must be seconds, got {cond.ended_at!r:.40}")
    own_for = for_s if cond.for_s is None else _finite(cond.for_s)
    if own_for is None or own_for < 0:
        raise ValueError(f"for_s must be seconds >= 0, got {cond.for_s!r:.40}")
    return _Obs(
        rule=rule,
        fp=fingerprint(rule, identity, str(cond.key)),
        severity=severity,
        affected=tuple(affected),
        summary=str(cond.summary)[:MAX_SUMMARY_LENGTH],
        value=_finite(cond.value),
        threshold=_finite(cond.threshold),
        started_at=started if callable(started) or started is None else float(started),
        ended_at=None if cond.ended_at is None else float(cond.ended_at),
        trace_ids=tuple(_ids(cond.trace_ids)),
        for_s=float(own_for),
        keep_s=keep_s,
    )


def _entities(items: Iterable[Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for entity in items:
        if isinstance(entity, Entity):
            kind, ident = entity.kind.value, entity.id
        else:
            kind_raw, ident = entity
            try:
                kind = EntityKind(str(kind_raw).lower()).value
            except ValueError:
                raise ValueError(f"unknown entity kind {kind_raw!r:.40}") from None
        if not isinstance(ident, str) or not ident:
            raise ValueError(f"entity id must be a non-empty str, got {ident!r:.40}")
        out.append((kind, ident))
    return out


def _state_filter(state: Any) -> frozenset[AlertState]:
    value = str(state).lower() if isinstance(state, str) else None
    if value == "active":
        return frozenset({AlertState.PENDING, AlertState.FIRING})
    if value == "all":
        return frozenset(AlertState)
    if value in ("pending", "firing", "resolved"):
        return frozenset({AlertState(value)})
    raise InvalidValueError(
        f"state must be one of {', '.join(ALERT_STATE_FILTERS)}, got {state!r:.80}",
        value=state, reason="invalid_filter")


def _severity_filter(severity: Any) -> Severity | None:
    if severity is None:
        return None
    if isinstance(severity, str) and severity.lower() in _SEVERITY_VALUES:
        return Severity(severity.lower())
    raise InvalidValueError(
        f"severity must be critical, warning or info, got {severity!r:.80}",
        value=severity, reason="invalid_filter")
