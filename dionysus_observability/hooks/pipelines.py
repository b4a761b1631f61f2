"""Spec 019 pipeline hooks: discovery and migration runs."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from .._context import _TRACE_ID
from .._enums import PipelineStatus
from .._log import gate, logger
from .._state import PipelineRec
from ..exceptions import InvalidTransitionError, ObservabilityError
from ._common import bad_count, bad_id, error_text, guarded

if TYPE_CHECKING:
    from ..registry import Registry

__all__ = ["PipelineRun"]


class PipelineRun:
    """The hooks of one pipeline run.  Get one with ``registry.pipeline(id, kind=...)``.

    Used as a context manager, a run that exits normally succeeds and one that raises
    fails with the exception's text (the exception propagates).
    """

    __slots__ = ("_attached", "_rec", "_reg", "id")

    def __init__(self, registry: Registry, rec: PipelineRec, *, attached: bool = True) -> None:
        self._reg = registry
        self._rec = rec
        self.id = rec.id
        # A run refused as bad input is detached: its hooks work but write nothing shared.
        self._attached = attached

    def __repr__(self) -> str:
        return f"<PipelineRun {self.id!r} {self._rec.status.value}>"

    @property
    def status(self) -> PipelineStatus:
        """The run's current status."""
        return self._rec.status

    def __enter__(self) -> PipelineRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._rec.status is not PipelineStatus.RUNNING:
            return
        if exc is None:
            self.succeed()
        else:
            self.fail(exc)

    @guarded
    def stage(self, name: str) -> None:
        """The run entered a stage (discovery, assessment, task_creation, migrating...)."""
        err = bad_id("stage", name)
        prev: str | None = None
        if err is None:
            reg = self._reg
            now = reg._clock()
            with reg._lock:
                err = self._running("change stage")
                if err is None:
                    prev = self._rec.stage
                    self._rec.stage = name
                    self._rec.last_progress_at = now
                    self._event(now, "pipeline.stage", {"stage": name})
        if err is not None:
            self._reg._drop(err)
        elif gate.info:
            logger.info("pipeline.stage", pipeline_id=self.id, stage=name, previous=prev)

    @guarded
    def progress(self, succeeded: int = 0, failed: int = 0) -> None:
        """Items finished since the last call (increments, not running totals)."""
        err = bad_count("succeeded", succeeded) or bad_count("failed", failed)
        if err is None:
            reg = self._reg
            now = reg._clock()
            with reg._lock:
                err = self._running("record progress")
                if err is None:
                    rec = self._rec
                    rec.succeeded += succeeded
                    rec.failed += failed
                    rec.last_progress_at = now
                    if not self._attached:
                        return
                    st = reg._state
                    st.items_succeeded += succeeded
                    st.items_failed += failed
                    bucket = st.items.at(now)
                    bucket.a += succeeded
                    bucket.b += failed
                    self._event(now, "pipeline.progress", {"succeeded": succeeded,
                                                          "failed": failed})
        if err is not None:
            self._reg._drop(err)
        elif gate.debug:
            logger.debug("pipeline.progress", pipeline_id=self.id, succeeded=succeeded,
                         failed=failed)

    @guarded
    def set_total(self, total_items: int) -> None:
        """The run now knows (or has grown to) ``total_items`` items."""
        err = bad_count("total_items", total_items)
        if err is None:
            reg = self._reg
            with reg._lock:
                err = self._running("set its total")
                if err is None:
                    rec = self._rec
                    if self._attached:
                        reg._state.items_total += total_items - (rec.total_items or 0)
                    rec.total_items = total_items
        if err is not None:
            self._reg._drop(err)

    def succeed(self) -> None:
        """The run finished successfully."""
        self._finish(PipelineStatus.SUCCEEDED, None)

    def fail(self, error: str | BaseException | None = None) -> None:
        """The run failed, with an error text or exception."""
        self._finish(PipelineStatus.FAILED, error_text(error))

    def cancel(self) -> None:
        """The run was cancelled."""
        self._finish(PipelineStatus.CANCELLED, None)

    @guarded
    def _finish(self, status: PipelineStatus, error: str | None) -> None:
        reg = self._reg
        now = reg._clock()
        with reg._lock:
            err = self._running(f"become {status.value}")
            if err is None:
                rec = self._rec
                rec.status = status
                rec.finished_at = now
                rec.error = error
                st = reg._state
                if not self._attached:
                    return
                if st.pipelines.get(rec.id) is rec:
                    del st.pipelines[rec.id]
                st.finished_pipelines[rec.id] = rec
                st.finished_pipelines.move_to_end(rec.id)
                if len(st.finished_pipelines) > reg.limits.finished_pipelines:
                    st.finished_pipelines.popitem(last=False)
                    st.evict("pipelines")
                key = status.value
                st.pipelines_finished_by_status[key] = (
                    st.pipelines_finished_by_status.get(key, 0) + 1
                )
                self._event(now, f"pipeline.{key}", {"error": error} if error else None)
        if err is not None:
            reg._drop(err)
        elif status is PipelineStatus.FAILED:
            logger.error("pipeline.failed", pipeline_id=self.id, error=error)
        elif gate.info:
            logger.info(f"pipeline.{status.value}", pipeline_id=self.id)

    def _running(self, action: str) -> ObservabilityError | None:
        status = self._rec.status
        if status is PipelineStatus.RUNNING:
            return None
        return InvalidTransitionError(
            f"pipeline {self.id!r} is {status.value}; it cannot {action}", value=self.id
        )

    def _event(self, now: float, kind: str, attrs: dict[str, object] | None) -> None:
        if not self._attached:
            return
        tid = self._rec.trace_id or _TRACE_ID.get()
        if tid is not None:
            self._reg._state.event(now, kind, "pipeline", self.id, tid, attrs)
