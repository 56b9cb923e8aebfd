"""ClusterLoadBalancer and ServiceRegistry without Redis."""
import asyncio
import random
from collections import Counter

import pytest

from omnimind.scaling import ClusterLoadBalancer, NodeStatus, ServiceRegistry, WorkloadType
from omnimind.scaling.registry_store import MemoryRegistryStore

GPU = {"gpu": {"name": "NVIDIA H100", "total_gb": 80.0, "free_gb": 60.0}}
SMALL_GPU = {"gpu": {"name": "GTX 1650", "total_gb": 4.0, "free_gb": 0.8}}


def farm(*nodes, clock=None):
    registry = ServiceRegistry(MemoryRegistryStore(clock=clock) if clock else None, heartbeat_interval=2.0)
    for node_id, capabilities, hardware in nodes:
        asyncio.run(registry.register_node(node_id, "10.0.0.1", 0, capabilities, hardware=hardware))
    return registry


def picks(balancer, workload, requirements, n=400):
    return Counter(asyncio.run(balancer.select_node(workload, requirements)).node_id for _ in range(n))


def test_requirements_filter_nodes():
    registry = farm(("cpu", ["inference"], {}), ("big", ["inference"], GPU), ("small", ["inference"], SMALL_GPU),
                    ("mem", ["memory"], {}))
    balancer = ClusterLoadBalancer(registry, rng=random.Random(1))
    assert set(picks(balancer, WorkloadType.INFERENCE, {"needs_gpu": True})) == {"big", "small"}
    assert set(picks(balancer, WorkloadType.INFERENCE, {"min_vram_gb": 2.0})) == {"big"}
    assert set(picks(balancer, WorkloadType.INFERENCE, {"node_id": "cpu"})) == {"cpu"}
    assert set(picks(balancer, WorkloadType.MEMORY_OPS, {})) == {"mem"}
    assert asyncio.run(balancer.select_node(WorkloadType.INFERENCE, {"min_vram_gb": 100})) is None
    assert asyncio.run(balancer.select_node(WorkloadType.TRAINING, {})) is None
    with pytest.raises(ValueError, match="unknown requirement"):
        asyncio.run(balancer.select_node(WorkloadType.INFERENCE, {"needs_gpus": True}))


def test_equal_nodes_share_the_work():
    registry = farm(*[(f"n{i}", ["inference"], {}) for i in range(4)])
    counts = picks(ClusterLoadBalancer(registry, rng=random.Random(3)), WorkloadType.INFERENCE, {}, n=2000)
    assert set(counts) == {"n0", "n1", "n2", "n3"}
    assert all(380 <= c <= 620 for c in counts.values()), counts  # 500 expected each


def test_lighter_and_faster_nodes_are_preferred_but_not_exclusively():
    registry = farm(("busy", ["inference"], {}), ("idle", ["inference"], {}), ("slow", ["inference"], {}))
    registry.nodes["busy"].load_factor = 0.7
    registry.nodes["slow"].latency_ms = 300.0
    counts = picks(ClusterLoadBalancer(registry, rng=random.Random(5)), WorkloadType.INFERENCE, {}, n=3000)
    assert counts["idle"] > counts["busy"] and counts["idle"] > counts["slow"]
    assert counts["busy"] > 0 and counts["slow"] > 0


def test_gpu_bonus_only_when_a_gpu_is_needed():
    registry = farm(("big", ["inference"], GPU), ("small", ["inference"], SMALL_GPU))
    counts = picks(ClusterLoadBalancer(registry, rng=random.Random(7)), WorkloadType.INFERENCE, {"needs_gpu": True}, 3000)
    assert counts["big"] > counts["small"]  # 1.5x bonus for > 1 GB free VRAM


def test_health_follows_heartbeats_and_degraded_nodes_are_a_fallback():
    now = [1000.0]
    registry = farm(("a", ["inference"], {}), ("b", ["inference"], {}), clock=lambda: now[0])
    balancer = ClusterLoadBalancer(registry, rng=random.Random(0), refresh_interval=0)
    now[0] += 3.5  # both heartbeats late (interval 2 s)
    asyncio.run(registry.heartbeat("a", 0.1))
    asyncio.run(registry.refresh())
    assert registry.nodes["a"].status is NodeStatus.HEALTHY and registry.nodes["b"].status is NodeStatus.DEGRADED
    assert set(picks(balancer, WorkloadType.INFERENCE, {}, 50)) == {"a"}
    now[0] += 7.0  # a missed 3 heartbeats; b too
    asyncio.run(registry.heartbeat("b", 0.95))  # b answers, but fully loaded
    asyncio.run(registry.refresh())
    assert registry.nodes["a"].status is NodeStatus.UNREACHABLE and registry.nodes["b"].status is NodeStatus.DEGRADED
    # No healthy node: the degraded one still serves; the unreachable one never does.
    assert set(picks(balancer, WorkloadType.INFERENCE, {}, 50)) == {"b"}
    asyncio.run(registry.deregister_node("b"))
    assert asyncio.run(balancer.select_node(WorkloadType.INFERENCE, {})) is None
