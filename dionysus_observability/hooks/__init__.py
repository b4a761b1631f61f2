"""The handles that observed components call: pipelines, pools, rollbacks, agent runs."""

from __future__ import annotations

from .agents import AgentRunHooks, RunStart
from .pipelines import PipelineRun
from .pool import Pool
from .rollback import RollbackHooks

__all__ = ["AgentRunHooks", "PipelineRun", "Pool", "RollbackHooks", "RunStart"]
