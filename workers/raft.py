"""Raft membership inside a Celery worker, and the coordinator it elects.

``celery -A omnimind worker -Q training --raft-id n1 --raft-peers n1=h1:7001,n2=h2:7001,n3=h3:7001``
(or ``OMNIMIND_RAFT_ID`` / ``OMNIMIND_RAFT_PEERS``; the shared secret comes only
from ``OMNIMIND_RAFT_SECRET``, never the command line, where ``ps`` shows it).

The member runs on an asyncio loop in a thread of its own. When it becomes
leader it starts the coordinator thread (``FencedScheduler``); the moment it
loses leadership the coordinator stops, and anything it still tries to commit
fails — a deposed leader's sends carry an old fence and are refused downstream.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from celery import bootsteps

from omnimind import keys
from omnimind.app import settings
from omnimind.fence import Fence, fence_at, newest_fence_term
from omnimind.redis_client import redis_client
from omnimind.scaling.coordinator import FencedScheduler, NotCoordinator, ScheduleStateMachine
from omnimind.scaling.replicator import StateReplicator, wrap
from workers import context
from workers.raft_status import publish_status
from omnimind.scaling.raft import (
    FileStorage,
    ProposalDropped,
    RaftConfigError,
    RaftNode,
    TcpTransport,
    parse_peer_addresses,
)

logger = logging.getLogger(__name__)

#: Longest the coordinator goes without looking for new drift events.
DRIFT_POLL_S = 0.5
#: Longest a starting member waits for a peer's frame to check the shared secret.
SECRET_CHECK_S = 3.0
#: Pause before a leader's coordinator starts over after a transient error.
COORDINATOR_RETRY_S = 0.5
MIN_SECRET_BYTES = 16
#: Accepted dispatches a genesis entry looks back over for the highest slot.
GENESIS_SLOT_LOOKBACK = 64
#: Fault injection for tests (unset in production): "SLOT@PATH" makes the first
#: member to reach slot SLOT between commit and send write who it is to PATH
#: (created exclusively, so it fires once across the cluster) and SIGSTOP
#: itself there: a deterministic pause in the window the fence exists for.
PAUSE_BEFORE_SEND_ENV = "OMNIMIND_RAFT_FAILPOINT_PAUSE_BEFORE_SEND"


@dataclass(frozen=True)
class MemberConfig:
    member_id: str
    peers: dict
    data_dir: Path
    secret: str

    @classmethod
    def build(cls, member_id: str, peers_spec: str, data_dir: str, secret: str) -> "MemberConfig":
        """Validate everything up front: a member with a bad configuration must not start."""
        peers = parse_peer_addresses(peers_spec)
        if not peers:
            raise RaftConfigError("--raft-peers (OMNIMIND_RAFT_PEERS) is empty: list every member as id=host:port")
        if member_id not in peers:
            raise RaftConfigError(f"own id {member_id!r} is missing from the peer list {sorted(peers)}")
        addresses = list(peers.values())
        if len(set(addresses)) != len(addresses):
            raise RaftConfigError(f"two members share an address in {peers_spec!r}")
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise RaftConfigError(
                f"OMNIMIND_RAFT_SECRET must be set to a shared secret of at least {MIN_SECRET_BYTES} bytes"
            )
        path = Path(data_dir) if data_dir else Path(settings.data_dir) / "raft" / member_id
        return cls(member_id, peers, path, secret)


def parse_pause_failpoint(spec: str) -> tuple[int, Path] | None:
    """``"SLOT@PATH"`` -> ``(SLOT, PATH)``; empty -> None.

    >>> parse_pause_failpoint("3@/tmp/paused.json"), parse_pause_failpoint("")
    ((3, PosixPath('/tmp/paused.json')), None)
    """
    if not spec:
        return None
    slot, sep, path = spec.partition("@")
    if not sep or not slot.strip().isdigit() or not path:
        raise RaftConfigError(f"{PAUSE_BEFORE_SEND_ENV} must look like SLOT@PATH, not {spec!r}")
    return int(slot), Path(path)


class CoordinatorMember:
    """Runs one Raft member and, while it leads, the periodic schedule."""

    def __init__(self, config: MemberConfig, app) -> None:
        self.config = config
        self.app = app
        self.schedule_state = ScheduleStateMachine()
        self.replicator = StateReplicator({"schedule": self.schedule_state})
        self.pause_before_send = parse_pause_failpoint(os.environ.get(PAUSE_BEFORE_SEND_ENV, ""))
        self.redis = redis_client(settings.redis_url)
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._coordinator_stop: threading.Event | None = None
        self._sending: list | None = None
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
        if self._coordinator_stop is not None:
            self._coordinator_stop.set()
        future = asyncio.run_coroutine_threadsafe(self.node.stop(transfer_leadership=True), self.loop)
        try:
            future.result(10)
        except Exception as exc:
            logger.warning("Raft member %s stopped uncleanly: %s", self.config.member_id, exc)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.redis.delete(keys.raft_member(self.config.member_id))

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            transport = TcpTransport(self.config.member_id, self.config.peers, self.config.secret)
            self.node = RaftNode(
                self.config.member_id, list(self.config.peers), transport=transport,
                storage=self.storage, state_machine=self.replicator,
            )
            self.node.add_leadership_listener(self._on_leadership)
            self.loop.run_until_complete(self.node.start())
            self.loop.create_task(publish_status(self))
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
            if self._coordinator_stop is None:
                self._coordinator_stop = threading.Event()
                threading.Thread(
                    target=self._coordinate, args=(self._coordinator_stop,), name="omnimind-coordinator", daemon=True
                ).start()
        elif self._coordinator_stop is not None:
            self._coordinator_stop.set()  # at once: not one more dispatch from this member
            self._coordinator_stop = None

    @property
    def is_leader(self) -> bool:
        return self.node.is_leader

    @property
    def sending(self) -> list | None:
        """``[entry, slot]`` between a dispatch's commit and its send (for ``omnimind status``)."""
        return self._sending

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

    # -- coordinator (its own thread) ---------------------------------------------------------------
    def _coordinate(self, stop: threading.Event) -> None:
        def propose(command):
            if stop.is_set():
                raise NotCoordinator("leadership lost")
            future = asyncio.run_coroutine_threadsafe(self.node.propose(wrap("schedule", command), timeout=2.0), self.loop)
            return future.result(3.0)

        term = self.node.current_term
        logger.info("Raft member %s leads term %d: starting the schedule", self.config.member_id, term)
        try:
            while not stop.is_set():
                try:
                    self._run_schedule(propose, stop)
                except (NotCoordinator, ProposalDropped) as exc:  # not (or no longer) the leader
                    logger.info("Coordinator of term %d stops: %s", term, exc)
                    break
                except Exception as exc:
                    # Transient (a slow commit, Redis hiccup): still leader, so start over
                    # from the replicated state; a slot committed but not sent is resent.
                    logger.warning("Coordinator of term %d restarts after: %r", term, exc)
                    stop.wait(COORDINATOR_RETRY_S)
        finally:
            stop.set()
            self._sending = None
        logger.info("Raft member %s: schedule stopped (term %d)", self.config.member_id, term)

    def _run_schedule(self, propose, stop: threading.Event) -> None:
        # A barrier entry of our own term: once it is applied, so is everything
        # earlier leaders committed, and the schedule state is complete.
        propose({"op": "barrier"})
        if self.schedule_state.fence_base is None:
            propose(self._genesis())
        scheduler = FencedScheduler(
            self.app, propose=propose, state_machine=self.schedule_state, before_send=self._before_send,
            secret=self.config.secret, max_interval=1.0,
        )
        try:
            scheduler.resend_unsent()
            while not stop.is_set():
                self._answer_drift(scheduler)
                delay = scheduler.tick()
                self._sending = None
                stop.wait(min(max(delay, 0.0), DRIFT_POLL_S))
        finally:
            scheduler.close()  # its broker connection

    def _genesis(self) -> dict:
        """The first leader of a new log starts where Redis says the schedule is: above
        every fence recorded there, after the last slot each entry ran (see
        ``omnimind.scaling.coordinator``)."""
        slots = {}
        for name in self.app.conf.beat_schedule or {}:
            # The highest of the recent ones: consumers may accept a term's slots out of order.
            recent = self.redis.xrevrange(keys.schedule_accepted(name), count=GENESIS_SLOT_LOOKBACK)
            if recent:
                slots[name] = max(int(fields[b"slot"]) for _, fields in recent)
        base = newest_fence_term(self.redis)
        logger.info("Raft member %s: genesis with fence base %d and slots %s", self.config.member_id, base, slots)
        return {"op": "genesis", "fence_base": base, "slots": slots}

    def _answer_drift(self, scheduler: FencedScheduler) -> None:
        """A learner's drift event turns into an early retrain (at most one per gap)."""
        entry = settings.drift_retrain_entry
        if not entry:
            return
        newest = self.redis.xrevrange(keys.DRIFT_EVENTS, count=1)
        if newest:
            drift_id = newest[0][0].decode()
            if scheduler.dispatch_early(entry, drift_id, settings.drift_retrain_min_gap):
                logger.info("Drift event %s: dispatched %s early", drift_id, entry)

    def _before_send(self, entry_name: str, slot: int) -> None:
        self._sending = [entry_name, slot]
        if self.pause_before_send and self.pause_before_send[0] == slot:
            self._pause_once(self.pause_before_send[1], entry_name, slot)

    def _pause_once(self, marker: Path, entry_name: str, slot: int) -> None:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return  # another member paused here already
        record = {"member_id": self.config.member_id, "term": self.node.current_term, "entry": entry_name,
                  "slot": slot, "pid": os.getpid()}
        with os.fdopen(fd, "w") as out:
            json.dump(record, out)
            out.flush()
            os.fsync(out.fileno())
        logger.warning("Failpoint: pausing before sending %s slot %d", entry_name, slot)
        # Directed at this thread, so that it is this thread that stops at once (the
        # whole process stops with it); a process-directed kill() wakes the main
        # thread to begin the stop and lets this one run on for a moment.
        signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)  # SIGCONT resumes right here

class RaftStep(bootsteps.StartStopStep):
    """Makes the worker a Raft member when ``--raft-id`` (or ``OMNIMIND_RAFT_ID``) is given."""

    label = "OmniMind raft"

    def __init__(self, worker, raft_id=None, raft_peers=None, raft_data_dir=None, **kwargs):
        super().__init__(worker, **kwargs)
        member_id = raft_id or settings.raft_id
        self.member: CoordinatorMember | None = None
        if not member_id:
            return
        try:
            config = MemberConfig.build(
                member_id, raft_peers or settings.raft_peers, raft_data_dir or settings.raft_data_dir,
                settings.raft_secret,
            )
            self.member = CoordinatorMember(config, worker.app)
        except RaftConfigError as exc:
            raise SystemExit(f"omnimind: cannot start Raft member {member_id!r}: {exc}") from None

    def start(self, worker):
        if self.member is not None:
            try:
                self.member.start()
            except BaseException:
                self.member = None  # it stopped itself; the worker's shutdown must not stop it again
                raise
            context.set_coordinator(self.member)

    def stop(self, worker):
        if self.member is not None:
            context.set_coordinator(None)
            self.member.stop()
            self.member = None

    shutdown = stop
