"""configure_logging: JSON and console lines with timestamp, level and trace id."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import structlog

import dionysus_observability as obs
from dionysus_observability._log import gate
from dionysus_observability._log import logger as library_logger
from dionysus_observability.logging import reset_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    reset_logging()
    root.setLevel(level)


@pytest.fixture
def out() -> io.StringIO:
    return io.StringIO()


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def by_event(out: io.StringIO) -> dict[str, dict[str, Any]]:
    return {line["event"]: line for line in lines(out)}


def test_structlog_events_carry_the_surrounding_trace_id(out: io.StringIO) -> None:
    obs.configure_logging(json=True, level="INFO", stream=out)
    log = structlog.get_logger("app")

    with obs.trace("req-42"):
        log.info("inside", user="ann")
    log.info("outside")

    events = by_event(out)
    assert events["inside"]["trace_id"] == "req-42"
    assert events["inside"]["user"] == "ann"
    assert events["inside"]["level"] == "info"
    assert events["inside"]["logger"] == "app"
    stamp = datetime.fromisoformat(events["inside"]["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0
    assert "trace_id" not in events["outside"]


def test_plain_stdlib_log_records_carry_the_trace_id_too(out: io.StringIO) -> None:
    obs.configure_logging(json=True, level="INFO", stream=out)

    with obs.trace("std-1"):
        logging.getLogger("legacy.module").warning("disk %s%% full", 93)

    (line,) = lines(out)
    assert line["event"] == "disk 93% full"
    assert (line["trace_id"], line["level"], line["logger"]) == ("std-1", "warning",
                                                                 "legacy.module")
    assert "timestamp" in line


def test_hook_events_carry_the_trace_of_their_task_from_another_thread(
    out: io.StringIO, registry: obs.Registry
) -> None:
    obs.configure_logging(json=True, level="INFO", stream=out)
    pool = registry.pool("daedalus", max_retries=1)
    pool.agent_spawned("a1")
    with obs.trace("task-trace"):
        pool.task_submitted("t1", task_type="migration")

    def worker() -> None:
        pool.task_assigned("t1", agent_id="a1")
        pool.task_failed("t1", error="TimeoutError: slow")

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()

    failed = by_event(out)["task.failed"]
    assert (failed["level"], failed["trace_id"], failed["task_id"]) == ("error", "task-trace",
                                                                        "t1")


def test_exceptions_are_rendered_into_the_json_line(out: io.StringIO) -> None:
    obs.configure_logging(json=True, stream=out)
    try:
        raise KeyError("missing")
    except KeyError:
        structlog.get_logger("app").exception("lookup.failed")

    line = by_event(out)["lookup.failed"]
    assert line["level"] == "error"
    assert "KeyError: 'missing'" in line["exception"]


def test_level_filters_events_and_moves_the_hooks_gate(
    out: io.StringIO, registry: obs.Registry
) -> None:
    obs.configure_logging(json=True, level="DEBUG", stream=out)
    assert (gate.debug, gate.info) == (True, True)
    with obs.trace("dbg"):
        registry.pool("p").task_submitted("t1")  # a DEBUG-level hook event
    assert by_event(out)["task.submitted"]["trace_id"] == "dbg"

    out.truncate(0)
    out.seek(0)
    obs.configure_logging(json=True, level=logging.WARNING, stream=out)
    assert (gate.debug, gate.info) == (False, False)
    library_logger.info("quiet")
    logging.getLogger("x").info("quiet too")
    library_logger.warning("loud")
    assert [line["event"] for line in lines(out)] == ["loud"]


def test_console_rendering_shows_the_trace_id(out: io.StringIO) -> None:
    obs.configure_logging(json=False, level="INFO", stream=out)
    with obs.trace("console-1"):
        structlog.get_logger("app").info("hello")

    text = out.getvalue()
    assert "hello" in text and "trace_id=console-1" in text
    assert not text.lstrip().startswith("{")


def test_without_stdlib_structlog_writes_directly_and_logging_is_untouched(
    out: io.StringIO,
) -> None:
    handlers = list(logging.getLogger().handlers)
    obs.configure_logging(json=True, level="INFO", stdlib=False, stream=out)

    with obs.trace("direct"):
        structlog.get_logger().info("direct.event")
        structlog.get_logger().debug("filtered")

    assert logging.getLogger().handlers == handlers
    (line,) = lines(out)
    assert (line["event"], line["trace_id"], line["level"]) == ("direct.event", "direct", "info")


def test_configuring_twice_replaces_the_handler_instead_of_adding_one(
    out: io.StringIO,
) -> None:
    first = io.StringIO()
    obs.configure_logging(stream=first)
    obs.configure_logging(stream=out)

    logging.getLogger("app").warning("once")

    assert first.getvalue() == ""
    assert [line["event"] for line in lines(out)] == ["once"]


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        obs.configure_logging(level="LOUD")
