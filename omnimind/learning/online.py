"""Online mini-batch SGD on a ``torch.nn.Module`` with IS-weighted losses and a divergence guard."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
from torch import nn

from omnimind.config import OPTIMIZERS

from .errors import InvalidFeedback
from .losses import LOSSES, per_sample_loss
from .preprocessing import LABEL_KEYS, is_state_key, table_labels

__all__ = ["OnlineSGDConfig", "OnlineSGDLearner", "StepResult"]


@dataclass
class OnlineSGDConfig:
    """Hyperparameters; ``learning_rate`` may be written while the learner runs.

    >>> OnlineSGDConfig(learning_rate=0.05).loss
    'mse'
    """

    learning_rate: float = 0.01
    optimizer: str = "sgd"  # "sgd", "adam" or "adamw"
    momentum: float = 0.0
    weight_decay: float = 0.0
    #: "mse" or "huber" (regression), "cross_entropy" (class indices), "bce" (0/1 targets);
    #: see :mod:`omnimind.learning.losses`.
    loss: str = "mse"
    grad_clip_norm: float | None = None

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")


@dataclass(frozen=True)
class StepResult:
    """Outcome of one update: mean weighted loss, per-sample losses (pre-update), applied flag.

    >>> StepResult(loss=0.25, per_sample_loss=torch.tensor([0.5, 0.0]), applied=True).applied
    True
    """

    loss: float
    per_sample_loss: torch.Tensor
    applied: bool


def _output_width(model: nn.Module) -> int | None:
    # The last Linear layer's width: regression outputs or the number of classes.
    width = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            width = module.out_features
    return width


# Modules whose forward ignores ``training``; a model built only from these needs no
# train()/eval() toggling (which walks every submodule on each call).
_MODE_FREE = (nn.Sequential, nn.ModuleList, nn.Linear, nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Tanh, nn.Sigmoid,
              nn.SiLU, nn.ELU, nn.Softmax, nn.LogSoftmax, nn.Identity, nn.Flatten, nn.LayerNorm)


def _feature_shape(model: nn.Module) -> tuple[int, ...] | None:
    # Declared by the model factory (omnimind.models.factory), else the first Linear layer
    # fixes the feature width; other models learn it from the first batch.
    declared = getattr(model, "omnimind_input_shape", None)
    if declared is not None:
        return tuple(declared)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            return (module.in_features,)
        if any(True for _ in module.parameters(recurse=False)):
            return None
    return None


class OnlineSGDLearner:
    """Wraps a model and its optimizer for streaming mini-batch updates.

    ``update_batch(inputs, targets, weights=None) -> float``: importance weights
    multiply the per-sample loss. Divergence guard: a non-finite loss skips the
    step, and a step that leaves non-finite weights is undone; both restore the
    weights after the last good step and increment :attr:`diverged_steps`.

    >>> _ = torch.manual_seed(0)
    >>> learner = OnlineSGDLearner(nn.Linear(2, 1), OnlineSGDConfig(learning_rate=0.1))
    >>> x = torch.randn(64, 2); y = x.sum(dim=1, keepdim=True)
    >>> first = learner.update_batch(x, y)
    >>> for _ in range(50): _ = learner.update_batch(x, y)
    >>> learner.update_batch(x, y) < first
    True
    """

    def __init__(self, model: nn.Module, config: OnlineSGDConfig | None = None) -> None:
        self.model = model
        self.config = config if config is not None else OnlineSGDConfig()
        self._reset()

    def _reset(self) -> None:
        params = [p for p in self.model.parameters() if p.requires_grad]
        self._params = params
        if self.config.optimizer in ("adam", "adamw"):
            adam = torch.optim.AdamW if self.config.optimizer == "adamw" else torch.optim.Adam
            # foreach: one fused update over all parameters (small models: per-tensor dispatch dominates).
            self.optimizer: torch.optim.Optimizer = adam(
                params, lr=self.config.learning_rate, weight_decay=self.config.weight_decay, foreach=True
            )
        else:
            self.optimizer = torch.optim.SGD(
                params,
                lr=self.config.learning_rate,
                momentum=self.config.momentum,
                weight_decay=self.config.weight_decay,
            )
        self._feature_shape = _feature_shape(self.model)
        self._output_width = _output_width(self.model)
        self._mode_dependent = any(type(m) not in _MODE_FREE for m in self.model.modules())
        self._last_good = [p.detach().clone() for p in params]
        self._steps = 0
        self._diverged_steps = 0
        self._rejected_batches = 0
        self._last_loss = float("nan")

    # ----------------------------------------------------------------- results
    @property
    def steps(self) -> int:
        """Applied optimizer steps."""
        return self._steps

    @property
    def diverged_steps(self) -> int:
        """Steps skipped because the loss was NaN/inf (weights were restored)."""
        return self._diverged_steps

    @property
    def rejected_batches(self) -> int:
        """Batches refused by :meth:`validate` (``InvalidFeedback``)."""
        return self._rejected_batches

    @property
    def last_loss(self) -> float:
        """Loss of the most recent update (NaN before the first)."""
        return self._last_loss

    @property
    def feature_shape(self) -> tuple[int, ...] | None:
        """Per-sample input shape, known from the model or the first accepted batch."""
        return self._feature_shape

    # -------------------------------------------------------------- validation
    def count_rejected(self) -> None:
        """Count a batch rejected by a caller's own check (e.g. the system's output check)."""
        self._rejected_batches += 1

    def validate(self, inputs: Any, targets: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(inputs, targets)`` as model-ready tensors or raise :class:`InvalidFeedback`.

        Nothing is modified on failure, so the learner stays valid.
        """
        try:
            x = torch.as_tensor(inputs)
            # A model that declares int64 inputs takes token ids (an embedding's); any other takes float32,
            # whole numbers included.
            if getattr(self.model, "omnimind_input_dtype", None) is torch.int64:
                if x.dtype.is_floating_point or x.dtype == torch.bool:
                    raise TypeError(f"token ids must be integers, not {x.dtype}")
                x = x.to(torch.int64)
            else:
                x = x.to(torch.float32)
            y = torch.as_tensor(targets)
        except (TypeError, ValueError, RuntimeError) as exc:
            self._rejected_batches += 1
            raise InvalidFeedback(f"feedback is not numeric: {exc}", reason="dtype") from exc
        try:
            return self._check(x, y)
        except InvalidFeedback:
            self._rejected_batches += 1
            raise

    def _check(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() == 0 or x.shape[0] == 0 or y.numel() == 0:
            raise InvalidFeedback("empty batch", reason="empty")
        if self._feature_shape is not None and x.dim() == len(self._feature_shape):
            x = x.unsqueeze(0)  # a single sample
            y = y.reshape(1, *y.shape) if y.dim() > 0 else y.reshape(1)
        n = x.shape[0]
        if y.dim() == 0 or y.shape[0] != n:
            raise InvalidFeedback(f"{n} inputs but targets of shape {tuple(y.shape)}", reason="length_mismatch")
        if self._feature_shape is not None and tuple(x.shape[1:]) != self._feature_shape:
            raise InvalidFeedback(
                f"inputs must have per-sample shape {self._feature_shape}, got {tuple(x.shape[1:])}",
                reason="shape",
            )
        if x.dtype.is_floating_point and not bool(torch.isfinite(x).all()):
            raise InvalidFeedback("inputs contain NaN or inf", reason="non_finite")
        if self.config.loss == "cross_entropy":
            if y.dtype.is_floating_point:
                if not bool(torch.isfinite(y).all()) or bool((y != y.round()).any()):
                    raise InvalidFeedback("class labels must be finite integers", reason="non_finite")
            y = y.reshape(n).long()
            if bool((y < 0).any()) or (self._output_width is not None and bool((y >= self._output_width).any())):
                raise InvalidFeedback(f"class labels must be in [0, {self._output_width})", reason="label_range")
        else:
            y = y.to(torch.float32)
            if not bool(torch.isfinite(y).all()):
                raise InvalidFeedback("targets contain NaN or inf", reason="non_finite")
            if self.config.loss == "bce" and bool(((y < 0) | (y > 1)).any()):
                raise InvalidFeedback("binary targets must lie in [0, 1]", reason="label_range")
            if y.dim() == 1:
                y = y.unsqueeze(1)  # (n,) -> (n, 1) to match a single-output regressor
            if self._output_width is not None and tuple(y.shape[1:]) != (self._output_width,):
                raise InvalidFeedback(
                    f"targets must have per-sample shape ({self._output_width},), got {tuple(y.shape[1:])}",
                    reason="shape",
                )
        if self._feature_shape is None:
            self._feature_shape = tuple(x.shape[1:])
        return x, y

    # ------------------------------------------------------------------ update
    def set_mode(self, training: bool) -> None:
        """``model.train(training)``, skipped for models whose layers ignore the mode."""
        if self._mode_dependent and self.model.training != training:
            self.model.train(training)

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        """Model output in eval mode, without building a graph."""
        self.set_mode(False)
        with torch.no_grad():
            return self.model(inputs)

    def per_sample_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Loss of each sample (averaged over output dims; see :mod:`omnimind.learning.losses`)."""
        try:
            return per_sample_loss(self.config.loss, outputs, targets)
        except ValueError as exc:
            raise InvalidFeedback(str(exc), reason="shape") from None

    def step(self, inputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None) -> StepResult:
        """One optimizer step on validated tensors (see :meth:`validate`)."""
        for group in self.optimizer.param_groups:  # the config is the source of truth for lr
            group["lr"] = self.config.learning_rate
        self.set_mode(True)
        per_sample = self.per_sample_loss(self.model(inputs), targets)
        loss = (per_sample * weights).mean() if weights is not None else per_sample.mean()
        loss_value = float(loss.detach())
        self._last_loss = loss_value
        if not math.isfinite(loss_value):
            self._recover()
            return StepResult(loss_value, per_sample.detach(), applied=False)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip_norm is not None:
            nn.utils.clip_grad_norm_(self._params, self.config.grad_clip_norm)
        self.optimizer.step()
        if not self._weights_finite():
            # A finite loss can still produce an overflowing step; undo it now so
            # that predictions made before the next update never see inf/NaN weights.
            self._recover()
            return StepResult(loss_value, per_sample.detach(), applied=False)
        # Finite weights after a finite-loss step: the new rollback point.
        torch._foreach_copy_(self._last_good, [p.detach() for p in self._params])
        self._steps += 1
        return StepResult(loss_value, per_sample.detach(), applied=True)

    def _weights_finite(self) -> bool:
        # One fused reduction over all parameters; an overflowing norm also counts
        # as divergence, which is what it is.
        norms = torch._foreach_norm([p.detach() for p in self._params])
        return math.isfinite(sum(float(n) for n in norms))

    def update_batch(self, inputs: Any, targets: Any, weights: Any = None) -> float:
        """Validate, then take one step; returns the (weighted) mean loss before the step."""
        x, y = self.validate(inputs, targets)
        w = None
        if weights is not None:
            w = torch.as_tensor(weights, dtype=torch.float32).reshape(-1)
            if w.shape[0] != x.shape[0] or not bool(torch.isfinite(w).all()):
                self._rejected_batches += 1
                raise InvalidFeedback("weights must be finite, one per sample", reason="length_mismatch")
        return self.step(x, y, w).loss

    def load_weights(self, state_dict: Mapping[str, torch.Tensor]) -> bool:
        """Continue from other weights (a served version): in place, with a fresh
        optimizer state, and those weights as the divergence guard's rollback point.

        The label table is append-only: when the incoming table is absent or a prefix of the
        learner's (the version predates labels the learner has learned since), the
        learner keeps its own. Returns True when the incoming table gives a known
        label another output: indices held elsewhere (replay, pending samples) then
        mean other classes."""
        own = self.model.state_dict()
        # Weights published before preprocessing state existed: fresh (identity) statistics, as serving
        # loads them (serialization.load_into), and the learner's own label table (an absent table is
        # the empty prefix of it).
        kept = {k: own[k] if k in LABEL_KEYS else torch.zeros_like(v)
                for k, v in own.items() if is_state_key(k) and k not in state_dict}
        mine, theirs = table_labels(own), table_labels(state_dict)
        conflict = False
        if mine is not None and theirs is not None:
            if theirs == mine[: len(theirs)]:
                kept.update({k: own[k] for k in LABEL_KEYS})
            else:
                conflict = mine != theirs[: len(mine)]
        self.model.load_state_dict({**state_dict, **kept}, strict=True)
        self.optimizer.state.clear()
        self.optimizer.zero_grad(set_to_none=True)
        torch._foreach_copy_(self._last_good, [p.detach() for p in self._params])
        return conflict

    def _recover(self) -> None:
        self._diverged_steps += 1
        with torch.no_grad():
            torch._foreach_copy_([p.data for p in self._params], self._last_good)
        # Momentum/Adam moments may hold the non-finite values that caused this.
        self.optimizer.state.clear()
        self.optimizer.zero_grad(set_to_none=True)

    # ------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        """Model weights, optimizer state, config and counters (tensors + JSON scalars)."""
        return {
            "config": asdict(self.config),
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "counters": {
                "steps": self._steps,
                "diverged_steps": self._diverged_steps,
                "rejected_batches": self._rejected_batches,
            },
            "feature_shape": list(self._feature_shape) if self._feature_shape is not None else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` into this learner's model (same architecture)."""
        self.config = OnlineSGDConfig(**state["config"])
        self.model.load_state_dict(state["model"])
        self._reset()
        self.optimizer.load_state_dict(state["optimizer"])
        counters = state["counters"]
        self._steps = int(counters["steps"])
        self._diverged_steps = int(counters["diverged_steps"])
        self._rejected_batches = int(counters["rejected_batches"])
        if state.get("feature_shape") is not None:
            self._feature_shape = tuple(int(d) for d in state["feature_shape"])
