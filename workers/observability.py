"""Worker observability: the ``/metrics`` bootstep, multiprocess metric files,
known series at 0, and the log format.

Connected through Celery's extension points only: a bootstep, the
``worker_process_shutdown`` signal and the logging signals
(``omnimind.observability.logging.connect``).
"""
from __future__ import annotations

import logging

from celery import bootsteps
from celery.signals import worker_process_shutdown

from omnimind.config import Settings, get_settings
from omnimind.errors import InvalidInput
from omnimind.observability import logging as log_format
from omnimind.health import health_app
from omnimind.observability import metrics, multiprocess
from workers import context, worker_health
from workers.services import consumed_queues

logger = logging.getLogger(__name__)

class MetricsServerStep(bootsteps.StartStopStep):
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` (``workers.worker_health``) on ``--metrics-port`` (or ``OMNIMIND_METRICS_PORT``), bound to
    ``OMNIMIND_METRICS_ADDRESS`` (default 0.0.0.0, every interface).

    When serving, the worker's metrics run in prometheus-client multiprocess
    mode in ``<data_dir>/metrics/<node name>/`` (wiped here, at start), so the
    page sums every pool process. ``OMNIMIND_METRICS=0`` turns serving off.

    >>> MetricsServerStep.label
    'OmniMind metrics'
    """

    label = "OmniMind metrics"

    def __init__(self, worker, metrics_port=None, raft_id=None, **kwargs):
        settings = get_settings()
        super().__init__(worker, **kwargs)
        self.port = settings.metrics_port if metrics_port is None else metrics_port
        self.address = settings.metrics_address  # OMNIMIND_METRICS_ADDRESS, every interface by default
        self.raft_member = raft_id or settings.raft_id or None  # as workers.raft.RaftStep resolves it
        if not settings.metrics_enabled:
            self.port = 0
        self.path = None
        self._server = None
        if self.port:
            # Here, in the main process: before the pool forks and before any
            # step records a value.
            self.path = multiprocess.enable(multiprocess.worker_dir(settings, worker.hostname))

    def start(self, worker):
        if not self.port:
            return
        from prometheus_client import make_wsgi_app

        ctx = context.current()
        queues = consumed_queues(worker)
        capabilities = ctx.capabilities if ctx is not None else []
        precreate_known_series(
            worker.app,
            node_id=context.node_id(),
            queues=queues,
            capabilities=capabilities,
            raft_member=self.raft_member,
        )
        serves_model = bool({"inference", "training"} & set(capabilities))
        path, raft_member = self.path, self.raft_member

        def ready():
            return worker_health.readiness(queues, serves_model, raft_member, path)

        app = health_app(make_wsgi_app(multiprocess.registry(self.path)), ready)
        self._server = worker_health.serve(self.address, self.port, app)
        logger.info("Serving Prometheus metrics, /healthz and /readyz on %s:%d (multiprocess files in %s)",
                    self.address, self.port, self.path)

    def stop(self, worker):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    shutdown = stop


def worker_task_names(app, queues) -> list[str]:
    """OmniMind's tasks that route to one of ``queues``.

    >>> from omnimind.app import app
    >>> _ = app.loader.import_default_modules()  # a worker imports its task modules at start
    >>> names = worker_task_names(app, ["inference"])
    >>> {"tasks.inference.noop", "tasks.inference.predict"} <= set(names), "tasks.training.learn" in names
    (True, False)
    """
    names = []
    for name in sorted(app.tasks):
        if name.startswith("celery."):
            continue
        try:
            queue = app.amqp.router.route({}, name)["queue"].name
        except Exception:  # an unroutable name is not this worker's task
            continue
        if queue in queues:
            names.append(name)
    return names


def precreate_known_series(app, node_id: str, queues, capabilities, raft_member: str | None = None) -> None:
    """Create at 0 the labelled series whose label values are a fixed known set,
    so that a series' first event is an increase Prometheus can see.

    Per task of this worker x state (and x time-limit kind); per node and status; swap rejection
    reasons on model-serving workers; publication and refusal reasons and the live-window
    loss (NaN until scored) on training workers; drop reasons and the member's election
    counters on Raft members (labelled with the Raft member id, as
    ``workers.raft_status`` records them)."""
    tasks = worker_task_names(app, queues)
    for task in tasks:
        for state in metrics.TASK_STATES:
            metrics.tasks_total.labels(task=task, state=state)
        for kind in metrics.TIME_LIMIT_KINDS:
            metrics.task_time_limits.labels(task=task, kind=kind)
        if InvalidInput in tuple(getattr(app.tasks[task], "throws", ()) or ()):
            for reason in InvalidInput.REASONS:
                metrics.bad_inputs.labels(task=task, reason=reason)
    for status in metrics.REQUEST_STATUSES:
        metrics.cluster_requests_total.labels(node_id=node_id, status=status)
    if {"inference", "training"} & set(capabilities):
        metrics.model_swaps.labels(node_id=node_id)
        for reason in metrics.MODEL_SWAP_REJECTION_REASONS:
            metrics.model_swap_rejections.labels(reason=reason)
    if "training" in set(capabilities):  # the learner publishes and refuses candidates
        for reason in metrics.PUBLICATION_REASONS:
            metrics.publications_by_reason.labels(reason=reason)
        for reason in metrics.PUBLICATION_REFUSAL_REASONS:
            metrics.publication_refusals.labels(reason=reason)
        for model in metrics.LIVE_WINDOW_MODELS:
            # A loss at 0 would read as a perfect model: until a window is scored it is NaN
            # (no value), and a value the learner set already is kept.
            if (model,) not in metrics.live_window_loss._metrics:
                metrics.live_window_loss.labels(model=model).set(float("nan"))
    if raft_member:
        metrics.raft_leader_changes.labels(node_id=raft_member)
        metrics.raft_elections.labels(node_id=raft_member)
        for reason in metrics.RAFT_DROP_REASONS:
            metrics.raft_dropped_frames.labels(reason=reason)


@worker_process_shutdown.connect
def _on_process_shutdown(pid=None, **_):
    # Fires in the exiting pool child; its live gauges must not outlive it.
    if pid is not None:
        multiprocess.process_exited(pid)


def connect_worker_signals(settings: Settings) -> None:
    """What a worker connects as it loads its task modules (``omnimind.app``): its log format."""
    log_format.connect(settings.log_format)
