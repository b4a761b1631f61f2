"""Errors raised by hooks in strict mode.

In the default mode a hook never raises: bad input is dropped, counted by reason in
``MetricsReport.dropped_events`` and logged.  With ``Registry(strict=True)`` the same
input raises one of these, so that a test suite finds the caller's bug at once.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CapacityError",
    "DuplicateEventError",
    "InvalidTransitionError",
    "InvalidValueError",
    "ObservabilityError",
    "UnknownEntityError",
]


class ObservabilityError(Exception):
    """Base class of every error this library raises.

    Attributes:
        reason: the short machine-readable reason, the same key that counts the event in
            ``dropped_events`` when the registry is not strict.
        value: the offending value.
    """

    reason: str = "invalid"

    def __init__(self, message: str, *, value: Any = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.value = value
        if reason is not None:
            self.reason = reason

    def __str__(self) -> str:
        return self.message


class InvalidValueError(ObservabilityError, ValueError):
    """A hook argument has the wrong type or is out of range."""

    reason = "invalid_value"


class UnknownEntityError(ObservabilityError, KeyError):
    """A hook names a task, agent, pipeline or checkpoint the registry does not hold."""

    reason = "unknown_entity"

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return self.message


class InvalidTransitionError(ObservabilityError, ValueError):
    """A hook asks for a state change that the component's state machine forbids."""

    reason = "invalid_transition"


class DuplicateEventError(ObservabilityError, ValueError):
    """A hook repeats an event that may happen only once (a task completed twice)."""

    reason = "duplicate"


class CapacityError(ObservabilityError, ValueError):
    """A cap of ``Limits`` is reached (pools, tools, live agents): the event is not kept."""

    reason = "capacity"
