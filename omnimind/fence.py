"""Fencing, in one place: the token, its rules in Redis, and the signed dispatch.

A fence is the ``(term, index)`` pair the Raft leader stamps on what it
dispatches and publishes (:class:`Fence`). Tokens compare lexicographically: a
newer term wins whatever the index; within a term the higher index wins. The
term is the Raft term plus the cluster's *fence base* (:func:`fence_at`): the
first leader of a new Raft log commits, as its base, the newest term any fence
in Redis records (:func:`newest_fence_term`), so a cluster rebuilt from empty
data directories fences above the old one.

A resource remembers the newest token it accepted (``keys.fence(resource)``, a
HASH ``term``/``index``). The rules are two Lua functions in
``omnimind/lua/fence.lua`` (:data:`FENCE_LUA`), which every fenced script starts
with, so that the check and the write it guards are one atomic script:

* ``fence_check`` (the model store's publish and rollback): refuse a token older
  than the newest; an *equal* one passes (a retried task, two publishes from one
  retrain). An unfenced write (``fence=None``) passes only while the resource was
  never fenced, and does not fence it.
* ``term_check`` (a consumer of scheduled dispatches, :mod:`omnimind.scaling.dispatch`):
  refuse an older *term* only (a deposed leader) and accept any index of the
  newest term: one leader's dispatches may reach consumers out of order, and the
  consumer's slot check keeps each slot to one run.

A dispatch carries its fence and its ``(entry, slot)`` in message headers
(:data:`FENCE_HEADER`, :data:`SLOT_HEADER`) and an HMAC-SHA256 over both with a
key derived from the Raft secret (:data:`AUTH_HEADER`, :func:`sign_dispatch`).
:func:`authenticate` checks the shape and the signature without touching Redis
(constant-time comparison), so a forged fence can never reach a fence key.

>>> Fence.parse("3:17")
Fence(term=3, index=17)
>>> Fence(3, 17) < Fence(4, 0) and Fence(4, 0) > Fence(3, 99)
True
>>> str(Fence.coerce([2, 5])), Fence.coerce(None)
('2:5', None)
>>> fence_at(40, 2, 9)  # term 2 of a cluster whose genesis saw fences up to term 40
Fence(term=42, index=9)
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
from typing import NamedTuple

import redis

from omnimind import keys, lua

__all__ = ["AUTH_HEADER", "FENCE_HEADER", "FENCE_LUA", "MAX_ENTRY_CHARS", "MAX_FENCE_PART", "SLOT_HEADER", "Fence",
           "Verdict", "authenticate", "fence_args", "fence_at", "newest_fence_term", "parse_headers", "read_fence",
           "sign_dispatch"]

#: Terms and indices must stay exact as Lua numbers (doubles).
MAX_FENCE_PART = 2**53 - 1


class Fence(NamedTuple):
    """A fencing token; tuple order is the lexicographic (term, index) order.

    >>> max(Fence(2, 99), Fence(3, 0)), Fence.coerce({"term": 1, "index": 2})
    (Fence(term=3, index=0), Fence(term=1, index=2))
    """

    term: int
    index: int

    @classmethod
    def parse(cls, text: str) -> "Fence":
        """``"TERM:INDEX"`` -> Fence (what ``--fence`` takes on the command line)."""
        term, sep, index = text.strip().partition(":")
        if not sep:
            raise ValueError(f"a fence looks like TERM:INDEX, not {text!r}")
        return cls.coerce((term, index))

    @classmethod
    def coerce(cls, value) -> "Fence | None":
        """Accept a Fence, a ``(term, index)`` pair, a ``{"term", "index"}`` dict, ``"T:I"`` or None."""
        if value is None or isinstance(value, Fence):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, dict):
            value = (value.get("term"), value.get("index"))
        try:
            term, index = value
            term, index = int(term), int(index)
        except (TypeError, ValueError):
            raise ValueError(f"a fence is a (term, index) pair of integers, not {value!r}") from None
        if not (0 <= term <= MAX_FENCE_PART and 0 <= index <= MAX_FENCE_PART):
            raise ValueError(f"fence parts must be integers in [0, 2**53), not {term}:{index}")
        return cls(term, index)

    def __str__(self) -> str:
        return f"{self.term}:{self.index}"


def fence_at(fence_base: int, term: int, index: int) -> Fence:
    """The fence of Raft log entry ``(term, index)`` in a cluster whose genesis
    entry committed ``fence_base``: ``(fence_base + term, index)``."""
    return Fence(fence_base + term, index)


# -- the rules in Redis --------------------------------------------------------------------------

#: ``fence_check(key, term, index)`` and ``term_check(key, term, index)`` (see the
#: module docstring): the text every fenced script starts with.
FENCE_LUA = lua.source("fence")


def fence_args(fence: Fence | None) -> tuple[str, str]:
    """The two script arguments for a token (``("", "")`` when unfenced).

    >>> fence_args(Fence(3, 2**53 - 1)), fence_args(None)
    (('3', '9007199254740991'), ('', ''))
    """
    return ("", "") if fence is None else (str(fence.term), str(fence.index))


def read_fence(client: redis.Redis, key: str) -> Fence | None:
    """The token recorded under a fence key, or None if it was never fenced."""
    term, index = client.hmget(key, "term", "index")
    return None if term is None else Fence(int(term), int(index))


def newest_fence_term(client: redis.Redis) -> int:
    """The highest term any fence key in this Redis records (0 if none): what a
    newly built Raft cluster must start its fences above (its fence base)."""
    fence_keys = list(client.scan_iter(match=keys.fence_pattern(), count=1000))
    if not fence_keys:
        return 0
    pipe = client.pipeline(transaction=False)
    for key in fence_keys:
        pipe.hget(key, "term")
    return max((int(term) for term in pipe.execute() if term is not None), default=0)


# -- the signed dispatch -------------------------------------------------------------------------

#: Message headers of a coordinator's dispatch: ``[term, index]``, ``[entry, slot]``, signature (hex).
FENCE_HEADER = "omnimind_fence"
SLOT_HEADER = "omnimind_slot"
AUTH_HEADER = "omnimind_fence_auth"

MAX_ENTRY_CHARS = 200
#: The signing key is derived from the Raft secret, so a dispatch signature can
#: never be mistaken for (or turned into) an authenticated Raft frame.
_KEY_CONTEXT = b"omnimind/dispatch-fence/v1"
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Verdict:
    """What a consumer decided about a dispatch.

    ``outcome``: "accepted", "stale", "duplicate", "unreplicated" (too few replicas confirmed
    it, omnimind.replication), "unscheduled" (no headers: a manual call), or a refusal before Redis, one of
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
