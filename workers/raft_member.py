"""A Raft member's lifecycle inside a worker: its configuration, its asyncio loop thread,
the shared-secret check, and the schedule loop it starts and stops with leadership.

The member runs on an asyncio loop in a thread of its own (``omnimind-raft``). When it
becomes leader it starts a :class:`workers.raft_schedule.ScheduleLoop` (the coordinator
thread); the moment it loses leadership that loop stops. Its status and metrics are
published from the loop by :func:`workers.raft_status.publish_status`.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from omnimind import keys
from omnimind.config import MIN_RAFT_SECRET_BYTES, get_settings
from omnimind.fence import Fence, fence_at
from omnimind.redis_client import redis_client
from omnimind.scaling.coordinator import ScheduleStateMachine
from omnimind.scaling.raft import FileStorage, RaftConfigError, RaftNode, TcpTransport, parse_peer_addresses
from omnimind.scaling.raft.transport import check_peers
from omnimind.scaling.replicator import StateReplicator, wrap
from workers import failpoints
from workers.raft_membership import serve_membership_requests
from workers.raft_schedule import ScheduleLoop
from workers.raft_status import publish_status

logger = logging.getLogger(__name__)

#: Longest a starting member waits for a peer's frame to check the shared secret.
SECRET_CHECK_S = 3.0


@dataclass(frozen=True)
class MemberConfig:
    member_id: str
    peers: dict
    data_dir: Path
    secret: str
    join: bool = False  # a new member, outside the configuration until ``omnimind raft add``

    @classmethod
    def build(cls, member_id: str, peers_spec: str, data_dir: str, secret: str, join: bool = False) -> "MemberConfig":
        """Validate everything up front: a member with a bad configuration must not start."""
        settings = get_settings()
        peers = parse_peer_addresses(peers_spec)
        check_peers(member_id, peers)
        if len(secret.encode()) < MIN_RAFT_SECRET_BYTES:
            raise RaftConfigError(
                f"OMNIMIND_RAFT_SECRET must be set to a shared secret of at least {MIN_RAFT_SECRET_BYTES} bytes"
            )
        path = Path(data_dir) if data_dir else Path(settings.data_dir) / "raft" / member_id
        return cls(member_id, peers, path, secret, join)


class CoordinatorMember:
    """Runs one Raft member and, while it leads, the periodic schedule."""

    def __init__(self, config: MemberConfig, app) -> None:
        settings = get_settings()
        self.config = config
        self.app = app
        self.schedule_state = ScheduleStateMachine()
        self.replicator = StateReplicator({"schedule": self.schedule_state})
        self.pause_before_send = failpoints.parse_pause_failpoint(settings.raft_failpoint_pause_before_send)
        self.redis = redis_client(settings.redis_url)
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._schedule: ScheduleLoop | None = None  # running while this member leads
        self._last_schedule: ScheduleLoop | None = None  # the newest one, for ``sending``
        self.leader_since: float | None = None
        # Opened here, in the worker's main thread: an unusable directory or one
        # locked by another member fails the worker's start with a clear message.
        self.storage = FileStorage(config.data_dir)

    # -- lifecycle (worker thread) ------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_loop, name="omnimind-raft", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._startup_error is not None:
            raise self._startup_error
        self._check_secret()

    def _check_secret(self) -> None:
        """Refuse to run with a secret the peers do not share: their frames then all
        fail authentication. Peers that are not up yet cannot tell, so this waits
        at most ``SECRET_CHECK_S``; later mismatches are dropped, counted and logged."""
        transport = self.node.transport
        deadline = time.monotonic() + SECRET_CHECK_S
        while time.monotonic() < deadline and transport.frames_received == 0:
            if transport.dropped_frames.get("unauthenticated", 0) >= 3:
                self.stop()
                raise RaftConfigError(
                    "frames from the other members fail authentication: OMNIMIND_RAFT_SECRET differs from theirs"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        """Hand leadership over (graceful shutdown), then stop."""
        if self._schedule is not None:
            self._schedule.stop()
        future = asyncio.run_coroutine_threadsafe(self.node.stop(transfer_leadership=True), self.loop)
        try:
            future.result(10)
        except Exception as exc:
            logger.warning("Raft member %s stopped uncleanly: %s", self.config.member_id, exc)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.redis.delete(keys.raft_member(self.config.member_id))

    def _run_loop(self) -> None:
        settings = get_settings()
        asyncio.set_event_loop(self.loop)
        try:
            transport = TcpTransport(self.config.member_id, self.config.peers, self.config.secret)
            self.node = RaftNode(
                self.config.member_id, list(self.config.peers), transport=transport,
                storage=self.storage, state_machine=self.replicator, join=self.config.join,
                tick_interval=settings.raft_tick_ms, heartbeat_interval=settings.raft_heartbeat_ms,
                min_election_timeout=settings.raft_election_timeout_ms,
            )
            self.node.add_leadership_listener(self._on_leadership)
            self.loop.run_until_complete(self.node.start())
            self.loop.create_task(publish_status(self))
            self.loop.create_task(serve_membership_requests(self))
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            return
        logger.info("Raft member %s listening on %s:%d", self.config.member_id, *self.config.peers[self.config.member_id])
        self._ready.set()
        self.loop.run_forever()

    # -- leadership (event loop) --------------------------------------------------------------------
    def _on_leadership(self, leader_id, term) -> None:
        self.leader_since = time.time() if self.node.is_leader else None
        if self.node.is_leader:
            if self._schedule is None:
                self._schedule = self._last_schedule = ScheduleLoop(
                    self.app, self.node, self.loop, self.schedule_state, self.redis, self.config.secret,
                    self.pause_before_send,
                )
                self._schedule.start()
        elif self._schedule is not None:
            self._schedule.stop()  # at once: not one more dispatch from this member
            self._schedule = None
            logger.info("Raft member %s no longer leads (term %d, leader %s)", self.config.member_id, term, leader_id)

    @property
    def is_leader(self) -> bool:
        return self.node.is_leader

    @property
    def sending(self) -> list | None:
        """``[entry, slot]`` between a dispatch's commit and its send (for ``omnimind status``)."""
        return self._last_schedule.sending if self._last_schedule is not None else None

    def publication_fence(self) -> Fence | None:
        """A fence for a publication by this worker (its learner's challenger), or None
        when this member does not lead. Commits a barrier first: a fence must prove
        leadership now, and its index orders it after every earlier dispatch."""
        if not self.node.is_leader or self.schedule_state.fence_base is None:
            return None
        future = asyncio.run_coroutine_threadsafe(self.node.propose(wrap("schedule", {"op": "barrier"}), timeout=2.0),
                                                  self.loop)
        try:
            committed = future.result(3.0)
        except Exception as exc:  # not (or no longer) the leader, or no quorum in time
            logger.info("No publication fence: %r", exc)
            return None
        return fence_at(self.schedule_state.fence_base, committed.term, committed.index)
