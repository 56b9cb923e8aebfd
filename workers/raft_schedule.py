"""The schedule loop: the coordinator thread a Raft member runs while it leads.

Started by :class:`workers.raft_member.CoordinatorMember` when its member becomes
leader and stopped the moment it loses leadership. It commits a barrier (and, on a
new log, the genesis entry), then runs the ``FencedScheduler``: every beat entry is
committed to the Raft log before it is sent, and a learner's drift event becomes an
early retrain. A deposed leader's sends carry an old fence and are refused downstream.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading

from omnimind import keys
from omnimind.config import get_settings
from omnimind.fence import newest_fence_term
from omnimind.scaling.coordinator import FencedScheduler, NotCoordinator, ScheduleStateMachine
from omnimind.scaling.raft import ProposalDropped, RaftNode
from omnimind.scaling.replicator import wrap
from workers import failpoints

logger = logging.getLogger(__name__)

#: Longest the coordinator goes without looking for new drift events.
DRIFT_POLL_S = 0.5
#: Pause before a leader's coordinator starts over after a transient error.
COORDINATOR_RETRY_S = 0.5
#: Accepted dispatches a genesis entry looks back over for the highest slot.
GENESIS_SLOT_LOOKBACK = 64


class ScheduleLoop:
    """One term's coordinator thread: proposes through ``node`` (whose asyncio ``loop`` runs in
    another thread) and dispatches the app's beat schedule until :meth:`stop` or leadership is lost."""

    def __init__(self, app, node: RaftNode, loop: asyncio.AbstractEventLoop, schedule_state: ScheduleStateMachine,
                 redis, secret: str, pause_before_send: tuple | None = None) -> None:
        self.app = app
        self.node = node
        self.loop = loop
        self.schedule_state = schedule_state
        self.redis = redis
        self.secret = secret
        self.pause_before_send = pause_before_send
        self.stop_event = threading.Event()
        #: ``[entry, slot]`` between a dispatch's commit and its send (for ``omnimind status``).
        self.sending: list | None = None

    @property
    def member_id(self) -> str:
        return self.node.node_id

    def start(self) -> None:
        threading.Thread(target=self._coordinate, name="omnimind-coordinator", daemon=True).start()

    def stop(self) -> None:
        """At once: not one more dispatch from this member."""
        self.stop_event.set()

    def _propose(self, command):
        if self.stop_event.is_set():
            raise NotCoordinator("leadership lost")
        future = asyncio.run_coroutine_threadsafe(self.node.propose(wrap("schedule", command), timeout=2.0), self.loop)
        return future.result(3.0)

    def _coordinate(self) -> None:
        stop = self.stop_event
        term = self.node.current_term
        logger.info("Raft member %s leads term %d: starting the schedule", self.member_id, term)
        try:
            while not stop.is_set():
                try:
                    self._run_schedule()
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
            self.sending = None
        logger.info("Raft member %s: schedule stopped (term %d)", self.member_id, term)

    def _run_schedule(self) -> None:
        # A barrier entry of our own term: once it is applied, so is everything
        # earlier leaders committed, and the schedule state is complete.
        self._propose({"op": "barrier"})
        if self.schedule_state.fence_base is None:
            self._propose(self._genesis())
        scheduler = FencedScheduler(
            self.app, propose=self._propose, state_machine=self.schedule_state, before_send=self._before_send,
            secret=self.secret, max_interval=1.0,
        )
        try:
            scheduler.resend_unsent()
            while not self.stop_event.is_set():
                self._answer_drift(scheduler)
                delay = scheduler.tick()
                self.sending = None
                self.stop_event.wait(min(max(delay, 0.0), DRIFT_POLL_S))
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
        logger.info("Raft member %s: genesis with fence base %d and slots %s", self.member_id, base, slots)
        return {"op": "genesis", "fence_base": base, "slots": slots}

    def _answer_drift(self, scheduler: FencedScheduler) -> None:
        """A learner's drift event turns into an early retrain (at most one per gap)."""
        settings = get_settings()
        entry = settings.drift_retrain_entry
        if not entry:
            return
        newest = self.redis.xrevrange(keys.DRIFT_EVENTS, count=1)
        if newest:
            drift_id = newest[0][0].decode()
            if scheduler.dispatch_early(entry, drift_id, settings.drift_retrain_min_gap):
                logger.info("Drift event %s: dispatched %s early", drift_id, entry)

    def _before_send(self, entry_name: str, slot: int) -> None:
        self.sending = [entry_name, slot]
        if self.pause_before_send and self.pause_before_send[0] == slot:
            record = {"member_id": self.member_id, "term": self.node.current_term, "entry": entry_name,
                      "slot": slot, "pid": os.getpid()}
            failpoints.pause_once(self.pause_before_send[1], record, entry_name, slot)
