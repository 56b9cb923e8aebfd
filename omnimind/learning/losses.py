"""The loss vocabulary of the learning core: one name per loss, defined once.

``mse`` and ``huber`` fit regression targets (one or several outputs);
``cross_entropy`` fits class indices with one logit per class; ``bce`` fits 0/1
targets with one logit per binary output. Every loss here is per sample (the
mean over output dimensions), so replay priorities, the challenger gate and the
prequential metrics all read the same number; for the classifier losses that
number is the log loss.

>>> import torch
>>> per_sample_loss("mse", torch.tensor([[1.0], [3.0]]), torch.tensor([[0.0], [3.0]])).tolist()
[1.0, 0.0]
>>> round(per_sample_loss("bce", torch.tensor([[0.0]]), torch.tensor([[1.0]])).item(), 4)
0.6931
"""
from __future__ import annotations

import torch
from torch import nn

from omnimind.config import LOSSES

__all__ = ["LOSSES", "error_magnitude", "per_sample_errors", "per_sample_loss"]

#: Transition point of the Huber loss (quadratic below, linear above), in target units.
HUBER_DELTA = 1.0


def per_sample_loss(loss: str, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """One loss value per sample: shape ``(n,)``."""
    if loss == "cross_entropy":
        return nn.functional.cross_entropy(outputs, targets, reduction="none")
    if targets.shape != outputs.shape:
        raise ValueError(f"targets of shape {tuple(targets.shape)} do not match outputs {tuple(outputs.shape)}")
    if loss == "mse":
        values = (outputs - targets).square()
    elif loss == "huber":
        values = nn.functional.huber_loss(outputs, targets, reduction="none", delta=HUBER_DELTA)
    elif loss == "bce":
        values = nn.functional.binary_cross_entropy_with_logits(outputs, targets, reduction="none")
    else:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    return values.reshape(values.shape[0], -1).mean(dim=1)


def per_sample_errors(loss: str, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
    """A classifier's mistakes, one 0/1 float per sample (their mean is the error rate);
    None for a regression loss.

    >>> per_sample_errors("cross_entropy", torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])).tolist()
    [0.0, 1.0]
    """
    if loss == "cross_entropy":
        return (outputs.argmax(dim=1) != targets).to(torch.float32)
    if loss == "bce":
        wrong = (outputs > 0).to(targets.dtype) != targets
        return wrong.reshape(wrong.shape[0], -1).any(dim=1).to(torch.float32)
    return None


def error_magnitude(loss: str, per_sample: torch.Tensor) -> torch.Tensor:
    """A sample's error in the units a drift detector and replay priority read:
    ``|error|`` (the root of the squared error) for ``mse``, the loss itself otherwise."""
    return per_sample.sqrt() if loss == "mse" else per_sample
