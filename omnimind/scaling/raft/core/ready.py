"""The batch of work a :class:`~omnimind.scaling.raft.core.RaftCore` hands to its runner, and the core's side of
that exchange is ``RaftCore.ready``/``RaftCore.advance``.

The runner must, in this order: persist ``snapshot``, ``entries`` and ``hard_state``; send ``messages``;
apply ``committed_entries`` (after restoring the state machine from ``snapshot`` if there is one); then call
``core.advance(ready)``. Persisting before sending is what makes votes and acknowledgements durable promises.

"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .messages import LogEntry, Message, Snapshot


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
