"""GET /api/v1/monitoring/alerts over a real uvicorn server: SC-003, filters, 422, rule errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from _server import UvicornThread, serve
from conftest import FakeClock
from fastapi import FastAPI

import dionysus_observability as obs

ALERTS = "/api/v1/monitoring/alerts"


def app_for(registry: obs.Registry) -> FastAPI:
    app = FastAPI()
    app.include_router(obs.create_monitoring_router(registry))
    return app


@pytest.fixture
def server(registry: obs.Registry) -> Iterator[UvicornThread]:
    with serve(app_for(registry)) as running:
        yield running


def get(server: UvicornThread, **params: str) -> httpx.Response:
    return httpx.get(f"{server.url}{ALERTS}", params=params, timeout=10)


@pytest.mark.e2e
def test_sc003_high_memory_on_one_agent_shows_a_warning_naming_that_agent_and_no_other(
    registry: obs.Registry, clock: FakeClock, server: UvicornThread
) -> None:
    pool = registry.pool("daedalus")
    for agent in ("a1", "a2", "a3"):
        pool.agent_spawned(agent, context_window_id=f"cw-{agent}",
                           tool_session_id=f"ts-{agent}", memory_handle_id=f"mh-{agent}")
        pool.agent_health(agent, memory=0.40, cpu=0.30)
    assert get(server).json()["alerts"] == []

    clock.advance(5)
    onset = clock.now
    pool.agent_health("a2", memory=0.92, cpu=0.30)

    response = get(server)
    assert response.status_code == 200
    body = response.json()
    assert body["counts"] == {"critical": 0, "warning": 1, "info": 0}
    (alert,) = body["alerts"]
    assert alert["rule"] == "agent_high_memory"
    assert alert["severity"] == "warning"
    assert alert["state"] == "pending"
    assert alert["affected"] == [{"kind": "agent", "id": "a2"}]
    assert alert["value"] == 0.92 and alert["threshold"] == 0.85
    assert datetime.fromisoformat(alert["started_at"]) == datetime.fromtimestamp(onset, UTC)
    assert alert["resolved_at"] is None
    assert response.headers["X-Trace-Id"] == body["trace_id"]
    named = {e["id"] for a in body["alerts"] for e in a["affected"] if e["kind"] == "agent"}
    assert named == {"a2"}

    clock.advance(60)
    later = get(server).json()["alerts"]
    assert [(a["id"], a["state"], a["started_at"]) for a in later] == [
        (alert["id"], "firing", alert["started_at"])]


@pytest.mark.e2e
def test_state_and_severity_filters_over_http(
    registry: obs.Registry, clock: FakeClock, server: UvicornThread
) -> None:
    pool = registry.pool("daedalus")
    pool.agent_spawned("a1")
    pool.agent_health("a1", memory=0.9)
    registry.rollbacks.record("cp1", succeeded=False, duration_s=1.0, error="x")
    registry.rollbacks.record("cp2", succeeded=False, duration_s=1.0, error="y")
    registry.rollbacks.record("cp2", succeeded=True, duration_s=1.0)

    every = get(server, state="all").json()
    assert [a["state"] for a in every["alerts"]] == ["firing", "pending", "resolved"]
    assert every["counts"] == {"critical": 2, "warning": 1, "info": 0}
    critical = get(server, state="all", severity="critical").json()
    assert {a["rule"] for a in critical["alerts"]} == {"rollback_failed"}
    assert critical["counts"] == {"critical": 2, "warning": 0, "info": 0}
    assert [a["rule"] for a in get(server, state="pending").json()["alerts"]] == [
        "agent_high_memory"]
    resolved = get(server, state="resolved").json()["alerts"]
    assert [a["affected"] for a in resolved] == [[{"kind": "checkpoint", "id": "cp2"}]]


@pytest.mark.e2e
@pytest.mark.parametrize("params", [{"state": "open"}, {"severity": "fatal"},
                                    {"state": "active", "severity": ""}, {"state": "ALL"}])
def test_unknown_state_or_severity_is_422_with_a_trace_id(
    server: UvicornThread, params: dict[str, str]
) -> None:
    response = get(server, **params)
    assert response.status_code == 422
    assert response.json()["trace_id"] == response.headers["X-Trace-Id"]


@pytest.mark.e2e
def test_raising_custom_rule_is_a_rule_error_and_the_endpoint_still_answers_200(
    clock: FakeClock,
) -> None:
    def broken(ctx: obs.RuleContext) -> list[obs.AlertCondition]:
        raise ZeroDivisionError("division by zero")

    registry = obs.Registry(clock=clock, resources=obs.StaticResources(), rules=[broken])
    registry.pipeline("mig-1").fail("boom")
    with serve(app_for(registry)) as running:
        response = get(running)
    assert response.status_code == 200
    body = response.json()
    rules = {a["rule"]: a for a in body["alerts"]}
    assert set(rules) == {"rule_error", "pipeline_failed"}
    assert rules["rule_error"]["severity"] == "warning"
    assert "broken" in rules["rule_error"]["summary"]
    assert "ZeroDivisionError" in rules["rule_error"]["summary"]


@pytest.mark.e2e
def test_default_router_serves_the_default_registrys_alerts(clock: FakeClock) -> None:
    registry = obs.reset_registry(obs.Registry(clock=clock, resources=obs.StaticResources()))
    registry.rollbacks.record("cp1", succeeded=True, duration_s=45.0)
    app = FastAPI()
    app.include_router(obs.monitoring_router)
    with serve(app) as running:
        response = get(running, state="firing")
    assert response.status_code == 200
    (alert,) = response.json()["alerts"]
    assert alert["rule"] == "rollback_slow"
    assert alert["affected"] == [{"kind": "checkpoint", "id": "cp1"}]
