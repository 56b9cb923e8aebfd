"""The consumer's side of fenced dispatch: run each scheduled slot once, never
for a deposed leader, and never for a sender that is not the coordinator.

A task sent by the coordinator carries ``(term, index)`` and ``(entry, slot)``
in its headers, and a signature over both: an HMAC-SHA256 with a key derived
from the Raft secret (``sign_dispatch``). ``DispatchGuard.accept`` checks the
headers' shape and the signature first (``authenticate``, pure, constant-time
comparison): a malformed, unsigned or forged dispatch, or one a consumer
without the secret cannot verify, is refused there, counted in
``omnimind_dispatch_refusals_total{reason}`` and changes nothing in Redis. An
authentic one then goes through one Lua script that (1) refuses a token of an
older term than the newest accepted for that schedule entry (a leader that was
paused and resumed after a newer leader took over cannot act; any index of the
newest term passes, as the broker may reorder one leader's dispatches) and
(2) refuses a slot that already ran (a new leader may re-send a slot whose send
it could not confirm). Accepted dispatches are appended to a capped stream.

>>> secret = "s" * 16
>>> signature = sign_dispatch(secret, "retrain", 7, Fence(3, 21))
>>> authenticate(secret, [3, 21], ["retrain", 7], signature).outcome
'authentic'
>>> authenticate(secret, [3, 21], ["retrain", 8], signature).outcome  # replayed onto another slot
'forged'
>>> authenticate(secret, [3, 21], ["retrain"], signature).outcome  # a slot header of one element
'malformed'
>>> authenticate(None, [3, 21], ["retrain", 7], signature).outcome  # no secret on this worker
'unverifiable'
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass

import redis

from omnimind import keys
from omnimind.models.fencing import FENCE_LUA, MAX_FENCE_PART, Fence
from omnimind.observability import metrics

#: Message headers of a coordinator's dispatch: ``[term, index]``, ``[entry, slot]``, signature (hex).
FENCE_HEADER = "omnimind_fence"
SLOT_HEADER = "omnimind_slot"
AUTH_HEADER = "omnimind_fence_auth"

ACCEPTED_MAXLEN = 10_000
SLOT_TTL_S = 7 * 24 * 3600
MAX_ENTRY_CHARS = 200
#: The signing key is derived from the Raft secret, so a dispatch signature can
#: never be mistaken for (or turned into) an authenticated Raft frame.
_KEY_CONTEXT = b"omnimind/dispatch-fence/v1"
_SIGNATURE = re.compile(r"[0-9a-f]{64}")

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
    """What a consumer decided about a dispatch.

    ``outcome``: "accepted", "stale", "duplicate", "unscheduled" (no headers: a
    manual call), or a refusal before Redis, one of
    ``metrics.DISPATCH_REFUSAL_REASONS``; "authentic" only between the two checks.
    ``entry``/``slot``/``fence`` are what the headers claim (None when malformed).

    >>> Verdict("unscheduled").accepted, Verdict("forged", "retrain", 3, Fence(9, 1)).accepted
    (True, False)
    """

    outcome: str
    entry: str | None = None
    slot: int | None = None
    fence: Fence | None = None
    detail: str = ""

    @property
    def accepted(self) -> bool:
        return self.outcome in ("accepted", "unscheduled")


def _signing_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), _KEY_CONTEXT, hashlib.sha256).digest()


def sign_dispatch(secret: str, entry: str, slot: int, fence) -> str:
    """The hex HMAC-SHA256 of ``(entry, slot, fence term, fence index)``: what the
    coordinator sends in ``AUTH_HEADER``. The four values are encoded as one JSON
    array, so no two different dispatches share a signed message.

    >>> sign_dispatch("s" * 16, "retrain", 1, (2, 3)) == sign_dispatch("s" * 16, "retrain", 1, Fence(2, 3))
    True
    >>> sign_dispatch("s" * 16, "retrain", 1, (2, 3)) != sign_dispatch("t" * 16, "retrain", 1, (2, 3))
    True
    """
    if not secret:
        raise ValueError("a dispatch is signed with the Raft secret, and none is set")
    term, index = fence
    message = json.dumps([entry, slot, term, index], separators=(",", ":"), ensure_ascii=True)
    return hmac.new(_signing_key(secret), message.encode(), hashlib.sha256).hexdigest()


def _is_int(value) -> bool:
    return type(value) is int  # not bool, not float, not a numeric string


def parse_headers(fence_header, slot_header) -> tuple[str, int, Fence]:
    """``(entry, slot, fence)`` from the two headers exactly as the coordinator
    sends them (``[term, index]``, ``[entry, slot]``), else ``ValueError``."""
    if not (isinstance(fence_header, (list, tuple)) and len(fence_header) == 2 and all(map(_is_int, fence_header))):
        raise ValueError(f"fence header must be [term, index] integers, not {fence_header!r:.80}")
    term, index = fence_header
    if not (0 <= term <= MAX_FENCE_PART and 0 <= index <= MAX_FENCE_PART):
        raise ValueError(f"fence parts must be in [0, 2**53), not {term}:{index}")
    if not (isinstance(slot_header, (list, tuple)) and len(slot_header) == 2
            and isinstance(slot_header[0], str) and _is_int(slot_header[1])):
        raise ValueError(f"slot header must be [entry, slot] (a string and an integer), not {slot_header!r:.80}")
    entry, slot = slot_header
    if not 0 < len(entry) <= MAX_ENTRY_CHARS:
        raise ValueError(f"entry name must have 1 to {MAX_ENTRY_CHARS} characters")
    if not 1 <= slot <= MAX_FENCE_PART:
        raise ValueError(f"slot must be in [1, 2**53), not {slot}")
    return entry, slot, Fence(term, index)


def authenticate(secret: str | None, fence_header, slot_header, signature) -> Verdict:
    """Check a dispatch's headers without touching Redis: "unscheduled" when it has
    none, "authentic" when the coordinator signed exactly these values, else a
    refusal: "malformed", "unsigned", "unverifiable" (no secret here) or "forged"."""
    if fence_header is None and slot_header is None and signature is None:
        return Verdict("unscheduled")
    try:
        entry, slot, fence = parse_headers(fence_header, slot_header)
    except ValueError as exc:
        return Verdict("malformed", detail=str(exc))
    if signature is None:
        return Verdict("unsigned", entry, slot, fence, "fence headers without a signature")
    if not (isinstance(signature, str) and _SIGNATURE.fullmatch(signature)):
        return Verdict("malformed", entry, slot, fence, "signature must be 64 lowercase hex characters")
    if not secret:
        return Verdict("unverifiable", entry, slot, fence, "no OMNIMIND_RAFT_SECRET to verify the signature with")
    if not hmac.compare_digest(sign_dispatch(secret, entry, slot, fence), signature):
        return Verdict("forged", entry, slot, fence, "signature does not match the headers")
    return Verdict("authentic", entry, slot, fence)


class DispatchGuard:
    """Checks a scheduled task's headers before it does any work.

    A task without coordinator headers (sent by a person or a test) is
    ``unscheduled`` and runs: fencing guards the schedule, not manual calls.
    ``secret`` is the Raft secret the coordinator signs with (None or empty:
    every fenced dispatch is refused as "unverifiable").
    """

    def __init__(self, client: redis.Redis, secret: str | None = None) -> None:
        self.client = client
        self.secret = secret
        self._script = client.register_script(_ACCEPT_LUA)

    def accept(self, fence_header, slot_header, task_id: str, signature=None) -> Verdict:
        verdict = authenticate(self.secret, fence_header, slot_header, signature)
        if verdict.outcome == "unscheduled":
            return verdict
        if verdict.outcome != "authentic":
            metrics.dispatch_refusals.labels(reason=verdict.outcome).inc()
            return verdict
        entry, slot, fence = verdict.entry, verdict.slot, verdict.fence
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
