"""This process's services, each built once and found here.

A worker process holds a few long-lived services that tasks, bootsteps and
signal handlers share. Each has one accessor in this module:

- :func:`serving_runtime`: the model runtime, on the store's active version and
  kept there by a :class:`workers.model_sync.ModelFollower` thread;
- :func:`learner` / :func:`current_learner`: a training worker's online learner;
- :func:`coordinator`: this worker's Raft member, if it is one;
- :func:`time_limit_watchdog`: the deadline watchdog of a worker whose pool is not
  prefork (time limits for solo and threads pools);
- :func:`is_prefork`, :func:`consumed_queues`: what the worker was started as.

Runtime and learner are built on first use, in the process that uses them: a
prefork child builds its own after the fork (CUDA does not survive one). The
model modules are imported then, not here: they pull in torch, which the CLI and
clients, which import the task class through this module, never need.

>>> class Worker:  # what Celery hands a bootstep
...     pool_cls = "celery.concurrency.prefork:TaskPool"
>>> is_prefork(Worker())
True
>>> current_learner() is None and coordinator() is None
True
"""
from __future__ import annotations

import logging
import threading

from omnimind.config import get_settings
from omnimind.deadlines import DeadlineWatchdog, shared_watchdog
from workers import context

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_follower = None  # workers.model_sync.ModelFollower of this process
_learner = None  # workers.learner.LearnerService of this process
_coordinator = None  # workers.raft_member.CoordinatorMember of this worker
_watchdog: DeadlineWatchdog | None = None


def _pool_name(worker) -> str:
    """The pool's alias (``--pool``) or its class's module (``celery.concurrency.thread``)."""
    pool = worker.pool_cls
    return pool if isinstance(pool, str) else getattr(pool, "__module__", "")


def is_prefork(worker) -> bool:
    """Whether ``worker`` runs tasks in forked children (Celery's prefork pool)."""
    return "prefork" in _pool_name(worker)


def is_threads(worker) -> bool:
    """Whether ``worker`` runs tasks in threads of its own process (Celery's threads pool)."""
    name = _pool_name(worker)
    return name in ("threads", "thread") or name.endswith(".thread")


def consumed_queues(worker) -> list[str]:
    """The capability queues this worker was started with (``-Q``)."""
    queues = worker.app.amqp.queues.consume_from or worker.app.amqp.queues
    return sorted(name for name in queues if not name.endswith(".dq2"))


def serving_runtime():
    """This process's runtime, on the active version before it serves its first
    request, with a follower thread keeping it there."""
    global _follower
    settings = get_settings()
    from omnimind.models.runtime import get_runtime  # torch: see the module docstring

    runtime = get_runtime(settings)
    follower = _follower
    if follower is not None and follower.runtime is runtime:
        return runtime
    with _lock:
        if _follower is None or _follower.runtime is not runtime:  # first use, or a new process after fork
            _follower = _start_follower(runtime)
    return runtime


def _start_follower(runtime):
    settings = get_settings()
    from omnimind.models.store import ModelStore
    from omnimind.redis_client import redis_client
    from workers.model_sync import ModelFollower

    store = ModelStore(redis_client(settings.redis_url), producer=context.node_id())
    follower = ModelFollower(runtime, store, settings.model_poll_interval, on_swap=_tell_learner,
                             max_backoff=settings.reconnect_interval)
    try:
        follower.sync()
    except Exception as exc:  # serve what we have; the follower thread catches up
        logger.warning("Could not load the active model version at start: %s", exc)
    follower.start()
    return follower


def stop_following() -> None:
    """Stop this process's follower thread (warm shutdown)."""
    if _follower is not None:
        _follower.stop()


def _tell_learner(version: int, state_dict: dict) -> None:
    if _learner is not None:
        _learner.adopt(version, state_dict)


def learner():
    """This training worker's online learner, built (resuming from its checkpoint) on first use."""
    global _learner
    settings = get_settings()
    runtime = serving_runtime()
    with _lock:
        if _learner is None:
            import torch

            from omnimind.redis_client import redis_client
            from workers.learner import LearnerService

            torch.set_num_threads(settings.learner_torch_threads)  # the training worker's own process
            _learner = LearnerService(settings, runtime, redis_client(settings.redis_url), context.node_id())
        return _learner


def current_learner():
    """The learner if this process built one, else None."""
    return _learner


def set_coordinator(member) -> None:
    """This worker's Raft member (``workers.raft_member.CoordinatorMember``), or None."""
    global _coordinator
    _coordinator = member


def coordinator():
    """This worker's Raft member, if it is one (the learner publishes only through it)."""
    return _coordinator


def start_time_limit_watchdog(worker) -> None:
    """Time limits for pools that are not prefork (prefork's own limits kill the child)."""
    global _watchdog
    _watchdog = None if is_prefork(worker) else shared_watchdog()


def stop_time_limit_watchdog() -> None:
    global _watchdog
    _watchdog = None


def time_limit_watchdog() -> DeadlineWatchdog | None:
    """The watchdog that raises time limits in task threads, None in prefork workers."""
    return _watchdog
