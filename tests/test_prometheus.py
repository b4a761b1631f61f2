"""The Prometheus exposition: promtool-clean, carries the workload, cumulative histograms,
OpenMetrics with trace-id exemplars when asked for."""

from __future__ import annotations

import subprocess
from typing import Any

import httpx
import pytest
from _binaries import require_binary
from _server import serve
from conftest import EPOCH, FakeClock
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

import dionysus_observability as obs
from dionysus_observability.prometheus import ALERT_GAUGE, RegistryCollector, exposition

#: The Accept header Prometheus 2.42 sends when it scrapes.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
CHECKSUM = "sha256:" + "0" * 64


def workload(registry: obs.Registry, clock: FakeClock) -> None:
    """Every kind of event, so that every metric family has samples."""
    pool = registry.pool("daedalus", size=2, max_queue=10, max_retries=2)
    pool.agent_spawned("a1", context_window_id="cw1", tool_session_id="ts1",
                       memory_handle_id="mh1")
    pool.agent_spawned("a2", context_window_id="cw1", tool_session_id="ts2",
                       memory_handle_id="mh2")
    pool.agent_health("a1", memory=0.5, cpu=0.25)
    pool.agent_health("a2", memory=0.97, cpu=0.99)
    with obs.trace("trace-ok"):
        pool.task_submitted("task-ok", task_type="migration")
    clock.advance(0.3)
    pool.task_assigned("task-ok", agent_id="a1")
    pool.task_started("task-ok")
    clock.advance(2.0)
    pool.task_completed("task-ok")
    with obs.trace("trace-bad"):
        pool.task_submitted("task-bad", task_type="discovery")
    clock.advance(0.7)
    pool.task_assigned("task-bad", agent_id="a1")
    pool.task_failed("task-bad", error="TimeoutError: slow")     # retried: 1 < 2 attempts
    pool.task_assigned("task-bad", agent_id="a2")
    clock.advance(1.0)
    pool.task_failed("task-bad", error="TimeoutError: slow")     # final
    pool.task_submitted("task-gone", task_type="heartbeat")
    pool.task_cancelled("task-gone")
    pool.task_submitted("task-waiting", task_type="discovery")
    pool.task_rejected(task_type="discovery", reason="queue_full")
    pool.agent_state("a2", "degraded")
    registry.pool("hermes").agent_spawned("h1")

    with obs.trace("trace-tool"):
        registry.tool_call("grep", duration_s=0.02)
    registry.tool_call("grep", duration_s=0.4, error="ValueError")
    rb = registry.rollbacks
    rb.checkpoint_created("cp1", component="api/x.py", files=3, size_bytes=4096,
                          checksum=CHECKSUM, retention_days=7)
    rb.checkpoint_created("cp2", component="api/y.py", files=1, size_bytes=100,
                          checksum=CHECKSUM, retention_days=7)
    with obs.trace("trace-rb"):
        rb.record("cp1", succeeded=True, duration_s=12.0)
    rb.record("cp2", succeeded=False, duration_s=41.2, error="checksum mismatch")
    run = registry.pipeline("mig-7", kind="migration", total_items=40)
    run.stage("assessment")
    run.progress(succeeded=3, failed=1)
    with registry.pipeline("disc-1", kind="discovery", total_items=5) as done:
        done.progress(succeeded=5)
    registry.pool("daedalus").task_assigned("no-such-task", agent_id="a1")  # dropped
    clock.advance(1.0)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Parse the text format into ``{(sample name, labels): value}``."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(parsed: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    return parsed[(name, frozenset(labels.items()))]


@pytest.fixture
def loaded(registry: obs.Registry, clock: FakeClock) -> obs.Registry:
    workload(registry, clock)
    return registry


def text_of(registry: obs.Registry) -> str:
    body, content_type = exposition(registry)
    assert content_type.startswith("text/plain; version=0.0.4")
    return body.decode()


def test_exposition_passes_promtool_check_metrics_without_warnings(
    loaded: obs.Registry,
) -> None:
    promtool = require_binary("promtool")
    body, _ = exposition(loaded)

    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                            timeout=60, check=False)

    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert b"dionysus_task_assignment_latency_seconds_bucket" in body


def test_promtool_flags_a_lint_problem_so_the_lint_test_can_fail() -> None:
    promtool = require_binary("promtool")
    bad = b"# TYPE dionysus_things counter\ndionysus_things 1\n"

    result = subprocess.run([promtool, "check", "metrics"], input=bad, capture_output=True,
                            timeout=60, check=False)

    assert result.returncode != 0
    assert b"_total" in result.stderr or b"help" in result.stderr


def test_pool_and_task_series_match_the_metrics_report(loaded: obs.Registry) -> None:
    parsed = samples(text_of(loaded))
    report = loaded.metrics()

    for pool in report.coordination.pools:
        name = pool.name
        assert value(parsed, "dionysus_pool_queue_depth", pool=name) == pool.queue_depth
        assert value(parsed, "dionysus_pool_queue_capacity", pool=name) == pool.max_queue
        assert value(parsed, "dionysus_pool_size", pool=name) == pool.size
        assert value(parsed, "dionysus_task_retries_total", pool=name) == pool.retries
        for state, n in pool.agents_by_state.items():
            assert value(parsed, "dionysus_agents", pool=name, state=state) == n
        for status in ("pending", "in_progress"):
            assert value(parsed, "dionysus_tasks", pool=name, status=status) == \
                pool.tasks_by_status[status]
        for status in ("completed", "failed", "cancelled"):
            assert value(parsed, "dionysus_tasks_finished_total", pool=name, status=status) \
                == pool.tasks_by_status[status]
        for ttype, n in pool.tasks_by_type.items():
            assert value(parsed, "dionysus_tasks_submitted_total", pool=name,
                         task_type=ttype) == n
    daedalus = next(p for p in report.coordination.pools if p.name == "daedalus")
    assert daedalus.tasks_by_status == {"pending": 1, "in_progress": 0, "completed": 1,
                                        "failed": 1, "cancelled": 1}
    assert value(parsed, "dionysus_tasks_rejected_total", pool="daedalus",
                 task_type="discovery") == 1
    # a submitted type that was never rejected starts at zero, so increase() sees its first
    assert value(parsed, "dionysus_tasks_rejected_total", pool="daedalus",
                 task_type="migration") == 0
    assert value(parsed, "dionysus_tasks_queued", pool="daedalus", task_type="discovery") == 1


def test_agent_series_carry_pool_and_agent_labels_and_match_the_report(
    loaded: obs.Registry,
) -> None:
    parsed = samples(text_of(loaded))
    report = loaded.metrics()

    assert {a.id for a in report.agents.items} == {"a1", "a2", "h1"}
    for agent in report.agents.items:
        labels = {"pool": agent.pool, "agent": agent.id}
        for state in ("idle", "analyzing", "executing", "degraded"):
            expected = 1.0 if agent.state.value == state else 0.0
            assert value(parsed, "dionysus_agent_state", state=state, **labels) == expected
        if agent.memory is not None:
            assert value(parsed, "dionysus_agent_memory_ratio", **labels) == agent.memory
            assert value(parsed, "dionysus_agent_cpu_ratio", **labels) == agent.cpu
        assert value(parsed, "dionysus_agent_isolated", **labels) == float(agent.isolated)
        assert value(parsed, "dionysus_agent_tasks_total", status="completed", **labels) == \
            agent.tasks_completed
    assert value(parsed, "dionysus_agent_memory_ratio", pool="daedalus", agent="a2") == 0.97
    assert value(parsed, "dionysus_agent_isolated", pool="daedalus", agent="a1") == 0.0
    assert ("dionysus_agent_memory_ratio",
            frozenset({("pool", "hermes"), ("agent", "h1")})) not in parsed


def test_rollback_pipeline_tool_and_dropped_series_match_the_report(
    loaded: obs.Registry,
) -> None:
    parsed = samples(text_of(loaded))
    report = loaded.metrics()

    rb = report.rollback
    assert value(parsed, "dionysus_rollbacks_total", status="succeeded") == rb.rollbacks.succeeded
    assert value(parsed, "dionysus_rollbacks_total", status="failed") == rb.rollbacks.failed
    assert value(parsed, "dionysus_rollback_last_duration_seconds") == 41.2
    assert value(parsed, "dionysus_checkpoints", state="active") == rb.checkpoints.active
    assert value(parsed, "dionysus_checkpoints", state="restored") == 1
    assert value(parsed, "dionysus_checkpoints_size_bytes") == rb.checkpoints.total_bytes
    items = report.pipelines.items
    assert value(parsed, "dionysus_pipeline_items_total", status="succeeded") == items.succeeded
    assert value(parsed, "dionysus_pipeline_items_total", status="failed") == items.failed
    assert value(parsed, "dionysus_pipelines_running") == report.pipelines.active == 1
    assert value(parsed, "dionysus_pipelines_finished_total", status="succeeded") == 1
    assert value(parsed, "dionysus_pipeline_progress_ratio", pipeline="mig-7",
                 kind="migration") == 0.1
    assert value(parsed, "dionysus_pipeline_last_progress_timestamp_seconds", pipeline="mig-7",
                 kind="migration") == EPOCH + 4.0
    assert not any(dict(labels).get("pipeline") == "disc-1" for _, labels in parsed)
    for tool in report.tools:
        assert value(parsed, "dionysus_tool_calls_total", tool=tool.name) == tool.calls
        assert value(parsed, "dionysus_tool_errors_total", tool=tool.name) == tool.errors
    for reason, n in report.dropped_events.items():
        assert value(parsed, "dionysus_dropped_events_total", reason=reason) == n
    assert report.dropped_events


def test_latency_histograms_put_each_sample_in_its_bucket(loaded: obs.Registry) -> None:
    parsed = samples(text_of(loaded))

    def bucket(name: str, le: str, **labels: str) -> float:
        return value(parsed, f"{name}_bucket", le=le, **labels)

    # assignment latencies: 0.3 s (task-ok) and 0.7 s (task-bad, first attempt); the
    # retried attempt was picked up at once (0 s)
    name = "dionysus_task_assignment_latency_seconds"
    assert bucket(name, "0.005", pool="daedalus") == 1
    assert bucket(name, "0.25", pool="daedalus") == 1
    assert bucket(name, "0.5", pool="daedalus") == 2
    assert bucket(name, "1.0", pool="daedalus") == 3
    assert bucket(name, "+Inf", pool="daedalus") == 3
    assert value(parsed, f"{name}_count", pool="daedalus") == 3
    assert value(parsed, f"{name}_sum", pool="daedalus") == pytest.approx(1.0, abs=1e-6)
    # task durations: completed after 2 s, failed after 1 s on its last attempt
    name = "dionysus_task_duration_seconds"
    assert bucket(name, "0.5", pool="daedalus") == 0
    assert bucket(name, "1.0", pool="daedalus") == 1
    assert bucket(name, "2.5", pool="daedalus") == 2
    assert value(parsed, f"{name}_count", pool="daedalus") == 2
    # rollbacks: 12 s and 41.2 s around Spec 021's 30 s bound
    name = "dionysus_rollback_duration_seconds"
    assert bucket(name, "10.0") == 0
    assert bucket(name, "15.0") == 1
    assert bucket(name, "30.0") == 1
    assert bucket(name, "45.0") == 2
    assert value(parsed, f"{name}_sum") == pytest.approx(53.2)
    name = "dionysus_tool_call_duration_seconds"
    assert bucket(name, "0.025", tool="grep") == 1
    assert bucket(name, "0.5", tool="grep") == 2


def test_histograms_keep_counting_after_the_windows_forget(
    loaded: obs.Registry, clock: FakeClock
) -> None:
    before = samples(text_of(loaded))
    clock.advance(loaded.limits.retention_s + 600)

    after = samples(text_of(loaded))

    assert loaded.performance(window_s=300).latency.task_duration_s.count == 0
    for name in ("dionysus_task_duration_seconds_count",
                 "dionysus_task_assignment_latency_seconds_count"):
        assert value(after, name, pool="daedalus") == value(before, name, pool="daedalus") > 0
    assert value(after, "dionysus_rollback_duration_seconds_count") == 2


def test_no_series_is_labelled_with_a_task_id(loaded: obs.Registry) -> None:
    text = text_of(loaded)

    for task_id in ("task-ok", "task-bad", "task-gone", "task-waiting"):
        assert task_id not in text
    label_names = {name for (_, labels) in samples(text) for name, _ in labels}
    assert label_names <= {"pool", "agent", "state", "status", "task_type", "tool", "le",
                           "pipeline", "kind", "reason", "alert", "severity"}


def test_openmetrics_exemplars_carry_the_trace_ids_of_latency_samples(
    loaded: obs.Registry,
) -> None:
    body, content_type = exposition(loaded, PROMETHEUS_ACCEPT)
    text = body.decode()

    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert text.endswith("# EOF\n")
    exemplars: dict[tuple[str, str], str] = {}
    for family in parse_openmetrics(text):
        for s in family.samples:
            if s.exemplar is not None:
                exemplars[(s.name, s.labels["le"])] = s.exemplar.labels["trace_id"]
    assert exemplars[("dionysus_task_assignment_latency_seconds_bucket", "0.5")] == "trace-ok"
    assert exemplars[("dionysus_task_duration_seconds_bucket", "2.5")] == "trace-ok"
    assert exemplars[("dionysus_task_duration_seconds_bucket", "1.0")] == "trace-bad"
    assert exemplars[("dionysus_rollback_duration_seconds_bucket", "15.0")] == "trace-rb"
    assert exemplars[("dionysus_tool_call_duration_seconds_bucket", "0.025")] == "trace-tool"
    assert b"# {" not in exposition(loaded)[0]


def test_collector_serves_from_a_prometheus_client_registry(loaded: obs.Registry) -> None:
    collectors = CollectorRegistry()
    collectors.register(RegistryCollector(loaded))

    parsed = samples(generate_latest(collectors).decode())

    assert value(parsed, "dionysus_tasks_finished_total", pool="daedalus",
                 status="completed") == 1


def test_alert_gauge_counts_the_registry_alerts_by_rule_severity_and_state(
    loaded: obs.Registry,
) -> None:
    alerts = loaded.alerts(state="all")
    parsed = samples(text_of(loaded))

    expected: dict[tuple[str, str, str], int] = {}
    for alert in alerts:
        for st in ("pending", "firing"):
            expected.setdefault((alert.rule, alert.severity.value, st), 0)
        if alert.state.value in ("pending", "firing"):
            expected[(alert.rule, alert.severity.value, alert.state.value)] += 1
    got = {
        (dict(labels)["alert"], dict(labels)["severity"], dict(labels)["state"]): n
        for (name, labels), n in parsed.items() if name == ALERT_GAUGE
    }
    assert got == expected
    # the workload holds an agent at 97 % memory and a shared context window
    assert any(rule == "agent_high_memory" and sev == "critical" and n == 1
               for (rule, sev, _), n in got.items())
    assert any(rule == "isolation_breach" and n == 1 for (rule, _, _), n in got.items())


@pytest.fixture
def server(loaded: obs.Registry) -> Any:
    app = FastAPI()
    app.include_router(obs.create_monitoring_router(loaded))
    with serve(app) as running:
        yield running


def test_endpoint_negotiates_openmetrics_with_prometheus_and_text_otherwise(
    server: Any, loaded: obs.Registry
) -> None:
    url = f"{server.url}/api/v1/monitoring/prometheus"
    with httpx.Client(timeout=10.0) as http:
        om = http.get(url, headers={"Accept": PROMETHEUS_ACCEPT, "X-Trace-Id": "scrape-1"})
        plain = http.get(url)

    assert om.status_code == plain.status_code == 200
    assert om.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert om.headers["x-trace-id"] == "scrape-1"
    assert '# {trace_id="trace-ok"}' in om.text
    assert plain.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert plain.headers["x-trace-id"]
    assert value(samples(plain.text), "dionysus_tasks_finished_total", pool="daedalus",
                 status="completed") == 1
