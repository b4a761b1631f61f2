"""Benchmarks of ``shared/BENCH.md``: each figure is a ratio measured side by side in one process.

Run them with ``make bench`` or ``python -m bench`` (``--quick`` for a scaled-down run,
``--only B1,B3`` for a subset).  They are not tests: a missed target is reported in the
table, never as a failure.

Module convention (the runner discovers ``bench/b<N>_*.py`` and ``bench/b_*.py``):

* the module exposes ``run() -> list[dict] | dict``; each dict is one table row with the
  keys ``id``, ``what``, ``value`` (a number), ``target`` (a string such as ``"<= 0.5"``),
  ``met`` (bool) and ``detail`` (a short string of the raw figures behind the ratio).
  ``result()`` below builds such a row and derives ``met`` from the target;
* the module reads ``scaled(n)`` for its counts, so that ``--quick`` (which sets
  ``QUICK_ENV`` in the environment) divides them by ``QUICK_DIVISOR``;
* the runner calls each module in a fresh interpreter, one after the other, so that
  memory, threads and imports of one benchmark do not disturb the next.

The helpers here (``Workload``, ``interleaved``, ``quiet_logs``) are shared by the modules.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from dionysus_observability import Pool, trace

__all__ = [
    "QUICK_DIVISOR",
    "QUICK_ENV",
    "TASK_TYPES",
    "Tally",
    "Workload",
    "interleaved",
    "meets",
    "quick",
    "quiet_logs",
    "result",
    "scaled",
    "timed",
]

#: Environment variable the runner sets for ``--quick``.
QUICK_ENV = "DIONYSUS_BENCH_QUICK"
#: ``--quick`` divides every count by this.
QUICK_DIVISOR = 50

#: Spec 020 task types the workload cycles through.
TASK_TYPES = ("migration", "discovery", "ingest", "research", "heartbeat")
#: One lifecycle in this many fails every attempt and ends FAILED.
FAIL_EVERY = 100
FAIL_OFFSET = 13
#: One lifecycle in this many fails once, is retried, and then completes.
RETRY_EVERY = 20
RETRY_OFFSET = 7
#: One lifecycle in this many is submitted under a trace id (so trace events are kept).
TRACE_EVERY = 10
#: The error text of a failed attempt.
FAILURE_TEXT = "TimeoutError"

_TARGET = re.compile(r"^\s*(<=|>=|<|>|==)\s*([-+0-9.eE]+)\s*$")


def quick() -> bool:
    """Whether this is a ``--quick`` run."""
    return os.environ.get(QUICK_ENV, "") not in ("", "0")


def scaled(n: int, minimum: int = 1) -> int:
    """``n``, or ``n / QUICK_DIVISOR`` (at least ``minimum``) in a quick run."""
    return max(minimum, n // QUICK_DIVISOR) if quick() else n


def meets(value: float, target: str) -> bool:
    """Whether ``value`` satisfies a target such as ``"<= 0.5"`` (NaN never does).

    Raises:
        ValueError: when the target is not ``<op> <number>``.
    """
    match = _TARGET.match(target)
    if match is None:
        raise ValueError(f"a target reads like '<= 0.5', got {target!r}")
    op, bound = match.group(1), float(match.group(2))
    if math.isnan(value):
        return False
    return {
        "<=": value <= bound,
        ">=": value >= bound,
        "<": value < bound,
        ">": value > bound,
        "==": value == bound,
    }[op]


def result(
    id: str,
    what: str,
    value: float,
    target: str,
    detail: str,
    *,
    met: bool | None = None,
) -> dict[str, Any]:
    """One table row; ``met`` defaults to whether ``value`` meets ``target``."""
    return {
        "id": id,
        "what": what,
        "value": float(value),
        "target": target,
        "met": meets(value, target) if met is None else bool(met),
        "detail": detail,
    }


def quiet_logs() -> None:
    """Drop every library log event below CRITICAL: the benchmarks time hooks, not stdout.

    ``task_failed`` logs a warning per failed attempt; with structlog's default console
    renderer that would time the terminal.
    """
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))


def interleaved(
    contenders: dict[str, Callable[[], float]], repetitions: int
) -> dict[str, list[float]]:
    """Run each contender ``repetitions`` times, alternating, and collect their timings.

    Each callable does its own set-up and returns the seconds its measured part took.
    Alternating (A, B, A, B...) spreads machine drift over both sides.
    """
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repetitions):
        for name, fn in contenders.items():
            times[name].append(fn())
    return times


@dataclass(slots=True)
class Tally:
    """What a workload did, to check the registry's counts against."""

    lifecycles: int = 0
    completed: int = 0
    failed: int = 0
    retries: int = 0

    def add(self, other: Tally) -> None:
        """Add ``other``'s counts to this tally."""
        self.lifecycles += other.lifecycles
        self.completed += other.completed
        self.failed += other.failed
        self.retries += other.retries


class Workload:
    """A realistic mix of task lifecycles driven through one pool's hooks.

    Task types cycle through ``TASK_TYPES``; agents take turns; half the tasks call
    ``task_started``; one in ``RETRY_EVERY`` fails once and is retried; one in
    ``FAIL_EVERY`` fails ``max_retries`` times and ends FAILED; one in ``TRACE_EVERY`` is
    submitted under a trace id.

    Args:
        pool: the pool whose hooks are called.
        agents: ids of agents already spawned in ``pool`` (each must be idle).
        max_retries: the pool's ``max_retries`` (attempts before FAILED).
        prefix: task-id prefix, so that several workloads can share a pool.
    """

    def __init__(self, pool: Pool, agents: Sequence[str], max_retries: int, prefix: str) -> None:
        self.pool = pool
        self.agents = list(agents)
        self.max_retries = max_retries
        self.prefix = prefix
        self.next = 0

    def run(self, count: int) -> Tally:
        """Run ``count`` more lifecycles, one after the other; return what they did."""
        pool = self.pool
        submitted, assigned, started = pool.task_submitted, pool.task_assigned, pool.task_started
        completed, failed = pool.task_completed, pool.task_failed
        agents, n_agents, prefix = self.agents, len(self.agents), self.prefix
        tally = Tally(lifecycles=count)
        for i in range(self.next, self.next + count):
            task_id = f"{prefix}{i}"
            ttype = TASK_TYPES[i % len(TASK_TYPES)]
            agent = agents[i % n_agents]
            if i % TRACE_EVERY == 0:
                with trace(f"{prefix}tr{i}"):
                    submitted(task_id, ttype)
            else:
                submitted(task_id, ttype)
            if i % FAIL_EVERY == FAIL_OFFSET:
                for _ in range(self.max_retries):
                    assigned(task_id, agent)
                    failed(task_id, FAILURE_TEXT)
                tally.failed += 1
                tally.retries += self.max_retries - 1
                continue
            if i % RETRY_EVERY == RETRY_OFFSET:
                assigned(task_id, agent)
                failed(task_id, FAILURE_TEXT)
                tally.retries += 1
            assigned(task_id, agent)
            if i & 1:
                started(task_id)
            completed(task_id)
            tally.completed += 1
        self.next += count
        return tally


def timed(fn: Callable[[], object]) -> float:
    """Seconds ``fn()`` took on ``time.perf_counter``."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
