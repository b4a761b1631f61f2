"""Trace-id context: one ContextVar, reset with its token.  Imports nothing of ours."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import structlog

__all__ = ["current_trace_id", "new_trace_id", "parse_traceparent", "trace", "valid_trace_id"]

_TRACE_ID: ContextVar[str | None] = ContextVar("dionysus_trace_id", default=None)

#: Longest accepted caller-supplied trace id.
MAX_TRACE_ID_LENGTH = 128
_SAFE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def current_trace_id() -> str | None:
    """Return the trace id bound in the current context, or None."""
    return _TRACE_ID.get()


def new_trace_id() -> str:
    """Return a fresh random trace id: 32 lower-case hex digits, W3C compatible."""
    return secrets.token_hex(16)


def valid_trace_id(value: str | None) -> bool:
    """Whether ``value`` is acceptable as a trace id: 1-128 safe characters."""
    return value is not None and _SAFE.fullmatch(value) is not None


def parse_traceparent(value: str | None) -> str | None:
    """Return the 32-hex trace id of a W3C ``traceparent`` header, or None if malformed."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None or match.group(1) == "0" * 32:
        return None
    return match.group(1)


@contextmanager
def trace(trace_id: str | None = None) -> Iterator[str]:
    """Bind a trace id for the block and yield it.

    Args:
        trace_id: the id to bind; a fresh one when None.

    The id is visible to every hook called in the block (and to structlog through
    ``structlog.contextvars``), and is unbound again on exit, whatever happens.
    """
    tid = trace_id if trace_id is not None else new_trace_id()
    token = _TRACE_ID.set(tid)
    log_tokens = structlog.contextvars.bind_contextvars(trace_id=tid)
    try:
        yield tid
    finally:
        structlog.contextvars.reset_contextvars(**log_tokens)
        _TRACE_ID.reset(token)
