"""8 writer threads and a reader thread on one registry: no exception, no lost event."""

from __future__ import annotations

import contextlib
import threading

import dionysus_observability as obs

WRITERS = 8
LIFECYCLES = 1_500
#: Every FAIL_EVERY-th task fails once and is retried; every FINAL_EVERY-th fails for good.
FAIL_EVERY = 5
FINAL_EVERY = 7
THREAD_TIMEOUT_S = 60.0


def writer(registry: obs.Registry, index: int, start: threading.Barrier,
           errors: list[BaseException]) -> None:
    try:
        pool = registry.pool("daedalus", max_retries=2)
        agent_id = f"a{index}"
        pool.agent_spawned(agent_id, context_window_id=f"cw{index}",
                           tool_session_id=f"ts{index}", memory_handle_id=f"mh{index}")
        run = registry.pipeline("mig-shared", kind="migration")
        start.wait()
        with obs.trace(f"writer-{index}"):
            for j in range(LIFECYCLES):
                task_id = f"t{index}-{j}"
                pool.task_submitted(task_id, task_type="migration" if j % 2 else "discovery")
                pool.task_assigned(task_id, agent_id=agent_id)
                pool.task_started(task_id)
                if j % FINAL_EVERY == 0:
                    pool.task_failed(task_id, error="fatal", retrying=False)
                    run.progress(failed=1)
                    continue
                if j % FAIL_EVERY == 0:
                    pool.task_failed(task_id, error="flaky")
                    pool.task_assigned(task_id, agent_id=agent_id)
                pool.task_completed(task_id)
                run.progress(succeeded=1)
                if j % 100 == 0:
                    pool.agent_health(agent_id, memory=0.5, cpu=0.25)
                    registry.rollbacks.checkpoint_created(f"cp{index}-{j}", component="x.py")
                    registry.rollbacks.record(f"cp{index}-{j}", succeeded=True, duration_s=0.1)
                    registry.tool_call("scan", duration_s=0.01)
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def reader(registry: obs.Registry, stop: threading.Event, errors: list[BaseException],
           seen: list[int]) -> None:
    """Read every report until told to stop; record the completed count of each read."""
    try:
        while not stop.is_set():
            report = registry.metrics()
            for pool in report.coordination.pools:
                # a consistent snapshot: every submitted task is in exactly one status
                if sum(pool.tasks_by_status.values()) != sum(pool.tasks_by_type.values()):
                    raise AssertionError(f"torn read: {pool.tasks_by_status}")
                seen.append(pool.tasks_by_status["completed"])
            registry.performance(window_s=300)
            registry.performance(window_s=5)
            with contextlib.suppress(obs.UnknownEntityError):
                registry.trace("writer-0")
    except BaseException as exc:
        errors.append(exc)


def test_eight_writers_and_a_reader_lose_no_event() -> None:
    registry = obs.Registry(strict=True, resources=obs.StaticResources())  # the real clock
    errors: list[BaseException] = []
    start = threading.Barrier(WRITERS + 1)
    stop = threading.Event()
    seen: list[int] = []
    writers = [threading.Thread(target=writer, args=(registry, i, start, errors))
               for i in range(WRITERS)]
    reading = threading.Thread(target=reader, args=(registry, stop, errors, seen))
    for thread in writers:
        thread.start()
    reading.start()
    start.wait()
    for thread in writers:
        thread.join(THREAD_TIMEOUT_S)
    stop.set()
    reading.join(THREAD_TIMEOUT_S)

    assert not any(t.is_alive() for t in [*writers, reading])
    assert errors == []
    assert seen == sorted(seen)  # counts never go backwards
    assert any(0 < n < max(seen) for n in seen)  # some reads overlapped the writers

    final = sum(1 for j in range(LIFECYCLES) if j % FINAL_EVERY == 0)
    retried = sum(1 for j in range(LIFECYCLES) if j % FINAL_EVERY and j % FAIL_EVERY == 0)
    completed = LIFECYCLES - final
    checkpoints = sum(1 for j in range(LIFECYCLES) if j % FINAL_EVERY and j % 100 == 0)

    report = registry.metrics()
    assert report.dropped_events == {}
    (pool,) = report.coordination.pools
    assert pool.tasks_by_status == {
        "pending": 0,
        "in_progress": 0,
        "completed": WRITERS * completed,
        "failed": WRITERS * final,
        "cancelled": 0,
    }
    assert pool.retries == WRITERS * retried
    assert sum(pool.tasks_by_type.values()) == WRITERS * LIFECYCLES
    assert pool.agents_by_state["idle"] == WRITERS
    for agent in report.agents.items:
        assert agent.tasks_completed == completed
        assert agent.tasks_failed == final + retried
        assert agent.isolated
    (run,) = report.pipelines.runs
    assert (run.succeeded, run.failed) == (WRITERS * completed, WRITERS * final)
    assert report.rollback.rollbacks.total == WRITERS * checkpoints
    assert report.rollback.checkpoints.restored == WRITERS * checkpoints
    assert report.tools[0].calls == WRITERS * checkpoints

    perf = registry.performance(window_s=3600)
    assert perf.throughput.tasks_completed == WRITERS * completed
    assert perf.throughput.tasks_failed == WRITERS * final
    assert perf.throughput.tasks_retried == WRITERS * retried
    assert perf.latency.task_duration_s.count == WRITERS * LIFECYCLES
    assert perf.latency.assignment_latency_s.count == WRITERS * (LIFECYCLES + retried)
    assert perf.errors.task_error_rate == final / LIFECYCLES


def test_yielding_lock_excludes_and_still_waits_out_a_long_holder() -> None:
    import threading

    from dionysus_observability._lock import SPINS, YieldingLock

    lock = YieldingLock()
    held = threading.Event()
    release = threading.Event()
    got_it: list[bool] = []

    def holder() -> None:
        with lock:
            held.set()
            release.wait(timeout=10)

    def waiter() -> None:
        with lock:
            got_it.append(release.is_set())

    first = threading.Thread(target=holder)
    first.start()
    held.wait(timeout=10)
    second = threading.Thread(target=waiter)
    second.start()
    # the waiter spins SPINS times, then must block, not enter while the holder is inside
    second.join(timeout=0.05 + SPINS * 0.001)
    assert second.is_alive() and lock.locked()
    release.set()
    first.join(timeout=10)
    second.join(timeout=10)
    assert got_it == [True]
