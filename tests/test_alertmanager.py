"""The Alertmanager notifier: off by default; a real Alertmanager on loopback receives a
firing alert from an app's lifespan task and sees it resolved; while Alertmanager is
down the queue and the retries stay bounded and the event loop never waits."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from _binaries import BinaryServer, Poller, free_port, get_json, require_binary
from _server import serve
from conftest import FakeClock
from fastapi import FastAPI

import dionysus_observability as obs
from dionysus_observability.alertmanager import (
    ENV_URL,
    AlertmanagerNotifier,
    alertmanager_lifespan,
)

DEADLINE_S = 30.0
POLL_S = 0.05
poll = Poller(DEADLINE_S, POLL_S)
#: Alerts fire as soon as their condition holds in these tests.
NO_WAIT = obs.Thresholds(agent_high_memory_for_s=0.0)


class Webhook:
    """A loopback HTTP receiver that records Alertmanager's webhook notifications."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def notifications(self, status: str) -> list[dict[str, Any]]:
        return [alert for note in self.received for alert in note["alerts"]
                if alert["status"] == status]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Alertmanager(BinaryServer):
    """A real Alertmanager on a free loopback port, routing everything to a webhook."""

    def __init__(self, binary: str, workdir: Path, webhook_url: str) -> None:
        super().__init__("alertmanager", workdir)
        config = {
            "route": {"receiver": "hook", "group_by": ["alertname"], "group_wait": "0s",
                      "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "hook", "webhook_configs": [
                {"url": webhook_url, "send_resolved": True}]}],
        }
        (workdir / "alertmanager.yml").write_text(json.dumps(config))
        self.launch([binary, f"--config.file={workdir / 'alertmanager.yml'}",
                     f"--storage.path={workdir}", f"--web.listen-address=127.0.0.1:{self.port}",
                     "--cluster.listen-address=", "--log.level=warn"])

    def active(self) -> list[dict[str, Any]]:
        return list(get_json(f"{self.url}/api/v2/alerts"))


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture
def alertmanager(tmp_path: Path, webhook: Webhook) -> Iterator[Alertmanager]:
    binary = require_binary("prometheus-alertmanager", package="prometheus-alertmanager")
    am = Alertmanager(binary, tmp_path, webhook.url)
    try:
        poll("alertmanager ready", am.ready)
        yield am
    finally:
        am.stop()


def closed_port_url() -> str:
    """A loopback URL where nothing listens (connections are refused at once)."""
    return f"http://127.0.0.1:{free_port()}"


def hot_agents(registry: obs.Registry, n: int) -> obs.Pool:
    pool = registry.pool("daedalus")
    for i in range(n):
        pool.agent_spawned(f"a{i}", context_window_id=f"cw{i}")
        pool.agent_health(f"a{i}", memory=0.97, cpu=0.1)
    return pool


@pytest.mark.e2e
def test_alertmanager_receives_a_fired_alert_and_sees_it_resolved(
    alertmanager: Alertmanager, webhook: Webhook
) -> None:
    registry = obs.Registry(thresholds=NO_WAIT, resources=obs.StaticResources())
    notifier = AlertmanagerNotifier(alertmanager.url, registry=registry,
                                    evaluate_interval_s=0.2, static_labels={"service": "e2e"})
    app = FastAPI(lifespan=notifier.lifespan)
    app.include_router(obs.create_monitoring_router(registry))
    pool = registry.pool("daedalus")
    pool.agent_spawned("a1", context_window_id="cw1")
    pool.agent_health("a1", memory=0.5, cpu=0.1)

    t0 = time.monotonic()
    with serve(app) as server:
        assert httpx.get(f"{server.url}/api/v1/monitoring/metrics").status_code == 200
        poll("two notifier cycles", lambda: notifier.evaluations >= 2)
        assert (alertmanager.active(), webhook.received, notifier.sent) == ([], [], 0)

        t_fire = time.monotonic()
        pool.agent_health("a1", memory=0.97, cpu=0.1)
        (fired,) = poll("the firing webhook", lambda: webhook.notifications("firing"))
        t_fired = time.monotonic() - t_fire
        assert fired["labels"] == {"alertname": "agent_high_memory", "severity": "critical",
                                   "agent": "a1", "service": "e2e"}
        (alert,) = registry.alerts(state="firing")
        assert fired["annotations"]["summary"] == alert.summary
        assert fired["annotations"]["alert_id"] == alert.id
        (listed,) = alertmanager.active()
        assert listed["labels"]["alertname"] == "agent_high_memory"
        assert listed["status"]["state"] == "active"

        t_clear = time.monotonic()
        pool.agent_health("a1", memory=0.3, cpu=0.1)
        (resolved,) = poll("the resolved webhook", lambda: webhook.notifications("resolved"))
        t_resolved = time.monotonic() - t_clear
        assert resolved["labels"] == fired["labels"]
        assert resolved["endsAt"] >= resolved["startsAt"]
        assert alertmanager.active() == []
    print(f"\nalertmanager e2e: fired -> webhook {t_fired:.2f} s, cleared -> resolved webhook "
          f"{t_resolved:.2f} s, total {time.monotonic() - t0:.2f} s")


def test_notifier_is_off_without_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_URL, raising=False)

    async def run() -> object:
        async with alertmanager_lifespan() as notifier:
            return notifier

    assert asyncio.run(run()) is None


def test_notifier_starts_from_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    url = closed_port_url()
    monkeypatch.setenv(ENV_URL, url)

    async def run() -> AlertmanagerNotifier | None:
        async with alertmanager_lifespan(evaluate_interval_s=30) as notifier:
            return notifier

    notifier = asyncio.run(run())
    assert isinstance(notifier, AlertmanagerNotifier)
    assert notifier.url == f"{url}/api/v2/alerts"


def test_while_alertmanager_is_down_the_queue_and_retries_stay_bounded(
    clock: FakeClock,
) -> None:
    registry = obs.Registry(clock=clock, thresholds=NO_WAIT, resources=obs.StaticResources())
    hot_agents(registry, 5)
    notifier = AlertmanagerNotifier(closed_port_url(), registry=registry, max_queue=3,
                                    max_retries=2, resend_interval_s=60, timeout_s=2)

    async def cycles(n: int) -> list[int]:
        sizes = []
        for _ in range(n):
            await notifier.run_once()
            sizes.append(notifier.queued)
            clock.advance(1.0)
        return sizes

    sizes = asyncio.run(cycles(4))

    assert max(sizes) <= 3
    assert notifier.failed_posts == 2          # then nothing is left to post
    assert notifier.dropped == 5               # 2 over the cap, then 3 after 2 failed posts
    assert sizes[-1] == 0
    assert notifier.sent == 0
    assert notifier.last_error is not None and "refused" in notifier.last_error.lower()
    # the alerts come back at the next resend interval, and the cap still holds
    clock.advance(60.0)
    asyncio.run(cycles(1))
    assert notifier.failed_posts == 3
    assert notifier.queued == 3


def test_a_hanging_alertmanager_never_blocks_the_event_loop_or_the_hooks() -> None:
    registry = obs.Registry(thresholds=NO_WAIT, resources=obs.StaticResources())
    pool = hot_agents(registry, 1)
    with socket.socket() as hole:                 # accepts connections, never answers
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)
        notifier = AlertmanagerNotifier(f"http://127.0.0.1:{hole.getsockname()[1]}",
                                        registry=registry, timeout_s=1.0)

        async def run() -> tuple[int, float]:
            ticks = 0
            stop = False

            async def ticker() -> None:
                nonlocal ticks
                while not stop:
                    await asyncio.sleep(0.01)
                    ticks += 1

            task = asyncio.create_task(ticker())
            t0 = time.monotonic()
            await notifier.run_once()
            elapsed = time.monotonic() - t0
            stop = True
            await task
            return ticks, elapsed

        ticks, elapsed = asyncio.run(run())
        pool.task_submitted("t1")               # hooks never touch the notifier

    assert elapsed >= 0.9                      # the POST really waited for its timeout
    assert ticks >= 20                         # while the loop kept running
    assert notifier.failed_posts == 1
    assert registry.metrics().coordination.pools[0].queue_depth == 1


def test_payload_names_rule_severity_entities_and_summary(clock: FakeClock) -> None:
    registry = obs.Registry(clock=clock, resources=obs.StaticResources())
    pool = registry.pool("daedalus")
    pool.agent_spawned("a1", context_window_id="shared")
    pool.agent_spawned("a2", context_window_id="shared")
    notifier = AlertmanagerNotifier("http://alertmanager.invalid:9093/", registry=registry,
                                    generator_url="http://app/alerts")

    assert notifier.evaluate() == 1
    (entry,) = notifier._queue.values()
    payload = entry.payload
    (alert,) = registry.alerts(state="firing")

    assert notifier.url == "http://alertmanager.invalid:9093/api/v2/alerts"
    assert payload["labels"] == {"alertname": "isolation_breach", "severity": "critical",
                                 "agent": "a1,a2"}
    assert payload["annotations"]["summary"] == alert.summary
    assert payload["startsAt"] == alert.started_at.isoformat().replace("+00:00", "Z")
    assert payload["endsAt"] > payload["startsAt"]
    assert payload["generatorURL"] == "http://app/alerts"
    assert notifier.evaluate() == 0           # not due again before the resend interval
    clock.advance(notifier.resend_interval_s)
    assert notifier.evaluate() == 1


@pytest.mark.parametrize("kwargs", [
    {"url": "alertmanager:9093"},
    {"url": "http://am", "evaluate_interval_s": 0},
    {"url": "http://am", "max_queue": 0},
    {"url": "http://am", "max_retries": True},
])
def test_bad_notifier_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(obs.InvalidValueError):
        AlertmanagerNotifier(**kwargs)


def test_task_entities_go_to_annotations_so_the_label_set_stays_put() -> None:
    from datetime import UTC, datetime

    from dionysus_observability.alertmanager import AlertmanagerNotifier
    from dionysus_observability.reports import Alert

    notifier = AlertmanagerNotifier("http://127.0.0.1:9/api/v2/alerts")
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def alert(task: str) -> Alert:
        return Alert(id="abc", rule="task_failures", severity="warning", state="firing",
                     summary="s", affected=[{"kind": "pool", "id": "daedalus"},
                                            {"kind": "task", "id": task}],
                     value=1.0, threshold=0.0, started_at=now, updated_at=now,
                     resolved_at=None, trace_ids=[])

    first = notifier._payload(alert("t1"), 0.0)
    second = notifier._payload(alert("t2"), 0.0)
    assert first["labels"] == second["labels"]
    assert first["labels"]["pool"] == "daedalus" and "task" not in first["labels"]
    assert (first["annotations"]["tasks"], second["annotations"]["tasks"]) == ("t1", "t2")
