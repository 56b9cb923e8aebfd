"""Which agents exist: in-repo ones registered with ``@agent`` and installed
ones advertised under the entry point group ``omnimind.agents``.

An agent is a callable ``fn(context, payload) -> JSON`` (``context``: an
``omnimind.agents.context.AgentContext``; ``payload``: the JSON object the
caller sent). A package makes one available to every agents worker with, in
its ``pyproject.toml``::

    [project.entry-points."omnimind.agents"]
    summarize = "my_package.agents:summarize"

The target may itself be decorated with ``@agent(..., time_limit=...)`` to carry
a time limit; the entry point's name is the agent's name.

>>> registry = AgentRegistry(group="omnimind.agents.none", builtin_modules=())
>>> @agent("double", time_limit=2.0, registry=registry)
... def double(context, payload):
...     return {"value": 2 * payload["value"]}
>>> spec = registry.get("double")
>>> spec.time_limit, spec.fn(None, {"value": 21})
(2.0, {'value': 42})
>>> registry.get("triple")
Traceback (most recent call last):
...
omnimind.errors.InvalidInput: unknown_agent: no agent named 'triple'; known: ['double']
"""
from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Callable

from omnimind.errors import AgentError, InvalidInput

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "omnimind.agents"
#: In-repo modules whose ``@agent`` functions are registered on first use.
BUILTIN_MODULES = ("omnimind.agents.examples",)
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


@dataclass(frozen=True)
class AgentSpec:
    name: str
    fn: Callable[[Any, dict], Any]
    #: Seconds; None: the ``agents`` queue's soft limit. Never above it.
    time_limit: float | None = None
    source: str = "decorator"

    def effective_time_limit(self, queue_soft_limit: float) -> float:
        return queue_soft_limit if self.time_limit is None else min(self.time_limit, queue_soft_limit)


class AgentRegistry:
    """Agents by name; entry points and built-in modules load on first lookup."""

    def __init__(self, group: str = ENTRY_POINT_GROUP, builtin_modules: tuple[str, ...] = BUILTIN_MODULES) -> None:
        self.group = group
        self.builtin_modules = builtin_modules
        self._specs: dict[str, AgentSpec] = {}
        #: Entry points that failed to load: name -> why (reported when asked for).
        self.broken: dict[str, str] = {}
        self._loaded = False
        self._lock = threading.RLock()

    def register(self, spec: AgentSpec) -> AgentSpec:
        if not isinstance(spec.name, str) or not _NAME.match(spec.name):
            raise ValueError(f"agent names are 1-64 letters, digits, '_', '-' or '.', got {spec.name!r}")
        if spec.time_limit is not None and not spec.time_limit > 0:
            raise ValueError(f"agent {spec.name!r}: time_limit must be positive, got {spec.time_limit!r}")
        with self._lock:
            existing = self._specs.get(spec.name)
            if existing is not None and existing.fn is not spec.fn:
                raise ValueError(f"two different agents named {spec.name!r} ({existing.source}; {spec.source})")
            if existing is None:
                self._specs[spec.name] = spec
        return spec

    def load(self) -> None:
        """Import the built-in modules and every entry point of ``group`` (once)."""
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            for module in self.builtin_modules:
                for value in list(vars(import_module(module)).values()):
                    declared = getattr(value, "agent_spec", None)
                    if isinstance(declared, AgentSpec):
                        self.register(declared)
            for ep in entry_points(group=self.group):
                try:
                    target = ep.load()
                    declared = getattr(target, "agent_spec", None)
                    fn = declared.fn if declared is not None else target
                    if not callable(fn):
                        raise TypeError(f"{ep.value} is not callable")
                    limit = declared.time_limit if declared is not None else None
                    self.register(AgentSpec(ep.name, fn, limit, source=f"entry point {ep.value}"))
                except Exception as exc:  # one broken package must not take the others down
                    self.broken[ep.name] = f"{type(exc).__name__}: {exc}"
                    logger.error("Agent entry point %s = %s failed to load: %s", ep.name, ep.value, exc)

    def get(self, name: Any) -> AgentSpec:
        if name is None:
            raise InvalidInput("missing_field", "'agent' is required")
        if not isinstance(name, str):
            raise InvalidInput("type", f"'agent' must be a string, not {type(name).__name__}")
        self.load()
        spec = self._specs.get(name)
        if spec is not None:
            return spec
        if name in self.broken:
            raise AgentError(name, "load_failed", self.broken[name])
        raise InvalidInput("unknown_agent", f"no agent named {name!r}; known: {self.names()}")

    def names(self) -> list[str]:
        self.load()
        return sorted(self._specs)


#: The registry the ``agents`` workers serve.
registry = AgentRegistry()


def agent(name: str, time_limit: float | None = None, registry: AgentRegistry | None = None):
    """Register ``fn(context, payload)`` as agent ``name`` (see the module docstring)."""
    target = registry if registry is not None else globals()["registry"]

    def decorate(fn):
        spec = target.register(AgentSpec(name, fn, time_limit, source=f"{fn.__module__}.{fn.__qualname__}"))
        fn.agent_spec = spec
        return fn

    return decorate
