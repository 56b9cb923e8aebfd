"""Leader role handlers: heartbeats, CheckQuorum, replication with flow control, commit and leadership
transfer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .configuration import NORMAL_ENTRY
from .messages import LogEntry, Message, MessageType
from .progress import Progress, ProgressState

if TYPE_CHECKING:
    from .raft import RaftCore


class LeaderHandlers:
    """Mixed into :class:`~omnimind.scaling.raft.core.RaftCore`; the ``_tick`` and ``_step`` handlers of a
    leader.

    >>> import random
    >>> from omnimind.scaling.raft.core import RaftCore
    >>> leader = RaftCore("n1", ["n1", "n2"], rng=random.Random(1), pre_vote=False)
    >>> leader.campaign()
    >>> leader.step(Message(MessageType.VOTE_RESPONSE, sender="n2", recipient="n1", term=1))
    >>> leader.role.value, leader.commit_index  # its no-op entry 1 is not replicated yet
    ('leader', 0)
    >>> leader.step(Message(MessageType.APPEND_RESPONSE, sender="n2", recipient="n1", term=1, index=1))
    >>> leader.commit_index
    1
    """

    def _tick_heartbeat(self: RaftCore) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= self.election_ticks:
            self._election_elapsed = 0
            if self.check_quorum and not self._check_quorum_active():
                self._become_follower(self._term, None)
                return
            # A transfer that did not finish within an election timeout has failed; accept proposals again.
            self._lead_transferee = None
        if self._heartbeat_elapsed >= self.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    def _check_quorum_active(self: RaftCore) -> bool:
        """Whether a quorum answered during the last election timeout; starts the next observation window."""
        active = sum(1 for member, progress in self._progress.items()
                     if self._config.is_voter(member) and (member == self._node_id or progress.recent_active))
        for voter, progress in self._progress.items():
            progress.recent_active = voter == self._node_id
        return active >= self.quorum

    def _step_leader(self: RaftCore, message: Message) -> None:
        progress = self._progress.get(message.sender)
        if progress is None:
            return
        if message.type is MessageType.APPEND_RESPONSE:
            progress.recent_active = True
            if message.reject:
                self._handle_append_rejection(message, progress)
            else:
                self._handle_append_success(message, progress)
        elif message.type is MessageType.HEARTBEAT_RESPONSE:
            progress.recent_active = True
            progress.probe_sent = False
            if progress.state is ProgressState.SNAPSHOT:
                # The snapshot may have been lost; probing again resends it if the follower still needs it.
                progress.become_probe()
            elif progress.state is ProgressState.REPLICATE and progress.is_inflight_full():
                progress.free_first_inflight()
            if progress.match < self.log.last_index:
                self._send_append(message.sender)

    def _handle_append_rejection(self: RaftCore, message: Message, progress: Progress) -> None:
        next_probe = message.reject_hint
        if message.log_term > 0:
            # Skip every entry of ours whose term is above the follower's term at the hint in one go.
            next_probe, _ = self.log.find_conflict_by_term(message.reject_hint, message.log_term)
        if progress.maybe_decrease_to(message.index, next_probe):
            if progress.state is ProgressState.REPLICATE:
                progress.become_probe()
            self._send_append(message.sender)

    def _handle_append_success(self: RaftCore, message: Message, progress: Progress) -> None:
        was_paused = progress.is_paused()
        if not progress.maybe_update(message.index):
            return
        if progress.state is ProgressState.PROBE:
            progress.become_replicate()
        elif progress.state is ProgressState.SNAPSHOT and progress.match + 1 >= self.log.first_index:
            progress.become_probe()
            progress.become_replicate()
        if self._maybe_commit():
            self._broadcast_append()
        elif was_paused:
            self._send_append(message.sender)
        while self._maybe_send_append(message.sender, send_if_empty=False):
            pass
        if message.sender == self._lead_transferee and progress.match == self.log.last_index:
            self._send(MessageType.TIMEOUT_NOW, message.sender)

    def _append_as_leader(self: RaftCore, command: Any, kind: str = NORMAL_ENTRY) -> LogEntry:
        entry = LogEntry(self._term, self.log.last_index + 1, command, kind)
        self.log.append([entry])
        self._progress[self._node_id].maybe_update(entry.index)
        if kind != NORMAL_ENTRY:
            self._sync_config()  # a configuration entry is in effect as soon as it is appended
        self._maybe_commit()  # commits at once only in a single-member cluster
        self._broadcast_append()
        return entry

    def _maybe_commit(self: RaftCore) -> bool:
        voters = self._config.voters
        matches = sorted((progress.match for member, progress in self._progress.items() if member in voters),
                         reverse=True)
        return self.log.maybe_commit(matches[self.quorum - 1], self._term)

    def _broadcast_append(self: RaftCore) -> None:
        for peer in self._peers:
            self._send_append(peer)

    def _broadcast_heartbeat(self: RaftCore) -> None:
        for peer in self._peers:
            # Never tell a follower to commit past what it is known to hold.
            commit = min(self._progress[peer].match, self.log.committed)
            self._send(MessageType.HEARTBEAT, peer, commit=commit)

    def _send_append(self: RaftCore, peer: str) -> None:
        self._maybe_send_append(peer, send_if_empty=True)

    def _maybe_send_append(self: RaftCore, peer: str, send_if_empty: bool) -> bool:
        progress = self._progress[peer]
        if progress.is_paused():
            return False
        prev_index = progress.next - 1
        prev_term = self.log.term(prev_index)
        entries = self.log.slice(progress.next, self.max_entries_per_message)
        if prev_term is None or entries is None:
            # The follower needs entries we compacted away: ship the snapshot instead. Only to a follower that
            # answered recently, so an unreachable member does not make us serialize snapshots in a loop.
            if not progress.recent_active:
                return False
            snapshot = self.log.snapshot
            self._send(MessageType.INSTALL_SNAPSHOT, peer, snapshot=snapshot)
            progress.become_snapshot(snapshot.index)
            return True
        if not entries and not send_if_empty:
            return False
        self._send(MessageType.APPEND, peer, index=prev_index, log_term=prev_term, entries=tuple(entries),
                   commit=self.log.committed)
        if entries:
            progress.sent_entries(entries[-1].index)
        elif progress.state is ProgressState.PROBE:
            progress.probe_sent = True  # one probe at a time, empty or not
        return True

    def _start_leader_transfer(self: RaftCore, target: str) -> None:
        if target == self._node_id or target == self._lead_transferee:
            return
        # The transfer must finish within one election timeout (checked in _tick_heartbeat).
        self._election_elapsed = 0
        self._lead_transferee = target
        if self._progress[target].match == self.log.last_index:
            self._send(MessageType.TIMEOUT_NOW, target)
        else:
            self._send_append(target)  # catch the lagging target up first; TIMEOUT_NOW follows its ack
