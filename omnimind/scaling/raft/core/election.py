"""Election handlers: election timeouts, (pre-)campaigns, vote counting and answering vote requests."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from .messages import CAMPAIGN_TRANSFER, Message, MessageType
from .ready import Role

if TYPE_CHECKING:
    from .raft import RaftCore


class VoteResult(enum.Enum):
    """Outcome of counting the votes of one (pre-)campaign so far.

    >>> VoteResult.WON.value
    'won'
    """

    PENDING = "pending"
    WON = "won"
    LOST = "lost"


class ElectionHandlers:
    """Mixed into :class:`~omnimind.scaling.raft.core.RaftCore`; ticks of followers and (pre-)candidates and
    the ``_step`` handler of (pre-)candidates.

    >>> import random
    >>> from omnimind.scaling.raft.core import RaftCore
    >>> voter = RaftCore("n2", ["n1", "n2", "n3"], rng=random.Random(1))
    >>> voter.step(Message(MessageType.VOTE, sender="n1", recipient="n2", term=1))
    >>> voter.vote, voter.ready().messages[0].reject
    ('n1', False)
    """

    def _tick_election(self: RaftCore) -> None:
        self._election_elapsed += 1
        if self._election_elapsed >= self._randomized_election_ticks:
            self._election_elapsed = 0
            self._hup()

    def _hup(self: RaftCore, transfer: bool = False) -> None:
        if self._role is Role.LEADER or not self.is_voter:
            return  # learners and removed members never campaign
        if transfer or not self.pre_vote:
            self._campaign(pre_vote=False, transfer=transfer)
        else:
            self._campaign(pre_vote=True)

    def _campaign(self: RaftCore, pre_vote: bool, transfer: bool = False) -> None:
        if pre_vote:
            self._become_pre_candidate()
            request_type, term = MessageType.PRE_VOTE, self._term + 1
        else:
            self._become_candidate()
            request_type, term = MessageType.VOTE, self._term
        if self._poll(self._node_id, granted=True) is VoteResult.WON:
            self._on_election_won()  # a single-member cluster
            return
        for peer in self._config.voters:
            if peer == self._node_id:
                continue
            self._send(request_type, peer, term=term, index=self.log.last_index, log_term=self.log.last_term,
                       context=CAMPAIGN_TRANSFER if transfer else "")

    def _poll(self: RaftCore, voter: str, granted: bool) -> VoteResult:
        if not self._config.is_voter(voter):
            return VoteResult.PENDING  # a learner's (or a removed member's) answer does not count
        self._votes.setdefault(voter, granted)
        granted_count = sum(self._votes.values())
        rejected_count = len(self._votes) - granted_count
        if granted_count >= self.quorum:
            return VoteResult.WON
        if len(self._config.voters) - rejected_count < self.quorum:
            return VoteResult.LOST
        return VoteResult.PENDING

    def _on_election_won(self: RaftCore) -> None:
        if self._role is Role.PRE_CANDIDATE:
            self._campaign(pre_vote=False)
        else:
            self._become_leader()
            self._broadcast_append()

    def _handle_vote_request(self: RaftCore, message: Message) -> None:
        response_type = (MessageType.PRE_VOTE_RESPONSE if message.type is MessageType.PRE_VOTE
                         else MessageType.VOTE_RESPONSE)
        can_vote = (
            self._vote == message.sender  # a repeated request we already granted
            or (self._vote is None and self._leader_id is None)
            # A pre-vote is a hypothetical question about a future term; our vote in this term is irrelevant.
            or (message.type is MessageType.PRE_VOTE and message.term > self._term)
        )
        if can_vote and self.log.is_up_to_date(message.index, message.log_term):
            self._send(response_type, message.sender, term=message.term)
            if message.type is MessageType.VOTE:
                self._election_elapsed = 0
                self._vote = message.sender
        else:
            self._send(response_type, message.sender, reject=True)

    def _step_candidate(self: RaftCore, message: Message) -> None:
        if message.type in (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.INSTALL_SNAPSHOT):
            # Someone won this term; follow it (its term is >= ours, or step() would have dropped the message).
            self._become_follower(message.term, message.sender)
            self._handle_leader_message(message)
            return
        expected = (MessageType.PRE_VOTE_RESPONSE if self._role is Role.PRE_CANDIDATE
                    else MessageType.VOTE_RESPONSE)
        if message.type is not expected:
            return
        result = self._poll(message.sender, granted=not message.reject)
        if result is VoteResult.WON:
            self._on_election_won()
        elif result is VoteResult.LOST:
            self._become_follower(self._term, None)
