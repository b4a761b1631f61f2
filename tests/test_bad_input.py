"""Every kind of bad hook input, in both modes.

Default mode: the hook does not raise; the event is dropped, counted in
``dropped_events`` by reason and logged as a warning.  ``strict=True``: the hook raises
the matching ``ObservabilityError`` subclass (also a ``ValueError`` or ``KeyError``),
whose message names the bad value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import structlog
from conftest import FakeClock

import dionysus_observability as obs

Action = Callable[[obs.Registry], Any]


class Case:
    """One bad input: ``setup`` (valid calls) then ``act`` (the bad call)."""

    def __init__(
        self,
        name: str,
        act: Action,
        error: type[obs.ObservabilityError],
        reason: str,
        names: str,
        setup: Action | None = None,
    ) -> None:
        self.name = name
        self.act = act
        self.setup = setup
        self.error = error
        self.reason = reason
        self.names = names  # a fragment of the message that names the bad value

    def __repr__(self) -> str:
        return self.name


def pool(registry: obs.Registry) -> obs.Pool:
    return registry.pool("daedalus", max_retries=3)


def one_agent(registry: obs.Registry) -> None:
    pool(registry).agent_spawned("a1")


def two_agents_one_pending_task(registry: obs.Registry) -> None:
    p = pool(registry)
    p.agent_spawned("a1")
    p.agent_spawned("a2")
    p.task_submitted("t1")


def task_in_progress(registry: obs.Registry) -> None:
    two_agents_one_pending_task(registry)
    pool(registry).task_assigned("t1", agent_id="a1")


def task_started(registry: obs.Registry) -> None:
    task_in_progress(registry)
    pool(registry).task_started("t1")


def task_completed(registry: obs.Registry) -> None:
    task_in_progress(registry)
    pool(registry).task_completed("t1")


def degraded_agent(registry: obs.Registry) -> None:
    one_agent(registry)
    pool(registry).agent_state("a1", "degraded")


def checkpoint(registry: obs.Registry) -> None:
    registry.rollbacks.checkpoint_created("cp1", component="api/x.py")


def expired_checkpoint(registry: obs.Registry) -> None:
    checkpoint(registry)
    registry.rollbacks.checkpoint_expired("cp1")


def finished_run(registry: obs.Registry) -> obs.PipelineRun:
    """A pipeline run that has already succeeded."""
    run = registry.pipeline("mig-7-handle", total_items=1)
    run.succeed()
    return run


def submit_and_assign(registry: obs.Registry, task_id: str) -> None:
    """Submit ``task_id`` (valid) and assign it to agent a1 (the call under test)."""
    pool(registry).task_submitted(task_id)
    pool(registry).task_assigned(task_id, agent_id="a1")


def health(**kwargs: Any) -> Action:
    return lambda r: pool(r).agent_health("a1", **kwargs)


def checkpoint_with(**kwargs: Any) -> Action:
    options: dict[str, Any] = {"component": "api/x.py", **kwargs}
    return lambda r: r.rollbacks.checkpoint_created("cp9", **options)


def progress(**kwargs: Any) -> Action:
    return lambda r: r.pipeline("mig-7", total_items=10).progress(**kwargs)


LONG_ID = "x" * 257
IVE, UEE, ITE, DEE = (obs.InvalidValueError, obs.UnknownEntityError,
                      obs.InvalidTransitionError, obs.DuplicateEventError)

CASES = [
    # -- bad ids: not a string, empty, too long -------------------------------------
    Case("agent id not a string", lambda r: pool(r).agent_spawned(123), IVE, "invalid_id", "123"),
    Case("agent id empty", lambda r: pool(r).agent_spawned(""), IVE, "invalid_id", "''"),
    Case("agent id too long", lambda r: pool(r).agent_spawned(LONG_ID), IVE, "invalid_id",
         "'xxxxxxxxxx"),
    Case("isolation id not a string",
         lambda r: pool(r).agent_spawned("a2", context_window_id=7), IVE, "invalid_id", "7"),
    Case("isolation id empty", lambda r: pool(r).agent_spawned("a2", memory_handle_id=""),
         IVE, "invalid_id", "''"),
    Case("task id None", lambda r: pool(r).task_submitted(None), IVE, "invalid_id", "None"),
    Case("task id empty", lambda r: pool(r).task_submitted(""), IVE, "invalid_id", "''"),
    Case("task id too long", lambda r: pool(r).task_submitted(LONG_ID), IVE, "invalid_id",
         "'xxxxxxxxxx"),
    Case("task type empty", lambda r: pool(r).task_submitted("t1", task_type=""), IVE,
         "invalid_id", "''"),
    Case("task type not a string", lambda r: pool(r).task_submitted("t1", task_type=3), IVE,
         "invalid_id", "3"),
    Case("completed task id not a string", lambda r: pool(r).task_completed(42), IVE,
         "invalid_id", "42"),
    Case("assigned agent id None", lambda r: pool(r).task_assigned("t1", agent_id=None), IVE,
         "invalid_id", "None", setup=two_agents_one_pending_task),
    Case("rejected task type empty", lambda r: pool(r).task_rejected(task_type=""), IVE,
         "invalid_id", "''"),
    Case("pool name empty", lambda r: r.pool(""), IVE, "invalid_id", "''"),
    Case("pool name not a string", lambda r: r.pool(b"daedalus"), IVE, "invalid_id",
         "b'daedalus'"),
    Case("pipeline id not a string", lambda r: r.pipeline(5), IVE, "invalid_id", "5"),
    Case("pipeline id too long", lambda r: r.pipeline(LONG_ID), IVE, "invalid_id",
         "'xxxxxxxxxx"),
    Case("stage empty", lambda r: r.pipeline("mig-7").stage(""), IVE, "invalid_id", "''"),
    Case("checkpoint id empty",
         lambda r: r.rollbacks.checkpoint_created("", component="api/x.py"), IVE, "invalid_id",
         "''"),
    Case("checkpoint component empty", checkpoint_with(component=""), IVE, "invalid_id", "''"),
    Case("rollback checkpoint id not a string",
         lambda r: r.rollbacks.record(None, succeeded=True, duration_s=1.0), IVE, "invalid_id",
         "None"),
    Case("tool name empty", lambda r: r.tool_call("", duration_s=0.1), IVE, "invalid_id", "''"),
    # -- unknown task / agent / checkpoint ------------------------------------------
    Case("complete unknown task", lambda r: pool(r).task_completed("ghost"), UEE,
         "unknown_task", "'ghost'"),
    Case("start unknown task", lambda r: pool(r).task_started("ghost"), UEE, "unknown_task",
         "'ghost'"),
    Case("fail unknown task", lambda r: pool(r).task_failed("ghost", error="x"), UEE,
         "unknown_task", "'ghost'"),
    Case("cancel unknown task", lambda r: pool(r).task_cancelled("ghost"), UEE, "unknown_task",
         "'ghost'"),
    Case("assign unknown task", lambda r: pool(r).task_assigned("ghost", agent_id="a1"), UEE,
         "unknown_task", "'ghost'", setup=one_agent),
    Case("assign to unknown agent", lambda r: pool(r).task_assigned("t1", agent_id="ghost"),
         UEE, "unknown_agent", "'ghost'", setup=two_agents_one_pending_task),
    Case("health of unknown agent", lambda r: pool(r).agent_health("ghost", memory=0.5), UEE,
         "unknown_agent", "'ghost'"),
    Case("state of unknown agent", lambda r: pool(r).agent_state("ghost", "idle"), UEE,
         "unknown_agent", "'ghost'"),
    Case("retire unknown agent", lambda r: pool(r).agent_retired("ghost"), UEE,
         "unknown_agent", "'ghost'"),
    Case("expire unknown checkpoint", lambda r: r.rollbacks.checkpoint_expired("nope"), UEE,
         "unknown_checkpoint", "'nope'"),
    Case("delete unknown checkpoint", lambda r: r.rollbacks.checkpoint_deleted("nope"), UEE,
         "unknown_checkpoint", "'nope'"),
    # -- invalid transitions ----------------------------------------------------------
    Case("assign to a busy agent", lambda r: submit_and_assign(r, "t2"), ITE,
         "invalid_transition", "'a1'", setup=task_in_progress),
    Case("assign to a degraded agent", lambda r: submit_and_assign(r, "t1"), ITE,
         "invalid_transition", "'a1'", setup=degraded_agent),
    Case("assign a task already in progress",
         lambda r: pool(r).task_assigned("t1", agent_id="a2"), ITE, "invalid_transition",
         "'t1'", setup=task_in_progress),
    Case("complete a pending task", lambda r: pool(r).task_completed("t1"), ITE,
         "invalid_transition", "'t1'", setup=two_agents_one_pending_task),
    Case("start a pending task", lambda r: pool(r).task_started("t1"), ITE,
         "invalid_transition", "'t1'", setup=two_agents_one_pending_task),
    Case("start a task twice", lambda r: pool(r).task_started("t1"), ITE, "invalid_transition",
         "'t1'", setup=task_started),
    Case("agent idle to executing", lambda r: pool(r).agent_state("a1", "executing"), ITE,
         "invalid_transition", "executing", setup=one_agent),
    Case("agent degraded to analyzing", lambda r: pool(r).agent_state("a1", "analyzing"), ITE,
         "invalid_transition", "analyzing", setup=degraded_agent),
    Case("expire a checkpoint twice", lambda r: r.rollbacks.checkpoint_expired("cp1"), ITE,
         "invalid_transition", "'cp1'", setup=expired_checkpoint),
    Case("pipeline progress after finish",
         lambda r: finished_run(r).progress(succeeded=1), ITE, "invalid_transition",
         "'mig-7-handle'"),
    Case("pipeline stage after finish", lambda r: finished_run(r).stage("testing"), ITE,
         "invalid_transition", "'mig-7-handle'"),
    Case("pipeline succeeds twice", lambda r: finished_run(r).succeed(), ITE,
         "invalid_transition", "'mig-7-handle'"),
    Case("pipeline fails after success", lambda r: finished_run(r).fail("late"), ITE,
         "invalid_transition", "'mig-7-handle'"),
    Case("pipeline cancelled after success", lambda r: finished_run(r).cancel(), ITE,
         "invalid_transition", "'mig-7-handle'"),
    Case("pipeline total after finish", lambda r: finished_run(r).set_total(20), ITE,
         "invalid_transition", "'mig-7-handle'"),
    # -- duplicates -------------------------------------------------------------------
    Case("spawn twice", lambda r: pool(r).agent_spawned("a1"), DEE, "duplicate", "'a1'",
         setup=one_agent),
    Case("submit twice", lambda r: pool(r).task_submitted("t1"), DEE, "duplicate", "'t1'",
         setup=two_agents_one_pending_task),
    Case("submit a finished task again", lambda r: pool(r).task_submitted("t1"), DEE,
         "duplicate", "'t1'", setup=task_completed),
    Case("complete twice", lambda r: pool(r).task_completed("t1"), DEE, "duplicate", "'t1'",
         setup=task_completed),
    Case("cancel a completed task", lambda r: pool(r).task_cancelled("t1"), DEE, "duplicate",
         "'t1'", setup=task_completed),
    Case("fail a completed task", lambda r: pool(r).task_failed("t1", error="late"), DEE,
         "duplicate", "'t1'", setup=task_completed),
    Case("checkpoint created twice", checkpoint_with(), DEE, "duplicate", "'cp9'",
         setup=lambda r: checkpoint_with()(r)),
    # -- fractions out of range, NaN, bool, wrong type --------------------------------
    Case("memory above one", health(memory=1.5), IVE, "invalid_value", "1.5", setup=one_agent),
    Case("memory negative", health(memory=-0.1), IVE, "invalid_value", "-0.1",
         setup=one_agent),
    Case("memory NaN", health(memory=float("nan")), IVE, "invalid_value", "nan",
         setup=one_agent),
    Case("memory infinite", health(memory=float("inf")), IVE, "invalid_value", "inf",
         setup=one_agent),
    Case("memory bool", health(memory=True), IVE, "invalid_value", "True", setup=one_agent),
    Case("memory as text", health(memory="0.5"), IVE, "invalid_value", "'0.5'",
         setup=one_agent),
    Case("memory as percent", health(memory=93), IVE, "invalid_value", "93", setup=one_agent),
    Case("cpu above one", health(cpu=2.0), IVE, "invalid_value", "2.0", setup=one_agent),
    Case("cpu NaN", health(cpu=float("nan")), IVE, "invalid_value", "nan", setup=one_agent),
    # -- counts and progress ----------------------------------------------------------
    Case("negative succeeded", progress(succeeded=-1), IVE, "invalid_value", "-1"),
    Case("negative failed", progress(failed=-2), IVE, "invalid_value", "-2"),
    Case("fractional progress", progress(succeeded=1.5), IVE, "invalid_value", "1.5"),
    Case("bool progress", progress(succeeded=True), IVE, "invalid_value", "True"),
    Case("negative total items", lambda r: r.pipeline("mig-7", total_items=-5), IVE,
         "invalid_value", "-5"),
    Case("negative set_total", lambda r: r.pipeline("mig-7").set_total(-1), IVE,
         "invalid_value", "-1"),
    Case("unknown pipeline kind", lambda r: r.pipeline("mig-7", kind="bogus"), IVE,
         "invalid_value", "'bogus'"),
    Case("pool size zero", lambda r: r.pool("p", size=0), IVE, "invalid_value", "0"),
    Case("pool max_queue negative", lambda r: r.pool("p", max_queue=-1), IVE, "invalid_value",
         "-1"),
    Case("pool max_retries as text", lambda r: r.pool("p", max_retries="3"), IVE,
         "invalid_value", "'3'"),
    Case("negative files", checkpoint_with(files=-1), IVE, "invalid_value", "-1"),
    Case("negative size", checkpoint_with(size_bytes=-1), IVE, "invalid_value", "-1"),
    Case("fractional size", checkpoint_with(size_bytes=1.5), IVE, "invalid_value", "1.5"),
    # -- checksums and retention ------------------------------------------------------
    Case("md5 checksum", checkpoint_with(checksum="md5:abc"), IVE, "invalid_checksum",
         "'md5:abc'"),
    Case("checksum not hex", checkpoint_with(checksum="sha256:" + "z" * 64), IVE,
         "invalid_checksum", "'sha256:zzz"),
    Case("checksum too short", checkpoint_with(checksum="sha256:abc"), IVE, "invalid_checksum",
         "'sha256:abc'"),
    Case("checksum not a string", checkpoint_with(checksum=123), IVE, "invalid_checksum",
         "123"),
    Case("retention zero", checkpoint_with(retention_days=0), IVE, "invalid_value", "0"),
    Case("retention negative", checkpoint_with(retention_days=-1), IVE, "invalid_value", "-1"),
    Case("retention NaN", checkpoint_with(retention_days=float("nan")), IVE, "invalid_value",
         "nan"),
    Case("retention infinite", checkpoint_with(retention_days=float("inf")), IVE,
         "invalid_value", "inf"),
    Case("retention as text", checkpoint_with(retention_days="7"), IVE, "invalid_value",
         "'7'"),
    # -- enum strings, bools, durations -----------------------------------------------
    Case("unknown agent state", lambda r: pool(r).agent_state("a1", "sleeping"), IVE,
         "invalid_value", "'sleeping'", setup=one_agent),
    Case("agent state not a string", lambda r: pool(r).agent_state("a1", 3), IVE,
         "invalid_value", "3", setup=one_agent),
    Case("retrying not a bool", lambda r: pool(r).task_failed("t1", error="x", retrying="yes"),
         IVE, "invalid_value", "'yes'", setup=task_in_progress),
    Case("rollback negative duration",
         lambda r: r.rollbacks.record("cp1", succeeded=True, duration_s=-1.0), IVE,
         "invalid_value", "-1.0", setup=checkpoint),
    Case("rollback NaN duration",
         lambda r: r.rollbacks.record("cp1", succeeded=True, duration_s=float("nan")), IVE,
         "invalid_value", "nan", setup=checkpoint),
    Case("rollback succeeded not a bool",
         lambda r: r.rollbacks.record("cp1", succeeded="yes", duration_s=1.0), IVE,
         "invalid_value", "'yes'", setup=checkpoint),
    Case("tool negative duration", lambda r: r.tool_call("scan", duration_s=-0.5), IVE,
         "invalid_value", "-0.5"),
]


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_bad_input_is_dropped_and_counted_by_reason_in_default_mode(
    case: Case, clock: FakeClock
) -> None:
    registry = obs.Registry(clock=clock, resources=obs.StaticResources())
    if case.setup is not None:
        case.setup(registry)
    assert registry.metrics().dropped_events == {}

    case.act(registry)  # must not raise

    assert registry.metrics().dropped_events == {case.reason: 1}


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_bad_input_raises_a_named_error_in_strict_mode(case: Case, clock: FakeClock) -> None:
    registry = obs.Registry(clock=clock, strict=True, resources=obs.StaticResources())
    if case.setup is not None:
        case.setup(registry)

    with pytest.raises(case.error) as caught:
        case.act(registry)

    err = caught.value
    assert isinstance(err, obs.ObservabilityError)
    builtin = KeyError if case.error is obs.UnknownEntityError else ValueError
    assert isinstance(err, builtin)
    assert err.reason == case.reason
    assert case.names in str(err), f"{str(err)!r} does not name {case.names!r}"
    assert registry.metrics().dropped_events == {}


def test_dropped_event_is_logged_as_a_structured_warning(registry: obs.Registry) -> None:
    with structlog.testing.capture_logs() as logs:
        registry.pool("daedalus").agent_health("ghost", memory=0.5)

    dropped = [e for e in logs if e["event"] == "event.dropped"]
    assert len(dropped) == 1
    assert dropped[0]["log_level"] == "warning"
    assert dropped[0]["reason"] == "unknown_agent"
    assert "'ghost'" in dropped[0]["error"]


def test_drops_are_counted_per_reason(registry: obs.Registry) -> None:
    pool = registry.pool("daedalus")
    pool.task_completed("ghost")
    pool.task_completed("ghost")
    pool.agent_spawned("")
    pool.agent_spawned("a1")
    pool.agent_health("a1", memory=7)

    assert registry.metrics().dropped_events == {
        "unknown_task": 2, "invalid_id": 1, "invalid_value": 1}


def test_rejected_transition_leaves_the_state_unchanged(strict_registry: obs.Registry) -> None:
    task_in_progress(strict_registry)
    p = pool(strict_registry)
    p.task_submitted("t2")

    with pytest.raises(obs.InvalidTransitionError):
        p.task_assigned("t2", agent_id="a1")

    (info,) = strict_registry.metrics().coordination.pools
    assert info.tasks_by_status["pending"] == 1
    assert info.tasks_by_status["in_progress"] == 1
    agents = {a.id: a.current_task_id for a in strict_registry.metrics().agents.items}
    assert agents == {"a1": "t1", "a2": None}


def test_bad_value_is_kept_on_the_exception(strict_registry: obs.Registry) -> None:
    pool(strict_registry).agent_spawned("a1")
    with pytest.raises(obs.InvalidValueError) as caught:
        pool(strict_registry).agent_health("a1", memory=1.5)
    assert caught.value.value == 1.5


@pytest.mark.parametrize("strict", [False, True], ids=["default", "strict"])
@pytest.mark.parametrize(
    ("window_s", "names"),
    [(0, "0"), (86_401, "86401"), (-1, "-1"), (0.5, "0.5"), (float("nan"), "nan"),
     (float("inf"), "inf"), (True, "True"), ("300", "'300'"), (None, "None")],
)
def test_performance_window_out_of_range_raises_in_both_modes(
    clock: FakeClock, strict: bool, window_s: Any, names: str
) -> None:
    registry = obs.Registry(clock=clock, strict=strict, resources=obs.StaticResources())

    with pytest.raises(obs.InvalidValueError) as caught:
        registry.performance(window_s=window_s)

    assert isinstance(caught.value, ValueError)
    assert names in str(caught.value)
