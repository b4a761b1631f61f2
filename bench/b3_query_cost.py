"""B3: ``registry.performance(window_s=300)`` after 1,000,000 lifecycles vs after 10,000.

Two registries on the real clock, each with one pool of ``AGENTS`` agents, fed the
``bench.Workload`` mix (five task types, retries, failures, traced tasks): one gets
1,000,000 lifecycles, the other 10,000.  They are recorded in ``CHUNKS`` alternating
chunks, so both histories span the same seconds (and the same counter and sketch
buckets) and differ only in how many events they hold.  Then the two queries alternate,
``QUERIES`` times each, and the medians are compared: a query's cost must not grow with
the number of events.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from dionysus_observability import Registry

from . import Workload, quiet_logs, result, scaled

SMALL = 10_000
LARGE = 1_000_000
QUERIES = 300
WINDOW_S = 300
AGENTS = 8
MAX_RETRIES = 3
TARGET = "<= 1.2"
#: Alternating recording chunks (the two histories span the same seconds).
CHUNKS = 100


def _registry() -> tuple[Registry, Workload]:
    registry = Registry()
    pool = registry.pool("bench", size=AGENTS, max_retries=MAX_RETRIES)
    agents = [f"agent-{i}" for i in range(AGENTS)]
    for agent in agents:
        pool.agent_spawned(agent)
    return registry, Workload(pool, agents, MAX_RETRIES, "t")


def _bins(registry: Registry) -> str:
    """Distinct sketch bins a windowed query merges (its cost grows with these).

    Reads registry internals, so it answers "n/a" rather than fail if they change.
    """
    now = registry.now()
    try:
        return str(sum(len(pair.x.bins) + len(pair.y.bins)
                       for pool in registry._state.pools.values()
                       for _, pair in pool.sketches.window(now, WINDOW_S)))
    except (AttributeError, KeyError, TypeError):
        return "n/a"


def _query(registry: Registry) -> float:
    t0 = time.perf_counter()
    registry.performance(window_s=WINDOW_S)
    return time.perf_counter() - t0


def run() -> dict[str, Any]:
    """Measure B3 and return its row."""
    quiet_logs()
    small_n, large_n = scaled(SMALL, minimum=200), scaled(LARGE, minimum=2_000)
    large, large_work = _registry()
    small, small_work = _registry()
    t0 = time.perf_counter()
    for chunk in range(CHUNKS):
        large_work.run(large_n * (chunk + 1) // CHUNKS - large_n * chunk // CHUNKS)
        small_work.run(small_n * (chunk + 1) // CHUNKS - small_n * chunk // CHUNKS)
    record_s = time.perf_counter() - t0
    for registry in (small, large):  # warm up: first psutil sample, imports, pydantic
        registry.performance(window_s=WINDOW_S)
    small_t: list[float] = []
    large_t: list[float] = []
    for _ in range(scaled(QUERIES, minimum=20)):
        small_t.append(_query(small))
        large_t.append(_query(large))
    s_med, l_med = statistics.median(small_t), statistics.median(large_t)
    report = large.performance(window_s=WINDOW_S)
    return result(
        "B3",
        f"performance(300 s) cost after {large_n:,} / after {small_n:,} lifecycles",
        l_med / s_med,
        TARGET,
        f"median query {l_med * 1e3:.3f} ms after {large_n:,} lifecycles "
        f"({report.throughput.tasks_completed:,} completed in window; {_bins(large)} sketch "
        f"bins merged) vs {s_med * 1e3:.3f} ms after {small_n:,} ({_bins(small)} bins); both "
        f"recorded over the same {record_s:.1f} s in {CHUNKS} alternating chunks; "
        f"{len(small_t)} queries each, alternating",
    )
