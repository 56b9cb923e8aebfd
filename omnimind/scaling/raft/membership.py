"""Changing a running group's membership from its leader, and keeping a member's transport in step with the
configuration in effect.

Adding a member is two single-server changes: it joins as a learner (replicated to, a snapshot first when the
log was compacted, never counted in a quorum), and once its log is close to the leader's it is promoted to a
voter. Waiting for the catch-up keeps a new voter from stalling commits: promoting an empty member at once
turns three voters into four with a quorum of three, so one more failure would stall every commit until the
newcomer had caught up.

Removing the leader itself is refused by the core; :func:`remove_member` hands leadership to the most
up-to-date voter first and raises :class:`NotLeader` naming it, so the caller asks the new leader.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .core.configuration import Configuration
from .core.errors import NotLeader, RaftConfigError
from .transport.tcp import parse_peer_addresses

if TYPE_CHECKING:
    from .node import RaftNode

logger = logging.getLogger(__name__)


class MembershipFollower:
    """Points a node's transport at the members of the configuration in effect, with their addresses from the
    configuration (else the addresses the transport was started with).

    >>> from omnimind.scaling.raft import RaftNode
    >>> follower = MembershipFollower(RaftNode("n1", ["n1"]))
    >>> follower.follow(), follower.follow()  # the first call takes the configuration, then nothing changed
    (True, False)
    """

    def __init__(self, node: RaftNode) -> None:
        self._node = node
        self._followed: Configuration | None = None

    def follow(self) -> bool:
        """Update the transport if the configuration changed since the last call; whether it did."""
        config = self._node.core.configuration
        if config is self._followed or config == self._followed:  # called on every Ready: identity first
            return False
        self._followed = config
        transport = self._node.transport
        known = getattr(transport, "peers", None)
        if known is None or not config.members:
            # Not started yet, a transport that reaches anyone (in process), or a joining member that knows no
            # configuration yet.
            return True
        peers = {}
        for member in config.members:
            if member == self._node.node_id:
                continue
            address = config.addresses.get(member)
            try:
                if address:
                    peers[member] = parse_peer_addresses(f"{member}={address}")[member]
                    continue
            except RaftConfigError:  # validated by the leader that proposed it; never crash a member over it
                logger.warning("raft %s: unusable address %r of member %s", self._node.node_id, address, member)
            if member in known:
                peers[member] = known[member]
            else:
                logger.warning("raft %s has no address for member %s", self._node.node_id, member)
        transport.update_peers(peers)
        logger.info("raft %s: voters %s, learners %s", self._node.node_id, list(config.voters),
                    list(config.learners))
        return True


async def add_member(node: RaftNode, member: str, address: str | None = None, *, timeout: float = 30.0,
                     promote_lag: int | None = None) -> Configuration:
    """On the leader: add ``member`` as a learner, wait until it holds all but ``promote_lag`` entries of the
    leader's log (default: one append message's worth), then promote it; returns the new configuration.
    Idempotent: a learner is only promoted, a voter left as it is.

    >>> from omnimind.scaling.raft import RaftNode
    >>> async def grow():
    ...     first = RaftNode("a", ["a"])
    ...     await first.start(); await first.wait_for_leader(timeout=2)
    ...     second = RaftNode("b", ["a", "b"], join=True)
    ...     await second.start()
    ...     config = await add_member(first, "b", timeout=5)
    ...     await first.stop(); await second.stop()
    ...     return config.voters, second.core.voters
    >>> asyncio.run(grow())
    (('a', 'b'), ('a', 'b'))
    """
    if address:
        # A bad address must fail here, not on every member once the configuration is in their logs.
        parse_peer_addresses(f"{member}={address}")
    deadline = asyncio.get_running_loop().time() + timeout
    await _wait_until_changes_accepted(node, deadline)
    config = node.core.configuration
    if member in config.voters:
        return config
    taken = {other for other, known in _with_known_addresses(node, config).addresses.items() if known == address}
    if address and taken - {member}:
        raise RaftConfigError(f"{address} is the address of {', '.join(sorted(taken))}")
    if member not in config.learners:
        entry = await node.propose_config(_with_known_addresses(node, config.with_learner(member, address)),
                                          _left(deadline))
        added_at = entry.index
    else:
        added_at = node.core.log.latest_config_index() or node.core.commit_index
    lag = node.core.max_entries_per_message if promote_lag is None else promote_lag
    while not (node.core.match_index(member) >= max(added_at, node.core.log.last_index - lag)):
        if not node.is_leader:
            raise NotLeader("lost leadership while the learner caught up", leader_id=node.leader_id)
        if _left(deadline) <= 0:
            raise asyncio.TimeoutError(f"learner {member} did not catch up within {timeout} s")
        # The leader's view of a follower changes without a Ready to wake on; poll at the tick rate.
        await asyncio.sleep(node.tick_interval / 1000)
    await node.propose_config(node.core.configuration.promoted(member), _left(deadline))
    return node.core.configuration


async def remove_member(node: RaftNode, member: str, *, timeout: float = 30.0) -> Configuration:
    """On the leader: remove ``member``; returns the new configuration (idempotent). The leader removing itself
    hands leadership over first and raises :class:`NotLeader` with the new leader as the hint.

    >>> from omnimind.scaling.raft import RaftNode
    >>> async def shrink():
    ...     solo = RaftNode("a", ["a"])
    ...     await solo.start(); await solo.wait_for_leader(timeout=2)
    ...     try:
    ...         await remove_member(solo, "a", timeout=2)
    ...     finally:
    ...         await solo.stop()
    >>> asyncio.run(shrink())
    Traceback (most recent call last):
    ...
    omnimind.scaling.raft.core.errors.RaftConfigError: cannot remove the last voter
    """
    deadline = asyncio.get_running_loop().time() + timeout
    await _wait_until_changes_accepted(node, deadline)
    config = node.core.configuration
    if member not in config:
        return config
    smaller = config.without(member)  # refuses to remove the last voter before any transfer
    if member == node.node_id:
        successor = await node.transfer_leadership(timeout=_left(deadline))
        raise NotLeader(f"handed leadership to {successor} before removing {member}", leader_id=successor)
    await node.propose_config(smaller, _left(deadline))
    return node.core.configuration


async def _wait_until_changes_accepted(node: RaftNode, deadline: float) -> None:
    """Until this leader committed an entry of its term and no earlier change is pending (the core's rules)."""
    if not node.is_leader:
        raise NotLeader(leader_id=node.leader_id)
    core = node.core

    def accepted() -> bool:
        return not node.is_leader or (core.log.term(core.commit_index) == core.term
                                      and core.log.latest_config_index() <= core.commit_index)
    await node.wait_for(accepted, max(_left(deadline), 0.001))
    if not node.is_leader:
        raise NotLeader(leader_id=node.leader_id)


def _with_known_addresses(node: RaftNode, config: Configuration) -> Configuration:
    """``config`` completed with the transport's addresses of members it lacks (those given at bootstrap), so
    the log holds every member's address and a restart does not depend on ``OMNIMIND_RAFT_PEERS``."""
    known = getattr(node.transport, "peers", None) or {}
    addresses = {member: f"{host}:{port}" for member, (host, port) in known.items() if member in config}
    addresses.update(config.addresses)
    return Configuration.of(config.voters, config.learners, addresses)


def _left(deadline: float) -> float:
    return deadline - asyncio.get_running_loop().time()

