"""TraceMiddleware over a real uvicorn server: header in and out, traceparent, invalid
headers, concurrency, and a task that keeps its request's trace."""

from __future__ import annotations

import asyncio
import io
import json
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from _server import UvicornThread, serve
from fastapi import FastAPI

import dionysus_observability as obs
from dionysus_observability.logging import reset_logging

HEX32 = re.compile(r"[0-9a-f]{32}")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
PARENT_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
#: Requests held at the barrier at once in the concurrency test.
CONCURRENT = 8
BARRIER_TIMEOUT_S = 10.0


def make_app(registry: obs.Registry, *, middleware: bool) -> FastAPI:
    app = FastAPI()
    if middleware:
        app.add_middleware(obs.TraceMiddleware)
    app.include_router(obs.create_monitoring_router(registry))
    state: dict[str, Any] = {"count": 0, "all_in": None}

    @app.get("/whoami")
    async def whoami() -> dict[str, str | None]:
        return {"trace_id": obs.current_trace_id()}

    @app.get("/together")
    async def together() -> dict[str, str | None]:
        """Wait until CONCURRENT requests are inside, then report the id seen."""
        before = obs.current_trace_id()
        if state["all_in"] is None:
            state["all_in"] = asyncio.Event()
        state["count"] += 1
        if state["count"] == CONCURRENT:
            state["all_in"].set()
        await asyncio.wait_for(state["all_in"].wait(), BARRIER_TIMEOUT_S)
        return {"before": before, "after": obs.current_trace_id()}

    @app.post("/tasks/{task_id}")
    async def submit(task_id: str) -> dict[str, str | None]:
        registry.pool("daedalus").task_submitted(task_id, task_type="migration")
        return {"trace_id": obs.current_trace_id()}

    return app


@pytest.fixture
def server(registry: obs.Registry) -> Iterator[UvicornThread]:
    with serve(make_app(registry, middleware=True)) as running:
        yield running


def test_caller_trace_id_is_bound_for_the_request_and_echoed(client: httpx.Client) -> None:
    response = client.get("/whoami", headers={"X-Trace-Id": "client-abc.1:2"})

    assert response.json() == {"trace_id": "client-abc.1:2"}
    assert response.headers.get_list("x-trace-id") == ["client-abc.1:2"]


def test_monitoring_endpoints_report_the_middleware_trace_id_once(client: httpx.Client) -> None:
    response = client.get("/api/v1/monitoring/metrics", headers={"X-Trace-Id": "m-1"})

    assert response.json()["trace_id"] == "m-1"
    assert response.headers.get_list("x-trace-id") == ["m-1"]


def test_traceparent_trace_id_becomes_the_request_trace_id(client: httpx.Client) -> None:
    response = client.get("/whoami", headers={"traceparent": TRACEPARENT})

    assert response.json()["trace_id"] == PARENT_ID
    assert response.headers["x-trace-id"] == PARENT_ID


def test_x_trace_id_wins_over_traceparent(client: httpx.Client) -> None:
    response = client.get("/whoami", headers={"X-Trace-Id": "mine", "traceparent": TRACEPARENT})

    assert response.headers["x-trace-id"] == "mine"


def test_without_headers_each_request_gets_a_fresh_id(client: httpx.Client) -> None:
    first = client.get("/whoami")
    second = client.get("/whoami")

    ids = [r.headers["x-trace-id"] for r in (first, second)]
    assert all(HEX32.fullmatch(i) for i in ids) and ids[0] != ids[1]
    assert [r.json()["trace_id"] for r in (first, second)] == ids


@pytest.mark.parametrize("bad", ["x" * 129, "has spaces", "<script>alert(1)</script>",
                                 "semi;colon"])
def test_invalid_header_is_replaced_by_a_fresh_id_and_logged(
    client: httpx.Client, bad: str
) -> None:
    logs = io.StringIO()
    obs.configure_logging(json=True, level="INFO", stream=logs, stdlib=False)
    try:
        response = client.get("/whoami", headers={"X-Trace-Id": bad})
    finally:
        reset_logging()

    tid = response.headers["x-trace-id"]
    assert HEX32.fullmatch(tid) and response.json()["trace_id"] == tid
    warnings = [json.loads(line) for line in logs.getvalue().splitlines()]
    assert [(w["event"], w["level"]) for w in warnings] == [("trace_id.invalid_header",
                                                             "warning")]


def test_invalid_header_falls_back_to_a_valid_traceparent(client: httpx.Client) -> None:
    response = client.get("/whoami", headers={"X-Trace-Id": "no good", "traceparent": TRACEPARENT})

    assert response.headers["x-trace-id"] == PARENT_ID


def test_concurrent_requests_never_see_each_others_trace_id(server: UvicornThread) -> None:
    ids = [f"req-{i}" for i in range(CONCURRENT)]

    def one(tid: str) -> tuple[str, dict[str, Any], str]:
        with httpx.Client(base_url=server.url, timeout=BARRIER_TIMEOUT_S + 5) as c:
            r = c.get("/together", headers={"X-Trace-Id": tid})
            return tid, r.json(), r.headers["x-trace-id"]

    with ThreadPoolExecutor(CONCURRENT) as pool:
        results = list(pool.map(one, ids))

    for tid, body, header in results:
        assert body == {"before": tid, "after": tid}  # all were in flight together
        assert header == tid


@pytest.mark.parametrize("middleware", [True, False])
def test_router_endpoints_behave_the_same_with_or_without_the_middleware(
    registry: obs.Registry, middleware: bool
) -> None:
    with serve(make_app(registry, middleware=middleware)) as running, httpx.Client(
        base_url=running.url, timeout=10
    ) as c:
        given = c.get("/api/v1/monitoring/performance", headers={"X-Trace-Id": "p-1"})
        parent = c.get("/api/v1/monitoring/metrics", headers={"traceparent": TRACEPARENT})
        bad = c.get("/api/v1/monitoring/metrics", headers={"X-Trace-Id": "bad id"})
        missing = c.get("/api/v1/monitoring/traces/nothing-here", headers={"X-Trace-Id": "q"})

        def burst(i: int) -> tuple[str, str, str]:
            r = c.get("/api/v1/monitoring/metrics", headers={"X-Trace-Id": f"b-{i}"})
            return f"b-{i}", r.headers["x-trace-id"], r.json()["trace_id"]

        with ThreadPoolExecutor(CONCURRENT) as pool:
            bursts = list(pool.map(burst, range(4 * CONCURRENT)))

    assert (given.headers["x-trace-id"], given.json()["trace_id"]) == ("p-1", "p-1")
    assert (parent.headers["x-trace-id"], parent.json()["trace_id"]) == (PARENT_ID, PARENT_ID)
    assert HEX32.fullmatch(bad.headers["x-trace-id"])
    assert bad.json()["trace_id"] == bad.headers["x-trace-id"]
    assert (missing.status_code, missing.headers["x-trace-id"]) == (404, "q")
    assert all(sent == header == body for sent, header, body in bursts)


def test_task_submitted_in_a_request_keeps_its_trace_when_completed_elsewhere(
    client: httpx.Client, registry: obs.Registry
) -> None:
    pool = registry.pool("daedalus")
    pool.agent_spawned("a1")
    response = client.post("/tasks/t-9", headers={"X-Trace-Id": "http-trace"})
    assert response.json() == {"trace_id": "http-trace"}

    def worker() -> None:
        pool.task_assigned("t-9", agent_id="a1")
        pool.task_completed("t-9")

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()

    timeline = client.get("/api/v1/monitoring/traces/http-trace").json()
    assert [(e["kind"], e["entity"]["id"]) for e in timeline["events"]] == [
        ("task.submitted", "t-9"), ("task.assigned", "t-9"), ("task.completed", "t-9")]
