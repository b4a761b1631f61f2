"""Demo scenarios that induce alerts on a schedule and let them resolve again.

Used by ``examples/demo.py`` (``SCENARIOS``).  One cycle, repeated every
``CYCLE_S`` seconds of registry time:

1. an agent's memory climbs past the warning level (``agent_high_memory`` goes pending,
   then fires, maybe escalates to critical) and recovers (resolved);
2. the queue backs up: migration tasks are held while a burst of them arrives
   (``queue_buildup`` warning, pending then firing), a second burst overflows it
   (rejections: critical), then the held tasks are released and the queue drains
   (resolved ``window_s`` after the last rejection);
3. the next checkpoint is corrupted on disk, so its rollback fails its checksum check
   (``rollback_failed``, critical at once; resolved ``window_s`` later).

A watcher evaluates the alerts every ``WATCH_S`` seconds, as an operator's dashboard
would; each state change is logged by the library (``alert.pending``,
``alert.firing``, ``alert.resolved``).

The alert durations (``for``, the window) are registry seconds, that is wall-clock
seconds, while the workload's scenario times are workload seconds (``--speed`` runs it
faster).  ``start`` converts, so a cycle takes the same wall time at any speed.  The
producer's own random bursts are switched off, as they would reject tasks every minute
and keep the queue alert from ever resolving; the scenarios burst the queue instead.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from workload import Workload

__all__ = ["CYCLE_S", "WATCH_S", "start"]

log = structlog.get_logger("demo.alerts")

#: Seconds (registry time) between two starts of the scenario cycle.
CYCLE_S = 720.0
#: Seconds (registry time) between two alert evaluations by the watcher.
WATCH_S = 5.0
#: Memory added to the chosen agent's fraction at each step of the climb.
MEMORY_CLIMB = (0.3, 0.55, 0.8)
#: Seconds between two steps of the climb.
MEMORY_STEP_S = 10.0
#: Migration tasks submitted while migration is held (80% of the queue is 80 tasks).
BACKUP_TASKS = 82
#: Tasks of the overflowing burst (the queue holds 100).
OVERFLOW_TASKS = 40
#: Extra seconds each condition is held beyond its rule's ``for`` so that it fires.
MARGIN_S = 30.0


def start(w: Workload) -> None:
    """Switch off the random bursts, start the watcher and the first cycle."""
    w.knobs.bursts = False
    _watch(w)
    _cycle(w)


def _at(w: Workload, delay_s: float, fn: Callable[[Workload], None]) -> None:
    """Run ``fn`` ``delay_s`` registry (wall) seconds from now."""
    w.schedule(w.elapsed_s() + delay_s * w.config.speed, fn)


def _watch(w: Workload) -> None:
    w.registry.alerts()
    _at(w, WATCH_S, _watch)


def _cycle(w: Workload) -> None:
    th = w.registry.thresholds
    agent = w.agent_ids[min(1, len(w.agent_ids) - 1)]
    t = 10.0

    for extra in MEMORY_CLIMB:
        _at(w, t, _memory(agent, extra))
        t += MEMORY_STEP_S
    t += th.agent_high_memory_for_s + MARGIN_S
    _at(w, t, _memory(agent, 0.0))

    t += 10.0
    _at(w, t, _back_up)
    t += th.queue_buildup_for_s + MARGIN_S
    _at(w, t, _overflow)
    t += 10.0
    _at(w, t, _drain)

    t += 10.0
    _at(w, t, _corrupt_checkpoint)
    _at(w, CYCLE_S, _cycle)
    log.info("alert_scenarios.cycle", agent=agent, seconds=CYCLE_S)


def _memory(agent: str, extra: float) -> Callable[[Workload], None]:
    def step(w: Workload) -> None:
        if extra:
            w.knobs.agent_memory_extra[agent] = extra
        else:
            w.knobs.agent_memory_extra.pop(agent, None)
        log.info("alert_scenarios.memory", agent=agent, extra=extra)

    step.__name__ = f"memory_{extra:g}"
    return step


def _back_up(w: Workload) -> None:
    w.knobs.held_task_types.add("migration")
    accepted = w.burst(BACKUP_TASKS, task_type="migration")
    log.info("alert_scenarios.queue_backing_up", held="migration", accepted=accepted)


def _overflow(w: Workload) -> None:
    accepted = w.burst(OVERFLOW_TASKS, task_type="migration")
    log.info("alert_scenarios.queue_overflow", submitted=OVERFLOW_TASKS, accepted=accepted)


def _drain(w: Workload) -> None:
    w.knobs.held_task_types.discard("migration")
    log.info("alert_scenarios.queue_draining")


def _corrupt_checkpoint(w: Workload) -> None:
    w.knobs.corrupt_next_checkpoint = True
    log.info("alert_scenarios.corrupt_next_checkpoint")
