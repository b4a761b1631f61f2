"""Small workload helpers shared by the test modules: agents and tasks on a pool."""

from __future__ import annotations

import dionysus_observability as obs

__all__ = ["spawn"]


def spawn(pool: obs.Pool, *agent_ids: str) -> None:
    """Spawn each agent with isolation ids of its own (``cw-<id>``, ``ts-<id>``, ``mh-<id>``)."""
    for agent_id in agent_ids:
        pool.agent_spawned(agent_id, context_window_id=f"cw-{agent_id}",
                           tool_session_id=f"ts-{agent_id}", memory_handle_id=f"mh-{agent_id}")
