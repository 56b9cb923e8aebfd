"""ModelStore against a real Redis: round trip, versions, fences, rollback, retention."""
from __future__ import annotations

import time

import pytest
import torch

from omnimind import keys
from omnimind.config import Settings
from omnimind.models.errors import StaleFence, UnknownVersion
from omnimind.models.factory import build_model
from omnimind.fence import Fence
from omnimind.models.serialization import encode_state_dict, load_into, sha256_hex
from omnimind.models.store import ModelStore
from tests.models.store_support import bits, counter, mlp_state, next_notice


def test_publish_fetch_round_trip_is_bit_exact_with_metadata(store):
    torch.manual_seed(1)
    state = {
        "f32": torch.randn(5, 7),
        "f16": torch.randn(3).half(),
        "bf16": torch.randn(4, 2).bfloat16(),
        "i64": torch.arange(6).reshape(2, 3),
        "nan": torch.tensor([float("nan"), float("inf"), -0.0]),
        "scalar": torch.tensor(3.5),
    }
    published = store.publish(
        state,
        {"validation_loss": 0.125, "samples_trained": 4096, "epochs": 5, "extras": {"lr": 1e-3}},
        fence=(3, 17),
    )
    assert published.version == 1 and published.parent_version is None
    assert published.fence == Fence(3, 17) and published.producer == "test-node"
    assert published.extras == {"epochs": 5, "lr": 1e-3}
    assert published.sha256 == sha256_hex(encode_state_dict(state))
    assert abs(published.created_at - time.time()) < 60  # Redis TIME

    meta, fetched = store.fetch()
    assert meta == published
    assert sorted(fetched) == sorted(state)
    for key, tensor in state.items():
        assert fetched[key].dtype == tensor.dtype and fetched[key].shape == tensor.shape
        assert fetched[key].device.type == "cpu"
        assert bits(fetched[key]) == bits(tensor), key
    assert store.get_metadata(1) == published == store.get_metadata()
    assert store.active_version() == 1


def test_default_mlp_weights_load_into_a_fresh_model(store):
    state = mlp_state(seed=7)
    store.publish(state, {"validation_loss": 0.5}, fence=(1, 1))
    _, fetched = store.fetch(1)
    model = load_into(build_model(Settings()), fetched)
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[key])


def test_versions_are_monotonic_and_parent_is_the_previously_active(store):
    versions = [store.publish(mlp_state(i), fence=(1, i)) for i in range(5)]
    assert [v.version for v in versions] == [1, 2, 3, 4, 5]
    assert [v.parent_version for v in versions] == [None, 1, 2, 3, 4]
    assert [v.version for v in store.list_versions()] == [1, 2, 3, 4, 5]
    explicit = store.publish(mlp_state(), {"parent_version": 2}, fence=(1, 9))
    assert explicit.version == 6 and explicit.parent_version == 2


def test_stale_fence_is_rejected_counted_and_changes_nothing(store, redis_client):
    store.publish(mlp_state(0), fence=(4, 10))
    before = {k: redis_client.dump(k) for k in redis_client.keys("*")}
    rejections = counter("omnimind_fence_rejections_total")
    publications = counter("omnimind_model_publications_total")
    for stale in [(4, 9), (3, 99), (0, 0)]:
        with pytest.raises(StaleFence) as info:
            store.publish(mlp_state(1), fence=stale)
        assert info.value.offered == stale and info.value.newest == (4, 10)
        assert info.value.reason == "stale"
    assert counter("omnimind_fence_rejections_total") == rejections + 3
    assert counter("omnimind_model_publications_total") == publications
    # Pointer, seq, metadata and blobs untouched, and no staged upload left behind.
    assert {k: redis_client.dump(k) for k in redis_client.keys("*")} == before
    assert store.active_version() == 1 and store.fence() == Fence(4, 10)


def test_equal_fence_is_accepted_and_newer_term_wins_over_higher_index(store):
    assert store.publish(mlp_state(0), fence=(2, 5)).version == 1
    assert store.publish(mlp_state(1), fence=(2, 5)).version == 2  # same leader, same token
    assert store.publish(mlp_state(2), fence=(3, 0)).version == 3  # newer term, lower index
    with pytest.raises(StaleFence):
        store.publish(mlp_state(3), fence=(2, 500))
    assert store.fence() == Fence(3, 0)
    assert store.publish(mlp_state(4), fence="3:1").version == 4


def test_unfenced_publish_only_while_never_fenced(store, redis_client):
    assert store.publish(mlp_state(0)).fence is None
    assert store.publish(mlp_state(1)).version == 2
    assert store.fence() is None and not redis_client.exists(keys.model_fence("default"))
    store.publish(mlp_state(2), fence=(1, 0))
    rejections = counter("omnimind_fence_rejections_total")
    with pytest.raises(StaleFence) as info:
        store.publish(mlp_state(3))
    assert info.value.offered is None and "pass a fence" in str(info.value)
    assert counter("omnimind_fence_rejections_total") == rejections + 1
    assert store.active_version() == 3


def test_rollback_moves_the_pointer_back_notifies_and_next_publish_is_higher(store):
    for i in range(3):
        store.publish(mlp_state(i), fence=(1, i))
    pubsub = store.subscribe()
    try:
        rolled = store.rollback(1, fence=(1, 2))
        assert rolled.version == 1 and store.active_version() == 1
        notice = next_notice(pubsub)
        assert (notice.name, notice.version, notice.event) == ("default", 1, "rollback")
        assert notice.sha256 == rolled.sha256
        meta, state = store.fetch()
        assert meta.version == 1 and torch.equal(state["0.weight"], mlp_state(0)["0.weight"])
        assert [v.version for v in store.list_versions()] == [1, 2, 3]  # newer ones kept

        nxt = store.publish(mlp_state(9), fence=(1, 3))
        assert nxt.version == 4 and nxt.parent_version == 1
        notice = next_notice(pubsub)
        assert (notice.version, notice.event, notice.sha256) == (4, "publish", nxt.sha256)
        store.rollback(3, fence=(1, 3))  # rolling forward again is the same call
        assert store.active_version() == 3
    finally:
        pubsub.close()


def test_rollback_is_fenced_and_refuses_unknown_versions(store):
    store.publish(mlp_state(0), fence=(2, 0))
    store.publish(mlp_state(1), fence=(2, 1))
    with pytest.raises(StaleFence):
        store.rollback(1, fence=(1, 9))
    with pytest.raises(StaleFence):
        store.rollback(1)  # unfenced, but the store is fenced
    with pytest.raises(UnknownVersion):
        store.rollback(42, fence=(2, 1))
    assert store.active_version() == 2
    assert store.fence() == Fence(2, 1)


def test_publish_sends_a_notice_after_the_write(store):
    pubsub = store.subscribe()
    try:
        published = store.publish(mlp_state(0), fence=(1, 0))
        notice = next_notice(pubsub)
        assert notice.version == published.version and notice.event == "publish"
        # The notice is only a hint; the key it points at is already written.
        assert store.active_version() == notice.version
        assert store.fetch(notice.version)[0].sha256 == notice.sha256
    finally:
        pubsub.close()


def test_retention_keeps_the_newest_and_never_the_active_one(redis_client):
    store = ModelStore(redis_client, "ret", keep_versions=3)
    for i in range(6):
        store.publish(mlp_state(i), fence=(1, i))
    assert [v.version for v in store.list_versions()] == [4, 5, 6]
    blobs = sorted(k.decode() for k in redis_client.keys(keys.model_blob("ret", "*")))
    assert blobs == [keys.model_blob("ret", v) for v in (4, 5, 6)]
    assert all(redis_client.ttl(k) == -1 for k in blobs)  # staged uploads lose their TTL once committed
    with pytest.raises(UnknownVersion):
        store.fetch(1)
    with pytest.raises(UnknownVersion):
        store.rollback(2, fence=(1, 5))

    store.rollback(4, fence=(1, 5))  # the oldest retained becomes active: rollback deletes nothing
    assert [v.version for v in store.list_versions()] == [4, 5, 6]
    assert store.fetch()[0].version == 4
    store.publish(mlp_state(7), fence=(1, 6))
    assert [v.version for v in store.list_versions()] == [5, 6, 7]
    assert store.active_version() == 7

    single = ModelStore(redis_client, "one", keep_versions=1)
    for i in range(3):
        single.publish(mlp_state(i), fence=(1, i))
        assert [v.version for v in single.list_versions()] == [i + 1] == [single.active_version()]
        assert single.fetch()[0].version == i + 1
