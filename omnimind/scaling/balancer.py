"""Picking a node for a request that has hardware requirements.

Capability queues do most of the balancing: idle workers pull from them. A
request that needs something specific (a GPU with free memory, one named node)
goes through ``select_node`` and then to that node's direct queue.

Selection is weighted power-of-two-choices: two distinct candidates are drawn
with probability proportional to their score (the design notes' formula: free
load, VRAM bonus, latency penalty), and between them the better one wins in
proportion to its score. Unlike always taking the top score, equal nodes share
the work, and a node whose load report is a heartbeat old does not receive
every request until its next heartbeat.

>>> import asyncio
>>> registry = ServiceRegistry()
>>> for i in (1, 2):
...     _ = asyncio.run(registry.register_node(f"node-{i}", "10.0.0.%d" % i, 8000, ["inference"]))
>>> registry.nodes["node-1"].load_factor = 0.8
>>> balancer = ClusterLoadBalancer(registry, rng=random.Random(7))
>>> asyncio.run(balancer.select_node(WorkloadType.INFERENCE, {})).node_id
'node-2'
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any, Dict, List, Optional

from omnimind.errors import NoNodeAvailable
from omnimind.scaling.node_info import NodeInfo, NodeStatus
from omnimind.scaling.registry import ServiceRegistry


class WorkloadType(Enum):
    INFERENCE = "inference"
    TRAINING = "training"
    MEMORY_OPS = "memory_ops"
    AGENT_EXECUTION = "agent_execution"


#: Which capability (= queue) serves each workload.
CAPABILITY = {
    WorkloadType.INFERENCE: "inference",
    WorkloadType.TRAINING: "training",
    WorkloadType.MEMORY_OPS: "memory",
    WorkloadType.AGENT_EXECUTION: "agents",
}

#: The task a workload runs when ``submit`` is not told otherwise.
DEFAULT_TASK = {
    WorkloadType.INFERENCE: "tasks.inference.predict",
    WorkloadType.TRAINING: "tasks.training.learn",
    # Memory has several operations of equal standing: MEMORY_OPS needs task_name.
    WorkloadType.AGENT_EXECUTION: "tasks.agents.run",
}

REQUIREMENT_KEYS = frozenset({"needs_gpu", "min_vram_gb", "node_id", "capabilities"})


@dataclass
class NodeMetrics:
    """Per-node figures the score uses (the seed's names)."""

    vram_available_gb: float = 0.0
    avg_latency_ms: float = 0.0


class ClusterLoadBalancer:
    """Chooses nodes for requests with requirements; see the module docstring.

    ``refresh_interval``: seconds a registry read is reused before re-reading.
    """

    def __init__(
        self,
        registry: ServiceRegistry,
        rng: random.Random | None = None,
        refresh_interval: float = 0.5,
        app=None,
    ) -> None:
        self.registry = registry
        self.rng = rng if rng is not None else random.Random()
        self.refresh_interval = refresh_interval
        self.app = app
        self.node_metrics: Dict[str, NodeMetrics] = {}
        self._refreshed_at = float("-inf")

    async def select_node(
        self, workload_type: WorkloadType, requirements: Optional[Dict[str, Any]] = None
    ) -> Optional[NodeInfo]:
        """A node for the workload that meets ``requirements``, or None."""
        requirements = dict(requirements or {})
        unknown = set(requirements) - REQUIREMENT_KEYS
        if unknown:
            raise ValueError(f"unknown requirement(s) {sorted(unknown)}; known: {sorted(REQUIREMENT_KEYS)}")
        await self._maybe_refresh()
        capability = CAPABILITY[workload_type]
        # Prefer healthy nodes; a node DEGRADED by load (or a late heartbeat) still
        # beats refusing the request outright.
        for statuses in ((NodeStatus.HEALTHY,), (NodeStatus.DEGRADED,)):
            nodes = [n for n in self.registry.candidates(capability, *statuses) if _meets(n, requirements)]
            if nodes:
                return self._pick([(node, self._compute_node_score(node, requirements)) for node in nodes])
        return None

    async def submit(
        self,
        workload_type: WorkloadType,
        payload: Dict[str, Any],
        requirements: Optional[Dict[str, Any]] = None,
        task_name: str | None = None,
    ):
        """Send a task; returns its ``AsyncResult``.

        Without requirements it goes to the capability queue (any capable worker
        pulls it); with requirements, to the chosen node's direct queue.
        """
        from celery.utils.nodenames import worker_direct

        name = task_name or DEFAULT_TASK.get(workload_type)
        if name is None:
            raise ValueError(f"{workload_type.value} has no default task: pass task_name")
        app = self.app or _default_app()
        if not requirements:
            return app.send_task(name, kwargs=payload, queue=CAPABILITY[workload_type])
        node = await self.select_node(workload_type, requirements)
        if node is None:
            raise NoNodeAvailable(f"no {CAPABILITY[workload_type]} node meets {requirements}")
        return app.send_task(name, kwargs=payload, queue=worker_direct(node.hostname or node.node_id))

    def _compute_node_score(self, node: NodeInfo, requirements: Dict[str, Any]) -> float:
        metrics = self.node_metrics[node.node_id] = NodeMetrics(node.vram_free_gb, node.latency_ms)
        score = max(0.0, 1.0 - node.load_factor)
        if requirements.get("needs_gpu") and metrics.vram_available_gb > 1.0:
            score *= 1.5
        score *= 1.0 / (1.0 + metrics.avg_latency_ms / 100.0)
        return score

    def _pick(self, scored: List[tuple[NodeInfo, float]]) -> NodeInfo:
        if len(scored) == 1:
            return scored[0][0]
        weights = [score for _, score in scored]
        if sum(weights) <= 0:
            weights = [1.0] * len(scored)
        first = self.rng.choices(range(len(scored)), weights=weights)[0]
        rest = [i for i in range(len(scored)) if i != first]
        rest_weights = [weights[i] for i in rest]
        second = self.rng.choices(rest, weights=rest_weights if sum(rest_weights) > 0 else None)[0]
        (a, score_a), (b, score_b) = scored[first], scored[second]
        # The better of the two wins in proportion to its score rather than always:
        # a lightly loaded node still gets most work, but not all of it on stale data.
        if score_a + score_b <= 0:
            return self.rng.choice((a, b))
        return a if self.rng.random() * (score_a + score_b) < score_a else b

    async def _maybe_refresh(self) -> None:
        now = time.monotonic()
        if now - self._refreshed_at >= self.refresh_interval:
            await self.registry.refresh()
            self._refreshed_at = now


def _meets(node: NodeInfo, requirements: Dict[str, Any]) -> bool:
    if requirements.get("node_id") and node.node_id != requirements["node_id"]:
        return False
    if requirements.get("needs_gpu") and not node.has_gpu:
        return False
    if "min_vram_gb" in requirements and node.vram_free_gb < float(requirements["min_vram_gb"]):
        return False
    return all(c in node.capabilities for c in requirements.get("capabilities", ()))


def _default_app():
    from omnimind.app import app

    return app
