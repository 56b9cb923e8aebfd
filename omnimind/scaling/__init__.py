"""Cluster membership, load balancing and coordination.

The names below are imported on first access (PEP 562): importing a submodule (the pure
Raft core, say) loads neither the balancer nor the Redis registry.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ClusterLoadBalancer": "omnimind.scaling.balancer",
    "NodeMetrics": "omnimind.scaling.balancer",
    "WorkloadType": "omnimind.scaling.balancer",
    "NodeInfo": "omnimind.scaling.node_info",
    "NodeStatus": "omnimind.scaling.node_info",
    "LogEntry": "omnimind.scaling.raft",
    "NodeState": "omnimind.scaling.raft",
    "RaftNode": "omnimind.scaling.raft",
    "ServiceRegistry": "omnimind.scaling.registry",
    "StateReplicator": "omnimind.scaling.replicator",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
