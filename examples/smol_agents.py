"""Real smolagents agents for the demo, driven by a scripted offline model.

``SmolagentsExecutor`` takes the place of the workload's ``SimulatedExecutor``: every
agent of the pool is a real smolagents agent (odd-numbered ones ``ToolCallingAgent``,
even-numbered ones ``CodeAgent``), instrumented with ``instrument_agent``, and every
task attempt is one ``agent.run()``.  The tools do the task's real work (read, score,
migrate, test and hash files) and are measured with ``@observe_tool``, so the demo's
``/metrics`` ``tools`` and ``agent_runs``, ``/performance`` ``latency.tools`` and each
task's ``/traces/{id}`` show real tool calls, steps and tokens.

No network: ``ScriptedModel`` answers like a careful LLM that follows a plan made from the
task -- one tool call per step, then ``final_answer``; when the last observation is an
error it gives up with ``FAILED: <error>``.  Its latency, token counts and failures
(a 429 from the "provider", a tool returning nothing) are drawn from the task's random
generator, at the workload's failure rates.
"""

from __future__ import annotations

import ast
import contextvars
import functools
import hashlib
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smolagents import CodeAgent, Model, ToolCallingAgent, tool
from smolagents.models import (
    ChatMessage,
    ChatMessageToolCall,
    ChatMessageToolCallFunction,
    MessageRole,
)
from smolagents.monitoring import LogLevel, TokenUsage
from smolagents.utils import AgentGenerationError
from workload import (
    FAILURE_RATES,
    AgentContext,
    RateLimitError,
    Task,
    ToolCallError,
    WorkloadStopped,
)

import dionysus_observability as obs
from dionysus_observability.smolagents import instrument_agent, observe_tool

__all__ = ["TOOLS", "ScriptedModel", "SmolagentsExecutor", "plan_for", "serialize_ast_parsing"]

#: Share of a task's duration spent in tool calls; the rest is model latency.
TOOL_SHARE = 0.8
#: Steps an agent may take before smolagents stops it (plans are at most 4 long).
MAX_STEPS = 6
#: Of the transient failures: share raised by the model provider (the rest by a tool).
MODEL_FAILURE_SHARE = 0.4
#: Characters per token, to derive input token counts from the conversation.
CHARS_PER_TOKEN = 4
#: Output tokens of one model reply: (low, high).
OUTPUT_TOKENS = (18, 90)
#: CPython before 3.11.8 / 3.12.2 raises "SystemError: AST constructor recursion depth
#: mismatch" when threads run ``ast.parse`` at once (gh-106905).  CodeAgents parse every
#: code step, the tools and the discovery pipeline parse files: the demo serialises them.
_AST_RACY = (3, 11) <= sys.version_info[:3] < (3, 11, 8) or (
    (3, 12) <= sys.version_info[:3] < (3, 12, 2))
_AST_LOCK = threading.Lock()


def serialize_ast_parsing() -> None:
    """Make ``ast.parse`` take a process-wide lock on CPython versions with gh-106905."""
    if not _AST_RACY or getattr(ast.parse, "serialized", False):
        return
    original = ast.parse

    @functools.wraps(original)
    def parse(*args: Any, **kwargs: Any) -> Any:
        with _AST_LOCK:
            return original(*args, **kwargs)

    parse.serialized = True  # type: ignore[attr-defined]
    ast.parse = parse


@dataclass(slots=True)
class Attempt:
    """One attempt of a task on an agent: what the tools and the model read."""

    task: Task
    ctx: AgentContext
    plan: list[tuple[str, dict[str, Any]]]
    tool_calls: int = 0
    fail_tool_at: int | None = None
    fail_model_at: int | None = None
    failure: Exception | None = None
    calls_made: int = 0
    replies: int = 0

    def __post_init__(self) -> None:
        self.tool_calls = len(self.plan)


#: The attempt running in this context.  Tools read it; for a CodeAgent this works
#: because ``instrument_agent`` propagates the context into the code's worker thread.
CURRENT: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar("demo_attempt",
                                                                        default=None)


def _attempt() -> Attempt:
    attempt = CURRENT.get()
    if attempt is None:
        raise RuntimeError("a demo tool ran outside an agent run")
    return attempt


def _tool_work() -> Attempt:
    """A tool call's share of the current attempt's time, and the transient failure planned
    for it; returns the attempt."""
    attempt = _attempt()
    attempt.calls_made += 1
    share = TOOL_SHARE / max(1, attempt.tool_calls)
    attempt.ctx.sleep(attempt.task.duration_s * share)
    if attempt.fail_tool_at == attempt.calls_made and attempt.failure is not None:
        raise attempt.failure
    return attempt


# -- the tools -------------------------------------------------------------------------

with warnings.catch_warnings():
    # smolagents warns about any decorator under @tool (it matters for remote executors)
    warnings.filterwarnings("ignore", message=".*decorators other than @tool")

    @tool
    @observe_tool
    def read_component(path: str) -> str:
        """Reads a component's source and summarises it.

        Args:
            path: the file to read.
        """
        _tool_work()
        text = Path(path).read_text(encoding="utf-8")
        return f"{path}: {len(text.splitlines())} lines, {len(text)} characters"

    @tool
    @observe_tool
    def score_component(path: str) -> float:
        """Scores a component for migration by size and complexity.

        Args:
            path: the file to score.
        """
        attempt = _tool_work()
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
        definitions = sum(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                          for n in ast.walk(tree))
        branches = sum(isinstance(n, ast.If | ast.For | ast.While | ast.Try)
                       for n in ast.walk(tree))
        attempt.task.payload["definitions"] = definitions
        return float(definitions + 2 * branches)

    @tool
    @observe_tool
    def resolve_imports(component: str) -> str:
        """Resolves the imports of a component to the modules they load.

        Args:
            component: the component's name.
        """
        attempt = _tool_work()
        if attempt.task.payload.get("poison"):
            raise ValueError(f"component {component!r} uses a dynamic import the agent "
                             "cannot follow")
        return f"{component}: imports resolved"

    @tool
    @observe_tool
    def migrate_component(path: str, introduce_defect: bool) -> str:
        """Rewrites a component for the new platform.

        Args:
            path: the workspace copy to rewrite.
            introduce_defect: whether the rewrite goes wrong (the demo's broken migrations).
        """
        attempt = _tool_work()
        target = Path(path)
        source = target.read_text(encoding="utf-8")
        header = f"# migrated by {attempt.ctx.agent_id} ({attempt.task.id})\n"
        target.write_text(header + source + ("def broken(:\n" if introduce_defect else ""),
                          encoding="utf-8")
        return f"migrated {path}"

    @tool
    @observe_tool
    def run_tests(path: str) -> str:
        """Checks that a migrated component still compiles.

        Args:
            path: the workspace copy to check.
        """
        _tool_work()
        compile(Path(path).read_text(encoding="utf-8"), path, "exec")
        return f"{path}: ok"

    @tool
    @observe_tool
    def hash_file(path: str) -> str:
        """Returns the sha256 of a file.

        Args:
            path: the file to hash.
        """
        attempt = _tool_work()
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        attempt.task.payload["sha256"] = digest
        return digest

    @tool
    @observe_tool
    def search_notes(query: str) -> str:
        """Searches the migration notes.

        Args:
            query: what to look for.
        """
        _tool_work()
        return f"3 notes about {query!r}"

    @tool
    @observe_tool
    def check_health() -> str:
        """Reports whether the agent's tool session is healthy."""
        _tool_work()
        return "healthy"


TOOLS = [read_component, score_component, resolve_imports, migrate_component, run_tests,
         hash_file, search_notes, check_health]

Call = tuple[str, dict[str, Any]]


def plan_for(task: Task) -> list[Call]:
    """The tool calls a careful agent makes for ``task``, in order."""
    payload = task.payload
    path = payload.get("path")
    component = str(payload.get("component", task.id))
    plan: list[Call] = []
    if payload.get("poison"):
        plan.append(("resolve_imports", {"component": component}))
    if task.type == "heartbeat":
        plan.append(("check_health", {}))
    elif task.type == "discovery" and path:
        plan += [("read_component", {"path": path}), ("score_component", {"path": path})]
    elif task.type == "migration" and path:
        plan += [("read_component", {"path": path}),
                 ("migrate_component", {"path": path,
                                        "introduce_defect": bool(payload.get("defect"))})]
    elif task.type == "general" and payload.get("action") == "test" and path:
        plan.append(("run_tests", {"path": path}))
    elif task.type == "ingest" and path:
        plan += [("read_component", {"path": path}), ("hash_file", {"path": path})]
    else:
        plan += [("search_notes", {"query": f"{task.type} {component}"}),
                 ("search_notes", {"query": f"{component} follow-up"})]
    return plan


def _last_error(messages: list[Any]) -> str | None:
    """The error in the latest observation, as an LLM would read it; None if it went well."""
    if not messages:
        return None
    last = messages[-1]
    if getattr(last, "role", None) != MessageRole.TOOL_RESPONSE:
        return None
    content = last.content
    text = " ".join(part.get("text", "") for part in content if isinstance(part, dict)) \
        if isinstance(content, list) else str(content or "")
    if "Error:" not in text:
        return None
    detail = text.split("Error:", 1)[1].strip().splitlines()
    return detail[0][:200] if detail else "error"


class ScriptedModel(Model):  # type: ignore[misc]
    """An offline smolagents Model that follows the current attempt's plan.

    Answers ToolCallingAgents with native tool calls and CodeAgents with a code block.
    """

    def __init__(self) -> None:
        super().__init__(model_id="scripted-offline")

    def generate(self, messages: list[Any], stop_sequences: list[str] | None = None,
                 response_format: Any = None, tools_to_call_from: Any = None,
                 **kwargs: Any) -> ChatMessage:
        attempt = _attempt()
        attempt.replies += 1
        ctx = attempt.ctx
        ctx.sleep(attempt.task.duration_s * (1 - TOOL_SHARE) / (attempt.tool_calls + 1))
        if attempt.fail_model_at == attempt.replies and attempt.failure is not None:
            raise attempt.failure
        chars = sum(len(str(getattr(m, "content", ""))) for m in messages)
        usage = TokenUsage(input_tokens=max(1, chars // CHARS_PER_TOKEN),
                           output_tokens=ctx.rng.randint(*OUTPUT_TOKENS))
        if stop_sequences is None and tools_to_call_from is None:  # max steps reached
            return ChatMessage(role=MessageRole.ASSISTANT, content="FAILED: out of steps",
                               token_usage=usage)
        error = _last_error(messages)
        if error is not None:
            step: Call = ("final_answer", {"answer": f"FAILED: {error}"})
        elif attempt.plan:
            step = attempt.plan.pop(0)
        else:
            step = ("final_answer", {"answer": f"done: {attempt.task.type} {attempt.task.id}"})
        if tools_to_call_from is not None:
            return ChatMessage(
                role=MessageRole.ASSISTANT, content=None, token_usage=usage,
                tool_calls=[ChatMessageToolCall(
                    id=f"call-{attempt.replies}", type="function",
                    function=ChatMessageToolCallFunction(name=step[0], arguments=step[1]))])
        args = ", ".join(f"{k}={v!r}" for k, v in step[1].items())
        code = (f"final_answer({step[1]['answer']!r})" if step[0] == "final_answer"
                else f"result = {step[0]}({args})\nprint(result)")
        return ChatMessage(role=MessageRole.ASSISTANT, token_usage=usage,
                           content=f"Thought: next step.\n<code>\n{code}\n</code>")


class SmolagentsExecutor:
    """The workload's executor backed by real smolagents agents, one per pool agent.

    Args:
        registry: where the agents' runs and tool calls are recorded.
        pool: the pool the agents belong to.
        failure_rates: chance per task type that an attempt fails transiently.
    """

    def __init__(self, registry: obs.Registry, pool: str,
                 failure_rates: dict[str, float] | None = None) -> None:
        self.registry = registry
        self.pool = pool
        self.failure_rates = dict(FAILURE_RATES if failure_rates is None else failure_rates)
        self._agents: dict[str, Any] = {}
        self._lock = threading.Lock()
        serialize_ast_parsing()

    def agent(self, agent_id: str) -> Any:
        """The smolagents agent of ``agent_id``, built and instrumented on first use."""
        with self._lock:
            agent = self._agents.get(agent_id)
            if agent is None:
                number = int(agent_id.rsplit("-", 1)[-1]) if agent_id[-1].isdigit() else 1
                kind = CodeAgent if number % 2 == 0 else ToolCallingAgent
                agent = kind(tools=TOOLS, model=ScriptedModel(), max_steps=MAX_STEPS,
                             verbosity_level=LogLevel.OFF)
                instrument_agent(agent, pool=self.pool, agent_id=agent_id,
                                 registry=self.registry)
                self._agents[agent_id] = agent
            return agent

    def __call__(self, task: Task, ctx: AgentContext) -> None:
        """Run one attempt of ``task`` as an agent run; raise to fail the attempt."""
        agent = self.agent(ctx.agent_id)
        attempt = Attempt(task, ctx, plan_for(task))
        rng = ctx.rng
        if rng.random() < self.failure_rates.get(task.type, 0.0):
            if rng.random() < MODEL_FAILURE_SHARE:
                attempt.failure = RateLimitError("429 Too Many Requests from the model provider")
                attempt.fail_model_at = rng.randint(1, attempt.tool_calls + 1)
            else:
                attempt.failure = rng.choice([
                    ToolCallError(f"tool returned no content on {ctx.agent_id}"),
                    TimeoutError("tool call exceeded 30 s"),
                    ConnectionError("discovery service unreachable (connection reset)"),
                ])
                attempt.fail_tool_at = rng.randint(1, attempt.tool_calls)
        token = CURRENT.set(attempt)
        try:
            answer = agent.run(f"{task.type} task {task.id}: {task.payload or 'no payload'}")
        except AgentGenerationError as exc:
            cause = exc.__cause__
            if isinstance(cause, WorkloadStopped) or ctx.stop_event.is_set():
                raise WorkloadStopped from None
            raise (cause if isinstance(cause, Exception) else exc) from None
        finally:
            CURRENT.reset(token)
        if ctx.stop_event.is_set():
            raise WorkloadStopped
        text = str(answer)
        if text.startswith("FAILED"):
            planned = attempt.fail_tool_at is not None and attempt.calls_made >= (
                attempt.fail_tool_at)
            if planned and attempt.failure is not None:
                raise attempt.failure
            raise ToolCallError(text.removeprefix("FAILED: "))
