"""A registry store in a dict, for a single process and for tests."""
from __future__ import annotations

import time
from typing import Any, Callable

from omnimind.scaling.node_info import NodeInfo, from_timestamp
from omnimind.scaling.registry_store.base import RegistryStore


class MemoryRegistryStore(RegistryStore):
    """Keeps the live ``NodeInfo`` objects; ``clock`` is injectable for tests.

    >>> now = [100.0]
    >>> store = MemoryRegistryStore(clock=lambda: now[0])
    >>> _ = store.register(NodeInfo("n1", "10.0.0.1", 8000, ["inference"]))
    >>> now[0] = 103.0
    >>> store.heartbeat("n1", load_factor=0.5, latency_ms=2.0)
    True
    >>> store.snapshot()[1][0].last_heartbeat.timestamp()
    103.0
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._nodes: dict[str, NodeInfo] = {}

    def register(self, record: NodeInfo) -> NodeInfo:
        record.registered_at = record.last_heartbeat = from_timestamp(self.clock())
        self._nodes[record.node_id] = record
        return record

    def heartbeat(self, node_id: str, load_factor: float, latency_ms: float, hardware: dict[str, Any] | None = None,
                  queue_load: dict[str, dict[str, int]] | None = None) -> bool:
        node = self._nodes.get(node_id)
        if node is None:
            return False
        node.last_heartbeat = from_timestamp(self.clock())
        node.load_factor = load_factor
        node.latency_ms = latency_ms
        if hardware is not None:
            node.hardware = hardware
        if queue_load is not None:
            node.queue_load = queue_load
        return True

    def deregister(self, node_id: str) -> None:
        self._nodes.pop(node_id, None)

    def snapshot(self) -> tuple[float, list[NodeInfo]]:
        # The live objects: a caller's edits (e.g. a test setting load_factor) stick.
        return self.clock(), list(self._nodes.values())
