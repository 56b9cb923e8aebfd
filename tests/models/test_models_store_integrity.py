"""ModelStore against a real Redis: corruption, refusals, staged uploads, retries and superseded publishes."""
from __future__ import annotations

import itertools
import json

import pytest
import torch
from torch import nn

from omnimind import keys
from omnimind.config import Settings
from omnimind.models.errors import CorruptModel, IncompatibleWeights, UnknownVersion
from omnimind.models.factory import build_model
from omnimind.fence import Fence
from omnimind.models.serialization import encode_state_dict, load_into, sha256_hex
from omnimind.models.store import ModelStore
from tests.models.store_support import mlp_state


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
