"""The batch of work a :class:`~omnimind.scaling.raft.core.RaftCore` hands to its runner, and the core's side of
that exchange (:class:`ReadyProtocol`).

The runner must, in this order: persist ``snapshot``, ``entries`` and ``hard_state``; send ``messages``;
apply ``committed_entries`` (after restoring the state machine from ``snapshot`` if there is one); then call
``core.advance(ready)``. Persisting before sending is what makes votes and acknowledgements durable promises.

"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .messages import LogEntry, Message, Snapshot

if TYPE_CHECKING:
    from .raft import RaftCore


class Role(str, enum.Enum):
    """Roles of the pure core; a pre-candidate is still a follower as far as the rest of the world knows.

    >>> Role("pre_candidate") is Role.PRE_CANDIDATE
    True
    """

    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True)
class HardState:
    """What must survive a crash besides the log: the current term, our vote in it, and the commit index.

    >>> HardState()
    HardState(term=0, vote=None, commit=0)
    """

    term: int = 0
    vote: str | None = None
    commit: int = 0


@dataclass(frozen=True)
class SoftState:
    """Volatile state worth reporting (leader id and role); never persisted.

    >>> SoftState(leader_id="n1", role=Role.LEADER).role.value
    'leader'
    """

    leader_id: str | None
    role: Role


@dataclass(frozen=True)
class Ready:
    """One batch of work for the runner (see the module documentation for the order to handle it in).

    >>> Ready(hard_state=HardState(term=1, vote="n1")).entries
    ()
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    entries: tuple[LogEntry, ...] = ()
    snapshot: Snapshot | None = None
    committed_entries: tuple[LogEntry, ...] = ()
    messages: tuple[Message, ...] = ()


class ReadyProtocol:
    """Mixed into :class:`~omnimind.scaling.raft.core.RaftCore`: collecting a :class:`Ready` and acknowledging it.

    >>> import random
    >>> from omnimind.scaling.raft.core import RaftCore
    >>> core = RaftCore("n1", ["n1", "n2", "n3"], rng=random.Random(1))
    >>> core.has_ready()
    False
    >>> core.campaign()  # a pre-vote round: two requests to send, nothing to persist yet
    >>> ready = core.ready()
    >>> [message.type.value for message in ready.messages], ready.hard_state
    (['pre_vote', 'pre_vote'], None)
    >>> core.advance(ready); core.has_ready()
    False
    """

    def _hard_state(self: RaftCore) -> HardState:
        return HardState(self._term, self._vote, self.log.committed)

    def _soft_state(self: RaftCore) -> SoftState:
        return SoftState(self._leader_id, self._role)

    def has_ready(self: RaftCore) -> bool:
        return bool(
            self._messages
            or self._soft_state() != self._prev_soft_state
            or self._hard_state() != self._prev_hard_state
            or self.log.pending_snapshot is not None
            or self.log.unstable_entries()
            or self.log.has_entries_to_apply()
        )

    def ready(self: RaftCore) -> Ready:
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

    def advance(self: RaftCore, ready: Ready) -> None:
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
