"""ModelStore against a real Redis: round trip, versions, fences, rollback, retention, corruption."""
from __future__ import annotations

import itertools
import json
import time

import pytest
import torch
from prometheus_client import REGISTRY
from torch import nn

from omnimind import keys
from omnimind.config import Settings
from omnimind.models.errors import CorruptModel, IncompatibleWeights, StaleFence, UnknownVersion
from omnimind.models.factory import build_model
from omnimind.fence import Fence
from omnimind.models.serialization import encode_state_dict, load_into, sha256_hex
from omnimind.models.store import ModelStore


def counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def mlp_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return build_model(Settings()).state_dict()


def bits(t: torch.Tensor) -> bytes:
    return t.contiguous().flatten().view(torch.uint8).numpy().tobytes()


def next_notice(pubsub, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        notice = ModelStore.parse_notice(pubsub.get_message(timeout=0.2))
        if notice is not None:
            return notice
    raise AssertionError("no update notice arrived")


@pytest.fixture
def store(redis_client):
    return ModelStore(redis_client, "default", keep_versions=10, producer="test-node")


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


def test_versions_never_go_back_even_if_the_counter_key_is_lost(store, redis_client):
    for i in range(3):
        store.publish(mlp_state(i), fence=(1, i))
    redis_client.delete(keys.model_seq("default"))
    assert store.publish(mlp_state(5), fence=(1, 5)).version == 4


def test_corrupted_blob_is_rejected_on_fetch(store, redis_client):
    store.publish(mlp_state(0), fence=(1, 0))
    good = redis_client.get(keys.model_blob("default", 1))
    flipped = bytearray(good)
    flipped[-3] ^= 0x01  # one bit of one weight
    redis_client.set(keys.model_blob("default", 1), bytes(flipped))
    with pytest.raises(CorruptModel, match="sha256 mismatch") as info:
        store.fetch()
    assert info.value.reason == "checksum"

    redis_client.set(keys.model_blob("default", 1), b"\x00garbage")
    with pytest.raises(CorruptModel, match="sha256 mismatch"):
        store.fetch(1)


def test_undecodable_blob_with_matching_sha_is_rejected(store, redis_client):
    store.publish(mlp_state(0), fence=(1, 0))
    garbage = b"\xff" * 64
    meta = json.loads(redis_client.hget(keys.model_meta("default"), 1))
    meta["sha256"] = sha256_hex(garbage)
    redis_client.hset(keys.model_meta("default"), 1, json.dumps(meta))
    redis_client.set(keys.model_blob("default", 1), garbage)
    with pytest.raises(CorruptModel, match="not a safetensors blob") as info:
        store.fetch()
    assert info.value.reason == "unreadable"
    redis_client.hset(keys.model_meta("default"), 1, b"{not json")
    with pytest.raises(CorruptModel, match="undecodable metadata"):
        store.get_metadata(1)


def test_fetch_with_nothing_published_or_unknown_version(store):
    assert store.active_version() is None and store.list_versions() == []
    with pytest.raises(UnknownVersion, match="no active version"):
        store.fetch()
    store.publish(mlp_state(0))
    with pytest.raises(UnknownVersion, match="no version 9") as info:
        store.fetch(9)
    assert info.value.reason == "missing"
    with pytest.raises(UnknownVersion):
        store.get_metadata(9)


def test_incompatible_weights_are_named(store):
    store.publish({"0.weight": torch.zeros(64, 8), "extra": torch.zeros(1)}, fence=(1, 0))
    _, state = store.fetch()
    with pytest.raises(IncompatibleWeights) as info:
        load_into(build_model(Settings()), state)
    message = str(info.value)
    assert "0.weight expected (64, 16), got (64, 8)" in message
    assert "missing keys: 0.bias" in message and "unexpected keys: extra" in message
    assert info.value.reason == "incompatible"
    with pytest.raises(IncompatibleWeights, match="dtype kind"):
        load_into(nn.Linear(2, 1), {"weight": torch.zeros(1, 2, dtype=torch.int64), "bias": torch.zeros(1)})


def test_bad_metadata_and_names_are_refused(store, redis_client):
    with pytest.raises(ValueError, match="set by the store"):
        store.publish(mlp_state(), {"version": 99})
    with pytest.raises(ValueError, match="finite"):
        store.publish(mlp_state(), {"validation_loss": float("nan")})
    with pytest.raises(ValueError, match="JSON"):
        store.publish(mlp_state(), {"thing": object()})
    with pytest.raises(ValueError):
        ModelStore(redis_client, "a:b")
    with pytest.raises(ValueError):
        ModelStore(redis_client, keep_versions=0)
    with pytest.raises(ValueError):
        store.publish(mlp_state(), fence=(-1, 0))
    assert store.active_version() is None


def test_tied_weights_are_stored_apart(store):
    shared = torch.randn(3, 3)
    meta = store.publish({"a": shared, "b": shared}, fence=(1, 0))
    _, state = store.fetch(meta.version)
    assert torch.equal(state["a"], shared) and torch.equal(state["b"], shared)


def test_stores_of_different_names_are_independent(redis_client):
    a, b = ModelStore(redis_client, "a"), ModelStore(redis_client, "b")
    a.publish(mlp_state(0), fence=(5, 0))
    assert b.publish(mlp_state(1), fence=(1, 0)).version == 1
    assert a.active_version() == 1 and b.fence() == Fence(1, 0)


def test_publish_survives_a_flushed_script_cache(store, redis_client):
    store.publish(mlp_state(0), fence=(1, 0))
    redis_client.script_flush()
    assert store.publish(mlp_state(1), fence=(1, 1)).version == 2
    redis_client.script_flush()
    assert store.rollback(1, fence=(1, 1)).version == 1


def test_an_abandoned_staged_upload_expires_and_is_never_active(store, redis_client):
    from omnimind.models.store import STAGING_TTL

    staging = keys.model_staging("default", "abandoned")
    redis_client.set(staging, encode_state_dict(mlp_state(0)), ex=STAGING_TTL)  # a publisher died here
    assert 0 < redis_client.ttl(staging) <= STAGING_TTL
    assert store.active_version() is None and store.list_versions() == []


def test_the_publish_script_refuses_a_missing_upload(store, redis_client):
    from omnimind.models.store import _PUBLISH_LUA

    script = redis_client.register_script(_PUBLISH_LUA)
    reply = script(
        keys=[keys.model_fence("default"), keys.model_seq("default"), keys.model_active("default"),
              keys.model_meta("default"), keys.model_staging("default", "never-uploaded"),
              keys.model_receipt("default", "never-uploaded")],
        args=["", "", '{"name":"default"}', "", 10, "default", "0" * 64, store.channel, keys.model_blob("default", ""),
              600],
    )
    assert reply == [b"nostaging"]
    assert redis_client.keys("*") == []  # no version number consumed, nothing written


def test_notices_iterator_yields_none_on_silence_then_the_notice(store):
    pubsub = store.subscribe()
    try:
        stream = store.notices(pubsub, timeout=0.05)
        assert next(stream) is None  # silence: time to re-check the version key
        published = store.publish(mlp_state(0), fence=(1, 0))
        notice = next(n for n in itertools.islice(stream, 200) if n is not None)
        assert notice.version == published.version and notice.sha256 == published.sha256
    finally:
        pubsub.close()


def test_a_resent_publish_commits_once(store, redis_client):
    """redis-py resends a pipeline after a dropped connection; the receipt makes the resend a no-op."""
    from omnimind.models.metadata import metadata_json

    blob = encode_state_dict(mlp_state(0))
    digest = sha256_hex(blob)
    user, parent = metadata_json("default", {}, digest, len(blob), Fence(1, 0), "n1")
    first = store._commit("token-1", blob, digest, user, parent, Fence(1, 0))
    again = store._commit("token-1", blob, digest, user, parent, Fence(1, 0))
    assert first == again and first.version == 1
    assert store.active_version() == 1 and [v.version for v in store.list_versions()] == [1]
    assert redis_client.keys(keys.model_staging("default", "*")) == []
    assert 0 < redis_client.ttl(keys.model_receipt("default", "token-1"))
    assert store._commit("token-2", blob, digest, user, parent, Fence(1, 0)).version == 2


def test_publish_built_on_a_version_no_longer_active_is_superseded(redis_client):
    from omnimind.models.errors import Superseded

    store = ModelStore(redis_client)
    weights = {"w": torch.ones(2)}
    assert store.publish(weights, expected_active=0).version == 1  # nothing active yet: as expected
    store.publish(weights)  # v2
    store.rollback(1, fence=store.fence())
    # A retrain that validated against v2 must not undo the rollback to v1.
    with pytest.raises(Superseded, match="built on v2 but v1 is active"):
        store.publish(weights, expected_active=2)
    assert store.active_version() == 1
    assert store.publish(weights, expected_active=1).version == 3
