"""Spec 021 rollback safety net: checkpoints, retention and expiry, timed rollbacks."""

from __future__ import annotations

import pytest
from conftest import FakeClock

import dionysus_observability as obs
from dionysus_observability.reports import RollbackSection

CHECKSUM = "sha256:" + "ab" * 32
DAY_S = 86_400.0


def rollback_section(registry: obs.Registry) -> RollbackSection:
    return registry.metrics().rollback


def create(registry: obs.Registry, checkpoint_id: str, *, size_bytes: int = 4096,
           retention_days: float = 7) -> None:
    registry.rollbacks.checkpoint_created(
        checkpoint_id, component="api/x.py", files=3, size_bytes=size_bytes,
        checksum=CHECKSUM, retention_days=retention_days,
    )


def test_created_checkpoints_are_active_and_their_bytes_counted(registry: obs.Registry) -> None:
    create(registry, "cp1", size_bytes=4096)
    create(registry, "cp2", size_bytes=1000)

    cps = rollback_section(registry).checkpoints
    assert (cps.active, cps.expired, cps.restored, cps.deleted) == (2, 0, 0, 0)
    assert cps.total_bytes == 5096
    assert registry.metrics().dropped_events == {}


def test_checksum_is_accepted_with_or_without_prefix_in_any_case(registry: obs.Registry) -> None:
    registry.rollbacks.checkpoint_created("cp1", component="a.py", checksum="AB" * 32)
    registry.rollbacks.checkpoint_created("cp2", component="b.py", checksum=None)

    assert rollback_section(registry).checkpoints.active == 2
    assert registry.metrics().dropped_events == {}


def test_explicitly_expired_checkpoint_is_no_longer_active(registry: obs.Registry) -> None:
    create(registry, "cp1", size_bytes=100)
    create(registry, "cp2", size_bytes=50)
    registry.rollbacks.checkpoint_expired("cp1")

    cps = rollback_section(registry).checkpoints
    assert (cps.active, cps.expired) == (1, 1)
    assert cps.total_bytes == 50


def test_checkpoint_expires_by_itself_after_its_retention(
    registry: obs.Registry, clock: FakeClock
) -> None:
    create(registry, "weekly", retention_days=7)
    create(registry, "daily", retention_days=1)

    clock.advance(DAY_S - 1)
    assert rollback_section(registry).checkpoints.active == 2

    clock.advance(1)
    cps = rollback_section(registry).checkpoints
    assert (cps.active, cps.expired) == (1, 1)
    assert cps.total_bytes == 4096

    clock.advance(6 * DAY_S)
    cps = rollback_section(registry).checkpoints
    assert (cps.active, cps.expired) == (0, 2)
    assert cps.total_bytes == 0


def test_default_retention_is_seven_days(registry: obs.Registry, clock: FakeClock) -> None:
    registry.rollbacks.checkpoint_created("cp1", component="api/x.py")
    clock.advance(7 * DAY_S - 1)
    assert rollback_section(registry).checkpoints.active == 1
    clock.advance(1)
    assert rollback_section(registry).checkpoints.expired == 1


def test_deleted_checkpoint_is_counted_as_deleted(registry: obs.Registry) -> None:
    create(registry, "cp1")
    registry.rollbacks.checkpoint_deleted("cp1")

    cps = rollback_section(registry).checkpoints
    assert (cps.active, cps.deleted) == (0, 1)


def test_successful_rollback_marks_its_checkpoint_restored_and_is_timed(
    registry: obs.Registry, clock: FakeClock
) -> None:
    create(registry, "cp1")
    with registry.rollbacks.rollback("cp1"):
        clock.advance(12.5)

    section = rollback_section(registry)
    assert (section.checkpoints.active, section.checkpoints.restored) == (0, 1)
    rb = section.rollbacks
    assert (rb.total, rb.succeeded, rb.failed) == (1, 1, 0)
    assert rb.success_rate == 1.0
    assert rb.last_duration_s == pytest.approx(12.5)
    perf = registry.performance(window_s=60)
    assert perf.latency.rollback_duration_s.count == 1
    assert perf.latency.rollback_duration_s.p50 == pytest.approx(12.5)
    assert perf.errors.rollback_failure_rate == 0.0


def test_failed_rollback_records_the_error_and_reraises(
    registry: obs.Registry, clock: FakeClock
) -> None:
    create(registry, "cp1")
    with pytest.raises(OSError, match="disk full"), registry.rollbacks.rollback("cp1"):
        clock.advance(3.0)
        raise OSError("disk full")

    section = rollback_section(registry)
    assert section.checkpoints.active == 1  # a failed restore leaves the checkpoint
    rb = section.rollbacks
    assert (rb.total, rb.succeeded, rb.failed) == (1, 0, 1)
    assert rb.success_rate == 0.0
    assert rb.last_duration_s == pytest.approx(3.0)
    (rec,) = registry._state.rollback_history
    assert rec.error == "OSError: disk full"
    assert rec.succeeded is False
    assert registry.performance(window_s=60).errors.rollback_failure_rate == 1.0


def test_failed_rollback_error_text_is_in_its_trace(registry: obs.Registry) -> None:
    create(registry, "cp1")
    with obs.trace("rb-trace"), pytest.raises(ValueError), registry.rollbacks.rollback("cp1"):
        raise ValueError("checksum mismatch")

    events = registry.trace("rb-trace").events
    (finished,) = [e for e in events if e.kind == "rollback.finished"]
    assert finished.entity.kind is obs.EntityKind.CHECKPOINT
    assert finished.entity.id == "cp1"
    assert finished.attributes["succeeded"] is False
    assert finished.attributes["error"] == "ValueError: checksum mismatch"


def test_record_adds_rollbacks_measured_elsewhere(registry: obs.Registry) -> None:
    create(registry, "cp1")
    create(registry, "cp2")
    registry.rollbacks.record("cp1", succeeded=False, duration_s=41.2, error="checksum mismatch")
    registry.rollbacks.record("cp2", succeeded=True, duration_s=8.0)
    registry.rollbacks.record("cp1", succeeded=True, duration_s=10.0)

    section = rollback_section(registry)
    rb = section.rollbacks
    assert (rb.total, rb.succeeded, rb.failed) == (3, 2, 1)
    assert rb.success_rate == pytest.approx(2 / 3)
    assert rb.last_duration_s == pytest.approx(10.0)
    assert section.checkpoints.restored == 2
    assert section.checkpoints.active == 0
    perf = registry.performance(window_s=60)
    assert perf.errors.rollback_failure_rate == pytest.approx(1 / 3)
    q = perf.latency.rollback_duration_s
    assert q.count == 3
    assert q.max == pytest.approx(41.2)
    assert q.mean == pytest.approx((41.2 + 8.0 + 10.0) / 3)


def test_rollback_stats_before_any_rollback_are_empty(registry: obs.Registry) -> None:
    rb = rollback_section(registry).rollbacks
    assert (rb.total, rb.succeeded, rb.failed) == (0, 0, 0)
    assert rb.success_rate is None
    assert rb.last_duration_s is None
    q = registry.performance(window_s=60).latency.rollback_duration_s
    assert q.count == 0
    assert (q.mean, q.p50, q.p99, q.max) == (None, None, None, None)


def test_old_rollbacks_leave_the_window(registry: obs.Registry, clock: FakeClock) -> None:
    create(registry, "cp1")
    registry.rollbacks.record("cp1", succeeded=False, duration_s=5.0, error="x")
    clock.advance(600)

    perf = registry.performance(window_s=300)
    assert perf.latency.rollback_duration_s.count == 0
    assert perf.errors.rollback_failure_rate == 0.0
    assert registry.performance(window_s=900).latency.rollback_duration_s.count == 1
    assert rollback_section(registry).rollbacks.failed == 1  # cumulative since start


def test_checkpoint_id_can_be_reused_once_the_old_one_has_ended(registry: obs.Registry) -> None:
    create(registry, "cp1")
    registry.rollbacks.checkpoint_expired("cp1")
    create(registry, "cp1")

    cps = rollback_section(registry).checkpoints
    assert (cps.active, cps.expired) == (1, 0)
    assert registry.metrics().dropped_events == {}


def test_checkpoints_beyond_the_cap_are_evicted_and_counted(clock: FakeClock) -> None:
    registry = obs.Registry(clock=clock, limits=obs.Limits(checkpoints=10, rollback_history=5),
                            resources=obs.StaticResources())
    for i in range(1_000):
        create(registry, f"cp{i}", size_bytes=1)
        registry.rollbacks.record(f"cp{i}", succeeded=i % 2 == 0, duration_s=1.0)

    report = registry.metrics()
    assert report.evicted["checkpoints"] == 990
    assert len(registry._state.checkpoints) == 10
    assert len(registry._state.rollback_history) == 5
    assert report.rollback.rollbacks.total == 1_000
    assert report.rollback.rollbacks.succeeded == 500


def test_checkpoint_id_can_be_reused_once_its_retention_has_passed(
    registry: obs.Registry, clock: FakeClock
) -> None:
    create(registry, "nightly", retention_days=1, size_bytes=10)
    clock.advance(DAY_S)
    create(registry, "nightly", retention_days=1, size_bytes=20)

    cps = rollback_section(registry).checkpoints
    assert (cps.active, cps.total_bytes) == (1, 20)
    assert registry.metrics().dropped_events == {}
