"""Test failpoints: make a worker die at a chosen point, every time, so that a
test can reproduce a rare failure deterministically. Each one is off unless its
environment variable is set, and none is ever set in production (then nothing
is connected and nothing runs per task).

``OMNIMIND_FAILPOINT_KILL_AFTER_RESULT="TASK_NAME@PATH"`` kills a worker between
a task's stored result and its acknowledgement: the first time a task named
TASK_NAME succeeds in a worker that has the variable set, the worker creates
PATH exclusively (``O_CREAT | O_EXCL``, so it fires once across every worker
and every restart that share PATH), writes ``{"task_id", "task", "pid"}`` to
it, fsyncs it, and SIGKILLs its own process. The client already has the result;
the broker message is still unacknowledged, so it is redelivered after the
visibility timeout and the task runs a second time (at-least-once delivery).
A malformed value fails the worker's start (``workers.signals.connect_worker_signals``), with a ``ConfigError`` that names the variable.

Why ``task_success`` is the place (celery 5.7, ``task_acks_late=True`` in
``omnimind/app.py``): in ``celery/app/trace.py`` ``build_tracer.trace_task``
first calls ``task.backend.mark_as_done(...)`` (the result is stored and
published), then the task's ``on_success``, then ``send_success`` (this
signal), then logs "Task ... succeeded". Only after the traced call returns
does the pool run its callback, ``Request.on_success`` in
``celery/worker/request.py``, whose ``if acks_late: self.acknowledge()`` sends
the ack. With a solo or threads pool all of this runs in the worker process
itself, so the SIGKILL here lands after the result and before the ack.

In a prefork pool the handler runs in, and kills, the pool child only; the
parent's ``Request.on_failure(WorkerLostError)`` then finds the stored SUCCESS
(``_success_was_stored``) and acknowledges: no redelivery. Use this failpoint
with ``--pool solo`` or ``--pool threads`` (as the training worker runs).

``OMNIMIND_RAFT_FAILPOINT_PAUSE_BEFORE_SEND="SLOT@PATH"`` pauses a Raft coordinator
between a dispatch's commit and its send (:func:`parse_pause_failpoint`, :func:`pause_once`;
``workers.raft_schedule`` calls them).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import NamedTuple

from celery import signals

from omnimind.errors import ConfigError
from omnimind.scaling.raft import RaftConfigError

logger = logging.getLogger(__name__)

KILL_AFTER_RESULT_ENV = "OMNIMIND_FAILPOINT_KILL_AFTER_RESULT"
#: Fault injection for tests (unset in production): "SLOT@PATH" makes the first
#: member to reach slot SLOT between commit and send write who it is to PATH
#: (created exclusively, so it fires once across the cluster) and SIGSTOP
#: itself there: a deterministic pause in the window the fence exists for.
PAUSE_BEFORE_SEND_ENV = "OMNIMIND_RAFT_FAILPOINT_PAUSE_BEFORE_SEND"
_DISPATCH_UID = "omnimind.failpoints.kill_after_result"


class KillAfterResult(NamedTuple):
    task: str
    marker: Path


def parse_kill_after_result(spec: str) -> KillAfterResult | None:
    """``"TASK_NAME@PATH"`` -> ``(TASK_NAME, PATH)``; empty -> None.

    >>> parse_kill_after_result("tasks.training.learn@/tmp/killed.json")
    KillAfterResult(task='tasks.training.learn', marker=PosixPath('/tmp/killed.json'))
    >>> parse_kill_after_result(""), parse_kill_after_result("   ")
    (None, None)
    >>> parse_kill_after_result("tasks.inference.predict@/tmp/a@b").marker  # the first "@" separates
    PosixPath('/tmp/a@b')
    >>> for bad in ("tasks.inference.predict", "@/tmp/x", "tasks.inference.predict@", "a task@/tmp/x"):
    ...     try:
    ...         parse_kill_after_result(bad)
    ...     except ConfigError as exc:
    ...         print(exc)
    OMNIMIND_FAILPOINT_KILL_AFTER_RESULT must look like TASK_NAME@PATH, not 'tasks.inference.predict'
    OMNIMIND_FAILPOINT_KILL_AFTER_RESULT must look like TASK_NAME@PATH, not '@/tmp/x'
    OMNIMIND_FAILPOINT_KILL_AFTER_RESULT must look like TASK_NAME@PATH, not 'tasks.inference.predict@'
    OMNIMIND_FAILPOINT_KILL_AFTER_RESULT must look like TASK_NAME@PATH, not 'a task@/tmp/x'
    """
    if not spec.strip():
        return None
    task, sep, path = spec.strip().partition("@")
    if not sep or not task or not path or any(ch.isspace() for ch in task):
        raise ConfigError(f"{KILL_AFTER_RESULT_ENV} must look like TASK_NAME@PATH, not {spec!r}")
    return KillAfterResult(task, Path(path))


_armed: KillAfterResult | None = None


def connect(kill_after_result: str = "") -> KillAfterResult | None:
    """Arm the kill-after-result failpoint ``"TASK_NAME@PATH"`` (settings
    ``failpoint_kill_after_result``), or disarm it (empty); idempotent.

    Raises ``ConfigError`` for a malformed value, or for a marker whose directory
    does not exist (the failpoint could never fire)."""
    global _armed
    armed = parse_kill_after_result(kill_after_result)
    if armed is not None and not armed.marker.parent.is_dir():
        raise ConfigError(f"{KILL_AFTER_RESULT_ENV}: directory {str(armed.marker.parent)!r} of the marker does not exist")
    signals.task_success.disconnect(dispatch_uid=_DISPATCH_UID)
    _armed = armed
    if armed is not None:
        signals.task_success.connect(_kill_after_result, weak=False, dispatch_uid=_DISPATCH_UID)
        logger.warning("Failpoint armed: %s=%s@%s", KILL_AFTER_RESULT_ENV, armed.task, armed.marker)
    return armed


def _kill_after_result(sender=None, **_) -> None:
    armed = _armed
    if armed is None or getattr(sender, "name", None) != armed.task:
        return
    task_id = getattr(sender.request, "id", None)
    try:
        fd = os.open(armed.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return  # fired already (in this worker, another one, or before a restart)
    with os.fdopen(fd, "w") as out:
        json.dump({"task_id": task_id, "task": armed.task, "pid": os.getpid()}, out)
        out.flush()
        os.fsync(out.fileno())
    try:  # the marker's directory entry too: it must survive the kill
        dir_fd = os.open(armed.marker.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    logger.warning("Failpoint %s: SIGKILL after the result of %s[%s], before its ack",
                   KILL_AFTER_RESULT_ENV, armed.task, task_id)
    for handler in logging.getLogger().handlers + logger.handlers:
        try:
            handler.flush()
        except Exception:
            pass
    os.kill(os.getpid(), signal.SIGKILL)


def parse_pause_failpoint(spec: str) -> tuple[int, Path] | None:
    """``"SLOT@PATH"`` -> ``(SLOT, PATH)``; empty -> None.

    >>> parse_pause_failpoint("3@/tmp/paused.json"), parse_pause_failpoint("")
    ((3, PosixPath('/tmp/paused.json')), None)
    """
    if not spec:
        return None
    slot, sep, path = spec.partition("@")
    if not sep or not slot.strip().isdigit() or not path:
        raise RaftConfigError(f"{PAUSE_BEFORE_SEND_ENV} must look like SLOT@PATH, not {spec!r}")
    return int(slot), Path(path)


def pause_once(marker: Path, record: dict, entry_name: str, slot: int) -> None:
    """The Raft failpoint fires: unless another member paused at ``marker`` already, write
    ``record`` there and SIGSTOP the calling thread (SIGCONT resumes right here)."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return  # another member paused here already
    with os.fdopen(fd, "w") as out:
        json.dump(record, out)
        out.flush()
        os.fsync(out.fileno())
    logger.warning("Failpoint: pausing before sending %s slot %d", entry_name, slot)
    # Directed at this thread, so that it is this thread that stops at once (the
    # whole process stops with it); a process-directed kill() wakes the main
    # thread to begin the stop and lets this one run on for a moment.
    signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)  # SIGCONT resumes right here
