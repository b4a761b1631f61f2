"""The library's structlog logger and a cheap level gate for the hooks' hot path.

Hooks test ``gate.debug`` / ``gate.info`` (one attribute read) before building an event,
so that a disabled level costs next to nothing.  ``configure_logging`` and
``set_log_level`` move the gate; by default DEBUG is off and INFO and above are on.
"""

from __future__ import annotations

import logging

import structlog

from .exceptions import InvalidValueError

__all__ = ["gate", "logger", "set_log_level"]

logger = structlog.get_logger("dionysus_observability")


class _Gate:
    __slots__ = ("debug", "info", "level")

    def __init__(self) -> None:
        self.level = logging.INFO
        self.debug = False
        self.info = True


gate = _Gate()


def set_log_level(level: int | str) -> None:
    """Set the lowest level at which hooks emit events (``"DEBUG"``, ``logging.INFO``...)."""
    if isinstance(level, str):
        resolved = logging.getLevelName(level.upper())
        if not isinstance(resolved, int):
            raise InvalidValueError(f"unknown log level {level!r}", value=level)
        level = resolved
    gate.level = level
    gate.debug = level <= logging.DEBUG
    gate.info = level <= logging.INFO
