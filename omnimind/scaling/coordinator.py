"""The coordinator: the Raft leader runs the periodic schedule, fenced by its term.

Celery's beat machinery decides *when* an entry is due (``beat_schedule``,
intervals and crontab, ``celery.beat.Scheduler``); this module decides *whether*
this member may send it. Before a due entry is sent, the leader commits
``(entry, slot)`` to the Raft log, so every member knows which slots exist; the
task carries the fencing token ``(term, index)`` of that log entry and its slot
in its headers, signed with the Raft secret (``omnimind.fence.sign_dispatch``:
an HMAC over entry, slot and fence), so that no other sender can fence off the
real leader or claim a slot. After sending, the leader commits a ``sent`` marker. A new
leader re-sends (with its own, newer token) a slot that was committed but never
marked sent, so a crash between commit and send skips nothing; consumers drop a
slot they already ran (``omnimind.scaling.dispatch``), so nothing runs twice.

Fences and slots outlive the Raft cluster: they are checked in Redis. So the
first leader of a new log commits a ``genesis`` entry carrying what Redis has
seen — the newest fence term and the last accepted slot of each entry — and
every fence is ``omnimind.fence.fence_at(fence_base, term, index)``. A cluster rebuilt from empty
data directories then dispatches above the old cluster's fences and continues
its slot numbers instead of being refused as stale or duplicate.

>>> from omnimind.scaling.raft import LogEntry
>>> machine = ScheduleStateMachine()
>>> machine.apply(LogEntry(2, 7, {"op": "dispatch", "entry": "retrain", "slot": 1, "at": 100.0}))
True
>>> machine.apply(LogEntry(2, 8, {"op": "dispatch", "entry": "retrain", "slot": 1, "at": 100.0}))  # replayed
False
>>> machine.entry("retrain")["index"], machine.unsent()
(7, ['retrain'])
>>> machine.apply(LogEntry(2, 9, {"op": "genesis", "fence_base": 40, "slots": {"retrain": 5, "other": 3}}))
True
>>> machine.fence_base, machine.entry("retrain")["slot"], machine.entry("other")["slot"]
(40, 5, 3)
"""
from __future__ import annotations

import copy
import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable

from celery.beat import Scheduler

from omnimind.fence import AUTH_HEADER, FENCE_HEADER, SLOT_HEADER, fence_at, sign_dispatch
from omnimind.scaling.raft import LogEntry, StateMachine

logger = logging.getLogger(__name__)

__all__ = ["FencedScheduler", "NotCoordinator", "ScheduleStateMachine", "stream_id_after"]


class ScheduleStateMachine(StateMachine):
    """Replicated schedule state: per entry, the last slot committed, when, at
    which log index, and whether its send was confirmed. Commands that do not
    extend the sequence by exactly one are refused (returned False), so a slot
    can never be committed twice, even by a leader that lost a race."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Any]] = {}
        self._drift_seen: str | None = None
        self._fence_base: int | None = None

    @property
    def fence_base(self) -> int | None:
        """Added to the Raft term in every fence (``omnimind.fence.fence_at``); None until
        the genesis entry is applied."""
        return self._fence_base

    @property
    def drift_seen(self) -> str | None:
        """Id (Redis stream id) of the newest drift event an early dispatch answered."""
        return self._drift_seen

    def entry(self, name: str) -> dict[str, Any] | None:
        state = self._entries.get(name)
        return dict(state) if state else None

    def unsent(self) -> list[str]:
        return sorted(name for name, state in self._entries.items() if not state["sent"])

    def apply(self, entry: LogEntry) -> Any:
        command = entry.command
        # Applied on every member: malformed commands are ignored, never raised.
        if isinstance(command, dict) and command.get("op") == "genesis":
            return self._apply_genesis(command, entry.index)
        if not isinstance(command, dict) or not isinstance(command.get("entry"), str):
            return None
        op, slot = command.get("op"), command.get("slot")
        state = self._entries.get(command["entry"], {"slot": 0, "at": None, "index": 0, "sent": True})
        if op == "dispatch" and slot == state["slot"] + 1:
            self._entries[command["entry"]] = {"slot": slot, "at": command.get("at"), "index": entry.index, "sent": False}
            if isinstance(command.get("drift_id"), str) and stream_id_after(command["drift_id"], self._drift_seen):
                self._drift_seen = command["drift_id"]
            return True
        if op == "resend" and slot == state["slot"] and not state["sent"]:
            self._entries[command["entry"]] = {**state, "index": entry.index}
            return True
        if op == "sent" and slot == state["slot"]:
            self._entries[command["entry"]] = {**state, "sent": True}
            return True
        return False

    def _apply_genesis(self, command: dict, index: int) -> bool:
        base, slots = command.get("fence_base"), command.get("slots") or {}
        if self._fence_base is not None or not isinstance(base, int) or base < 0 or not isinstance(slots, dict):
            return False  # only the first one counts
        self._fence_base = base
        for name, slot in slots.items():
            state = self._entries.get(name)
            if isinstance(name, str) and isinstance(slot, int) and slot > (state["slot"] if state else 0):
                self._entries[name] = {"slot": slot, "at": None, "index": index, "sent": True}
        return True

    def snapshot(self) -> Any:
        return {"entries": copy.deepcopy(self._entries), "drift_seen": self._drift_seen, "fence_base": self._fence_base}

    def restore(self, data: Any) -> None:
        data = data or {}
        self._entries = copy.deepcopy(data.get("entries") or {})
        self._drift_seen = data.get("drift_seen")
        self._fence_base = data.get("fence_base")


def stream_id_after(candidate: str, reference: str | None) -> bool:
    """Whether Redis stream id ``candidate`` ("ms-seq") is newer than ``reference``.

    >>> stream_id_after("1700000000001-0", "1700000000000-5"), stream_id_after("5-1", "5-1"), stream_id_after("1-0", None)
    (True, False, True)
    """
    if reference is None:
        return True
    as_pair = lambda text: tuple(int(part) for part in text.split("-", 1))  # noqa: E731
    return as_pair(candidate) > as_pair(reference)


class NotCoordinator(RuntimeError):
    """This member's proposal was not committed as its own: it must stop dispatching."""


class FencedScheduler(Scheduler):
    """A ``celery.beat.Scheduler`` that sends only what it committed through Raft.

    ``propose(command) -> LogEntry`` blocks until the command is committed and
    applied locally (raising if this member is not, or no longer, the leader).
    ``before_send(entry_name, slot)`` runs between commit and send. ``secret``
    (the Raft secret) signs every dispatch's fence and slot headers.
    """

    def __init__(
        self,
        app,
        propose: Callable[[dict], LogEntry],
        state_machine: ScheduleStateMachine,
        before_send: Callable[[str, int], None] | None = None,
        *,
        secret: str,
        **kwargs,
    ):
        if not secret:
            raise ValueError("FencedScheduler needs the Raft secret to sign its dispatches")
        self.propose = propose
        self.state_machine = state_machine
        self.before_send = before_send
        self._secret = secret
        super().__init__(app, **kwargs)

    def setup_schedule(self) -> None:
        super().setup_schedule()
        # Continue where the replicated state says the previous leader stopped.
        for name, entry in self.schedule.items():
            state = self.state_machine.entry(name)
            if state:
                entry.total_run_count = state["slot"]
                if state["at"] is not None:  # None: slots carried over by a genesis entry
                    entry.last_run_at = datetime.fromtimestamp(state["at"], timezone.utc)

    def resend_unsent(self, producer=None) -> None:
        """Send the slots a previous leader committed but never confirmed sent."""
        for name in self.state_machine.unsent():
            entry = self.schedule.get(name)
            if entry is None:
                continue
            slot = self.state_machine.entry(name)["slot"]
            committed = self.propose({"op": "resend", "entry": name, "slot": slot})
            self._send(entry, slot, committed, producer)

    def apply_entry(self, entry, producer=None):
        slot = entry.total_run_count + 1
        committed = self.propose({"op": "dispatch", "entry": entry.name, "slot": slot, "at": time.time()})
        self._send(entry, slot, committed, producer)

    def dispatch_early(self, name: str, drift_id: str, min_gap: float) -> bool:
        """Dispatch entry ``name`` now because of drift event ``drift_id``, unless the
        event was answered already or the entry ran less than ``min_gap`` seconds ago
        (a drift storm then waits for the gap and is answered once). The periodic
        timer restarts from this dispatch."""
        entry = self.schedule.get(name)
        if entry is None or not stream_id_after(drift_id, self.state_machine.drift_seen):
            return False
        state = self.state_machine.entry(name)
        if state and state["at"] is not None and time.time() - state["at"] < min_gap:
            return False
        slot = entry.total_run_count + 1
        committed = self.propose(
            {"op": "dispatch", "entry": name, "slot": slot, "at": time.time(), "drift_id": drift_id}
        )
        self.schedule[name] = self.reserve(entry)
        self._heap = None  # rebuild the timer heap from the advanced entry
        self._send(entry, slot, committed, self.producer)
        return True

    def _send(self, entry, slot: int, committed: LogEntry, producer) -> None:
        state = self.state_machine.entry(entry.name)
        if state is None or state["slot"] != slot or state["index"] != committed.index:
            raise NotCoordinator(f"slot {slot} of {entry.name!r} was not committed by this leader")
        if self.before_send is not None:
            self.before_send(entry.name, slot)
        fence = fence_at(self.state_machine.fence_base or 0, committed.term, committed.index)
        fenced = copy.copy(entry)
        fenced.options = {
            **entry.options,
            "headers": {
                FENCE_HEADER: [fence.term, fence.index],
                SLOT_HEADER: [entry.name, slot],
                AUTH_HEADER: sign_dispatch(self._secret, entry.name, slot, fence),
            },
        }
        self.apply_async(fenced, producer=producer or self.producer, advance=False)
        logger.info("Coordinator sent %s slot %d with fence %s", entry.name, slot, fence)
        self.propose({"op": "sent", "entry": entry.name, "slot": slot})
