"""What a leader knows about each follower's log: match/next indices and the flow-control state
(probe, replicate, snapshot) of etcd-io/raft's ``tracker.Progress``.
"""

from __future__ import annotations

import enum
from collections import deque


class ProgressState(enum.Enum):
    """Flow-control state of one follower.

    >>> ProgressState.REPLICATE.value
    'replicate'
    """

    PROBE = "probe"  # one append at a time until we find where the follower's log matches
    REPLICATE = "replicate"  # stream appends optimistically, bounded by the in-flight window
    SNAPSHOT = "snapshot"  # a snapshot is on its way; send nothing else until it is acknowledged


class Progress:
    """Replication state of one follower, kept by the leader.

    >>> progress = Progress(next_index=5, max_inflight=2)
    >>> progress.maybe_update(4), progress.match, progress.next
    (True, 4, 5)
    >>> progress.become_replicate()
    >>> progress.sent_entries(6); progress.sent_entries(8)
    >>> progress.is_paused()  # two appends in flight, the window is full
    True
    >>> progress.maybe_update(8); progress.is_paused()
    True
    False
    """

    def __init__(self, next_index: int, max_inflight: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        # Set whenever the follower answers; CheckQuorum clears it once per election timeout.
        self.recent_active = False
        self.max_inflight = max_inflight
        self._inflight: deque[int] = deque()  # last index of each unacknowledged append

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            # Continue after the snapshot we sent; a rejection will walk back if it never arrived.
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self._inflight.clear()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self._inflight.clear()

    def become_snapshot(self, snapshot_index: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.pending_snapshot = snapshot_index
        self._inflight.clear()

    def maybe_update(self, index: int) -> bool:
        """Record an acknowledgement up to ``index``; ``False`` if it brings nothing new (a stale response)."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        while self._inflight and self._inflight[0] <= index:
            self._inflight.popleft()
        return updated

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """Move ``next`` back after a rejected append; ``False`` if the rejection is stale."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def sent_entries(self, last_index: int) -> None:
        """Account for an append that carried entries up to ``last_index``."""
        if self.state is ProgressState.REPLICATE:
            self.next = last_index + 1
            self._inflight.append(last_index)
        else:
            self.probe_sent = True

    def free_first_inflight(self) -> None:
        """Give back one slot of the window; used when a heartbeat shows the follower is alive but an append
        acknowledgement was evidently lost."""
        if self._inflight:
            self._inflight.popleft()

    def is_inflight_full(self) -> bool:
        return len(self._inflight) >= self.max_inflight

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.is_inflight_full()
        return True
