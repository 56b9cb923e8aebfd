"""In-memory storage for tests and simulations; it survives a simulated crash because the harness keeps the
object while throwing the member away."""

from __future__ import annotations

from collections.abc import Sequence

from ..core.errors import InvariantViolation
from ..core.messages import LogEntry, Snapshot
from ..core.ready import HardState
from .base import PersistedState, RaftStorage


class MemoryStorage(RaftStorage):
    """Keeps the persisted state in Python objects.

    >>> storage = MemoryStorage()
    >>> storage.append([LogEntry(1, 1, "a"), LogEntry(1, 2, "b"), LogEntry(1, 3, "c")])
    >>> storage.append([LogEntry(2, 2, "B")])  # a new leader overwrote the uncommitted suffix
    >>> [entry.command for entry in storage.load().entries]
    ['a', 'B']
    >>> storage.save_snapshot(Snapshot(index=1, term=1, data=["a"]))
    >>> [entry.index for entry in storage.load().entries]
    [2]
    """

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot: Snapshot | None = None
        self._entries: list[LogEntry] = []

    def load(self) -> PersistedState:
        return PersistedState(self._hard_state, self._snapshot, tuple(self._entries))

    def save_hard_state(self, hard_state: HardState) -> None:
        self._hard_state = hard_state

    def append(self, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        first_stored = self._entries[0].index if self._entries else self._snapshot_index() + 1
        start = entries[0].index
        if start > first_stored + len(self._entries):
            raise InvariantViolation(f"append at {start} leaves a gap after {first_stored + len(self._entries) - 1}")
        del self._entries[max(start - first_stored, 0):]
        self._entries.extend(entries)

    def save_snapshot(self, snapshot: Snapshot) -> None:
        continues_snapshot = any(e.index == snapshot.index and e.term == snapshot.term for e in self._entries) or (
            bool(self._entries) and self._entries[0].index == snapshot.index + 1)
        if continues_snapshot:
            self._entries = [entry for entry in self._entries if entry.index > snapshot.index]
        else:
            self._entries = []
        self._snapshot = snapshot

    def _snapshot_index(self) -> int:
        return self._snapshot.index if self._snapshot else 0
