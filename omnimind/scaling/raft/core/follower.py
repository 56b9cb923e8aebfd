"""Follower role handlers: accepting appends, heartbeats and snapshots from the leader."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .messages import Message, MessageType, Snapshot

if TYPE_CHECKING:
    from .raft import RaftCore


class FollowerHandlers:
    """Mixed into :class:`~omnimind.scaling.raft.core.RaftCore`; the ``_step`` handler of a follower.

    >>> import random
    >>> from omnimind.scaling.raft.core import RaftCore
    >>> from omnimind.scaling.raft.core.messages import LogEntry
    >>> follower = RaftCore("n2", ["n1", "n2"], rng=random.Random(1))
    >>> follower.step(Message(MessageType.APPEND, sender="n1", recipient="n2", term=1,
    ...                       entries=(LogEntry(1, 1, "x"),), commit=1))
    >>> follower.leader_id, follower.commit_index, follower.ready().messages[0].index
    ('n1', 1, 1)
    """

    def _step_follower(self: RaftCore, message: Message) -> None:
        if message.type is MessageType.TIMEOUT_NOW:
            self._hup(transfer=True)
            return
        if message.type in (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.INSTALL_SNAPSHOT):
            self._election_elapsed = 0
            self._leader_id = message.sender
            self._handle_leader_message(message)

    def _handle_leader_message(self: RaftCore, message: Message) -> None:
        if message.type is MessageType.APPEND:
            self._handle_append(message)
        elif message.type is MessageType.HEARTBEAT:
            self.log.commit_to(message.commit)
            self._send(MessageType.HEARTBEAT_RESPONSE, message.sender)
        elif message.type is MessageType.INSTALL_SNAPSHOT and message.snapshot is not None:
            self._handle_snapshot(message.sender, message.snapshot)

    def _handle_append(self: RaftCore, message: Message) -> None:
        if message.index < self.log.committed:
            # Everything up to our commit index is known to match; tell the leader where we really are.
            self._send(MessageType.APPEND_RESPONSE, message.sender, index=self.log.committed)
            return
        last_index = self.log.maybe_append(message.index, message.log_term, message.commit, message.entries)
        if last_index is not None:
            self._send(MessageType.APPEND_RESPONSE, message.sender, index=last_index)
            return
        # Fast backtracking: point the leader at the last entry that could possibly match, skipping a whole
        # term of conflicting entries per round trip instead of one entry.
        hint_index, hint_term = self.log.find_conflict_by_term(min(message.index, self.log.last_index),
                                                               message.log_term)
        self._send(MessageType.APPEND_RESPONSE, message.sender, index=message.index, reject=True,
                   reject_hint=hint_index, log_term=hint_term or 0)

    def _handle_snapshot(self: RaftCore, leader: str, snapshot: Snapshot) -> None:
        if snapshot.index <= self.log.committed:
            self._send(MessageType.APPEND_RESPONSE, leader, index=self.log.committed)
        elif self.log.match_term(snapshot.index, snapshot.term):
            # We already hold the entries the snapshot covers: just fast-forward the commit index.
            self.log.commit_to(snapshot.index)
            self._send(MessageType.APPEND_RESPONSE, leader, index=self.log.last_index)
        else:
            self.log.restore(snapshot)
            self._send(MessageType.APPEND_RESPONSE, leader, index=self.log.last_index)
