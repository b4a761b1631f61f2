"""Spec 019 pipelines: status, stage, progress, ETA, the context manager, items, eviction."""

from __future__ import annotations

import pytest
from conftest import EPOCH, FakeClock

import dionysus_observability as obs
from dionysus_observability.reports import PipelineRunInfo


def run_info(registry: obs.Registry, pipeline_id: str) -> PipelineRunInfo:
    """The named run's entry of the metrics report."""
    (info,) = [r for r in registry.metrics().pipelines.runs if r.id == pipeline_id]
    return info


def test_new_pipeline_is_running_and_active(registry: obs.Registry) -> None:
    run = registry.pipeline("mig-7", kind="migration", total_items=40)

    assert run.status is obs.PipelineStatus.RUNNING
    report = registry.metrics()
    assert report.pipelines.active == 1
    assert report.pipelines.by_status["running"] == 1
    info = run_info(registry, "mig-7")
    assert info.kind == "migration"
    assert info.status is obs.PipelineStatus.RUNNING
    assert info.total_items == 40
    assert info.started_at.timestamp() == EPOCH
    assert info.started_at.utcoffset() is not None  # timezone-aware
    assert info.finished_at is None


def test_pipeline_returns_the_same_run_for_a_running_id(registry: obs.Registry) -> None:
    first = registry.pipeline("mig-7", kind="migration", total_items=40)
    first.progress(succeeded=2)
    second = registry.pipeline("mig-7", kind="migration", total_items=40)
    second.progress(succeeded=3)

    assert registry.metrics().pipelines.active == 1
    assert run_info(registry, "mig-7").succeeded == 5
    assert registry.metrics().pipelines.items.total == 40


def test_stage_is_reported(registry: obs.Registry) -> None:
    run = registry.pipeline("disc-1", kind="DISCOVERY")
    run.stage("discovery")
    run.stage("assessment")

    info = run_info(registry, "disc-1")
    assert info.stage == "assessment"
    assert info.kind == "discovery"


def test_progress_adds_increments_and_gives_progress_and_eta(
    registry: obs.Registry, clock: FakeClock
) -> None:
    run = registry.pipeline("mig-7", kind="migration", total_items=40)
    clock.advance(10)
    run.progress(succeeded=3, failed=1)

    info = run_info(registry, "mig-7")
    assert (info.succeeded, info.failed) == (3, 1)
    assert info.progress == pytest.approx(0.1)
    # 4 items in 10 s: 0.4 items/s, 36 left -> 90 s
    assert info.eta_s == pytest.approx(90.0)

    clock.advance(10)
    run.progress(succeeded=4)  # an increment, not a running total
    info = run_info(registry, "mig-7")
    assert (info.succeeded, info.failed) == (7, 1)
    assert info.progress == pytest.approx(0.2)
    assert info.eta_s == pytest.approx(32 / (8 / 20))


def test_eta_is_unknown_without_progress_or_total(registry: obs.Registry) -> None:
    registry.pipeline("no-progress", total_items=10)
    run = registry.pipeline("no-total", kind="discovery")
    run.progress(succeeded=5)

    assert run_info(registry, "no-progress").eta_s is None
    assert run_info(registry, "no-total").eta_s is None
    assert run_info(registry, "no-total").progress is None


def test_set_total_grows_the_run_and_the_items_total(registry: obs.Registry) -> None:
    run = registry.pipeline("disc-1", kind="discovery", total_items=10)
    run.set_total(25)

    assert run_info(registry, "disc-1").total_items == 25
    assert registry.metrics().pipelines.items.total == 25


@pytest.mark.parametrize(
    ("finish", "status"),
    [("succeed", "succeeded"), ("fail", "failed"), ("cancel", "cancelled")],
)
def test_finished_pipeline_is_no_longer_active_but_still_listed(
    registry: obs.Registry, clock: FakeClock, finish: str, status: str
) -> None:
    run = registry.pipeline("mig-7", total_items=4)
    clock.advance(12)
    getattr(run, finish)()

    report = registry.metrics()
    assert report.pipelines.active == 0
    assert report.pipelines.by_status[status] == 1
    assert report.pipelines.by_status["running"] == 0
    info = run_info(registry, "mig-7")
    assert info.status.value == status
    assert info.finished_at is not None
    assert info.finished_at.timestamp() == EPOCH + 12
    assert info.eta_s is None


def test_failed_pipeline_keeps_its_error(registry: obs.Registry) -> None:
    run = registry.pipeline("mig-7")
    run.fail("schema mismatch in api/x.py")

    assert run_info(registry, "mig-7").error == "schema mismatch in api/x.py"


def test_context_manager_success_marks_the_run_succeeded(registry: obs.Registry) -> None:
    with registry.pipeline("disc-1", kind="discovery", total_items=3) as run:
        run.progress(succeeded=3)

    assert run.status is obs.PipelineStatus.SUCCEEDED
    assert registry.metrics().pipelines.by_status["succeeded"] == 1


def test_context_manager_exception_fails_the_run_and_propagates(registry: obs.Registry) -> None:
    with pytest.raises(RuntimeError, match="scanner crashed"), registry.pipeline(
        "disc-1", kind="discovery"
    ):
        raise RuntimeError("scanner crashed")

    info = run_info(registry, "disc-1")
    assert info.status is obs.PipelineStatus.FAILED
    assert info.error == "RuntimeError: scanner crashed"


def test_context_manager_keeps_an_explicit_outcome(registry: obs.Registry) -> None:
    with registry.pipeline("mig-7") as run:
        run.cancel()

    assert run.status is obs.PipelineStatus.CANCELLED
    assert registry.metrics().dropped_events == {}


def test_items_sum_over_every_run_since_start(registry: obs.Registry) -> None:
    first = registry.pipeline("mig-1", total_items=10)
    first.progress(succeeded=8, failed=2)
    first.succeed()
    second = registry.pipeline("mig-2", total_items=5)
    second.progress(succeeded=1)

    items = registry.metrics().pipelines.items
    assert (items.succeeded, items.failed, items.total) == (9, 2, 15)


def test_pipeline_items_feed_throughput_and_error_rate(
    registry: obs.Registry, clock: FakeClock
) -> None:
    run = registry.pipeline("mig-7", total_items=100)
    clock.advance(30)
    run.progress(succeeded=27, failed=3)
    clock.advance(30)

    perf = registry.performance(window_s=60)
    assert perf.throughput.pipeline_items_per_s == pytest.approx(30 / 60)
    assert perf.errors.pipeline_item_error_rate == pytest.approx(0.1)


def test_finished_pipelines_are_evicted_beyond_the_cap_and_counted(clock: FakeClock) -> None:
    registry = obs.Registry(clock=clock, limits=obs.Limits(finished_pipelines=5),
                            resources=obs.StaticResources())
    for i in range(2_000):
        run = registry.pipeline(f"p{i}", kind="discovery", total_items=1)
        run.progress(succeeded=1)
        run.succeed()
    registry.pipeline("live", total_items=1)

    report = registry.metrics()
    assert len(report.pipelines.runs) == 6
    assert report.pipelines.runs[0].id == "live"
    assert report.pipelines.by_status["succeeded"] == 2_000  # cumulative, survives eviction
    assert report.pipelines.items.succeeded == 2_000
    assert report.evicted["pipelines"] == 1_995
    assert len(registry._state.finished_pipelines) == 5


def test_pipeline_rejected_as_bad_input_leaves_no_trace_in_the_report(
    registry: obs.Registry,
) -> None:
    run = registry.pipeline("", kind="migration", total_items=3)
    run.stage("migrating")
    run.progress(succeeded=3)
    run.succeed()

    report = registry.metrics()
    assert report.dropped_events == {"invalid_id": 1}
    assert report.pipelines.runs == []
    assert report.pipelines.by_status["succeeded"] == 0
    assert (report.pipelines.items.succeeded, report.pipelines.items.total) == (0, 0)
