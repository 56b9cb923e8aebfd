"""Worker bootsteps: registry membership with heartbeats, and model warm-up."""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading

from celery import bootsteps
from celery.signals import worker_process_init
from celery.worker import state as worker_state

from omnimind import keys
from omnimind.config import get_settings
from omnimind.observability import metrics
from omnimind.scaling.autoscale import queue_signals, worker_queue_load
from omnimind.scaling.hardware import detect_hardware
from omnimind.scaling.node_info import NodeInfo
from omnimind.scaling.registry import ServiceRegistry
from omnimind.redis_client import redis_client
from omnimind.queue_depths import BrokerQueueDepths
from workers import batching, context, services
from workers.services import consumed_queues, is_prefork, is_threads

logger = logging.getLogger(__name__)

#: Re-read free GPU memory every this many heartbeats (nvidia-smi is not free).
HARDWARE_EVERY = 5
#: Publish cluster-wide gauges (node count, queue depths) every this many heartbeats.
CLUSTER_GAUGES_EVERY = 5


def _local_ip() -> str:
    """The address the registry advertises: OMNIMIND_METRICS_ADDRESS when it names one
    interface (a host with several, or a network namespace), else the hostname's."""
    settings = get_settings()
    if settings.metrics_address not in ("", "0.0.0.0", "::"):
        return settings.metrics_address
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


class RegistryStep(bootsteps.StartStopStep):
    """Registers the worker in the Redis registry, heartbeats from a thread of its
    own (a busy solo pool cannot starve it), and deregisters on clean shutdown."""

    label = "OmniMind registry"

    def __init__(self, worker, metrics_port=None, **kwargs):
        settings = get_settings()
        super().__init__(worker, **kwargs)
        # Advertised as the node's port: where Prometheus scrapes it.
        self.metrics_port = settings.metrics_port if metrics_port is None else metrics_port
        queues = consumed_queues(worker)
        hardware = detect_hardware()
        capabilities = queues + list(settings.extra_capabilities) + (["gpu"] if "gpu" in hardware else [])
        self.hardware = hardware
        self.context = context.WorkerContext(
            node_id=settings.node_id or worker.hostname, hostname=worker.hostname, capabilities=capabilities
        )
        # Before the pool forks, so children inherit node id and latency tracker.
        context.set_context(self.context)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker):
        settings = get_settings()
        self.registry = ServiceRegistry.from_settings(settings, client=redis_client(settings.redis_url))
        # The broker's queue depths: its Redis lists, or RabbitMQ's passive declares.
        self.broker_queues = BrokerQueueDepths(settings.broker_url)
        self.concurrency = max(1, int(worker.concurrency or 1))
        self.queues = consumed_queues(worker)
        metrics.worker_up.labels(node_id=self.context.node_id).set(1)
        self._register()
        self._thread = threading.Thread(target=self._heartbeat_loop, name="omnimind-heartbeat", daemon=True)
        self._thread.start()

    def stop(self, worker):
        settings = get_settings()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=settings.heartbeat_interval + 1)
        if getattr(self, "broker_queues", None) is not None:
            self.broker_queues.close()
        metrics.worker_up.labels(node_id=self.context.node_id).set(0)
        try:
            self.registry.store.deregister(self.context.node_id)
            logger.info("Deregistered %s", self.context.node_id)
        except Exception as exc:  # Redis gone at shutdown: the record expires by TTL.
            logger.warning("Could not deregister %s: %s", self.context.node_id, exc)

    shutdown = stop

    def _register(self) -> None:
        ctx = self.context
        self.registry.store.register(
            NodeInfo(
                node_id=ctx.node_id,
                ip_address=_local_ip(),
                port=self.metrics_port or 0,
                capabilities=ctx.capabilities,
                hardware=self.hardware,
                concurrency=self.concurrency,
                pid=os.getpid(),
                hostname=ctx.hostname,
            )
        )
        logger.info("Registered %s with capabilities %s", ctx.node_id, ctx.capabilities)

    def _heartbeat_loop(self) -> None:
        settings = get_settings()
        beats = 0
        registered = True
        while not self._stop.wait(settings.heartbeat_interval):
            beats += 1
            load = len(worker_state.active_requests) / self.concurrency
            queue_load = worker_queue_load(
                [_queue_of(r) for r in list(worker_state.reserved_requests)],
                [_queue_of(r) for r in list(worker_state.active_requests)],
                self.queues,
            )
            hardware = None
            if "gpu" in self.hardware and beats % HARDWARE_EVERY == 0:
                hardware = self.hardware = detect_hardware()
            try:
                if not registered or not self.registry.store.heartbeat(
                    self.context.node_id, load, self.context.latency.mean_ms, hardware, queue_load
                ):
                    # Unknown to the store (Redis restarted, record expired): join again.
                    self._register()
                registered = True
                metrics.worker_up.labels(node_id=self.context.node_id).set(1)
                metrics.worker_load_factor.labels(node_id=self.context.node_id).set(load)
                if beats % CLUSTER_GAUGES_EVERY == 0:
                    self._record_cluster_gauges()
            except Exception as exc:
                registered = False
                # Up means "serving": a worker that cannot reach Redis is not.
                metrics.worker_up.labels(node_id=self.context.node_id).set(0)
                logger.warning("Heartbeat of %s failed (will retry): %s", self.context.node_id, exc)

    def _record_cluster_gauges(self) -> None:
        metrics.cluster_nodes_total.set(self.registry.store.client.zcard(keys.NODES))
        depths = self.broker_queues.read()
        for queue, depth in depths.items():
            metrics.queue_length.labels(queue=queue).set(depth)
        # The autoscaling signal: the broker's depths and every live worker's heartbeat.
        nodes = asyncio.run(self.registry.refresh())
        for queue, signal in queue_signals(depths, nodes.values()).items():
            metrics.queue_backlog.labels(queue=queue).set(signal.backlog)
            metrics.queue_utilisation.labels(queue=queue).set(signal.utilisation)
            metrics.queue_capacity.labels(queue=queue).set(signal.capacity)


def _queue_of(request) -> str | None:
    """The queue a Celery request came from (its routing key: capability queues are direct)."""
    info = getattr(request, "delivery_info", None) or {}
    return info.get("routing_key")


def _serves_model() -> bool:
    ctx = context.current()
    return ctx is not None and ("inference" in ctx.capabilities or "training" in ctx.capabilities)


def warm_model() -> None:
    runtime = services.serving_runtime()
    metrics.model_version.labels(node_id=context.node_id()).set(runtime.model_version)
    logger.info("Model v%d ready on %s", runtime.model_version, runtime.device)


class ModelWarmupStep(bootsteps.StartStopStep):
    """Builds the served model before the first request.

    With solo/threads pools that is this process; with prefork it is each child,
    after the fork (``worker_process_init``), because CUDA does not survive fork.
    A threads pool also announces each predict it receives to the batcher
    (:mod:`workers.batching`).
    """

    label = "OmniMind model warm-up"
    requires = (RegistryStep,)

    def start(self, worker):
        if _serves_model() and not is_prefork(worker):
            warm_model()
            if is_threads(worker):
                batching.start(services.serving_runtime().batcher, worker.consumer)

    def stop(self, worker):
        batching.stop()
        services.stop_following()


class LearnerStep(bootsteps.StartStopStep):
    """Owns the online learner of a ``training`` worker: one learner state per
    worker, so a prefork pool of several processes is refused; the learner is
    built (resuming from its checkpoint) before the first task and
    checkpointed on shutdown."""

    label = "OmniMind learner"
    requires = (ModelWarmupStep,)

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        ctx = context.current()
        self.enabled = ctx is not None and "training" in ctx.capabilities
        if self.enabled and is_prefork(worker) and int(worker.concurrency or 1) > 1:
            raise SystemExit(
                "omnimind: the training queue keeps one online learner per worker; start it with "
                "--pool=solo (or --pool=threads), not a prefork pool of "
                f"{worker.concurrency} processes"
            )

    def start(self, worker):
        if self.enabled and not is_prefork(worker):
            services.learner()

    def stop(self, worker):
        learner = services.current_learner()
        if learner is None:
            return
        try:
            learner.checkpoint()
            logger.info("Learner checkpointed to %s", learner.checkpoint_dir)
        except Exception as exc:  # shutdown goes on; the last periodic checkpoint stays
            logger.error("Learner checkpoint at shutdown failed: %s", exc)


@worker_process_init.connect
def _warm_in_child(**_):
    if _serves_model():
        warm_model()
