"""The replicated state of the cluster: several state machines behind one Raft log.

``StateReplicator`` is what the Raft runner applies committed entries to. Each
command names the machine it is for (``{"machine": "schedule", "command": ...}``),
so the coordinator's schedule state and later cluster decisions (e.g. model
promotions) share one log, one snapshot and one apply interface.

>>> from omnimind.scaling.coordinator import ScheduleStateMachine
>>> from omnimind.scaling.raft import LogEntry
>>> replicator = StateReplicator({"schedule": ScheduleStateMachine()})
>>> replicator.apply(LogEntry(1, 3, wrap("schedule", {"op": "dispatch", "entry": "retrain", "slot": 1, "at": 0.0})))
True
>>> replicator.apply(LogEntry(1, 4, {"machine": "nope", "command": {}})) is None
True
>>> sorted(replicator.snapshot())
['schedule']
"""
from __future__ import annotations

from typing import Any, Mapping

from omnimind.scaling.raft import LogEntry, StateMachine


def wrap(machine: str, command: Any) -> dict:
    """The log command that delivers ``command`` to the machine named ``machine``."""
    return {"machine": machine, "command": command}


class StateReplicator(StateMachine):
    """Routes each committed command to its named state machine."""

    def __init__(self, machines: Mapping[str, StateMachine] | None = None) -> None:
        self.machines: dict[str, StateMachine] = dict(machines or {})

    def register(self, name: str, machine: StateMachine) -> StateMachine:
        if name in self.machines:
            raise ValueError(f"a state machine named {name!r} is already registered")
        self.machines[name] = machine
        return machine

    def apply(self, entry: LogEntry) -> Any:
        command = entry.command
        # Applied identically on every member: anything unroutable is ignored, never raised.
        if not isinstance(command, dict) or command.get("machine") not in self.machines:
            return None
        return self.machines[command["machine"]].apply(LogEntry(entry.term, entry.index, command.get("command")))

    def snapshot(self) -> Any:
        return {name: machine.snapshot() for name, machine in self.machines.items()}

    def restore(self, data: Any) -> None:
        data = data or {}
        for name, machine in self.machines.items():
            machine.restore(data.get(name))
