"""Fixtures of the model store's tests."""
import pytest

from omnimind.models.store import ModelStore


@pytest.fixture
def store(redis_client):
    return ModelStore(redis_client, "default", keep_versions=10, producer="test-node")
