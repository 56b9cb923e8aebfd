"""Worker log formats: one JSON object per line, or a human-readable console line.

``OMNIMIND_LOG_FORMAT=json`` makes every log line of a worker one JSON object:

    {"ts": "2026-11-24T06:01:02.345Z", "level": "INFO", "logger": "celery.app.trace",
     "event": "task_succeeded", "message": "Task tasks.inference.predict[5f..] succeeded in 0.001s: ...",
     "node_id": "inference@gpu-01", "pid": 4242, "task_id": "5f..", "task_name": "tasks.inference.predict",
     "queue": "inference", "runtime_s": 0.001, "model_version": 3}

``event`` is a stable key to group lines by: ``extra={"event": ...}`` when the
caller gives one, ``task_received``/``task_succeeded``/... for Celery's own task
lifecycle lines, else the message template (``"Registered %s with capabilities %s"``).
Task fields come from the record (Celery's lifecycle lines carry the task id and
name) or from the task being executed (``celery.current_task``); ``queue`` from
its delivery info; ``model_version`` from ``extra`` or from the model this process
serves, once it is built. The default, ``console``, is Celery's usual line with the
node and the current task added.

The formats are applied through Celery's logging signals (``after_setup_logger``,
``after_setup_task_logger``): Celery still creates the handlers (log file,
colours, levels); only their formatter changes. Prefork children inherit the
handlers through fork.
"""
from __future__ import annotations

import json
import logging
import socket
from datetime import datetime, timezone
from typing import Callable

from celery import signals
from celery._state import get_current_task
from celery.app import trace as _trace
from celery.utils.log import get_multiprocessing_logger

#: Celery's task lifecycle messages (record.msg) -> event name.
_CELERY_EVENTS = {
    _trace.LOG_RECEIVED.strip(): "task_received",
    _trace.LOG_SUCCESS.strip(): "task_succeeded",
    _trace.LOG_FAILURE.strip(): "task_failed",  # also LOG_INTERNAL_ERROR: the same template
    _trace.LOG_RETRY.strip(): "task_retried",
    _trace.LOG_REJECTED.strip(): "task_rejected",
    _trace.LOG_IGNORED.strip(): "task_ignored",
}

_TASK_FIELDS = ("task_id", "task_name", "queue")


_node_id_source: Callable[[], str] = socket.gethostname


def set_node_id_source(source: Callable[[], str] | None) -> None:
    """Where log lines read the node id: a worker registers its context's
    (``workers.context.set_context``); None: the host name."""
    global _node_id_source
    _node_id_source = source or socket.gethostname


def _default_node_id() -> str:
    return _node_id_source()


_model_version_source = None


def set_model_version_source(source) -> None:
    """Where log lines read the served model version: a callable returning it, or None
    while this process serves none (the serving runtime registers itself when built;
    formatting a line must never build one)."""
    global _model_version_source
    _model_version_source = source


def _served_model_version() -> int | None:
    source = _model_version_source
    return None if source is None else source()


def log_context(record: logging.LogRecord) -> dict:
    """Task and model fields of one record (only those that are known).

    >>> r = logging.LogRecord("celery.app.trace", logging.INFO, __file__, 1, _trace.LOG_SUCCESS,
    ...                       ({"id": "t-1", "name": "tasks.x", "runtime": 0.25, "return_value": None,
    ...                         "args": "()", "kwargs": "{}"},), None)
    >>> ctx = log_context(r)
    >>> ctx["event"], ctx["task_id"], ctx["task_name"], ctx["runtime_s"]
    ('task_succeeded', 't-1', 'tasks.x', 0.25)
    """
    ctx: dict = {}
    msg = record.msg if isinstance(record.msg, str) else str(record.msg)
    celery_event = _CELERY_EVENTS.get(msg)
    ctx["event"] = getattr(record, "event", None) or celery_event or msg
    args = record.args
    if celery_event and isinstance(args, dict):
        ctx["task_id"], ctx["task_name"] = args.get("id"), args.get("name")
        if isinstance(args.get("runtime"), (int, float)):
            ctx["runtime_s"] = args["runtime"]
    task = get_current_task()
    request = getattr(task, "request", None) if task is not None else None
    if request is not None and request.id is not None and ctx.get("task_id") in (None, request.id):
        ctx["task_id"], ctx["task_name"] = request.id, task.name
        queue = (request.delivery_info or {}).get("routing_key")
        if queue:
            ctx["queue"] = queue
    for name in _TASK_FIELDS + ("model_version",):  # extra={...} wins
        value = getattr(record, name, None)
        if value is not None:
            ctx[name] = value
    if "model_version" not in ctx and "task_id" in ctx:
        version = _served_model_version()
        if version is not None:
            ctx["model_version"] = version
    return {k: v for k, v in ctx.items() if v is not None}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line.

    >>> record = logging.LogRecord("omnimind.demo", logging.WARNING, __file__, 1, "loaded v%d", (3,), None)
    >>> line = JsonFormatter(node_id=lambda: "n1").format(record)
    >>> "\\n" in line
    False
    >>> obj = json.loads(line)
    >>> obj["level"], obj["logger"], obj["event"], obj["message"], obj["node_id"]
    ('WARNING', 'omnimind.demo', 'loaded v%d', 'loaded v3', 'n1')
    """

    def __init__(self, node_id: Callable[[], str] | None = None) -> None:
        super().__init__()
        self._node_id = node_id or _default_node_id

    def format(self, record: logging.LogRecord) -> str:
        ctx = log_context(record)
        obj = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "event": ctx.pop("event"),
            "message": record.getMessage(),
            "node_id": self._node_id(),
            "pid": record.process,
        }
        obj.update(ctx)
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            obj["exc"] = record.exc_text
        if record.stack_info:
            obj["stack"] = self.formatStack(record.stack_info)
        return json.dumps(obj, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """Celery's usual line, with the node and (inside a task) the task added.

    >>> record = logging.LogRecord("omnimind.demo", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    >>> record.processName = "MainProcess"
    >>> ConsoleFormatter(node_id=lambda: "n1").format(record).split("] ", 1)[1]
    'n1 omnimind.demo: hello world'
    """

    def __init__(self, node_id: Callable[[], str] | None = None) -> None:
        super().__init__("[%(asctime)s: %(levelname)s/%(processName)s] %(omnimind_prefix)s%(message)s")
        self._node_id = node_id or _default_node_id

    def format(self, record: logging.LogRecord) -> str:
        ctx = log_context(record)
        prefix = f"{self._node_id()} {record.name}"
        task_id = ctx.get("task_id")
        if task_id and task_id not in record.getMessage():  # Celery's lines already name the task
            prefix += f" {ctx.get('task_name', '?')}[{task_id}]"
        if "model_version" in ctx and ctx.get("event") != "task_received":
            prefix += f" v{ctx['model_version']}"
        record.omnimind_prefix = prefix + ": "
        return super().format(record)


def make_formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``OMNIMIND_LOG_FORMAT`` (``console`` or ``json``).

    >>> type(make_formatter("json")).__name__
    'JsonFormatter'
    """
    if log_format == "json":
        return JsonFormatter()
    if log_format == "console":
        return ConsoleFormatter()
    raise ValueError(f"unknown log format {log_format!r} (console or json)")


def apply_format(logger: logging.Logger, log_format: str) -> None:
    """Give every handler of ``logger`` the formatter of ``log_format``."""
    for handler in logger.handlers:
        handler.setFormatter(make_formatter(log_format))


_RECEIVERS = (
    (signals.after_setup_logger, "omnimind.log_format.root"),
    (signals.after_setup_task_logger, "omnimind.log_format.task"),
    (signals.celeryd_init, "omnimind.log_format.quiet"),
)


def connect(log_format: str) -> None:
    """Apply ``log_format`` whenever Celery sets up a worker's logging.

    Connects receivers of ``after_setup_logger`` (the root logger, and Celery's
    multiprocessing logger) and ``after_setup_task_logger``; with ``json``,
    also suppresses the worker's plain-text startup banner (``celeryd_init``),
    so that its log output is JSON only. A later call replaces the format.
    """
    make_formatter(log_format)  # validate now, not at the first log line

    def _root(logger=None, **_):
        apply_format(logger, log_format)
        mp_logger = get_multiprocessing_logger()
        if mp_logger is not None:
            apply_format(mp_logger, log_format)

    def _task(logger=None, **_):
        apply_format(logger, log_format)

    def _quiet(instance=None, **_):
        if instance is not None and hasattr(instance, "quiet"):
            instance.quiet = True

    for signal, uid in _RECEIVERS:
        signal.disconnect(dispatch_uid=uid)  # a later call replaces the format
    signals.after_setup_logger.connect(_root, weak=False, dispatch_uid="omnimind.log_format.root")
    signals.after_setup_task_logger.connect(_task, weak=False, dispatch_uid="omnimind.log_format.task")
    if log_format == "json":
        signals.celeryd_init.connect(_quiet, weak=False, dispatch_uid="omnimind.log_format.quiet")
