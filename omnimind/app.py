"""The Celery app: capability queues, routes, reliability and JSON-only transport.

Queues are capabilities. A worker consuming ``inference`` serves predictions, one
consuming ``training`` learns; ``worker_direct`` adds a queue per worker so the
load balancer can address one node when a request names hardware.

Each capability queue is bound to a direct exchange of its own name with its own
name as routing key, and to nothing else: a message published to the
``training`` exchange (a raw kombu or AMQP producer) reaches training workers
only. (Celery's default would bind every queue to the ``inference`` exchange
with the routing key ``inference``.)

Importing this module builds nothing and reads no environment: the app is built
on first use (``get_app()``, or the attribute ``app``, PEP 562), from
``omnimind.config.get_settings()``, as Celery's own ``celery/__init__.py`` and
dramatiq's ``get_broker()`` defer theirs. Task modules declare their tasks with
:func:`task`, which registers them with the app when it is built.

>>> from omnimind.app import app
>>> app is get_app()
True
>>> app.conf.accept_content, app.conf.task_acks_late, app.conf.worker_prefetch_multiplier
(['json'], True, 1)
>>> app.amqp.router.route({}, "tasks.inference.predict")["queue"].name
'inference'
>>> [(q.name, q.exchange.name, q.routing_key) for q in app.conf.task_queues][1]
('training', 'training', 'training')
"""
from __future__ import annotations

import importlib
import threading
import time
from typing import Any, Callable, Mapping

from celery import Celery, Task
from celery.local import Proxy
from celery.signals import before_task_publish, import_modules
from click import Option
from kombu import Exchange, Queue

from omnimind.config import QUEUES, Settings, TimeLimit, get_settings, is_amqp_url
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


# Worker-side wiring, through Celery's extension points and without importing
# ``workers`` here: the bootsteps by name (a worker imports them as it builds its
# blueprint), its command-line options, and the modules that connect worker signal
# handlers, imported when a worker loads its task modules (``import_modules``, sent
# before ``celeryd_init`` and logging set-up); each has ``connect_worker_signals(settings)``.
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
CONSUMER_STEPS = ("workers.worker_health:ConsumingStep",)
WORKER_SIGNAL_MODULES = ("workers.observability", "workers.signals")
TASK_MODULES = tuple(f"tasks.{queue}" for queue in QUEUES)

_app: Celery | None = None
_app_lock = threading.RLock()  # re-entered: building the app may import modules that declare tasks
#: ``(function, options)`` of every :func:`task` declared so far, registered with the app when it is built.
_declared_tasks: list[tuple[Callable[..., Any], dict[str, Any]]] = []


def get_app() -> Celery:
    """The process's Celery app, built from :func:`omnimind.config.get_settings` on the first call."""
    global _app
    if _app is None:
        with _app_lock:
            if _app is None:
                _app = build_app(get_settings())
    return _app


def __getattr__(name: str) -> Any:
    # ``from omnimind.app import app`` and ``celery -A omnimind.app``: the app, built on first use.
    if name == "app":
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def task(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """Declare an OmniMind task without building the app (Celery's ``shared_task``, bound to this app).

    The task is registered with the app when the app is built (at once if it is built already); the
    returned proxy is the registered task. Its time limits are its queue's (:class:`QueueTimeLimits`).
    """
    name = options["name"]

    def declare(fun: Callable[..., Any]) -> Any:
        with _app_lock:  # else a task declared while the app is built may miss it
            _declared_tasks.append((fun, options))
            if _app is not None:
                _app.task(**options)(fun)
        return Proxy(lambda: get_app().tasks[name])

    return declare


class QueueTimeLimits:
    """A Celery task annotation: each ``tasks.<queue>.*`` task gets the soft and hard
    time limits of its queue (``OMNIMIND_<QUEUE>_[SOFT_]TIME_LIMIT``).

    >>> from celery import Task
    >>> annotation = QueueTimeLimits({"inference": TimeLimit(soft=1, hard=2)})
    >>> annotation.annotate(type("T", (Task,), {"name": "tasks.inference.predict"}))
    {'soft_time_limit': 1, 'time_limit': 2}
    >>> annotation.annotate(type("T", (Task,), {"name": "celery.ping"})) is None
    True
    """

    def __init__(self, limits: Mapping[str, TimeLimit]) -> None:
        self.limits = dict(limits)

    def annotate(self, task: type[Task]) -> dict[str, float] | None:
        prefix, _, rest = (task.name or "").partition(".")
        limit = self.limits.get(rest.partition(".")[0]) if prefix == "tasks" else None
        if limit is None:
            return None
        return {"soft_time_limit": limit.soft, "time_limit": limit.hard}


def build_app(settings: Settings) -> Celery:
    """A Celery app configured from ``settings``, with the worker's bootsteps, options and every declared task."""
    # TimeLimitedTask: soft/hard limits enforced in solo and threads pools too.
    # omnimind.reconnect:AMQP: connections that retry at most OMNIMIND_RECONNECT_INTERVAL apart.
    app = Celery("omnimind", task_cls="workers.time_limits:TimeLimitedTask", amqp="omnimind.reconnect:AMQP",
                 include=list(TASK_MODULES))
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
        # Each queue's time limits, for the tasks of that queue (workers.time_limits enforces
        # them in solo and threads pools).
        task_annotations=(QueueTimeLimits(settings.limits),),
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
    for fun, options in _declared_tasks:
        app.task(**options)(fun)
    import_modules.connect(_import_worker_signal_modules, sender=app, weak=False,
                           dispatch_uid="omnimind.worker_signal_modules")
    before_task_publish.connect(_stamp_sent_at, weak=False, dispatch_uid="omnimind.sent_at")
    return app


def _import_worker_signal_modules(sender: Celery | None = None, **_: Any) -> None:
    settings = get_settings()
    for module in WORKER_SIGNAL_MODULES:
        importlib.import_module(module).connect_worker_signals(settings)


def _stamp_sent_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    # Lets the worker measure queue wait (publish -> start) per queue.
    if headers is not None:
        headers.setdefault("omnimind_sent_at", time.time())
