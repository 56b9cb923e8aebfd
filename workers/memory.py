"""The one-process rule of embedded vector memory.

Qdrant's local mode keeps its points in files that only one process may open.
So when a worker consumes the ``memory`` queue without ``OMNIMIND_QDRANT_URL``:

* it takes an exclusive, non-blocking ``flock`` on ``<memory path>.worker.lock``
  when it starts and holds it until it exits (the kernel drops it if the process
  dies, so a crashed worker never leaves a stale lock); a second memory worker on
  the same data directory refuses to start, naming the holder;
* a prefork pool with concurrency above 1 is refused too (its children would
  open the files side by side). Solo, threads, or prefork with one child are fine.

With a Qdrant server URL the step does nothing: any number of memory workers.

It also warns when one worker consumes ``agents`` together with ``memory`` or
``inference`` (agents waiting on subtasks could occupy all of its slots).
"""
from __future__ import annotations

import fcntl
import logging
import os
import socket

from celery import bootsteps

from omnimind.config import get_settings
from workers.services import consumed_queues, is_prefork

logger = logging.getLogger(__name__)


def lock_path(settings) -> str:
    return os.path.abspath(settings.memory_path) + ".worker.lock"


class MemoryLockError(SystemExit):
    """Refusal to start; ``SystemExit`` so the worker exits non-zero with this message."""


def take_lock(path: str) -> int:
    """An fd holding an exclusive flock on ``path``, or ``MemoryLockError``.

    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> fd = take_lock(os.path.join(folder.name, "qdrant.worker.lock"))
    >>> take_lock(os.path.join(folder.name, "qdrant.worker.lock"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    workers.memory.MemoryLockError: omnimind: refusing to consume the 'memory' queue: embedded Qdrant at ... is already served by pid ...
    >>> os.close(fd); folder.cleanup()
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 256).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise MemoryLockError(
            f"omnimind: refusing to consume the 'memory' queue: embedded Qdrant at {path[:-len('.worker.lock')]} "
            f"is already served by {holder}. Local mode cannot be shared between processes: run one memory "
            f"worker per data directory, or set OMNIMIND_QDRANT_URL to a Qdrant server to run several."
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
    os.set_inheritable(fd, False)
    return fd


class MemoryLockStep(bootsteps.StartStopStep):
    """Enforces the one-process rule at worker start (see the module docstring);
    closes this process's memory backend at shutdown."""

    label = "OmniMind memory lock"

    def __init__(self, worker, **kwargs):
        settings = get_settings()
        super().__init__(worker, **kwargs)
        self.fd: int | None = None
        queues = set(consumed_queues(worker))
        self.enabled = "memory" in queues
        if "agents" in queues and queues & {"memory", "inference"}:
            # An agent waits on memory/inference tasks; if this worker's slots are all
            # taken by waiting agents, the tasks they wait on queue behind them here.
            logger.warning(
                "This worker consumes 'agents' and %s: agents waiting on subtasks can occupy every slot "
                "and starve them until the subtask timeout. Run agents in a worker of their own.",
                sorted(queues & {"memory", "inference"}),
            )
        if not self.enabled or settings.qdrant_url:
            return
        concurrency = int(worker.concurrency or 1)
        if is_prefork(worker) and concurrency > 1:
            raise MemoryLockError(
                f"omnimind: refusing to consume the 'memory' queue with a prefork pool of concurrency {concurrency}: "
                f"embedded Qdrant ({settings.memory_path}) cannot be opened by several processes. Use "
                f"--pool solo (or threads, or --concurrency 1), or set OMNIMIND_QDRANT_URL to a Qdrant server."
            )
        # Before the pool starts, so that a refused worker never takes a task.
        self.fd = take_lock(lock_path(settings))
        logger.info("Holding the embedded memory lock %s", lock_path(settings))

    def stop(self, worker):
        if not self.enabled:
            return
        from omnimind.memory import close_memory

        try:
            close_memory()
        except Exception as exc:  # never block shutdown on it
            logger.warning("Closing vector memory failed: %s", exc)

    def shutdown(self, worker):
        self.stop(worker)
        if self.fd is not None:
            os.close(self.fd)  # releases the flock
            self.fd = None
