"""What the cluster knows about one node, and how its health is judged."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any


class NodeStatus(Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNREACHABLE = "unreachable"


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class NodeInfo:
    """One node of the cluster (the seed's fields first, then what the farm adds).

    ``last_heartbeat`` is on the registry store's clock (the Redis server's in a
    farm). ``hardware`` holds ``cpu_count``, ``memory_gb`` and, on GPU nodes,
    ``gpu`` = ``{"name", "total_gb", "free_gb"}``.

    >>> n = NodeInfo("n1", "10.0.0.1", 8000, ["inference"], hardware={"gpu": {"free_gb": 3.5}})
    >>> n.status, n.vram_free_gb
    (<NodeStatus.HEALTHY: 'healthy'>, 3.5)
    """

    node_id: str
    ip_address: str
    port: int
    capabilities: list[str]
    status: NodeStatus = NodeStatus.HEALTHY
    last_heartbeat: datetime = field(default_factory=_now)
    load_factor: float = 0.0
    hardware: dict[str, Any] = field(default_factory=dict)
    concurrency: int = 1
    latency_ms: float = 0.0
    pid: int | None = None
    registered_at: datetime = field(default_factory=_now)
    #: Celery node name (``name@host``); its direct queue is ``<hostname>.dq2``.
    hostname: str = ""
    #: Per capability queue, ``{"reserved": tasks prefetched not started, "active": running}``
    #: at the last heartbeat (``omnimind.scaling.autoscale``).
    queue_load: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def has_gpu(self) -> bool:
        return bool(self.hardware.get("gpu"))

    @property
    def vram_free_gb(self) -> float:
        gpu = self.hardware.get("gpu") or {}
        return float(gpu.get("free_gb", 0.0))


def judge_status(age_s: float, load_factor: float, heartbeat_interval: float, degraded_load: float) -> NodeStatus:
    """HEALTHY; DEGRADED when a heartbeat is late or load is at/over the threshold;
    UNREACHABLE after three missed heartbeats.

    >>> judge_status(1.0, 0.1, 2.0, 0.9).value, judge_status(3.5, 0.1, 2.0, 0.9).value
    ('healthy', 'degraded')
    >>> judge_status(0.5, 0.95, 2.0, 0.9).value, judge_status(6.5, 0.0, 2.0, 0.9).value
    ('degraded', 'unreachable')
    """
    if age_s > 3 * heartbeat_interval:
        return NodeStatus.UNREACHABLE
    # A heartbeat is "late" once half an interval of slack has passed.
    if age_s > 1.5 * heartbeat_interval or load_factor >= degraded_load:
        return NodeStatus.DEGRADED
    return NodeStatus.HEALTHY


def from_timestamp(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)
