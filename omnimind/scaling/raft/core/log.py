"""The in-memory view of a member's Raft log: a snapshot prefix, the entries after it, and bookkeeping of
which entries are persisted (stable), committed and applied.

Indices start at 1; index 0 with term 0 is the empty log's sentinel.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .configuration import CONFIG_ENTRY, Configuration
from .errors import InvariantViolation
from .messages import LogEntry, Snapshot

_EMPTY_SNAPSHOT = Snapshot(index=0, term=0, data=None)


class RaftLog:
    """Entries after ``snapshot.index``; everything at or below it lives only in the snapshot.

    >>> log = RaftLog()
    >>> log.append([LogEntry(1, 1, "a"), LogEntry(1, 2, "b")])
    >>> log.last_index, log.last_term, log.term(1), log.term(5)
    (2, 1, 1, None)
    >>> log.maybe_commit(2, term=1)
    True
    >>> [entry.command for entry in log.entries_to_apply()]
    ['a', 'b']
    """

    def __init__(self, snapshot: Snapshot | None = None, entries: Iterable[LogEntry] = (), committed: int = 0):
        self._snapshot = snapshot or _EMPTY_SNAPSHOT
        self._entries: list[LogEntry] = [entry for entry in entries if entry.index > self._snapshot.index]
        for offset, entry in enumerate(self._entries):
            if entry.index != self._snapshot.index + 1 + offset:
                raise InvariantViolation(f"log entries are not contiguous after the snapshot at {entry.index}")
        self.committed = max(committed, self._snapshot.index)
        if self.committed > self.last_index:
            raise InvariantViolation(f"commit index {self.committed} beyond the last entry {self.last_index}")
        self.applied = self._snapshot.index
        # Everything handed to the constructor came from storage, so it is already durable.
        self._stable_index = self.last_index
        self._pending_snapshot: Snapshot | None = None
        # Indices of the configuration entries held in memory, ascending: the newest one is in effect.
        self._config_indices = [entry.index for entry in self._entries if entry.kind == CONFIG_ENTRY]

    # -- positions ---------------------------------------------------------------------------------------------
    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def first_index(self) -> int:
        return self._snapshot.index + 1

    @property
    def last_index(self) -> int:
        return self._entries[-1].index if self._entries else self._snapshot.index

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self._snapshot.term

    @property
    def entries(self) -> list[LogEntry]:
        """A copy of the entries held in memory (those after the snapshot)."""
        return list(self._entries)

    def term(self, index: int) -> int | None:
        """Term of the entry at ``index``; ``None`` when compacted away or not (yet) in the log."""
        if index == self._snapshot.index:
            return self._snapshot.term
        if index < self._snapshot.index or index > self.last_index:
            return None
        return self._entries[index - self._snapshot.index - 1].term

    def match_term(self, index: int, term: int) -> bool:
        found = self.term(index)
        return found is not None and found == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a candidate whose log ends at (``last_index``, ``last_term``) is at least as current as us."""
        return last_term > self.last_term or (last_term == self.last_term and last_index >= self.last_index)

    def slice(self, start: int, max_count: int) -> list[LogEntry] | None:
        """Up to ``max_count`` entries from ``start``; ``None`` when ``start`` was compacted into the snapshot."""
        if start <= self._snapshot.index:
            return None
        offset = start - self._snapshot.index - 1
        return self._entries[offset : offset + max_count]

    def latest_config(self) -> Configuration | None:
        """The configuration in effect: the newest configuration entry, committed or not, else the snapshot's;
        ``None`` while membership never changed (the bootstrap configuration holds)."""
        return self.config_at(self.last_index)

    def latest_config_index(self) -> int:
        """Index of the newest configuration entry in memory (0 if there is none after the snapshot)."""
        return self._config_indices[-1] if self._config_indices else 0

    def config_at(self, index: int) -> Configuration | None:
        """The configuration in effect at ``index`` (``index`` >= the snapshot's)."""
        for config_index in reversed(self._config_indices):
            if config_index <= index:
                return Configuration.from_dict(self._entries[config_index - self._snapshot.index - 1].command)
        return Configuration.from_dict(self._snapshot.config) if self._snapshot.config is not None else None

    # -- mutation ----------------------------------------------------------------------------------------------
    def append(self, entries: Sequence[LogEntry]) -> None:
        """Append entries that directly follow the last one (the leader's own proposals)."""
        if entries and entries[0].index != self.last_index + 1:
            raise InvariantViolation(f"append at {entries[0].index} leaves a gap after {self.last_index}")
        self._entries.extend(entries)
        self._config_indices.extend([entry.index for entry in entries if entry.kind == CONFIG_ENTRY])

    def maybe_append(self, prev_index: int, prev_term: int, leader_commit: int,
                     entries: Sequence[LogEntry]) -> int | None:
        """Follower side of AppendEntries: the new last index on success, ``None`` if the log does not match."""
        if not self.match_term(prev_index, prev_term):
            return None
        last_new_index = prev_index + len(entries)
        conflict_index = self._find_conflict(entries)
        if conflict_index:
            if conflict_index <= self.committed:
                raise InvariantViolation(f"entry {conflict_index} conflicts with the committed prefix")
            self._replace_suffix(entries[conflict_index - entries[0].index :])
        self.commit_to(min(leader_commit, last_new_index))
        return last_new_index

    def _find_conflict(self, entries: Sequence[LogEntry]) -> int:
        """Index of the first entry that is new or differs from ours, 0 when we already hold all of them."""
        for entry in entries:
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def _replace_suffix(self, entries: Sequence[LogEntry]) -> None:
        start = entries[0].index
        del self._entries[start - self._snapshot.index - 1 :]
        self._entries.extend(entries)
        # A truncated configuration entry takes its configuration with it (it took effect when appended).
        self._config_indices = [index for index in self._config_indices if index < start]
        self._config_indices.extend([entry.index for entry in entries if entry.kind == CONFIG_ENTRY])
        # The truncated entries may have been persisted; storage rewrites from `start` on the next Ready.
        self._stable_index = min(self._stable_index, start - 1)

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int | None]:
        """The largest index <= ``index`` whose term is <= ``term`` (fast log backtracking, etcd's
        ``findConflictByTerm``); the term is ``None`` once the search runs into the compacted prefix."""
        while True:
            found = self.term(index)
            if found is None or found <= term:
                return index, found
            index -= 1

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            if index > self.last_index:
                raise InvariantViolation(f"commit index {index} beyond the last entry {self.last_index}")
            self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        """Leader commit rule (Raft paper, Figure 8): only an entry of the leader's own term is committed by
        counting replicas; earlier entries become committed with it."""
        if index > self.committed and self.term(index) == term:
            self.commit_to(index)
            return True
        return False

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the whole log with a snapshot received from the leader."""
        self._snapshot = snapshot
        self._entries = []
        self._config_indices = []
        self.committed = snapshot.index
        self._stable_index = snapshot.index
        self._pending_snapshot = snapshot

    def compact(self, snapshot: Snapshot) -> None:
        """Drop entries covered by a snapshot of our own applied state machine."""
        if snapshot.index > self.applied or not self.match_term(snapshot.index, snapshot.term):
            raise InvariantViolation(f"cannot compact to {snapshot.index}: not applied or term mismatch")
        if snapshot.index <= self._snapshot.index:
            return
        if snapshot.config is None and self.config_at(snapshot.index) is not None:
            raise InvariantViolation(f"the snapshot at {snapshot.index} lacks the configuration in effect there")
        del self._entries[: snapshot.index - self._snapshot.index]
        self._config_indices = [index for index in self._config_indices if index > snapshot.index]
        self._snapshot = snapshot

    # -- Ready bookkeeping -------------------------------------------------------------------------------------
    @property
    def pending_snapshot(self) -> Snapshot | None:
        """A received snapshot not yet persisted and restored by the runner."""
        return self._pending_snapshot

    def unstable_entries(self) -> list[LogEntry]:
        return self._entries[self._stable_index - self._snapshot.index :]

    def entries_to_apply(self) -> list[LogEntry]:
        if self._pending_snapshot is not None:
            return []  # the state machine first has to be restored from the snapshot
        start = max(self.applied + 1, self.first_index)
        return self._entries[start - self._snapshot.index - 1 : self.committed - self._snapshot.index]

    def has_entries_to_apply(self) -> bool:
        return self._pending_snapshot is None and self.committed > self.applied

    def stable_to(self, entry: LogEntry) -> None:
        # The entry may have been replaced between Ready and advance; only a still-present one marks progress.
        if self.match_term(entry.index, entry.term):
            self._stable_index = max(self._stable_index, entry.index)

    def snapshot_stable(self) -> None:
        if self._pending_snapshot is not None:
            self.applied = max(self.applied, self._pending_snapshot.index)
            self._pending_snapshot = None

    def applied_to(self, index: int) -> None:
        if index > self.committed:
            raise InvariantViolation(f"applied index {index} beyond the commit index {self.committed}")
        self.applied = max(self.applied, index)
