"""Fencing tokens and their Redis-side check (one atomic Lua script).

A fence is the ``(term, index)`` pair the Raft leader stamps on what it
dispatches. Tokens compare lexicographically: a newer term wins whatever the
index; within a term the higher index wins. A resource remembers the newest
token it accepted (``keys.fence(resource)``, a HASH ``term``/``index``) and
refuses any older one. An *equal* token is accepted: the same leader may write
twice with the same token (a retried task, two publishes from one retrain).

:data:`FENCE_LUA` is the rule as a Lua function; :class:`FenceGuard` wraps it in
a script of its own, and the model store prepends the same snippet to its
publish and rollback scripts, so every consumer applies one rule.

Consuming scheduled dispatches needs a weaker rule, :data:`FENCE_LUA`'s
``term_check``: refuse an older *term* only (a deposed leader) and accept any
index of the newest term. A term has one leader, and its dispatches may reach
consumers out of order (a worker that reserved a message and then stalled runs
it after later ones); the consumer's slot check keeps each slot to one run.

Unfenced writes (``fence=None``) are accepted only while the resource has never
been fenced, and they do not fence it; once any token was recorded they raise
:class:`StaleFence` (an operator passes a token instead, e.g. the newest one,
which is equal and therefore accepted).

>>> Fence.parse("3:17")
Fence(term=3, index=17)
>>> Fence(3, 17) < Fence(4, 0) and Fence(4, 0) > Fence(3, 99)
True
>>> str(Fence.coerce([2, 5])), Fence.coerce(None)
('2:5', None)
"""
from __future__ import annotations

from typing import NamedTuple

import redis

from omnimind import keys
from omnimind.models.errors import StaleFence
from omnimind.observability import metrics

__all__ = ["Fence", "FenceGuard", "FENCE_LUA", "MAX_FENCE_PART", "newest_fence_term"]

#: Terms and indices must stay exact as Lua numbers (doubles).
MAX_FENCE_PART = 2**53 - 1


class Fence(NamedTuple):
    """A fencing token; tuple order is the lexicographic (term, index) order."""

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


#: ``fence_check(key, term, index)``: ``term``/``index`` are the token as strings
#: (``""`` for an unfenced write). Returns nil when accepted (and records the
#: token), else ``{newest_term, newest_index}`` as strings. Compares with
#: tonumber (exact below 2**53) and stores the strings verbatim (Lua would turn
#: large numbers into ``1.2e+15``). ``term_check(key, term, index)``: the same
#: for a fenced token, refusing an older term only and recording the newest token.
FENCE_LUA = """
local function fence_check(key, term, index)
  local cur = redis.call('HMGET', key, 'term', 'index')
  if term == '' then
    if cur[1] then return {cur[1], cur[2]} end
    return nil
  end
  if cur[1] then
    local ct, ci = tonumber(cur[1]), tonumber(cur[2])
    local t, i = tonumber(term), tonumber(index)
    if t < ct or (t == ct and i < ci) then return {cur[1], cur[2]} end
  end
  redis.call('HSET', key, 'term', term, 'index', index)
  return nil
end
local function term_check(key, term, index)
  local cur = redis.call('HMGET', key, 'term', 'index')
  if cur[1] then
    local ct, ci = tonumber(cur[1]), tonumber(cur[2])
    local t, i = tonumber(term), tonumber(index)
    if t < ct then return {cur[1], cur[2]} end
    if t == ct and i <= ci then return nil end
  end
  redis.call('HSET', key, 'term', term, 'index', index)
  return nil
end
"""

_GUARD_LUA = FENCE_LUA + """
local newest = fence_check(KEYS[1], ARGV[1], ARGV[2])
if newest then return {0, newest[1], newest[2]} end
return {1}
"""


def fence_args(fence: Fence | None) -> tuple[str, str]:
    """The two script arguments for a token (``("", "")`` when unfenced)."""
    return ("", "") if fence is None else (str(fence.term), str(fence.index))


def read_fence(client: redis.Redis, key: str) -> Fence | None:
    """The token recorded under a fence key, or None if it was never fenced."""
    term, index = client.hmget(key, "term", "index")
    return None if term is None else Fence(int(term), int(index))


def newest_fence_term(client: redis.Redis) -> int:
    """The highest term any fence key in this Redis records (0 if none): what a
    newly built Raft cluster must start its fences above."""
    fence_keys = list(client.scan_iter(match=keys.fence_pattern(), count=1000))
    if not fence_keys:
        return 0
    pipe = client.pipeline(transaction=False)
    for key in fence_keys:
        pipe.hget(key, "term")
    return max((int(term) for term in pipe.execute() if term is not None), default=0)


class FenceGuard:
    """The generic check: one atomic script per call, per resource.

    ``check_and_record`` accepts a token equal to or newer than the newest seen
    for ``resource`` (and records it), and raises :class:`StaleFence` (counted in
    ``omnimind_fence_rejections_total``) for an older one.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._script = client.register_script(_GUARD_LUA)

    def check_and_record(self, resource: str, term: int, index: int) -> Fence:
        fence = Fence.coerce((term, index))
        reply = self._script(keys=[keys.fence(resource)], args=list(fence_args(fence)))
        if int(reply[0]) != 1:
            metrics.fence_rejections.inc()
            raise StaleFence(resource, fence, (int(reply[1]), int(reply[2])))
        return fence

    def newest(self, resource: str) -> Fence | None:
        """The newest token ``resource`` has accepted (None if never fenced)."""
        return read_fence(self.client, keys.fence(resource))
