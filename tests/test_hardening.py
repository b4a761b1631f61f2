"""Inputs and failures a careless caller or a bug could produce: the API still holds."""

from __future__ import annotations

from enum import Enum, StrEnum

import httpx
import pytest
from fastapi import FastAPI

import dionysus_observability as obs
from tests._server import serve


class TaskType(StrEnum):
    MIGRATION = "migration"


class LegacyTaskType(str, Enum):  # noqa: UP042 -- the pre-3.11 idiom components still use
    DISCOVERY = "discovery"


def test_task_types_given_as_enum_members_are_recorded_by_their_value() -> None:
    registry = obs.Registry(strict=True)
    pool = registry.pool("daedalus")
    pool.task_submitted("t1", task_type=TaskType.MIGRATION)
    pool.task_submitted("t2", task_type=LegacyTaskType.DISCOVERY)
    pool.task_rejected(task_type=LegacyTaskType.DISCOVERY)
    (info,) = registry.metrics().coordination.pools
    assert info.tasks_by_type == {"migration": 1, "discovery": 1}
    assert info.rejected_by_type == {"discovery": 1}


def test_a_full_registry_raises_a_capacity_error_in_strict_mode() -> None:
    registry = obs.Registry(strict=True, limits=obs.Limits(pools=1))
    registry.pool("first")
    with pytest.raises(obs.CapacityError, match="second") as caught:
        registry.pool("second")
    assert isinstance(caught.value, ValueError)
    assert caught.value.reason == "too_many_pools"


def test_a_full_registry_hands_out_a_detached_pool_by_default() -> None:
    registry = obs.Registry(limits=obs.Limits(pools=1))
    registry.pool("first")
    detached = registry.pool("second")
    detached.agent_spawned("a1")  # works, records nothing
    report = registry.metrics()
    assert [p.name for p in report.coordination.pools] == ["first"]
    assert report.dropped_events == {"too_many_pools": 1}


def test_an_internal_error_in_a_report_is_a_500_that_still_carries_the_trace_id() -> None:
    class Broken(obs.Registry):
        def metrics(self, *, trace_id: str | None = None) -> obs.MetricsReport:
            raise RuntimeError("boom")

    app = FastAPI()
    app.include_router(obs.create_monitoring_router(Broken()))
    with serve(app) as server, httpx.Client(base_url=server.url) as client:
        response = client.get("/api/v1/monitoring/metrics", headers={"X-Trace-Id": "t-500"})
    assert response.status_code == 500
    assert response.headers["X-Trace-Id"] == "t-500"
    assert response.json()["trace_id"] == "t-500"


def test_an_unexpected_failure_inside_pool_creation_never_reaches_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = obs.Registry()

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(registry, "_pool", explode)
    pool = registry.pool("daedalus")
    pool.task_submitted("t1")  # a detached handle: no exception
    assert registry.metrics().dropped_events == {"internal_error": 1}
