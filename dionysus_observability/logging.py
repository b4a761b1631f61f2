"""Structured logging: structlog processors that stamp every event with a timestamp, the
level and the trace id, rendered as JSON lines or for the console.

``configure_logging`` is an edge: it only wires structlog (and, by default, the standard
``logging`` module) together.  The trace id comes from ``structlog.contextvars``, which
``trace()`` binds, with ``current_trace_id()`` as a fallback, so a log line written
anywhere inside ``with trace(...)`` -- through structlog or through a plain
``logging.getLogger(...)`` -- carries the id of the surrounding trace.

Example::

    import dionysus_observability as obs

    obs.configure_logging(json=True, level="INFO")
    with obs.trace("req-42"):
        logging.getLogger("app").info("hello")   # {"event": "hello", "trace_id": "req-42", ...}
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import IO, Any, TextIO, cast

import structlog
from structlog.types import Processor

from ._context import current_trace_id
from ._log import set_log_level
from .exceptions import InvalidValueError

__all__ = ["add_trace_id", "configure_logging", "reset_logging", "shared_processors"]

#: The key under which every event carries its trace id.
TRACE_ID_KEY = "trace_id"
#: Name given to the handler ``configure_logging`` installs on the root logger, so that a
#: second call replaces it instead of adding another.
HANDLER_NAME = "dionysus_observability"


def add_trace_id(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: set ``trace_id`` from the current trace when the event has none.

    An id the caller passed explicitly (a hook logging for a task submitted under another
    trace) and one merged from ``structlog.contextvars`` are kept as they are.
    """
    if event_dict.get(TRACE_ID_KEY) is None:
        tid = current_trace_id()
        if tid is not None:
            event_dict[TRACE_ID_KEY] = tid
    return event_dict


def shared_processors(*, logger_name: bool = True) -> list[Processor]:
    """The processors every event goes through, structlog's and stdlib's alike.

    Args:
        logger_name: add the ``logger`` key (needs a stdlib logger or record).
    """
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        add_trace_id,
        structlog.stdlib.add_log_level,
    ]
    if logger_name:
        processors.append(structlog.stdlib.add_logger_name)
    processors += [
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    return processors


def _renderer(json: bool, stream: IO[str]) -> list[Processor]:
    if json:
        return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    isatty = getattr(stream, "isatty", None)
    colors = bool(isatty()) if callable(isatty) else False
    return [structlog.dev.ConsoleRenderer(colors=colors)]


def _level(level: int | str) -> int:
    if isinstance(level, bool) or not isinstance(level, int | str):
        raise InvalidValueError(
            f"level must be a logging level name or number, got {level!r:.80}", value=level)
    if isinstance(level, str):
        resolved = logging.getLevelName(level.upper())
        if not isinstance(resolved, int):
            raise InvalidValueError(f"unknown log level {level!r:.80}", value=level)
        return resolved
    return level


def _remove_our_handler(root: logging.Logger) -> None:
    for handler in list(root.handlers):
        if handler.get_name() == HANDLER_NAME:
            root.removeHandler(handler)
            handler.close()


def configure_logging(
    json: bool = True,
    level: int | str = "INFO",
    *,
    stream: IO[str] | None = None,
    stdlib: bool = True,
) -> None:
    """Configure structlog (and the standard ``logging`` module) for structured events.

    Every event gets ``timestamp`` (ISO-8601 UTC), ``level``, ``trace_id`` (when a trace
    is bound or the event names one) and, through stdlib, ``logger``.  The hooks' level
    gate moves with ``level``: a disabled level costs them one attribute read.

    Args:
        json: render one JSON object per line; else a human-readable console line.
        level: the lowest level emitted (``"DEBUG"``, ``"INFO"``, ``logging.WARNING``...).
        stream: where lines go; ``sys.stderr`` by default.
        stdlib: route structlog events through the ``logging`` module and format plain
            ``logging`` records with the same processors (a handler on the root logger,
            replaced on every call; the root level is set to ``level``).  When False,
            structlog writes to ``stream`` directly and ``logging`` is left alone.

    Raises:
        InvalidValueError: (a ``ValueError``) for an unknown level.
    """
    lvl = _level(level)
    out = stream if stream is not None else sys.stderr
    renderer = _renderer(json, out)
    root = logging.getLogger()
    _remove_our_handler(root)
    if stdlib:
        structlog.configure(
            processors=[
                structlog.stdlib.filter_by_level,
                *shared_processors(),
                structlog.stdlib.PositionalArgumentsFormatter(),
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=False,
        )
        formatter = structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared_processors(), structlog.stdlib.ExtraAdder()],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
        handler = logging.StreamHandler(out)
        handler.set_name(HANDLER_NAME)
        handler.setFormatter(formatter)
        root.addHandler(handler)
        root.setLevel(lvl)
    else:
        structlog.configure(
            processors=[*shared_processors(logger_name=False), *renderer],
            logger_factory=structlog.WriteLoggerFactory(file=cast(TextIO, out)),
            wrapper_class=structlog.make_filtering_bound_logger(lvl),
            cache_logger_on_first_use=False,
        )
    set_log_level(lvl)


def reset_logging() -> None:
    """Undo ``configure_logging``: structlog's defaults, our root handler removed, and
    the hooks' level gate back at INFO.  For tests."""
    _remove_our_handler(logging.getLogger())
    structlog.reset_defaults()
    set_log_level(logging.INFO)
