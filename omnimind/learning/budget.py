"""How many update passes a ``learn`` call may take: more while the stream is slow.

A stream of a few samples per call leaves the learner idle between calls;
extra passes over the newest and replayed samples turn that idle time into
learning (River and deep-river take one step per sample; a mini-batch learner
needs several small steps to match them). A fast stream leaves no idle time,
and then one pass per call keeps the learner's throughput.

The budget is a share of the time between calls: with calls ``interval``
seconds apart and a pass costing ``step`` seconds (both smoothed), a call gets
``floor(share * interval / step)`` passes, between 1 and ``max_passes``. Pure:
the runner passes the clock in.

>>> slow = UpdateBudget(max_passes=8, share=0.5)
>>> slow.passes(now=0.0)                      # nothing measured yet
1
>>> slow.spent(seconds=0.001, steps=1)
>>> slow.passes(now=0.1)                      # 0.1 s between calls, 1 ms a pass: 50 would fit
8
>>> fast = UpdateBudget(max_passes=8, share=0.5)
>>> for call in range(5):
...     passes = fast.passes(now=call * 0.002)
...     fast.spent(seconds=0.001 * passes, steps=passes)
>>> passes                                    # a call every 2 ms, 1 ms a pass
1
"""
from __future__ import annotations

import math

__all__ = ["UpdateBudget"]


class UpdateBudget:
    """Passes per ``learn`` call from the measured call interval and pass cost (see the module docstring).

    Hyperparameters: ``max_passes``, ``share`` (of the time between calls spent
    learning), ``smoothing`` (weight of the newest measurement in the running means).
    """

    def __init__(self, *, max_passes: int = 8, share: float = 0.5, smoothing: float = 0.2) -> None:
        if max_passes < 1:
            raise ValueError("max_passes must be at least 1")
        self.max_passes = int(max_passes)
        self.share = float(share)
        self.smoothing = float(smoothing)
        self._reset()

    def _reset(self) -> None:
        self._last_call: float | None = None
        self._interval: float | None = None
        self._step: float | None = None

    @property
    def interval(self) -> float | None:
        """Smoothed seconds between calls (None before two calls)."""
        return self._interval

    @property
    def step_seconds(self) -> float | None:
        """Smoothed seconds per pass (None before the first)."""
        return self._step

    def passes(self, now: float) -> int:
        """The passes the call arriving at ``now`` may take."""
        gap = None
        if self._last_call is not None:
            gap = max(0.0, now - self._last_call)
            self._interval = gap if self._interval is None else self._mix(self._interval, gap)
        self._last_call = now
        if gap is None or not self._step:
            return 1
        # The smoothed pace, or this gap when shorter: a stream that speeds up gets fewer passes at once.
        pace = min(self._interval, gap)
        return max(1, min(self.max_passes, math.floor(self.share * pace / self._step)))

    def spent(self, seconds: float, steps: int) -> None:
        """The call took ``steps`` passes in ``seconds``."""
        if steps <= 0:
            return
        per_step = max(seconds, 0.0) / steps
        self._step = per_step if self._step is None else self._mix(self._step, per_step)

    def _mix(self, old: float, new: float) -> float:
        return (1.0 - self.smoothing) * old + self.smoothing * new
