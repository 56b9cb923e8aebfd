"""Shadow training and the validation gate (seed: ``ContinuousTrainer``, ``ModelUpdateManager``).

A shadow copy is trained on the experience window (seed defaults: 5 epochs of
Adam at lr 1e-3, batches of 32) and validated against the active model on a
held-out slice; it may replace the active model only if its validation loss is
at most ``tolerance`` (1.05) times the active model's. Pure: no I/O, no clock;
randomness from a seeded generator, waiting through an injected ``sleep``.

>>> import torch
>>> from torch import nn
>>> _ = torch.manual_seed(0)
>>> x = torch.randn(400, 4); y = x.sum(dim=1, keepdim=True)
>>> trainer = ContinuousTrainer(ModelVersionManager(nn.Linear(4, 1)), rng=np.random.default_rng(0))
>>> outcome = trainer.retrain(x, y)
>>> outcome.accepted, outcome.val_loss < outcome.current_loss
(True, True)
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import numpy as np
import torch
from torch import nn

from .losses import per_sample_loss
from .versions import ModelVersionManager

__all__ = ["ContinuousTrainer", "ModelUpdateManager", "RetrainOutcome"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainOutcome:
    """What one retrain did; ``shadow`` is the trained candidate (None when skipped)."""

    accepted: bool
    reason: str
    samples: int
    val_loss: float | None = None
    current_loss: float | None = None
    shadow: nn.Module | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "reason": self.reason, "samples": self.samples,
                "val_loss": self.val_loss, "current_loss": self.current_loss}


class ContinuousTrainer:
    """Trains shadows of ``version_manager``'s active model and gates them.

    Hyperparameters: ``epochs``, ``learning_rate``, ``batch_size``, ``tolerance``
    (accept if ``val_loss <= tolerance * current_loss``), ``validation_fraction``
    (the newest share of the window, held out), ``min_samples`` (fewer: skip).
    """

    def __init__(
        self,
        version_manager: ModelVersionManager,
        *,
        epochs: int = 5,
        learning_rate: float = 1e-3,
        batch_size: int = 32,
        tolerance: float = 1.05,
        validation_fraction: float = 0.2,
        min_samples: int = 100,
        loss: str = "mse",
        rng: np.random.Generator | int | None = None,
    ) -> None:
        self.version_manager = version_manager
        self.epochs = int(epochs)
        self.learning_rate = float(learning_rate)
        self.batch_size = int(batch_size)
        self.tolerance = float(tolerance)
        self.validation_fraction = float(validation_fraction)
        self.min_samples = int(min_samples)
        self.loss = loss
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    def loss_of(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        """Mean loss of ``model`` on ``(x, y)`` without touching its gradients."""
        was_training = model.training
        model.eval()
        with torch.no_grad():
            value = float(self._criterion(model(x), y))
        model.train(was_training)
        return value

    def train_shadow(self, shadow: nn.Module, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
        """The seed's loop: Adam, ``epochs`` passes of shuffled mini-batches."""
        optimizer = torch.optim.Adam(shadow.parameters(), lr=self.learning_rate)
        shadow.train()
        n = x.shape[0]
        for _ in range(self.epochs):
            order = torch.from_numpy(self.rng.permutation(n))
            for start in range(0, n, self.batch_size):
                batch = order[start : start + self.batch_size]
                optimizer.zero_grad()
                loss = self._criterion(shadow(x[batch]), y[batch])
                loss.backward()
                optimizer.step()
        return shadow.eval()

    def retrain(self, x: torch.Tensor, y: torch.Tensor, shadow: nn.Module | None = None) -> RetrainOutcome:
        """Train a shadow (default: a copy of the active model) on all but the newest
        ``validation_fraction`` of ``(x, y)`` and gate it on that newest slice."""
        n = int(x.shape[0])
        if n < self.min_samples:
            return RetrainOutcome(False, f"only {n} samples (need {self.min_samples})", n)
        held_out = max(1, int(round(n * self.validation_fraction)))
        x_train, y_train, x_val, y_val = x[:-held_out], y[:-held_out], x[-held_out:], y[-held_out:]
        shadow = shadow if shadow is not None else self.version_manager.create_shadow_copy()
        self.train_shadow(shadow, x_train, y_train)
        val_loss = self.loss_of(shadow, x_val, y_val)
        current_loss = self.loss_of(self.version_manager.active_model, x_val, y_val)
        if not np.isfinite(val_loss):
            return RetrainOutcome(False, "shadow diverged (non-finite validation loss)", n, val_loss, current_loss)
        if val_loss <= current_loss * self.tolerance:
            return RetrainOutcome(True, "validated", n, val_loss, current_loss, shadow)
        return RetrainOutcome(
            False, f"validation loss {val_loss:.4g} > {self.tolerance} x current {current_loss:.4g}", n,
            val_loss, current_loss, shadow,
        )

    def _criterion(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.per_sample_loss(output, target).mean()

    def per_sample_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of each sample (see :mod:`omnimind.learning.losses`)."""
        if self.loss == "cross_entropy":
            target = target.reshape(-1).long()
        return per_sample_loss(self.loss, output, target.reshape(output.shape) if self.loss != "cross_entropy"
                               else target)


class ModelUpdateManager:
    """The seed's background loop: every ``interval`` seconds collect the training
    data, retrain a shadow, and swap it in if it validates.

    ``collect(): -> (x, y)`` supplies the data; ``sleep`` is injected (asyncio's by
    default) so tests drive the loop without waiting. In the farm the Raft leader's
    schedule plays this role (``tasks.training.retrain``).
    """

    def __init__(
        self,
        base_model: nn.Module,
        collect: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None,
        *,
        interval: float = 300.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        trainer_options: dict | None = None,
    ) -> None:
        self.version_manager = ModelVersionManager(base_model)
        self.continuous_trainer = ContinuousTrainer(self.version_manager, **(trainer_options or {}))
        self.update_queue: asyncio.Queue = asyncio.Queue()
        self.collect = collect
        self.interval = float(interval)
        self.sleep = sleep
        self.outcomes: list[RetrainOutcome] = []

    async def start_continuous_training(self, rounds: int | None = None) -> None:
        """Run forever (or ``rounds`` times): wait, collect, retrain, swap if valid."""
        done = 0
        while rounds is None or done < rounds:
            await self.sleep(self.interval)
            await self.update_once()
            done += 1

    async def update_once(self) -> RetrainOutcome:
        if self.collect is None:
            raise RuntimeError("ModelUpdateManager needs a collect() callable to get training data")
        x, y = self.collect()
        outcome = self.continuous_trainer.retrain(x, y)
        if outcome.accepted:
            self.version_manager.swap_models()
            logger.info("Model updated to v%d", self.version_manager.version_counter)
        else:
            # The rejected shadow is simply replaced by the next create_shadow_copy().
            logger.warning("Shadow model failed validation - keeping current (%s)", outcome.reason)
        self.outcomes.append(outcome)
        await self.update_queue.put(outcome)
        return outcome
