"""Alerts: every built-in rule's condition, entities, onset, lifecycle and silence; dedup;
custom rules and rule errors; filters; log events.  All on a fake clock."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime

import pytest
import structlog
from _workloads import spawn
from conftest import FakeClock

import dionysus_observability as obs
from dionysus_observability.alerts import (
    BUILTIN_RULES,
    MAX_AFFECTED_TASKS,
    MAX_TRACE_IDS,
    RULE_ERROR,
    AlertEngine,
)
from dionysus_observability.resources import ResourceSample

GIB = 1 << 30
WINDOW_S = obs.Thresholds().window_s


def at(t: float) -> datetime:
    """A registry-clock time as the UTC datetime the reports carry."""
    return datetime.fromtimestamp(t, UTC)


def alerts_of(registry: obs.Registry, rule: str | None = None,
              state: str = "all") -> list[obs.Alert]:
    return [a for a in registry.alerts(state=state) if rule is None or a.rule == rule]


def only(registry: obs.Registry, rule: str, state: str = "all") -> obs.Alert:
    """The one alert of ``rule`` (fails if there are none or several)."""
    found = alerts_of(registry, rule, state)
    assert len(found) == 1, [(a.rule, a.state, a.affected) for a in found]
    return found[0]


def registry_with(clock: FakeClock, **thresholds: float) -> obs.Registry:
    """A registry on the fake clock with the given thresholds changed from the defaults."""
    return obs.Registry(clock=clock, thresholds=obs.Thresholds(**thresholds),
                        resources=obs.StaticResources())


def assert_pending_then_firing(registry: obs.Registry, clock: FakeClock, rule: str, *,
                               for_s: float) -> obs.Alert:
    """The one alert of ``rule``, checked to be pending now and firing ``for_s`` later."""
    assert only(registry, rule).state is obs.AlertState.PENDING
    clock.advance(for_s)
    alert = only(registry, rule)
    assert alert.state is obs.AlertState.FIRING
    return alert


def assert_resolved(registry: obs.Registry, rule: str, when: float) -> obs.Alert:
    """The one alert of ``rule``, checked to be resolved at registry-clock time ``when``."""
    alert = only(registry, rule)
    assert alert.state is obs.AlertState.RESOLVED
    assert alert.resolved_at == at(when)
    return alert


def names(alert: obs.Alert) -> list[tuple[str, str]]:
    return [(e.kind.value, e.id) for e in alert.affected]


def memory_alert_firing(registry: obs.Registry, clock: FakeClock, *, memory: float,
                        after_s: float) -> tuple[obs.Pool, obs.Alert]:
    """Agent a1 of pool daedalus reports ``memory`` and the clock moves ``after_s`` on; its
    ``agent_high_memory`` alert is then firing.  Returns the pool and that alert."""
    pool = registry.pool("daedalus")
    spawn(pool, "a1")
    pool.agent_health("a1", memory=memory)
    clock.advance(after_s)
    alert = only(registry, "agent_high_memory")
    assert alert.state is obs.AlertState.FIRING
    return pool, alert


def run_task(pool: obs.Pool, task_id: str, agent_id: str, *, ok: bool = True,
             task_type: str = "migration") -> None:
    pool.task_submitted(task_id, task_type=task_type)
    pool.task_assigned(task_id, agent_id=agent_id)
    if ok:
        pool.task_completed(task_id)
    else:
        pool.task_failed(task_id, error="TimeoutError: model call", retrying=False)


# -- agent_high_memory --------------------------------------------------------------------


def test_high_memory_agent_goes_pending_then_fires_a_warning_naming_only_that_agent(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1", "a2")
    pool.agent_health("a2", memory=0.50, cpu=0.2)
    onset = clock.now
    with obs.trace("trace-mem-1"):
        pool.agent_health("a1", memory=0.90, cpu=0.2)

    alert = only(registry, "agent_high_memory")
    assert alert.state is obs.AlertState.PENDING
    assert alert.severity is obs.Severity.WARNING
    assert names(alert) == [("agent", "a1")]
    assert alert.started_at == at(onset)
    assert (alert.value, alert.threshold) == (0.90, 0.85)
    assert alert.trace_ids == ["trace-mem-1"]
    assert "a1" in alert.summary and "a2" not in alert.summary

    clock.advance(59)
    pool.agent_health("a1", memory=0.91)
    assert only(registry, "agent_high_memory").state is obs.AlertState.PENDING

    clock.advance(1)
    firing = only(registry, "agent_high_memory")
    assert firing.state is obs.AlertState.FIRING
    assert firing.id == alert.id
    assert firing.started_at == at(onset)
    assert firing.value == 0.91


def test_memory_over_the_critical_level_escalates_the_same_alert(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1")
    onset = clock.now
    pool.agent_health("a1", memory=0.88)
    first = only(registry, "agent_high_memory")

    clock.advance(70)
    pool.agent_health("a1", memory=0.97)
    alert = only(registry, "agent_high_memory")
    assert alert.id == first.id
    assert alert.severity is obs.Severity.CRITICAL
    assert alert.threshold == 0.95
    assert alert.started_at == at(onset)
    assert alert.state is obs.AlertState.FIRING


def test_memory_back_under_the_warning_level_resolves_the_alert(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool, _ = memory_alert_firing(registry, clock, memory=0.90, after_s=120)

    clock.advance(10)
    pool.agent_health("a1", memory=0.40)
    clock.advance(5)
    # a gauge: resolved at the evaluation that saw it clear
    resolved = assert_resolved(registry, "agent_high_memory", clock.now)
    assert registry.alerts() == []
    assert alerts_of(registry, state="resolved") == [resolved]


def test_memory_just_under_the_warning_level_raises_nothing(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1")
    for _ in range(10):
        pool.agent_health("a1", memory=0.849, cpu=0.899)
        clock.advance(60)
        assert registry.alerts(state="all") == []


def test_agent_retired_while_its_memory_is_high_resolves_at_retirement(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool, _ = memory_alert_firing(registry, clock, memory=0.93, after_s=90)

    clock.advance(10)
    retired_at = clock.now
    pool.agent_retired("a1")
    clock.advance(50)
    assert_resolved(registry, "agent_high_memory", retired_at)


# -- agent_high_cpu -----------------------------------------------------------------------


def test_high_cpu_fires_after_two_minutes_and_resolves_when_cpu_drops(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1", "a2")
    pool.agent_health("a2", cpu=0.5)
    onset = clock.now
    pool.agent_health("a1", cpu=0.93)

    alert = only(registry, "agent_high_cpu")
    assert (alert.state, alert.severity) == (obs.AlertState.PENDING, obs.Severity.WARNING)
    assert names(alert) == [("agent", "a1")]
    assert alert.threshold == 0.90

    clock.advance(119)
    assert only(registry, "agent_high_cpu").state is obs.AlertState.PENDING
    clock.advance(1)
    pool.agent_health("a1", cpu=0.99)
    alert = only(registry, "agent_high_cpu")
    assert alert.state is obs.AlertState.FIRING
    assert alert.severity is obs.Severity.CRITICAL
    assert alert.started_at == at(onset)

    pool.agent_health("a1", cpu=0.3)
    assert only(registry, "agent_high_cpu").state is obs.AlertState.RESOLVED


# -- agent_degraded -----------------------------------------------------------------------


def test_degraded_agent_fires_after_a_minute_and_resolves_when_healthy_again(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1", "a2")
    clock.advance(5)
    onset = clock.now
    with obs.trace("trace-health"):
        pool.agent_health("a1", memory=0.5)
    pool.agent_state("a1", "degraded")
    clock.advance(5)

    alert = only(registry, "agent_degraded")
    assert (alert.state, alert.severity) == (obs.AlertState.PENDING, obs.Severity.WARNING)
    assert names(alert) == [("agent", "a1")]
    assert alert.started_at == at(onset)
    assert alert.trace_ids == ["trace-health"]

    clock.advance(30)
    assert only(registry, "agent_degraded").started_at == at(onset)
    clock.advance(24)
    assert only(registry, "agent_degraded").state is obs.AlertState.PENDING
    clock.advance(1)
    assert only(registry, "agent_degraded").state is obs.AlertState.FIRING

    clock.advance(10)
    pool.agent_state("a1", "idle")
    assert_resolved(registry, "agent_degraded", clock.now)


def test_agent_degraded_briefly_and_recovered_before_its_for_never_fires(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1")
    pool.agent_state("a1", "degraded")
    assert only(registry, "agent_degraded").state is obs.AlertState.PENDING
    clock.advance(20)
    pool.agent_state("a1", "idle")
    assert registry.alerts(state="all") == []


# -- task_failures ------------------------------------------------------------------------


def test_task_failure_rate_over_the_window_fires_naming_the_pool(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus", max_retries=1)
    spawn(pool, "a1", "a2")
    start = clock.now
    for i in range(3):
        run_task(pool, f"ok{i}", "a1")
    clock.advance(1)
    with obs.trace("trace-f1"):
        run_task(pool, "bad1", "a2", ok=False)
    # 1 failed of 4 ended: below the five-task minimum, so no rate alert yet
    assert [a for a in alerts_of(registry, "task_failures")
            if names(a) == [("pool", "daedalus")]] == []
    clock.advance(1)
    with obs.trace("trace-f2"):
        run_task(pool, "bad2", "a1", ok=False, task_type="discovery")

    rate = [a for a in alerts_of(registry, "task_failures") if names(a) == [("pool", "daedalus")]]
    assert len(rate) == 1
    alert = rate[0]
    assert alert.state is obs.AlertState.FIRING  # for 0: the window already smooths it
    assert alert.value == pytest.approx(2 / 5)
    assert alert.threshold == 0.2
    assert alert.started_at == at(start + 2)  # the second the fifth task ended
    assert set(alert.trace_ids) == {"trace-f1", "trace-f2"}
    assert "migration 1" in alert.summary and "discovery 1" in alert.summary

    clock.advance(100)
    run_task(pool, "ok9", "a1")
    again = next(a for a in alerts_of(registry, "task_failures") if a.id == alert.id)
    assert again.started_at == at(start + 2)
    assert again.state is obs.AlertState.FIRING

    clock.advance(WINDOW_S)
    resolved = next(a for a in alerts_of(registry, "task_failures") if a.id == alert.id)
    assert resolved.state is obs.AlertState.RESOLVED


def test_tasks_failed_after_all_retries_are_one_alert_per_type_naming_pool_tasks_and_agents(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus", max_retries=2)
    spawn(pool, "a1", "a2")
    with obs.trace("trace-t1"):
        pool.task_submitted("t1", task_type="migration")
    pool.task_assigned("t1", agent_id="a1")
    pool.task_failed("t1", error="TimeoutError: first")  # retried: no alert
    assert alerts_of(registry, "task_failures") == []

    clock.advance(3)
    failed_at = clock.now
    pool.task_assigned("t1", agent_id="a2")
    pool.task_failed("t1", error="TimeoutError: second")  # the last attempt
    alert = only(registry, "task_failures")
    assert alert.state is obs.AlertState.FIRING
    assert names(alert) == [("pool", "daedalus"), ("task", "t1"), ("agent", "a2")]
    assert alert.started_at == at(failed_at)
    assert alert.trace_ids == ["trace-t1"]
    assert "migration" in alert.summary and "TimeoutError: second" in alert.summary

    clock.advance(100)
    with obs.trace("trace-t2"):
        pool.task_submitted("t2", task_type="migration")
    pool.task_assigned("t2", agent_id="a1")
    pool.task_failed("t2", error="ValueError", retrying=False)
    last_at = clock.now
    alert = only(registry, "task_failures")  # the same alert, now naming both tasks
    assert names(alert) == [("pool", "daedalus"), ("task", "t2"), ("task", "t1"),
                            ("agent", "a2"), ("agent", "a1")]
    assert alert.started_at == at(failed_at)
    assert alert.value == 2
    assert alert.trace_ids == ["trace-t1", "trace-t2"]

    clock.advance(WINDOW_S - 1)
    assert only(registry, "task_failures").state is obs.AlertState.FIRING
    clock.advance(1)
    assert_resolved(registry, "task_failures", last_at + WINDOW_S)


def test_final_failures_of_two_task_types_are_two_alerts(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus", max_retries=1)
    spawn(pool, "a1")
    run_task(pool, "m1", "a1", ok=False, task_type="migration")
    run_task(pool, "d1", "a1", ok=False, task_type="discovery")
    found = alerts_of(registry, "task_failures")
    assert sorted(names(a)[1] for a in found) == [("task", "d1"), ("task", "m1")]
    assert len({a.id for a in found}) == 2


def test_task_failures_go_pending_first_when_given_a_for_duration(clock: FakeClock) -> None:
    registry = registry_with(clock, task_failures_for_s=30)
    pool = registry.pool("daedalus", max_retries=1)
    spawn(pool, "a1")
    failed_at = clock.now
    run_task(pool, "t1", "a1", ok=False)
    alert = assert_pending_then_firing(registry, clock, "task_failures", for_s=30)
    assert alert.started_at == at(failed_at)


def test_completed_tasks_and_retried_attempts_raise_no_task_failure_alert(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus", max_retries=3)
    spawn(pool, "a1")
    for i in range(20):
        pool.task_submitted(f"t{i}")
        pool.task_assigned(f"t{i}", agent_id="a1")
        pool.task_failed(f"t{i}", error="flaky")  # retried
        pool.task_assigned(f"t{i}", agent_id="a1")
        pool.task_completed(f"t{i}")
        clock.advance(10)
    assert alerts_of(registry, "task_failures") == []


# -- queue_buildup ------------------------------------------------------------------------


def test_queue_over_its_ratio_goes_pending_then_fires_naming_the_types_piling_up(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus", max_queue=10)  # warns at 8 pending
    spawn(pool, "a1")
    for i in range(5):
        pool.task_submitted(f"m{i}", task_type="migration")
    for i in range(2):
        pool.task_submitted(f"d{i}", task_type="discovery")
    assert alerts_of(registry, "queue_buildup") == []

    clock.advance(4)
    onset = clock.now
    with obs.trace("trace-q"):
        pool.task_submitted("d2", task_type="discovery")
    alert = only(registry, "queue_buildup")
    assert (alert.state, alert.severity) == (obs.AlertState.PENDING, obs.Severity.WARNING)
    assert names(alert) == [("pool", "daedalus")]
    assert alert.started_at == at(onset)
    assert (alert.value, alert.threshold) == (0.8, 0.8)
    assert "migration 5" in alert.summary and "discovery 3" in alert.summary
    assert "trace-q" in alert.trace_ids

    clock.advance(59)
    assert only(registry, "queue_buildup").state is obs.AlertState.PENDING
    clock.advance(1)
    alert = only(registry, "queue_buildup")
    assert alert.state is obs.AlertState.FIRING
    assert alert.started_at == at(onset)

    pool.task_assigned("m0", agent_id="a1")  # drains to 7 pending
    clock.advance(1)
    assert_resolved(registry, "queue_buildup", clock.now)


def test_rejected_tasks_make_the_queue_alert_critical_at_once(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus", max_queue=4)
    for i in range(4):
        pool.task_submitted(f"t{i}", task_type="migration")
    clock.advance(10)
    rejected_at = clock.now
    pool.task_rejected(task_type="migration", reason="queue_full")

    alert = only(registry, "queue_buildup")
    assert alert.severity is obs.Severity.CRITICAL
    assert alert.state is obs.AlertState.FIRING
    assert alert.started_at == at(rejected_at - 10)  # the queue was over before
    assert "1 rejected" in alert.summary
    for i in range(4):
        pool.task_cancelled(f"t{i}")  # the queue drains; the rejection still counts

    clock.advance(WINDOW_S - 1)
    assert only(registry, "queue_buildup").severity is obs.Severity.CRITICAL
    clock.advance(1)
    assert_resolved(registry, "queue_buildup", rejected_at + WINDOW_S)


def test_rejections_between_two_queries_still_show_as_a_resolved_alert(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus", max_queue=100)
    assert registry.alerts(state="all") == []
    clock.advance(5)
    first = clock.now
    pool.task_rejected(task_type="discovery")
    clock.advance(20)
    pool.task_rejected(task_type="discovery")
    clock.advance(WINDOW_S + 100)

    alert = only(registry, "queue_buildup")
    assert alert.state is obs.AlertState.RESOLVED
    assert alert.severity is obs.Severity.CRITICAL
    assert alert.started_at == at(first)
    assert alert.resolved_at == at(first + 20 + WINDOW_S)


# -- assignment_latency -------------------------------------------------------------------


def test_slow_assignments_fire_after_a_minute_and_resolve_when_the_window_moves_on(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus", size=6)
    spawn(pool, *(f"a{i}" for i in range(6)))
    for i in range(6):
        pool.task_submitted(f"t{i}")
    clock.advance(2)
    assigned_at = clock.now
    for i in range(6):
        pool.task_assigned(f"t{i}", agent_id=f"a{i}")
        pool.task_completed(f"t{i}")

    alert = only(registry, "assignment_latency")
    assert (alert.state, alert.severity) == (obs.AlertState.PENDING, obs.Severity.WARNING)
    assert names(alert) == [("pool", "daedalus")]
    assert alert.value == pytest.approx(2.0, rel=0.01)
    assert alert.threshold == 0.5
    onset = math.floor(assigned_at / 10) * 10  # to the ten-second sketch bucket
    assert alert.started_at == at(onset)

    clock.advance(30)
    assert only(registry, "assignment_latency").started_at == at(onset)
    clock.advance(40)
    assert only(registry, "assignment_latency").state is obs.AlertState.FIRING

    clock.advance(WINDOW_S)
    assert only(registry, "assignment_latency").state is obs.AlertState.RESOLVED


def test_fast_assignments_or_too_few_raise_no_latency_alert(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1")
    for i in range(4):  # slow but fewer than five samples
        pool.task_submitted(f"slow{i}")
        clock.advance(3)
        pool.task_assigned(f"slow{i}", agent_id="a1")
        pool.task_completed(f"slow{i}")
    assert alerts_of(registry, "assignment_latency") == []
    for i in range(200):
        pool.task_submitted(f"fast{i}")
        clock.advance(0.1)
        pool.task_assigned(f"fast{i}", agent_id="a1")
        pool.task_completed(f"fast{i}")
    assert alerts_of(registry, "assignment_latency") == []


# -- rollback_failed ----------------------------------------------------------------------


def test_failed_rollback_fires_critical_at_once_and_resolves_on_a_later_success(
    registry: obs.Registry, clock: FakeClock
) -> None:
    rb = registry.rollbacks
    rb.checkpoint_created("cp1", component="api/x.py")
    rb.checkpoint_created("cp2", component="api/y.py")
    clock.advance(10)
    failed_at = clock.now
    with obs.trace("trace-rb"):
        rb.record("cp1", succeeded=False, duration_s=4.0, error="checksum mismatch")

    alert = only(registry, "rollback_failed")
    assert (alert.state, alert.severity) == (obs.AlertState.FIRING, obs.Severity.CRITICAL)
    assert names(alert) == [("checkpoint", "cp1")]
    assert alert.started_at == at(failed_at)
    assert alert.trace_ids == ["trace-rb"]
    assert "checksum mismatch" in alert.summary and "api/x.py" in alert.summary

    clock.advance(30)
    rb.record("cp1", succeeded=False, duration_s=2.0, error="checksum mismatch")
    alert = only(registry, "rollback_failed")
    assert alert.started_at == at(failed_at)
    assert alert.value == 2

    clock.advance(20)
    fixed_at = clock.now
    rb.record("cp1", succeeded=True, duration_s=3.0)
    clock.advance(15)
    # an event: resolved exactly when it cleared
    assert_resolved(registry, "rollback_failed", fixed_at)


def test_failed_rollback_resolves_by_itself_after_the_window(
    registry: obs.Registry, clock: FakeClock
) -> None:
    rb = registry.rollbacks
    failed_at = clock.now
    rb.record("cp9", succeeded=False, duration_s=1.0, error="disk full")
    assert only(registry, "rollback_failed").state is obs.AlertState.FIRING
    clock.advance(WINDOW_S + 60)
    assert_resolved(registry, "rollback_failed", failed_at + WINDOW_S)


def test_rollback_that_failed_and_was_retried_between_queries_shows_resolved(
    registry: obs.Registry, clock: FakeClock
) -> None:
    rb = registry.rollbacks
    assert registry.alerts(state="all") == []
    clock.advance(5)
    failed_at = clock.now
    rb.record("cp1", succeeded=False, duration_s=1.0, error="locked")
    clock.advance(7)
    rb.record("cp1", succeeded=True, duration_s=1.0)
    clock.advance(60)

    assert registry.alerts() == []
    alert = only(registry, "rollback_failed", state="resolved")
    assert alert.started_at == at(failed_at)
    assert alert.resolved_at == at(failed_at + 7)


def test_successful_rollbacks_raise_no_rollback_alert(
    registry: obs.Registry, clock: FakeClock
) -> None:
    for i in range(50):
        registry.rollbacks.record(f"cp{i}", succeeded=True, duration_s=29.9)
        clock.advance(30)
    assert registry.alerts(state="all") == []


# -- rollback_slow ------------------------------------------------------------------------


def test_slow_rollback_fires_a_warning_with_its_duration(
    registry: obs.Registry, clock: FakeClock
) -> None:
    rb = registry.rollbacks
    rb.checkpoint_created("cp1", component="api/x.py")
    with obs.trace("trace-slow"), rb.rollback("cp1"):
        clock.advance(41.2)
    done_at = clock.now

    alert = only(registry, "rollback_slow")
    assert (alert.state, alert.severity) == (obs.AlertState.FIRING, obs.Severity.WARNING)
    assert names(alert) == [("checkpoint", "cp1")]
    assert alert.value == pytest.approx(41.2)
    assert alert.threshold == 30.0
    assert alert.started_at == at(done_at)
    assert alert.trace_ids == ["trace-slow"]
    assert alerts_of(registry, "rollback_failed") == []

    clock.advance(100)
    assert only(registry, "rollback_slow").started_at == at(done_at)
    rb.record("cp1", succeeded=True, duration_s=5.0)  # a fast one clears it
    assert only(registry, "rollback_slow").state is obs.AlertState.RESOLVED


def test_slow_rollback_goes_pending_first_with_a_for_duration(clock: FakeClock) -> None:
    registry = registry_with(clock, rollback_slow_for_s=60)
    registry.rollbacks.record("cp1", succeeded=True, duration_s=35.0)
    assert_pending_then_firing(registry, clock, "rollback_slow", for_s=60)
    clock.advance(WINDOW_S)
    assert only(registry, "rollback_slow").state is obs.AlertState.RESOLVED


# -- pipeline_failed ----------------------------------------------------------------------


def test_failed_pipeline_fires_critical_naming_it_and_resolves_when_rerun(
    registry: obs.Registry, clock: FakeClock
) -> None:
    with obs.trace("trace-mig"):
        run = registry.pipeline("mig-7", kind="migration", total_items=40)
    ok = registry.pipeline("disc-1", kind="discovery")
    run.stage("migrating")
    run.progress(succeeded=3, failed=1)
    clock.advance(20)
    failed_at = clock.now
    run.fail("ImportError: legacy module")
    ok.succeed()

    alert = only(registry, "pipeline_failed")
    assert (alert.state, alert.severity) == (obs.AlertState.FIRING, obs.Severity.CRITICAL)
    assert names(alert) == [("pipeline", "mig-7")]
    assert alert.started_at == at(failed_at)
    assert alert.trace_ids == ["trace-mig"]
    assert "ImportError" in alert.summary and "migrating" in alert.summary

    clock.advance(60)
    assert only(registry, "pipeline_failed").started_at == at(failed_at)
    rerun_at = clock.now
    registry.pipeline("mig-7", kind="migration", total_items=40)
    assert_resolved(registry, "pipeline_failed", rerun_at)


def test_failed_pipeline_resolves_after_the_window(
    registry: obs.Registry, clock: FakeClock
) -> None:
    run = registry.pipeline("disc-2", kind="discovery")
    failed_at = clock.now
    run.fail("scanner crashed")
    clock.advance(WINDOW_S - 1)
    assert only(registry, "pipeline_failed").state is obs.AlertState.FIRING
    clock.advance(1)
    assert_resolved(registry, "pipeline_failed", failed_at + WINDOW_S)


def test_pipeline_failed_goes_pending_first_with_a_for_duration(clock: FakeClock) -> None:
    registry = registry_with(clock, pipeline_failed_for_s=10)
    registry.pipeline("p1").fail("boom")
    assert_pending_then_firing(registry, clock, "pipeline_failed", for_s=10)


# -- pipeline_stalled ---------------------------------------------------------------------


def test_pipeline_without_progress_for_the_stall_time_fires_and_resolves_on_progress(
    registry: obs.Registry, clock: FakeClock
) -> None:
    with obs.trace("trace-stall"):
        run = registry.pipeline("mig-8", kind="migration", total_items=10)
    busy = registry.pipeline("mig-9", kind="migration", total_items=10)
    clock.advance(30)
    run.progress(succeeded=1)
    last_progress = clock.now
    for _ in range(20):
        clock.advance(30)
        busy.progress(succeeded=0, failed=0)
        if clock.now - last_progress < 600:
            assert alerts_of(registry, "pipeline_stalled") == []
    clock.advance(15)

    alert = only(registry, "pipeline_stalled")
    assert (alert.state, alert.severity) == (obs.AlertState.FIRING, obs.Severity.WARNING)
    assert names(alert) == [("pipeline", "mig-8")]
    assert alert.started_at == at(last_progress + 600)
    assert alert.threshold == 600
    assert alert.trace_ids == ["trace-stall"]

    clock.advance(120)
    assert only(registry, "pipeline_stalled").started_at == at(last_progress + 600)
    run.progress(succeeded=1)
    assert only(registry, "pipeline_stalled").state is obs.AlertState.RESOLVED


def test_pipeline_stalled_goes_pending_first_with_a_for_duration(clock: FakeClock) -> None:
    registry = registry_with(clock, pipeline_stalled_for_s=60)
    run = registry.pipeline("p1")
    clock.advance(600)
    assert_pending_then_firing(registry, clock, "pipeline_stalled", for_s=60)
    run.succeed()
    assert_resolved(registry, "pipeline_stalled", clock.now)


# -- isolation_breach ---------------------------------------------------------------------


def test_agents_sharing_a_context_window_fire_a_critical_breach_naming_both(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus")
    pool.agent_spawned("a1", context_window_id="cw1", tool_session_id="ts1",
                       memory_handle_id="mh1")
    pool.agent_spawned("a3", context_window_id="cw3", tool_session_id="ts3",
                       memory_handle_id="mh3")
    clock.advance(12)
    shared_at = clock.now
    pool.agent_spawned("a2", context_window_id="cw1", tool_session_id="ts2",
                       memory_handle_id="mh1")
    clock.advance(3)

    alert = only(registry, "isolation_breach")
    assert (alert.state, alert.severity) == (obs.AlertState.FIRING, obs.Severity.CRITICAL)
    assert names(alert) == [("agent", "a1"), ("agent", "a2")]
    assert alert.started_at == at(shared_at)
    assert "context_window_id cw1" in alert.summary and "memory_handle_id mh1" in alert.summary

    clock.advance(100)
    assert only(registry, "isolation_breach").started_at == at(shared_at)
    pool.agent_retired("a2")
    assert only(registry, "isolation_breach").state is obs.AlertState.RESOLVED


def test_isolated_agents_raise_no_breach(registry: obs.Registry) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1", "a2", "a3")
    registry.pool("other").agent_spawned("b1", context_window_id="cw-b1")
    assert alerts_of(registry, "isolation_breach") == []


def test_isolation_breach_goes_pending_first_with_a_for_duration(clock: FakeClock) -> None:
    registry = registry_with(clock, isolation_breach_for_s=5)
    pool = registry.pool("daedalus")
    pool.agent_spawned("a1", tool_session_id="ts")
    pool.agent_spawned("a2", tool_session_id="ts")
    assert_pending_then_firing(registry, clock, "isolation_breach", for_s=5)


# -- process_high_memory ------------------------------------------------------------------


def test_process_memory_over_its_ratio_fires_after_a_minute_and_resolves(
    clock: FakeClock,
) -> None:
    resources = obs.StaticResources(rss_bytes=1 * GIB, total_memory_bytes=16 * GIB)
    registry = obs.Registry(clock=clock, resources=resources)
    assert registry.alerts(state="all") == []

    resources.value = ResourceSample(50.0, int(15.2 * GIB), 16 * GIB)
    first_seen = clock.now
    alert = only(registry, "process_high_memory")
    assert (alert.state, alert.severity) == (obs.AlertState.PENDING, obs.Severity.WARNING)
    assert [e.kind.value for e in alert.affected] == ["process"]
    assert alert.value == pytest.approx(0.95)
    assert alert.threshold == 0.9
    assert alert.started_at == at(first_seen)  # no history: the first evaluation that saw it

    clock.advance(60)
    alert = only(registry, "process_high_memory")
    assert alert.state is obs.AlertState.FIRING
    assert alert.started_at == at(first_seen)

    resources.value = ResourceSample(50.0, 2 * GIB, 16 * GIB)
    assert only(registry, "process_high_memory").state is obs.AlertState.RESOLVED


# -- a healthy system ---------------------------------------------------------------------


def test_a_healthy_busy_system_raises_no_alert_of_any_rule(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus", size=4, max_queue=100, max_retries=3)
    spawn(pool, "a1", "a2", "a3", "a4")
    run = registry.pipeline("mig-1", kind="migration", total_items=200)
    registry.rollbacks.checkpoint_created("cp0", component="api/x.py")
    n = 0
    for step in range(60):  # half an hour, a query every 30 s
        for agent in ("a1", "a2", "a3", "a4"):
            pool.agent_health(agent, memory=0.6, cpu=0.7)
            pool.task_submitted(f"t{n}", task_type="migration" if n % 2 else "research")
            clock.advance(0.1)
            pool.task_assigned(f"t{n}", agent_id=agent)
            pool.task_started(f"t{n}")
            clock.advance(2)
            if n % 10 == 3:  # one attempt in ten fails and is retried successfully
                pool.task_failed(f"t{n}", error="flaky")
                pool.task_assigned(f"t{n}", agent_id=agent)
            pool.task_completed(f"t{n}")
            n += 1
        run.progress(succeeded=3, failed=0 if step % 7 else 1)
        if step % 10 == 0:
            registry.rollbacks.record("cp0", succeeded=True, duration_s=4.0)
        clock.advance(20)
        assert registry.alerts(state="all") == [], f"step {step}"
    run.succeed()
    assert registry.alerts(state="all") == []
    assert {r.name for r in BUILTIN_RULES} == {
        "agent_high_memory", "agent_high_cpu", "agent_degraded", "task_failures",
        "queue_buildup", "assignment_latency", "rollback_failed", "rollback_slow",
        "pipeline_failed", "pipeline_stalled", "isolation_breach", "process_high_memory"}


# -- lifecycle: dedup, flapping, gaps between queries -------------------------------------


def test_a_persisting_condition_is_one_alert_across_many_samples_and_queries(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1")
    onset = clock.now
    ids = set()
    for i in range(200):
        pool.agent_health("a1", memory=0.86 + (i % 5) / 100)
        if i % 4 == 0:
            found = registry.alerts(state="all")
            assert len(found) == 1
            ids.add(found[0].id)
            assert found[0].started_at == at(onset)
        clock.advance(3)
    assert len(ids) == 1
    assert len(registry.alerts(state="all")) == 1


def test_alert_id_is_a_fingerprint_of_rule_and_entities(clock: FakeClock) -> None:
    def memory_alert_id(agent_id: str) -> str:
        reg = obs.Registry(clock=clock, resources=obs.StaticResources())
        pool = reg.pool("daedalus")
        spawn(pool, agent_id)
        pool.agent_health(agent_id, memory=0.9)
        return only(reg, "agent_high_memory").id

    assert memory_alert_id("a1") == memory_alert_id("a1")
    assert memory_alert_id("a1") != memory_alert_id("a2")


def test_keep_firing_for_stops_a_flapping_value_from_flapping_the_alert(
    clock: FakeClock,
) -> None:
    registry = registry_with(clock, keep_firing_for_s=60)
    onset = clock.now
    pool, first = memory_alert_firing(registry, clock, memory=0.9, after_s=60)
    for _ in range(5):  # dips under the threshold for 20 s at a time
        pool.agent_health("a1", memory=0.8)
        clock.advance(20)
        assert only(registry, "agent_high_memory").state is obs.AlertState.FIRING
        pool.agent_health("a1", memory=0.9)
        clock.advance(20)
        alert = only(registry, "agent_high_memory")
        assert (alert.state, alert.id, alert.started_at) == (
            obs.AlertState.FIRING, first.id, at(onset))

    pool.agent_health("a1", memory=0.5)
    clock.advance(30)
    missed_at = clock.now  # the first evaluation that found it cleared, as in Prometheus
    assert only(registry, "agent_high_memory").state is obs.AlertState.FIRING
    clock.advance(59)
    assert only(registry, "agent_high_memory").state is obs.AlertState.FIRING
    clock.advance(1)
    assert_resolved(registry, "agent_high_memory", missed_at + 60)


def test_memory_spike_that_came_and_went_between_two_queries_is_not_reported(
    registry: obs.Registry, clock: FakeClock
) -> None:
    """Gauges are judged when evaluated, like Prometheus judges a gauge (docs/alerts.md)."""
    pool = registry.pool("daedalus")
    spawn(pool, "a1")
    assert registry.alerts(state="all") == []
    pool.agent_health("a1", memory=0.99)
    clock.advance(120)
    pool.agent_health("a1", memory=0.3)
    clock.advance(10)
    assert registry.alerts(state="all") == []


def test_condition_that_cleared_and_began_again_between_queries_starts_a_new_episode(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool, first = memory_alert_firing(registry, clock, memory=0.9, after_s=100)

    clock.advance(10)
    pool.agent_health("a1", memory=0.5)
    clock.advance(10)
    again = clock.now
    pool.agent_health("a1", memory=0.9)
    clock.advance(5)
    alert = only(registry, "agent_high_memory")
    assert alert.id == first.id
    assert alert.state is obs.AlertState.PENDING
    assert alert.started_at == at(again)


def test_resolved_alerts_stay_visible_for_fifteen_minutes_then_go(
    registry: obs.Registry, clock: FakeClock
) -> None:
    registry.rollbacks.record("cp1", succeeded=False, duration_s=1.0, error="x")
    resolved_at = clock.now + WINDOW_S
    clock.advance(WINDOW_S)
    assert only(registry, "rollback_failed").state is obs.AlertState.RESOLVED
    clock.advance(899)
    assert only(registry, "rollback_failed").resolved_at == at(resolved_at)
    clock.advance(1)
    assert registry.alerts(state="all") == []
    clock.advance(3600)
    assert registry.alerts(state="all") == []  # the old episode is not brought back


def test_new_episode_after_resolution_reuses_the_id_with_a_new_onset(
    registry: obs.Registry, clock: FakeClock
) -> None:
    rb = registry.rollbacks
    rb.record("cp1", succeeded=False, duration_s=1.0, error="x")
    first = only(registry, "rollback_failed")
    clock.advance(10)
    rb.record("cp1", succeeded=True, duration_s=1.0)
    assert only(registry, "rollback_failed").state is obs.AlertState.RESOLVED
    clock.advance(10)
    second_at = clock.now
    rb.record("cp1", succeeded=False, duration_s=1.0, error="y")
    alert = only(registry, "rollback_failed")
    assert (alert.id, alert.state, alert.started_at) == (
        first.id, obs.AlertState.FIRING, at(second_at))
    assert alert.resolved_at is None


def test_alert_count_stays_bounded_whatever_the_number_of_failures(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus", max_retries=1)
    spawn(pool, "a1")
    start = clock.now
    for i in range(3000):  # far more failures than the state keeps between two queries
        run_task(pool, f"t{i}", "a1", ok=False)
        clock.advance(0.1)
        if i % 500 == 0:
            registry.alerts()
    found = alerts_of(registry, "task_failures")
    assert len(found) == 2  # the rate and the migration tasks that ended failed
    for alert in found:
        assert alert.state is obs.AlertState.FIRING
        assert alert.started_at == at(start)
        assert len(alert.trace_ids) <= MAX_TRACE_IDS
        assert len(alert.affected) <= 1 + 2 * MAX_AFFECTED_TASKS


# -- queries, filters, logs ---------------------------------------------------------------


def test_state_and_severity_filters_and_counts(registry: obs.Registry, clock: FakeClock) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1", "a2")
    pool.agent_health("a1", memory=0.9)                     # warning, pending
    registry.rollbacks.record("cp1", succeeded=False, duration_s=1.0)  # critical, firing
    registry.rollbacks.record("cp2", succeeded=False, duration_s=1.0)
    registry.rollbacks.record("cp2", succeeded=True, duration_s=1.0)   # resolved

    assert {a.rule for a in registry.alerts()} == {"agent_high_memory", "rollback_failed"}
    assert [a.rule for a in registry.alerts("firing")] == ["rollback_failed"]
    assert [a.rule for a in registry.alerts("pending")] == ["agent_high_memory"]
    assert [names(a) for a in registry.alerts("resolved")] == [[("checkpoint", "cp2")]]
    everything = registry.alerts("all")
    assert [a.state.value for a in everything] == ["firing", "pending", "resolved"]
    assert [a.rule for a in registry.alerts("all", severity="warning")] == ["agent_high_memory"]
    assert registry.alerts("ALL", severity=obs.Severity.CRITICAL) == [
        a for a in everything if a.severity is obs.Severity.CRITICAL]

    report = registry.alerts_report("all", trace_id="req-1")
    assert report.counts == {"critical": 2, "warning": 1, "info": 0}
    assert report.trace_id == "req-1"
    assert report.generated_at == at(clock.now)
    assert registry.alerts_report(severity="info").counts == {
        "critical": 0, "warning": 0, "info": 0}


@pytest.mark.parametrize(("state", "severity"), [("open", None), ("active", "fatal"),
                                                 ("", None), ("active", "")])
def test_unknown_filters_raise_invalid_value(registry: obs.Registry, state: str,
                                             severity: str | None) -> None:
    with pytest.raises(obs.InvalidValueError):
        registry.alerts(state=state, severity=severity)


def test_every_state_change_is_logged_with_id_rule_entities_and_trace_ids(
    registry: obs.Registry, clock: FakeClock
) -> None:
    pool = registry.pool("daedalus")
    spawn(pool, "a1")
    with structlog.testing.capture_logs() as logs:
        with obs.trace("trace-log"):
            pool.agent_health("a1", memory=0.9)
        registry.alerts()
        registry.alerts()  # no change: no new event
        clock.advance(60)
        registry.alerts()
        pool.agent_health("a1", memory=0.1)
        registry.alerts()
    events = [e for e in logs if e["event"].startswith("alert.")]
    assert [e["event"] for e in events] == ["alert.pending", "alert.firing", "alert.resolved"]
    assert [e["log_level"] for e in events] == ["info", "warning", "info"]
    alert_id = events[0]["alert_id"]
    for event in events:
        assert event["alert_id"] == alert_id
        assert event["rule"] == "agent_high_memory"
        assert event["severity"] == "warning"
        assert event["affected"] == ["agent:a1"]
        assert event["trace_ids"] == ["trace-log"]
    assert events[1]["previous_state"] == "pending"


# -- custom rules -------------------------------------------------------------------------


class ToolErrorRule:
    """A custom rule in the protocol form: a tool with any errors is a warning."""

    name = "tool_errors"
    for_s = 0.0

    def evaluate(self, ctx: obs.RuleContext) -> Iterable[obs.AlertCondition]:
        for tool in ctx.metrics().tools:
            if tool.errors:
                yield obs.AlertCondition(
                    affected=[("tool", tool.name)],
                    summary=f"tool {tool.name} raised {tool.errors} times",
                    value=tool.errors,
                )


def test_custom_rules_as_protocol_objects_and_callables_fire_beside_builtins(
    clock: FakeClock,
) -> None:
    def busy_pool(ctx: obs.RuleContext) -> list[obs.AlertCondition]:
        util = ctx.performance().utilization.agents_busy_ratio
        return [obs.AlertCondition(affected=[(obs.EntityKind.POOL, "daedalus")],
                                   summary="pool busy", severity="info", value=util,
                                   started_at=ctx.now - 5)]

    registry = obs.Registry(clock=clock, resources=obs.StaticResources(),
                            rules=[ToolErrorRule(), busy_pool])
    registry.tool_call("discover_components", duration_s=0.2, error="OSError")
    registry.rollbacks.record("cp1", succeeded=False, duration_s=1.0)

    by_rule = {a.rule: a for a in registry.alerts()}
    assert set(by_rule) == {"tool_errors", "busy_pool", "rollback_failed"}
    assert names(by_rule["tool_errors"]) == [("tool", "discover_components")]
    assert by_rule["tool_errors"].state is obs.AlertState.FIRING
    assert by_rule["busy_pool"].severity is obs.Severity.INFO
    assert by_rule["busy_pool"].started_at == at(clock.now - 5)


def test_a_rule_naming_the_same_entities_twice_yields_one_alert_at_the_worse_severity(
    clock: FakeClock,
) -> None:
    def twice(ctx: obs.RuleContext) -> list[obs.AlertCondition]:
        return [obs.AlertCondition(affected=[("agent", "a1")], summary="meh"),
                obs.AlertCondition(affected=[("agent", "a1")], summary="bad",
                                   severity=obs.Severity.CRITICAL),
                obs.AlertCondition(affected=[("agent", "a1")], summary="meh again")]

    registry = obs.Registry(clock=clock, resources=obs.StaticResources(), rules=[twice])
    (alert,) = registry.alerts()
    assert (alert.severity, alert.summary) == (obs.Severity.CRITICAL, "bad")


def test_raising_custom_rule_becomes_a_rule_error_and_other_alerts_still_come(
    clock: FakeClock,
) -> None:
    calls = {"n": 0}

    def fragile(ctx: obs.RuleContext) -> list[obs.AlertCondition]:
        calls["n"] += 1
        if calls["n"] in (2, 3):
            raise RuntimeError("metrics backend away")
        return [obs.AlertCondition(affected=[("pool", "p")], summary="always")]

    registry = obs.Registry(clock=clock, resources=obs.StaticResources(), rules=[fragile])
    registry.rollbacks.record("cp1", succeeded=False, duration_s=1.0)
    first = {a.rule: a for a in registry.alerts()}
    assert set(first) == {"fragile", "rollback_failed"}

    clock.advance(10)
    second = {a.rule: a for a in registry.alerts()}
    assert set(second) == {"fragile", "rollback_failed", RULE_ERROR}
    error = second[RULE_ERROR]
    assert error.severity is obs.Severity.WARNING
    assert error.state is obs.AlertState.FIRING
    assert "fragile" in error.summary and "RuntimeError: metrics backend away" in error.summary
    assert second["fragile"].state is obs.AlertState.FIRING  # kept, not resolved
    assert second["fragile"].id == first["fragile"].id

    clock.advance(10)
    assert {a.rule for a in registry.alerts()} == {"fragile", "rollback_failed", RULE_ERROR}
    clock.advance(10)
    assert {a.rule for a in registry.alerts()} == {"fragile", "rollback_failed"}
    assert only(registry, RULE_ERROR).state is obs.AlertState.RESOLVED


def test_malformed_conditions_and_reentrant_rules_are_rule_errors(clock: FakeClock) -> None:
    def wrong_type(ctx: obs.RuleContext) -> list[object]:
        return ["not a condition"]

    def wrong_kind(ctx: obs.RuleContext) -> list[obs.AlertCondition]:
        return [obs.AlertCondition(affected=[("galaxy", "m31")], summary="x")]

    def reentrant(ctx: obs.RuleContext) -> list[obs.AlertCondition]:
        ctx.registry.alerts()
        return []

    registry = obs.Registry(clock=clock, resources=obs.StaticResources(),
                            rules=[wrong_type, wrong_kind, reentrant])
    errors = registry.alerts()
    assert {a.rule for a in errors} == {RULE_ERROR}
    summaries = sorted(a.summary for a in errors)
    assert len(summaries) == 3
    assert any("reentrant" in s and "inside an alert rule" in s for s in summaries)
    assert any("wrong_kind" in s and "galaxy" in s for s in summaries)
    assert any("wrong_type" in s and "not AlertCondition" in s for s in summaries)
    assert len({a.id for a in errors}) == 3


def test_bad_custom_rules_are_refused_when_the_registry_is_built() -> None:
    def agent_high_memory(ctx: obs.RuleContext) -> list[obs.AlertCondition]:
        return []

    def twin(ctx: obs.RuleContext) -> list[obs.AlertCondition]:
        return []

    with pytest.raises(obs.InvalidValueError, match="built-in"):
        obs.Registry(rules=[agent_high_memory])
    with pytest.raises(obs.InvalidValueError, match="repeat"):
        obs.Registry(rules=[twin, twin])
    with pytest.raises(obs.InvalidValueError, match="callable"):
        obs.Registry(rules=[type("R", (), {"name": "r"})()])
    assert AlertEngine([twin]).rule_names[-1] == "twin"


@pytest.mark.parametrize("bad", [
    {"agent_memory_warning": 0.96},
    {"queue_warning_ratio": 1.5},
    {"window_s": 0},
    {"keep_firing_for_s": -1},
    {"pipeline_stall_s": math.inf},
])
def test_inconsistent_thresholds_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(obs.InvalidValueError):
        obs.Thresholds(**bad)


def test_every_builtin_default_for_is_at_most_five_minutes() -> None:
    th = obs.Thresholds()
    for rule in BUILTIN_RULES:
        assert 0 <= th.for_s(rule.name) <= 300, rule.name
    assert th.for_s("rollback_failed") == 0
    assert th.resolved_retention_s == 900
