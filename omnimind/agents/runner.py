"""Running one agent: within its time limit, with its failures contained.

The limit has to interrupt an agent that does not cooperate (a loop that never
calls the farm), in every pool: Celery's soft time limit exists only under
prefork, and OmniMind's agents workers run a threads pool. So ``Deadline`` arms a
deadline on the process's watchdog that raises an exception *in the agent's
thread* when time is up (``omnimind.deadlines``). It lands at the next Python bytecode: pure
Python loops and the context's waits (which poll) stop within milliseconds; a
single long C call (a huge NumPy op, ``time.sleep(60)``) is interrupted when it
returns. The exception derives from ``BaseException`` so an agent's ``except
Exception`` cannot swallow it. Under prefork, the queue-wide Celery soft limit
(``SoftTimeLimitExceeded``) is honoured as well, and the hard limit kills the
child as the last resort.

Every other failure comes back as a typed ``AgentError(agent, reason, detail)``;
an ``InvalidInput`` raised by the agent itself (it rejected its payload) stays
an ``InvalidInput``.

>>> from omnimind.agents.registry import AgentSpec
>>> def spin(context, payload):
...     while True:
...         pass
>>> run_agent(AgentSpec("spin", spin), {}, None, time_limit=0.05)
Traceback (most recent call last):
...
omnimind.errors.AgentTimeout: agent 'spin' failed (timeout): time limit of 0.05s exceeded
>>> run_agent(AgentSpec("div", lambda c, p: 1 / p["x"]), {"x": 0}, None, time_limit=1)
Traceback (most recent call last):
...
omnimind.errors.AgentError: agent 'div' failed (exception): ZeroDivisionError: division by zero
"""
from __future__ import annotations

import json
import logging
from typing import Any

from omnimind import deadlines
from omnimind.errors import AgentError, AgentTimeout, InvalidInput

logger = logging.getLogger(__name__)


class _Interrupt(BaseException):
    """Raised inside an agent's thread at its deadline."""


class Deadline(deadlines.Deadline):
    """An agent's deadline: raises ``_Interrupt``, which an agent's ``except Exception`` cannot swallow."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds, _Interrupt)


def run_agent(spec, payload: dict, context, time_limit: float, grace: float = 0.0) -> Any:
    """``spec.fn(context, payload)`` within ``time_limit`` seconds; its JSON result
    or a typed error (see the module docstring). ``grace``: extra seconds before the
    forced interrupt, so that the context's own deadline-aware waits end first."""
    from celery.exceptions import SoftTimeLimitExceeded

    name = spec.name
    try:
        with Deadline(time_limit + grace):
            result = spec.fn(context, payload)
    except (_Interrupt, SoftTimeLimitExceeded):
        raise AgentTimeout(name, "timeout", f"time limit of {time_limit:g}s exceeded") from None
    except (AgentError, InvalidInput):
        raise
    except Exception as exc:
        logger.warning("Agent %s failed", name, exc_info=True)
        raise AgentError(name, "exception", f"{type(exc).__name__}: {exc}") from None
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise AgentError(name, "bad_result", f"result is not plain JSON: {exc}") from None
    return result
