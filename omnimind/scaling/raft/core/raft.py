"""``RaftCore``: the pure, deterministic Raft state machine (the shape of etcd-io/raft's ``raft`` struct).

It owns no sockets, clocks, threads or event loop. Time advances through :meth:`RaftCore.tick`, the network
through :meth:`RaftCore.step`, and everything the outside world must do is collected into a
:class:`~omnimind.scaling.raft.core.ready.Ready`. Per-role behaviour lives in the role handler mixins
(``follower.py``, ``election.py``, ``leader.py``); the active handlers are swapped on every role change
rather than tested with flags.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from .configuration import Configuration
from .election import ElectionHandlers
from .errors import NotLeader, ProposalDropped, RaftConfigError
from .follower import FollowerHandlers
from .leader import LeaderHandlers
from .log import RaftLog
from .membership import MembershipHandlers
from .messages import CAMPAIGN_TRANSFER, LogEntry, Message, MessageType, Snapshot
from .progress import Progress
from .ready import HardState, ReadyProtocol, Role, SoftState

#: Messages taken from members outside our configuration: a leader's (a joining member knows no configuration
#: yet; a member may lag behind the configuration that added the leader) and vote requests (a candidate may be
#: a voter in a configuration we have not appended yet; its vote is only counted if it is in ours).
_FROM_ANY_SENDER = frozenset({MessageType.APPEND, MessageType.HEARTBEAT, MessageType.INSTALL_SNAPSHOT,
                              MessageType.TIMEOUT_NOW, MessageType.VOTE, MessageType.PRE_VOTE})

#: Messages after which our log (and so the configuration in effect) may have changed.
_MAY_CHANGE_LOG = frozenset({MessageType.APPEND, MessageType.INSTALL_SNAPSHOT})


class RaftCore(ReadyProtocol, FollowerHandlers, ElectionHandlers, LeaderHandlers, MembershipHandlers):
    """One member's Raft state machine.

    Hyperparameters are public attributes: ``heartbeat_ticks`` (leader heartbeat period), ``election_ticks``
    (the randomized election timeout is drawn from ``[election_ticks, 2 * election_ticks)``), ``pre_vote``,
    ``check_quorum`` (also enables the leader lease), ``max_entries_per_message`` and
    ``max_inflight_messages``.

    ``voters`` is the bootstrap configuration, in effect until the log holds a configuration entry
    (``membership.py``); a member joining an existing group starts with none and waits for the leader.

    A single member elects itself as soon as its election timeout passes:

    >>> core = RaftCore("n1", ["n1"], rng=random.Random(7))
    >>> for _ in range(2 * core.election_ticks):
    ...     core.tick()
    >>> core.role.value, core.term
    ('leader', 1)
    >>> ready = core.ready()
    >>> ready.hard_state, [entry.index for entry in ready.committed_entries]
    (HardState(term=1, vote='n1', commit=1), [1])
    >>> core.advance(ready)
    >>> core.propose({"op": "set", "key": "a", "value": 1}).index
    2
    """

    def __init__(
        self,
        node_id: str,
        voters: Iterable[str],
        *,
        rng: random.Random,
        hard_state: HardState | None = None,
        snapshot: Snapshot | None = None,
        entries: Iterable[LogEntry] = (),
        heartbeat_ticks: int = 5,
        election_ticks: int = 15,
        pre_vote: bool = True,
        check_quorum: bool = True,
        max_entries_per_message: int = 64,
        max_inflight_messages: int = 64,
    ) -> None:
        voter_list = list(voters)
        if len(set(voter_list)) != len(voter_list):
            raise RaftConfigError(f"duplicate member ids in {voter_list}")
        if voter_list and node_id not in voter_list:
            raise RaftConfigError(f"own id {node_id!r} is missing from the members {voter_list}")
        if not 0 < heartbeat_ticks < election_ticks:
            raise RaftConfigError("heartbeat_ticks must be positive and smaller than election_ticks")
        self.heartbeat_ticks = heartbeat_ticks
        self.election_ticks = election_ticks
        self.pre_vote = pre_vote
        self.check_quorum = check_quorum
        self.max_entries_per_message = max_entries_per_message
        self.max_inflight_messages = max_inflight_messages

        self._node_id = node_id
        self._bootstrap_config = Configuration.of(voter_list)
        self._config = self._bootstrap_config
        self._config_source: tuple[int, int] | None = None
        self._peers = tuple(voter for voter in self._config.voters if voter != node_id)
        self._rng = rng
        hard_state = hard_state or HardState()
        self._term = hard_state.term
        self._vote = hard_state.vote
        self.log = RaftLog(snapshot, entries, hard_state.commit)

        self._messages: list[Message] = []
        self._progress: dict[str, Progress] = {}
        self._votes: dict[str, bool] = {}
        self._leader_id: str | None = None
        self._lead_transferee: str | None = None
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_election_ticks = election_ticks
        self._elections_started = 0
        self._leader_changes = 0
        self._tick: Callable[[], None]
        self._step: Callable[[Message], None]
        self._become_follower(self._term, None)
        self._sync_config()
        self._prev_hard_state = HardState(self._term, self._vote, self.log.committed)
        self._prev_soft_state = SoftState(None, Role.FOLLOWER)

    # -- read-only views ---------------------------------------------------------------------------------------
    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def term(self) -> int:
        return self._term

    @property
    def vote(self) -> str | None:
        return self._vote

    @property
    def role(self) -> Role:
        return self._role

    @property
    def leader_id(self) -> str | None:
        return self._leader_id

    @property
    def is_leader(self) -> bool:
        return self._role is Role.LEADER

    @property
    def commit_index(self) -> int:
        return self.log.committed

    @property
    def applied_index(self) -> int:
        return self.log.applied

    @property
    def lead_transferee(self) -> str | None:
        return self._lead_transferee

    @property
    def randomized_election_ticks(self) -> int:
        return self._randomized_election_ticks

    @property
    def elections_started(self) -> int:
        """Campaigns that raised the term (pre-vote rounds are not counted)."""
        return self._elections_started

    @property
    def leader_changes(self) -> int:
        """How often a new leader was seen (counted when reported in a Ready, like etcd's metric)."""
        return self._leader_changes

    def match_index(self, peer: str) -> int:
        """The leader's view of how much of its log ``peer`` holds (0 when not leading)."""
        progress = self._progress.get(peer)
        return progress.match if progress else 0

    # -- inputs ------------------------------------------------------------------------------------------------
    def tick(self) -> None:
        """Advance logical time by one tick."""
        self._tick()

    def step(self, message: Message) -> None:
        """Process one message from a peer."""
        if message.recipient != self._node_id or message.sender == self._node_id:
            return
        if message.type not in _FROM_ANY_SENDER and message.sender not in self._config:
            return
        if message.term > self._term:
            if message.type in (MessageType.VOTE, MessageType.PRE_VOTE):
                if self._in_leader_lease() and message.context != CAMPAIGN_TRANSFER:
                    # We heard from a live leader within the election timeout: a disruptive (pre)candidate
                    # (e.g. a member rejoining after a partition) must not depose it.
                    return
            if message.type is MessageType.PRE_VOTE:
                pass  # pre-votes never change our term
            elif message.type is MessageType.PRE_VOTE_RESPONSE and not message.reject:
                pass  # the term is raised once the pre-vote is won
            elif message.type in (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.INSTALL_SNAPSHOT):
                self._become_follower(message.term, message.sender)
            else:
                self._become_follower(message.term, None)
        elif message.term < self._term:
            if (self.check_quorum or self.pre_vote) and message.type in (MessageType.APPEND, MessageType.HEARTBEAT):
                # A stale leader, e.g. one that was partitioned away: tell it our term so it steps down. Without
                # this, a member that raised its term could never rejoin under pre-vote/check-quorum.
                self._send(MessageType.APPEND_RESPONSE, message.sender)
            elif message.type is MessageType.PRE_VOTE:
                self._send(MessageType.PRE_VOTE_RESPONSE, message.sender, reject=True)
            return
        if message.type in (MessageType.VOTE, MessageType.PRE_VOTE):
            self._handle_vote_request(message)
        else:
            self._step(message)
        if message.type in _MAY_CHANGE_LOG:
            self._sync_config()

    def campaign(self) -> None:
        """Start an election now, as if the election timeout had just passed (pre-vote first if enabled)."""
        self._election_elapsed = 0
        self._hup()

    def propose(self, command: Any) -> LogEntry:
        """Append ``command`` to the leader's log; raises :class:`NotLeader` on other members."""
        if self._role is not Role.LEADER:
            raise NotLeader(leader_id=self._leader_id)
        if self._lead_transferee is not None:
            raise ProposalDropped(f"leadership is being transferred to {self._lead_transferee}")
        return self._append_as_leader(command)

    def transfer_leadership(self, target: str) -> None:
        """Hand leadership to ``target`` (after catching it up); proposals are refused meanwhile."""
        if self._role is not Role.LEADER:
            raise NotLeader(leader_id=self._leader_id)
        if not self._config.is_voter(target):
            raise RaftConfigError(f"cannot transfer leadership to unknown member {target!r}")
        self._start_leader_transfer(target)

    def compact(self, snapshot: Snapshot) -> None:
        """Forget entries covered by ``snapshot``, a snapshot of our applied state machine."""
        self.log.compact(snapshot)
        self._sync_config()

    # -- role transitions --------------------------------------------------------------------------------------
    def _reset(self, term: int) -> None:
        if term != self._term:
            self._term = term
            self._vote = None
        self._leader_id = None
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_election_ticks = self.election_ticks + self._rng.randrange(self.election_ticks)
        self._lead_transferee = None
        self._votes = {}
        self._progress = {}

    def _become_follower(self, term: int, leader_id: str | None) -> None:
        self._reset(term)
        self._role = Role.FOLLOWER
        self._leader_id = leader_id
        self._tick = self._tick_election
        self._step = self._step_follower

    def _become_pre_candidate(self) -> None:
        # Unlike a real candidacy this changes neither term nor vote, so a failed pre-vote disturbs nobody.
        self._votes = {}
        self._leader_id = None
        self._role = Role.PRE_CANDIDATE
        self._tick = self._tick_election
        self._step = self._step_candidate

    def _become_candidate(self) -> None:
        self._reset(self._term + 1)
        self._vote = self._node_id
        self._role = Role.CANDIDATE
        self._elections_started += 1
        self._tick = self._tick_election
        self._step = self._step_candidate

    def _become_leader(self) -> None:
        self._reset(self._term)
        self._role = Role.LEADER
        self._leader_id = self._node_id
        self._tick = self._tick_heartbeat
        self._step = self._step_leader
        for member in self._config.members:
            self._progress[member] = Progress(self.log.last_index + 1, self.max_inflight_messages)
        own = self._progress[self._node_id]
        own.maybe_update(self.log.last_index)
        own.become_replicate()
        own.recent_active = True
        # The no-op entry of the new term lets the leader commit (Figure 8) everything before it promptly.
        self._append_as_leader(None)

    def _in_leader_lease(self) -> bool:
        return self.check_quorum and self._leader_id is not None and self._election_elapsed < self.election_ticks

    def _send(self, message_type: MessageType, recipient: str, *, term: int | None = None, **fields: Any) -> None:
        self._messages.append(
            Message(message_type, self._node_id, recipient, term=self._term if term is None else term, **fields)
        )
