"""Trace context: trace(), current_trace_id(), header parsing, and trace ids in the registry."""

from __future__ import annotations

import asyncio
import re
import threading

import pytest
import structlog

import dionysus_observability as obs
from dionysus_observability._context import parse_traceparent, valid_trace_id

HEX32 = re.compile(r"[0-9a-f]{32}")


def test_trace_binds_an_id_for_the_block_and_unbinds_it_after() -> None:
    assert obs.current_trace_id() is None
    with obs.trace("abc") as tid:
        assert tid == "abc"
        assert obs.current_trace_id() == "abc"
        assert structlog.contextvars.get_contextvars()["trace_id"] == "abc"
    assert obs.current_trace_id() is None
    assert "trace_id" not in structlog.contextvars.get_contextvars()


def test_trace_without_an_id_mints_a_fresh_w3c_compatible_one() -> None:
    with obs.trace() as first, obs.trace() as second:
        assert HEX32.fullmatch(first) and HEX32.fullmatch(second)
        assert first != second
        assert obs.current_trace_id() == second
    assert obs.current_trace_id() is None


def test_nested_traces_restore_the_outer_id_even_when_the_block_raises() -> None:
    with obs.trace("outer"):
        with pytest.raises(RuntimeError), obs.trace("inner"):
            assert obs.current_trace_id() == "inner"
            raise RuntimeError("boom")
        assert obs.current_trace_id() == "outer"
        assert structlog.contextvars.get_contextvars()["trace_id"] == "outer"
    assert obs.current_trace_id() is None


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("abc", True),
        ("req-1.a:b_c", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        ("has space", False),
        ("<script>", False),
        ("tab\tchar", False),
        ("é", False),
        (None, False),
    ],
)
def test_only_short_safe_trace_ids_are_valid(value: str | None, ok: bool) -> None:
    assert valid_trace_id(value) is ok


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
         "4bf92f3577b34da6a3ce929d0e0e4736"),
        (" 00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-00 ",
         "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),
        ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", None),
        ("garbage", None),
        ("", None),
        (None, None),
    ],
)
def test_traceparent_yields_its_32_hex_trace_id_or_none(
    header: str | None, expected: str | None
) -> None:
    assert parse_traceparent(header) == expected


def test_a_new_thread_does_not_inherit_the_callers_trace() -> None:
    seen: list[str | None] = []
    with obs.trace("main-only"):
        worker = threading.Thread(target=lambda: seen.append(obs.current_trace_id()))
        worker.start()
        worker.join()
    assert seen == [None]


def test_concurrent_asyncio_tasks_never_see_each_others_trace() -> None:
    async def scenario() -> list[tuple[str, str | None]]:
        both_bound = asyncio.Barrier(2)
        results: list[tuple[str, str | None]] = []

        async def request(tid: str) -> None:
            with obs.trace(tid):
                await both_bound.wait()  # the other task has bound its id by now
                results.append((tid, obs.current_trace_id()))

        await asyncio.wait_for(asyncio.gather(request("one"), request("two")), timeout=10)
        return results

    assert sorted(asyncio.run(scenario())) == [("one", "one"), ("two", "two")]


def test_hooks_record_the_current_trace_id(registry: obs.Registry) -> None:
    with obs.trace("hook-trace"):
        registry.pipeline("disc-1", kind="discovery", total_items=3).stage("assessment")
        registry.tool_call("grep", duration_s=0.1)
    registry.tool_call("grep", duration_s=0.1)  # outside: no trace event

    events = registry.trace("hook-trace").events
    first = events[0]
    assert (first.kind, first.entity.kind, first.entity.id) == (
        "pipeline.started", "pipeline", "disc-1")
    assert [e.entity.id for e in events if e.kind == "tool.call"] == ["grep"]


def test_task_submitted_under_a_trace_keeps_it_when_completed_from_another_thread(
    registry: obs.Registry,
) -> None:
    pool = registry.pool("daedalus")
    pool.agent_spawned("a1")
    with obs.trace("submitted-here"):
        pool.task_submitted("t1", task_type="migration")
    with obs.trace("unrelated"):
        pool.task_submitted("t2", task_type="migration")

    def worker() -> None:
        with obs.trace("worker-trace"):  # even under another trace, the task keeps its own
            pool.task_assigned("t1", agent_id="a1")
            pool.task_started("t1")
        pool.task_completed("t1")  # and with none bound at all

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()

    kinds = [(e.kind, e.entity.id) for e in registry.trace("submitted-here").events]
    assert kinds == [("task.submitted", "t1"), ("task.assigned", "t1"), ("task.started", "t1"),
                     ("task.completed", "t1")]
    assert [e.entity.id for e in registry.trace("unrelated").events] == ["t2"]
    with pytest.raises(obs.UnknownEntityError):
        registry.trace("worker-trace")
