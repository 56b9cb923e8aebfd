"""What an agent holds while it runs: a way to call the farm's tasks.

An agent never touches a model or the vector store directly; it asks the farm,
through ``call``/``call_many`` (or the helpers built on them), and waits for
the answer within its own deadline.

``CeleryAgentContext`` sends real Celery tasks. Waiting on a task's result from
inside a task is refused by Celery by default (``disable_sync_subtasks``)
because it can deadlock: if every worker slot of a queue is taken by parents
waiting on children queued behind them on that same queue, nothing moves. Here
it cannot happen, and the context enforces why:

* an agent may only call tasks of *other* queues (``memory``, ``inference``,
  ``training``); ``tasks.agents.*`` is refused (``forbidden_subtask``), so an
  agent never waits on a slot of its own queue;
* the tasks it waits on never wait on anything themselves, so the wait graph
  is acyclic: agents -> memory/inference, which always finish;
* every wait has a timeout (``subtask_timeout``, capped by the agent's deadline).

So the wait is allowed per call (``get(disable_sync_subtasks=False)``), which
is what ``celery.result.allow_join_result()`` does but without flipping a
process-wide flag under a threads pool's feet. (Running the ``agents`` and the
``memory``/``inference`` queues in one *solo* worker would make an agent wait on
a task queued behind itself: the timeout then ends it; do not deploy so.)

``LocalAgentContext`` answers calls from plain callables: a test double for
unit tests of agents, never used by workers.

>>> ctx = LocalAgentContext("demo", {"tasks.inference.predict": lambda inputs: {"outputs": [sum(inputs)]}})
>>> ctx.predict([1.0, 2.0])["outputs"]
[3.0]
>>> ctx.call("tasks.agents.run", agent="demo")
Traceback (most recent call last):
...
omnimind.errors.AgentError: agent 'demo' failed (forbidden_subtask): an agent may not wait on tasks.agents.run (its own queue)
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any, Callable, Mapping, Sequence

from omnimind.errors import AgentError, AgentTimeout

#: Task-name prefixes an agent may not call (their queue is the agent's own).
FORBIDDEN_PREFIXES = ("tasks.agents.",)


class AgentContext(ABC):
    """Calls from one agent run. ``deadline``: ``time.monotonic()`` value at which
    the run's time is up; ``subtask_timeout``: most seconds one call may take."""

    def __init__(self, agent: str, deadline: float | None = None, subtask_timeout: float = 30.0) -> None:
        self.agent = agent
        self.deadline = deadline if deadline is not None else float("inf")
        self.subtask_timeout = subtask_timeout
        #: Names of the tasks called so far, in order (reported in the result).
        self.calls: list[str] = []

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def call(self, task: str, **kwargs) -> Any:
        """Run one task on the farm and return its result."""
        return self.call_many([(task, kwargs)])[0]

    def call_many(self, calls: Sequence[tuple[str, Mapping[str, Any]]]) -> list:
        """Run several tasks (in parallel where the context can) and return their results in order."""
        for task, _ in calls:
            if task.startswith(FORBIDDEN_PREFIXES):
                raise AgentError(self.agent, "forbidden_subtask", f"an agent may not wait on {task} (its own queue)")
        self.calls.extend(task for task, _ in calls)
        return self._run(list(calls))

    @abstractmethod
    def _run(self, calls: list[tuple[str, Mapping[str, Any]]]) -> list: ...

    def _wait_budget(self) -> float:
        remaining = self.remaining()
        if remaining <= 0:
            raise AgentTimeout(self.agent, "timeout", "time limit reached before a subtask could be sent")
        return min(self.subtask_timeout, remaining)

    # -- helpers over the farm's tasks -----------------------------------------------
    def predict(self, inputs: Any) -> dict:
        return self.call("tasks.inference.predict", inputs=inputs)

    def memory_create_collection(self, name: str, dim: int, distance: str = "cosine") -> dict:
        return self.call("tasks.memory.create_collection", name=name, dim=dim, distance=distance)

    def memory_upsert(self, collection: str, id: Any, vector: Any, payload: dict | None = None) -> dict:
        return self.call("tasks.memory.upsert", collection=collection, id=id, vector=vector, payload=payload)

    def memory_search(self, collection: str, vector: Any, k: int = 10, filter: dict | None = None) -> list[dict]:
        return self.call("tasks.memory.search", collection=collection, vector=vector, k=k, filter=filter)["hits"]

    def memory_delete(self, collection: str, ids: Any) -> dict:
        return self.call("tasks.memory.delete", collection=collection, ids=ids)


class CeleryAgentContext(AgentContext):
    """Calls go through the broker as Celery tasks (a ``group`` when several)."""

    def __init__(self, app, agent: str, deadline: float | None = None, subtask_timeout: float = 30.0) -> None:
        super().__init__(agent, deadline, subtask_timeout)
        self.app = app

    def _run(self, calls):
        from celery import group
        from celery.exceptions import TimeoutError as CeleryTimeout

        budget = self._wait_budget()
        names = ", ".join(task for task, _ in calls)
        if len(calls) == 1:
            task, kwargs = calls[0]
            result = self.app.send_task(task, kwargs=dict(kwargs))
        else:
            result = group(self.app.signature(task, kwargs=dict(kwargs)) for task, kwargs in calls).apply_async()
        try:
            # Allowed here, per call: see the module docstring for why this cannot deadlock.
            value = result.get(timeout=budget, disable_sync_subtasks=False)
        except CeleryTimeout:
            result.revoke()
            if self.remaining() <= 0:
                raise AgentTimeout(self.agent, "timeout", f"time limit reached while waiting on {names}") from None
            raise AgentError(self.agent, "subtask_timeout", f"{names} gave no answer within {budget:.1f}s") from None
        except AgentError:
            raise
        except Exception as exc:
            raise AgentError(self.agent, "subtask_failed", f"{names}: {type(exc).__name__}: {exc}") from exc
        return [value] if len(calls) == 1 else list(value)


class LocalAgentContext(AgentContext):
    """Answers calls from ``handlers`` (task name -> callable taking the task's
    kwargs): a test double, see the module docstring."""

    def __init__(self, agent: str, handlers: Mapping[str, Callable[..., Any]], deadline: float | None = None,
                 subtask_timeout: float = 30.0) -> None:
        super().__init__(agent, deadline, subtask_timeout)
        self.handlers = dict(handlers)

    def _run(self, calls):
        self._wait_budget()
        results = []
        for task, kwargs in calls:
            if task not in self.handlers:
                raise AgentError(self.agent, "subtask_failed", f"{task}: no handler in this LocalAgentContext")
            try:
                results.append(self.handlers[task](**kwargs))
            except Exception as exc:
                raise AgentError(self.agent, "subtask_failed", f"{task}: {type(exc).__name__}: {exc}") from exc
        return results
