"""Prequential (predict-then-learn) metrics over a sliding window."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = ["PrequentialMetrics"]


class PrequentialMetrics:
    """Loss (and accuracy, for classifiers) of predictions made *before* learning from each sample.

    Keeps the last ``window_size`` per-sample values in NumPy ring buffers plus
    running totals since creation.

    >>> m = PrequentialMetrics(window_size=3)
    >>> m.update(losses=[1.0, 2.0, 3.0, 4.0], correct=[1, 0, 1, 1])
    >>> m.loss, m.accuracy, m.count, m.total_loss
    (3.0, 0.6666666666666666, 4, 2.5)
    """

    def __init__(self, window_size: int = 1000) -> None:
        if window_size < 1:
            raise ValueError("window_size must be >= 1")
        self.window_size = int(window_size)
        self._reset()

    def _reset(self) -> None:
        self._losses = np.zeros(self.window_size, dtype=np.float64)
        self._correct = np.zeros(self.window_size, dtype=np.float64)
        self._has_accuracy = False
        self._next = 0
        self._filled = 0
        self._count = 0
        self._loss_sum = 0.0

    def update(self, losses: Any, correct: Any = None) -> None:
        """Record per-sample losses (and 0/1 correctness) of one batch, in stream order."""
        losses = np.asarray(losses, dtype=np.float64).ravel()
        n = losses.size
        if n == 0:
            return
        slots = (self._next + np.arange(n)) % self.window_size
        # With n > window only the last ``window`` writes survive, which is what we want.
        self._losses[slots] = losses
        if correct is not None:
            self._has_accuracy = True
            self._correct[slots] = np.asarray(correct, dtype=np.float64).ravel()
        self._next = int((self._next + n) % self.window_size)
        self._filled = min(self.window_size, self._filled + n)
        self._count += n
        self._loss_sum += float(losses.sum())

    @property
    def count(self) -> int:
        """Samples recorded since creation."""
        return self._count

    @property
    def loss(self) -> float:
        """Mean loss over the window (NaN when empty)."""
        return float(self._losses[: self._filled].mean()) if self._filled else float("nan")

    @property
    def accuracy(self) -> float | None:
        """Accuracy over the window, or None for regression."""
        if not self._has_accuracy or not self._filled:
            return None
        return float(self._correct[: self._filled].mean())

    @property
    def total_loss(self) -> float:
        """Mean loss since creation."""
        return self._loss_sum / self._count if self._count else float("nan")

    def snapshot(self) -> dict:
        """JSON-able summary for ``omnimind status``."""
        return {"count": self.count, "loss": self.loss, "accuracy": self.accuracy, "total_loss": self.total_loss}

    def state_dict(self) -> dict:
        """Window arrays (oldest first) and totals."""
        order = (self._next - self._filled + np.arange(self._filled)) % self.window_size
        return {
            "window_size": self.window_size,
            "losses": self._losses[order].copy(),
            "correct": self._correct[order].copy() if self._has_accuracy else None,
            "count": self._count,
            "loss_sum": self._loss_sum,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.window_size = int(state["window_size"])
        self._reset()
        self.update(state["losses"], state["correct"])
        self._count, self._loss_sum = int(state["count"]), float(state["loss_sum"])
