"""The Registry: one lock, one clock, the bounded state, and the handles that write it."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from ._context import _TRACE_ID
from ._enums import PipelineKind
from ._lock import YieldingLock
from ._log import gate, logger
from ._state import (
    COUNT_BUCKET_S,
    Limits,
    PipelineRec,
    PoolState,
    RegistryState,
    ToolRec,
    count_ring,
    sketch_ring,
)
from .alerts import AlertEngine, AlertStateFilter, SeverityFilter, Thresholds
from .exceptions import CapacityError, InvalidValueError, ObservabilityError
from .hooks._common import (
    MAX_ID_LENGTH,
    bad_count,
    bad_id,
    bad_seconds,
    error_name,
    parse_enum,
)
from .hooks.agents import AgentRunHooks
from .hooks.pipelines import PipelineRun
from .hooks.pool import Pool
from .hooks.rollback import RollbackHooks
from .resources import ResourceSampler

if TYPE_CHECKING:
    from ._enums import Severity
    from .reports import Alert, AlertsReport, MetricsReport, PerformanceReport, TraceReport

__all__ = ["Clock", "Registry", "get_registry", "reset_registry"]

Clock = Callable[[], float]

#: Spec 020 pool defaults.
DEFAULT_POOL_SIZE = 4
MAX_POOL_SIZE = 16
DEFAULT_MAX_QUEUE = 100
DEFAULT_MAX_RETRIES = 3
#: Longest window a performance query accepts (the router's upper bound too).
MAX_WINDOW_S = 86_400.0


class Registry:
    """The in-process store that hooks write and reports read.

    Args:
        clock: zero-argument callable returning the time in seconds (``time.time`` by
            default); tests pass a fake one.
        thresholds: alert thresholds (``Thresholds()`` by default).
        strict: raise ``ObservabilityError`` subclasses on bad hook input instead of
            dropping and counting it.
        rules: custom alert rules evaluated beside the built-in ones (``AlertRule``
            objects or callables; see docs/alerts.md).  A bad rule raises
            ``InvalidValueError`` here.
        limits: the caps that bound memory (``Limits()`` by default).
        resources: the process sampler (psutil) used by reports and alerts.

    Thread-safe: hooks may be called from any thread while reports are built on the
    event loop.  One lock guards the state; hooks hold it for a few microseconds.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        thresholds: Thresholds | None = None,
        strict: bool = False,
        rules: list[Any] | None = None,
        limits: Limits | None = None,
        resources: ResourceSampler | None = None,
    ) -> None:
        self._clock: Clock = clock if clock is not None else time.time
        self.thresholds = thresholds if thresholds is not None else Thresholds()
        self.strict = strict
        self.limits = limits if limits is not None else Limits()
        self.rules: list[Any] = list(rules or [])
        self._alert_engine = AlertEngine(self.rules)
        self.resources = resources if resources is not None else ResourceSampler()
        self._lock = YieldingLock()
        self._state = RegistryState(self.limits, self._clock())
        self._pools: dict[str, Pool] = {}
        self._rollbacks = RollbackHooks(self)
        self._agent_runs = AgentRunHooks(self)

    def __repr__(self) -> str:
        return f"<Registry pools={len(self._pools)} strict={self.strict}>"

    def now(self) -> float:
        """The registry clock's current time in seconds."""
        return self._clock()

    # -- handles ---------------------------------------------------------------------

    def pool(
        self,
        name: str,
        *,
        size: int | None = None,
        max_size: int | None = None,
        max_queue: int | None = None,
        max_retries: int | None = None,
    ) -> Pool:
        """The pool named ``name``, created on first use; the same handle every time.

        Settings passed on a later call update the pool.  Defaults are Spec 020's: size
        4, max size 16, 100 queued tasks, 3 attempts.  Never raises unless strict: a pool
        that cannot be recorded is handed out detached (its hooks work, nothing is kept).
        """
        try:
            return self._pool(name, {"size": size, "max_size": max_size,
                                     "max_queue": max_queue, "max_retries": max_retries})
        except ObservabilityError:
            raise
        except Exception as exc:
            self._internal_error("Registry.pool", exc)
            return self._detached_pool(str(name))

    def _detached_pool(self, name: str) -> Pool:
        return Pool(self, PoolState(name, 1, 1, 1, 1, self._clock(),
                                    count_ring(self.limits), sketch_ring(self.limits)))

    def _pool(self, name: str, settings: dict[str, int | None]) -> Pool:
        if bad_id("pool name", name) is not None:
            self._drop(bad_id("pool name", name))  # type: ignore[arg-type]
            name = "invalid"
        for key, value in list(settings.items()):
            if value is not None and bad_count(key, value, minimum=1) is not None:
                self._drop(bad_count(key, value, minimum=1))  # type: ignore[arg-type]
                settings[key] = None
        with self._lock:
            handle = self._pools.get(name)
            if handle is None:
                st = self._state
                if len(st.pools) >= self.limits.pools:
                    handle = None
                else:
                    state = PoolState(
                        name=name,
                        size=DEFAULT_POOL_SIZE,
                        max_size=MAX_POOL_SIZE,
                        max_queue=DEFAULT_MAX_QUEUE,
                        max_retries=DEFAULT_MAX_RETRIES,
                        created_at=self._clock(),
                        counts=count_ring(self.limits),
                        sketches=sketch_ring(self.limits),
                    )
                    state.failures = type(state.failures)(maxlen=self.limits.recent_failures)
                    st.pools[name] = state
                    handle = self._pools[name] = Pool(self, state)
            if handle is not None:
                s = handle._s
                for key, value in settings.items():
                    if value is not None:
                        setattr(s, key, value)
                s.max_size = max(s.max_size, s.size)
                s.finished_half = max(1, self.limits.finished_tasks_per_pool // 2)
                s.queue_warn_at = max(1, math.ceil(self.thresholds.queue_warning_ratio
                                                   * s.max_queue))
        if handle is None:
            self._drop(CapacityError(
                f"the registry already holds {self.limits.pools} pools; {name!r} not recorded",
                value=name, reason="too_many_pools"))
            return self._detached_pool(name)
        return handle

    def pipeline(
        self,
        pipeline_id: str,
        *,
        kind: PipelineKind | str = PipelineKind.MIGRATION,
        total_items: int | None = None,
    ) -> PipelineRun:
        """Start (or return the running) pipeline run ``pipeline_id``; its status is running.

        Never raises unless strict: a run that cannot be recorded is handed out detached.
        """
        try:
            return self._pipeline(pipeline_id, kind, total_items)
        except ObservabilityError:
            raise
        except Exception as exc:
            self._internal_error("Registry.pipeline", exc)
            rec = PipelineRec(str(pipeline_id), "migration", self._clock(), None)
            return PipelineRun(self, rec, attached=False)

    def _pipeline(
        self, pipeline_id: str, kind: PipelineKind | str, total_items: int | None
    ) -> PipelineRun:
        now = self._clock()
        tid = _TRACE_ID.get()
        parsed = parse_enum(PipelineKind, "pipeline kind", kind)
        err = bad_id("pipeline_id", pipeline_id)
        if err is None and isinstance(parsed, ObservabilityError):
            err = parsed
        if err is None and total_items is not None:
            err = bad_count("total_items", total_items)
        if err is not None:
            self._drop(err)
            pid = pipeline_id if type(pipeline_id) is str and pipeline_id else "invalid"
            kind_value = parsed.value if isinstance(parsed, PipelineKind) else "migration"
            # A detached run: its hooks work, but it is not part of the registry.
            return PipelineRun(self, PipelineRec(pid, kind_value, now, tid), attached=False)
        parsed = cast(PipelineKind, parsed)  # narrowed by the error check above
        with self._lock:
            st = self._state
            rec = st.pipelines.get(pipeline_id)
            if rec is None:
                rec = PipelineRec(pipeline_id, parsed.value, now, tid, total_items=total_items,
                                  last_progress_at=now)
                st.pipelines[pipeline_id] = rec
                st.items_total += total_items or 0
                if tid is not None:
                    st.event(now, "pipeline.started", "pipeline", pipeline_id, tid,
                             {"kind": parsed.value, "total_items": total_items})
                started = True
            else:
                started = False
        if started and gate.info:
            logger.info("pipeline.started", pipeline_id=pipeline_id, kind=parsed.value,
                        total_items=total_items)
        return PipelineRun(self, rec)

    @property
    def rollbacks(self) -> RollbackHooks:
        """The rollback safety net's hooks."""
        return self._rollbacks

    @property
    def agent_runs(self) -> AgentRunHooks:
        """The agent-run hooks (smolagents runs, their steps and outcomes)."""
        return self._agent_runs

    def tool_call(
        self,
        name: str,
        *,
        duration_s: float,
        error: str | BaseException | None = None,
        trace_id: str | None = None,
        attributes: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> None:
        """One call of a tool took ``duration_s``; ``error`` is the exception type's name.

        ``error`` may also be the exception itself (its type's name is recorded).
        ``run_id`` (from ``agent_runs.started``) counts the call on that agent run too.
        """
        now = self._clock()
        tid = trace_id or _TRACE_ID.get()
        err: ObservabilityError | None = None
        # the common case checked inline (B2: a tool call's overhead is budgeted)
        if not (type(name) is str and 0 < len(name) <= MAX_ID_LENGTH
                and type(duration_s) is float and 0.0 <= duration_s < math.inf):
            err = bad_id("tool name", name) or bad_seconds("duration_s", duration_s)
        if error is not None and not isinstance(error, str):
            error = error_name(error)
        if err is None and run_id is not None and type(run_id) is not str:
            err = bad_id("run_id", run_id)
        if err is None and attributes is not None and not isinstance(attributes, dict):
            err = InvalidValueError(f"attributes must be a dict, got {attributes!r:.80}",
                                    value=attributes)
        if err is None:
            with self._lock:
                st = self._state
                rec = st.tools.get(name)
                if rec is None:
                    if len(st.tools) >= self.limits.tools:
                        err = CapacityError(
                            f"already {self.limits.tools} tools; {name!r} not recorded",
                            value=name, reason="too_many_tools")
                    else:
                        rec = st.tools[name] = ToolRec(name, count_ring(self.limits),
                                                       sketch_ring(self.limits))
                if rec is not None:
                    rec.calls += 1
                    if not rec.cur_from <= now < rec.cur_until:
                        rec.cur_c = rec.counts.at(now)
                        rec.cur_k = rec.sketches.at(now)
                        rec.cur_from = (now // COUNT_BUCKET_S) * COUNT_BUCKET_S
                        rec.cur_until = rec.cur_from + COUNT_BUCKET_S
                    bucket = rec.cur_c
                    bucket.a += 1
                    if error is not None:
                        key = error[:64]
                        rec.errors += 1
                        bucket.b += 1
                        if key in rec.errors_by_type or len(rec.errors_by_type) < 32:
                            rec.errors_by_type[key] = rec.errors_by_type.get(key, 0) + 1
                        rec.last_error_at = now
                    rec.cur_k.x.add(duration_s)
                    if tid is not None:
                        rec.latency_hist.note(duration_s, tid, now)
                    if run_id is not None:
                        run = st.open_runs.get(run_id)
                        if run is not None:
                            run.tool_calls += 1
                            if error is not None:
                                run.tool_errors += 1
                    if tid is not None:
                        attrs = {"duration_s": duration_s, "error": error}
                        if attributes:
                            attrs.update(attributes)
                        if run_id is not None:
                            attrs["run_id"] = run_id
                        st.event(now, "tool.call", "tool", name, tid, attrs)
        if err is not None:
            self._drop(err)
        elif error is not None:
            logger.warning("tool.error", tool=name, error=error, duration_s=duration_s,
                           trace_id=tid)
        elif gate.debug:
            logger.debug("tool.call", tool=name, duration_s=duration_s, trace_id=tid)

    # -- reports ---------------------------------------------------------------------

    def metrics(self, *, trace_id: str | None = None) -> MetricsReport:
        """The ``MetricsReport`` that GET /metrics returns."""
        from . import views

        now = self._clock()
        with self._lock:
            data = views.metrics(self._state, now)
        return views.metrics_report(data, now, trace_id or _TRACE_ID.get())

    def performance(
        self, window_s: float = 300.0, *, trace_id: str | None = None
    ) -> PerformanceReport:
        """The ``PerformanceReport`` over the last ``window_s`` seconds (1..86400)."""
        from . import views

        if isinstance(window_s, bool) or not isinstance(window_s, int | float) or not (
            1 <= window_s <= MAX_WINDOW_S
        ):
            raise InvalidValueError(
                f"window_s must be a number of seconds from 1 to {MAX_WINDOW_S:g}, "
                f"got {window_s!r:.80}",
                value=window_s,
            )
        now = self._clock()
        sample = self.resources.sample()
        with self._lock:
            data = views.performance(self._state, now, float(window_s), sample)
        return views.performance_report(data, now, trace_id or _TRACE_ID.get())

    def alerts(
        self,
        state: AlertStateFilter | str = "active",
        severity: SeverityFilter | Severity | str | None = None,
    ) -> list[Alert]:
        """Evaluate the alert rules now and return the alerts in ``state``.

        Args:
            state: active (pending and firing), firing, pending, resolved or all.
            severity: only alerts of this severity (critical, warning, info); all if None.

        Raises:
            InvalidValueError: an unknown ``state`` or ``severity``.
        """
        return self._alert_engine.alerts(self, state, severity)[1]

    def alerts_report(
        self,
        state: AlertStateFilter | str = "active",
        severity: SeverityFilter | Severity | str | None = None,
        *,
        trace_id: str | None = None,
    ) -> AlertsReport:
        """The ``AlertsReport`` that GET /alerts returns: alerts and counts per severity."""
        return self._alert_engine.report(self, state, severity, trace_id or _TRACE_ID.get())

    def trace(self, trace_id: str) -> TraceReport:
        """Every recorded event that carried ``trace_id``, oldest first.

        Raises:
            UnknownEntityError: when no retained event carries it.
        """
        from . import views

        now = self._clock()
        with self._lock:
            retained = list(self._state.trace_events)  # a C-speed copy; filter unlocked
        events = [e for e in retained if e.trace_id == trace_id]
        return views.trace_report(trace_id, events, now)

    # -- internals -------------------------------------------------------------------

    def _internal_error(self, where: str, exc: Exception) -> None:
        """A hook failed unexpectedly: raise when strict, else count and log it."""
        if self.strict:
            raise exc
        with self._lock:
            dropped = self._state.dropped
            dropped["internal_error"] = dropped.get("internal_error", 0) + 1
        logger.error("event.internal_error", hook=where, error=f"{type(exc).__name__}: {exc}")

    def _drop(self, err: ObservabilityError) -> None:
        """Raise ``err`` in strict mode; otherwise count it by reason and log a warning."""
        if self.strict:
            raise err
        with self._lock:
            dropped = self._state.dropped
            dropped[err.reason] = dropped.get(err.reason, 0) + 1
        logger.warning("event.dropped", reason=err.reason, error=err.message)


_default: Registry | None = None
_default_lock = threading.Lock()


def get_registry() -> Registry:
    """The process-wide default registry, created on first use."""
    global _default
    registry = _default
    if registry is None:
        with _default_lock:
            if _default is None:
                _default = Registry()
            registry = _default
    return registry


def reset_registry(registry: Registry | None = None) -> Registry:
    """Replace the default registry (a fresh one unless given) and return it.  For tests."""
    global _default
    with _default_lock:
        _default = registry if registry is not None else Registry()
        return _default
