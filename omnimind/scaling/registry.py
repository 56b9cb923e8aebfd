"""The node registry: which nodes exist, what they can do, and how healthy they are.

``ServiceRegistry()`` keeps nodes in memory, as in the design notes; the farm
passes a ``RedisRegistryStore`` so every worker's heartbeat is visible to every
client. ``refresh()`` re-reads the store and judges health from heartbeat age
and load.

>>> import asyncio
>>> registry = ServiceRegistry()
>>> _ = asyncio.run(registry.register_node("node-1", "192.168.1.10", 8000, ["inference", "consensus"]))
>>> [n.node_id for n in registry.discover_service("inference")]
['node-1']
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List

from omnimind.scaling.node_info import NodeInfo, NodeStatus, judge_status
from omnimind.scaling.registry_store import MemoryRegistryStore, RedisRegistryStore, RegistryStore

logger = logging.getLogger(__name__)


class ServiceRegistry:
    """Registry of cluster nodes, indexed by capability.

    Hyperparameters: ``heartbeat_interval`` (seconds between a node's heartbeats)
    and ``degraded_load`` (load factor at which a node counts as DEGRADED).
    """

    def __init__(
        self,
        store: RegistryStore | None = None,
        heartbeat_interval: float = 2.0,
        degraded_load: float = 0.9,
    ) -> None:
        self.store = store if store is not None else MemoryRegistryStore()
        self.heartbeat_interval = heartbeat_interval
        self.degraded_load = degraded_load
        self.nodes: Dict[str, NodeInfo] = {}
        self.capability_index: Dict[str, List[str]] = {}

    @classmethod
    def from_settings(cls, settings, client=None) -> "ServiceRegistry":
        """A registry backed by the farm's Redis."""
        from omnimind.redis_client import redis_client

        client = client if client is not None else redis_client(settings.redis_url, settings.sentinel_master)
        store = RedisRegistryStore(client, expire_after=max(60.0, 30 * settings.heartbeat_interval))
        return cls(store, heartbeat_interval=settings.heartbeat_interval, degraded_load=settings.degraded_load)

    async def register_node(
        self,
        node_id: str,
        ip_address: str,
        port: int,
        capabilities: List[str],
        hardware: Dict[str, Any] | None = None,
        concurrency: int = 1,
        pid: int | None = None,
        hostname: str = "",
    ) -> NodeInfo:
        """Register (or re-register) a node and index it by capability."""
        node = self.store.register(
            NodeInfo(
                node_id=node_id,
                ip_address=ip_address,
                port=port,
                capabilities=list(capabilities),
                hardware=dict(hardware or {}),
                concurrency=max(1, int(concurrency)),
                pid=pid,
                hostname=hostname or node_id,
            )
        )
        self._index(node)
        logger.info("Node %s registered with %d capabilities", node_id, len(capabilities))
        return node

    async def heartbeat(
        self, node_id: str, load_factor: float, latency_ms: float = 0.0, hardware: Dict[str, Any] | None = None
    ) -> bool:
        """Record a heartbeat; False if the node must register again."""
        return self.store.heartbeat(node_id, load_factor, latency_ms, hardware)

    async def deregister_node(self, node_id: str) -> None:
        self.store.deregister(node_id)
        self._unindex(node_id)
        logger.info("Node %s deregistered", node_id)

    async def refresh(self) -> Dict[str, NodeInfo]:
        """Re-read every node from the store and judge its health now."""
        now, nodes = self.store.snapshot()
        for node in nodes:
            age = now - node.last_heartbeat.timestamp()
            node.status = judge_status(age, node.load_factor, self.heartbeat_interval, self.degraded_load)
        self.nodes = {}
        self.capability_index = {}
        for node in nodes:
            self._index(node)
        return self.nodes

    def discover_service(self, capability: str) -> List[NodeInfo]:
        """HEALTHY nodes that have ``capability``."""
        return self.candidates(capability, NodeStatus.HEALTHY)

    def candidates(self, capability: str, *statuses: NodeStatus) -> List[NodeInfo]:
        """Nodes with ``capability`` whose status is one of ``statuses``."""
        wanted = set(statuses)
        return [
            self.nodes[node_id]
            for node_id in self.capability_index.get(capability, [])
            if self.nodes[node_id].status in wanted
        ]

    def _index(self, node: NodeInfo) -> None:
        self._unindex(node.node_id)
        self.nodes[node.node_id] = node
        for capability in node.capabilities:
            self.capability_index.setdefault(capability, []).append(node.node_id)

    def _unindex(self, node_id: str) -> None:
        if self.nodes.pop(node_id, None) is None:
            return
        for members in self.capability_index.values():
            if node_id in members:
                members.remove(node_id)
