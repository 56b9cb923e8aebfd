"""The consumer's side of fenced dispatch: run each scheduled slot once, never
for a deposed leader, and never for a sender that is not the coordinator.

What a dispatch is (headers, fence, signature) and the fence rules are in
:mod:`omnimind.fence`; this module is the one place that applies them to a
scheduled task. ``DispatchGuard.accept`` checks the headers' shape and the
signature first (``omnimind.fence.authenticate``, no Redis): a malformed,
unsigned or forged dispatch, or one a consumer without the secret cannot
verify, is refused there, counted in ``omnimind_dispatch_refusals_total{reason}``
and changes nothing in Redis. An authentic one then goes through one Lua script
(``omnimind/lua/dispatch_accept.lua`` after the fence rules) that (1) refuses a
token of an older term than the newest accepted for that schedule entry
(``term_check``: a leader that was paused and resumed after a newer leader took
over cannot act; any index of the newest term passes, as the broker may reorder
one leader's dispatches) and (2) refuses a slot that already ran (a new leader
may re-send a slot whose send it could not confirm). Accepted dispatches are
appended to a capped stream. Behind Sentinel, the script's reply counts only once
``replicas`` confirmed its writes (``WAIT`` in the same pipeline, :mod:`omnimind.replication`):
an acceptance a failover could undo is refused as ``unreplicated``, the task does not run
and its slot is skipped, so no fence the new master lacks was ever acted on.

>>> _ACCEPT_LUA.startswith(FENCE_LUA) and "term_check(KEYS[1]" in _ACCEPT_LUA
True
"""
from __future__ import annotations

import redis

from omnimind import keys, lua
from omnimind.fence import FENCE_LUA, Verdict, authenticate
from omnimind.observability import metrics
from omnimind.replication import NotReplicated, ReplicaQuorum

__all__ = ["ACCEPTED_MAXLEN", "SLOT_TTL_S", "DispatchGuard"]

ACCEPTED_MAXLEN = 10_000
SLOT_TTL_S = 7 * 24 * 3600

#: The accept script (``omnimind/lua/dispatch_accept.lua``) after the shared fence rules.
_ACCEPT_LUA = FENCE_LUA + "\n" + lua.source("dispatch_accept")


class DispatchGuard:
    """Checks a scheduled task's headers before it does any work.

    A task without coordinator headers (sent by a person or a test) is
    ``unscheduled`` and runs: fencing guards the schedule, not manual calls.
    ``secret`` is the Raft secret the coordinator signs with (None or empty:
    every fenced dispatch is refused as "unverifiable"); ``replicas`` (default: the settings')
    must confirm an acceptance before it counts.

    >>> guard = DispatchGuard(redis.Redis(), "s" * 16)  # connects on the first script call
    >>> guard.accept(None, None, "task-id").outcome
    'unscheduled'
    """

    def __init__(self, client: redis.Redis, secret: str | None = None, replicas: ReplicaQuorum | None = None) -> None:
        self.client = client
        self.secret = secret
        self.replicas = replicas if replicas is not None else ReplicaQuorum.from_settings()
        self._script = client.register_script(_ACCEPT_LUA)

    def accept(self, fence_header, slot_header, task_id: str, signature=None) -> Verdict:
        verdict = authenticate(self.secret, fence_header, slot_header, signature)
        if verdict.outcome == "unscheduled":
            return verdict
        if verdict.outcome != "authentic":
            metrics.dispatch_refusals.labels(reason=verdict.outcome).inc()
            return verdict
        entry, slot, fence = verdict.entry, verdict.slot, verdict.fence
        pipe = self.client.pipeline(transaction=False)
        self._script(keys=[keys.schedule_fence(entry), keys.schedule_slot(entry, slot), keys.schedule_accepted(entry)],
                     args=[fence.term, fence.index, slot, ACCEPTED_MAXLEN, SLOT_TTL_S, task_id], client=pipe)
        self.replicas.wait_on(pipe)
        reply, *confirmed = pipe.execute()
        outcome = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
        if outcome == "accepted" and confirmed:
            try:
                self.replicas.check(confirmed[0], "dispatch")
            except NotReplicated as exc:
                return Verdict("unreplicated", entry, slot, fence, str(exc))
        if outcome == "stale":
            metrics.fence_rejections.inc()
        elif outcome == "accepted":
            metrics.schedule_dispatches.labels(entry=entry).inc()
        return Verdict(outcome, entry, slot, fence)
