"""``/healthz`` and ``/readyz`` on a real worker's metrics port (issue 13 item 4): alive at
once; ready only once it serves the active model version and while its consumer consumes."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from omnimind import keys
from omnimind.models.factory import build_model
from omnimind.models.store import ModelStore
from tests.helpers import free_port, wait_until


def get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def readyz_is(port: int, code: int):
    def check():
        status, body = get(port, "/readyz")
        return body if status == code else None

    return check


@pytest.mark.parametrize("pool", ["threads", "prefork"])  # prefork: the model is loaded in each pool child
def test_healthz_at_once_readyz_follows_model_and_consumer(start_worker, redis_client, redis_server, pool):
    from omnimind.config import settings

    # The active version v1 is damaged before the worker starts: it refuses it and serves v0,
    # which is not the active version, so it is alive but not ready.
    store = ModelStore(redis_client)
    state = build_model(settings).state_dict()
    store.publish(state, fence=(1, 1))
    redis_client.set(keys.model_blob("default", 1), b"garbage" * 10)
    port = free_port()
    worker = start_worker("health", pool=pool, OMNIMIND_METRICS_PORT=port, OMNIMIND_HEARTBEAT_INTERVAL=0.2)

    status, body = get(port, "/healthz")
    assert status == 200 and body["alive"] is True and body["pid"] == worker.pid
    body = wait_until(readyz_is(port, 503), timeout=10, message="/readyz 503 while v1 is refused")
    assert body["ready"] is False and body["checks"]["model"]["ok"] is False, body
    assert "active version" in body["checks"]["model"]["reason"]
    assert body["checks"]["consumer"]["ok"] is True and "inference" in body["checks"]["consumer"]["queues"], body
    assert "raft" not in body["checks"]

    # A good v2: the worker swaps to it and is ready.
    store.publish(state, fence=(1, 2))
    body = wait_until(readyz_is(port, 200), timeout=30, message="/readyz 200 on v2")
    assert body["checks"]["model"] == {"ok": True, "version": 2}, body

    # Redis (the broker) goes: the consumer stops consuming, so not ready; still alive.
    redis_server.stop()
    try:
        body = wait_until(readyz_is(port, 503), timeout=15, message="/readyz 503 without the broker")
        assert body["checks"]["consumer"]["ok"] is False, body
        assert get(port, "/healthz")[0] == 200
    finally:
        redis_server.start()
    # Back (an empty Redis: nothing published, so whatever it serves is current).
    body = wait_until(readyz_is(port, 200), timeout=30, message="/readyz 200 after Redis is back")
    assert body["checks"]["consumer"]["ok"] is True
    # /metrics is still there, on the same port.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert b"omnimind_model_at_active" in response.read()
