"""Spec 020 coordination-pool hooks: agents, the task queue, retries and rejections."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from .._context import _TRACE_ID
from .._enums import AgentState, TaskStatus
from .._lock import acquire_contended
from .._log import gate, logger
from .._state import (
    COUNT_BUCKET_S,
    SKETCH_BUCKET_S,
    AgentRec,
    FailureRec,
    PoolState,
    SketchPair,
    TaskRec,
)
from ..exceptions import (
    CapacityError,
    DuplicateEventError,
    InvalidTransitionError,
    InvalidValueError,
    ObservabilityError,
    UnknownEntityError,
)
from ._common import (
    MAX_ID_LENGTH,
    MAX_TYPE_LENGTH,
    bad_fraction,
    bad_id,
    error_text,
    guarded,
    parse_enum,
    plain_str,
)

if TYPE_CHECKING:
    from ..registry import Registry

__all__ = ["KNOWN_TASK_TYPES", "Pool"]

#: Spec 020 task types; others are accepted up to ``Limits.task_types`` distinct names.
KNOWN_TASK_TYPES = ("discovery", "migration", "heartbeat", "ingest", "research", "general")
#: The name unknown task types are folded into once the cap is reached.
OTHER_TASK_TYPE = "other"
_BUSY = (AgentState.ANALYZING, AgentState.EXECUTING)
# Allowed explicit agent_state transitions (Spec 020); any -> degraded is always allowed.
_ALLOWED: dict[AgentState, frozenset[AgentState]] = {
    AgentState.IDLE: frozenset({AgentState.ANALYZING}),
    AgentState.ANALYZING: frozenset({AgentState.EXECUTING, AgentState.IDLE}),
    AgentState.EXECUTING: frozenset({AgentState.IDLE}),
    AgentState.DEGRADED: frozenset({AgentState.IDLE}),
}


def _advance(s: PoolState, now: float) -> None:
    """Point the pool's current-bucket cache at the buckets holding ``now``."""
    s.cur_c = s.counts.at(now)
    s.cur_k = s.sketches.at(now)
    start = (now // COUNT_BUCKET_S) * COUNT_BUCKET_S
    s.cur_k_from = (now // SKETCH_BUCKET_S) * SKETCH_BUCKET_S
    s.cur_from = start
    # Cache only the newest buckets: a write to an older one must go through Ring.at,
    # which invalidates the ring's cached merges.
    s.cur_until = start + COUNT_BUCKET_S if s.sketches.current_start() <= now else start


def _close_busy(agent: AgentRec, now: float) -> None:
    """Book the agent's open busy interval into the pool's sketch buckets."""
    start = agent.busy_since
    agent.busy_since = None
    if start is None or now <= start:
        return
    ring = agent.busy
    bucket = ring.at(now)
    if start >= ring.current_start():
        busy = bucket.busy
        busy[agent.id] = busy.get(agent.id, 0.0) + (now - start)
    else:
        agent_id = agent.id

        def add(b: SketchPair, seconds: float) -> None:
            b.busy[agent_id] = b.busy.get(agent_id, 0.0) + seconds

        ring.add_interval(start, now, add)


def _set_state(agent: AgentRec, new: AgentState, now: float) -> None:
    """Move an agent to ``new``, keeping its time-weighted busy accounting."""
    was_busy = agent.busy_since is not None
    is_busy = new in _BUSY
    if was_busy and not is_busy:
        _close_busy(agent, now)
    elif is_busy and not was_busy:
        agent.busy_since = now
    agent.state = new
    agent.state_since = now


class Pool:
    """The hooks of one coordination pool.  Get one with ``registry.pool(name)``.

    Every hook validates its input, stamps the time and the trace id, and updates the
    registry; none raises unless the registry is strict.  Tasks keep the trace id they
    were submitted under, so later hooks called from other threads still belong to it.
    """

    __slots__ = ("_reg", "_s", "name")

    def __init__(self, registry: Registry, state: PoolState) -> None:
        self._reg = registry
        self._s = state
        self.name = state.name

    def __repr__(self) -> str:
        return f"<Pool {self.name!r}>"

    # -- agents ----------------------------------------------------------------------

    @guarded
    def agent_spawned(
        self,
        agent_id: str,
        *,
        context_window_id: str | None = None,
        tool_session_id: str | None = None,
        memory_handle_id: str | None = None,
    ) -> None:
        """An agent joined the pool, idle, with its isolated context ids."""
        reg = self._reg
        now = reg._clock()
        tid = _TRACE_ID.get()
        err = bad_id("agent_id", agent_id)
        for what, value in (
            ("context_window_id", context_window_id),
            ("tool_session_id", tool_session_id),
            ("memory_handle_id", memory_handle_id),
        ):
            if err is None and value is not None:
                err = bad_id(what, value)
        if err is None:
            with reg._lock:
                err = self._spawn(
                    agent_id, now, context_window_id, tool_session_id, memory_handle_id
                )
                if err is None and tid is not None:
                    reg._state.event(
                        now, "agent.spawned", "agent", agent_id, tid, {"pool": self.name}
                    )
        if err is not None:
            reg._drop(err)
        elif gate.info:
            logger.info("agent.spawned", pool=self.name, agent_id=agent_id)

    def _spawn(
        self, agent_id: str, now: float, cw: str | None, ts: str | None, mh: str | None
    ) -> ObservabilityError | None:
        s = self._s
        if agent_id in s.agents:
            return DuplicateEventError(
                f"agent {agent_id!r} is already live in pool {self.name!r}", value=agent_id
            )
        limit = self._reg.limits.agents_per_pool
        if len(s.agents) >= limit:
            return CapacityError(
                f"pool {self.name!r} already holds {limit} live agents; {agent_id!r} not recorded",
                value=agent_id,
                reason="too_many_agents",
            )
        s.retired.pop(agent_id, None)
        s.agents[agent_id] = AgentRec(
            id=agent_id,
            pool=self.name,
            spawned_at=now,
            context_window_id=cw,
            tool_session_id=ts,
            memory_handle_id=mh,
            busy=s.sketches,
            state_since=now,
        )
        return None

    @guarded
    def agent_health(
        self,
        agent_id: str,
        *,
        memory: float | None = None,
        cpu: float | None = None,
    ) -> None:
        """An agent's health sample: memory and CPU as fractions 0.0-1.0."""
        reg = self._reg
        now = reg._clock()
        tid = _TRACE_ID.get()
        err = bad_id("agent_id", agent_id) or bad_fraction("memory", memory) or bad_fraction(
            "cpu", cpu
        )
        if err is None:
            th = reg.thresholds
            with reg._lock:
                agent = self._s.agents.get(agent_id)
                if agent is None:
                    err = self._unknown_agent(agent_id)
                else:
                    if memory is not None:
                        agent.memory = float(memory)
                        _levels(agent.memory_level_since, memory, th.agent_memory_warning,
                                th.agent_memory_critical, now)
                    if cpu is not None:
                        agent.cpu = float(cpu)
                        _levels(agent.cpu_level_since, cpu, th.agent_cpu_warning,
                                th.agent_cpu_critical, now)
                    agent.health_at = now
                    agent.health_trace_id = tid
                    if tid is not None:
                        reg._state.event(now, "agent.health", "agent", agent_id, tid,
                                         {"memory": memory, "cpu": cpu})
        if err is not None:
            reg._drop(err)
        elif gate.debug:
            logger.debug("agent.health", pool=self.name, agent_id=agent_id, memory=memory, cpu=cpu)

    @guarded
    def agent_state(self, agent_id: str, state: AgentState | str) -> None:
        """An explicit agent state change (Spec 020 transitions; any -> degraded)."""
        reg = self._reg
        now = reg._clock()
        tid = _TRACE_ID.get()
        new = parse_enum(AgentState, "agent state", state)
        err = bad_id("agent_id", agent_id) or (new if isinstance(new, ObservabilityError) else None)
        old: AgentState | None = None
        if err is None:
            new = cast(AgentState, new)  # narrowed by the error check above
            with reg._lock:
                agent = self._s.agents.get(agent_id)
                if agent is None:
                    err = self._unknown_agent(agent_id)
                else:
                    old = agent.state
                    if new is not old:
                        if new is AgentState.DEGRADED or new in _ALLOWED[old]:
                            _set_state(agent, new, now)
                            if tid is not None:
                                reg._state.event(now, "agent.state", "agent", agent_id, tid,
                                                 {"from": old.value, "to": new.value})
                        else:
                            err = InvalidTransitionError(
                                f"agent {agent_id!r} cannot go from {old.value} to {new.value}",
                                value=new.value,
                            )
        if err is not None:
            reg._drop(err)
        elif old is not new:
            if new is AgentState.DEGRADED:
                logger.warning("agent.degraded", pool=self.name, agent_id=agent_id)
            elif gate.info:
                logger.info("agent.state", pool=self.name, agent_id=agent_id, state=str(new))

    @guarded
    def agent_retired(self, agent_id: str) -> None:
        """An agent left the pool."""
        reg = self._reg
        now = reg._clock()
        tid = _TRACE_ID.get()
        err = bad_id("agent_id", agent_id)
        if err is None:
            with reg._lock:
                s = self._s
                agent = s.agents.pop(agent_id, None)
                if agent is None:
                    err = self._unknown_agent(agent_id)
                else:
                    _close_busy(agent, now)
                    agent.retired_at = now
                    s.retired[agent_id] = agent
                    if len(s.retired) > reg.limits.retired_agents:
                        s.retired.popitem(last=False)
                        reg._state.evict("agents")
                    if tid is not None:
                        reg._state.event(now, "agent.retired", "agent", agent_id, tid)
        if err is not None:
            reg._drop(err)
        elif gate.info:
            logger.info("agent.retired", pool=self.name, agent_id=agent_id)

    # -- tasks -----------------------------------------------------------------------

    def task_submitted(self, task_id: str, task_type: str = "general") -> None:
        """A task entered the queue (pending).  It keeps the current trace id."""
        try:
            reg = self._reg
            now = reg._clock()
            tid = _TRACE_ID.get()
            err = None
            if type(task_type) is not str:
                task_type = plain_str(task_type)
            if type(task_id) is not str or not 0 < len(task_id) <= MAX_ID_LENGTH:
                err = bad_id("task_id", task_id)
            elif type(task_type) is not str or not 0 < len(task_type) <= MAX_TYPE_LENGTH:
                err = bad_type(task_type)
            else:
                s = self._s
                mutex = reg._lock.mutex
                if not mutex.acquire(False):
                    acquire_contended(reg._lock)
                try:
                    tasks = s.tasks
                    if task_id in tasks or task_id in s.finished or task_id in s.finished_old:
                        err = DuplicateEventError(
                            f"task {task_id!r} was already submitted to pool {self.name!r}",
                            value=task_id,
                        )
                    else:
                        ttype = s.type_names.get(task_type) or self._type(task_type)
                        tasks[task_id] = TaskRec(task_id, ttype, now, tid, TaskStatus.PENDING, now)
                        s.pending += 1
                        s.submitted_by_type[ttype] = s.submitted_by_type.get(ttype, 0) + 1
                        if s.queue_over_since is None and s.pending >= s.queue_warn_at:
                            s.queue_over_since = now
                        if tid is not None:
                            reg._state.event(now, "task.submitted", "task", task_id, tid,
                                             {"pool": self.name, "task_type": ttype})
                finally:
                    mutex.release()
            if err is not None:
                reg._drop(err)
            elif gate.debug:
                logger.debug("task.submitted", pool=self.name, task_id=task_id, task_type=task_type)
        except ObservabilityError:
            raise
        except Exception as exc:  # never break the observed program
            self._reg._internal_error("Pool.task_submitted", exc)

    @guarded
    def task_rejected(self, task_type: str = "general", reason: str = "queue_full") -> None:
        """A task was refused at the door (Spec 020: the 101st pending task, HTTP 429)."""
        reg = self._reg
        now = reg._clock()
        tid = _TRACE_ID.get()
        task_type = plain_str(task_type)
        err = bad_type(task_type) or bad_id("reason", plain_str(reason))
        if err is None:
            with reg._lock:
                s = self._s
                ttype = self._type(task_type)
                s.rejected += 1
                s.rejected_by_type[ttype] = s.rejected_by_type.get(ttype, 0) + 1
                key = reason[:64]
                if key in s.rejected_by_reason or len(s.rejected_by_reason) < 32:
                    s.rejected_by_reason[key] = s.rejected_by_reason.get(key, 0) + 1
                s.last_rejected_at = now
                s.counts.at(now).d += 1
                if tid is not None:
                    reg._state.event(now, "task.rejected", "pool", self.name, tid,
                                     {"task_type": ttype, "reason": key})
        if err is not None:
            reg._drop(err)
        else:
            logger.warning("task.rejected", pool=self.name, task_type=task_type, reason=reason)

    def task_assigned(self, task_id: str, agent_id: str) -> None:
        """An idle agent picked the task up: task in progress, agent analyzing."""
        try:
            reg = self._reg
            now = reg._clock()
            err = None
            tid = None
            mutex = reg._lock.mutex
            if not mutex.acquire(False):
                acquire_contended(reg._lock)
            try:
                s = self._s
                task = s.tasks.get(task_id) if type(task_id) is str else None
                agent = s.agents.get(agent_id) if type(agent_id) is str else None
                if task is None:
                    err = self._unknown_task(task_id)
                elif agent is None:
                    err = self._unknown_agent(agent_id)
                elif task.status is not TaskStatus.PENDING:
                    err = InvalidTransitionError(
                        f"task {task_id!r} is {task.status.value}, not pending; cannot assign it",
                        value=task_id,
                    )
                elif agent.state is not AgentState.IDLE:
                    err = InvalidTransitionError(
                        f"agent {agent_id!r} is {agent.state.value}, not idle; cannot assign "
                        f"task {task_id!r} to it",
                        value=agent_id,
                    )
                else:
                    task.status = TaskStatus.IN_PROGRESS
                    task.agent_id = agent_id
                    task.assigned_at = now
                    task.attempts += 1
                    s.pending -= 1
                    s.in_progress += 1
                    if s.queue_over_since is not None and s.pending < s.queue_warn_at:
                        s.queue_over_since = None
                    if not s.cur_from <= now < s.cur_until:
                        _advance(s, now)
                    s.cur_k.y.add(now - task.queued_at)
                    if task.trace_id is not None:
                        s.assignment_hist.note(now - task.queued_at, task.trace_id, now)
                    if agent.last_task_id is not None:
                        agent.context_switches += 1
                    agent.current_task_id = task_id
                    agent.last_task_id = task_id
                    agent.state = AgentState.ANALYZING
                    agent.state_since = now
                    agent.busy_since = now
                    tid = task.trace_id or _TRACE_ID.get()
                    if tid is not None:
                        reg._state.event(now, "task.assigned", "task", task_id, tid,
                                         {"pool": self.name, "agent_id": agent_id,
                                          "attempt": task.attempts})
            finally:
                mutex.release()
            if err is not None:
                reg._drop(err)
            elif gate.debug:
                logger.debug("task.assigned", pool=self.name, task_id=task_id, agent_id=agent_id,
                             trace_id=tid)
        except ObservabilityError:
            raise
        except Exception as exc:  # never break the observed program
            self._reg._internal_error("Pool.task_assigned", exc)

    @guarded
    def task_started(self, task_id: str) -> None:
        """The agent started executing the task (optional): agent executing."""
        reg = self._reg
        now = reg._clock()
        err = None
        tid = None
        with reg._lock:
            s = self._s
            task = s.tasks.get(task_id) if type(task_id) is str else None
            if task is None:
                err = self._unknown_task(task_id)
            elif task.status is not TaskStatus.IN_PROGRESS or task.started_at is not None:
                err = InvalidTransitionError(
                    f"task {task_id!r} is {task.status.value}"
                    f"{' and already started' if task.started_at is not None else ''}; "
                    "cannot start it",
                    value=task_id,
                )
            else:
                task.started_at = now
                agent = s.agents.get(task.agent_id)  # type: ignore[arg-type]
                if agent is not None and agent.state is AgentState.ANALYZING:
                    agent.state = AgentState.EXECUTING
                    agent.state_since = now
                tid = task.trace_id or _TRACE_ID.get()
                if tid is not None:
                    reg._state.event(now, "task.started", "task", task_id, tid,
                                     {"pool": self.name, "agent_id": task.agent_id})
        if err is not None:
            reg._drop(err)
        elif gate.debug:
            logger.debug("task.started", pool=self.name, task_id=task_id, trace_id=tid)

    def task_completed(self, task_id: str) -> None:
        """The task succeeded: agent idle again.  A second completion counts once."""
        try:
            reg = self._reg
            now = reg._clock()
            err = None
            tid = None
            mutex = reg._lock.mutex
            if not mutex.acquire(False):
                acquire_contended(reg._lock)
            try:
                s = self._s
                task = s.tasks.get(task_id) if type(task_id) is str else None
                if task is None:
                    err = self._unknown_task(task_id)
                elif task.status is not TaskStatus.IN_PROGRESS:
                    err = InvalidTransitionError(
                        f"task {task_id!r} is {task.status.value}; only a task in progress can "
                        "complete",
                        value=task_id,
                    )
                else:
                    del s.tasks[task_id]
                    s.in_progress -= 1
                    s.completed += 1
                    finished = s.finished
                    finished[task_id] = TaskStatus.COMPLETED
                    if len(finished) >= s.finished_half:
                        self._rotate_finished()
                    if not s.cur_from <= now < s.cur_until:
                        _advance(s, now)
                    s.cur_c.a += 1
                    duration = now - task.assigned_at  # type: ignore[operator]
                    s.cur_k.x.add(duration)
                    if task.trace_id is not None:
                        s.duration_hist.note(duration, task.trace_id, now)
                    agent = s.agents.get(task.agent_id)  # type: ignore[arg-type]
                    if agent is not None:
                        agent.tasks_completed += 1
                        agent.task_time_s += duration
                        if agent.current_task_id == task_id:
                            agent.current_task_id = None
                            start = agent.busy_since
                            if start is not None:
                                agent.state = AgentState.IDLE
                                agent.state_since = now
                                if start >= s.cur_k_from:  # the usual case: one bucket
                                    agent.busy_since = None
                                    busy = s.cur_k.busy
                                    busy[agent.id] = busy.get(agent.id, 0.0) + (now - start)
                                else:
                                    _close_busy(agent, now)
                    tid = task.trace_id or _TRACE_ID.get()
                    if tid is not None:
                        reg._state.event(now, "task.completed", "task", task_id, tid,
                                         {"pool": self.name, "agent_id": task.agent_id,
                                          "duration_s": duration})
            finally:
                mutex.release()
            if err is not None:
                reg._drop(err)
            elif gate.debug:
                logger.debug("task.completed", pool=self.name, task_id=task_id, trace_id=tid)
        except ObservabilityError:
            raise
        except Exception as exc:  # never break the observed program
            self._reg._internal_error("Pool.task_completed", exc)

    @guarded
    def task_failed(
        self, task_id: str, error: str | BaseException | None = None, retrying: bool | None = None
    ) -> None:
        """An attempt failed.  ``retrying=None``: retry while attempts < ``max_retries``.

        A retried task goes back to pending (counted in ``retries``); otherwise it ends
        FAILED.  A pending task that fails (never assigned) ends FAILED at once.
        """
        reg = self._reg
        now = reg._clock()
        err: ObservabilityError | None = None
        tid = None
        final = False
        text = error_text(error)
        if retrying is not None and not isinstance(retrying, bool):
            err = InvalidValueError(f"retrying must be a bool or None, got {retrying!r:.80}",
                                    value=retrying)
        else:
            with reg._lock:
                s = self._s
                task = s.tasks.get(task_id) if type(task_id) is str else None
                if task is None:
                    err = self._unknown_task(task_id)
                else:
                    tid = task.trace_id or _TRACE_ID.get()
                    agent = s.agents.get(task.agent_id)  # type: ignore[arg-type]
                    if task.status is TaskStatus.PENDING:
                        s.pending -= 1
                        final = True
                    else:
                        s.in_progress -= 1
                        if agent is not None:
                            agent.tasks_failed += 1
                            self._release(agent, task_id, now)
                        retry = retrying if retrying is not None else (
                            task.attempts < s.max_retries)
                        if retry:
                            task.status = TaskStatus.PENDING
                            task.queued_at = now
                            task.agent_id = None
                            task.assigned_at = None
                            task.started_at = None
                            s.pending += 1
                            s.retries += 1
                            s.counts.at(now).c += 1
                            if s.queue_over_since is None and s.pending >= s.queue_warn_at:
                                s.queue_over_since = now
                        else:
                            final = True
                            s.sketches.at(now).x.add(now - task.assigned_at)  # type: ignore[operator]
                            if tid is not None:
                                s.duration_hist.note(now - task.assigned_at, tid, now)  # type: ignore[operator]
                    if final:
                        if s.queue_over_since is not None and s.pending < s.queue_warn_at:
                            s.queue_over_since = None
                        del s.tasks[task_id]
                        s.failed += 1
                        self._finish(task_id, TaskStatus.FAILED)
                        s.counts.at(now).b += 1
                        s.failures.append(
                            FailureRec(now, task_id, task.type, text, tid, task.agent_id)
                        )
                    if tid is not None:
                        reg._state.event(now, "task.failed", "task", task_id, tid,
                                         {"pool": self.name, "agent_id": task.agent_id,
                                          "error": text, "final": final,
                                          "attempt": task.attempts})
        if err is not None:
            reg._drop(err)
        elif final:
            logger.error("task.failed", pool=self.name, task_id=task_id, error=text, trace_id=tid)
        else:
            logger.warning("task.retrying", pool=self.name, task_id=task_id, error=text,
                           trace_id=tid)

    @guarded
    def task_cancelled(self, task_id: str) -> None:
        """The task was cancelled while pending or in progress."""
        reg = self._reg
        now = reg._clock()
        err = None
        tid = None
        with reg._lock:
            s = self._s
            task = s.tasks.pop(task_id, None) if type(task_id) is str else None
            if task is None:
                err = self._unknown_task(task_id)
            else:
                if task.status is TaskStatus.PENDING:
                    s.pending -= 1
                    if s.queue_over_since is not None and s.pending < s.queue_warn_at:
                        s.queue_over_since = None
                else:
                    s.in_progress -= 1
                    agent = s.agents.get(task.agent_id)  # type: ignore[arg-type]
                    if agent is not None:
                        self._release(agent, task_id, now)
                s.cancelled += 1
                self._finish(task_id, TaskStatus.CANCELLED)
                tid = task.trace_id or _TRACE_ID.get()
                if tid is not None:
                    reg._state.event(now, "task.cancelled", "task", task_id, tid,
                                     {"pool": self.name})
        if err is not None:
            reg._drop(err)
        elif gate.info:
            logger.info("task.cancelled", pool=self.name, task_id=task_id, trace_id=tid)

    # -- helpers (called under the lock) ----------------------------------------------

    def _type(self, task_type: str) -> str:
        cached = self._s.type_names.get(task_type)
        if cached is not None:
            return cached
        ttype = task_type.lower()
        known = self._s.submitted_by_type
        if ttype not in known and ttype not in KNOWN_TASK_TYPES and (
            len(known) >= self._reg.limits.task_types
        ):
            ttype = OTHER_TASK_TYPE
        if len(self._s.type_names) < 4 * self._reg.limits.task_types:
            self._s.type_names[task_type] = ttype
        return ttype

    def _finish(self, task_id: str, status: TaskStatus) -> None:
        finished = self._s.finished
        finished[task_id] = status
        if len(finished) >= self._s.finished_half:
            self._rotate_finished()

    def _rotate_finished(self) -> None:
        s = self._s
        if s.finished_old:
            self._reg._state.evict("tasks", len(s.finished_old))
        s.finished_old = s.finished
        s.finished = {}

    @staticmethod
    def _release(agent: AgentRec, task_id: str, now: float) -> None:
        if agent.current_task_id == task_id:
            agent.current_task_id = None
            if agent.state in _BUSY:
                _set_state(agent, AgentState.IDLE, now)

    def _unknown_task(self, task_id: Any) -> ObservabilityError:
        if type(task_id) is not str:
            return bad_id("task_id", task_id)  # type: ignore[return-value]
        status = self._s.finished.get(task_id) or self._s.finished_old.get(task_id)
        if status is not None:
            return DuplicateEventError(
                f"task {task_id!r} already ended {status.value} in pool {self.name!r}; "
                "the repeated event is counted once",
                value=task_id,
            )
        return UnknownEntityError(
            f"pool {self.name!r} holds no task {task_id!r}", value=task_id, reason="unknown_task"
        )

    def _unknown_agent(self, agent_id: Any) -> ObservabilityError:
        if type(agent_id) is not str:
            return bad_id("agent_id", agent_id)  # type: ignore[return-value]
        return UnknownEntityError(
            f"pool {self.name!r} has no live agent {agent_id!r}",
            value=agent_id,
            reason="unknown_agent",
        )


def bad_type(task_type: Any) -> ObservabilityError | None:
    """An error unless ``task_type`` is a non-empty string of at most MAX_TYPE_LENGTH."""
    if type(task_type) is str and 0 < len(task_type) <= MAX_TYPE_LENGTH:
        return None
    return InvalidValueError(
        f"task_type must be a non-empty string of at most {MAX_TYPE_LENGTH} characters, "
        f"got {task_type!r:.80}",
        value=task_type,
        reason="invalid_id",
    )


def _levels(since: dict[str, float], value: float, warning: float, critical: float,
            now: float) -> None:
    """Stamp when a value first crossed the warning / critical level; clear below it."""
    for level, threshold in (("warning", warning), ("critical", critical)):
        if value >= threshold:
            since.setdefault(level, now)
        else:
            since.pop(level, None)
