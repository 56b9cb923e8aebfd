"""The fence rules (omnimind/lua/fence.lua) in a real Redis, and the Fence type (issue 3, item 6).

The rules run only inside the scripts that start with them (the model store's,
the dispatch guard's); here each runs alone in a one-line script.
"""
from __future__ import annotations

import pytest

from omnimind import keys
from omnimind.fence import FENCE_LUA, Fence, fence_args, newest_fence_term, read_fence
from omnimind.models.store import _PUBLISH_LUA, _ROLLBACK_LUA


def check(redis_client, rule: str, key: str, fence) -> bool:
    """Run ``rule`` (``fence_check`` or ``term_check``) alone; True when it accepts."""
    script = redis_client.register_script(FENCE_LUA + f"\nreturn {rule}(KEYS[1], ARGV[1], ARGV[2]) == nil and 1 or 0")
    return script(keys=[key], args=list(fence_args(Fence.coerce(fence)))) == 1


@pytest.mark.parametrize(
    "first, second, lexicographic, same_term_any_index",
    [
        ((3, 7), (3, 7), True, True),  # equal: the same leader writing twice
        ((3, 7), (3, 8), True, True),  # later index, same term
        ((3, 7), (4, 0), True, True),  # newer term beats any index
        ((3, 7), (3, 6), False, True),  # older index, same term: only term_check accepts it
        ((3, 7), (2, 99), False, False),  # older term, whatever the index
        ((0, 0), (0, 0), True, True),
    ],
)
def test_rules(redis_client, first, second, lexicographic, same_term_any_index):
    for rule, accepted in (("fence_check", lexicographic), ("term_check", same_term_any_index)):
        key = keys.fence(f"rule:{rule}")
        assert check(redis_client, rule, key, first)
        assert check(redis_client, rule, key, second) is accepted
        newest = max(first, second) if accepted else first
        assert read_fence(redis_client, key) == newest


def test_rules_keep_large_parts_exact(redis_client):
    key, big = keys.fence("big"), 2**53 - 1
    assert check(redis_client, "fence_check", key, (123456789012345, big))
    assert redis_client.hgetall(key) == {b"term": b"123456789012345", b"index": str(big).encode()}
    assert not check(redis_client, "fence_check", key, (123456789012345, big - 1))
    assert read_fence(redis_client, key) == Fence(123456789012345, big)


def test_unfenced_writes_pass_only_while_never_fenced(redis_client):
    key = keys.fence("unfenced")
    assert check(redis_client, "fence_check", key, None)
    assert read_fence(redis_client, key) is None  # an unfenced write does not fence
    assert check(redis_client, "fence_check", key, (1, 0))
    assert not check(redis_client, "fence_check", key, None)


def test_fence_parsing():
    assert Fence.parse(" 4:2 ") == Fence(4, 2)
    assert Fence.coerce({"term": 1, "index": 2}) == Fence(1, 2)
    assert Fence.coerce(["5", "6"]) == Fence(5, 6)
    for bad in ["4", "a:b", "1:2:3", (1,), (1, 2, 3), (-1, 0), "x"]:
        with pytest.raises(ValueError):
            Fence.coerce(bad)


def test_the_model_store_shares_the_same_snippet():
    assert _PUBLISH_LUA.startswith(FENCE_LUA) and _ROLLBACK_LUA.startswith(FENCE_LUA)
    assert _PUBLISH_LUA.count("local function fence_check") == 1


def test_newest_fence_term_spans_every_fenced_resource(redis_client):
    assert newest_fence_term(redis_client) == 0
    check(redis_client, "fence_check", keys.fence("schedule:retrain"), (4, 100))
    check(redis_client, "fence_check", keys.fence("model:default"), (7, 2))
    check(redis_client, "fence_check", keys.fence("other"), (5, 9))
    redis_client.set("omnimind:registry:unrelated", "x")
    assert newest_fence_term(redis_client) == 7
