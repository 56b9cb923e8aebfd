"""The replicated state machine interface: what committed entries are applied to."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import Any

from .messages import LogEntry


class StateMachine(ABC):
    """Applies committed entries in log order; ``snapshot``/``restore`` move its whole state as JSON-compatible
    data (used for log compaction and to bring far-behind members up to date).

    >>> class Counter(StateMachine):
    ...     def __init__(self): self.count = 0
    ...     def apply(self, entry): self.count += 1; return self.count
    ...     def snapshot(self): return self.count
    ...     def restore(self, data): self.count = data or 0
    >>> Counter().apply(LogEntry(term=1, index=1, command="tick"))
    1
    """

    @abstractmethod
    def apply(self, entry: LogEntry) -> Any:
        """Apply one committed entry (``entry.command is None`` for a leader's no-op) and return its result."""

    @abstractmethod
    def snapshot(self) -> Any:
        """The current state as JSON-compatible data."""

    @abstractmethod
    def restore(self, data: Any) -> None:
        """Replace the current state with one produced by :meth:`snapshot` (``None``: the empty state)."""


class KeyValueStateMachine(StateMachine):
    """A replicated dict; commands are ``{"op": "set", "key": k, "value": v}`` or ``{"op": "delete", "key": k}``.
    Other commands are accepted and change nothing, so callers may replicate plain markers.

    >>> machine = KeyValueStateMachine()
    >>> machine.apply(LogEntry(1, 1, {"op": "set", "key": "schedule", "value": {"slot": 3}}))
    >>> machine.apply(LogEntry(1, 2, None))  # a leader's no-op
    >>> machine.data
    {'schedule': {'slot': 3}}
    >>> copy = KeyValueStateMachine(); copy.restore(machine.snapshot()); copy.data == machine.data
    True
    """

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}

    @property
    def data(self) -> dict[str, Any]:
        return copy.deepcopy(self._data)

    def apply(self, entry: LogEntry) -> Any:
        command = entry.command
        # A committed command is applied on every member: bad input must be ignored, never raise.
        if not isinstance(command, dict) or not isinstance(command.get("key"), str):
            return None
        if command.get("op") == "set":
            self._data[command["key"]] = copy.deepcopy(command.get("value"))
        elif command.get("op") == "delete":
            self._data.pop(command["key"], None)
        return None

    def snapshot(self) -> Any:
        return copy.deepcopy(self._data)

    def restore(self, data: Any) -> None:
        self._data = copy.deepcopy(data) if data else {}
