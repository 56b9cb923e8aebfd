"""ModelFollower in this process against a real Redis: last known good when the active version
does not load, no tight retry of a refused version, and the served-version reports."""
from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY

from omnimind import keys
from omnimind.config import Settings
from omnimind.models.factory import build_model
from omnimind.models.runtime import ModelRuntime
from omnimind.models.store import ModelStore
from tests.helpers import wait_until
from workers import context, model_sync
from workers.model_sync import ModelFollower

GOOD = [0.25] * 16


def counter(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def weights(marker: float) -> dict:
    """Default-architecture weights whose output on any input is ``marker``."""
    state = build_model(Settings()).state_dict()
    state["4.weight"].zero_()
    state["4.bias"].fill_(marker)
    return state


def output(runtime) -> float:
    return runtime.predict(GOOD).outputs[0]


def corrupt(redis_client, version: int) -> None:
    redis_client.set(keys.model_blob("default", version), b"garbage" * 10)


@pytest.fixture
def store(redis_client):
    return ModelStore(redis_client)


@pytest.fixture
def follower(store):
    return ModelFollower(ModelRuntime(Settings(device="cpu")), store, poll_interval=0.1)


def test_a_corrupt_active_version_serves_the_newest_older_one_that_loads(follower, store, redis_client, caplog):
    for version in (1, 2, 3, 4):
        store.publish(weights(float(version)), fence=(1, version))
    store.publish({"0.weight": weights(0.0)["0.weight"][:, :8]}, fence=(1, 5))  # v5: another architecture
    store.publish(weights(6.0), fence=(1, 6))
    corrupt(redis_client, 6)
    corrupt(redis_client, 4)
    checksum = counter("omnimind_model_swap_rejections_total", reason="checksum")
    fallbacks = counter("omnimind_model_fallbacks_total")
    with caplog.at_level(logging.WARNING, logger="workers.model_sync"):
        assert follower.sync() == 3  # past v5 (misfit) and v4 (corrupt), never v0
    assert follower.runtime.model_version == 3 and output(follower.runtime) == pytest.approx(3.0)
    assert counter("omnimind_model_swap_rejections_total", reason="checksum") == checksum + 2
    assert counter("omnimind_model_fallbacks_total") == fallbacks + 1
    warning = [r for r in caplog.records if "last known good" in r.getMessage()]
    assert warning and warning[0].levelno == logging.WARNING
    assert "Refusing model v6 (checksum" in warning[0].getMessage() and "serving v3" in warning[0].getMessage()

    report = store.served_versions()[context.node_id()]
    assert (report.version, report.active, report.refused, report.reason) == (3, 6, 6, "checksum")
    assert report.fallback


def test_a_refused_version_is_not_retried_until_the_pointer_moves(follower, store, redis_client):
    for version in (1, 2):
        store.publish(weights(float(version)), fence=(1, version))
    corrupt(redis_client, 2)
    assert follower.sync() == 1
    rejections = counter("omnimind_model_swap_rejections_total", reason="checksum")
    swaps = counter("omnimind_model_swaps_total", node_id=context.node_id())
    for _ in range(20):
        assert follower.sync() == 1
    assert counter("omnimind_model_swap_rejections_total", reason="checksum") == rejections
    assert counter("omnimind_model_swaps_total", node_id=context.node_id()) == swaps

    store.publish(weights(3.0), fence=(1, 3))  # the pointer moves: the new version is served
    assert follower.sync() == 3 and output(follower.runtime) == pytest.approx(3.0)
    assert store.served_versions()[context.node_id()].refused is None
    # Back to v2 (written directly: the store's rollback would refuse it), then away and back again:
    # each move to v2 is a new attempt, refused once.
    redis_client.set(keys.model_active("default"), 2)
    assert follower.sync() == 1  # v2 refused; v1 is the newest version below it that loads
    redis_client.set(keys.model_active("default"), 1)
    assert follower.sync() == 1
    redis_client.set(keys.model_active("default"), 2)
    assert follower.sync() == 1
    assert counter("omnimind_model_swap_rejections_total", reason="checksum") == rejections + 2


def test_a_refused_version_is_retried_after_the_interval(follower, store, redis_client, monkeypatch):
    monkeypatch.setattr(model_sync, "REFUSED_RETRY_S", 2.0)
    store.publish(weights(1.0), fence=(1, 1))
    store.publish(weights(2.0), fence=(1, 2))
    good = redis_client.get(keys.model_blob("default", 2))
    corrupt(redis_client, 2)
    assert follower.sync() == 1
    redis_client.set(keys.model_blob("default", 2), good)  # repaired in place: the pointer does not move
    assert follower.sync() == 1  # not before the interval
    wait_until(lambda: follower.sync() == 2, timeout=15, message="the retry after the interval")
    assert output(follower.runtime) == pytest.approx(2.0)


def test_the_served_version_is_kept_when_it_is_the_last_known_good(follower, store, redis_client):
    store.publish(weights(1.0), fence=(1, 1))
    assert follower.sync() == 1
    swaps = counter("omnimind_model_swaps_total", node_id=context.node_id())
    fallbacks = counter("omnimind_model_fallbacks_total")
    store.publish(weights(2.0), fence=(1, 2))
    corrupt(redis_client, 2)
    assert follower.sync() == 1
    assert counter("omnimind_model_swaps_total", node_id=context.node_id()) == swaps  # nothing reloaded
    assert counter("omnimind_model_fallbacks_total") == fallbacks + 1


def test_nothing_valid_keeps_what_it_serves(follower, store, redis_client, caplog):
    store.publish(weights(1.0), fence=(1, 1))
    corrupt(redis_client, 1)
    fallbacks = counter("omnimind_model_fallbacks_total")
    with caplog.at_level(logging.ERROR, logger="workers.model_sync"):
        assert follower.sync() == 0
    assert counter("omnimind_model_fallbacks_total") == fallbacks
    assert any("no older version loads either: still serving v0" in r.getMessage() for r in caplog.records)


def test_after_a_rollback_to_a_version_that_no_longer_loads_every_worker_lands_on_the_same_one(
        follower, store, redis_client):
    for version in (1, 2, 3):
        store.publish(weights(float(version)), fence=(1, version))
    assert follower.sync() == 3
    store.rollback(2, fence=(1, 3))
    corrupt(redis_client, 2)  # damaged after the rollback was verified
    late = ModelFollower(ModelRuntime(Settings(device="cpu")), store, poll_interval=0.1)
    assert follower.sync() == late.sync() == 1  # not v3 on one and v1 on the other
