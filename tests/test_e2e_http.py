"""SC-001 and SC-002 end to end: a real uvicorn server, the default router, real HTTP.

The app mounts ``monitoring_router``, which reads the process-default registry on every
request; the autouse fixture of conftest resets that registry around each test.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import httpx
import pytest
from conftest import FakeClock
from fastapi import FastAPI

import dionysus_observability as obs

pytestmark = pytest.mark.e2e

PREFIX = "/api/v1/monitoring"
HEX32 = re.compile(r"[0-9a-f]{32}")
CHECKSUM = "sha256:" + "0f" * 32


@pytest.fixture(scope="module")
def app() -> FastAPI:
    """The app conftest's ``server`` serves: the default ``monitoring_router`` mounted."""
    app = FastAPI()
    app.include_router(obs.monitoring_router)
    return app


@pytest.fixture
def fake_default(clock: FakeClock) -> obs.Registry:
    """Make the process default registry one on the fake clock."""
    return obs.reset_registry(obs.Registry(
        clock=clock, resources=obs.StaticResources(cpu_percent=12.5, rss_bytes=64 << 20)))


def scripted_workload(registry: obs.Registry, clock: FakeClock) -> None:
    """A deterministic day in the life of the platform (see the expected figures below)."""
    migration = registry.pipeline("mig-7", kind="migration", total_items=40)
    migration.stage("migrating")
    with registry.pipeline("disc-1", kind="discovery", total_items=12) as discovery:
        discovery.stage("discovery")
        discovery.progress(succeeded=10, failed=2)

    pool = registry.pool("daedalus", size=4, max_size=16, max_queue=100, max_retries=3)
    for i in range(1, 5):
        pool.agent_spawned(f"a{i}", context_window_id=f"cw{i}", tool_session_id=f"ts{i}",
                           memory_handle_id=f"mh{i}")
        pool.agent_health(f"a{i}", memory=0.4 + 0.1 * i, cpu=0.2)

    for n in range(8):  # 8 tasks complete after 2 s each, 0.1 s after submission
        task_id = f"ok{n}"
        pool.task_submitted(task_id, task_type="migration")
        clock.advance(0.1)
        pool.task_assigned(task_id, agent_id=f"a{n % 4 + 1}")
        pool.task_started(task_id)
        clock.advance(2.0)
        pool.task_completed(task_id)

    for n in range(2):  # 2 tasks fail three attempts of 1 s each: FAILED, 2 retries each
        task_id = f"bad{n}"
        pool.task_submitted(task_id, task_type="discovery")
        for attempt in range(3):
            clock.advance(0.1)
            pool.task_assigned(task_id, agent_id=f"a{attempt + 1}")
            clock.advance(1.0)
            pool.task_failed(task_id, error="TimeoutError: discover_components")

    pool.task_submitted("run0", task_type="heartbeat")  # in progress on a1 until the end
    clock.advance(0.1)
    pool.task_assigned("run0", agent_id="a1")
    pool.task_started("run0")
    for n in range(3):
        pool.task_submitted(f"q{n}", task_type="ingest")
    pool.task_rejected(task_type="ingest", reason="queue_full")
    migration.progress(succeeded=3, failed=1)

    rollbacks = registry.rollbacks
    rollbacks.checkpoint_created("cp1", component="api/x.py", files=3, size_bytes=4096,
                                 checksum=CHECKSUM, retention_days=7)
    rollbacks.checkpoint_created("cp2", component="api/y.py", files=1, size_bytes=1000,
                                 checksum=CHECKSUM)
    with rollbacks.rollback("cp1"):
        clock.advance(12.0)
    rollbacks.record("cp2", succeeded=False, duration_s=41.2, error="checksum mismatch")
    clock.advance(5.0)


#: Seconds the scripted workload spans: 8 x 2.1 + 6 x 1.1 + 0.1 + 12 + 5.
ELAPSED_S = 40.5
#: Busy seconds: 8 tasks x 2 s + 6 attempts x 1 s + run0 ongoing for 12 + 5 s.
BUSY_S = {"a1": 2 * 2 + 2 * 1 + 17.0, "a2": 2 * 2 + 2 * 1, "a3": 2 * 2 + 2 * 1, "a4": 2 * 2}


def test_sc001_metrics_show_pipelines_pool_agents_and_rollbacks(
    client: httpx.Client, fake_default: obs.Registry, clock: FakeClock
) -> None:
    scripted_workload(fake_default, clock)

    response = client.get(f"{PREFIX}/metrics")

    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    assert body["trace_id"] == response.headers["X-Trace-Id"]
    assert body["uptime_s"] == pytest.approx(ELAPSED_S)

    pipelines = body["pipelines"]
    assert pipelines["active"] == 1
    assert pipelines["by_status"]["running"] == 1
    assert pipelines["by_status"]["succeeded"] == 1
    assert pipelines["items"] == {"succeeded": 13, "failed": 3, "total": 52}
    runs = {run["id"]: run for run in pipelines["runs"]}
    mig = runs["mig-7"]
    assert (mig["kind"], mig["status"], mig["stage"]) == ("migration", "running", "migrating")
    assert (mig["succeeded"], mig["failed"], mig["total_items"]) == (3, 1, 40)
    assert mig["progress"] == pytest.approx(0.1)
    assert mig["eta_s"] == pytest.approx(36 / (4 / ELAPSED_S))
    assert mig["started_at"].endswith(("Z", "+00:00"))
    assert runs["disc-1"]["status"] == "succeeded"

    coordination = body["coordination"]
    assert coordination["active"] == 1
    (pool,) = coordination["pools"]
    assert pool["name"] == "daedalus"
    assert (pool["size"], pool["max_size"], pool["max_queue"]) == (4, 16, 100)
    assert pool["agents_by_state"] == {"idle": 3, "analyzing": 0, "executing": 1,
                                       "degraded": 0}
    assert pool["queue_depth"] == 3
    assert pool["tasks_by_status"] == {"pending": 3, "in_progress": 1, "completed": 8,
                                       "failed": 2, "cancelled": 0}
    assert pool["tasks_by_type"] == {"migration": 8, "discovery": 2, "heartbeat": 1,
                                     "ingest": 3}
    assert (pool["retries"], pool["rejected"]) == (4, 1)
    assert pool["utilization"] == pytest.approx(0.25)

    agents = body["agents"]
    assert agents["total"] == 4
    assert agents["by_state"]["executing"] == 1
    items = {a["id"]: a for a in agents["items"]}
    assert set(items) == {"a1", "a2", "a3", "a4"}
    assert items["a1"]["state"] == "executing"
    assert items["a1"]["current_task_id"] == "run0"
    assert {k: (a["tasks_completed"], a["tasks_failed"]) for k, a in items.items()} == {
        "a1": (2, 2), "a2": (2, 2), "a3": (2, 2), "a4": (2, 0)}
    assert items["a4"]["memory"] == pytest.approx(0.8)
    assert all(a["pool"] == "daedalus" and a["isolated"] for a in items.values())

    rollback = body["rollback"]
    assert rollback["checkpoints"]["active"] == 1
    assert rollback["checkpoints"]["expired"] == 0
    assert rollback["checkpoints"]["total_bytes"] == 1000
    assert rollback["rollbacks"] == {"total": 2, "succeeded": 1, "failed": 1,
                                     "success_rate": 0.5, "last_duration_s": 41.2}
    assert body["dropped_events"] == {}


def test_sc002_performance_shows_throughput_latency_errors_and_utilization(
    client: httpx.Client, fake_default: obs.Registry, clock: FakeClock
) -> None:
    scripted_workload(fake_default, clock)

    response = client.get(f"{PREFIX}/performance", params={"window": 300})

    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    assert body["window_s"] == 300
    assert body["trace_id"] == response.headers["X-Trace-Id"]

    throughput = body["throughput"]
    assert (throughput["tasks_completed"], throughput["tasks_failed"]) == (8, 2)
    assert throughput["tasks_completed_per_s"] == pytest.approx(8 / ELAPSED_S)
    assert throughput["tasks_failed_per_s"] == pytest.approx(2 / ELAPSED_S)
    assert throughput["pipeline_items_per_s"] == pytest.approx(16 / ELAPSED_S)

    latency = body["latency"]
    duration = latency["task_duration_s"]
    assert duration["count"] == 10  # 8 completions and 2 final failures
    assert duration["mean"] == pytest.approx(1.8)
    assert duration["p50"] == pytest.approx(2.0, rel=0.01)
    assert duration["p99"] == pytest.approx(2.0, rel=0.01)
    assert duration["max"] == pytest.approx(2.0)
    assignment = latency["assignment_latency_s"]
    assert assignment["count"] == 15  # 8 + 6 attempts + run0
    assert assignment["p95"] == pytest.approx(0.1, rel=0.01)
    rollback = latency["rollback_duration_s"]
    assert rollback["count"] == 2
    assert rollback["max"] == pytest.approx(41.2)

    errors = body["errors"]
    assert errors["task_error_rate"] == pytest.approx(0.2)
    assert errors["pipeline_item_error_rate"] == pytest.approx(3 / 16)
    assert errors["rollback_failure_rate"] == pytest.approx(0.5)
    assert errors["tool_error_rate"] == 0.0

    utilization = body["utilization"]
    assert utilization["agents"] == {k: pytest.approx(v / ELAPSED_S) for k, v in BUSY_S.items()}
    assert utilization["agents_busy_ratio"] == pytest.approx(
        sum(BUSY_S.values()) / (4 * ELAPSED_S))
    assert utilization["queue_saturation"] == {"daedalus": pytest.approx(0.03)}

    resources = body["resources"]
    assert resources["process_cpu_percent"] == 12.5
    assert resources["process_rss_bytes"] == 64 << 20
    assert resources["agent_memory_max"] == pytest.approx(0.8)


def test_live_threaded_workload_on_the_real_clock_is_reported(client: httpx.Client) -> None:
    registry = obs.get_registry()  # the fresh default: real clock, real psutil sampler
    pool = registry.pool("daedalus", size=4, max_retries=3)
    tasks = [f"t{i}" for i in range(40)]
    for task_id in tasks:
        pool.task_submitted(task_id, task_type="migration")

    def agent(agent_id: str, mine: list[str]) -> None:
        pool.agent_spawned(agent_id, context_window_id=f"cw-{agent_id}")
        for task_id in mine:
            for _attempt in range(3):
                pool.task_assigned(task_id, agent_id=agent_id)
                pool.task_started(task_id)
                sum(i * i for i in range(20_000))  # real work, real duration
                if task_id.endswith("5"):  # t5, t15, t25, t35 always fail
                    pool.task_failed(task_id, error="RuntimeError: broken component")
                    continue
                pool.task_completed(task_id)
                break

    threads = [threading.Thread(target=agent, args=(f"a{k}", tasks[k::4])) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)

    metrics = client.get(f"{PREFIX}/metrics").json()
    (info,) = metrics["coordination"]["pools"]
    assert info["tasks_by_status"]["completed"] == 36
    assert info["tasks_by_status"]["failed"] == 4
    assert info["retries"] == 8
    assert metrics["agents"]["total"] == 4
    assert metrics["dropped_events"] == {}

    perf = client.get(f"{PREFIX}/performance", params={"window": 60}).json()
    assert perf["throughput"]["tasks_completed"] == 36
    assert perf["throughput"]["tasks_completed_per_s"] > 0
    duration = perf["latency"]["task_duration_s"]
    assert duration["count"] == 40
    assert all(duration[k] is not None and duration[k] > 0 for k in ("p50", "p90", "p95", "p99"))
    assert perf["errors"]["task_error_rate"] == pytest.approx(4 / 40)
    assert 0 < perf["utilization"]["agents_busy_ratio"] <= 1
    assert perf["resources"]["process_rss_bytes"] > 0


def test_router_reads_the_default_registry_on_every_request(client: httpx.Client) -> None:
    obs.get_registry().pool("first")
    assert [p["name"] for p in client.get(f"{PREFIX}/metrics").json()["coordination"]["pools"]
            ] == ["first"]

    obs.reset_registry().pool("second")
    assert [p["name"] for p in client.get(f"{PREFIX}/metrics").json()["coordination"]["pools"]
            ] == ["second"]


# -- trace ids -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/metrics", "/performance?window=60"])
def test_caller_x_trace_id_is_echoed_in_header_and_body(client: httpx.Client, path: str) -> None:
    response = client.get(f"{PREFIX}{path}", headers={"X-Trace-Id": "req-42.a:b"})

    assert response.status_code == 200
    assert response.headers["X-Trace-Id"] == "req-42.a:b"
    assert response.json()["trace_id"] == "req-42.a:b"


def test_trace_id_is_generated_when_none_is_sent(client: httpx.Client) -> None:
    first = client.get(f"{PREFIX}/metrics")
    second = client.get(f"{PREFIX}/metrics")

    for response in (first, second):
        assert HEX32.fullmatch(response.headers["X-Trace-Id"])
        assert response.json()["trace_id"] == response.headers["X-Trace-Id"]
    assert first.headers["X-Trace-Id"] != second.headers["X-Trace-Id"]


def test_traceparent_trace_id_is_used(client: httpx.Client) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    response = client.get(f"{PREFIX}/metrics", headers={"traceparent": traceparent})

    assert response.headers["X-Trace-Id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert response.json()["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_x_trace_id_wins_over_traceparent(client: httpx.Client) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    response = client.get(f"{PREFIX}/metrics",
                          headers={"X-Trace-Id": "mine", "traceparent": traceparent})

    assert response.headers["X-Trace-Id"] == "mine"


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize("window", ["0", "86401", "-5", "abc"])
def test_window_out_of_range_is_a_422_carrying_the_trace_id(
    client: httpx.Client, window: str
) -> None:
    response = client.get(f"{PREFIX}/performance", params={"window": window},
                          headers={"X-Trace-Id": "bad-window"})

    assert response.status_code == 422
    assert response.headers["X-Trace-Id"] == "bad-window"
    body = response.json()
    assert body["trace_id"] == "bad-window"
    assert body["detail"][0]["loc"] == ["query", "window"]


def test_422_without_a_trace_header_gets_a_new_trace_id(client: httpx.Client) -> None:
    response = client.get(f"{PREFIX}/performance", params={"window": 0})

    assert response.status_code == 422
    assert HEX32.fullmatch(response.headers["X-Trace-Id"])
    assert response.json()["trace_id"] == response.headers["X-Trace-Id"]


@pytest.mark.parametrize("window", ["1", "86400"])
def test_window_bounds_are_inclusive(client: httpx.Client, window: str) -> None:
    response = client.get(f"{PREFIX}/performance", params={"window": window})
    assert response.status_code == 200
    assert response.json()["window_s"] == float(window)


def test_default_window_is_300_seconds(client: httpx.Client) -> None:
    assert client.get(f"{PREFIX}/performance").json()["window_s"] == 300


# -- OpenAPI ---------------------------------------------------------------------------


def test_openapi_documents_the_paths_with_response_schemas(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    expected = {
        f"{PREFIX}/metrics": "MetricsReport",
        f"{PREFIX}/performance": "PerformanceReport",
        f"{PREFIX}/traces/{{trace_id}}": "TraceReport",
    }
    components = schema["components"]["schemas"]
    for path, model in expected.items():
        operation = schema["paths"][path]["get"]
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok["$ref"] == f"#/components/schemas/{model}"
        assert model in components

    assert {"pipelines", "coordination", "agents", "rollback", "tools", "dropped_events",
            "trace_id", "generated_at"} <= set(components["MetricsReport"]["properties"])
    assert {"throughput", "latency", "errors", "utilization", "resources", "window_s",
            "trace_id", "generated_at"} <= set(components["PerformanceReport"]["properties"])
    assert {"count", "mean", "p50", "p90", "p95", "p99", "max"} <= set(
        components["Quantiles"]["properties"])

    performance = schema["paths"][f"{PREFIX}/performance"]["get"]
    (window,) = [p for p in performance["parameters"] if p["name"] == "window"]
    assert window["in"] == "query"
    assert window["schema"]["minimum"] == 1
    assert window["schema"]["maximum"] == 86_400
    assert "422" in performance["responses"]
    assert "404" in schema["paths"][f"{PREFIX}/traces/{{trace_id}}"]["get"]["responses"]
