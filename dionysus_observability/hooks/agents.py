"""Agent-run hooks: one smolagents run, its steps and its outcome (``registry.agent_runs``).

The smolagents adapter (``dionysus_observability.smolagents``) calls these; any other
agent framework may too.  A run is tied to a pool's agent, to the task that agent holds
when the run starts, and to a trace: the task's trace when it has one (a task keeps the
trace it was submitted under), else the caller's, else a fresh one -- so every run has a
timeline in ``registry.trace``.  Tool calls made during the run are counted on it when
``registry.tool_call`` names the run.

Runs are as frequent as tasks, so a run's start, its steps and a successful end log at
DEBUG; a step error at INFO (the agent goes on); a run that hits its step limit at
WARNING and one that raises at ERROR.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, cast

from .._context import _TRACE_ID, new_trace_id
from .._enums import RunOutcome
from .._log import gate, logger
from .._state import AgentRunRec
from ..exceptions import InvalidValueError, ObservabilityError, UnknownEntityError
from ._common import bad_count, bad_id, bad_seconds, error_name, guarded, parse_enum

if TYPE_CHECKING:
    from ..registry import Registry

__all__ = ["STEP_KINDS", "AgentRunHooks", "RunStart"]

#: Step kinds: ``action`` and ``planning`` steps count as the run's steps; the
#: ``final_answer`` step is recorded on the timeline only.
STEP_KINDS = ("action", "planning", "final_answer")
_COUNTED = frozenset({"action", "planning"})
#: Longest error text (an exception type name) kept with a step or a run.
MAX_RUN_ERROR_LENGTH = 128
#: Most tool names listed on one step's trace event.
MAX_STEP_TOOL_NAMES = 16


class RunStart(NamedTuple):
    """What ``AgentRunHooks.started`` decided: the run's id, task and trace."""

    run_id: str
    task_id: str | None
    trace_id: str


class AgentRunHooks:
    """Hooks for agent runs: ``registry.agent_runs``.

    ``started`` opens a run and returns its id; ``step`` records a step of it;
    ``finished`` closes it with an outcome (success, max_steps, error).  Open runs and
    recent finished runs are bounded (``Limits.open_agent_runs``, ``Limits.agent_runs``).
    """

    __slots__ = ("_reg",)

    def __init__(self, registry: Registry) -> None:
        self._reg = registry

    def register(self, agent_id: str, *, pool: str) -> None:
        """Spawn ``agent_id`` in ``pool`` unless the pool already has it live."""
        try:
            reg = self._reg
            err = bad_id("agent_id", agent_id) or bad_id("pool", pool)
            if err is not None:
                reg._drop(err)
                return
            handle = reg.pool(pool)
            with reg._lock:
                known = agent_id in handle._s.agents
            if not known:
                handle.agent_spawned(agent_id)
        except ObservabilityError:
            raise
        except Exception as exc:
            self._reg._internal_error("AgentRunHooks.register", exc)

    def started(
        self,
        agent_id: str,
        *,
        pool: str | None = None,
        task_id: str | None = None,
        trace_id: str | None = None,
    ) -> RunStart:
        """Open a run of ``agent_id`` and return its id, task and trace.

        Args:
            agent_id: the agent (registered in ``pool`` when the pool lacks it).
            pool: the agent's pool, if any.
            task_id: the task the run works on; by default the one the agent holds now.
            trace_id: the caller's trace; by default the current one.  The task's own
                trace wins over it, and a fresh id is minted when neither exists.
        """
        reg = self._reg
        caller_tid = trace_id or _TRACE_ID.get()
        fallback = RunStart("invalid", task_id, caller_tid or new_trace_id())
        try:
            err = bad_id("agent_id", agent_id) or (
                bad_id("pool", pool) if pool is not None else None) or (
                bad_id("task_id", task_id) if task_id is not None else None)
            if err is not None:
                reg._drop(err)
                return fallback
            if pool is not None:
                self.register(agent_id, pool=pool)
            now = reg._clock()
            with reg._lock:
                st = reg._state
                task_tid = None
                pool_state = st.pools.get(pool) if pool is not None else None
                if pool_state is not None:
                    agent = pool_state.agents.get(agent_id)
                    if task_id is None and agent is not None:
                        task_id = agent.current_task_id
                    task = pool_state.tasks.get(task_id) if task_id is not None else None
                    if task is not None:
                        task_tid = task.trace_id
                tid = task_tid or caller_tid or new_trace_id()
                st.run_seq += 1
                run_id = f"run-{st.run_seq}"
                rec = AgentRunRec(run_id, agent_id, pool, task_id, tid, now)
                if len(st.open_runs) >= reg.limits.open_agent_runs:
                    st.open_runs.popitem(last=False)
                    st.evict("open_agent_runs")
                st.open_runs[run_id] = rec
                st.event(now, "agent.run_started", "agent", agent_id, tid,
                         {"run_id": run_id, "pool": pool, "task_id": task_id})
            if gate.debug:
                logger.debug("agent.run.started", run_id=run_id, agent_id=agent_id, pool=pool,
                            task_id=task_id, trace_id=tid)
            return RunStart(run_id, task_id, tid)
        except ObservabilityError:
            raise
        except Exception as exc:
            reg._internal_error("AgentRunHooks.started", exc)
            return fallback

    @guarded
    def step(
        self,
        run_id: str,
        *,
        kind: str = "action",
        number: int | None = None,
        duration_s: float | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        error: str | BaseException | None = None,
        tool_calls: list[str] | None = None,
    ) -> None:
        """A step of run ``run_id`` ended.

        Args:
            run_id: the id ``started`` returned.
            kind: ``action``, ``planning`` or ``final_answer`` (any case).
            number: the agent's step number.
            duration_s: how long the step took.
            input_tokens: model input tokens of the step, when known.
            output_tokens: model output tokens of the step, when known.
            error: the step's error, an exception type name (or the exception).
            tool_calls: names of the tools the step asked for.
        """
        reg = self._reg
        now = reg._clock()
        if isinstance(kind, str):
            kind = kind.lower()
        err = _bad_kind(kind) or (
            bad_seconds("duration_s", duration_s) if duration_s is not None else None) or (
            bad_count("input_tokens", input_tokens) if input_tokens is not None else None) or (
            bad_count("output_tokens", output_tokens) if output_tokens is not None else None) or (
            bad_count("number", number) if number is not None else None)
        rec: AgentRunRec | None = None
        name = error_name(error)
        err_text = name[:MAX_RUN_ERROR_LENGTH] if name is not None else None
        if err is None:
            with reg._lock:
                st = reg._state
                rec = st.open_runs.get(run_id)
                if rec is None:
                    err = _unknown_run(run_id)
                else:
                    if kind in _COUNTED:
                        rec.steps += 1
                        st.run_steps += 1
                        if err_text is not None:
                            rec.step_errors += 1
                        if duration_s is not None:
                            st.run_sketches.at(now).y.add(duration_s)
                    if input_tokens is not None:
                        rec.input_tokens += input_tokens
                        st.run_input_tokens += input_tokens
                    if output_tokens is not None:
                        rec.output_tokens += output_tokens
                        st.run_output_tokens += output_tokens
                    attrs: dict[str, Any] = {
                        "run_id": run_id, "kind": kind, "step": number,
                        "duration_s": duration_s, "input_tokens": input_tokens,
                        "output_tokens": output_tokens, "error": err_text,
                    }
                    if tool_calls:
                        attrs["tool_calls"] = [str(t)[:64] for t in
                                               tool_calls[:MAX_STEP_TOOL_NAMES]]
                    st.event(now, "agent.step", "agent", rec.agent_id, rec.trace_id, attrs)
        if err is not None:
            reg._drop(err)
        elif rec is not None:
            if err_text is not None and gate.info:
                logger.info("agent.step.error", run_id=run_id, agent_id=rec.agent_id,
                               kind=kind, step=number, error=err_text, trace_id=rec.trace_id)
            elif gate.debug:
                logger.debug("agent.step", run_id=run_id, agent_id=rec.agent_id, kind=kind,
                             step=number, duration_s=duration_s, trace_id=rec.trace_id)

    @guarded
    def finished(
        self,
        run_id: str,
        *,
        outcome: RunOutcome | str,
        duration_s: float | None = None,
        error: str | BaseException | None = None,
    ) -> None:
        """Run ``run_id`` ended with ``outcome`` (success, max_steps or error).

        Args:
            run_id: the id ``started`` returned.
            outcome: how it ended.
            duration_s: how long it took; by default the registry clock's time since
                ``started``.
            error: for an ``error`` outcome, the exception type name (or the exception).
        """
        reg = self._reg
        now = reg._clock()
        parsed = parse_enum(RunOutcome, "run outcome", outcome)
        err = parsed if isinstance(parsed, ObservabilityError) else (
            bad_seconds("duration_s", duration_s) if duration_s is not None else None)
        rec: AgentRunRec | None = None
        if err is None:
            parsed = cast(RunOutcome, parsed)  # narrowed by the error check above
            with reg._lock:
                st = reg._state
                rec = st.open_runs.pop(run_id, None)
                if rec is None:
                    err = _unknown_run(run_id)
                else:
                    took = duration_s if duration_s is not None else max(0.0,
                                                                         now - rec.started_at)
                    rec.outcome = parsed.value
                    rec.finished_at = now
                    rec.duration_s = took
                    name = error_name(error)
                    rec.error = name[:MAX_RUN_ERROR_LENGTH] if name is not None else None
                    runs = st.finished_runs
                    if len(runs) == runs.maxlen:
                        st.evict("agent_runs")
                    runs.append(rec)
                    st.runs_by_outcome[rec.outcome] = st.runs_by_outcome.get(rec.outcome, 0) + 1
                    st.run_tool_calls += rec.tool_calls
                    st.run_tool_errors += rec.tool_errors
                    bucket = st.run_counts.at(now)
                    if parsed is RunOutcome.SUCCESS:
                        bucket.a += 1
                    elif parsed is RunOutcome.ERROR:
                        bucket.b += 1
                    else:
                        bucket.c += 1
                    st.run_sketches.at(now).x.add(took)
                    st.event(now, "agent.run_finished", "agent", rec.agent_id, rec.trace_id, {
                        "run_id": run_id, "outcome": rec.outcome, "duration_s": took,
                        "steps": rec.steps, "input_tokens": rec.input_tokens,
                        "output_tokens": rec.output_tokens, "tool_calls": rec.tool_calls,
                        "tool_errors": rec.tool_errors, "error": rec.error,
                        "task_id": rec.task_id,
                    })
        if err is not None:
            reg._drop(err)
        elif rec is not None:
            fields = {"run_id": run_id, "agent_id": rec.agent_id, "pool": rec.pool,
                      "task_id": rec.task_id, "outcome": rec.outcome,
                      "duration_s": rec.duration_s, "steps": rec.steps,
                      "tool_calls": rec.tool_calls, "tool_errors": rec.tool_errors,
                      "input_tokens": rec.input_tokens, "output_tokens": rec.output_tokens,
                      "trace_id": rec.trace_id}
            if parsed is RunOutcome.ERROR:
                logger.error("agent.run.failed", error=rec.error, **fields)
            elif parsed is RunOutcome.MAX_STEPS:
                logger.warning("agent.run.max_steps", **fields)
            elif gate.debug:
                logger.debug("agent.run.finished", **fields)


def _bad_kind(kind: Any) -> ObservabilityError | None:
    if kind in STEP_KINDS:
        return None
    return InvalidValueError(
        f"step kind must be one of {', '.join(STEP_KINDS)}; got {kind!r:.80}", value=kind)


def _unknown_run(run_id: Any) -> ObservabilityError:
    if type(run_id) is not str:
        return bad_id("run_id", run_id)  # type: ignore[return-value]
    return UnknownEntityError(f"no open agent run {run_id!r} (finished, evicted or never "
                              "started)", value=run_id, reason="unknown_run")
