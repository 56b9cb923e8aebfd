"""Cluster membership, load balancing and coordination."""
from omnimind.scaling.balancer import ClusterLoadBalancer, NodeMetrics, WorkloadType
from omnimind.scaling.node import NodeInfo, NodeStatus
from omnimind.scaling.raft import LogEntry, NodeState, RaftNode
from omnimind.scaling.registry import ServiceRegistry
from omnimind.scaling.replicator import StateReplicator

__all__ = [
    "ClusterLoadBalancer",
    "LogEntry",
    "NodeState",
    "RaftNode",
    "StateReplicator",
    "NodeInfo",
    "NodeMetrics",
    "NodeStatus",
    "ServiceRegistry",
    "WorkloadType",
]
