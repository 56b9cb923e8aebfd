"""The storage interface behind ``ServiceRegistry``."""
from __future__ import annotations

import abc
from typing import Any

from omnimind.scaling.node_info import NodeInfo


class RegistryStore(abc.ABC):
    """Stores node records. Every method is one atomic step on the backend."""

    @abc.abstractmethod
    def register(self, record: NodeInfo) -> NodeInfo:
        """Insert or replace a node; stamps ``registered_at``/``last_heartbeat``."""

    @abc.abstractmethod
    def heartbeat(
        self, node_id: str, load_factor: float, latency_ms: float, hardware: dict[str, Any] | None = None,
        queue_load: dict[str, dict[str, int]] | None = None,
    ) -> bool:
        """Refresh a node (``queue_load``: its reserved/active counts per queue, kept when None).
        False when the store no longer knows it (re-register)."""

    @abc.abstractmethod
    def deregister(self, node_id: str) -> None:
        """Forget a node."""

    @abc.abstractmethod
    def snapshot(self) -> tuple[float, list[NodeInfo]]:
        """``(now, records)`` read at one instant of the store's clock."""
