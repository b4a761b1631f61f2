"""smolagents adapter: ``observe_tool`` measures tools, ``instrument_agent`` measures runs.

Importing this module imports smolagents (the ``smolagents`` extra); importing
``dionysus_observability`` does not.  This is an edge: it translates tool calls, agent
steps and run outcomes into registry hooks (``registry.tool_call`` and
``registry.agent_runs``) and aggregates nothing itself.

smolagents records no per-tool timing and, when a tool raises, loses the tool's name
(``ActionStep.tool_calls`` is None for a ToolCallingAgent; a CodeAgent only ever lists
``python_interpreter``).  Only a wrapper on the tool itself can attribute latency and
errors to it::

    from smolagents import tool
    from dionysus_observability.smolagents import instrument_agent, observe_tool

    @tool
    @observe_tool
    def discover_components(path: str) -> str:
        '''Lists the components under a path.

        Args:
            path: the directory to scan.
        '''

    instrument_agent(agent, pool="daedalus", agent_id="a1")

Correlation inside a run: the run wrapper binds the run's trace (the current task's, else
the caller's, else a fresh one) and an ambient "current run" for the duration of
``agent.run()``, and observed tools read both.  A CodeAgent's local executor runs the
generated code in a worker thread that does not copy the caller's context (smolagents
1.26), so ``instrument_agent`` puts a ``ContextPropagatingExecutor`` in front of it: the
same timeout, but the code runs in a copy of the caller's context, so tool calls made
from generated code still belong to their run and trace.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import contextvars
import functools
import inspect
import reprlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import structlog
from smolagents.local_python_executor import ExecutionTimeoutError, PythonExecutor
from smolagents.memory import ActionStep, FinalAnswerStep, PlanningStep
from smolagents.tools import Tool
from smolagents.utils import AgentMaxStepsError

from ._context import _TRACE_ID, trace
from ._enums import RunOutcome
from ._log import logger
from .exceptions import InvalidValueError
from .hooks._common import bad_id
from .registry import Registry, get_registry

__all__ = [
    "DEFAULT_MAX_IO_CHARS",
    "ContextPropagatingExecutor",
    "current_run_id",
    "instrument_agent",
    "observe_tool",
]

T = TypeVar("T")

#: Longest text kept for a tool's arguments or output when ``record_io=True``.
DEFAULT_MAX_IO_CHARS = 256
#: Attribute marking a function or ``forward`` that ``observe_tool`` already wraps.
_OBSERVED = "__dionysus_observed__"
#: Attribute holding an agent's instrumentation.
_INSTRUMENTED = "_dionysus_instrumentation"


@dataclass(frozen=True, slots=True)
class _ActiveRun:
    """The run in progress in this context: what an observed tool attributes calls to."""

    registry: Registry
    run_id: str
    agent_id: str
    trace_id: str


_RUN: contextvars.ContextVar[_ActiveRun | None] = contextvars.ContextVar(
    "dionysus_agent_run", default=None
)


def current_run_id() -> str | None:
    """The id of the instrumented agent run in progress in this context, or None."""
    run = _RUN.get()
    return None if run is None else run.run_id


# -- observe_tool -----------------------------------------------------------------------


@overload
def observe_tool(target: T, /) -> T: ...


@overload
def observe_tool(
    target: None = None,
    /,
    *,
    name: str | None = None,
    registry: Registry | None = None,
    record_io: bool = False,
    max_io_chars: int = DEFAULT_MAX_IO_CHARS,
) -> Callable[[T], T]: ...


def observe_tool(
    target: Any = None,
    /,
    *,
    name: str | None = None,
    registry: Registry | None = None,
    record_io: bool = False,
    max_io_chars: int = DEFAULT_MAX_IO_CHARS,
) -> Any:
    """Measure every call of a tool: calls, errors by exception type, and latency.

    Three forms:

    * ``@observe_tool`` under ``@tool`` on a function (sync or ``async``).  The wrapper
      keeps the signature, annotations, docstring and ``__wrapped__``, so ``@tool``
      builds the same name, description and inputs as without it.
    * ``observe_tool(tool_instance)`` on an existing ``smolagents.Tool``: its
      ``forward`` is wrapped in place and the same instance is returned.
    * ``observe_tool(name=..., registry=..., record_io=...)`` returns a decorator for
      either of the above.

    The tool's own exception is re-raised unchanged (the same object, its traceback
    intact).  Latency is read on the registry's clock.  Arguments and outputs may hold
    secrets: they are recorded only with ``record_io=True``, truncated to
    ``max_io_chars`` characters, on the call's trace event.  Observing twice is a no-op.

    Args:
        target: the function or ``Tool`` to observe; omitted for the decorator form.
        name: the tool name to record; by default the function's ``__name__`` (the name
            ``@tool`` gives it) or the ``Tool``'s ``name``.
        registry: where to record; by default the registry of the instrumented agent
            running the tool, else the process default (read at call time).
        record_io: record truncated arguments and outputs.
        max_io_chars: the truncation length for ``record_io``.

    Raises:
        InvalidValueError: when the target is neither a function nor a ``Tool``
            instance, or ``name`` is not a valid id.
    """
    if isinstance(max_io_chars, bool) or not isinstance(max_io_chars, int) or max_io_chars < 1:
        raise InvalidValueError(f"max_io_chars must be a positive int, got {max_io_chars!r:.80}",
                                value=max_io_chars)
    if name is not None:
        err = bad_id("tool name", name)
        if err is not None:
            raise err

    def decorate(obj: T) -> T:
        return _observe(obj, name, registry, record_io, max_io_chars)

    if target is None:
        return decorate
    return decorate(target)


def _observe(obj: T, name: str | None, registry: Registry | None, record_io: bool,
             max_io_chars: int) -> T:
    if isinstance(obj, Tool):
        forward = obj.forward
        if not getattr(forward, _OBSERVED, False):
            tool_name = name or str(obj.name)
            err = bad_id("tool name", tool_name)
            if err is not None:
                raise err
            obj.forward = _wrap(forward, tool_name, registry, record_io, max_io_chars)
        return obj
    if isinstance(obj, type) or not callable(obj):
        raise InvalidValueError(
            "observe_tool takes a function or a smolagents Tool instance, "
            f"got {obj!r:.80}", value=obj)
    if getattr(obj, _OBSERVED, False):
        return obj
    tool_name = name or str(getattr(obj, "__name__", ""))
    err = bad_id("tool name", tool_name)
    if err is not None:
        raise err
    wrapped: T = _wrap(obj, tool_name, registry, record_io, max_io_chars)  # type: ignore[assignment]
    return wrapped


def _wrap(fn: Callable[..., Any], tool_name: str, registry: Registry | None, record_io: bool,
          max_io_chars: int) -> Callable[..., Any]:
    """The timing wrapper around ``fn``: sync or async like ``fn``."""
    fixed = registry
    clip = _clipper(max_io_chars) if record_io else None

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def observed_async(*args: Any, **kwargs: Any) -> Any:
            run = _RUN.get()
            reg = fixed if fixed is not None else (
                run.registry if run is not None else get_registry())
            clock = reg._clock
            start = clock()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                _record(reg, run, tool_name, clock() - start, exc, clip, args, kwargs, None)
                raise
            _record(reg, run, tool_name, clock() - start, None, clip, args, kwargs, result)
            return result

        setattr(observed_async, _OBSERVED, True)
        return observed_async

    @functools.wraps(fn)
    def observed(*args: Any, **kwargs: Any) -> Any:
        run = _RUN.get()
        reg = fixed if fixed is not None else (
            run.registry if run is not None else get_registry())
        clock = reg._clock
        start = clock()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            _record(reg, run, tool_name, clock() - start, exc, clip, args, kwargs, None)
            raise
        if run is None and clip is None:  # the plain call, kept short (B2)
            elapsed = clock() - start
            try:
                reg.tool_call(tool_name, duration_s=elapsed if elapsed > 0.0 else 0.0)
            except Exception as err:
                _log_failure("tool.record_failed", err, tool=tool_name)
        else:
            _record(reg, run, tool_name, clock() - start, None, clip, args, kwargs, result)
        return result

    setattr(observed, _OBSERVED, True)
    return observed


def _record(
    reg: Registry,
    run: _ActiveRun | None,
    tool_name: str,
    duration: float,
    exc: BaseException | None,
    clip: Callable[[Any], str] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    result: Any,
) -> None:
    """Hand one call to the registry; never raises into the tool."""
    try:
        attributes: dict[str, Any] | None = None
        if run is not None:
            attributes = {"agent_id": run.agent_id}
        if clip is not None:
            attributes = attributes or {}
            attributes["args"] = clip((args, kwargs) if args and kwargs else args or kwargs)
            if exc is None:
                attributes["output"] = clip(result)
        reg.tool_call(
            tool_name,
            duration_s=duration if duration > 0.0 else 0.0,
            error=None if exc is None else type(exc).__name__,
            trace_id=None if run is None else (_TRACE_ID.get() or run.trace_id),
            attributes=attributes,
            run_id=None if run is None else run.run_id,
        )
    except Exception as err:  # observability must never change what the tool does
        _log_failure("tool.record_failed", err, tool=tool_name)


def _clipper(max_chars: int) -> Callable[[Any], str]:
    """A bounded repr: cheap on huge values, cut to ``max_chars``."""
    short = reprlib.Repr()
    short.maxstring = max_chars
    short.maxother = max_chars
    short.maxlong = max_chars

    def clip(value: Any) -> str:
        text = short.repr(value)
        return text if len(text) <= max_chars else text[: max_chars - 3] + "..."

    return clip


def _log_failure(event: str, err: BaseException, **fields: Any) -> None:
    # a broken log configuration must not break the agent either
    with contextlib.suppress(Exception):
        logger.warning(event, error=f"{type(err).__name__}: {err}"[:200], **fields)


# -- CodeAgent context propagation ----------------------------------------------------------


class ContextPropagatingExecutor(PythonExecutor):  # type: ignore[misc]
    """A local Python executor that runs generated code in a copy of the caller's context.

    smolagents' ``LocalPythonExecutor`` enforces its timeout by running the code in a
    fresh worker thread without copying ``contextvars``, so the trace id and the current
    run are unset inside tools called from CodeAgent code.  This proxy takes the timeout
    over (same limit, same ``ExecutionTimeoutError``, and like smolagents it waits for the
    worker before raising) and runs the inner executor through ``Context.run``.
    Everything else is forwarded to the inner executor.

    Use ``CodeAgent(..., executor=ContextPropagatingExecutor(LocalPythonExecutor([])))``
    or let ``instrument_agent`` install it.

    Args:
        inner: the executor to wrap (its ``timeout_seconds`` moves to the proxy).
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.timeout_seconds: float | None = getattr(inner, "timeout_seconds", None)
        inner.timeout_seconds = None

    def send_tools(self, tools: dict[str, Any]) -> None:
        """Forward the agent's tools to the inner executor."""
        self.inner.send_tools(tools)

    def send_variables(self, variables: dict[str, Any]) -> None:
        """Forward the agent's variables to the inner executor."""
        self.inner.send_variables(variables)

    def __getattr__(self, name: str) -> Any:
        # only reached for attributes the proxy lacks: state, custom_tools, cleanup...
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __call__(self, code_action: str) -> Any:
        """Run ``code_action`` in a copy of the current context, within the timeout."""
        ctx = contextvars.copy_context()
        if self.timeout_seconds is None:
            return ctx.run(self.inner, code_action)
        with cf.ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(ctx.run, self.inner, code_action)
            try:
                return future.result(timeout=self.timeout_seconds)
            except cf.TimeoutError:
                raise ExecutionTimeoutError(
                    "Code execution exceeded the maximum execution time of "
                    f"{self.timeout_seconds} seconds"
                ) from None


def _propagate_context(agent: Any) -> None:
    """Put a ContextPropagatingExecutor in front of a CodeAgent's local executor."""
    executor = getattr(agent, "python_executor", None)
    if executor is None or isinstance(executor, ContextPropagatingExecutor):
        return
    if hasattr(executor, "timeout_seconds"):  # the local executor; remote ones run elsewhere
        agent.python_executor = ContextPropagatingExecutor(executor)


# -- instrument_agent ---------------------------------------------------------------------


class _Instrumentation:
    """The step callbacks and run wrapper of one instrumented agent."""

    def __init__(self, agent: Any, registry: Registry, pool: str | None, agent_id: str,
                 run: Callable[..., Any]) -> None:
        self.agent = agent
        self.registry = registry
        self.pool = pool
        self.agent_id = agent_id
        self.original_run = run
        self.signature = inspect.signature(run)
        #: the run in progress (one agent never runs concurrently with itself)
        self.current: _ActiveRun | None = None

    # step callbacks: one parameter, so smolagents calls them as cb(step)
    def on_step(self, step: Any) -> None:
        """Record an ActionStep, PlanningStep or FinalAnswerStep; never raises."""
        try:
            run = self.current
            if run is None:
                return
            if isinstance(step, ActionStep):
                kind = "action"
            elif isinstance(step, PlanningStep):
                kind = "planning"
            elif isinstance(step, FinalAnswerStep):
                kind = "final_answer"
            else:
                return
            timing = getattr(step, "timing", None)
            duration = getattr(timing, "duration", None)
            usage = getattr(step, "token_usage", None)
            error = getattr(step, "error", None)
            calls = getattr(step, "tool_calls", None) or []
            run.registry.agent_runs.step(
                run.run_id,
                kind=kind,
                number=getattr(step, "step_number", None),
                duration_s=None if duration is None else max(0.0, float(duration)),
                input_tokens=None if usage is None else usage.input_tokens,
                output_tokens=None if usage is None else usage.output_tokens,
                error=None if error is None else type(error).__name__,
                tool_calls=[str(getattr(c, "name", c)) for c in calls] or None,
            )
        except Exception as err:  # an exception here would abort agent.run()
            _log_failure("agent.callback_failed", err, agent_id=self.agent_id)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """``agent.run`` with the run recorded around it."""
        try:
            stream = bool(self.signature.bind(*args, **kwargs).arguments.get("stream", False))
        except TypeError:
            return self.original_run(*args, **kwargs)  # smolagents reports the bad call
        active = self._start()
        if active is None:
            return self.original_run(*args, **kwargs)
        if stream:
            return self._stream(active, args, kwargs)
        self.current = active
        token = _RUN.set(active)
        try:
            with trace(active.trace_id), structlog.contextvars.bound_contextvars(
                agent_id=self.agent_id, run_id=active.run_id
            ):
                result = self.original_run(*args, **kwargs)
        except BaseException as exc:
            self._finish(active, RunOutcome.ERROR, type(exc).__name__)
            raise
        finally:
            _RUN.reset(token)
        self._finish(active, self._outcome(result))
        return result

    def _start(self) -> _ActiveRun | None:
        try:
            _propagate_context(self.agent)
            start = self.registry.agent_runs.started(self.agent_id, pool=self.pool)
            return _ActiveRun(self.registry, start.run_id, self.agent_id, start.trace_id)
        except Exception as err:
            _log_failure("agent.instrumentation_failed", err, agent_id=self.agent_id)
            return None

    def _finish(self, run: _ActiveRun, outcome: RunOutcome, error: str | None = None) -> None:
        if self.current is run:
            self.current = None
        try:
            run.registry.agent_runs.finished(run.run_id, outcome=outcome, error=error)
        except Exception as err:
            _log_failure("agent.instrumentation_failed", err, agent_id=self.agent_id)

    def _outcome(self, result: Any) -> RunOutcome:
        """max_steps when the run hit its step limit (as smolagents' RunResult says)."""
        try:
            if getattr(result, "state", None) == "max_steps_error":
                return RunOutcome.MAX_STEPS
            steps = self.agent.memory.steps
            if steps and isinstance(getattr(steps[-1], "error", None), AgentMaxStepsError):
                return RunOutcome.MAX_STEPS
        except Exception as err:
            _log_failure("agent.instrumentation_failed", err, agent_id=self.agent_id)
        return RunOutcome.SUCCESS

    def _stream(self, run: _ActiveRun, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Iterator[Any]:
        # A generator runs in whatever context iterates it: give the stream its own
        # context, entered for every step, instead of setting variables across yields.
        ctx = contextvars.copy_context()
        ctx.run(_enter, run)
        try:
            inner = ctx.run(self.original_run, *args, **kwargs)
        except BaseException as exc:
            self._finish(run, RunOutcome.ERROR, type(exc).__name__)
            raise
        return self._iterate(run, ctx, inner)

    def _iterate(self, run: _ActiveRun, ctx: contextvars.Context,
                 inner: Iterator[Any]) -> Generator[Any, None, None]:
        self.current = run
        last: Any = None
        try:
            while True:
                try:
                    last = ctx.run(next, inner)
                except StopIteration:
                    break
                yield last
        except GeneratorExit:
            close = getattr(inner, "close", None)
            if close is not None:
                ctx.run(close)
            if isinstance(last, FinalAnswerStep):
                self._finish(run, self._outcome(None))
            else:
                self._finish(run, RunOutcome.ERROR, "GeneratorExit")
            raise
        except BaseException as exc:
            self._finish(run, RunOutcome.ERROR, type(exc).__name__)
            raise
        self._finish(run, self._outcome(None))


def _enter(run: _ActiveRun) -> None:
    """Bind ``run`` in the current context (used inside a stream's own context)."""
    _RUN.set(run)
    _TRACE_ID.set(run.trace_id)
    structlog.contextvars.bind_contextvars(trace_id=run.trace_id, agent_id=run.agent_id,
                                           run_id=run.run_id)


def instrument_agent(
    agent: T,
    *,
    pool: str | None = None,
    agent_id: str | None = None,
    registry: Registry | None = None,
) -> T:
    """Record every run of a smolagents agent: steps, tokens, tool calls, outcome, time.

    Adds step callbacks (``ActionStep``, ``PlanningStep``, ``FinalAnswerStep``) that
    never raise, and wraps ``agent.run`` (streaming runs too).  Each run is tied to the
    pool's agent (registered in ``pool`` when unknown), to the task that agent holds, and
    to a trace: the task's, else the caller's, else a fresh one, bound for the run so
    that observed tools and log lines carry it.  The outcome is ``success``,
    ``max_steps`` (the agent hit its step limit; smolagents does not raise then) or
    ``error`` (``run`` raised; the exception propagates unchanged).  For a CodeAgent
    with a local executor a ``ContextPropagatingExecutor`` is put in front of it, so tool
    calls from generated code are attributed to the run.  Instrumenting twice is a no-op.

    Args:
        agent: a ``MultiStepAgent`` (``ToolCallingAgent``, ``CodeAgent``...).
        pool: the coordination pool the agent belongs to, if any.
        agent_id: the agent's id in the pool; by default ``agent.name`` or a name made
            from the agent's class and identity.
        registry: where to record; the process default when None.

    Returns:
        The same agent.

    Raises:
        InvalidValueError: when ``agent`` has no ``run`` and ``step_callbacks``, or the
            ids are invalid.
    """
    existing = getattr(agent, _INSTRUMENTED, None)
    if existing is not None:
        return agent
    callbacks = getattr(agent, "step_callbacks", None)
    run = getattr(agent, "run", None)
    if callbacks is None or not hasattr(callbacks, "register") or not callable(run):
        raise InvalidValueError(
            f"instrument_agent takes a smolagents MultiStepAgent, got {agent!r:.80}",
            value=agent)
    aid = agent_id or getattr(agent, "name", None) or f"{type(agent).__name__}-{id(agent):x}"
    err = bad_id("agent_id", aid) or (bad_id("pool", pool) if pool is not None else None)
    if err is not None:
        raise err
    reg = registry if registry is not None else get_registry()
    inst = _Instrumentation(agent, reg, pool, str(aid), run)
    for step_class in (ActionStep, PlanningStep, FinalAnswerStep):
        callbacks.register(step_class, inst.on_step)

    @functools.wraps(run)
    def instrumented_run(*args: Any, **kwargs: Any) -> Any:
        return inst.run(*args, **kwargs)

    agent.run = instrumented_run  # type: ignore[attr-defined]
    setattr(agent, _INSTRUMENTED, inst)
    _propagate_context(agent)
    if pool is not None:
        reg.agent_runs.register(str(aid), pool=pool)
    return agent
