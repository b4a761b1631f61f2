"""PerformanceReport through direct queries: rates, latency, error rates, windows."""

from __future__ import annotations

import math

import pytest
from conftest import EPOCH, FakeClock
from hypothesis import given, settings
from hypothesis import strategies as st

import dionysus_observability as obs
from dionysus_observability.reports import Quantiles

MAX_RELATIVE_ERROR = 0.01


def exact_quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[math.floor(q * (len(ordered) - 1))]


def assert_quantiles(q: Quantiles, samples: list[float]) -> None:
    assert q.count == len(samples)
    assert q.max == pytest.approx(max(samples), rel=1e-9)
    assert q.mean == pytest.approx(sum(samples) / len(samples), rel=1e-6)
    for name, level in (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99)):
        got = getattr(q, name)
        want = exact_quantile(samples, level)
        assert got is not None
        assert abs(got - want) <= MAX_RELATIVE_ERROR * want, (name, got, want)


def new_registry(clock: FakeClock) -> obs.Registry:
    return obs.Registry(clock=clock, resources=obs.StaticResources())


def run_one_second_tasks(registry: obs.Registry, clock: FakeClock, n: int) -> None:
    """Agent a1 of pool daedalus runs ``n`` tasks of one second each, back to back."""
    pool = registry.pool("daedalus")
    pool.agent_spawned("a1")
    for i in range(n):
        pool.task_submitted(f"t{i}")
        pool.task_assigned(f"t{i}", agent_id="a1")
        clock.advance(1.0)
        pool.task_completed(f"t{i}")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=1e-6, max_value=1e5), min_size=1, max_size=200))
def test_rollback_duration_percentiles_are_within_one_percent(durations: list[float]) -> None:
    clock = FakeClock()
    registry = new_registry(clock)
    registry.rollbacks.checkpoint_created("cp", component="api/x.py")
    for d in durations:
        registry.rollbacks.record("cp", succeeded=True, duration_s=d)

    perf = registry.performance(window_s=60)
    assert_quantiles(perf.latency.rollback_duration_s, durations)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=1e-3, max_value=3_000.0), min_size=1, max_size=60))
def test_task_duration_percentiles_are_within_one_percent(durations: list[float]) -> None:
    # every task is assigned at once to its own agent; each completes after its duration
    clock = FakeClock()
    registry = new_registry(clock)
    pool = registry.pool("daedalus")
    start = clock()
    for i in range(len(durations)):
        pool.agent_spawned(f"a{i}")
        pool.task_submitted(f"t{i}")
        pool.task_assigned(f"t{i}", agent_id=f"a{i}")
    measured = []
    for i, d in sorted(enumerate(durations), key=lambda pair: pair[1]):
        clock.now = start + d
        measured.append(clock.now - start)  # the exact float the hook computes
        pool.task_completed(f"t{i}")

    perf = registry.performance(window_s=3600)
    assert_quantiles(perf.latency.task_duration_s, measured)
    assert perf.throughput.tasks_completed == len(durations)
    assert registry.metrics().dropped_events == {}


def test_throughput_is_a_rate_over_the_window(registry: obs.Registry, clock: FakeClock) -> None:
    run_one_second_tasks(registry, clock, 30)
    clock.advance(30)  # 60 s since the registry started

    perf = registry.performance(window_s=60)
    assert perf.window_s == 60
    assert perf.covered_s == 60
    assert perf.throughput.tasks_completed == 30
    assert perf.throughput.tasks_completed_per_s == pytest.approx(0.5)
    assert perf.throughput.tasks_failed_per_s == 0.0


def test_rate_divides_by_the_time_covered_when_younger_than_the_window(
    registry: obs.Registry, clock: FakeClock
) -> None:
    run_one_second_tasks(registry, clock, 10)
    clock.advance(10.0)  # the registry is 20 s old

    perf = registry.performance(window_s=300)
    assert perf.covered_s == pytest.approx(20.0)
    assert perf.throughput.tasks_completed_per_s == pytest.approx(0.5)


def test_events_older_than_the_window_are_left_out(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus", max_retries=1)
    pool.agent_spawned("a1")
    pool.task_submitted("old")
    pool.task_assigned("old", agent_id="a1")
    pool.task_failed("old", error="x")
    clock.advance(400)
    pool.task_submitted("new")
    pool.task_assigned("new", agent_id="a1")
    clock.advance(2.0)
    pool.task_completed("new")

    recent = registry.performance(window_s=300)
    assert (recent.throughput.tasks_completed, recent.throughput.tasks_failed) == (1, 0)
    assert recent.errors.task_error_rate == 0.0
    assert recent.latency.task_duration_s.count == 1
    everything = registry.performance(window_s=900)
    assert (everything.throughput.tasks_completed, everything.throughput.tasks_failed) == (1, 1)
    assert everything.errors.task_error_rate == 0.5


def test_task_error_rate_counts_final_failures_only(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus", max_retries=2)
    pool.agent_spawned("a1")
    for i in range(8):
        pool.task_submitted(f"ok{i}")
        pool.task_assigned(f"ok{i}", agent_id="a1")
        pool.task_completed(f"ok{i}")
    for i in range(2):
        pool.task_submitted(f"bad{i}")
        for _ in range(2):
            pool.task_assigned(f"bad{i}", agent_id="a1")
            pool.task_failed(f"bad{i}", error="boom")
    clock.advance(10)

    perf = registry.performance(window_s=60)
    assert perf.errors.task_error_rate == pytest.approx(2 / 10)
    assert perf.throughput.tasks_failed == 2
    assert perf.throughput.tasks_retried == 2


def test_assignment_latency_is_submit_to_pickup(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus")
    pool.agent_spawned("a1")
    waits = [0.1, 0.2, 0.4, 0.8]
    for i, wait in enumerate(waits):
        pool.task_submitted(f"t{i}")
        clock.advance(wait)
        pool.task_assigned(f"t{i}", agent_id="a1")
        pool.task_completed(f"t{i}")

    q = registry.performance(window_s=60).latency.assignment_latency_s
    assert q.count == 4
    assert q.max == pytest.approx(0.8)
    assert q.mean == pytest.approx(sum(waits) / 4)
    assert q.p50 == pytest.approx(0.2, rel=MAX_RELATIVE_ERROR)


def test_retried_task_latency_is_measured_from_its_requeue(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus", max_retries=3)
    pool.agent_spawned("a1")
    pool.task_submitted("t1")
    clock.advance(1.0)
    pool.task_assigned("t1", agent_id="a1")
    clock.advance(5.0)
    pool.task_failed("t1", error="flaky")
    clock.advance(0.5)
    pool.task_assigned("t1", agent_id="a1")

    q = registry.performance(window_s=60).latency.assignment_latency_s
    assert q.count == 2
    assert q.max == pytest.approx(1.0)
    assert q.mean == pytest.approx(0.75)


def test_tool_calls_feed_rate_latency_and_error_rate(
    registry: obs.Registry, clock: FakeClock
) -> None:
    for i in range(10):
        registry.tool_call("discover_components", duration_s=0.5,
                           error="TimeoutError" if i < 3 else None)
    clock.advance(10)

    perf = registry.performance(window_s=60)
    assert perf.throughput.tool_calls_per_s == pytest.approx(10 / 10)
    assert perf.errors.tool_error_rate == pytest.approx(0.3)
    assert perf.latency.tools["discover_components"].count == 10
    (tool,) = registry.metrics().tools
    assert (tool.name, tool.calls, tool.errors) == ("discover_components", 10, 3)


def test_empty_registry_reports_zeros_and_null_latencies(registry: obs.Registry) -> None:
    perf = registry.performance()
    assert perf.window_s == 300
    assert perf.throughput.tasks_completed == 0
    assert perf.throughput.tasks_completed_per_s == 0.0
    assert perf.latency.task_duration_s.count == 0
    assert perf.latency.task_duration_s.p95 is None
    assert perf.errors.task_error_rate == 0.0
    assert perf.utilization.agents_busy_ratio == 0.0
    assert perf.utilization.agents == {}


def test_resources_come_from_the_sampler(registry: obs.Registry) -> None:
    perf = registry.performance(window_s=60)
    assert perf.resources.process_cpu_percent == 12.5
    assert perf.resources.process_rss_bytes == 50 << 20


def test_real_sampler_reports_this_process() -> None:
    perf = obs.Registry().performance(window_s=60)
    assert perf.resources.process_rss_bytes > 0
    assert perf.resources.process_cpu_percent >= 0.0


def test_report_carries_trace_id_and_generated_at(registry: obs.Registry) -> None:
    with obs.trace("perf-trace"):
        perf = registry.performance(window_s=60)
    assert perf.trace_id == "perf-trace"
    assert perf.generated_at.timestamp() == EPOCH
    assert perf.generated_at.utcoffset() is not None
    assert registry.performance(window_s=60, trace_id="given").trace_id == "given"


@pytest.mark.parametrize("window_s", [1, 1.5, 300, 3600, 86_400])
def test_every_window_in_range_is_accepted(registry: obs.Registry, window_s: float) -> None:
    assert registry.performance(window_s=window_s).window_s == window_s
