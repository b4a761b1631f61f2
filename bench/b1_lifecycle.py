"""B1: one task lifecycle through the pool hooks vs the same events through prometheus_client.

Ours: ``task_submitted``, ``task_assigned``, ``task_completed`` on a pool whose agent
already exists (the hooks take the clock, the trace id, the lock, the counters and the
two latency sketches themselves).  Prometheus: ``labels(pool, task_type, status).inc()``
for each of the three events plus one ``Histogram.observe`` for the assignment latency
and one for the task duration, with realistic latencies (log-normal, fixed seed) so that
the histogram's bucket search is exercised as in production.

The histograms are labelled by pool (the granularity our registry keeps); the figure
against unlabelled histograms, the strictest reading of BENCH.md, is in the detail.
Both sides run in this process, alternating, best of ``REPETITIONS``; the GC stays on.
"""

from __future__ import annotations

import random
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from dionysus_observability import Registry

from . import interleaved, quiet_logs, result, scaled

LIFECYCLES = 100_000
REPETITIONS = 5
TARGET = "<= 0.5"
POOL = "bench"
AGENT = "agent-1"
TASK_TYPE = "migration"
#: Medians (seconds) of the log-normal latencies fed to the Prometheus histograms.
ASSIGNMENT_MEDIAN_S = 0.05
DURATION_MEDIAN_S = 1.5
SEED = 20


def _ours(ids: list[str]) -> float:
    registry = Registry()
    pool = registry.pool(POOL)
    pool.agent_spawned(AGENT)
    submitted, assigned, completed = pool.task_submitted, pool.task_assigned, pool.task_completed
    t0 = time.perf_counter()
    for task_id in ids:
        submitted(task_id, TASK_TYPE)
        assigned(task_id, AGENT)
        completed(task_id)
    took = time.perf_counter() - t0
    recorded = registry.metrics().coordination.pools[0].tasks_by_status["completed"]
    if recorded != len(ids):  # the hooks must really have recorded every task
        raise RuntimeError(f"recorded {recorded} of {len(ids)} lifecycles")
    return took


def _prometheus(latencies: list[tuple[float, float]], labelled: bool) -> float:
    reg = CollectorRegistry()
    tasks = Counter("tasks", "Task events.", ["pool", "task_type", "status"], registry=reg)
    if labelled:
        assign_h = Histogram("assign_s", "Assignment latency.", ["pool"], registry=reg)
        dur_h = Histogram("duration_s", "Task duration.", ["pool"], registry=reg)
        t0 = time.perf_counter()
        for wait, duration in latencies:
            tasks.labels(POOL, TASK_TYPE, "submitted").inc()
            tasks.labels(POOL, TASK_TYPE, "assigned").inc()
            assign_h.labels(POOL).observe(wait)
            tasks.labels(POOL, TASK_TYPE, "completed").inc()
            dur_h.labels(POOL).observe(duration)
        return time.perf_counter() - t0
    assign_u = Histogram("assign_s", "Assignment latency.", registry=reg)
    dur_u = Histogram("duration_s", "Task duration.", registry=reg)
    t0 = time.perf_counter()
    for wait, duration in latencies:
        tasks.labels(POOL, TASK_TYPE, "submitted").inc()
        tasks.labels(POOL, TASK_TYPE, "assigned").inc()
        assign_u.observe(wait)
        tasks.labels(POOL, TASK_TYPE, "completed").inc()
        dur_u.observe(duration)
    return time.perf_counter() - t0


def run() -> dict[str, Any]:
    """Measure B1 and return its row."""
    quiet_logs()
    n = scaled(LIFECYCLES, minimum=1_000)
    ids = [f"task-{i}" for i in range(n)]
    rng = random.Random(SEED)
    latencies = [
        (rng.lognormvariate(0.0, 1.0) * ASSIGNMENT_MEDIAN_S,
         rng.lognormvariate(0.0, 1.0) * DURATION_MEDIAN_S)
        for _ in range(n)
    ]
    times = interleaved(
        {
            "ours": lambda: _ours(ids),
            "prom": lambda: _prometheus(latencies, labelled=True),
            "prom_unlabelled": lambda: _prometheus(latencies, labelled=False),
        },
        REPETITIONS,
    )
    ours, prom, plain = (min(times[k]) for k in ("ours", "prom", "prom_unlabelled"))
    per = 1e6 / n
    return result(
        "B1",
        f"{n:,} lifecycles via pool hooks / via prometheus_client",
        ours / prom,
        TARGET,
        f"ours {ours * per:.2f} us/lifecycle, prometheus_client {prom * per:.2f} us "
        f"(histograms labelled by pool); against unlabelled histograms "
        f"({plain * per:.2f} us) the ratio is {ours / plain:.3f}; best of {REPETITIONS}, "
        "alternating",
    )
