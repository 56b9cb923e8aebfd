"""The storage contract a Raft member relies on for durability."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from ..core.messages import LogEntry, Snapshot
from ..core.ready import HardState, Ready


@dataclass(frozen=True)
class PersistedState:
    """Everything a restarting member reloads: hard state, latest snapshot and the entries after it.

    >>> from omnimind.scaling.raft.storage import MemoryStorage
    >>> MemoryStorage().load()
    PersistedState(hard_state=HardState(term=0, vote=None, commit=0), snapshot=None, entries=())
    """

    hard_state: HardState
    snapshot: Snapshot | None
    entries: tuple[LogEntry, ...]


class RaftStorage(ABC):
    """Durable term, vote, commit index, log and snapshot.

    Every write method must be durable when it returns (fsync'd for file-backed storage): the runner sends a
    Ready's messages — votes, acknowledgements — only afterwards, and those are promises about this state.

    >>> from omnimind.scaling.raft.storage import MemoryStorage
    >>> storage = MemoryStorage()
    >>> storage.persist_ready(Ready(hard_state=HardState(term=2, vote="n3"), entries=(LogEntry(2, 1, "x"),)))
    >>> storage.load().hard_state.vote, len(storage.load().entries)
    ('n3', 1)
    """

    @abstractmethod
    def load(self) -> PersistedState:
        """What was persisted so far (an empty state on first start)."""

    @abstractmethod
    def save_hard_state(self, hard_state: HardState) -> None:
        """Replace the hard state atomically. Term and vote must be durable on return; the commit index may lag
        behind after a crash (a lower commit index is always safe: the leader tells the member again)."""

    @abstractmethod
    def append(self, entries: Sequence[LogEntry]) -> None:
        """Append contiguous entries; any stored entry at or after ``entries[0].index`` is discarded first
        (the leader overwrote an uncommitted suffix)."""

    @abstractmethod
    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Store ``snapshot`` and drop the entries it covers. If the stored entry at ``snapshot.index`` does not
        carry ``snapshot.term`` (a snapshot received from the leader), every stored entry is dropped."""

    def persist_ready(self, ready: Ready) -> None:
        """Persist a Ready's durable parts in crash-safe order: snapshot, then entries, then the hard state
        (whose commit index may refer to them)."""
        if ready.snapshot is not None:
            self.save_snapshot(ready.snapshot)
        if ready.entries:
            self.append(ready.entries)
        if ready.hard_state is not None:
            self.save_hard_state(ready.hard_state)

    def close(self) -> None:  # noqa: B027  (an optional hook, not an abstract method)
        """Release files or connections; the default holds nothing."""
