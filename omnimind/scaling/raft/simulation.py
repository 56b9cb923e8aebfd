"""A deterministic, tick-driven cluster of :class:`RaftCore` members over an :class:`InProcessNetwork`.

No asyncio and no real time: the simulated clock advances one tick per :meth:`SimulatedCluster.tick`, message
delays are converted to ticks, and every random choice comes from the seed, so a failing schedule replays
exactly. Safety checks run as the simulation goes (:class:`InvariantViolation` on a breach): at most one leader
per term, every member applies the same command at each index, logs match, and each new leader holds every
entry committed before its election.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterable
from typing import Any

from .core import RaftCore
from .core.errors import InvariantViolation, ProposalDropped
from .core.configuration import Configuration
from .core.messages import LogEntry, Message, Snapshot
from .core.ready import Role
from .storage.memory import MemoryStorage
from .transport.inprocess import InProcessNetwork


class SimulatedCluster:
    """Members ``node_ids`` with persistent :class:`MemoryStorage` that survives :meth:`crash`/:meth:`restart`.

    Each member's state machine is the list of applied ``(index, term, command)``; when
    ``snapshot_every`` is set, members compact their log every that many applied entries. :meth:`join` starts
    an empty member outside every configuration and :meth:`change_config` proposes a membership change.

    >>> cluster = SimulatedCluster(["a", "b", "c"], seed=3)
    >>> cluster.run_until(lambda: cluster.leader() is not None, max_ticks=200)
    True
    >>> entry = cluster.propose("hello")
    >>> cluster.run_until(lambda: cluster.is_applied_everywhere(entry), max_ticks=50)
    True
    >>> cluster.check_log_matching()
    """

    def __init__(self, node_ids: Iterable[str], *, seed: int = 0, tick_seconds: float = 0.01,
                 heartbeat_ticks: int = 1, election_ticks: int = 10, pre_vote: bool = True,
                 check_quorum: bool = True, max_entries_per_message: int = 64, max_inflight_messages: int = 64,
                 snapshot_every: int | None = None) -> None:
        self.node_ids = tuple(node_ids)
        self.rng = random.Random(seed)
        self.network = InProcessNetwork(rng=random.Random(self.rng.random()))
        self.tick_seconds = tick_seconds
        self.snapshot_every = snapshot_every
        self._core_options = dict(heartbeat_ticks=heartbeat_ticks, election_ticks=election_ticks,
                                  pre_vote=pre_vote, check_quorum=check_quorum,
                                  max_entries_per_message=max_entries_per_message,
                                  max_inflight_messages=max_inflight_messages)
        self.now = 0
        self.storages = {node_id: MemoryStorage() for node_id in self.node_ids}
        self._joined: set[str] = set()  # members started empty, to be added by a configuration change
        self.cores: dict[str, RaftCore] = {}
        self.applied: dict[str, list[tuple[int, int, Any]]] = {}
        self._in_flight: list[tuple[int, int, Message]] = []
        self._sequence = itertools.count()
        self._committed: dict[int, tuple[int, Any]] = {}  # index -> (term, command), the first time applied
        self._committed_at: dict[int, int] = {}  # index -> tick at which it was first applied
        self._leader_of_term: dict[int, str] = {}
        self._elected_at: dict[tuple[str, int], int] = {}
        for node_id in self.node_ids:
            self.restart(node_id)

    # -- membership faults -------------------------------------------------------------------------------------
    def crash(self, node_id: str) -> None:
        """Lose the member's volatile state (its storage survives)."""
        self.cores.pop(node_id, None)
        self.applied.pop(node_id, None)

    def restart(self, node_id: str) -> None:
        """Start the member again from its persisted state."""
        persisted = self.storages[node_id].load()
        bootstrap = () if node_id in self._joined else self.node_ids
        self.cores[node_id] = RaftCore(node_id, bootstrap, rng=random.Random(self.rng.random()),
                                       hard_state=persisted.hard_state, snapshot=persisted.snapshot,
                                       entries=persisted.entries, **self._core_options)
        self.applied[node_id] = []
        if persisted.snapshot is not None:
            self._restore(node_id, persisted.snapshot)

    def join(self, node_id: str) -> None:
        """Start an empty member outside every configuration; :meth:`change_config` then adds it."""
        self._joined.add(node_id)
        self.storages[node_id] = MemoryStorage()
        self.restart(node_id)

    # -- driving -----------------------------------------------------------------------------------------------
    def tick(self) -> None:
        self.now += 1
        while self._in_flight and self._in_flight[0][0] <= self.now:
            _, _, message = heapq.heappop(self._in_flight)
            core = self.cores.get(message.recipient)
            if core is not None:
                core.step(message)
                self._process(message.recipient)
        for node_id, core in list(self.cores.items()):
            core.tick()
            self._process(node_id)

    def run_until(self, condition: Callable[[], bool], max_ticks: int) -> bool:
        for _ in range(max_ticks):
            if condition():
                return True
            self.tick()
        return condition()

    def propose(self, command: Any) -> LogEntry | None:
        """Propose on the live leader of the highest term; ``None`` if there is none or it refuses."""
        leader = self.leader()
        if leader is None:
            return None
        try:
            entry = self.cores[leader].propose(command)
        except ProposalDropped:
            return None
        self._process(leader)
        return entry

    def change_config(self, change: Callable[[Configuration], Configuration]) -> LogEntry | None:
        """Propose ``change(current configuration)`` on the leader; ``None`` if there is none or it refuses
        (an uncommitted change, no commit in its term yet, a transfer under way)."""
        leader = self.leader()
        if leader is None:
            return None
        core = self.cores[leader]
        try:
            entry = core.propose_config(change(core.configuration))
        except ProposalDropped:
            return None
        self._process(leader)
        return entry

    def transfer_leadership(self, target: str) -> None:
        """Ask the current leader (if any) to hand leadership to ``target``."""
        leader = self.leader()
        if leader is not None:
            self.cores[leader].transfer_leadership(target)
            self._process(leader)

    def leader(self) -> str | None:
        leaders = [core for core in self.cores.values() if core.role is Role.LEADER]
        return max(leaders, key=lambda core: core.term).node_id if leaders else None

    def is_applied_everywhere(self, entry: LogEntry, node_ids: Iterable[str] | None = None) -> bool:
        return all(node_id in self.cores and self.cores[node_id].applied_index >= entry.index
                   for node_id in (node_ids or self.node_ids)) and self._committed.get(entry.index) == (
                       entry.term, entry.command)

    def committed_commands(self) -> list[Any]:
        return [self._committed[index][1] for index in sorted(self._committed)]

    # -- the runner's job --------------------------------------------------------------------------------------
    def _process(self, node_id: str) -> None:
        core = self.cores[node_id]
        while core.has_ready():
            ready = core.ready()
            self.storages[node_id].persist_ready(ready)
            for message in ready.messages:
                delay = self.network.route(message)
                if delay is not None:
                    deliver_at = self.now + max(1, math.ceil(delay / self.tick_seconds))
                    heapq.heappush(self._in_flight, (deliver_at, next(self._sequence), message))
            if ready.snapshot is not None:
                self._restore(node_id, ready.snapshot)
            for entry in ready.committed_entries:
                self._apply(node_id, entry)
            if ready.soft_state is not None and ready.soft_state.role is Role.LEADER:
                self._on_elected(node_id, core)
            core.advance(ready)
            if self.snapshot_every and core.applied_index - core.log.snapshot.index >= self.snapshot_every:
                snapshot = core.make_snapshot([list(item) for item in self.applied[node_id]])
                self.storages[node_id].save_snapshot(snapshot)
                core.compact(snapshot)

    def _apply(self, node_id: str, entry: LogEntry) -> None:
        applied = self.applied[node_id]
        expected = applied[-1][0] + 1 if applied else 1
        if entry.index != expected:
            raise InvariantViolation(f"{node_id} applied {entry.index} after {expected - 1}")
        first = self._committed.setdefault(entry.index, (entry.term, entry.command))
        self._committed_at.setdefault(entry.index, self.now)
        if first != (entry.term, entry.command):
            raise InvariantViolation(f"{node_id} applied {(entry.term, entry.command)} at {entry.index}, "
                                     f"another member applied {first}")
        applied.append((entry.index, entry.term, entry.command))

    def _restore(self, node_id: str, snapshot: Snapshot) -> None:
        restored = [tuple(item) for item in snapshot.data or []]
        for index, term, command in restored:
            first = self._committed.get(index)
            if first is not None and first != (term, command):
                raise InvariantViolation(f"{node_id} restored {(term, command)} at {index}, committed was {first}")
        self.applied[node_id] = restored

    def _on_elected(self, node_id: str, core: RaftCore) -> None:
        holder = self._leader_of_term.setdefault(core.term, node_id)
        if holder != node_id:
            raise InvariantViolation(f"two leaders in term {core.term}: {holder} and {node_id}")
        if not core.is_voter:
            raise InvariantViolation(f"{node_id} was elected in term {core.term} without being a voter")
        self._elected_at.setdefault((node_id, core.term), self.now)
        self.check_leader_completeness(node_id)

    # -- invariants --------------------------------------------------------------------------------------------
    def check_leader_completeness(self, node_id: str) -> None:
        """The leader holds every entry committed before it was elected."""
        core = self.cores[node_id]
        elected_at = self._elected_at.get((node_id, core.term), self.now)
        for index, (term, _) in self._committed.items():
            if self._committed_at[index] < elected_at and index > core.log.snapshot.index:
                if core.log.term(index) != term:
                    raise InvariantViolation(f"leader {node_id} of term {core.term} lacks committed entry {index}")

    def check_log_matching(self) -> None:
        """If two logs hold an entry with the same index and term, they are identical up to that index."""
        logs = {node_id: core.log for node_id, core in self.cores.items()}
        for (a, log_a), (b, log_b) in itertools.combinations(logs.items(), 2):
            low = max(log_a.first_index, log_b.first_index)
            high = min(log_a.last_index, log_b.last_index)
            matching = next((index for index in range(high, low - 1, -1)
                             if log_a.term(index) == log_b.term(index)), None)
            if matching is None:
                continue
            for index in range(low, matching + 1):
                if log_a.slice(index, 1) != log_b.slice(index, 1):
                    raise InvariantViolation(f"logs of {a} and {b} differ at {index} below matching {matching}")
