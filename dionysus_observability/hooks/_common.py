"""Validation helpers shared by the hook handles.  Each returns an error or None."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from enum import Enum, StrEnum
from typing import Any, TypeVar, cast

from ..exceptions import InvalidValueError, ObservabilityError

#: Longest accepted entity id (task, agent, pipeline, checkpoint, tool).
MAX_ID_LENGTH = 256
#: Longest accepted task type name.
MAX_TYPE_LENGTH = 64
#: Longest error text kept with a failure.
MAX_ERROR_LENGTH = 500

E = TypeVar("E", bound=StrEnum)


def bad_id(what: str, value: Any) -> ObservabilityError | None:
    """An error if ``value`` is not a non-empty string of at most MAX_ID_LENGTH chars."""
    if type(value) is str and 0 < len(value) <= MAX_ID_LENGTH:
        return None
    return InvalidValueError(
        f"{what} must be a non-empty string of at most {MAX_ID_LENGTH} characters, "
        f"got {value!r:.80}",
        value=value,
        reason="invalid_id",
    )


def plain_str(value: Any) -> Any:
    """An enum member whose value is a string becomes that string; anything else is kept.

    Hooks accept enum members wherever they take a name (a component's own ``TaskType``
    enum, say); a plain ``str`` passes through untouched.
    """
    if type(value) is not str and isinstance(value, Enum) and isinstance(value.value, str):
        return value.value
    return value


def bad_fraction(what: str, value: Any) -> ObservabilityError | None:
    """An error unless ``value`` is a real number in [0, 1] (or None)."""
    if value is None:
        return None
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0.0 <= value <= 1.0
    ):
        return None
    return InvalidValueError(
        f"{what} must be a fraction between 0.0 and 1.0, got {value!r:.80}", value=value
    )


def bad_count(what: str, value: Any, *, minimum: int = 0) -> ObservabilityError | None:
    """An error unless ``value`` is an int >= minimum."""
    if type(value) is int and value >= minimum:
        return None
    return InvalidValueError(
        f"{what} must be an integer >= {minimum}, got {value!r:.80}", value=value
    )


def bad_seconds(what: str, value: Any) -> ObservabilityError | None:
    """An error unless ``value`` is a finite number >= 0."""
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    ):
        return None
    return InvalidValueError(f"{what} must be a finite number >= 0, got {value!r:.80}", value=value)


def parse_enum(enum: type[E], what: str, value: Any) -> E | ObservabilityError:
    """The member of ``enum`` named by ``value`` (a member or a string in any case)."""
    if isinstance(value, str):
        try:
            return enum(value.lower())
        except ValueError:
            pass
    allowed = ", ".join(m.value for m in enum)
    return InvalidValueError(f"{what} must be one of {allowed}; got {value!r:.80}", value=value)


def error_text(error: Any) -> str | None:
    """A bounded text for an error given as a string or an exception."""
    if error is None:
        return None
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    return text[:MAX_ERROR_LENGTH]


def error_name(error: Any) -> str | None:
    """The name an error is counted under: an exception's type name, else its text."""
    if error is None:
        return None
    if isinstance(error, BaseException):
        return type(error).__name__
    return str(error)


F = TypeVar("F", bound=Callable[..., None])


def guarded(method: F) -> F:
    """Make a hook method never raise in the default mode.

    ``ObservabilityError`` (strict mode) propagates.  Any other exception is an internal
    error: re-raised when the registry is strict, otherwise counted in
    ``dropped_events["internal_error"]`` and logged, so instrumentation never breaks
    the program it observes.  The three per-task hooks inline the same ``try`` instead
    (a ``try`` costs nothing in Python 3.11 until it catches).
    """

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            method(self, *args, **kwargs)
        except ObservabilityError:
            raise
        except Exception as exc:
            self._reg._internal_error(method.__qualname__, exc)

    return cast(F, wrapper)
