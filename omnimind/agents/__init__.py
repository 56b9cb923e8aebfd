"""Agents: registered callables run on the ``agents`` queue that reach memory and
inference only through Celery tasks (``context``), within a time limit (``runner``).

The agents the workers serve are in ``omnimind.agents.registry.registry``."""
from omnimind.agents.context import AgentContext, CeleryAgentContext, LocalAgentContext
from omnimind.agents.registry import ENTRY_POINT_GROUP, AgentRegistry, AgentSpec, agent
from omnimind.agents.runner import Deadline, run_agent

__all__ = [
    "AgentContext", "CeleryAgentContext", "LocalAgentContext", "ENTRY_POINT_GROUP", "AgentRegistry", "AgentSpec",
    "agent", "Deadline", "run_agent",
]
