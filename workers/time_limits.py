"""Task time limits on solo and threads pools, where Celery enforces none.

Celery applies ``soft_time_limit``/``time_limit`` only in prefork pools (the
pool signals or kills its child). OmniMind's GPU inference and agents workers
run a threads pool, training and memory workers a solo pool, so a runaway task
would hold its slot for ever. ``TimeLimitStep`` switches on the
process's :class:`~omnimind.deadlines.DeadlineWatchdog` in such a worker, and every
OmniMind task (``TimeLimitedTask``, the app's task class) arms its limits
around its body: at the soft limit ``SoftTimeLimitExceeded`` is raised in the
task (it may catch it to clean up, as under prefork), at the hard limit
``TimeLimitExceeded``. The task fails with that error in its result, the event
is counted in ``omnimind_task_time_limits_total`` and the worker goes on
serving. A single long C call is interrupted only when it returns (see
``omnimind.deadlines``). Under prefork the step does nothing: Celery's own
limits apply there, hard kill included.

Arguments are checked here too, once for every task: a call whose arguments do
not fit the task function's signature (an unknown keyword, one positional too
many, a required one missing) raises ``InvalidInput("arguments", ...)`` before
the body runs, so it is counted as bad input like any other
(``omnimind_bad_inputs_total``), not a bare ``TypeError``.

>>> from omnimind.config import settings
>>> from tasks.inference import predict
>>> isinstance(predict, TimeLimitedTask)
True
>>> task_limits(predict) == (settings.limits["inference"].soft, settings.limits["inference"].hard)
True
"""
from __future__ import annotations

import inspect
import logging

from celery import Task, bootsteps
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from omnimind.deadlines import disarm_surely
from omnimind.errors import InvalidInput
from omnimind.observability import metrics
from workers import services

logger = logging.getLogger(__name__)


def task_limits(task: Task) -> tuple[float | None, float | None]:
    """``(soft, hard)`` seconds for the running request: per-call limits
    (``apply_async(soft_time_limit=...)``) win over the task's, then the app's."""
    hard, soft = (getattr(task.request, "timelimit", None) or (None, None))
    conf = task.app.conf
    soft = soft or task.soft_time_limit or conf.task_soft_time_limit
    hard = hard or task.time_limit or conf.task_time_limit
    return soft, hard


class TimeLimitedTask(Task):
    """Celery's Task, with its time limits enforced in solo and threads pools, and
    its arguments checked against the task function's signature.

    >>> from tasks.inference import predict
    >>> try:
    ...     predict(inputs=[0.0] * 16, colour="red")
    ... except InvalidInput as exc:
    ...     exc.reason
    'arguments'
    """

    #: Celery's default strategy, refusing a message over OMNIMIND_MAX_MESSAGE_BYTES first.
    Strategy = "workers.message_limits:size_limited"

    def __call__(self, *args, **kwargs):
        check_arguments(self, args, kwargs)
        watchdog = services.time_limit_watchdog()
        if watchdog is None:
            return super().__call__(*args, **kwargs)
        soft, hard = task_limits(self)
        deadlines = [(s, exc) for s, exc in ((soft, SoftTimeLimitExceeded), (hard, TimeLimitExceeded)) if s]
        if not deadlines:
            return super().__call__(*args, **kwargs)
        name = self.name
        ticket = watchdog.arm(deadlines, on_fire=lambda exc: _on_limit(name, exc, soft, hard))
        try:
            return super().__call__(*args, **kwargs)
        finally:
            disarm_surely(watchdog, ticket, (SoftTimeLimitExceeded, TimeLimitExceeded))


def check_arguments(task: Task, args: tuple, kwargs: dict) -> None:
    """Raise ``InvalidInput("arguments", ...)`` unless ``args``/``kwargs`` bind to
    ``task.run``'s signature (bound tasks: without ``self``)."""
    signature = task.__dict__.get("_omnimind_signature")
    if signature is None:  # one inspect per task object, not per call
        signature = task.__dict__["_omnimind_signature"] = inspect.signature(task.run)
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise InvalidInput("arguments", f"{task.name}: {exc}") from None


def _on_limit(task_name: str, exc: type[BaseException], soft, hard) -> None:
    kind = "soft" if exc is SoftTimeLimitExceeded else "hard"
    metrics.task_time_limits.labels(task=task_name, kind=kind).inc()
    logger.error("Task %s exceeded its %s time limit (%ss)", task_name, kind, soft if kind == "soft" else hard)


class TimeLimitStep(bootsteps.StartStopStep):
    """Enforces task time limits in workers whose pool is not prefork."""

    label = "OmniMind time limits"

    def start(self, worker):
        services.start_time_limit_watchdog(worker)

    def stop(self, worker):
        services.stop_time_limit_watchdog()

    shutdown = stop
