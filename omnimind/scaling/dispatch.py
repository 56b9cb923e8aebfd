"""The consumer's side of fenced dispatch: run each scheduled slot once, and
never for a deposed leader.

A task sent by the coordinator carries ``(term, index)`` and ``(entry, slot)``
in its headers. ``DispatchGuard.accept`` runs one Lua script that (1) refuses
a token of an older term than the newest accepted for that schedule entry (a
leader that was paused and resumed after a newer leader took over cannot act;
any index of the newest term passes, as the broker may reorder one leader's
dispatches) and (2) refuses a slot that already ran (a new leader may re-send a
slot whose send it could not confirm). Accepted dispatches are appended to a
capped stream.
"""
from __future__ import annotations

from dataclasses import dataclass

import redis

from omnimind import keys
from omnimind.models.fencing import FENCE_LUA, Fence
from omnimind.observability import metrics

ACCEPTED_MAXLEN = 10_000
SLOT_TTL_S = 7 * 24 * 3600

# KEYS: fence hash, slot key, accepted stream;  ARGV: term, index, slot, maxlen, slot ttl, task id
# The slot key holds the id of the task message that ran the slot: the same
# message redelivered (its worker died mid-run) may run it again; another
# message for that slot (a new leader's resend) may not.
_ACCEPT_LUA = FENCE_LUA + """
local newest = term_check(KEYS[1], ARGV[1], ARGV[2])
if newest then return {'stale', newest[1], newest[2]} end
local owner = redis.call('GET', KEYS[2])
if owner then
  if owner == ARGV[6] then return {'accepted'} end
  return {'duplicate'}
end
redis.call('SET', KEYS[2], ARGV[6], 'EX', ARGV[5])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'slot', ARGV[3], 'term', ARGV[1], 'index', ARGV[2])
return {'accepted'}
"""


@dataclass(frozen=True)
class Verdict:
    outcome: str  # "accepted", "stale", "duplicate" or "unscheduled"
    entry: str | None = None
    slot: int | None = None
    fence: Fence | None = None

    @property
    def accepted(self) -> bool:
        return self.outcome in ("accepted", "unscheduled")


class DispatchGuard:
    """Checks a scheduled task's headers before it does any work.

    A task without coordinator headers (sent by a person or a test) is
    ``unscheduled`` and runs: fencing guards the schedule, not manual calls.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._script = client.register_script(_ACCEPT_LUA)

    def accept(self, fence_header, slot_header, task_id: str) -> Verdict:
        if fence_header is None or slot_header is None:
            return Verdict("unscheduled")
        fence = Fence.coerce(fence_header)
        entry, slot = str(slot_header[0]), int(slot_header[1])
        reply = self._script(
            keys=[keys.schedule_fence(entry), keys.schedule_slot(entry, slot), keys.schedule_accepted(entry)],
            args=[fence.term, fence.index, slot, ACCEPTED_MAXLEN, SLOT_TTL_S, task_id],
        )
        outcome = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
        if outcome == "stale":
            metrics.fence_rejections.inc()
        elif outcome == "accepted":
            metrics.schedule_dispatches.labels(entry=entry).inc()
        return Verdict(outcome, entry, slot, fence)
