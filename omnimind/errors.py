"""Typed errors that cross the broker.

Celery serializes an exception raised by a task as its module, class name and
arguments (JSON), and the client re-raises the same class when it is
importable, so callers get ``InvalidInput`` back, never a torch traceback.
"""
from __future__ import annotations


class OmniMindError(Exception):
    """Base class of every error OmniMind raises on purpose."""


class ConfigError(OmniMindError, ValueError):
    """A setting (environment variable or CLI option) has an unusable value."""


class InvalidInput(OmniMindError, ValueError):
    """A task's payload was rejected before it reached the model.

    ``reason`` is one of a small fixed set (it becomes a metric label), and
    ``detail`` says what exactly was wrong.

    >>> err = InvalidInput("shape", "expected 16 features per example, got 3")
    >>> err.reason, str(err)
    ('shape', 'shape: expected 16 features per example, got 3')
    """

    REASONS = (
        "missing_field", "type", "shape", "non_finite", "batch_too_large", "empty",
        # inference: the model's output for this request is NaN or infinite
        "non_finite_output",
        # learn: a classifier's label outside its closed set, or beyond its head's outputs
        "unknown_label",
        # a model signature's named inputs (omnimind.signature)
        "unknown_feature", "missing_feature", "too_long", "out_of_range",
        # vector memory and agents
        "bad_value", "bad_id", "bad_filter", "unknown_collection", "conflict", "payload_too_large",
        "unknown_agent",
        # any task: arguments that do not fit its signature (workers.time_limits.check_arguments)
        "arguments",
        # any task: a message body over OMNIMIND_MAX_MESSAGE_BYTES (workers.message_limits)
        "message_too_large",
    )

    def __init__(self, reason: str, detail: str = "") -> None:
        # Both stay in ``args`` so Celery's JSON exception round trip rebuilds us.
        super().__init__(reason, detail)

    @property
    def reason(self) -> str:
        return self.args[0]

    @property
    def detail(self) -> str:
        return self.args[1] if len(self.args) > 1 else ""

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


class NoNodeAvailable(OmniMindError, LookupError):
    """No registered node can take a workload with the given requirements."""


class AgentError(OmniMindError, RuntimeError):
    """An agent run failed; the failure is contained in the task result.

    ``reason`` is one of ``REASONS`` and ``detail`` says what happened. The three
    arguments stay in ``args`` so Celery's JSON exception round trip rebuilds it.

    >>> err = AgentError("echo", "exception", "ZeroDivisionError: division by zero")
    >>> err.agent, err.reason, str(err)
    ('echo', 'exception', "agent 'echo' failed (exception): ZeroDivisionError: division by zero")
    """

    REASONS = ("exception", "timeout", "subtask_failed", "subtask_timeout", "forbidden_subtask", "bad_result",
               "load_failed")

    def __init__(self, agent: str, reason: str, detail: str = "") -> None:
        super().__init__(agent, reason, detail)

    @property
    def agent(self) -> str:
        return self.args[0]

    @property
    def reason(self) -> str:
        return self.args[1]

    @property
    def detail(self) -> str:
        return self.args[2] if len(self.args) > 2 else ""

    def __str__(self) -> str:
        text = f"agent {self.agent!r} failed ({self.reason})"
        return f"{text}: {self.detail}" if self.detail else text


class AgentTimeout(AgentError, TimeoutError):
    """An agent ran past its time limit and was interrupted.

    >>> err = AgentTimeout("slow", "timeout", "time limit of 2.0s exceeded")
    >>> isinstance(err, AgentError), err.reason
    (True, 'timeout')
    """

    def __init__(self, agent: str, reason: str = "timeout", detail: str = "") -> None:
        super().__init__(agent, reason, detail)
