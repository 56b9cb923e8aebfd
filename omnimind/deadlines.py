"""Deadlines that interrupt a running thread: raise an exception *in* it.

CPython can schedule an exception in another thread
(``PyThreadState_SetAsyncExc``); it is raised there at the next bytecode. A
pure-Python loop or a polling wait stops within milliseconds; one long C call
(``time.sleep(60)``, a huge tensor op) is interrupted when it returns. That is
how a soft time limit behaves under prefork too (SIGUSR1 is handled between
bytecodes), so it serves pools that Celery cannot police: solo and threads.

:class:`DeadlineWatchdog` keeps every armed deadline in one heap served by one
thread, so arming costs a heap push, not a timer thread per task. Task time
limits (``workers.time_limits``) and agents' deadlines (:class:`Deadline`)
share the process's one watchdog (:func:`shared_watchdog`).

>>> import time
>>> watchdog = DeadlineWatchdog()
>>> watchdog.start()
>>> ticket = watchdog.arm([(0.05, TimeoutError)])
>>> try:
...     while True:
...         time.sleep(0.001)
... except TimeoutError:
...     print("interrupted")
... finally:
...     watchdog.disarm(ticket)
interrupted
>>> ticket.fired
[<class 'TimeoutError'>]
>>> watchdog.stop()
"""
from __future__ import annotations

import ctypes
import heapq
import itertools
import logging
import os
import threading
import time
from typing import Callable, Iterable

__all__ = ["Deadline", "DeadlineWatchdog", "Ticket", "disarm_surely", "raise_in_thread", "shared_watchdog"]

logger = logging.getLogger(__name__)


def raise_in_thread(thread_id: int, exc_type: type[BaseException] | None) -> None:
    """Schedule ``exc_type`` in thread ``thread_id``; ``None`` withdraws a pending one."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type) if exc_type is not None else ctypes.c_void_p(0)
    )


class Ticket:
    """One armed set of deadlines for one thread. ``fired`` lists what was raised."""

    __slots__ = ("thread_id", "fired", "done", "on_fire", "queued")

    def __init__(self, thread_id: int, on_fire: Callable[[type[BaseException]], None] | None) -> None:
        self.thread_id = thread_id
        self.fired: list[type[BaseException]] = []
        self.done = False
        self.on_fire = on_fire
        self.queued = 0  # its entries still in the watchdog's heap


class DeadlineWatchdog:
    """Raises an exception in a thread whose deadline passed, until disarmed.

    ``arm([(seconds, ExcType), ...], on_fire=None)`` arms deadlines for the
    calling thread (``on_fire(ExcType)`` runs in the watchdog thread just before
    raising); ``disarm(ticket)`` (from that thread, when its work ends) cancels what has
    not fired and withdraws an exception that fired but was not raised yet, so
    nothing leaks into the code that runs next in that thread.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, Ticket, type[BaseException]]] = []
        self._stale = 0  # heap entries of disarmed tickets, not yet dropped
        self._seq = itertools.count()
        self._running = False
        self._thread: threading.Thread | None = None

    @property
    def queued(self) -> int:
        """Entries in the heap, disarmed ones not yet dropped included (bounded: see ``disarm``)."""
        return len(self._heap)

    def start(self) -> None:
        with self._lock:
            if self._running:
                return
            self._running = True
        self._thread = threading.Thread(target=self._serve, name="omnimind-deadlines", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._running = False
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(5)
        self._reset()

    def arm(self, deadlines: Iterable[tuple[float, type[BaseException]]],
            on_fire: Callable[[type[BaseException]], None] | None = None) -> Ticket:
        """Arm ``(seconds from now, exception type)`` pairs for the calling thread."""
        ticket = Ticket(threading.get_ident(), on_fire)
        now = self.clock()
        with self._wake:
            earliest = self._heap[0][0] if self._heap else None
            for seconds, exc_type in deadlines:
                heapq.heappush(self._heap, (now + seconds, next(self._seq), ticket, exc_type))
                ticket.queued += 1
            if earliest is None or self._heap[0][0] < earliest:
                self._wake.notify()
        return ticket

    def disarm(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket.done:
                return
            ticket.done = True
            if ticket.fired:
                raise_in_thread(ticket.thread_id, None)  # fired but maybe not raised yet
            # Disarmed entries wait in the heap until their time comes; a busy worker
            # (thousands of tasks per hard limit) would pile them up, so once they are
            # the majority the heap is rebuilt without them: O(1) amortised per task.
            self._stale += ticket.queued
            if self._stale > 1024 and 2 * self._stale > len(self._heap):
                self._heap = [item for item in self._heap if not item[2].done]
                heapq.heapify(self._heap)
                self._stale = 0

    def _serve(self) -> None:
        with self._wake:
            while self._running:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)  # finished in time: dropped lazily
                    self._stale -= 1
                if not self._heap:
                    self._wake.wait()
                    continue
                when, _, ticket, exc_type = self._heap[0]
                delay = when - self.clock()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                heapq.heappop(self._heap)
                ticket.queued -= 1
                ticket.fired.append(exc_type)
                if ticket.on_fire is not None:
                    # First, so that what it records precedes anything the interrupted
                    # thread does next (report its failure, say).
                    try:
                        ticket.on_fire(exc_type)
                    except Exception:
                        logger.exception("Deadline callback failed")
                raise_in_thread(ticket.thread_id, exc_type)


def disarm_surely(watchdog: DeadlineWatchdog, ticket: Ticket,
                  interrupts: tuple[type[BaseException], ...]) -> None:
    """Disarm even when one of the ticket's ``interrupts`` lands inside ``disarm``
    (it fired just as the work ended): a ticket left armed would later raise into
    whatever this thread runs next. The work's outcome is decided by then, so that
    late interrupt is dropped."""
    while not ticket.done:
        try:
            watchdog.disarm(ticket)
        except interrupts:
            continue


_shared: tuple[int, DeadlineWatchdog] | None = None
_shared_lock = threading.Lock()


def shared_watchdog() -> DeadlineWatchdog:
    """This process's watchdog, started on first use (never at import; anew in a
    forked child, where the parent's thread does not exist)."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared[0] != os.getpid():
            watchdog = DeadlineWatchdog()
            watchdog.start()
            _shared = (os.getpid(), watchdog)
        return _shared[1]


class Deadline:
    """Context manager: raises ``exc_type`` in the entering thread after ``seconds``.

    >>> import time
    >>> try:
    ...     with Deadline(0.05, TimeoutError) as deadline:
    ...         while True:
    ...             time.sleep(0.001)
    ... except TimeoutError:
    ...     print("interrupted", deadline.fired)
    interrupted True
    """

    def __init__(self, seconds: float, exc_type: type[BaseException] = TimeoutError,
                 watchdog: DeadlineWatchdog | None = None) -> None:
        self.seconds = seconds
        self.exc_type = exc_type
        self.watchdog = watchdog
        self._ticket: Ticket | None = None

    @property
    def fired(self) -> bool:
        return bool(self._ticket and self._ticket.fired)

    def __enter__(self) -> "Deadline":
        self.watchdog = self.watchdog or shared_watchdog()
        self._ticket = self.watchdog.arm([(self.seconds, self.exc_type)])
        return self

    def __exit__(self, *exc_info) -> None:
        disarm_surely(self.watchdog, self._ticket, (self.exc_type,))
