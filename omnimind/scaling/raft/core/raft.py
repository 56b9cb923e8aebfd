"""``RaftCore``: the pure, deterministic Raft state machine (the shape of etcd-io/raft's ``raft`` struct).

It owns no sockets, clocks, threads or event loop. Time advances through :meth:`RaftCore.tick`, the network
through :meth:`RaftCore.step`, and everything the outside world must do is collected into a
:class:`~omnimind.scaling.raft.core.ready.Ready`. The whole protocol is this one class, as etcd keeps ``raft.go``
whole: the Ready exchange, the follower, elections, the leader and membership changes are sections of it, and the
active ``_tick``/``_step`` handlers are swapped on every role change rather than tested with flags. Only pure
pieces with no access to the core's state live beside it: the log (``log.py``), the leader's view of a follower
(``progress.py``), configurations (``configuration.py``, as etcd's ``confchange``), the wire types
(``messages.py``) and the Ready types (``ready.py``).

The configuration in effect is the newest one in the member's own log (``RaftLog.latest_config``), else the
bootstrap configuration the member was started with. It is re-read whenever the log may have changed: a
leader's own append, a step (appends, truncations, snapshots from the leader) and compaction.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterable
from typing import Any

from .configuration import CONFIG_ENTRY, NORMAL_ENTRY, Configuration
from .errors import InvariantViolation, NotLeader, ProposalDropped, RaftConfigError
from .log import RaftLog
from .messages import CAMPAIGN_TRANSFER, LogEntry, Message, MessageType, Snapshot
from .progress import Progress, ProgressState
from .ready import HardState, Ready, Role, SoftState

#: Messages taken from members outside our configuration: a leader's (a joining member knows no configuration
#: yet; a member may lag behind the configuration that added the leader) and vote requests (a candidate may be
#: a voter in a configuration we have not appended yet; its vote is only counted if it is in ours).
_FROM_ANY_SENDER = frozenset({MessageType.APPEND, MessageType.HEARTBEAT, MessageType.INSTALL_SNAPSHOT,
                              MessageType.TIMEOUT_NOW, MessageType.VOTE, MessageType.PRE_VOTE})

#: Messages after which our log (and so the configuration in effect) may have changed.
_MAY_CHANGE_LOG = frozenset({MessageType.APPEND, MessageType.INSTALL_SNAPSHOT})


class VoteResult(enum.Enum):
    """Outcome of counting the votes of one (pre-)campaign so far.

    >>> VoteResult.WON.value
    'won'
    """

    PENDING = "pending"
    WON = "won"
    LOST = "lost"


class RaftCore:
    """One member's Raft state machine.

    Hyperparameters are public attributes: ``heartbeat_ticks`` (leader heartbeat period), ``election_ticks``
    (the randomized election timeout is drawn from ``[election_ticks, 2 * election_ticks)``), ``pre_vote``,
    ``check_quorum`` (also enables the leader lease), ``max_entries_per_message`` and
    ``max_inflight_messages``.

    ``voters`` is the bootstrap configuration, in effect until the log holds a configuration entry
    (see the membership section); a member joining an existing group starts with none and waits for the leader.

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

    The Ready exchange: work is collected until the runner takes it, and acknowledged with ``advance``:

    >>> core = RaftCore("n1", ["n1", "n2", "n3"], rng=random.Random(1))
    >>> core.has_ready()
    False
    >>> core.campaign()  # a pre-vote round: two requests to send, nothing to persist yet
    >>> ready = core.ready()
    >>> [message.type.value for message in ready.messages], ready.hard_state
    (['pre_vote', 'pre_vote'], None)
    >>> core.advance(ready); core.has_ready()
    False

    A follower accepts the leader's entries and acknowledges them:

    >>> follower = RaftCore("n2", ["n1", "n2"], rng=random.Random(1))
    >>> follower.step(Message(MessageType.APPEND, sender="n1", recipient="n2", term=1,
    ...                       entries=(LogEntry(1, 1, "x"),), commit=1))
    >>> follower.leader_id, follower.commit_index, follower.ready().messages[0].index
    ('n1', 1, 1)

    A voter grants its vote once per term, to a candidate whose log is up to date:

    >>> voter = RaftCore("n2", ["n1", "n2", "n3"], rng=random.Random(1))
    >>> voter.step(Message(MessageType.VOTE, sender="n1", recipient="n2", term=1))
    >>> voter.vote, voter.ready().messages[0].reject
    ('n1', False)

    A leader commits an entry once a quorum holds it:

    >>> leader = RaftCore("n1", ["n1", "n2"], rng=random.Random(1), pre_vote=False)
    >>> leader.campaign()
    >>> leader.step(Message(MessageType.VOTE_RESPONSE, sender="n2", recipient="n1", term=1))
    >>> leader.role.value, leader.commit_index  # its no-op entry 1 is not replicated yet
    ('leader', 0)
    >>> leader.step(Message(MessageType.APPEND_RESPONSE, sender="n2", recipient="n1", term=1, index=1))
    >>> leader.commit_index
    1

    Membership changes one server at a time. A leader accepts a change only once an entry of its own term is
    committed (the fix to the thesis' single-server algorithm: a leader that has not yet committed in its term may
    not know the latest configuration) and while no earlier change is uncommitted.

    >>> leader = RaftCore("n1", ["n1"], rng=random.Random(1))
    >>> leader.campaign(); leader.advance(leader.ready())
    >>> entry = leader.propose_config(leader.configuration.with_learner("n2", "10.0.0.2:7001"))
    >>> entry.kind, leader.learners, leader.voters  # in effect at once, committed at once (one voter)
    ('config', ('n2',), ('n1',))
    >>> leader.propose_config(leader.configuration.without("n1"))
    Traceback (most recent call last):
    ...
    omnimind.scaling.raft.core.errors.RaftConfigError: cannot remove the last voter
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

    # -- the Ready exchange with the runner ------------------------------------------------------------------------
    def _hard_state(self) -> HardState:
        return HardState(self._term, self._vote, self.log.committed)

    def _soft_state(self) -> SoftState:
        return SoftState(self._leader_id, self._role)

    def has_ready(self) -> bool:
        return bool(
            self._messages
            or self._soft_state() != self._prev_soft_state
            or self._hard_state() != self._prev_hard_state
            or self.log.pending_snapshot is not None
            or self.log.unstable_entries()
            or self.log.has_entries_to_apply()
        )

    def ready(self) -> Ready:
        """Collect pending work; the messages are handed over now, the rest is acknowledged by ``advance``."""
        soft_state = self._soft_state()
        hard_state = self._hard_state()
        ready = Ready(
            soft_state=soft_state if soft_state != self._prev_soft_state else None,
            hard_state=hard_state if hard_state != self._prev_hard_state else None,
            entries=tuple(self.log.unstable_entries()),
            snapshot=self.log.pending_snapshot,
            committed_entries=tuple(self.log.entries_to_apply()),
            messages=tuple(self._messages),
        )
        self._messages = []
        return ready

    def advance(self, ready: Ready) -> None:
        """Acknowledge that ``ready`` was persisted, sent and applied."""
        if ready.soft_state is not None:
            if ready.soft_state.leader_id is not None and ready.soft_state.leader_id != self._prev_soft_state.leader_id:
                self._leader_changes += 1
            self._prev_soft_state = ready.soft_state
        if ready.hard_state is not None:
            self._prev_hard_state = ready.hard_state
        if ready.snapshot is not None:
            self.log.snapshot_stable()
        if ready.entries:
            self.log.stable_to(ready.entries[-1])
        if ready.committed_entries:
            self.log.applied_to(ready.committed_entries[-1].index)

    # -- follower: appends, heartbeats and snapshots from the leader -----------------------------------------------
    def _step_follower(self, message: Message) -> None:
        if message.type is MessageType.TIMEOUT_NOW:
            self._hup(transfer=True)
            return
        if message.type in (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.INSTALL_SNAPSHOT):
            self._election_elapsed = 0
            self._leader_id = message.sender
            self._handle_leader_message(message)

    def _handle_leader_message(self, message: Message) -> None:
        if message.type is MessageType.APPEND:
            self._handle_append(message)
        elif message.type is MessageType.HEARTBEAT:
            self.log.commit_to(message.commit)
            self._send(MessageType.HEARTBEAT_RESPONSE, message.sender)
        elif message.type is MessageType.INSTALL_SNAPSHOT and message.snapshot is not None:
            self._handle_snapshot(message.sender, message.snapshot)

    def _handle_append(self, message: Message) -> None:
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

    def _handle_snapshot(self, leader: str, snapshot: Snapshot) -> None:
        if snapshot.index <= self.log.committed:
            self._send(MessageType.APPEND_RESPONSE, leader, index=self.log.committed)
        elif self.log.match_term(snapshot.index, snapshot.term):
            # We already hold the entries the snapshot covers: just fast-forward the commit index.
            self.log.commit_to(snapshot.index)
            self._send(MessageType.APPEND_RESPONSE, leader, index=self.log.last_index)
        else:
            self.log.restore(snapshot)
            self._send(MessageType.APPEND_RESPONSE, leader, index=self.log.last_index)

    # -- elections: timeouts, (pre-)campaigns, vote counting, answering vote requests ------------------------------
    def _tick_election(self) -> None:
        self._election_elapsed += 1
        if self._election_elapsed >= self._randomized_election_ticks:
            self._election_elapsed = 0
            self._hup()

    def _hup(self, transfer: bool = False) -> None:
        if self._role is Role.LEADER or not self.is_voter:
            return  # learners and removed members never campaign
        if transfer or not self.pre_vote:
            self._campaign(pre_vote=False, transfer=transfer)
        else:
            self._campaign(pre_vote=True)

    def _campaign(self, pre_vote: bool, transfer: bool = False) -> None:
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

    def _poll(self, voter: str, granted: bool) -> VoteResult:
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

    def _on_election_won(self) -> None:
        if self._role is Role.PRE_CANDIDATE:
            self._campaign(pre_vote=False)
        else:
            self._become_leader()
            self._broadcast_append()

    def _handle_vote_request(self, message: Message) -> None:
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

    def _step_candidate(self, message: Message) -> None:
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

    # -- leader: heartbeats, CheckQuorum, replication with flow control, commit, leadership transfer ---------------
    def _tick_heartbeat(self) -> None:
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

    def _check_quorum_active(self) -> bool:
        """Whether a quorum answered during the last election timeout; starts the next observation window."""
        active = sum(1 for member, progress in self._progress.items()
                     if self._config.is_voter(member) and (member == self._node_id or progress.recent_active))
        for voter, progress in self._progress.items():
            progress.recent_active = voter == self._node_id
        return active >= self.quorum

    def _step_leader(self, message: Message) -> None:
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

    def _handle_append_rejection(self, message: Message, progress: Progress) -> None:
        next_probe = message.reject_hint
        if message.log_term > 0:
            # Skip every entry of ours whose term is above the follower's term at the hint in one go.
            next_probe, _ = self.log.find_conflict_by_term(message.reject_hint, message.log_term)
        if progress.maybe_decrease_to(message.index, next_probe):
            if progress.state is ProgressState.REPLICATE:
                progress.become_probe()
            self._send_append(message.sender)

    def _handle_append_success(self, message: Message, progress: Progress) -> None:
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

    def _append_as_leader(self, command: Any, kind: str = NORMAL_ENTRY) -> LogEntry:
        entry = LogEntry(self._term, self.log.last_index + 1, command, kind)
        self.log.append([entry])
        self._progress[self._node_id].maybe_update(entry.index)
        if kind != NORMAL_ENTRY:
            self._sync_config()  # a configuration entry is in effect as soon as it is appended
        self._maybe_commit()  # commits at once only in a single-member cluster
        self._broadcast_append()
        return entry

    def _maybe_commit(self) -> bool:
        voters = self._config.voters
        matches = sorted((progress.match for member, progress in self._progress.items() if member in voters),
                         reverse=True)
        return self.log.maybe_commit(matches[self.quorum - 1], self._term)

    def _broadcast_append(self) -> None:
        for peer in self._peers:
            self._send_append(peer)

    def _broadcast_heartbeat(self) -> None:
        for peer in self._peers:
            # Never tell a follower to commit past what it is known to hold.
            commit = min(self._progress[peer].match, self.log.committed)
            self._send(MessageType.HEARTBEAT, peer, commit=commit)

    def _send_append(self, peer: str) -> None:
        self._maybe_send_append(peer, send_if_empty=True)

    def _maybe_send_append(self, peer: str, send_if_empty: bool) -> bool:
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

    def _start_leader_transfer(self, target: str) -> None:
        if target == self._node_id or target == self._lead_transferee:
            return
        # The transfer must finish within one election timeout (checked in _tick_heartbeat).
        self._election_elapsed = 0
        self._lead_transferee = target
        if self._progress[target].match == self.log.last_index:
            self._send(MessageType.TIMEOUT_NOW, target)
        else:
            self._send_append(target)  # catch the lagging target up first; TIMEOUT_NOW follows its ack

    # -- membership: single-server configuration changes, following the configuration in effect --------------------
    @property
    def configuration(self) -> Configuration:
        return self._config

    @property
    def voters(self) -> tuple[str, ...]:
        return self._config.voters

    @property
    def learners(self) -> tuple[str, ...]:
        return self._config.learners

    @property
    def quorum(self) -> int:
        return self._config.quorum

    @property
    def is_voter(self) -> bool:
        return self._config.is_voter(self._node_id)

    def propose_config(self, config: Configuration) -> LogEntry:
        """Append ``config`` (one voter changed at most) to the leader's log; it is in effect from now on."""
        if self._role is not Role.LEADER:
            raise NotLeader(leader_id=self._leader_id)
        if self._lead_transferee is not None:
            raise ProposalDropped(f"leadership is being transferred to {self._lead_transferee}")
        config.check_single_change_from(self._config)
        if not config.is_voter(self._node_id):
            raise RaftConfigError(f"the leader {self._node_id!r} may not remove itself: transfer leadership first")
        if self.log.term(self.log.committed) != self._term:
            raise ProposalDropped("no entry of this term is committed yet; retry the configuration change")
        if self.log.latest_config_index() > self.log.committed:
            raise ProposalDropped("an earlier configuration change is not committed yet")
        return self._append_as_leader(config.to_dict(), kind=CONFIG_ENTRY)

    def make_snapshot(self, data: object) -> Snapshot:
        """A snapshot of the applied state machine ``data`` at the applied index, with the configuration in
        effect there (a snapshot must never lose the membership)."""
        index = self.log.applied
        term = self.log.term(index)
        if term is None:  # the applied index is always in the log or at its snapshot
            raise InvariantViolation(f"applied index {index} has no term in the log")
        config = self.log.config_at(index)
        return Snapshot(index, term, data, None if config is None else config.to_dict())

    def _sync_config(self) -> None:
        """Re-read the configuration in effect after the log may have changed."""
        source = (self.log.latest_config_index(), self.log.snapshot.index)
        if source == self._config_source:
            return
        self._config_source = source
        config = self.log.latest_config() or self._bootstrap_config
        if config == self._config:
            return
        self._config = config
        self._peers = tuple(member for member in config.members if member != self._node_id)
        if self._role is Role.LEADER:
            self._track_members()
        elif self._role in (Role.CANDIDATE, Role.PRE_CANDIDATE) and not self.is_voter:
            self._become_follower(self._term, None)  # a learner again (its promotion was truncated away)

    def _track_members(self) -> None:
        for member in self._peers:
            if member not in self._progress:
                progress = Progress(self.log.last_index + 1, self.max_inflight_messages)
                # A new member is presumed alive so the leader ships it the snapshot at once; CheckQuorum ignores
                # learners, and a new voter's flag is cleared at the next check like everyone else's.
                progress.recent_active = True
                self._progress[member] = progress
        for member in [member for member in self._progress if member not in self._config]:
            del self._progress[member]
        if self._lead_transferee is not None and not self._config.is_voter(self._lead_transferee):
            self._lead_transferee = None
        # A smaller quorum may commit at once what the removed voter held up.
        if self._maybe_commit():
            self._broadcast_append()
