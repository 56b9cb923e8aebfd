"""FenceGuard: the generic Redis-side fencing check (issue 3, item 6)."""
from __future__ import annotations

import threading

import pytest
from prometheus_client import REGISTRY

from omnimind import keys
from omnimind.models.errors import StaleFence
from omnimind.models.fencing import FENCE_LUA, Fence, FenceGuard
from omnimind.models.store import _PUBLISH_LUA, _ROLLBACK_LUA


def rejections() -> float:
    return REGISTRY.get_sample_value("omnimind_fence_rejections_total") or 0.0


def test_first_token_is_accepted_and_recorded(redis_client):
    guard = FenceGuard(redis_client)
    assert guard.newest("schedule") is None
    assert guard.check_and_record("schedule", 3, 7) == Fence(3, 7)
    assert guard.newest("schedule") == Fence(3, 7)
    assert redis_client.hgetall(keys.fence("schedule")) == {b"term": b"3", b"index": b"7"}


@pytest.mark.parametrize(
    "first, second, accepted",
    [
        ((3, 7), (3, 7), True),  # equal: the same leader writing twice
        ((3, 7), (3, 8), True),  # later index, same term
        ((3, 7), (4, 0), True),  # newer term beats any index
        ((3, 7), (3, 6), False),  # older index, same term
        ((3, 7), (2, 99), False),  # older term, whatever the index
        ((0, 0), (0, 0), True),
    ],
)
def test_lexicographic_rule(redis_client, first, second, accepted):
    guard = FenceGuard(redis_client)
    guard.check_and_record("r", *first)
    before = rejections()
    if accepted:
        guard.check_and_record("r", *second)
        assert guard.newest("r") == second
    else:
        with pytest.raises(StaleFence) as info:
            guard.check_and_record("r", *second)
        assert (info.value.resource, info.value.offered, info.value.newest) == ("r", second, first)
        assert rejections() == before + 1
        assert guard.newest("r") == first


def test_resources_are_independent(redis_client):
    guard = FenceGuard(redis_client)
    guard.check_and_record("a", 9, 9)
    guard.check_and_record("b", 1, 1)
    assert guard.newest("a") == Fence(9, 9) and guard.newest("b") == Fence(1, 1)


def test_large_parts_stay_exact(redis_client):
    guard = FenceGuard(redis_client)
    big = 2**53 - 1
    guard.check_and_record("big", 123456789012345, big)
    assert guard.newest("big") == Fence(123456789012345, big)
    with pytest.raises(StaleFence):
        guard.check_and_record("big", 123456789012345, big - 1)
    with pytest.raises(ValueError):
        guard.check_and_record("big", 2**53, 0)


def test_concurrent_tokens_leave_the_newest(redis_client):
    guard = FenceGuard(redis_client)
    tokens = [(t, i) for t in range(5) for i in range(20)]
    results: dict[tuple[int, int], bool] = {}

    def worker(chunk):
        for token in chunk:
            try:
                guard.check_and_record("race", *token)
                results[token] = True
            except StaleFence:
                results[token] = False

    threads = [threading.Thread(target=worker, args=(tokens[k::4][::-1] if k % 2 else tokens[k::4],)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert guard.newest("race") == max(tokens)
    assert results[max(tokens)] is True


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


def test_guard_and_store_see_one_rule(redis_client):
    """A FenceGuard on the store's resource and the store reject the same tokens."""
    import torch

    from omnimind.models.store import ModelStore

    store = ModelStore(redis_client, "shared")
    guard = FenceGuard(redis_client)
    guard.check_and_record(store.resource, 6, 0)  # e.g. a new leader announcing its term
    with pytest.raises(StaleFence):
        store.publish({"w": torch.zeros(1)}, fence=(5, 9))
    assert store.publish({"w": torch.zeros(1)}, fence=(6, 0)).version == 1
    with pytest.raises(StaleFence):
        guard.check_and_record(store.resource, 5, 100)


def test_newest_fence_term_spans_every_fenced_resource(redis_client):
    from omnimind.models.fencing import newest_fence_term

    assert newest_fence_term(redis_client) == 0
    guard = FenceGuard(redis_client)
    guard.check_and_record("schedule:retrain", 4, 100)
    guard.check_and_record("model:default", 7, 2)
    guard.check_and_record("other", 5, 9)
    redis_client.set("omnimind:registry:unrelated", "x")
    assert newest_fence_term(redis_client) == 7
