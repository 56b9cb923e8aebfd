"""``RaftNode``: the asyncio runner around :class:`~omnimind.scaling.raft.core.RaftCore`.

It reads the clock (the event loop's) and turns it into ticks, feeds received messages to the core, and
handles every Ready in the required order: persist, send, apply, ``advance``. It also snapshots the state
machine and compacts the log every ``snapshot_threshold`` applied entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from omnimind.config import RAFT_ELECTION_TIMEOUT_MS, RAFT_HEARTBEAT_MS, RAFT_TICK_MS

from .core import RaftCore
from .core.errors import NotLeader, ProposalDropped, RaftConfigError, RaftError, RaftStopped
from .core.configuration import Configuration
from .core.messages import LogEntry, Message
from .membership import MembershipFollower
from .notifications import LeadershipListener, StateChangeNotifier
from .proposals import PendingProposals
from .core.ready import Role
from .core.state_machine import KeyValueStateMachine, StateMachine
from .storage.base import RaftStorage
from .storage.memory import MemoryStorage
from .transport.base import RaftTransport
from .transport.inprocess import InProcessNetwork

logger = logging.getLogger(__name__)

class NodeState(enum.Enum):
    """A member's role as the seed's API reports it (a pre-candidate reports ``FOLLOWER``).

    >>> NodeState("leader") is NodeState.LEADER
    True
    """

    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


_STATE_OF_ROLE = {Role.FOLLOWER: NodeState.FOLLOWER, Role.PRE_CANDIDATE: NodeState.FOLLOWER,
                  Role.CANDIDATE: NodeState.CANDIDATE, Role.LEADER: NodeState.LEADER}


class RaftNode:
    """One Raft member running on the current asyncio event loop.

    Without a ``transport`` the member joins the running loop's default in-process network, so members created
    in the same loop with no further arguments find each other (the seed's example). Times are milliseconds:
    a tick every ``tick_interval``, heartbeats every ``heartbeat_interval``, election timeouts drawn from
    ``[min_election_timeout, 2 * min_election_timeout)``.

    >>> async def elect_one():
    ...     node = RaftNode("solo", ["solo"])
    ...     await node.start()
    ...     leader = await node.wait_for_leader(timeout=2)
    ...     entry = await node.propose({"op": "set", "key": "a", "value": 1})
    ...     await node.stop()
    ...     return leader, node.state, entry.index, node.state_machine.data
    >>> asyncio.run(elect_one())
    ('solo', <NodeState.LEADER: 'leader'>, 2, {'a': 1})
    """

    def __init__(self, node_id: str, cluster_nodes: Iterable[str], *, transport: RaftTransport | None = None,
                 storage: RaftStorage | None = None, state_machine: StateMachine | None = None,
                 tick_interval: float = RAFT_TICK_MS, heartbeat_interval: float = RAFT_HEARTBEAT_MS,
                 min_election_timeout: float = RAFT_ELECTION_TIMEOUT_MS, pre_vote: bool = True, check_quorum: bool = True,
                 snapshot_threshold: int = 1024, rng: random.Random | None = None, join: bool = False) -> None:
        self.node_id = node_id
        self.cluster_nodes = list(cluster_nodes)  # the bootstrap members (``join``: the ones to contact)
        self.tick_interval = tick_interval
        self.snapshot_threshold = snapshot_threshold
        self.storage = storage or MemoryStorage()
        self.state_machine = state_machine or KeyValueStateMachine()
        if transport is not None and transport.node_id != node_id:
            raise RaftConfigError(f"transport of {transport.node_id!r} handed to member {node_id!r}")
        self._transport = transport
        persisted = self.storage.load()
        # A joining member votes in no bootstrap configuration: it learns its configuration from the leader.
        self.core = RaftCore(
            node_id, () if join else self.cluster_nodes, rng=rng or random.Random(),
            hard_state=persisted.hard_state, snapshot=persisted.snapshot, entries=persisted.entries,
            heartbeat_ticks=max(1, round(heartbeat_interval / tick_interval)),
            election_ticks=max(2, round(min_election_timeout / tick_interval)),
            pre_vote=pre_vote, check_quorum=check_quorum)
        transport_peers = getattr(transport, "peers", None)
        if (not join and self.core.log.latest_config() is None and transport_peers is not None
                and set(transport_peers) != set(self.cluster_nodes)):
            raise RaftConfigError(f"transport peers {sorted(transport_peers)} differ from the members "
                                  f"{sorted(self.cluster_nodes)}")
        self._membership = MembershipFollower(self)
        if persisted.snapshot is not None:
            self.state_machine.restore(persisted.snapshot.data)
        self._inbox: deque[Message] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._tick_timer: asyncio.TimerHandle | None = None
        self._stopped = False
        self._pending = PendingProposals()
        self._notifier = StateChangeNotifier()

    # -- the seed's attributes and other read-only views -------------------------------------------------------
    @property
    def state(self) -> NodeState:
        return _STATE_OF_ROLE[self.core.role]

    @property
    def current_term(self) -> int:
        return self.core.term

    @property
    def voted_for(self) -> str | None:
        return self.core.vote

    @property
    def log(self) -> list[LogEntry]:
        """The entries held in memory (those after the latest snapshot)."""
        return self.core.log.entries

    @property
    def commit_index(self) -> int:
        return self.core.commit_index

    @property
    def last_applied(self) -> int:
        return self.core.applied_index

    @property
    def election_timeout(self) -> float:
        """The current randomized election timeout in milliseconds."""
        return self.core.randomized_election_ticks * self.tick_interval

    @property
    def heartbeat_interval(self) -> float:
        return self.core.heartbeat_ticks * self.tick_interval

    @property
    def leader_id(self) -> str | None:
        return self.core.leader_id

    @property
    def is_leader(self) -> bool:
        return self.core.is_leader

    @property
    def leader_changes(self) -> int:
        return self.core.leader_changes

    @property
    def elections_started(self) -> int:
        return self.core.elections_started

    @property
    def dropped_frames(self) -> dict[str, int]:
        return self._transport.dropped_frames if self._transport else {}

    @property
    def transport(self) -> RaftTransport | None:
        return self._transport

    def status(self) -> dict[str, Any]:
        """A JSON-compatible summary for ``omnimind status`` and metrics."""
        return {"node_id": self.node_id, "state": self.state.value, "term": self.current_term,
                "leader_id": self.leader_id, "commit_index": self.commit_index, "last_applied": self.last_applied,
                "last_index": self.core.log.last_index, "elections_started": self.elections_started,
                "leader_changes": self.leader_changes, "dropped_frames": self.dropped_frames,
                "voters": list(self.core.voters), "learners": list(self.core.learners)}

    # -- lifecycle ---------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start ticking and serving in a background task (idempotent)."""
        if self._stopped:
            raise RaftError("a stopped RaftNode cannot be restarted; create a new one on the same storage")
        if self._task is not None:
            return
        if self._transport is None:
            self._transport = InProcessNetwork.for_running_loop().transport(self.node_id)
        self._wakeup = asyncio.Event()
        await self._transport.start(self._receive)
        self._membership.follow()  # a restarted member's configuration may name members the bootstrap did not
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"raft-node-{self.node_id}")

    async def stop(self, transfer_leadership: bool = False) -> None:
        """Stop the member; with ``transfer_leadership`` a leader first hands over (graceful shutdown)."""
        if transfer_leadership and self.is_leader and len(self.core.voters) > 1:
            with contextlib.suppress(RaftError, asyncio.TimeoutError):
                await self.transfer_leadership()
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._tick_timer is not None:
            self._tick_timer.cancel()
        if self._transport is not None:
            await self._transport.stop()
        self.storage.close()
        self._pending.fail(RaftStopped(f"raft member {self.node_id} stopped"))
        self._notifier.state_changed()

    def _receive(self, message: Message) -> None:
        self._inbox.append(message)
        self._wakeup.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        tick_seconds = self.tick_interval / 1000
        next_tick = loop.time() + tick_seconds
        self._tick_timer = loop.call_at(next_tick, self._wakeup.set)
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._inbox:
                    self.core.step(self._inbox.popleft())
                now = loop.time()
                if now >= next_tick:
                    # Catch up on ticks missed while the loop was busy (or the process paused) so timeouts track
                    # real time. Two election timeouts are enough for every timeout to fire — a paused leader
                    # fails CheckQuorum and steps down — without replaying a long pause tick by tick.
                    missed = int((now - next_tick) / tick_seconds) + 1
                    for _ in range(min(missed, 2 * self.core.election_ticks + 1)):
                        self.core.tick()
                    next_tick += missed * tick_seconds
                    self._tick_timer = loop.call_at(next_tick, self._wakeup.set)
                self._handle_ready()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # storage failure or a bug: crash-stop, never run on with unpersisted state
            logger.exception("raft member %s failed and stopped", self.node_id)
            self._stopped = True
            self._pending.fail(RaftStopped(f"raft member {self.node_id} failed: {error}"))
            self._notifier.state_changed()

    def _handle_ready(self) -> None:
        while self.core.has_ready():
            ready = self.core.ready()
            self.storage.persist_ready(ready)  # durable before any message that promises it leaves
            # Before sending: the first append to a member just added needs its address in the transport.
            config_changed = self._membership.follow()
            for message in ready.messages:
                self._transport.send(message)
            if ready.snapshot is not None:
                self.state_machine.restore(ready.snapshot.data)
                self._pending.fail(ProposalDropped("superseded by a snapshot from the leader"),
                                   up_to=ready.snapshot.index)
            for entry in ready.committed_entries:
                if not entry.is_config:  # configurations are the core's business, not the state machine's
                    self.state_machine.apply(entry)
                self._pending.resolve(entry, self.leader_id)
            self.core.advance(ready)
            if ready.soft_state is not None:
                self._notifier.leadership_changed(ready.soft_state.leader_id, self.core.term)
            if ready.soft_state is not None or ready.committed_entries or ready.snapshot is not None or config_changed:
                self._notifier.state_changed()
            self._maybe_snapshot()

    def _maybe_snapshot(self) -> None:
        applied = self.core.applied_index
        if applied - self.core.log.snapshot.index < self.snapshot_threshold:
            return
        snapshot = self.core.make_snapshot(self.state_machine.snapshot())
        self.storage.save_snapshot(snapshot)
        self.core.compact(snapshot)

    # -- client API --------------------------------------------------------------------------------------------
    async def propose(self, command: Any, timeout: float | None = None) -> LogEntry:
        """Replicate ``command`` (JSON-compatible) and return its entry once committed and applied here.

        Raises :class:`NotLeader` (with a leader hint) on a follower or once another entry was committed at the
        proposal's index, :class:`ProposalDropped` during a leadership transfer, :class:`RaftStopped` if stopped
        meanwhile. ``asyncio.TimeoutError`` after ``timeout`` seconds means the outcome is unknown (the leader
        lost leadership and nothing has been committed at that index yet), so commands should be idempotent.
        """
        json.dumps(command)  # TypeError now rather than a dropped frame later
        if self._stopped or self._task is None:
            raise RaftStopped(f"raft member {self.node_id} is not running")
        future = self._pending.add(self.core.propose(command))
        self._wakeup.set()
        return await asyncio.wait_for(future, timeout)  # on timeout the future is cancelled and forgotten

    async def propose_config(self, config: Configuration, timeout: float | None = None) -> LogEntry:
        """Replicate a configuration change (see ``membership.py`` for adding and removing members); it is in
        effect at once and returned once committed. Raises like :meth:`propose`."""
        if self._stopped or self._task is None:
            raise RaftStopped(f"raft member {self.node_id} is not running")
        future = self._pending.add(self.core.propose_config(config))
        self._wakeup.set()
        return await asyncio.wait_for(future, timeout)

    def add_leadership_listener(self, listener: LeadershipListener) -> Callable[[], None]:
        """Call ``listener(leader_id, term)`` on every change of leader or role; returns an unsubscribe function.
        Listeners run on the event loop inside the runner and must not block."""
        return self._notifier.add_leadership_listener(listener)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> None:
        """Wait until ``predicate()`` holds, re-checking whenever the leader, role or applied index changes."""
        def stopped() -> Exception | None:
            return RaftStopped(f"raft member {self.node_id} stopped") if self._stopped else None
        await asyncio.wait_for(self._notifier.wait_until(predicate, give_up=stopped), timeout)

    async def wait_for_leader(self, timeout: float | None = None) -> str:
        """The leader's id, once one is known (``asyncio.TimeoutError`` after ``timeout`` seconds)."""
        await self.wait_for(lambda: self.leader_id is not None, timeout)
        return self.leader_id

    async def transfer_leadership(self, to: str | None = None, timeout: float | None = None) -> str:
        """Hand leadership to ``to`` (default: the most up-to-date follower) and return the new leader's id.

        A lagging target is caught up first. ``asyncio.TimeoutError`` if the transfer did not complete within
        ``timeout`` seconds (default: two maximum election timeouts)."""
        if not self.is_leader:
            raise NotLeader(leader_id=self.leader_id)
        peers = [peer for peer in self.core.voters if peer != self.node_id]
        if to == self.node_id:
            return self.node_id
        if to is None:
            if not peers:
                raise RaftError("a single-member cluster has nobody to transfer leadership to")
            to = max(sorted(peers), key=self.core.match_index)
        self.core.transfer_leadership(to)
        self._wakeup.set()
        if timeout is None:
            timeout = 4 * self.core.election_ticks * self.tick_interval / 1000
        await self.wait_for(lambda: self.leader_id not in (None, self.node_id), timeout)
        return self.leader_id
