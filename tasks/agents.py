"""Tasks on the ``agents`` queue: run a registered agent (``omnimind.agents``).

An agent's time limit is its own (``@agent(..., time_limit=...)``), never above
the queue's soft limit; the queue's hard limit stays the last resort.
"""
from __future__ import annotations

import time
from typing import Any

from omnimind.agents.context import CeleryAgentContext
from omnimind.agents.registry import registry
from omnimind.agents.runner import run_agent
from omnimind.app import get_app, task
from omnimind.config import settings
from omnimind.errors import AgentError, InvalidInput
from workers.context import node_id

#: Seconds past an agent's limit before it is interrupted by force, so that the
#: context's deadline-aware waits end it cleanly first.
INTERRUPT_GRACE = 0.25


@task(name="tasks.agents.run", throws=(InvalidInput, AgentError))
def run(agent: Any = None, payload: Any = None) -> dict:
    """Run agent ``agent`` on ``payload`` (a JSON object).

    Returns ``{"agent", "output", "elapsed_s", "subtasks", "node_id"}``. Unknown
    agent: ``InvalidInput("unknown_agent")``; failure: ``AgentError`` (reason
    ``exception``, ``subtask_failed``, ...); past its limit: ``AgentTimeout``.
    """
    spec = registry.get(agent)
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise InvalidInput("type", f"'payload' must be an object, not {type(payload).__name__}")
    limit = spec.effective_time_limit(settings.limits["agents"].soft)
    started = time.monotonic()
    context = CeleryAgentContext(get_app(), spec.name, deadline=started + limit, subtask_timeout=settings.agent_subtask_timeout)
    output = run_agent(spec, payload, context, limit, grace=INTERRUPT_GRACE)
    return {"agent": spec.name, "output": output, "elapsed_s": round(time.monotonic() - started, 6),
            "subtasks": context.calls, "node_id": node_id()}
