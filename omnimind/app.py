"""The Celery app: capability queues, routes, reliability and JSON-only transport.

Queues are capabilities. A worker consuming ``inference`` serves predictions, one
consuming ``training`` learns; ``worker_direct`` adds a queue per worker so the
load balancer can address one node when a request names hardware.

Each capability queue is bound to a direct exchange of its own name with its own
name as routing key, and to nothing else: a message published to the
``training`` exchange (a raw kombu or AMQP producer) reaches training workers
only. (Celery's default would bind every queue to the ``inference`` exchange
with the routing key ``inference``.)

>>> from omnimind.app import app
>>> app.conf.accept_content, app.conf.task_acks_late, app.conf.worker_prefetch_multiplier
(['json'], True, 1)
>>> app.amqp.router.route({}, "tasks.inference.predict")["queue"].name
'inference'
>>> [(q.name, q.exchange.name, q.routing_key) for q in app.conf.task_queues][1]
('training', 'training', 'training')
"""
from __future__ import annotations

import importlib
import time

from celery import Celery
from celery.signals import before_task_publish, import_modules
from click import Option
from kombu import Exchange, Queue

from omnimind.config import QUEUES, is_amqp_url, settings
from omnimind.reconnect import backend_always_retry, backend_retry_policy, broker_max_retries, broker_options
from omnimind.redelivery import transport_for
from omnimind.sentinel import transport_options


def capability_queues(broker_url: str) -> list[Queue]:
    """The capability queues, each bound to a direct exchange of its own name.

    On RabbitMQ they are quorum queues (replicated, durable; Celery then turns off
    global QoS by itself, ``worker_detect_quorum_queues``). ``worker_direct``'s
    ``.dq2`` queues get the vhost's default type (Celery declares them untyped);
    pidbox and event queues stay classic. RabbitMQ refuses a queue re-declared with
    another type: a stock Celery client (no ``x-queue-type``) can send to the farm on
    a vhost whose default queue type is quorum, or with
    ``task_create_missing_queue_type="quorum"`` (``omnimind.queue_types``).

    >>> [q.queue_arguments for q in capability_queues("amqp://guest@rabbit//")][0]
    {'x-queue-type': 'quorum'}
    >>> {q.queue_arguments for q in capability_queues("redis://127.0.0.1:6379/0")}
    {None}
    """
    arguments = {"x-queue-type": "quorum"} if is_amqp_url(broker_url) else None
    return [Queue(name, Exchange(name, type="direct"), routing_key=name, queue_arguments=arguments) for name in QUEUES]


# TimeLimitedTask: soft/hard limits enforced in solo and threads pools too.
# omnimind.reconnect:AMQP: connections that retry at most OMNIMIND_RECONNECT_INTERVAL apart.
app = Celery("omnimind", task_cls="workers.time_limits:TimeLimitedTask", amqp="omnimind.reconnect:AMQP", include=[f"tasks.{queue}" for queue in ("inference", "training", "memory", "agents")])

app.conf.update(
    broker_url=settings.broker_url,
    # redis:// (and sentinel://): kombu's transport plus a record of which worker holds each
    # unacked message, so a dead worker's messages come back in seconds (omnimind.redelivery).
    broker_transport=transport_for(settings.broker_url),
    result_backend=settings.result_backend,
    # Only JSON crosses the broker: a pickled message is refused by the worker.
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    # One exchange and routing key per capability (see above); worker_direct's
    # per-worker queues keep Celery's own exchange (C.dq2, routing key = node name).
    # Quorum queues on RabbitMQ (capability_queues). No task is sent with an ETA or
    # countdown: with quorum queues and direct exchanges a worker would hold it unacked,
    # its prefetch slot taken, until it is due (Celery's native delayed delivery needs
    # topic exchanges).
    task_queues=capability_queues(settings.broker_url),
    task_default_queue="inference",
    task_default_exchange="inference",
    task_default_routing_key="inference",
    task_routes={f"tasks.{name}.*": {"queue": name} for name in QUEUES},
    worker_direct=True,
    # At-least-once: ack after the task ran, requeue if the worker process dies,
    # and take one message at a time so a busy worker does not hoard work.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_cancel_long_running_tasks_on_connection_loss=True,
    broker_connection_retry_on_startup=True,
    # A lost broker is tried again at once, then every OMNIMIND_RECONNECT_INTERVAL (0.5 s)
    # at most, for about as long in all as Celery's defaults (omnimind.reconnect).
    broker_connection_max_retries=broker_max_retries(settings.reconnect_interval),
    broker_transport_options={
        **broker_options(settings.reconnect_interval),
        "visibility_timeout": settings.visibility_timeout,
        # kombu sweeps for messages of dead workers every interval*throttle seconds
        # (100 s by default); make the interval the only knob.
        "unacked_restore_interval": settings.restore_interval,
        "unacked_restore_throttle": 1,
        # Redis: wake on keyspace events, so any producer's message is taken at once (omnimind.redelivery).
        "keyspace_wake": settings.broker_keyspace_wake,
        # sentinel://: the master's name (omnimind.sentinel).
        **transport_options(settings.broker_url, settings.sentinel_master),
    },
    result_backend_transport_options={
        "visibility_timeout": settings.visibility_timeout,
        "retry_policy": backend_retry_policy(settings.reconnect_interval),
        **transport_options(settings.result_backend, settings.sentinel_master),
    },
    **backend_always_retry(settings.reconnect_interval),
    result_expires=settings.result_expires,
    result_extended=False,
    worker_send_task_events=settings.task_events,
    task_send_sent_event=settings.task_events,
    worker_hijack_root_logger=False,
    # Run by the Raft leader only (workers/raft.py), never by a separate `celery beat`.
    beat_schedule={
        "retrain": {"task": "tasks.training.retrain", "schedule": settings.retrain_interval},
    },
)

# Worker-side wiring, through Celery's extension points and without importing
# ``workers`` here: the bootsteps by name (a worker imports them as it builds its
# blueprint), its command-line options, and the modules that connect worker signal
# handlers, imported when a worker loads its task modules (``import_modules``, sent
# before ``celeryd_init`` and logging set-up).
WORKER_STEPS = (
    "workers.observability:MetricsServerStep",
    "workers.bootsteps:RegistryStep",
    "workers.redelivery:RedeliveryStep",  # a no-op unless the broker is Redis
    "workers.vhost_check:VhostCheckStep",  # a no-op unless the broker is RabbitMQ
    "workers.bootsteps:ModelWarmupStep",
    "workers.memory:MemoryLockStep",  # embedded vector memory: one process
    "workers.bootsteps:LearnerStep",
    "workers.raft:RaftStep",  # a no-op unless --raft-id is given
    "workers.time_limits:TimeLimitStep",  # a no-op under prefork
)
#: Readiness (/readyz) follows the consumer blueprint: started once it consumes, stopped on a restart.
CONSUMER_STEPS = ("workers.health:ConsumingStep",)
WORKER_SIGNAL_MODULES = ("workers.observability", "workers.signals")

app.steps["worker"].update(WORKER_STEPS)
app.steps["consumer"].update(CONSUMER_STEPS)
app.user_options["worker"].update([
    Option(["--metrics-port"], type=int, default=None,
           help="Serve Prometheus /metrics on this port (0: off). Default: $OMNIMIND_METRICS_PORT."),
    Option(["--raft-id"], default=None, help="Join the Raft coordinator group as this member id. Default: $OMNIMIND_RAFT_ID."),
    Option(["--raft-peers"], default=None,
           help="Every member as id=host:port,... (this one included). Default: $OMNIMIND_RAFT_PEERS."),
    Option(["--raft-data-dir"], default=None, help="Where term, vote and log are kept. Default: $OMNIMIND_RAFT_DATA_DIR."),
])


@import_modules.connect(weak=False, dispatch_uid="omnimind.worker_signal_modules")
def _import_worker_signal_modules(sender=None, **_):
    if sender is app:
        for module in WORKER_SIGNAL_MODULES:
            importlib.import_module(module)


@before_task_publish.connect(weak=False, dispatch_uid="omnimind.sent_at")
def _stamp_sent_at(headers=None, **_):
    # Lets the worker measure queue wait (publish -> start) per queue.
    if headers is not None:
        headers.setdefault("omnimind_sent_at", time.time())
