"""prometheus-client multiprocess mode for one worker, so prefork children add up.

A prefork worker runs tasks in pool children; each child counts into its own
memory, and the worker's ``/metrics`` would only show the parent's. In
multiprocess mode every process writes its values to mmap'ed files in one
folder, and the page is built from all of them by ``MultiProcessCollector``.

prometheus-client picks the storage class (``values.ValueClass``) when the
``prometheus_client.values`` module is imported, from ``PROMETHEUS_MULTIPROC_DIR``.
``celery -A omnimind worker`` imports OmniMind, and with it every metric of
``omnimind.observability.metrics``, before any worker option is parsed, and the
folder depends on the worker's node name (``-n``), so it cannot be set that
early. Instead the worker switches when it starts (``enable``, called by the
metrics bootstep in the main process, before the pool forks and before any
value is recorded): it wipes the folder, points the environment variable at it,
installs a multiprocess value class and re-binds the storage of OmniMind's
metrics to it — unlabelled metrics get new values, labelled ones drop their
children, which ``labels()`` creates again from the new class. The metric
objects stay the same, so every module's reference to them stays valid.
(That re-binding uses prometheus-client internals — ``_metric_init``,
``_metrics``, ``_lock``, ``_labelnames``, stable since 0.4 and checked against
the installed version by tests/observability/test_obs_multiprocess.py.)

Solo and threads workers use the same mode (one process, one file set), so
there is a single code path. The worker holds a lock on its folder while it
runs; a second live worker with the same node name on the same machine gets
``<node name>.<pid>`` instead of wiping the first one's counts.
"""
from __future__ import annotations

import fcntl
import logging
import os
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, values
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.process_collector import ProcessCollector

from omnimind.observability import metrics

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"

logger = logging.getLogger(__name__)

_active: Path | None = None
_lock_file = None


def worker_dir(settings, nodename: str) -> Path:
    """``<metrics_dir or data_dir/metrics>/<node name>``: one folder per worker.

    >>> from omnimind.config import Settings
    >>> worker_dir(Settings(data_dir="/var/lib/omnimind"), "inference@gpu-01").as_posix()
    '/var/lib/omnimind/metrics/inference@gpu-01'
    """
    root = settings.metrics_dir or os.path.join(settings.data_dir, "metrics")
    return Path(root) / re.sub(r"[^A-Za-z0-9@._-]", "_", nodename)


def enable(path: str | os.PathLike) -> Path:
    """Wipe ``path`` and make every OmniMind metric of this process (and of
    processes forked from it later) write there. Returns the absolute path."""
    global _active, _lock_file
    path = Path(path).resolve()  # absolute: a worker may chdir (--workdir)
    lock = _lock_file if (_active == path and _lock_file is not None) else _claim(path)
    if lock is None:
        # Another live worker with the same node name owns it: never wipe its counts.
        taken, path = path, path.with_name(f"{path.name}.{os.getpid()}")
        lock = _claim(path)
        logger.warning("%s is in use by another worker with the same name; using %s", taken, path)
    if _lock_file is not None and _lock_file is not lock:
        _lock_file.close()
    _lock_file = lock
    for stale in path.glob("*.db"):  # a previous run's counts must not survive a restart
        stale.unlink()
    os.environ[ENV_VAR] = str(path)
    values.ValueClass = values.MultiProcessValue()
    _rebind()
    _active = path
    return path


def _claim(path: Path):
    """Lock ``path`` for this process (and its forked children) or return None."""
    path.mkdir(parents=True, exist_ok=True)
    handle = open(path / ".lock", "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def disable() -> None:
    """Back to in-memory values (for tests and tools that enabled it in-process)."""
    global _active, _lock_file
    if _lock_file is not None:
        _lock_file.close()
        _lock_file = None
    os.environ.pop(ENV_VAR, None)
    values.ValueClass = values.MutexValue
    _rebind()
    _active = None


def active() -> Path | None:
    """The folder of this worker's metric files, or None when not in multiprocess mode."""
    return _active


def registry(path: str | os.PathLike | None = None) -> CollectorRegistry:
    """A registry for ``/metrics``: the sum over every process's files, plus the
    serving process's own process_* metrics (CPU, memory, file descriptors)."""
    folder = path or _active
    if folder is None:
        raise RuntimeError("multiprocess metrics are not enabled in this process")
    reg = CollectorRegistry()
    MultiProcessCollector(reg, path=str(folder))
    ProcessCollector(registry=reg)
    return reg


def samples(name: str, path: str | os.PathLike | None = None) -> dict[frozenset, float]:
    """The value of metric ``name`` over every process's files, aggregated as ``/metrics``
    shows it (a gauge by its ``multiprocess_mode``): label set -> value. Empty when no
    process has recorded it (or multiprocess mode is off)."""
    folder = path or _active
    if folder is None:
        return {}
    out = {}
    for metric in MultiProcessCollector(None, path=str(folder)).collect():
        for sample in metric.samples:
            if sample.name == name:
                out[frozenset(sample.labels.items())] = sample.value
    return out


def process_exited(pid: int) -> None:
    """Bookkeeping for a pool child that exited: drops its live-gauge files
    (its counters and histograms stay: what it counted still happened)."""
    if _active is not None:
        mark_process_dead(pid, str(_active))


def _rebind() -> None:
    # Scan the module now rather than trust a list built at import: a metric
    # appended anywhere in metrics.py is rebound too.
    for metric in [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]:
        if metric._labelnames:
            # Children are created lazily by labels(), from values.ValueClass.
            with metric._lock:
                metric._metrics = {}
        else:
            metric._metric_init()
