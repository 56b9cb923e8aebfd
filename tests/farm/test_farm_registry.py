"""The Redis-backed registry as real workers see it: registration, heartbeats,
health transitions under SIGSTOP and load, deregistration, Redis restarts."""
import asyncio
import signal

import pytest

from omnimind.config import settings
from omnimind.scaling import NodeStatus, ServiceRegistry
from tests.helpers import wait_until

#: Two slow passes side by side: with batching, the second request would wait for the first
#: pass (one forward pass at a time per process) and then take its own, 6 s in all, past the
#: tests' 5.4 s soft limit. This test is about load reporting, not batching.
SLOW = {"OMNIMIND_MODEL_FACTORY": "tests.farm.slow_model:build", "OMNIMIND_TEST_SLOW_SECONDS": "3",
        "OMNIMIND_BATCHING": "0"}


@pytest.fixture
def registry(redis_client):
    return ServiceRegistry.from_settings(settings, client=redis_client)


def status_of(registry, node_id):
    nodes = asyncio.run(registry.refresh())
    return nodes[node_id].status if node_id in nodes else None


def test_registration_heartbeat_sigstop_and_deregistration(start_worker, registry):
    worker = start_worker("reg1", concurrency=3)
    nodes = asyncio.run(registry.refresh())
    node = nodes[worker.hostname]
    assert node.capabilities == ["inference"]
    assert node.hardware["cpu_count"] >= 1 and node.hardware["memory_gb"] > 0
    assert node.concurrency == 3 and node.pid == worker.pid and node.hostname == worker.hostname
    assert node.status is NodeStatus.HEALTHY
    assert [n.node_id for n in registry.discover_service("inference")] == [worker.hostname]

    first = node.last_heartbeat
    wait_until(lambda: asyncio.run(registry.refresh())[worker.hostname].last_heartbeat > first, message="a heartbeat")

    worker.signal(signal.SIGSTOP)
    try:
        wait_until(lambda: status_of(registry, worker.hostname) is NodeStatus.DEGRADED, message="DEGRADED")
        assert registry.discover_service("inference") == []
        wait_until(lambda: status_of(registry, worker.hostname) is NodeStatus.UNREACHABLE, message="UNREACHABLE")
    finally:
        worker.signal(signal.SIGCONT)
    wait_until(lambda: status_of(registry, worker.hostname) is NodeStatus.HEALTHY, message="HEALTHY again")

    assert worker.stop() == 0
    assert worker.hostname not in asyncio.run(registry.refresh())


def test_full_load_reports_degraded(start_worker, registry, celery_app):
    worker = start_worker("busy", concurrency=2, **SLOW)
    slow = [celery_app.send_task("tasks.inference.predict", kwargs={"inputs": [999.0] + [0.0] * 15}) for _ in range(2)]
    wait_until(lambda: status_of(registry, worker.hostname) is NodeStatus.DEGRADED, message="DEGRADED by load")
    assert asyncio.run(registry.refresh())[worker.hostname].load_factor >= 0.9
    for result in slow:
        result.get(timeout=30)
    wait_until(lambda: status_of(registry, worker.hostname) is NodeStatus.HEALTHY, message="HEALTHY when idle")
    assert asyncio.run(registry.refresh())[worker.hostname].latency_ms > 1000


def test_worker_rejoins_after_redis_restart(start_worker, registry, redis_server, celery_app):
    worker = start_worker("rejoin")
    redis_server.stop()
    redis_server.start()  # same port, empty: the registry record is gone
    wait_until(lambda: worker.hostname in asyncio.run(registry.refresh()), timeout=30, message="re-registration")
    result = celery_app.send_task("tasks.inference.predict", kwargs={"inputs": [0.0] * 16})
    assert result.get(timeout=60)["node_id"] == worker.hostname
