"""create_monitoring_router over real HTTP: bound registries, prefixes, auth, trace ids."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

import httpx
import pytest
from _server import serve
from conftest import FakeClock
from fastapi import Depends, FastAPI, Header, HTTPException

import dionysus_observability as obs

pytestmark = pytest.mark.e2e

PREFIX = "/api/v1/monitoring"
PRIVATE = "/private/monitoring"
TOKEN = "s3cret"
HEX32 = re.compile(r"[0-9a-f]{32}")


class Current:
    """The registry the public router reads on each request; each test binds its own."""

    registry: obs.Registry = obs.Registry(resources=obs.StaticResources())


#: The registry behind the authenticated router (bound once, as an instance).
PRIVATE_REGISTRY = obs.Registry(resources=obs.StaticResources())


def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
    if authorization != f"Bearer {TOKEN}":
        raise HTTPException(status_code=401, detail="missing or bad token",
                            headers={"WWW-Authenticate": "Bearer"})


def make_app() -> FastAPI:
    app = FastAPI()
    app.include_router(obs.create_monitoring_router(lambda: Current.registry))
    app.include_router(obs.create_monitoring_router(
        PRIVATE_REGISTRY, prefix=PRIVATE, dependencies=[Depends(require_token)]))

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"ok": "yes"}

    return app


@pytest.fixture(scope="module")
def app() -> FastAPI:
    """The app conftest's ``server`` serves."""
    return make_app()


@pytest.fixture
def bound(registry: obs.Registry) -> obs.Registry:
    """Bind the fake-clock registry to the public router for this test."""
    Current.registry = registry
    return registry


def test_server_helper_serves_on_a_free_loopback_port_and_stops() -> None:
    with serve(make_app()) as first, serve(make_app()) as second:
        assert first.port != second.port
        assert httpx.get(f"{first.url}/ping", timeout=5).json() == {"ok": "yes"}
        assert httpx.get(f"{second.url}/ping", timeout=5).json() == {"ok": "yes"}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{first.url}/ping", timeout=5)


def test_router_serves_the_registry_it_was_given(
    client: httpx.Client, bound: obs.Registry, clock: FakeClock
) -> None:
    pool = bound.pool("bound-pool", max_queue=10)
    pool.agent_spawned("a1")
    pool.task_submitted("t1")
    clock.advance(3)

    body = client.get(f"{PREFIX}/metrics").json()
    assert [p["name"] for p in body["coordination"]["pools"]] == ["bound-pool"]
    assert body["coordination"]["pools"][0]["queue_depth"] == 1
    assert body["uptime_s"] == 3.0
    assert body["generated_at"].startswith("2023-11-14T22:13:23")
    # the default registry is untouched
    assert obs.get_registry().metrics().coordination.pools == []


def test_dependencies_guard_every_route_and_errors_keep_the_trace_id(
    client: httpx.Client,
) -> None:
    for path in ("/metrics", "/performance", "/traces/abc"):
        denied = client.get(f"{PRIVATE}{path}", headers={"X-Trace-Id": "auth-1"})
        assert denied.status_code == 401
        assert denied.headers["X-Trace-Id"] == "auth-1"
        assert denied.headers["WWW-Authenticate"] == "Bearer"
        assert denied.json()["trace_id"] == "auth-1"

    allowed = client.get(f"{PRIVATE}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert allowed.status_code == 200
    assert allowed.json()["trace_id"] == allowed.headers["X-Trace-Id"]


def test_custom_prefix_replaces_the_default_one(client: httpx.Client) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get(f"{PRIVATE}/performance?window=5", headers=headers).status_code == 200
    assert client.get("/api/v1/monitoring/performance?window=5").status_code == 200
    assert client.get(f"{PRIVATE}/nope", headers=headers).status_code == 404


def test_trace_endpoint_returns_the_events_of_a_trace(
    client: httpx.Client, bound: obs.Registry, clock: FakeClock
) -> None:
    pool = bound.pool("daedalus")
    pool.agent_spawned("a1")
    with obs.trace("job-42"):
        pool.task_submitted("t1", task_type="migration")
    clock.advance(1)
    pool.task_assigned("t1", agent_id="a1")  # outside the block: inherits the task's trace
    pool.task_completed("t1")

    response = client.get(f"{PREFIX}/traces/job-42")

    assert response.status_code == 200
    body = response.json()
    assert body["trace_id"] == "job-42"
    kinds = [e["kind"] for e in body["events"]]
    assert kinds == ["task.submitted", "task.assigned", "task.completed"]
    assert all(e["entity"] == {"kind": "task", "id": "t1"} for e in body["events"])


def test_unknown_trace_is_a_404_with_the_trace_header(
    client: httpx.Client, bound: obs.Registry
) -> None:
    response = client.get(f"{PREFIX}/traces/nothing-here", headers={"X-Trace-Id": "look-1"})

    assert response.status_code == 404
    assert response.headers["X-Trace-Id"] == "look-1"
    assert "nothing-here" in response.json()["detail"]


@pytest.mark.parametrize("header", ["has spaces", "x" * 200, "semi;colon", ""])
def test_unsafe_x_trace_id_is_replaced_by_a_fresh_one(client: httpx.Client, header: str) -> None:
    response = client.get(f"{PREFIX}/metrics", headers={"X-Trace-Id": header})

    assert response.status_code == 200
    assert HEX32.fullmatch(response.headers["X-Trace-Id"])
    assert response.json()["trace_id"] == response.headers["X-Trace-Id"]


@pytest.mark.parametrize("traceparent", [
    "garbage",
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
])
def test_malformed_traceparent_is_ignored(client: httpx.Client, traceparent: str) -> None:
    response = client.get(f"{PREFIX}/metrics", headers={"traceparent": traceparent})

    tid = response.headers["X-Trace-Id"]
    assert HEX32.fullmatch(tid)
    assert tid not in traceparent


def test_concurrent_requests_keep_their_own_trace_ids(
    client: httpx.Client, bound: obs.Registry
) -> None:
    def fetch(i: int) -> tuple[str, str, str]:
        path = "/metrics" if i % 2 else "/performance?window=60"
        response = client.get(f"{PREFIX}{path}", headers={"X-Trace-Id": f"req-{i}"})
        return f"req-{i}", response.headers["X-Trace-Id"], response.json()["trace_id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(fetch, range(48)))

    for sent, header, body in results:
        assert header == sent
        assert body == sent


def test_a_request_trace_id_does_not_leak_into_the_next_request(
    client: httpx.Client, bound: obs.Registry
) -> None:
    client.get(f"{PREFIX}/metrics", headers={"X-Trace-Id": "first"})
    response = client.get(f"{PREFIX}/metrics")

    assert response.headers["X-Trace-Id"] != "first"
    assert obs.current_trace_id() is None
