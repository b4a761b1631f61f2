"""B5: 8 threads running lifecycles concurrently vs 1 thread running the same total.

One registry (real clock) and one pool of ``THREADS`` agents.  Concurrent run: each
thread drives its own agent through ``TOTAL / THREADS`` lifecycles of the
``bench.Workload`` mix, all released together by a barrier.  Serial run: one thread
drives all the agents in turn through ``TOTAL`` lifecycles.  After every run the
registry's counts (pool, agents, ``metrics()``, ``performance()``) must equal what the
workload did, exactly, with nothing dropped.  Runs alternate, best of ``REPETITIONS``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from dionysus_observability import Registry

from . import Tally, Workload, meets, quiet_logs, result, scaled

THREADS = 8
TOTAL = 200_000
REPETITIONS = 5
MAX_RETRIES = 3
WINDOW_S = 300
TARGET = ">= 0.7"


def _registry() -> tuple[Registry, list[str]]:
    registry = Registry()
    pool = registry.pool("bench", size=THREADS, max_retries=MAX_RETRIES)
    agents = [f"agent-{i}" for i in range(THREADS)]
    for agent in agents:
        pool.agent_spawned(agent)
    return registry, agents


def _mismatches(registry: Registry, tally: Tally) -> list[str]:
    """Every count that differs from what the workload did (empty when all are exact)."""
    metrics = registry.metrics()
    perf = registry.performance(window_s=WINDOW_S)
    pool = metrics.coordination.pools[0]
    by_status = pool.tasks_by_status
    checks = {
        "metrics.completed": (by_status["completed"], tally.completed),
        "metrics.failed": (by_status["failed"], tally.failed),
        "metrics.retries": (pool.retries, tally.retries),
        "metrics.pending": (by_status["pending"], 0),
        "metrics.in_progress": (by_status["in_progress"], 0),
        "metrics.submitted": (sum(pool.tasks_by_type.values()), tally.lifecycles),
        "agents.tasks_completed": (
            sum(a.tasks_completed for a in metrics.agents.items), tally.completed),
        "agents.tasks_failed": (  # every failed attempt, retried or final
            sum(a.tasks_failed for a in metrics.agents.items), tally.retries + tally.failed),
        "performance.completed": (perf.throughput.tasks_completed, tally.completed),
        "performance.failed": (perf.throughput.tasks_failed, tally.failed),
        "performance.retried": (perf.throughput.tasks_retried, tally.retries),
        "dropped": (sum(metrics.dropped_events.values()), 0),
    }
    return [f"{k} {got} != {want}" for k, (got, want) in checks.items() if got != want]


def _serial(total: int, errors: list[str]) -> float:
    registry, agents = _registry()
    workload = Workload(registry.pool("bench"), agents, MAX_RETRIES, "t")
    t0 = time.perf_counter()
    tally = workload.run(total)
    took = time.perf_counter() - t0
    errors += [f"1 thread: {m}" for m in _mismatches(registry, tally)]
    return total / took


def _concurrent(total: int, errors: list[str]) -> float:
    registry, agents = _registry()
    pool = registry.pool("bench")
    per_thread = total // THREADS
    tallies: list[Tally] = []
    barrier = threading.Barrier(THREADS + 1)

    def work(agent: str) -> None:
        workload = Workload(pool, [agent], MAX_RETRIES, f"{agent}-t")
        barrier.wait()
        tallies.append(workload.run(per_thread))

    threads = [threading.Thread(target=work, args=(a,)) for a in agents]
    for thread in threads:
        thread.start()
    barrier.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    took = time.perf_counter() - t0
    tally = Tally()
    for part in tallies:
        tally.add(part)
    if len(tallies) != THREADS:
        errors.append(f"{THREADS} threads: only {len(tallies)} finished")
    errors += [f"{THREADS} threads: {m}" for m in _mismatches(registry, tally)]
    return per_thread * THREADS / took


def run() -> dict[str, Any]:
    """Measure B5 and return its row."""
    quiet_logs()
    total = scaled(TOTAL, minimum=THREADS * 100)
    errors: list[str] = []
    serial: list[float] = []
    concurrent: list[float] = []
    for _ in range(REPETITIONS):
        serial.append(_serial(total, errors))
        concurrent.append(_concurrent(total, errors))
    one, many = max(serial), max(concurrent)
    ratio = many / one
    exact = not errors
    return result(
        "B5",
        f"{THREADS} threads / 1 thread, {total:,} lifecycles: throughput (counts exact)",
        ratio,
        TARGET,
        f"{many:,.0f} lifecycles/s with {THREADS} threads vs {one:,.0f} with 1; counts "
        + ("exact in every run" if exact else "NOT exact: " + "; ".join(errors[:5]))
        + f"; best of {REPETITIONS}, alternating; every run (k lifecycles/s) 1 thread: "
        + " ".join(f"{x / 1e3:.0f}" for x in serial) + f", {THREADS} threads: "
        + " ".join(f"{x / 1e3:.0f}" for x in concurrent),
        met=exact and meets(ratio, TARGET),
    )
