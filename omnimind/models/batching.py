"""Dynamic batching: concurrent requests in one process share one forward pass.

Task threads (the threads pool) call :meth:`DynamicBatcher.submit` with their own,
already validated rows. There is no batching thread: the caller that finds no pass
running becomes the runner (flat combining). It takes the oldest pending request's
*bucket* — same key, i.e. the same model version object and example shape — up to
``max_size`` examples in arrival order, runs ``run(key, rows)`` once outside the lock,
hands every request its own slice of the output and wakes the next waiter to run the
next batch. Requests that arrive while a pass runs form the next batch (Triton /
Ray Serve style). Each request waits on a condition of its own, so a pass wakes only
its own requests and the next runner, not every waiting thread.

- **A batch waits only for requests known to be coming.** Whoever hands requests to
  the batcher :meth:`announces <DynamicBatcher.announce>` each one as early as it can
  (a worker does so when it receives the message); :meth:`submit` redeems one
  announcement. The runner waits for announced requests to join its batch, at most
  ``max_delay`` seconds after the oldest request arrived, and no longer than it takes
  them to come. A lone request, or a closed-loop client's next one, has nothing
  announced behind it and runs at once. An announcement not redeemed within
  ``announce_ttl`` seconds (its request was revoked, failed before it could join)
  no longer holds a batch back; :meth:`withdraw` drops one at once. ``more_coming()``,
  if given, says whether requests not announced yet are about to be (a worker with
  messages left in its queue and room to take them): the batch waits for those too.
- **A request larger than ``max_size`` runs alone**, in a pass of its own.
- **Per-request outcomes.** ``check(rows)`` judges each request's output slice (the
  runtime refuses non-finite rows): an exception it raises fails that request only.
  An exception of ``run`` itself fails every request of that batch.

>>> import numpy as np
>>> batcher = DynamicBatcher(lambda key, rows: rows * 2, max_size=8, max_delay=0.0)
>>> out = batcher.submit("v0", np.ones((2, 3), dtype=np.float32))
>>> out.rows.tolist(), out.batch_examples, out.batch_requests
([[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]], 2, 1)
"""
from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Hashable

#: ``observe(examples, requests, queue_delays)`` after every pass (metrics).
Observer = Callable[[int, int, list], None]


@dataclass(frozen=True)
class BatchResult:
    """One request's rows and the pass that produced them."""

    rows: Any
    batch_id: int
    batch_examples: int
    batch_requests: int
    queue_delay: float


class _Request:
    __slots__ = ("key", "rows", "size", "arrived", "result", "error", "done", "wake")

    def __init__(self, key: Hashable, rows: Any, arrived: float, wake: threading.Condition) -> None:
        self.key, self.rows, self.size, self.arrived, self.wake = key, rows, len(rows), arrived, wake
        self.result: BatchResult | None = None
        self.error: BaseException | None = None
        self.done = False


class DynamicBatcher:
    """Merges concurrent :meth:`submit` calls with the same key into one ``run`` call.

    ``run(key, rows)`` gets the concatenated rows (``concat``, NumPy by default) and
    returns an indexable output with one row per input row. Hyperparameters:
    ``max_size`` examples per pass, ``max_delay`` seconds a batch may wait for
    announced requests, ``announce_ttl`` seconds an announcement holds.

    >>> import numpy as np
    >>> batcher = DynamicBatcher(lambda key, rows: rows.sum(axis=1, keepdims=True), max_size=4)
    >>> batcher.announce(); batcher.announced
    1
    >>> batcher.submit(("v1", (2,)), np.array([[1.0, 2.0]])).rows.tolist(), batcher.announced
    ([[3.0]], 0)
    """

    def __init__(
        self,
        run: Callable[[Hashable, Any], Any],
        max_size: int = 64,
        max_delay: float = 0.002,
        announce_ttl: float = 1.0,
        more_coming: Callable[[], bool] | None = None,
        check: Callable[[Any], None] | None = None,
        observe: Observer | None = None,
        concat: Callable[[list], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, not {max_size}")
        self.run = run
        self.max_size = int(max_size)
        self.max_delay = max(0.0, float(max_delay))
        self.announce_ttl = float(announce_ttl)
        self.more_coming = more_coming
        self.check = check
        self.observe = observe
        self.concat = concat or _numpy_concat
        self.clock = clock
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._pending: deque[_Request] = deque()
        self._running = False
        self._filling: _Request | None = None  # the runner's request while its batch fills
        self._announcements: deque[float] = deque()  # when each unredeemed one was made
        self._ids = itertools.count(1)

    @property
    def announced(self) -> int:
        """Announced requests that have not joined yet (within ``announce_ttl``)."""
        with self._lock:
            return self._live_announcements()

    def pending(self) -> int:
        """Requests waiting for a pass (not counting the one running)."""
        with self._lock:
            return len(self._pending)

    def announce(self) -> None:
        """A request is on its way: a forming batch may wait for it (``max_delay`` at most)."""
        with self._lock:
            self._announcements.append(self.clock())

    def withdraw(self) -> None:
        """An announced request will not come (it was refused or revoked before joining)."""
        with self._lock:
            if self._announcements:
                self._announcements.popleft()
            if self._filling is not None:
                self._filling.wake.notify()

    def submit(self, key: Hashable, rows: Any) -> BatchResult:
        """Run ``rows`` (one request's examples) in a batch of requests with the same key."""
        request = _Request(key, rows, self.clock(), threading.Condition(self._lock))
        with self._lock:
            if self._announcements:
                self._announcements.popleft()  # the oldest: it may be this one's, or one that lapses soonest
            self._pending.append(request)
            if self._filling is not None:
                self._filling.wake.notify()  # a runner waiting for its batch to fill
            try:
                while not request.done:
                    if self._running:
                        request.wake.wait()
                    else:
                        self._run_next(request)
            except BaseException:  # e.g. a time limit raised in this thread while it waited
                if request in self._pending:
                    self._pending.remove(request)
                if not self._running and self._pending:
                    self._pending[0].wake.notify()  # it may have been woken to run next
                raise
        if request.error is not None:
            raise request.error
        return request.result

    # -- runner side (called with the lock held) ---------------------------------------
    def _run_next(self, own: _Request) -> None:
        """Form the next batch and run it, the lock released during the pass."""
        self._running = True
        batch: list[_Request] = []
        try:
            batch = self._form_batch(own)
            self._lock.release()
            try:
                self._execute(batch)
            finally:
                self._lock.acquire()
        finally:
            for request in batch:
                if not request.done:  # interrupted before its outcome
                    request.error, request.done = RuntimeError("batch interrupted"), True
                if request is not own:
                    request.wake.notify()
            self._running = False
            if self._pending:
                self._pending[0].wake.notify()  # the oldest waiter runs the next batch

    def _live_announcements(self) -> int:
        lapsed = self.clock() - self.announce_ttl
        while self._announcements and self._announcements[0] < lapsed:
            self._announcements.popleft()
        return len(self._announcements)

    def _coming(self) -> bool:
        return bool(self._live_announcements()) or (self.more_coming is not None and self.more_coming())

    def _bucket_size(self, key: Hashable) -> int:
        return sum(r.size for r in self._pending if r.key == key)

    def _form_batch(self, own: _Request) -> list[_Request]:
        head = self._pending[0]
        if self.max_delay > 0 and head.size < self.max_size:
            deadline = head.arrived + self.max_delay
            self._filling = own
            try:
                while self._coming() and self._bucket_size(head.key) < self.max_size:
                    left = deadline - self.clock()
                    if left <= 0:
                        break
                    own.wake.wait(left)
            finally:
                self._filling = None
        return self._take()

    def _take(self) -> list[_Request]:
        """The oldest pending request's bucket, up to ``max_size`` examples, in arrival order."""
        head = self._pending[0]
        if head.size >= self.max_size:
            self._pending.popleft()
            return [head]  # too large to share a pass: it runs alone
        batch, size = [], 0
        for request in self._pending:
            if request.key == head.key and size + request.size <= self.max_size:
                batch.append(request)
                size += request.size
        for request in batch:
            self._pending.remove(request)
        return batch

    # -- runner side (called without the lock) ------------------------------------------
    def _execute(self, batch: list[_Request]) -> None:
        started = self.clock()
        batch_id = next(self._ids)
        examples = sum(r.size for r in batch)
        delays = [started - r.arrived for r in batch]
        try:
            rows = batch[0].rows if len(batch) == 1 else self.concat([r.rows for r in batch])
            output = self.run(batch[0].key, rows)
        except BaseException as exc:  # the pass failed: so did every request in it
            for request in batch:
                request.error, request.done = exc, True
            raise_later = exc if not isinstance(exc, Exception) else None
        else:
            raise_later = None
            offset = 0
            for request, delay in zip(batch, delays):
                part = output[offset:offset + request.size]
                offset += request.size
                try:
                    if self.check is not None:
                        self.check(part)
                    request.result = BatchResult(part, batch_id, examples, len(batch), delay)
                except Exception as exc:  # this request's rows only
                    request.error = exc
                request.done = True
        if self.observe is not None:
            self.observe(examples, len(batch), delays)
        if raise_later is not None:
            raise raise_later  # KeyboardInterrupt, a hard time limit: not swallowed


def _numpy_concat(parts: list) -> Any:
    import numpy as np

    return np.concatenate(parts, axis=0)
