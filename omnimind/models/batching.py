"""Dynamic batching: concurrent requests in one process share one forward pass.

Task threads (the threads pool) call :meth:`DynamicBatcher.submit` with their own,
already validated rows. There is no batching thread: the caller that finds no pass
running becomes the runner (flat combining). It takes the oldest pending request's
*bucket* — same key, i.e. the same model version object and example shape — up to
``max_size`` examples in arrival order, runs ``run(key, rows)`` once outside the lock,
hands every request its own slice of the output and lets the next waiter run the
next batch. Requests that arrive while a pass runs form the next batch (Triton /
Ray Serve style).

- **A lone request does not pay the delay.** The runner waits for a batch to fill
  (at most ``max_delay`` seconds after the oldest request arrived) only under load:
  when other requests were already waiting as the batch formed, or the previous
  batch, at most ``load_window`` seconds ago, merged several requests. The solo pool
  therefore gets batches of one and never waits.
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
    __slots__ = ("key", "rows", "size", "arrived", "result", "error", "done")

    def __init__(self, key: Hashable, rows: Any, arrived: float) -> None:
        self.key, self.rows, self.size, self.arrived = key, rows, len(rows), arrived
        self.result: BatchResult | None = None
        self.error: BaseException | None = None
        self.done = False


class DynamicBatcher:
    """Merges concurrent :meth:`submit` calls with the same key into one ``run`` call.

    ``run(key, rows)`` gets the concatenated rows (``concat``, NumPy by default) and
    returns an indexable output with one row per input row. Hyperparameters:
    ``max_size`` examples per pass, ``max_delay`` seconds of waiting for a batch to
    fill under load, ``load_window`` seconds after a merged batch during which a new
    batch still counts as "under load".

    >>> import numpy as np
    >>> batcher = DynamicBatcher(lambda key, rows: rows.sum(axis=1, keepdims=True), max_size=4)
    >>> batcher.submit(("v1", (2,)), np.array([[1.0, 2.0]])).rows.tolist()
    [[3.0]]
    """

    def __init__(
        self,
        run: Callable[[Hashable, Any], Any],
        max_size: int = 64,
        max_delay: float = 0.002,
        load_window: float = 1.0,
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
        self.load_window = float(load_window)
        self.check = check
        self.observe = observe
        self.concat = concat or _numpy_concat
        self.clock = clock
        self._cond = threading.Condition()
        self._pending: deque[_Request] = deque()
        self._running = False
        self._ids = itertools.count(1)
        self._last_merged_at = float("-inf")  # end of the last pass that merged >1 request

    def submit(self, key: Hashable, rows: Any) -> BatchResult:
        """Run ``rows`` (one request's examples) in a batch of requests with the same key."""
        request = _Request(key, rows, self.clock())
        with self._cond:
            self._pending.append(request)
            self._cond.notify_all()  # a runner waiting for its batch to fill
            try:
                while not request.done:
                    if self._running:
                        self._cond.wait()
                    else:
                        self._run_next()
            except BaseException:  # e.g. a time limit raised in this thread while it waited
                if request in self._pending:
                    self._pending.remove(request)
                raise
        if request.error is not None:
            raise request.error
        return request.result

    def pending(self) -> int:
        """Requests waiting for a pass (not counting the one running)."""
        with self._cond:
            return len(self._pending)

    # -- runner side (called with the lock held) ---------------------------------------
    def _run_next(self) -> None:
        """Form the next batch and run it, the lock released during the pass."""
        self._running = True
        batch: list[_Request] = []
        try:
            batch = self._form_batch()
            self._cond.release()
            try:
                self._execute(batch)
            finally:
                self._cond.acquire()
        finally:
            for abandoned in (r for r in batch if not r.done):  # interrupted before its outcome
                abandoned.error, abandoned.done = RuntimeError("batch interrupted"), True
            self._running = False
            self._cond.notify_all()

    def _take(self) -> list[_Request]:
        """The oldest pending request's bucket, up to ``max_size`` examples, in arrival order."""
        head = self._pending[0]
        if head.size >= self.max_size:
            self._pending.popleft()
            return [head]  # too large to share a pass: it runs alone
        batch, size = [], 0
        for request in list(self._pending):
            if request.key == head.key and size + request.size <= self.max_size:
                batch.append(request)
                size += request.size
        for request in batch:
            self._pending.remove(request)
        return batch

    def _bucket_size(self, key: Hashable) -> int:
        return sum(r.size for r in self._pending if r.key == key)

    def _form_batch(self) -> list[_Request]:
        head = self._pending[0]
        under_load = len(self._pending) > 1 or self.clock() - self._last_merged_at <= self.load_window
        if self.max_delay > 0 and under_load and head.size < self.max_size:
            deadline = head.arrived + self.max_delay
            while self._bucket_size(head.key) < self.max_size:
                left = deadline - self.clock()
                if left <= 0:
                    break
                self._cond.wait(left)
        return self._take()

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
        if len(batch) > 1:
            self._last_merged_at = self.clock()
        if self.observe is not None:
            self.observe(examples, len(batch), delays)
        if raise_later is not None:
            raise raise_later  # KeyboardInterrupt, a hard time limit: not swallowed


def _numpy_concat(parts: list) -> Any:
    import numpy as np

    return np.concatenate(parts, axis=0)
