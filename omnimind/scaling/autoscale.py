"""The autoscaling signal, per capability queue: backlog and utilisation.

* **backlog** = queued + reserved: tasks nobody has started yet — waiting in the
  broker, or prefetched by a worker that has no free slot for them;
* **utilisation** = (active + reserved) / capacity, where capacity is the
  concurrency of the live workers consuming the queue (a worker consuming
  several queues counts its whole concurrency towards each: the slots are
  shared). Over 1 means tasks wait inside workers; 0 when no worker consumes it.

Queue depths come from the broker (``omnimind.queue_depths``); reserved
and active counts and concurrency from each worker's registry heartbeat
(:func:`worker_queue_load`, ``NodeInfo.queue_load``). Workers export the result
as ``omnimind_queue_backlog`` / ``omnimind_queue_utilisation`` /
``omnimind_queue_capacity`` (label ``queue``), ``omnimind status --json`` as
``scaling``. KEDA scales on the backlog (``ops/deploy/k8s/keda-scaledobject.yaml``).

>>> from omnimind.scaling.node_info import NodeInfo
>>> a = NodeInfo("a@h", "10.0.0.1", 9101, ["inference"], concurrency=2,
...              queue_load={"inference": {"reserved": 3, "active": 2}})
>>> signal = queue_signals({"inference": 5, "training": 0}, [a])["inference"]
>>> signal.backlog, signal.utilisation, signal.as_dict()["capacity"]
(8, 2.5, 2)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Mapping

from omnimind.scaling.node_info import NodeInfo, NodeStatus

__all__ = ["QueueSignal", "queue_signals", "worker_queue_load"]


@dataclass(frozen=True)
class QueueSignal:
    """One capability queue's load.

    >>> QueueSignal("inference", queued=4, reserved=1, active=2, capacity=4).utilisation
    0.75
    >>> QueueSignal("agents", queued=3, reserved=0, active=0, capacity=0).utilisation
    0.0
    """

    queue: str
    queued: int
    reserved: int
    active: int
    capacity: int

    @property
    def backlog(self) -> int:
        return self.queued + self.reserved

    @property
    def utilisation(self) -> float:
        return (self.active + self.reserved) / self.capacity if self.capacity > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "backlog": self.backlog, "utilisation": round(self.utilisation, 4)}


def queue_signals(depths: Mapping[str, int], nodes: Iterable[NodeInfo]) -> dict[str, QueueSignal]:
    """Per queue of ``depths``: the broker's depth plus what live (not UNREACHABLE) nodes
    consuming it hold and how many slots they have.

    >>> from omnimind.scaling.node_info import NodeInfo, NodeStatus
    >>> gone = NodeInfo("b@h", "10.0.0.2", 0, ["inference"], status=NodeStatus.UNREACHABLE, concurrency=8,
    ...                 queue_load={"inference": {"reserved": 1, "active": 8}})
    >>> queue_signals({"inference": 2}, [gone])["inference"].as_dict()
    {'queue': 'inference', 'queued': 2, 'reserved': 0, 'active': 0, 'capacity': 0, 'backlog': 2, 'utilisation': 0.0}
    """
    live = [n for n in nodes if n.status != NodeStatus.UNREACHABLE]
    signals = {}
    for queue, depth in depths.items():
        reserved = active = capacity = 0
        for node in live:
            if queue not in node.capabilities:
                continue
            capacity += max(1, int(node.concurrency or 1))
            load = node.queue_load.get(queue) or {}
            reserved += int(load.get("reserved") or 0)
            active += int(load.get("active") or 0)
        signals[queue] = QueueSignal(queue, int(depth), reserved, active, capacity)
    return signals


def worker_queue_load(reserved: Iterable[str | None], active: Iterable[str | None],
                      queues: Iterable[str]) -> dict[str, dict[str, int]]:
    """One worker's counts per capability queue, from the queue names (routing keys) of its
    reserved requests (Celery's ``reserved_requests``, which include the active ones) and of
    its active requests: ``reserved`` counts the ones not started yet. Other queues (the
    worker's direct queue) are left out.

    >>> worker_queue_load(["inference", "inference", "inference", "w@h.dq2"], ["inference"], ["inference", "memory"])
    {'inference': {'reserved': 2, 'active': 1}, 'memory': {'reserved': 0, 'active': 0}}
    """
    out = {q: {"reserved": 0, "active": 0} for q in queues}
    for name in reserved:
        if name in out:
            out[name]["reserved"] += 1
    for name in active:
        if name in out:
            out[name]["active"] += 1
            out[name]["reserved"] -= 1
    for counts in out.values():
        counts["reserved"] = max(0, counts["reserved"])
    return out
