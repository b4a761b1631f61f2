"""The smolagents adapter: observe_tool and instrument_agent with real agents.

Every agent here is a real smolagents ``ToolCallingAgent`` or ``CodeAgent`` driven by a
scripted offline ``Model``.  Tools advance the fake clock, so tool latencies and run
durations are exact.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import io
import json
import logging
import random
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _server import serve
from conftest import FakeClock
from fastapi import FastAPI
from smolagents import CodeAgent, Model, Tool, ToolCallingAgent, tool
from smolagents.local_python_executor import LocalPythonExecutor
from smolagents.memory import FinalAnswerStep
from smolagents.models import (
    ChatMessage,
    ChatMessageToolCall,
    ChatMessageToolCallFunction,
    MessageRole,
)
from smolagents.monitoring import LogLevel, TokenUsage
from smolagents.utils import AgentGenerationError

import dionysus_observability as obs
from dionysus_observability.hooks.agents import AgentRunHooks
from dionysus_observability.logging import reset_logging
from dionysus_observability.smolagents import (
    ContextPropagatingExecutor,
    current_run_id,
    instrument_agent,
    observe_tool,
)

# smolagents warns about any decorator under @tool (serialisation for remote executors).
pytestmark = pytest.mark.filterwarnings("ignore:Function '.*' has decorators other than @tool")

#: Seconds each tool moves the fake clock: its exact latency.
DOUBLE_S = 0.25
EXPLODE_S = 0.5
#: Tokens the scripted model reports per action step.
STEP_IN, STEP_OUT = 100, 7
CODE_IN, CODE_OUT = 200, 11
PLAN_IN, PLAN_OUT = 50, 13


class ScriptedModel(Model):  # type: ignore[misc]
    """A smolagents Model that replays canned replies; no network.

    The max-steps final-answer call (no stop sequences, no tools) is answered out of
    band; ``fail_with`` makes ``generate`` raise instead.
    """

    def __init__(self, script: list[ChatMessage], fail_with: Exception | None = None) -> None:
        super().__init__(model_id="scripted")
        self.script = list(script)
        self.fail_with = fail_with

    def generate(self, messages: list[Any], stop_sequences: list[str] | None = None,
                 response_format: Any = None, tools_to_call_from: Any = None,
                 **kwargs: Any) -> ChatMessage:
        if self.fail_with is not None:
            raise self.fail_with
        if stop_sequences == ["<end_plan>"]:
            return ChatMessage(role=MessageRole.ASSISTANT, content="1. double\n<end_plan>",
                               token_usage=TokenUsage(input_tokens=PLAN_IN,
                                                      output_tokens=PLAN_OUT))
        if stop_sequences is None and tools_to_call_from is None:
            return ChatMessage(role=MessageRole.ASSISTANT, content="gave up",
                               token_usage=TokenUsage(input_tokens=1, output_tokens=1))
        return self.script.pop(0)


def call(name: str, args: dict[str, Any], call_id: str) -> ChatMessage:
    """A ToolCallingAgent reply calling one tool."""
    return calls([(name, args)], call_id)


def calls(pairs: list[tuple[str, dict[str, Any]]], call_id: str) -> ChatMessage:
    """A ToolCallingAgent reply calling several tools at once (run in parallel)."""
    return ChatMessage(
        role=MessageRole.ASSISTANT, content=None,
        token_usage=TokenUsage(input_tokens=STEP_IN, output_tokens=STEP_OUT),
        tool_calls=[ChatMessageToolCall(
            id=f"{call_id}-{i}", type="function",
            function=ChatMessageToolCallFunction(name=name, arguments=args))
            for i, (name, args) in enumerate(pairs)])


def code(source: str) -> ChatMessage:
    """A CodeAgent reply running ``source``."""
    return ChatMessage(role=MessageRole.ASSISTANT,
                       content=f"Thought: next\n<code>\n{source}\n</code>",
                       token_usage=TokenUsage(input_tokens=CODE_IN, output_tokens=CODE_OUT))


class ToolFailure(ValueError):
    """What the failing tool raises."""


def make_tools(clock: FakeClock, seen: list[tuple[str, str | None, str | None]] | None = None
               ) -> tuple[Any, Any]:
    """Two observed @tool functions: ``double`` works, ``explode`` raises ToolFailure."""

    @tool
    @observe_tool
    def double(x: int) -> int:
        """Doubles a number.

        Args:
            x: the number to double.
        """
        clock.advance(DOUBLE_S)
        if seen is not None:
            seen.append(("double", obs.current_trace_id(), current_run_id()))
        return 2 * x

    @tool
    @observe_tool
    def explode(reason: str) -> str:
        """Always fails.

        Args:
            reason: why it fails.
        """
        clock.advance(EXPLODE_S)
        if seen is not None:
            seen.append(("explode", obs.current_trace_id(), current_run_id()))
        raise ToolFailure(reason)

    return double, explode


def tool_calling_agent(tools: list[Any], script: list[ChatMessage], **kw: Any) -> Any:
    return ToolCallingAgent(tools=tools, model=ScriptedModel(script),
                            verbosity_level=LogLevel.OFF, **kw)


def code_agent(tools: list[Any], script: list[ChatMessage], **kw: Any) -> Any:
    return CodeAgent(tools=tools, model=ScriptedModel(script), verbosity_level=LogLevel.OFF,
                     **kw)


TOOL_CALLING_SCRIPT = [
    call("double", {"x": 21}, "c1"),
    call("explode", {"reason": "disk full"}, "c2"),
    call("final_answer", {"answer": "done"}, "c3"),
]
CODE_SCRIPT = [
    code("r = double(x=21)\nprint(r)"),
    code("explode(reason='disk full')"),
    code("final_answer(f'done {r}')"),
]


@pytest.fixture
def registry(clock: FakeClock) -> obs.Registry:
    return obs.Registry(clock=clock, resources=obs.StaticResources(cpu_percent=1.0,
                                                                   rss_bytes=1 << 20))


def tool_figures(registry: obs.Registry) -> dict[str, tuple[int, int, dict[str, int]]]:
    return {t.name: (t.calls, t.errors, dict(t.errors_by_type))
            for t in registry.metrics().tools}


# -- observe_tool ----------------------------------------------------------------------


def describe(t: Any) -> tuple[str, str, dict[str, Any], str]:
    return t.name, t.description, t.inputs, t.output_type


def test_tool_over_observe_tool_builds_the_same_schema_as_tool_alone() -> None:
    def discover_components(path: str, depth: int = 2, hidden: bool | None = None) -> str:
        """Lists the components found under a path.

        Args:
            path: the directory to scan.
            depth: how many levels to descend.
            hidden: whether to include hidden files.
        """
        return f"{path}:{depth}:{hidden}"

    plain = tool(discover_components)
    observed = tool(observe_tool(discover_components))
    named = tool(observe_tool(name="discover_components", registry=obs.Registry())(
        discover_components))

    assert describe(observed) == describe(plain)
    assert describe(named) == describe(plain)
    assert observed.inputs["depth"]["nullable"] is True
    assert observed(path="/src", depth=1) == "/src:1:None"


def test_observe_tool_keeps_signature_annotations_docstring_and_wrapped() -> None:
    def lookup(key: str, default: int = 0) -> int:
        """Looks a key up."""
        return default

    wrapped = observe_tool(lookup)

    assert wrapped is not lookup
    assert wrapped.__wrapped__ is lookup  # type: ignore[attr-defined]
    assert wrapped.__doc__ == lookup.__doc__
    assert wrapped.__name__ == "lookup"
    assert wrapped.__annotations__ == lookup.__annotations__
    assert inspect.signature(wrapped) == inspect.signature(lookup)


def test_observed_tool_counts_calls_errors_by_type_and_latency(
    registry: obs.Registry, clock: FakeClock
) -> None:
    boom = ToolFailure("no such path")

    @observe_tool(registry=registry)
    def scan(path: str) -> int:
        clock.advance(0.125)
        if path == "bad":
            raise boom
        return len(path)

    assert scan("abc") == 3
    assert scan(path="abcd") == 4
    with pytest.raises(ToolFailure) as info:
        scan("bad")

    assert info.value is boom  # the tool's own exception, unchanged
    assert info.traceback[-1].name == "scan"  # with the tool's frame in its traceback
    assert tool_figures(registry) == {"scan": (3, 1, {"ToolFailure": 1})}
    perf = registry.performance(window_s=60)
    q = perf.latency.tools["scan"]
    assert (q.count, q.p50, q.max) == (3, 0.125, 0.125)
    assert perf.errors.tool_error_rate == pytest.approx(1 / 3)


def test_observe_tool_wraps_an_existing_tool_instance_in_place(
    registry: obs.Registry, clock: FakeClock
) -> None:
    class Search(Tool):  # type: ignore[misc]
        name = "search"
        description = "Searches the code base."
        inputs = {"query": {"type": "string", "description": "what to look for"}}
        output_type = "string"

        def forward(self, query: str) -> str:
            clock.advance(0.5)
            return query.upper()

    search = Search()
    same = observe_tool(registry=registry)(search)
    again = observe_tool(search)  # observing twice does not wrap twice

    assert same is search and again is search
    assert search(query="x") == "X"
    agent = tool_calling_agent([search], [call("search", {"query": "auth"}, "c1"),
                                          call("final_answer", {"answer": "ok"}, "c2")])
    assert agent.run("find auth") == "ok"
    assert tool_figures(registry) == {"search": (2, 0, {})}
    assert registry.performance(window_s=60).latency.tools["search"].p50 == 0.5


def test_async_tool_function_is_observed_when_awaited(
    registry: obs.Registry, clock: FakeClock
) -> None:
    @observe_tool(registry=registry, name="fetch")
    async def fetch_page(url: str) -> str:
        clock.advance(0.25)
        await asyncio.sleep(0)
        if url.startswith("bad"):
            raise ConnectionError(url)
        return url

    assert asyncio.iscoroutinefunction(fetch_page)
    assert asyncio.run(fetch_page("ok://a")) == "ok://a"
    with pytest.raises(ConnectionError):
        asyncio.run(fetch_page("bad://b"))
    assert tool_figures(registry) == {"fetch": (2, 1, {"ConnectionError": 1})}
    assert registry.performance(window_s=60).latency.tools["fetch"].max == 0.25


def test_arguments_and_outputs_are_not_recorded_unless_asked(registry: obs.Registry) -> None:
    @observe_tool(registry=registry)
    def login(user: str, password: str) -> str:
        return "token-" + password

    @observe_tool(registry=registry, record_io=True, max_io_chars=24)
    def echo(text: str) -> str:
        return text

    with obs.trace("io-trace"):
        login("ann", password="hunter2")
        echo(text="x" * 500)

    events = {e.entity.id: e.attributes for e in registry.trace("io-trace").events}
    assert "hunter2" not in repr(events["login"])
    assert "args" not in events["login"] and "output" not in events["login"]
    assert events["echo"]["args"].startswith("{'text': 'xxx")
    assert len(events["echo"]["args"]) <= 24 and len(events["echo"]["output"]) <= 24


def test_observe_tool_rejects_what_it_cannot_wrap() -> None:
    with pytest.raises(obs.InvalidValueError):
        observe_tool(42)
    with pytest.raises(obs.InvalidValueError):
        observe_tool(Tool)  # a class, not an instance
    with pytest.raises(obs.InvalidValueError):
        observe_tool(name="")


def test_a_broken_registry_never_changes_what_the_tool_returns(
    monkeypatch: pytest.MonkeyPatch, registry: obs.Registry
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("registry down")

    monkeypatch.setattr(registry, "tool_call", broken)

    @observe_tool(registry=registry)
    def ok() -> str:
        return "fine"

    @observe_tool(registry=registry)
    def bad() -> str:
        raise KeyError("own")

    assert ok() == "fine"
    with pytest.raises(KeyError, match="own"):
        bad()


# -- instrument_agent: the two agent kinds ------------------------------------------------


def run_figures(registry: obs.Registry) -> Any:
    return registry.metrics().agent_runs


@pytest.mark.parametrize("kind", ["tool_calling", "code"])
def test_agent_run_records_tool_calls_errors_latency_steps_and_tokens(
    kind: str, registry: obs.Registry, clock: FakeClock
) -> None:
    seen: list[tuple[str, str | None, str | None]] = []
    double, explode = make_tools(clock, seen)
    if kind == "tool_calling":
        agent = tool_calling_agent([double, explode], TOOL_CALLING_SCRIPT)
        step_in, step_out, answer = STEP_IN, STEP_OUT, "done"
    else:
        agent = code_agent([double, explode], CODE_SCRIPT)
        step_in, step_out, answer = CODE_IN, CODE_OUT, "done 42"
    instrument_agent(agent, pool="daedalus", agent_id="a1", registry=registry)

    with obs.trace(f"trace-{kind}") as tid:
        assert agent.run("double 21, then break something") == answer

    # per tool: calls, errors by type, exact latency
    assert tool_figures(registry) == {"double": (1, 0, {}),
                                      "explode": (1, 1, {"ToolFailure": 1})}
    perf = registry.performance(window_s=60)
    assert perf.latency.tools["double"].p50 == DOUBLE_S
    assert perf.latency.tools["explode"].p50 == EXPLODE_S
    assert perf.errors.tool_error_rate == 0.5
    assert perf.throughput.tool_calls_per_s > 0

    # the run: steps, tokens, tool calls, outcome, duration (the fake clock moved only
    # inside the tools)
    runs = run_figures(registry)
    assert (runs.total, runs.by_outcome["success"], runs.active) == (1, 1, 0)
    run = runs.recent[0]
    assert (run.agent_id, run.pool, run.trace_id, run.outcome) == ("a1", "daedalus", tid,
                                                                    "success")
    assert (run.steps, run.step_errors) == (3, 1)
    assert (run.input_tokens, run.output_tokens) == (3 * step_in, 3 * step_out)
    assert (run.tool_calls, run.tool_errors) == (2, 1)
    assert run.duration_s == DOUBLE_S + EXPLODE_S
    assert perf.latency.agent_step_duration_s.count == 3
    assert perf.latency.agent_run_duration_s.p50 == DOUBLE_S + EXPLODE_S

    # the tools ran inside the run and its trace -- for the CodeAgent too, whose
    # generated code runs in a worker thread
    assert seen == [("double", tid, run.id), ("explode", tid, run.id)]

    # the timeline of the trace holds the run, its steps and its tool calls
    events = registry.trace(tid).events
    kinds = [(e.kind, e.entity.id) for e in events]
    assert kinds[0] == ("agent.run_started", "a1")
    assert ("tool.call", "double") in kinds and ("tool.call", "explode") in kinds
    assert [e.attributes["step"] for e in events if e.kind == "agent.step"
            and e.attributes["kind"] == "action"] == [1, 2, 3]
    assert kinds[-1] == ("agent.run_finished", "a1")
    tool_events = [e for e in events if e.kind == "tool.call"]
    assert all(e.attributes["run_id"] == run.id for e in tool_events)


def test_planning_steps_count_as_steps_and_their_tokens_are_added(
    strict_registry: obs.Registry, clock: FakeClock
) -> None:
    double, explode = make_tools(clock)
    agent = tool_calling_agent([double, explode], list(TOOL_CALLING_SCRIPT), planning_interval=5)
    instrument_agent(agent, pool="daedalus", agent_id="planner", registry=strict_registry)

    with obs.trace("planned") as tid:
        assert agent.run("plan first") == "done"

    run = run_figures(strict_registry).recent[0]
    assert run.steps == 4  # one planning step and three action steps
    assert (run.input_tokens, run.output_tokens) == (PLAN_IN + 3 * STEP_IN,
                                                     PLAN_OUT + 3 * STEP_OUT)
    kinds = [e.attributes["kind"] for e in strict_registry.trace(tid).events
             if e.kind == "agent.step"]
    assert kinds == ["planning", "action", "action", "action", "final_answer"]
    assert strict_registry.metrics().dropped_events == {}


def test_parallel_tool_calls_of_a_tool_calling_agent_belong_to_the_run(
    registry: obs.Registry, clock: FakeClock
) -> None:
    seen: list[tuple[str, str | None, str | None]] = []
    double, explode = make_tools(clock, seen)
    agent = tool_calling_agent([double, explode], [
        calls([("double", {"x": 1}), ("double", {"x": 2}), ("explode", {"reason": "r"})], "p"),
        call("final_answer", {"answer": "ok"}, "f"),
    ])
    instrument_agent(agent, agent_id="par", registry=registry)

    with obs.trace("parallel") as tid:
        agent.run("three at once")

    run = run_figures(registry).recent[0]
    assert (run.tool_calls, run.tool_errors) == (3, 1)
    assert sorted(seen) == [("double", tid, run.id), ("double", tid, run.id),
                            ("explode", tid, run.id)]


def test_run_that_hits_max_steps_is_recorded_as_max_steps(
    registry: obs.Registry, clock: FakeClock
) -> None:
    double, _ = make_tools(clock)
    agent = tool_calling_agent([double], [call("double", {"x": i}, f"c{i}") for i in range(5)],
                               max_steps=2)
    instrument_agent(agent, agent_id="looper", registry=registry)

    assert agent.run("never ends") == "gave up"  # smolagents does not raise

    runs = run_figures(registry)
    assert runs.by_outcome == {"success": 0, "max_steps": 1, "error": 0}
    assert runs.recent[0].steps == 3  # two steps and the max-steps step
    assert registry.performance(window_s=60).errors.agent_run_error_rate == 1.0


def test_run_that_raises_is_recorded_as_error_and_the_exception_propagates(
    registry: obs.Registry,
) -> None:
    agent = ToolCallingAgent(tools=[], model=ScriptedModel([], fail_with=RuntimeError("quota")),
                             verbosity_level=LogLevel.OFF)
    instrument_agent(agent, agent_id="broken", registry=registry)

    with pytest.raises(AgentGenerationError):
        agent.run("anything")

    run = run_figures(registry).recent[0]
    assert (run.outcome, run.error) == ("error", "AgentGenerationError")


def test_a_failing_step_callback_never_aborts_the_run(
    monkeypatch: pytest.MonkeyPatch, registry: obs.Registry, clock: FakeClock
) -> None:
    def broken(self: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("recording failed")

    monkeypatch.setattr(AgentRunHooks, "step", broken)
    double, explode = make_tools(clock)
    agent = tool_calling_agent([double, explode], list(TOOL_CALLING_SCRIPT))
    instrument_agent(agent, agent_id="a1", registry=registry)

    assert agent.run("go") == "done"
    assert run_figures(registry).recent[0].outcome == "success"


def test_streamed_run_is_recorded_when_the_stream_ends(
    registry: obs.Registry, clock: FakeClock
) -> None:
    seen: list[tuple[str, str | None, str | None]] = []
    double, explode = make_tools(clock, seen)
    agent = tool_calling_agent([double, explode], list(TOOL_CALLING_SCRIPT))
    instrument_agent(agent, agent_id="streamer", registry=registry)

    with obs.trace("streamed") as tid:
        stream = agent.run("go", stream=True)
    assert obs.current_trace_id() is None
    steps = list(stream)  # iterated outside the trace: the run keeps its own

    assert isinstance(steps[-1], FinalAnswerStep)
    run = run_figures(registry).recent[0]
    assert (run.outcome, run.steps, run.tool_calls, run.trace_id) == ("success", 3, 2, tid)
    assert [s[1] for s in seen] == [tid, tid]


def test_instrumented_agent_is_registered_in_its_pool(registry: obs.Registry) -> None:
    registry.pool("daedalus").agent_spawned("known")
    for aid in ("known", "new"):
        instrument_agent(tool_calling_agent([], []), pool="daedalus", agent_id=aid,
                         registry=registry)

    agents = {a.id: a.pool for a in registry.metrics().agents.items}
    assert agents == {"known": "daedalus", "new": "daedalus"}
    assert registry.metrics().dropped_events == {}


def test_run_of_an_agent_holding_a_task_joins_the_task_and_its_trace(
    registry: obs.Registry, clock: FakeClock
) -> None:
    """The task is submitted under a trace; the agent runs it from a worker thread."""
    double, explode = make_tools(clock)
    agent = code_agent([double, explode], list(CODE_SCRIPT))
    instrument_agent(agent, pool="daedalus", agent_id="worker-1", registry=registry)
    pool = registry.pool("daedalus")
    with obs.trace("request-7"):
        pool.task_submitted("t-1", task_type="migration")

    def work() -> None:
        assert obs.current_trace_id() is None  # a new thread starts with no trace
        pool.task_assigned("t-1", agent_id="worker-1")
        pool.task_started("t-1")
        agent.run("migrate auth")
        pool.task_completed("t-1")

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()

    run = run_figures(registry).recent[0]
    assert (run.task_id, run.trace_id) == ("t-1", "request-7")
    kinds = [e.kind for e in registry.trace("request-7").events]
    assert kinds[:3] == ["task.submitted", "task.assigned", "task.started"]
    assert kinds[3] == "agent.run_started" and kinds[-1] == "task.completed"
    assert kinds.count("tool.call") == 2


def test_instrument_agent_puts_a_context_propagating_executor_before_a_code_agent(
    registry: obs.Registry,
) -> None:
    agent = code_agent([], [], executor_kwargs={"timeout_seconds": 7})
    inner = agent.python_executor
    instrument_agent(agent, agent_id="c", registry=registry)
    instrument_agent(agent, agent_id="c", registry=registry)  # twice: still one proxy

    proxy = agent.python_executor
    assert isinstance(proxy, ContextPropagatingExecutor) and proxy.inner is inner
    assert (proxy.timeout_seconds, inner.timeout_seconds) == (7, None)
    assert proxy.state is inner.state  # other attributes are forwarded


def test_context_propagating_executor_runs_code_in_the_callers_context() -> None:
    executor = ContextPropagatingExecutor(LocalPythonExecutor([]))
    seen: list[str | None] = []
    executor.send_tools({"probe": lambda: seen.append(obs.current_trace_id())})
    executor.send_variables({})

    with obs.trace("ctx-1"):
        executor("probe()")
    executor("probe()")

    assert seen == ["ctx-1", None]


def test_importing_the_package_does_not_import_smolagents() -> None:
    code_ = ("import sys, dionysus_observability; "
             "sys.exit(1 if 'smolagents' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code_], check=False).returncode == 0


# -- end to end: GET /traces/{id} over a real server ---------------------------------------


@pytest.fixture
def served(registry: obs.Registry) -> Iterator[Callable[[str], httpx.Response]]:
    app = FastAPI()
    app.include_router(obs.create_monitoring_router(registry))
    with serve(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield lambda path: client.get(path)


def test_traces_endpoint_returns_the_tool_calls_and_steps_of_runs(
    served: Callable[[str], httpx.Response], registry: obs.Registry, clock: FakeClock
) -> None:
    double, explode = make_tools(clock)
    tc = instrument_agent(tool_calling_agent([double, explode], list(TOOL_CALLING_SCRIPT)),
                          pool="daedalus", agent_id="tc", registry=registry)
    ca = instrument_agent(code_agent([double, explode], list(CODE_SCRIPT)),
                          pool="daedalus", agent_id="ca", registry=registry)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing of ours warns during a run
        with obs.trace("tc-trace"):
            tc.run("go")
        with obs.trace("ca-trace"):
            ca.run("go")

    for tid, agent_id in (("tc-trace", "tc"), ("ca-trace", "ca")):
        response = served(f"/api/v1/monitoring/traces/{tid}")
        assert response.status_code == 200
        body = response.json()
        assert body["trace_id"] == tid
        events = body["events"]
        tools = [(e["entity"]["id"], e["attributes"]["error"]) for e in events
                 if e["kind"] == "tool.call"]
        assert tools == [("double", None), ("explode", "ToolFailure")]
        steps = [e for e in events if e["kind"] == "agent.step"]
        assert [s["attributes"]["kind"] for s in steps] == ["action"] * 3 + ["final_answer"]
        assert {s["entity"]["id"] for s in steps} == {agent_id}
        assert steps[1]["attributes"]["error"] is not None
        finished = events[-1]
        assert finished["kind"] == "agent.run_finished"
        assert finished["attributes"]["outcome"] == "success"
        assert finished["attributes"]["tool_calls"] == 2

    assert served("/api/v1/monitoring/traces/never-seen").status_code == 404
    metrics = served("/api/v1/monitoring/metrics").json()
    assert {t["name"]: (t["calls"], t["errors"]) for t in metrics["tools"]} == {
        "double": (2, 0), "explode": (2, 2)}
    assert metrics["agent_runs"]["total"] == 2
    perf = served("/api/v1/monitoring/performance?window=60").json()
    assert perf["latency"]["tools"]["explode"]["p50"] == EXPLODE_S
    assert perf["errors"]["tool_error_rate"] == 0.5


# -- logs -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tool_calling", "code"])
def test_log_lines_written_during_a_run_carry_its_trace_and_run(
    kind: str, registry: obs.Registry, clock: FakeClock
) -> None:
    out = io.StringIO()
    obs.configure_logging(json=True, level="DEBUG", stream=out)
    try:
        double, explode = make_tools(clock)

        @tool
        @observe_tool
        def note(text: str) -> str:
            """Writes a log line.

            Args:
                text: what to log.
            """
            logging.getLogger("tools.note").info("noted %s", text)
            return text

        tools = [double, explode, note]
        if kind == "tool_calling":
            agent = tool_calling_agent(tools, [call("note", {"text": "hi"}, "n"),
                                               *TOOL_CALLING_SCRIPT])
        else:
            agent = code_agent(tools, [code("note(text='hi')"), *CODE_SCRIPT])
        instrument_agent(agent, pool="daedalus", agent_id="logger-1", registry=registry)
        with obs.trace("logged-run") as tid:
            agent.run("go")
    finally:
        reset_logging()

    lines = {}
    for raw in out.getvalue().splitlines():
        line = json.loads(raw)
        lines.setdefault(line["event"], line)
    run_id = registry.metrics().agent_runs.recent[0].id
    for event in ("noted hi", "tool.call", "tool.error", "agent.step", "agent.run.finished"):
        assert lines[event]["trace_id"] == tid, event
        assert lines[event]["run_id"] == run_id, event
        assert lines[event]["agent_id"] == "logger-1", event
    assert lines["tool.error"]["tool"] == "explode"
    assert lines["tool.error"]["level"] == "warning"


# -- the demo's agents ---------------------------------------------------------------------


def test_demo_executor_runs_each_task_as_an_instrumented_agent_run(
    monkeypatch: pytest.MonkeyPatch, registry: obs.Registry
) -> None:
    """examples/smol_agents.py: both agent kinds do a task's work through observed tools."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "examples"))
    monkeypatch.setattr(ast, "parse", ast.parse)  # the demo may serialise it: undo after
    smol = importlib.import_module("smol_agents")
    workload = importlib.import_module("workload")
    executor = smol.SmolagentsExecutor(registry, "daedalus", failure_rates={})
    pool = registry.pool("daedalus")

    def attempt(agent_id: str, task: Any) -> BaseException | None:
        ctx = workload.AgentContext(agent_id, pool, random.Random(7), 1e9, threading.Event())
        try:
            executor(task, ctx)
        except Exception as exc:
            return exc
        return None

    source = str(Path(__file__))
    for agent_id in ("daedalus-1", "daedalus-2"):  # a ToolCallingAgent, then a CodeAgent
        task = workload.Task(f"disc-{agent_id}", "discovery", 0.1,
                             payload={"path": source, "component": "test"})
        assert attempt(agent_id, task) is None
        assert task.payload["definitions"] > 10  # the tools did the work
    poisoned = workload.Task("poison-1", "research", 0.1, payload={"poison": True})
    failure = attempt("daedalus-2", poisoned)

    assert isinstance(failure, workload.ToolCallError)
    assert "dynamic import" in str(failure)
    assert type(executor.agent("daedalus-1")).__name__ == "ToolCallingAgent"
    assert type(executor.agent("daedalus-2")).__name__ == "CodeAgent"
    assert tool_figures(registry) == {
        "read_component": (2, 0, {}),
        "score_component": (2, 0, {}),
        "resolve_imports": (1, 1, {"ValueError": 1}),
    }
    runs = registry.metrics().agent_runs
    assert runs.by_outcome["success"] == 3  # the poisoned run answered FAILED: it ended
    assert {r.agent_id for r in runs.recent} == {"daedalus-1", "daedalus-2"}
    assert all(r.input_tokens > 0 and r.output_tokens > 0 for r in runs.recent)
