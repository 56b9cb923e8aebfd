"""Signal handlers that count and time every task, wherever it runs.

``task_prerun``/``task_postrun`` fire in the process that executes the task (a
prefork child, or the worker itself with solo/threads); ``task_received`` and
``task_rejected`` fire in the worker's main process.

``OMNIMIND_METRICS=0`` leaves the recording handlers unconnected
(``connect(False)``), so a worker without metrics pays nothing for them per
task: there is no check in the hot path. What stays is the task timer that
feeds the mean latency the registry heartbeat reports (the balancer's input),
and the publish-side stamp.
"""
from __future__ import annotations

import time

from celery import signals

from omnimind.config import Settings
from omnimind.errors import InvalidInput
from omnimind.observability import metrics
from workers import context, failpoints

_started: dict[str, float] = {}


def _on_received(request=None, **_):
    metrics.tasks_total.labels(task=request.name, state="received").inc()


def _on_prerun(task_id=None, task=None, **_):
    _started[task_id] = time.perf_counter()
    metrics.tasks_total.labels(task=task.name, state="started").inc()
    sent_at = (task.request.headers or {}).get("omnimind_sent_at") if task.request else None
    if sent_at:
        queue = (task.request.delivery_info or {}).get("routing_key") or "unknown"
        metrics.task_queue_wait_seconds.labels(queue=queue).observe(max(0.0, time.time() - float(sent_at)))


def _on_postrun(task_id=None, task=None, state=None, **_):
    started = _started.pop(task_id, None)
    node = context.node_id()
    ok = state == "SUCCESS"
    metrics.cluster_requests_total.labels(node_id=node, status="success" if ok else "error").inc()
    metrics.tasks_total.labels(task=task.name, state="succeeded" if ok else "failed").inc()
    if started is not None:
        elapsed = time.perf_counter() - started
        metrics.cluster_latency_seconds.labels(node_id=node).observe(elapsed)
        metrics.task_runtime_seconds.labels(task=task.name).observe(elapsed)
        ctx = context.current()
        if ctx is not None:
            ctx.latency.observe(elapsed)


def _time_prerun(task_id=None, **_):
    _started[task_id] = time.perf_counter()


def _time_postrun(task_id=None, **_):
    # Without metrics, still feed the mean latency the registry heartbeat reports.
    started = _started.pop(task_id, None)
    ctx = context.current()
    if started is not None and ctx is not None:
        ctx.latency.observe(time.perf_counter() - started)


def _on_failure(sender=None, exception=None, **_):
    if isinstance(exception, InvalidInput):
        metrics.bad_inputs.labels(task=sender.name, reason=exception.reason).inc()


def _on_retry(sender=None, **_):
    metrics.tasks_total.labels(task=sender.name, state="retried").inc()


def _on_rejected(message=None, exc=None, **_):
    # e.g. a pickled message: accept_content=['json'] refuses it before it runs.
    metrics.messages_refused.labels(reason=type(exc).__name__ if exc else "unknown").inc()


def _on_unknown_task(name=None, **_):
    # Celery logged it, rejected it (no requeue) and stored NotRegistered as its result.
    metrics.messages_refused.labels(reason="unknown_task").inc()


def _on_revoked(request=None, **_):
    metrics.tasks_total.labels(task=getattr(request, "name", "unknown"), state="revoked").inc()


#: (signal, receiver) pairs that record per-task metrics.
_RECORDERS = (
    (signals.task_received, _on_received),
    (signals.task_prerun, _on_prerun),
    (signals.task_postrun, _on_postrun),
    (signals.task_failure, _on_failure),
    (signals.task_retry, _on_retry),
    (signals.task_rejected, _on_rejected),
    (signals.task_revoked, _on_revoked),
    (signals.task_unknown, _on_unknown_task),
)


#: What runs instead when metrics are off.
_TIMERS = ((signals.task_prerun, _time_prerun), (signals.task_postrun, _time_postrun))


def connect(metrics_enabled: bool = True) -> None:
    """Connect the metric recorders, or only the latency timer (idempotent)."""
    on, off = (_RECORDERS, _TIMERS) if metrics_enabled else (_TIMERS, _RECORDERS)
    for signal, receiver in off:
        signal.disconnect(receiver, dispatch_uid=f"omnimind.metrics.{receiver.__name__}")
    for signal, receiver in on:
        signal.connect(receiver, weak=False, dispatch_uid=f"omnimind.metrics.{receiver.__name__}")


def connect_worker_signals(settings: Settings) -> None:
    """What a worker connects as it loads its task modules (``omnimind.app``): the metric
    recorders (or only the timer), and the test failpoints (armed only when their setting is set)."""
    connect(settings.metrics_enabled)
    failpoints.connect(settings.failpoint_kill_after_result)
