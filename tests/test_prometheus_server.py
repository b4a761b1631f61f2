"""A real Prometheus on loopback scrapes two app servers (separate registries, real
uvicorn): PromQL sums their workloads, ingests the trace-id exemplars, and an exported
rule fires for a condition induced in one of them.

Prometheus applies new scrape targets only after about 6 s (its discovery manager
batches updates every 5 s), so every wait polls with a generous deadline.
"""

from __future__ import annotations

import calendar
import json
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _binaries import BinaryServer, Poller, get_json, require_binary
from _server import UvicornThread, serve
from fastapi import FastAPI

import dionysus_observability as obs
from dionysus_observability.prometheus import render_rules

pytestmark = pytest.mark.e2e

#: Seconds to wait for Prometheus to become ready, scrape, or fire.
DEADLINE_S = 60.0
POLL_S = 0.2
poll = Poller(DEADLINE_S, POLL_S)


class Prometheus(BinaryServer):
    """A Prometheus server on a free loopback port, with its own config and storage."""

    def __init__(self, binary: str, workdir: Path, targets: list[str], rules: str) -> None:
        super().__init__("prometheus", workdir)
        (workdir / "rules.yml").write_text(rules)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": ["rules.yml"],
            "scrape_configs": [{
                "job_name": "dionysus",
                "metrics_path": "/api/v1/monitoring/prometheus",
                "static_configs": [{"targets": targets}],
            }],
        }
        (workdir / "prometheus.yml").write_text(json.dumps(config, indent=1))
        self.launch([binary, f"--config.file={workdir / 'prometheus.yml'}",
                     f"--storage.tsdb.path={workdir / 'data'}",
                     f"--web.listen-address=127.0.0.1:{self.port}",
                     f"--web.console.templates={workdir}", f"--web.console.libraries={workdir}",
                     "--enable-feature=exemplar-storage", "--log.level=warn"])

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = get_json(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        return list(body["data"]["result"])

    def scalar(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def firing(self, alertname: str) -> list[dict[str, Any]]:
        alerts = get_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]
        return [a for a in alerts
                if a["labels"]["alertname"] == alertname and a["state"] == "firing"]

    def last_evaluation(self) -> float:
        """When the rule group was last evaluated (seconds since the epoch; 0 if never)."""
        groups = get_json(f"{self.url}/api/v1/rules")["data"]["groups"]
        stamp = groups[0].get("lastEvaluation", "") if groups else ""
        if not stamp or stamp.startswith("0001"):
            return 0.0
        head, _, frac = stamp.rstrip("Z").partition(".")
        return calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S")) + float(
            f"0.{frac or 0}")


def app_for(registry: obs.Registry) -> FastAPI:
    app = FastAPI()
    app.include_router(obs.create_monitoring_router(registry))
    return app


def run_tasks(pool: obs.Pool, agent: str, prefix: str, completed: int, failed: int = 0) -> None:
    for i in range(completed + failed):
        task = f"{prefix}-{i}"
        with obs.trace(f"trace-{task}"):
            pool.task_submitted(task, task_type="migration")
        pool.task_assigned(task, agent_id=agent)
        if i < completed:
            pool.task_completed(task)
        else:
            pool.task_failed(task, error="RuntimeError: boom", retrying=False)


@pytest.fixture
def apps() -> Iterator[tuple[obs.Registry, obs.Registry, UvicornThread, UvicornThread]]:
    quiet = obs.StaticResources(rss_bytes=64 << 20, total_memory_bytes=16 << 30)
    one = obs.Registry(resources=quiet)
    two = obs.Registry(resources=quiet)
    with serve(app_for(one)) as first, serve(app_for(two)) as second:
        yield one, two, first, second


def test_prometheus_sums_two_processes_and_fires_an_exported_rule(
    apps: tuple[obs.Registry, obs.Registry, UvicornThread, UvicornThread], tmp_path: Path
) -> None:
    binary = require_binary("prometheus")
    one, two, first, second = apps
    p1 = one.pool("daedalus")
    p1.agent_spawned("a1", context_window_id="cw-a1")
    run_tasks(p1, "a1", "one", completed=3, failed=1)
    p2 = two.pool("daedalus")
    p2.agent_spawned("b1", context_window_id="cw-b1")
    p2.agent_health("b1", memory=0.5, cpu=0.1)
    run_tasks(p2, "b1", "two", completed=5)
    h2 = two.pool("hermes")
    h2.agent_spawned("h1", context_window_id="cw-h1")
    run_tasks(h2, "h1", "hermes", completed=2)
    instances = [f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"]

    t0 = time.monotonic()
    prom = Prometheus(binary, tmp_path, instances, render_rules(for_s=0))
    try:
        poll("prometheus ready", prom.ready)
        t_ready = time.monotonic() - t0
        poll("both targets up", lambda: prom.scalar("count(up == 1)") == 2)
        t_scraped = time.monotonic() - t0

        completed = 'sum(dionysus_tasks_finished_total{status="completed"})'
        assert poll("the summed workload", lambda: prom.scalar(completed)) == 3 + 5 + 2
        by_pool = {r["metric"]["pool"]: float(r["value"][1]) for r in prom.query(
            'sum by (pool) (dionysus_tasks_finished_total{status="completed"})')}
        assert by_pool == {"daedalus": 8.0, "hermes": 2.0}
        assert prom.scalar('sum(dionysus_tasks_finished_total{status="failed"})') == 1
        assert prom.scalar("sum(dionysus_task_duration_seconds_count)") == 11
        agents = {(r["metric"]["instance"], r["metric"]["pool"], r["metric"]["agent"])
                  for r in prom.query('dionysus_agent_state{state="idle"} == 1')}
        assert agents == {(instances[0], "daedalus", "a1"), (instances[1], "daedalus", "b1"),
                          (instances[1], "hermes", "h1")}
        # silent while the memory is fine: a rule evaluation that saw b1 at 50 %
        seen = time.time()
        poll("a rule evaluation after b1 was scraped at 50 %",
             lambda: prom.scalar('dionysus_agent_memory_ratio{agent="b1"}') == 0.5
             and prom.last_evaluation() > seen)
        assert prom.firing("agent_high_memory") == []

        # the exemplars of the OpenMetrics scrape reached Prometheus with their trace ids
        def exemplar_trace_ids() -> set[str]:
            now = time.time()
            body = get_json(f"{prom.url}/api/v1/query_exemplars?" + urllib.parse.urlencode(
                {"query": "dionysus_task_duration_seconds_bucket", "start": now - 600,
                 "end": now + 60}))
            return {ex["labels"]["trace_id"] for series in body["data"]
                    for ex in series["exemplars"]}

        assert "trace-two-4" in poll("exemplars", exemplar_trace_ids)

        t_induce = time.monotonic()
        p2.agent_health("b1", memory=0.97, cpu=0.1)
        (alert,) = poll("agent_high_memory firing", lambda: prom.firing("agent_high_memory"))
        t_fired = time.monotonic() - t_induce
        assert alert["labels"]["severity"] == "critical"
        assert alert["labels"]["agent"] == "b1"
        assert alert["labels"]["instance"] == instances[1]
        assert alert["annotations"]["summary"] == "memory of agent b1 of pool daedalus at 97%"

        p2.agent_health("b1", memory=0.2, cpu=0.1)
        poll("agent_high_memory resolved", lambda: not prom.firing("agent_high_memory"))
        total = time.monotonic() - t0
    finally:
        prom.stop()
    print(f"\nprometheus e2e: ready {t_ready:.2f} s, both targets scraped {t_scraped:.2f} s, "
          f"rule fired {t_fired:.2f} s after the condition, total {total:.2f} s")
