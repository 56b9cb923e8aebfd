"""Rollback refuses what workers could not serve: SHA-256, decode and architecture checked
before the pointer moves, and a blob replaced after the check refused by the script itself
(real Redis). Also the store's helpers for last known good: version numbers, served reports."""
from __future__ import annotations

import json
import time

import pytest
import torch
from prometheus_client import REGISTRY

from omnimind import keys
from omnimind.config import Settings
from omnimind.models.errors import CorruptModel, IncompatibleWeights
from omnimind.models.factory import build_model
from omnimind.fence import Fence
from omnimind.models.serialization import encode_state_dict, sha256_hex
from omnimind.models.store import ModelStore


def counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def mlp_state() -> dict[str, torch.Tensor]:
    """The default architecture's weights (the same on every call: the factory is seeded)."""
    return build_model(Settings()).state_dict()


@pytest.fixture
def store(redis_client):
    return ModelStore(redis_client, "default", keep_versions=10, producer="test-node")


def flip_a_bit(redis_client, version: int, name: str = "default") -> None:
    blob = bytearray(redis_client.get(keys.model_blob(name, version)))
    blob[-3] ^= 0x01
    redis_client.set(keys.model_blob(name, version), bytes(blob))


def test_rollback_to_a_corrupt_blob_is_refused_and_changes_nothing(store, redis_client):
    for i in range(3):
        store.publish(mlp_state(), fence=(1, i))
    flip_a_bit(redis_client, 2)
    before = {k: redis_client.dump(k) for k in redis_client.keys("*")}
    pubsub = store.subscribe()
    try:
        rollbacks = counter("omnimind_model_rollbacks_total")
        with pytest.raises(CorruptModel, match="version 2 is corrupt: sha256 mismatch") as info:
            store.rollback(2, fence=(5, 0))  # a newer fence: it must not be recorded either
        assert info.value.reason == "checksum"
        assert pubsub.get_message(timeout=0.5) is None  # no notice: nothing moved
    finally:
        pubsub.close()
    assert {k: redis_client.dump(k) for k in redis_client.keys("*")} == before
    assert store.active_version() == 3 and store.fence() == Fence(1, 2)
    assert counter("omnimind_model_rollbacks_total") == rollbacks

    # A blob whose SHA-256 matches its metadata but that does not decode.
    garbage = b"\xff" * 64
    meta = json.loads(redis_client.hget(keys.model_meta("default"), 1))
    redis_client.hset(keys.model_meta("default"), 1, json.dumps({**meta, "sha256": sha256_hex(garbage)}))
    redis_client.set(keys.model_blob("default", 1), garbage)
    with pytest.raises(CorruptModel) as info:
        store.rollback(1, fence=(1, 2))
    assert info.value.reason == "unreadable" and store.active_version() == 3


def test_rollback_with_the_architecture_loads_the_target_first(store):
    store.publish(mlp_state(), fence=(1, 0))
    store.publish({"0.weight": torch.zeros(64, 8)}, fence=(1, 1))  # fits no default model
    nan = mlp_state()
    nan["4.bias"] = torch.tensor([float("nan")])
    store.publish(nan, fence=(1, 2))
    store.publish(mlp_state(), fence=(1, 3))
    with pytest.raises(IncompatibleWeights, match="0.weight expected"):
        store.rollback(2, fence=(1, 3), model=build_model(Settings()))
    with pytest.raises(CorruptModel, match="not finite") as info:
        store.rollback(3, fence=(1, 3), model=build_model(Settings()))
    assert info.value.reason == "load" and store.active_version() == 4
    assert store.rollback(1, fence=(1, 3), model=build_model(Settings())).version == 1
    assert store.rollback(2, fence=(1, 3)).version == 2  # without the architecture: SHA-256 and decode only
    with pytest.raises(IncompatibleWeights):
        store.verify(2, build_model(Settings()))


def test_publish_with_the_architecture_refuses_what_would_not_serve(store):
    with pytest.raises(IncompatibleWeights):
        store.publish({"0.weight": torch.zeros(64, 8)}, fence=(1, 0), model=build_model(Settings()))
    nan = mlp_state()
    nan["0.weight"][0, 0] = float("inf")
    with pytest.raises(CorruptModel, match="not finite"):
        store.publish(nan, fence=(1, 0), model=build_model(Settings()))
    assert store.active_version() is None and store.list_versions() == [] and store.fence() is None
    assert store.publish(mlp_state(), fence=(1, 0), model=build_model(Settings())).version == 1


class RacedStore(ModelStore):
    """A store in which another writer replaces the target right after it was verified:
    the moment between verification and the rollback script, made deterministic."""

    def __init__(self, client, replace) -> None:
        super().__init__(client)
        self.replace = replace

    def _verified(self, version, model=None):
        verified = super()._verified(version, model)
        self.replace(version)
        return verified


def test_rollback_refuses_a_blob_replaced_between_verification_and_the_pointer_move(store, redis_client):
    for i in range(3):
        store.publish(mlp_state(), fence=(1, i))
    meta_key = keys.model_meta("default")

    def republish(version):  # new bytes with matching metadata: verified bytes are no longer there
        blob = encode_state_dict({k: v + 1 for k, v in mlp_state().items()})
        meta = json.loads(redis_client.hget(meta_key, version))
        redis_client.hset(meta_key, version, json.dumps({**meta, "sha256": sha256_hex(blob), "size_bytes": len(blob)}))
        redis_client.set(keys.model_blob("default", version), blob)

    def truncate(version):  # metadata untouched, blob cut short
        key = keys.model_blob("default", version)
        redis_client.set(key, redis_client.get(key)[:-8])

    for replace in (republish, truncate):
        with pytest.raises(CorruptModel, match="replaced while it was verified") as info:
            RacedStore(redis_client, replace).rollback(1, fence=(2, 0))
        assert info.value.reason == "checksum"
        assert store.active_version() == 3 and store.fence() == Fence(1, 2)  # no pointer move, no fence recorded


def test_the_rollback_script_compares_the_verified_sha256(store, redis_client):
    from omnimind.models.store import _ROLLBACK_LUA

    published = store.publish(mlp_state(), fence=(1, 0))
    store.publish(mlp_state(), fence=(1, 1))
    script = redis_client.register_script(_ROLLBACK_LUA)
    script_keys = [keys.model_fence("default"), keys.model_active("default"), keys.model_meta("default"),
                   keys.model_blob("default", 1)]
    base = ["1", "1", 1, "default", store.channel]
    assert script(keys=script_keys, args=base + ["0" * 64, published.size_bytes]) == [
        b"changed", published.sha256.encode(), published.size_bytes]
    assert script(keys=script_keys, args=base + [published.sha256, published.size_bytes + 1])[0] == b"changed"
    assert store.active_version() == 2
    assert script(keys=script_keys, args=base + [published.sha256, published.size_bytes])[0] == b"ok"
    assert store.active_version() == 1


def test_version_numbers_survive_a_corrupt_metadata_entry(store, redis_client):
    for i in range(3):
        store.publish(mlp_state(), fence=(1, i))
    redis_client.hset(keys.model_meta("default"), 2, b"{not json")
    with pytest.raises(CorruptModel):
        store.list_versions()
    assert store.version_numbers() == [1, 2, 3]


def test_served_reports_round_trip_and_age_out(store, redis_client):
    from omnimind.models.metadata import ServedVersion

    now = time.time()
    store.report_served(ServedVersion("a@h", 7, 7, at=now))
    store.report_served(ServedVersion("b@h", 6, 7, refused=7, reason="checksum", at=now))
    store.report_served(ServedVersion("gone@h", 5, 5, at=now - 3600))
    redis_client.hset(keys.model_served("default"), "junk@h", b"not json")
    served = store.served_versions()
    assert sorted(served) == ["a@h", "b@h"]
    assert served["b@h"].fallback and not served["a@h"].fallback and served["b@h"].reason == "checksum"
    assert 0 < redis_client.ttl(keys.model_served("default"))
    store.forget_served("a@h")
    assert sorted(store.served_versions()) == ["b@h"]
