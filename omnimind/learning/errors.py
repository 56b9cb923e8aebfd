"""Typed errors of the learning core.

Bad feedback is rejected *before* it reaches the model, so a caller (the Celery
``learn`` task) can turn the exception into a clear task result while the
learner keeps a valid state.

>>> err = InvalidFeedback("empty batch", reason="empty")
>>> isinstance(err, ValueError), err.reason
(True, 'empty')
"""

from __future__ import annotations

__all__ = ["InvalidFeedback"]


class InvalidFeedback(ValueError):
    """Feedback that cannot be learned from (NaN/inf, wrong shape, empty, mismatched lengths).

    ``reason`` is a short machine-readable tag ("non_finite", "shape", "empty",
    "length_mismatch", "dtype", "label_range") suitable as a metric label.

    >>> InvalidFeedback("inputs contain NaN", reason="non_finite").reason
    'non_finite'
    """

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason
