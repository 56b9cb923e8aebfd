"""Per-worker facts that task code and signal handlers need.

Set once by the bootsteps in the worker's main process *before* the pool
starts, so prefork children inherit them through fork.
"""
from __future__ import annotations

import multiprocessing
import socket
import time
from dataclasses import dataclass, field

from omnimind.observability import logging as log_format


class LatencyTracker:
    """Exponentially weighted mean task latency, shared with forked children.

    >>> t = LatencyTracker(alpha=0.5)
    >>> t.observe(0.010); t.observe(0.020)
    >>> round(t.mean_ms, 3)
    15.0
    """

    def __init__(self, alpha: float = 0.2) -> None:
        self.alpha = alpha
        # [mean seconds, samples] in shared memory: prefork children write it,
        # the heartbeat thread in the parent reads it.
        self._shared = multiprocessing.Array("d", 2)

    def observe(self, seconds: float) -> None:
        with self._shared.get_lock():
            mean, count = self._shared[0], self._shared[1]
            self._shared[0] = seconds if count == 0 else mean + self.alpha * (seconds - mean)
            self._shared[1] = count + 1

    @property
    def mean_ms(self) -> float:
        return self._shared[0] * 1000.0


@dataclass
class WorkerContext:
    node_id: str
    hostname: str
    capabilities: list[str]
    latency: LatencyTracker = field(default_factory=LatencyTracker)
    started_at: float = field(default_factory=time.time)


_context: WorkerContext | None = None


def set_context(context: WorkerContext) -> None:
    global _context
    _context = context
    log_format.set_node_id_source(node_id)


def current() -> WorkerContext | None:
    return _context


def node_id() -> str:
    """This worker's registry id; outside a worker, the host name."""
    return _context.node_id if _context is not None else socket.gethostname()
