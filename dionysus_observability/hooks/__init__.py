"""The handles that observed components call: pipelines, pools, rollbacks."""

from __future__ import annotations

from .pipelines import PipelineRun
from .pool import Pool
from .rollback import RollbackHooks

__all__ = ["PipelineRun", "Pool", "RollbackHooks"]
