"""``/healthz`` and ``/readyz`` in a running worker (the verdicts: ``omnimind.health``).

Facts come through Celery's extension points only:

* :class:`ConsumingStep`, a step of the *consumer* blueprint placed after its
  ``Tasks`` step: Celery starts it once the task consumer consumes, and stops
  it when the consumer stops, including every restart after a lost broker
  connection (the blueprint stops its steps, reconnects, and starts them again);
* the model: ``omnimind_model_at_active`` over the worker's multiprocess metric
  files (every pool process that serves a model records it when it syncs);
* the Raft member, through ``workers.services.coordinator()`` (set by ``RaftStep``).

The HTTP server (one thread, started by ``MetricsServerStep.start``) serves
them next to ``/metrics``.
"""
from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

from celery import bootsteps

from omnimind import health
from omnimind.observability import metrics, multiprocess
from workers import services

logger = logging.getLogger(__name__)


class ConsumerState:
    """Whether this process's Celery consumer is consuming, as :class:`ConsumingStep` saw it.

    >>> state = ConsumerState(); state.consuming, state.consumed_queues()
    (False, None)
    """

    def __init__(self) -> None:
        self.consuming = False
        self.consumer = None

    def connected(self) -> bool:
        connection = getattr(self.consumer, "connection", None)
        return connection is not None and bool(getattr(connection, "connected", True))

    def consumed_queues(self) -> list[str] | None:
        task_consumer = getattr(self.consumer, "task_consumer", None)
        if task_consumer is None:
            return None
        return sorted(q.name for q in task_consumer.queues)


#: The worker's consumer (one per worker process, in the main process).
CONSUMER = ConsumerState()


class ConsumingStep(bootsteps.StartStopStep):
    """Consumer-blueprint step: marks the consumer consuming from the moment its
    task consumer runs until the consumer stops or restarts (a lost connection).

    >>> ConsumingStep.label, ConsumingStep.requires
    ('OmniMind consuming', ('celery.worker.consumer.tasks:Tasks',))
    """

    label = "OmniMind consuming"
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, c):
        CONSUMER.consumer = c
        CONSUMER.consuming = True

    def stop(self, c):
        CONSUMER.consuming = False

    shutdown = stop


def readiness(expected_queues, serves_model: bool, raft_member: str | None, path=None) -> tuple[int, dict]:
    """``/readyz``: the checks of this worker, from the facts above."""
    checks = [health.consumer_check(CONSUMER.consuming, CONSUMER.connected(), CONSUMER.consumed_queues(),
                                    expected_queues)]
    if serves_model:
        at_active = multiprocess.samples(metrics.model_at_active._name, path)
        version = multiprocess.samples(metrics.model_version._name, path)
        checks.append(health.model_check(min(at_active.values()) if at_active else None,
                                         max(version.values()) if version else None))
    if raft_member:
        member = services.coordinator()
        node = getattr(member, "node", None)
        checks.append(health.raft_check(node.status() if node is not None else None))
    return health.readiness(checks)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # probes every few seconds: no access log
        pass


def serve(address: str, port: int, app):
    """Serve ``app`` on ``address:port`` from a daemon thread; returns the server (``shutdown()`` it)."""
    import socket

    from prometheus_client.exposition import ThreadingWSGIServer

    family, _, _, _, sockaddr = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM,
                                                   flags=socket.AI_PASSIVE)[0]

    class Server(ThreadingWSGIServer):
        address_family = family

    server = make_server(sockaddr[0], port, app, Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="omnimind-metrics-http", daemon=True).start()
    return server
