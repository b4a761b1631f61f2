"""B4: process RSS growth over lifecycles 100,000 to 1,000,000 (memory is bounded).

One registry on the real clock, one pool of ``AGENTS`` agents, the ``bench.Workload`` mix
(retries, failures, one task in ten traced, so the trace-event log fills up too).  RSS
(psutil, after a full GC) is read once 100,000 lifecycles are recorded and again at
1,000,000; the difference is the figure.  The runner gives this module a fresh
interpreter, so no other benchmark's garbage skews it.
"""

from __future__ import annotations

import gc
from typing import Any

import psutil

from dionysus_observability import Registry

from . import Workload, quiet_logs, result, scaled

FIRST = 100_000
LAST = 1_000_000
#: Lifecycles recorded between two RSS readings (to report the curve, not only the ends).
STEP = 100_000
AGENTS = 8
MAX_RETRIES = 3
TARGET = "<= 10"
MIB = 1024 * 1024


def _rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def run() -> dict[str, Any]:
    """Measure B4 and return its row."""
    quiet_logs()
    first, last, step = scaled(FIRST, 200), scaled(LAST, 2_000), scaled(STEP, 200)
    registry = Registry()
    pool = registry.pool("bench", size=AGENTS, max_retries=MAX_RETRIES)
    agents = [f"agent-{i}" for i in range(AGENTS)]
    for agent in agents:
        pool.agent_spawned(agent)
    workload = Workload(pool, agents, MAX_RETRIES, "t")
    workload.run(first)
    registry.performance(window_s=300)  # the read side's one-off allocations happen here
    registry.metrics()
    start = _rss()
    curve = []
    done = first
    while done < last:
        workload.run(min(step, last - done))
        done = min(done + step, last)
        curve.append((_rss() - start) / MIB)
    growth = curve[-1] if curve else 0.0
    evicted = registry.metrics().evicted
    return result(
        "B4",
        f"RSS growth over lifecycles {first:,} to {last:,} (MiB)",
        growth,
        TARGET,
        f"RSS {start / MIB:.1f} MiB at {first:,}; growth per {step:,} lifecycles: "
        + ", ".join(f"{g:+.2f}" for g in curve)
        + f" MiB; evicted {dict(evicted)}",
    )
