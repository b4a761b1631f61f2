"""Spec 020 coordination pool: agent and task state machines, retries, queue, busy time."""

from __future__ import annotations

import pytest
from _workloads import spawn
from conftest import FakeClock

import dionysus_observability as obs
from dionysus_observability.reports import AgentInfo, PoolInfo


def pool_info(registry: obs.Registry, name: str = "daedalus") -> PoolInfo:
    """The named pool's section of the metrics report."""
    (info,) = [p for p in registry.metrics().coordination.pools if p.name == name]
    return info


def agent_info(registry: obs.Registry, agent_id: str) -> AgentInfo:
    """The named agent's entry of the metrics report."""
    (info,) = [a for a in registry.metrics().agents.items if a.id == agent_id]
    return info


def state_of(registry: obs.Registry, agent_id: str) -> str:
    return agent_info(registry, agent_id).state.value


def one_task(registry: obs.Registry, clock: FakeClock, *, wait_s: float = 0.0, run_s: float,
             idle_s: float = 0.0) -> None:
    """Agent a1 of pool daedalus takes task t1 ``wait_s`` after its submission and completes
    it ``run_s`` later; then the clock moves ``idle_s`` on."""
    pool = registry.pool("daedalus")
    spawn(pool, "a1")
    pool.task_submitted("t1")
    clock.advance(wait_s)
    pool.task_assigned("t1", agent_id="a1")
    clock.advance(run_s)
    pool.task_completed("t1")
    clock.advance(idle_s)


# -- agent state machine ---------------------------------------------------------------


def test_spawned_agent_is_idle_and_isolated(registry: obs.Registry) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1")

    info = agent_info(registry, "a1")
    assert info.state is obs.AgentState.IDLE
    assert info.pool == "daedalus"
    assert info.isolated is True
    assert info.current_task_id is None
    assert registry.metrics().agents.total == 1


def test_agent_walks_idle_analyzing_executing_idle_through_a_task(registry: obs.Registry) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1")
    pool.task_submitted("t1", task_type="migration")

    pool.task_assigned("t1", agent_id="a1")
    assert state_of(registry, "a1") == "analyzing"
    assert agent_info(registry, "a1").current_task_id == "t1"

    pool.task_started("t1")
    assert state_of(registry, "a1") == "executing"

    pool.task_completed("t1")
    info = agent_info(registry, "a1")
    assert info.state is obs.AgentState.IDLE
    assert info.current_task_id is None
    assert info.tasks_completed == 1
    assert registry.metrics().dropped_events == {}


def test_task_started_is_optional_and_completion_from_analyzing_frees_the_agent(
    registry: obs.Registry, clock: FakeClock
) -> None:
    one_task(registry, clock, run_s=4.0)

    info = agent_info(registry, "a1")
    assert info.state is obs.AgentState.IDLE
    assert info.tasks_completed == 1
    assert info.avg_task_time_s == pytest.approx(4.0)
    assert pool_info(registry).tasks_by_status["completed"] == 1
    assert registry.metrics().dropped_events == {}


@pytest.mark.parametrize("before", ["idle", "analyzing", "executing"])
def test_any_state_can_become_degraded_and_degraded_returns_to_idle(
    registry: obs.Registry, before: str
) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1")
    pool.task_submitted("t1")
    if before in ("analyzing", "executing"):
        pool.task_assigned("t1", agent_id="a1")
    if before == "executing":
        pool.task_started("t1")
    assert state_of(registry, "a1") == before

    pool.agent_state("a1", "DEGRADED")  # any case is accepted
    assert state_of(registry, "a1") == "degraded"
    assert registry.metrics().agents.by_state["degraded"] == 1

    pool.agent_state("a1", obs.AgentState.IDLE)
    assert state_of(registry, "a1") == "idle"
    assert registry.metrics().dropped_events == {}


def test_degraded_agent_stays_degraded_when_its_task_ends(registry: obs.Registry) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1")
    pool.task_submitted("t1")
    pool.task_assigned("t1", agent_id="a1")
    pool.task_started("t1")
    pool.agent_state("a1", "degraded")

    pool.task_completed("t1")

    info = agent_info(registry, "a1")
    assert info.state is obs.AgentState.DEGRADED
    assert info.tasks_completed == 1
    assert info.current_task_id is None


def test_degraded_agent_receives_no_task(registry: obs.Registry) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1")
    pool.agent_state("a1", "degraded")
    pool.task_submitted("t1")

    pool.task_assigned("t1", agent_id="a1")

    assert registry.metrics().dropped_events == {"invalid_transition": 1}
    assert pool_info(registry).tasks_by_status["pending"] == 1
    assert state_of(registry, "a1") == "degraded"


def test_retired_agent_leaves_the_report(registry: obs.Registry) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1", "a2")
    pool.agent_retired("a1")

    report = registry.metrics()
    assert [a.id for a in report.agents.items] == ["a2"]
    assert report.agents.total == 1


def test_health_sample_is_reported_as_fractions(registry: obs.Registry) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1")
    pool.agent_health("a1", memory=0.93, cpu=0.2)

    info = agent_info(registry, "a1")
    assert info.memory == pytest.approx(0.93)
    assert info.cpu == pytest.approx(0.2)
    perf = registry.performance(window_s=60)
    assert perf.resources.agent_memory_max == pytest.approx(0.93)
    assert perf.resources.agent_cpu_max == pytest.approx(0.2)


def test_shared_isolation_id_is_recorded_not_rejected(registry: obs.Registry) -> None:
    pool = registry.pool("daedalus")
    pool.agent_spawned("a1", context_window_id="cw", tool_session_id="ts1", memory_handle_id="m1")
    pool.agent_spawned("a2", context_window_id="cw", tool_session_id="ts2", memory_handle_id="m2")
    spawn(pool, "a3")

    report = registry.metrics()
    isolated = {a.id: a.isolated for a in report.agents.items}
    assert isolated == {"a1": False, "a2": False, "a3": True}
    assert report.dropped_events == {}


def test_context_switch_counted_when_an_agent_takes_another_task(registry: obs.Registry) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1")
    for task_id in ("t1", "t2", "t3"):
        pool.task_submitted(task_id)
        pool.task_assigned(task_id, agent_id="a1")
        pool.task_completed(task_id)

    assert agent_info(registry, "a1").context_switches == 2


# -- task state machine ----------------------------------------------------------------


def test_task_walks_pending_in_progress_completed(registry: obs.Registry) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1")
    pool.task_submitted("t1", task_type="migration")
    assert pool_info(registry).tasks_by_status == {
        "pending": 1, "in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0}

    pool.task_assigned("t1", agent_id="a1")
    assert pool_info(registry).tasks_by_status == {
        "pending": 0, "in_progress": 1, "completed": 0, "failed": 0, "cancelled": 0}

    pool.task_completed("t1")
    assert pool_info(registry).tasks_by_status == {
        "pending": 0, "in_progress": 0, "completed": 1, "failed": 0, "cancelled": 0}


def test_pending_and_in_progress_tasks_can_be_cancelled(registry: obs.Registry) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1")
    pool.task_submitted("queued")
    pool.task_submitted("running")
    pool.task_assigned("running", agent_id="a1")
    pool.task_started("running")

    pool.task_cancelled("queued")
    pool.task_cancelled("running")

    info = pool_info(registry)
    assert info.tasks_by_status == {
        "pending": 0, "in_progress": 0, "completed": 0, "failed": 0, "cancelled": 2}
    assert state_of(registry, "a1") == "idle"
    assert agent_info(registry, "a1").current_task_id is None


def test_pending_task_that_fails_ends_failed_at_once(registry: obs.Registry) -> None:
    pool = registry.pool("daedalus", max_retries=3)
    pool.task_submitted("t1")
    pool.task_failed("t1", error="discovery service down")

    info = pool_info(registry)
    assert info.tasks_by_status["failed"] == 1
    assert info.tasks_by_status["pending"] == 0
    assert info.retries == 0


def test_task_retried_until_max_retries_then_failed(registry: obs.Registry) -> None:
    pool = registry.pool("daedalus", max_retries=3)
    spawn(pool, "a1", "a2", "a3")
    pool.task_submitted("t1", task_type="migration")

    pool.task_assigned("t1", agent_id="a1")
    pool.task_failed("t1", error="TimeoutError: 1")
    info = pool_info(registry)
    assert info.tasks_by_status["pending"] == 1  # back in the queue
    assert info.retries == 1
    assert state_of(registry, "a1") == "idle"

    pool.task_assigned("t1", agent_id="a2")
    pool.task_started("t1")
    pool.task_failed("t1", error="TimeoutError: 2")
    assert pool_info(registry).retries == 2
    assert pool_info(registry).tasks_by_status["pending"] == 1

    pool.task_assigned("t1", agent_id="a3")  # third and last attempt
    pool.task_failed("t1", error="TimeoutError: 3")

    info = pool_info(registry)
    assert info.tasks_by_status == {
        "pending": 0, "in_progress": 0, "completed": 0, "failed": 1, "cancelled": 0}
    assert info.retries == 2
    assert info.max_retries == 3
    failed_by_agent = {a.id: a.tasks_failed for a in registry.metrics().agents.items}
    assert failed_by_agent == {"a1": 1, "a2": 1, "a3": 1}
    perf = registry.performance(window_s=300)
    assert perf.throughput.tasks_failed == 1
    assert perf.throughput.tasks_retried == 2
    assert perf.errors.task_error_rate == 1.0  # retried attempts do not count here
    assert registry.metrics().dropped_events == {}


def test_retried_task_can_then_complete(registry: obs.Registry) -> None:
    pool = registry.pool("daedalus", max_retries=3)
    spawn(pool, "a1", "a2")
    pool.task_submitted("t1")
    pool.task_assigned("t1", agent_id="a1")
    pool.task_failed("t1", error="flaky")
    pool.task_assigned("t1", agent_id="a2")
    pool.task_completed("t1")

    info = pool_info(registry)
    assert info.tasks_by_status["completed"] == 1
    assert info.tasks_by_status["failed"] == 0
    assert info.retries == 1
    assert registry.performance(window_s=300).errors.task_error_rate == 0.0


def test_retrying_false_fails_the_task_on_its_first_attempt(registry: obs.Registry) -> None:
    pool = registry.pool("daedalus", max_retries=3)
    spawn(pool, "a1")
    pool.task_submitted("t1")
    pool.task_assigned("t1", agent_id="a1")
    pool.task_failed("t1", error="fatal", retrying=False)

    info = pool_info(registry)
    assert info.tasks_by_status["failed"] == 1
    assert info.retries == 0


def test_retrying_true_retries_past_max_retries(registry: obs.Registry) -> None:
    pool = registry.pool("daedalus", max_retries=1)
    spawn(pool, "a1")
    pool.task_submitted("t1")
    for _ in range(3):
        pool.task_assigned("t1", agent_id="a1")
        pool.task_failed("t1", error="again", retrying=True)

    info = pool_info(registry)
    assert info.tasks_by_status["pending"] == 1
    assert info.tasks_by_status["failed"] == 0
    assert info.retries == 3


def test_task_completed_twice_counts_once_and_the_repeat_is_dropped(
    registry: obs.Registry,
) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1")
    pool.task_submitted("t1")
    pool.task_assigned("t1", agent_id="a1")
    pool.task_completed("t1")
    pool.task_completed("t1")

    report = registry.metrics()
    assert pool_info(registry).tasks_by_status["completed"] == 1
    assert agent_info(registry, "a1").tasks_completed == 1
    assert report.dropped_events == {"duplicate": 1}
    assert registry.performance(window_s=60).throughput.tasks_completed == 1


def test_tasks_by_type_counts_submissions_and_folds_case(registry: obs.Registry) -> None:
    pool = registry.pool("daedalus")
    pool.task_submitted("t1", task_type="migration")
    pool.task_submitted("t2", task_type="MIGRATION")
    pool.task_submitted("t3", task_type="maintenance")  # unknown types are accepted

    info = pool_info(registry)
    assert info.tasks_by_type == {"migration": 2, "maintenance": 1}
    assert info.pending_by_type == {"migration": 2, "maintenance": 1}


def test_unknown_task_types_are_bounded(clock: FakeClock) -> None:
    registry = obs.Registry(clock=clock, limits=obs.Limits(task_types=4),
                            resources=obs.StaticResources())
    pool = registry.pool("daedalus")
    for i in range(50):
        pool.task_submitted(f"t{i}", task_type=f"custom-{i}")

    info = pool_info(registry)
    assert len(info.tasks_by_type) <= 5
    assert sum(info.tasks_by_type.values()) == 50


# -- queue, rejections ----------------------------------------------------------------


def test_queue_depth_counts_pending_tasks_only(registry: obs.Registry) -> None:
    pool = registry.pool("daedalus", max_queue=10)
    spawn(pool, "a1", "a2")
    for i in range(5):
        pool.task_submitted(f"t{i}", task_type="discovery" if i < 3 else "heartbeat")
    pool.task_assigned("t0", agent_id="a1")
    pool.task_assigned("t3", agent_id="a2")

    info = pool_info(registry)
    assert info.queue_depth == 3
    assert info.max_queue == 10
    assert info.tasks_by_status["pending"] == 3
    assert info.tasks_by_status["in_progress"] == 2
    assert info.pending_by_type == {"discovery": 2, "heartbeat": 1}
    assert info.utilization == 1.0  # both live agents busy now
    perf = registry.performance(window_s=60)
    assert perf.utilization.queue_saturation == {"daedalus": pytest.approx(0.3)}


def test_rejections_are_counted_by_type(registry: obs.Registry) -> None:
    pool = registry.pool("daedalus", max_queue=2)
    pool.task_submitted("t1", task_type="migration")
    pool.task_submitted("t2", task_type="migration")
    pool.task_rejected(task_type="migration", reason="queue_full")
    pool.task_rejected(task_type="Migration", reason="queue_full")
    pool.task_rejected(task_type="heartbeat")

    info = pool_info(registry)
    assert info.rejected == 3
    assert info.rejected_by_type == {"migration": 2, "heartbeat": 1}
    assert info.queue_depth == 2  # rejected tasks never entered the queue
    assert registry.performance(window_s=60).throughput.tasks_rejected == 3
    assert registry.performance(window_s=60).utilization.queue_saturation["daedalus"] == 1.0


def test_pool_handle_is_the_same_for_a_name_and_later_settings_update_it(
    registry: obs.Registry,
) -> None:
    first = registry.pool("daedalus", size=4, max_queue=100)
    second = registry.pool("daedalus", size=8)
    assert first is second

    info = pool_info(registry)
    assert info.size == 8
    assert info.max_queue == 100
    assert info.max_size == 16


# -- time-weighted busy ratio ---------------------------------------------------------


def test_agent_busy_30s_of_a_60s_window_has_busy_ratio_one_half(
    registry: obs.Registry, clock: FakeClock
) -> None:
    one_task(registry, clock, wait_s=10, run_s=30, idle_s=20)

    perf = registry.performance(window_s=60)
    assert perf.utilization.agents == {"a1": pytest.approx(0.5)}
    assert perf.utilization.agents_busy_ratio == pytest.approx(0.5)


def test_an_ongoing_busy_interval_counts_toward_the_busy_ratio(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1", "a2")
    pool.task_submitted("t1")
    clock.advance(30)
    pool.task_assigned("t1", agent_id="a1")
    pool.task_started("t1")
    clock.advance(30)  # still executing

    perf = registry.performance(window_s=60)
    assert perf.utilization.agents["a1"] == pytest.approx(0.5)
    assert perf.utilization.agents["a2"] == 0.0
    assert perf.utilization.agents_busy_ratio == pytest.approx(0.25)


def test_busy_time_across_bucket_boundaries_is_time_weighted(
    registry: obs.Registry, clock: FakeClock
) -> None:
    one_task(registry, clock, wait_s=5, run_s=32, idle_s=23)

    assert registry.performance(window_s=60).utilization.agents["a1"] == pytest.approx(32 / 60)


def test_busy_time_outside_the_window_does_not_count(
    registry: obs.Registry, clock: FakeClock
) -> None:
    one_task(registry, clock, run_s=30, idle_s=170)  # now = start + 200

    assert registry.performance(window_s=60).utilization.agents["a1"] == 0.0
    assert registry.performance(window_s=200).utilization.agents["a1"] == pytest.approx(0.15)


def test_degraded_time_is_not_busy_time(registry: obs.Registry, clock: FakeClock) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1")
    pool.task_submitted("t1")
    pool.task_assigned("t1", agent_id="a1")
    clock.advance(20)
    pool.agent_state("a1", "degraded")
    clock.advance(40)

    assert registry.performance(window_s=60).utilization.agents["a1"] == pytest.approx(1 / 3)


# -- bounded memory and evictions -----------------------------------------------------


def test_completed_failed_cancelled_survive_eviction_of_old_tasks(clock: FakeClock) -> None:
    registry = obs.Registry(clock=clock, limits=obs.Limits(finished_tasks_per_pool=10),
                            resources=obs.StaticResources())
    pool = registry.pool("daedalus", max_retries=1)
    spawn(pool, "a1")
    for i in range(100):
        task_id = f"t{i}"
        pool.task_submitted(task_id)
        if i % 10 == 9:
            pool.task_cancelled(task_id)
            continue
        pool.task_assigned(task_id, agent_id="a1")
        if i % 10 == 8:
            pool.task_failed(task_id, error="boom")
        else:
            pool.task_completed(task_id)

    report = registry.metrics()
    (info,) = report.coordination.pools
    assert info.tasks_by_status == {
        "pending": 0, "in_progress": 0, "completed": 80, "failed": 10, "cancelled": 10}
    assert report.evicted["tasks"] >= 80
    held = len(pool._s.finished) + len(pool._s.finished_old)
    assert held <= 10
    assert report.evicted["tasks"] + held == 100
    assert report.dropped_events == {}


def test_memory_stays_bounded_over_50k_lifecycles(clock: FakeClock) -> None:
    limits = obs.Limits(finished_tasks_per_pool=100, trace_events=50, retired_agents=4)
    registry = obs.Registry(clock=clock, limits=limits, resources=obs.StaticResources())
    pool = registry.pool("daedalus")
    spawn(pool, "a1")
    with obs.trace("bounded"):
        for i in range(50_000):
            task_id = f"t{i}"
            pool.task_submitted(task_id, task_type="migration")
            pool.task_assigned(task_id, agent_id="a1")
            pool.task_completed(task_id)
            if i % 100 == 0:
                clock.advance(1.0)
    for i in range(20):
        spawn(pool, f"tmp{i}")
        pool.agent_retired(f"tmp{i}")

    state = registry._state
    s = pool._s
    assert len(s.tasks) == 0
    assert len(s.finished) + len(s.finished_old) <= 100
    assert len(state.trace_events) <= 50
    assert len(s.retired) <= 4
    assert len(s.type_names) <= 4 * limits.task_types
    report = registry.metrics()
    assert report.coordination.pools[0].tasks_by_status["completed"] == 50_000
    assert report.evicted["tasks"] >= 49_900
    assert report.evicted["trace_events"] == 150_000 - 50
    assert report.evicted["agents"] == 16
    perf = registry.performance(window_s=3600)
    assert perf.throughput.tasks_completed == 50_000
    assert perf.latency.assignment_latency_s.count == 50_000


def test_busy_ratio_of_an_unaligned_window_is_within_one_bucket_of_exact(
    registry: obs.Registry, clock: FakeClock
) -> None:
    # Busy time is kept in 10 s buckets, so a window that does not start on a bucket
    # boundary is read from the boundary before it: the error is at most 10 s / window.
    bucket_s = 10.0
    # now = start + 95; the last 60 s hold 5 s of busy time
    one_task(registry, clock, run_s=40, idle_s=55)

    for window_s, exact in ((60, 5 / 60), (300, 40 / 95), (17, 0.0)):
        got = registry.performance(window_s=window_s).utilization.agents["a1"]
        assert abs(got - exact) <= bucket_s / window_s, (window_s, got, exact)
