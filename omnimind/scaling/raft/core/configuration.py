"""The membership configuration: who votes, who only learns, and where each member listens.

A configuration travels as the command of a ``config`` log entry (:data:`CONFIG_ENTRY`) and inside snapshots,
so a restarted member rebuilds it from its own log. It takes effect on a member as soon as the entry is in
that member's log, committed or not (single-server changes, Ongaro's thesis §4.1): a truncated entry takes
its configuration back with it.

Changes are single-server: each new configuration differs from the current one by at most one voter, so any
majority of the old voters overlaps any majority of the new ones and two leaders of one term are impossible.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import MalformedMessage, RaftConfigError

#: ``LogEntry.kind`` of an entry whose command is a :class:`Configuration` (``to_dict`` form).
CONFIG_ENTRY = "config"
#: ``LogEntry.kind`` of every other entry.
NORMAL_ENTRY = "normal"


@dataclass(frozen=True)
class Configuration:
    """Voters (counted in elections and commit quorums), learners (replicated to, never counted) and the
    members' addresses (``"host:port"``; opaque to the core, used by the runner's transport).

    >>> config = Configuration.of(["n1", "n2", "n3"])
    >>> joining = config.with_learner("n4", "10.0.0.4:7001")
    >>> joining.learners, joining.quorum
    (('n4',), 2)
    >>> promoted = joining.promoted("n4")
    >>> promoted.voters, promoted.quorum
    (('n1', 'n2', 'n3', 'n4'), 3)
    >>> Configuration.from_dict(promoted.without("n1").to_dict()).voters
    ('n2', 'n3', 'n4')
    """

    voters: tuple[str, ...] = ()
    learners: tuple[str, ...] = ()
    addresses: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, voters: Iterable[str], learners: Iterable[str] = (),
           addresses: Mapping[str, str] | None = None) -> Configuration:
        voter_list, learner_list = list(voters), list(learners)
        members = voter_list + learner_list
        if len(set(members)) != len(members):
            raise RaftConfigError(f"duplicate member ids in voters {voter_list} and learners {learner_list}")
        if any(not isinstance(member, str) or not member for member in members):
            raise RaftConfigError(f"member ids must be non-empty strings: {members}")
        known = {member: address for member, address in (addresses or {}).items() if member in members}
        return cls(tuple(sorted(voter_list)), tuple(sorted(learner_list)), dict(sorted(known.items())))

    @property
    def members(self) -> tuple[str, ...]:
        return self.voters + self.learners

    @property
    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def is_voter(self, member: str) -> bool:
        return member in self.voters

    def __contains__(self, member: object) -> bool:
        return member in self.voters or member in self.learners

    # -- single-server changes ---------------------------------------------------------------------------------
    def with_learner(self, member: str, address: str | None = None) -> Configuration:
        """Add ``member`` as a non-voting learner (a new member catches up before it may vote)."""
        if member in self:
            raise RaftConfigError(f"{member!r} is already a member")
        addresses = dict(self.addresses)
        if address:
            addresses[member] = address
        return Configuration.of(self.voters, self.learners + (member,), addresses)

    def promoted(self, member: str) -> Configuration:
        """Make the learner ``member`` a voter."""
        if member not in self.learners:
            raise RaftConfigError(f"{member!r} is not a learner")
        return Configuration.of(self.voters + (member,), tuple(m for m in self.learners if m != member),
                                self.addresses)

    def without(self, member: str) -> Configuration:
        """Remove ``member`` (voter or learner)."""
        if member not in self:
            raise RaftConfigError(f"{member!r} is not a member")
        if self.voters == (member,):
            raise RaftConfigError("cannot remove the last voter")
        return Configuration.of(tuple(m for m in self.voters if m != member),
                                tuple(m for m in self.learners if m != member), self.addresses)

    def check_single_change_from(self, current: Configuration) -> None:
        """Refuse a configuration that changes more than one voter at once (quorums might not overlap)."""
        changed = set(self.voters) ^ set(current.voters)
        if len(changed) > 1:
            raise RaftConfigError(f"voters {sorted(changed)} change at once; change one member at a time")
        if not self.voters:
            raise RaftConfigError("a configuration needs at least one voter")

    # -- wire form ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"voters": list(self.voters), "learners": list(self.learners), "addresses": dict(self.addresses)}

    @classmethod
    def from_dict(cls, data: Any) -> Configuration:
        if not isinstance(data, dict):
            raise MalformedMessage(f"a configuration must be a JSON object, got {type(data).__name__}")
        voters, learners, addresses = data.get("voters", []), data.get("learners", []), data.get("addresses", {})
        if not isinstance(voters, list) or not isinstance(learners, list) or not isinstance(addresses, dict):
            raise MalformedMessage(f"malformed configuration {data!r}")
        if not all(isinstance(address, str) for address in addresses.values()):
            raise MalformedMessage(f"configuration addresses must be strings: {addresses!r}")
        try:
            return cls.of(voters, learners, addresses)
        except RaftConfigError as error:
            raise MalformedMessage(str(error)) from None
