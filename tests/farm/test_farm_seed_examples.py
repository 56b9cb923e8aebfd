"""The design notes' cluster examples, unchanged but for ``omnimind.`` imports."""
import pytest

from omnimind.scaling import ClusterLoadBalancer, ServiceRegistry, WorkloadType


class TestClusterIntegration:
    @pytest.mark.asyncio
    async def test_node_registration_and_discovery(self):
        registry = ServiceRegistry()

        await registry.register_node("node-1", "192.168.1.10", 8000, ["inference"])
        await registry.register_node("node-2", "192.168.1.11", 8000, ["memory"])
        await registry.register_node("node-3", "192.168.1.12", 8000, ["inference", "memory"])

        inference_nodes = registry.discover_service("inference")
        assert len(inference_nodes) == 2

        memory_nodes = registry.discover_service("memory")
        assert len(memory_nodes) == 2

    @pytest.mark.asyncio
    async def test_load_balancing(self):
        registry = ServiceRegistry()
        balancer = ClusterLoadBalancer(registry)

        await registry.register_node("node-1", "192.168.1.10", 8000, ["inference"])
        await registry.register_node("node-2", "192.168.1.11", 8000, ["inference"])

        registry.nodes["node-1"].load_factor = 0.8
        registry.nodes["node-2"].load_factor = 0.2

        selections = {}
        for _ in range(100):
            node = await balancer.select_node(WorkloadType.INFERENCE, {})
            selections[node.node_id] = selections.get(node.node_id, 0) + 1

        assert selections["node-2"] > selections["node-1"]


async def test_registry_usage_example():
    """Part 1.2's usage example."""
    registry = ServiceRegistry()
    await registry.register_node(
        node_id="node-1", ip_address="192.168.1.10", port=8000, capabilities=["orchestration", "inference", "consensus"]
    )
    await registry.register_node(
        node_id="node-2", ip_address="192.168.1.11", port=8000, capabilities=["inference", "agents"]
    )
    inference_nodes = registry.discover_service("inference")
    assert len(inference_nodes) == 2
    balancer = ClusterLoadBalancer(registry)
    node = await balancer.select_node(workload_type=WorkloadType.INFERENCE, requirements={"needs_gpu": True, "min_vram_gb": 2.0})
    # Neither node reported a GPU, so no node meets the requirement.
    assert node is None
