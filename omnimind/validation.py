"""Turn untrusted JSON payloads into tensors, or a typed ``InvalidInput``.

Checks run on NumPy before anything reaches torch, so a bad request costs
microseconds and never leaves a torch traceback in the result.

>>> batch, single = as_examples([0.5, 1.0], example_shape=(2,), max_batch=8)
>>> batch.shape, single
((1, 2), True)
>>> as_examples([[1, 2, 3]], example_shape=(2,), max_batch=8)
Traceback (most recent call last):
...
omnimind.errors.InvalidInput: shape: expected examples of shape (2,) or a batch of them, got shape (1, 3)
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from omnimind.errors import InvalidInput

_NUMERIC_KINDS = "fiu"


def as_array(value: Any, name: str) -> np.ndarray:
    """A float32 array of finite numbers, or ``InvalidInput``."""
    if value is None:
        raise InvalidInput("missing_field", f"'{name}' is required")
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple, int, float)):
        raise InvalidInput("type", f"'{name}' must be a number or a (nested) list of numbers, not {type(value).__name__}")
    try:
        array = np.asarray(value)
    except ValueError as exc:  # ragged nesting
        raise InvalidInput("shape", f"'{name}' is ragged: {exc}") from None
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise InvalidInput("type", f"'{name}' must contain only numbers (got {array.dtype.kind!r} data)")
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise InvalidInput("non_finite", f"'{name}' contains NaN or infinity")
    return array


def as_examples(
    value: Any, example_shape: Sequence[int], max_batch: int, name: str = "inputs"
) -> tuple[np.ndarray, bool]:
    """Return ``(batch, single)``: a ``(B, *example_shape)`` array and whether the
    caller sent one example rather than a batch."""
    array = as_array(value, name)
    shape = tuple(example_shape)
    if array.shape == shape:
        return array[np.newaxis], True
    if array.ndim == len(shape) + 1 and array.shape[1:] == shape:
        if array.shape[0] == 0:
            raise InvalidInput("empty", f"'{name}' is an empty batch")
        if array.shape[0] > max_batch:
            raise InvalidInput("batch_too_large", f"batch of {array.shape[0]} exceeds the limit of {max_batch}")
        return array, False
    if array.ndim >= 1 and array.shape[0] == 0:
        raise InvalidInput("empty", f"'{name}' is an empty batch")
    raise InvalidInput(
        "shape", f"expected examples of shape {shape} or a batch of them, got shape {array.shape}"
    )


def as_labels(value: Any, count: int, single: bool, name: str = "targets") -> np.ndarray:
    """A classifier's targets: one label (a string, an integer or a bool) per example, as an
    object array of ``count`` labels, or ``InvalidInput``.

    >>> as_labels(["cat", "dog"], 2, single=False).tolist(), as_labels("cat", 1, single=True).tolist()
    (['cat', 'dog'], ['cat'])
    >>> as_labels([[2], [0]], 2, single=False).tolist()  # a column vector, as cross_entropy targets were sent
    [2, 0]
    >>> as_labels([1.5], 1, single=False)
    Traceback (most recent call last):
    ...
    omnimind.errors.InvalidInput: type: 'targets' labels must be strings, integers or booleans (got 1.5)
    """
    if value is None:
        raise InvalidInput("missing_field", f"'{name}' is required")
    labels = [value] if single and not isinstance(value, list) else value
    if single and isinstance(value, list) and len(value) == 1:
        labels = value
    if not isinstance(labels, (list, tuple)):
        raise InvalidInput("type", f"'{name}' must be a list of labels, one per example")
    out = []
    for label in labels:
        if isinstance(label, list) and len(label) == 1:
            label = label[0]
        if isinstance(label, float) and np.isfinite(label) and label.is_integer():
            label = int(label)
        if not isinstance(label, (str, int)):  # a bool is an int
            raise InvalidInput("type", f"'{name}' labels must be strings, integers or booleans (got {label!r})")
        out.append(label)
    if len(out) != count:
        raise InvalidInput("shape", f"got {count} example(s) but {len(out)} label(s)")
    array = np.empty(len(out), dtype=object)
    array[:] = out
    return array
