"""Membership handlers: proposing a configuration change, and following the configuration in effect.

The configuration in effect is the newest one in the member's own log (``RaftLog.latest_config``), else the
bootstrap configuration the member was started with. It is re-read whenever the log may have changed: a
leader's own append, a step (appends, truncations, snapshots from the leader) and compaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .configuration import CONFIG_ENTRY, Configuration
from .errors import NotLeader, ProposalDropped, RaftConfigError
from .messages import LogEntry, Snapshot
from .progress import Progress
from .ready import Role

if TYPE_CHECKING:
    from .raft import RaftCore


class MembershipHandlers:
    """Mixed into :class:`~omnimind.scaling.raft.core.RaftCore`: single-server configuration changes.

    A leader accepts a change only once an entry of its own term is committed (the fix to the thesis'
    single-server algorithm: a leader that has not yet committed in its term may not know the latest
    configuration) and while no earlier change is uncommitted.

    >>> import random
    >>> from omnimind.scaling.raft.core import RaftCore
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

    # -- views -------------------------------------------------------------------------------------------------
    @property
    def configuration(self: RaftCore) -> Configuration:
        return self._config

    @property
    def voters(self: RaftCore) -> tuple[str, ...]:
        return self._config.voters

    @property
    def learners(self: RaftCore) -> tuple[str, ...]:
        return self._config.learners

    @property
    def quorum(self: RaftCore) -> int:
        return self._config.quorum

    @property
    def is_voter(self: RaftCore) -> bool:
        return self._config.is_voter(self._node_id)

    # -- proposing ---------------------------------------------------------------------------------------------
    def propose_config(self: RaftCore, config: Configuration) -> LogEntry:
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

    def make_snapshot(self: RaftCore, data: object) -> Snapshot:
        """A snapshot of the applied state machine ``data`` at the applied index, with the configuration in
        effect there (a snapshot must never lose the membership)."""
        index = self.log.applied
        config = self.log.config_at(index)
        return Snapshot(index, self.log.term(index), data, None if config is None else config.to_dict())

    # -- following the configuration ---------------------------------------------------------------------------
    def _sync_config(self: RaftCore) -> None:
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

    def _track_members(self: RaftCore) -> None:
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
