"""Spec 021 rollback safety-net hooks: checkpoints and timed rollbacks."""

from __future__ import annotations

import re
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._context import _TRACE_ID
from .._enums import CheckpointState
from .._log import gate, logger
from .._state import CheckpointRec, RollbackRec
from ..exceptions import (
    DuplicateEventError,
    InvalidTransitionError,
    InvalidValueError,
    ObservabilityError,
    UnknownEntityError,
)
from ._common import bad_count, bad_id, bad_seconds, error_text, guarded

if TYPE_CHECKING:
    from ..registry import Registry

__all__ = ["DEFAULT_RETENTION_DAYS", "RollbackHooks", "RollbackTimer"]

#: Spec 021: checkpoints are kept 7 days by default.
DEFAULT_RETENTION_DAYS = 7.0
_DAY_S = 86_400.0
_CHECKSUM = re.compile(r"(sha256:)?[0-9a-fA-F]{64}")


class RollbackHooks:
    """The rollback safety net's hooks: ``registry.rollbacks``."""

    __slots__ = ("_reg",)

    def __init__(self, registry: Registry) -> None:
        self._reg = registry

    @guarded
    def checkpoint_created(
        self,
        checkpoint_id: str,
        *,
        component: str,
        files: int = 0,
        size_bytes: int = 0,
        checksum: str | None = None,
        retention_days: float = DEFAULT_RETENTION_DAYS,
    ) -> None:
        """A checkpoint was taken: ``files`` files, ``size_bytes`` bytes, a sha256 checksum."""
        reg = self._reg
        now = reg._clock()
        tid = _TRACE_ID.get()
        err = (
            bad_id("checkpoint_id", checkpoint_id)
            or bad_id("component", component)
            or bad_count("files", files)
            or bad_count("size_bytes", size_bytes)
            or _bad_checksum(checksum)
            or _bad_retention(retention_days)
        )
        if err is None:
            with reg._lock:
                st = reg._state
                old = st.checkpoints.get(checkpoint_id)
                # one past its retention counts as expired (as in the views): replace it
                if (old is not None and old.state is CheckpointState.ACTIVE
                        and old.expires_at > now):
                    err = DuplicateEventError(
                        f"checkpoint {checkpoint_id!r} already exists and is active",
                        value=checkpoint_id,
                    )
                else:
                    st.checkpoints.pop(checkpoint_id, None)
                    st.checkpoints[checkpoint_id] = CheckpointRec(
                        checkpoint_id, component, files, size_bytes,
                        checksum.lower().removeprefix("sha256:") if checksum else None,
                        now, now + retention_days * _DAY_S, tid,
                    )
                    if len(st.checkpoints) > reg.limits.checkpoints:
                        _, evicted = st.checkpoints.popitem(last=False)
                        if evicted.state is CheckpointState.EXPIRED or evicted.expires_at <= now:
                            st.checkpoints_expired_evicted += 1
                        st.evict("checkpoints")
                    if tid is not None:
                        st.event(now, "checkpoint.created", "checkpoint", checkpoint_id, tid,
                                 {"component": component, "files": files,
                                  "size_bytes": size_bytes})
        if err is not None:
            reg._drop(err)
        elif gate.info:
            logger.info("checkpoint.created", checkpoint_id=checkpoint_id, component=component,
                        files=files, size_bytes=size_bytes)

    def checkpoint_expired(self, checkpoint_id: str) -> None:
        """The checkpoint passed its retention and was expired."""
        self._end(checkpoint_id, CheckpointState.EXPIRED)

    def checkpoint_deleted(self, checkpoint_id: str) -> None:
        """The checkpoint was deleted."""
        self._end(checkpoint_id, CheckpointState.DELETED)

    @guarded
    def _end(self, checkpoint_id: str, state: CheckpointState) -> None:
        reg = self._reg
        now = reg._clock()
        err = bad_id("checkpoint_id", checkpoint_id)
        if err is None:
            with reg._lock:
                rec = reg._state.checkpoints.get(checkpoint_id)
                if rec is None:
                    err = UnknownEntityError(f"no checkpoint {checkpoint_id!r}",
                                             value=checkpoint_id, reason="unknown_checkpoint")
                elif rec.state is not CheckpointState.ACTIVE:
                    err = InvalidTransitionError(
                        f"checkpoint {checkpoint_id!r} is {rec.state.value}; it cannot become "
                        f"{state.value}",
                        value=checkpoint_id,
                    )
                else:
                    rec.state = state
                    rec.ended_at = now
                    tid = rec.trace_id or _TRACE_ID.get()
                    if tid is not None:
                        reg._state.event(now, f"checkpoint.{state.value}", "checkpoint",
                                         checkpoint_id, tid)
        if err is not None:
            reg._drop(err)
        elif gate.info:
            logger.info(f"checkpoint.{state.value}", checkpoint_id=checkpoint_id)

    def rollback(self, checkpoint_id: str) -> RollbackTimer:
        """Time a rollback: ``with registry.rollbacks.rollback("cp1"): restore()``.

        Leaving the block normally records a success (the checkpoint becomes restored);
        an exception records a failure with its text and propagates unchanged.
        """
        return RollbackTimer(self, checkpoint_id)

    @guarded
    def record(
        self,
        checkpoint_id: str,
        *,
        succeeded: bool,
        duration_s: float,
        error: str | BaseException | None = None,
    ) -> None:
        """Record a finished rollback measured elsewhere."""
        reg = self._reg
        now = reg._clock()
        tid = _TRACE_ID.get()
        text = error_text(error)
        err: ObservabilityError | None = bad_id("checkpoint_id", checkpoint_id) or bad_seconds(
            "duration_s", duration_s
        )
        if err is None and not isinstance(succeeded, bool):
            err = InvalidValueError(f"succeeded must be a bool, got {succeeded!r:.80}",
                                    value=succeeded)
        if err is None:
            with reg._lock:
                st = reg._state
                cp = st.checkpoints.get(checkpoint_id)
                if succeeded and cp is not None and cp.state is CheckpointState.ACTIVE:
                    cp.state = CheckpointState.RESTORED
                    cp.ended_at = now
                tid = tid or (cp.trace_id if cp is not None else None)
                st.rollback_history.append(
                    RollbackRec(checkpoint_id, cp.component if cp else None, now - duration_s,
                                float(duration_s), succeeded, text, tid)
                )
                st.rollbacks_total += 1
                bucket = st.rollback_counts.at(now)
                if succeeded:
                    st.rollbacks_succeeded += 1
                    bucket.a += 1
                else:
                    st.rollbacks_failed += 1
                    bucket.b += 1
                st.rollback_last_duration_s = float(duration_s)
                st.rollback_sketches.at(now).x.add(float(duration_s))
                if tid is not None:
                    st.rollback_hist.note(float(duration_s), tid, now)
                if tid is not None:
                    st.event(now, "rollback.finished", "checkpoint", checkpoint_id, tid,
                             {"succeeded": succeeded, "duration_s": duration_s, "error": text})
        if err is not None:
            reg._drop(err)
        elif succeeded:
            if gate.info:
                logger.info("rollback.finished", checkpoint_id=checkpoint_id, succeeded=True,
                            duration_s=duration_s)
        else:
            logger.error("rollback.finished", checkpoint_id=checkpoint_id, succeeded=False,
                         duration_s=duration_s, error=text)


class RollbackTimer:
    """Context manager returned by ``RollbackHooks.rollback``."""

    __slots__ = ("_hooks", "_start", "checkpoint_id")

    def __init__(self, hooks: RollbackHooks, checkpoint_id: str) -> None:
        self._hooks = hooks
        self.checkpoint_id = checkpoint_id
        self._start = 0.0

    def __enter__(self) -> RollbackTimer:
        self._start = self._hooks._reg._clock()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        duration = max(0.0, self._hooks._reg._clock() - self._start)
        self._hooks.record(self.checkpoint_id, succeeded=exc is None, duration_s=duration,
                           error=exc)


def _bad_checksum(value: Any) -> ObservabilityError | None:
    if value is None or (isinstance(value, str) and _CHECKSUM.fullmatch(value)):
        return None
    return InvalidValueError(
        f"checksum must be 'sha256:' followed by 64 hex digits, got {value!r:.80}",
        value=value,
        reason="invalid_checksum",
    )


def _bad_retention(value: Any) -> ObservabilityError | None:
    err = bad_seconds("retention_days", value)
    if err is None and value > 0:
        return None
    return InvalidValueError(f"retention_days must be a number > 0, got {value!r:.80}",
                             value=value)
