"""The online learning loop (seed: ``OnlineLearningSystem``): predict, detect drift, replay, update."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import asdict
from typing import Any, AsyncIterator, Callable, Mapping

import numpy as np
import torch
from torch import nn

from . import preprocessing
from .drift import ConceptDriftDetector
from .errors import InvalidFeedback
from .events import DriftEvent, ObserveResult
from .losses import error_magnitude, per_sample_errors
from .online import OnlineSGDConfig, OnlineSGDLearner
from .prequential import PrequentialMetrics
from .replay import PrioritizedReplayBuffer
from .spec import ModelSpec
from .versions import ModelVersionManager

__all__ = ["OnlineLearningSystem", "DriftEvent", "ObserveResult"]

logger = logging.getLogger(__name__)


class OnlineLearningSystem:
    """Learns from a feedback stream in mini-batches of ``batch_size`` new + ``replay_batch_size`` replayed.

    Each sample is first predicted (prequential metrics, drift detector, replay
    priority from its error), then accumulated; every ``batch_size`` samples one
    IS-weighted step runs and the replay priorities of the whole mini-batch are
    refreshed from the step's errors. The drift detector watches the error
    magnitude (one-sided CUSUM by default: only a worsening model is drift). A drift doubles ``config.learning_rate``
    for the next ``lr_boost_batches`` updates (``observe`` calls with ``step_every_observe``) and emits a :class:`DriftEvent`
    (``drift_events`` and the ``on_drift`` callback).

    The seed's schedule waits for ``batch_size`` samples. With
    ``step_every_observe`` every :meth:`observe` steps on its new samples at
    once (at most ``batch_size`` per step), and ``observe(..., passes=k)`` adds
    ``k - 1`` steps on its newest samples with fresh replayed ones: the many
    small updates a slow stream leaves time for. With a ``spec`` the model
    carries online preprocessing (:mod:`omnimind.learning.preprocessing`): each
    batch updates the input and target statistics before it is predicted, the
    replay buffer keeps raw samples, and targets are encoded at every step
    with the current statistics.

    >>> _ = torch.manual_seed(0)
    >>> system = OnlineLearningSystem(nn.Linear(4, 1), rng=np.random.default_rng(0))
    >>> x = torch.randn(64, 4); y = x.sum(dim=1, keepdim=True)
    >>> result = system.observe(x, y)
    >>> result.accepted, result.updates, system.batches
    (64, 2, 2)
    >>> len(result.sample_losses), system.model_manager.active_version
    (64, 0)
    >>> system.continue_from(3); system.model_manager.active_version
    3
    """

    def __init__(
        self,
        base_model: nn.Module,
        *,
        config: OnlineSGDConfig | None = None,
        batch_size: int = 32,
        replay_batch_size: int = 16,
        replay_capacity: int = 10_000,
        lr_boost_factor: float = 2.0,
        lr_boost_batches: int = 10,
        drift_window: int = 100,
        drift_method: str = "cusum",
        metrics_window: int = 1000,
        rng: np.random.Generator | int | None = None,
        on_drift: Callable[[DriftEvent], None] | None = None,
        max_drift_events: int = 1000,
        forget_replay_on_drift: bool = True,
        step_every_observe: bool = False,
        spec: ModelSpec | None = None,
    ) -> None:
        self.model = base_model
        self.online_learner = OnlineSGDLearner(base_model, config)
        self.replay_buffer = PrioritizedReplayBuffer(capacity=replay_capacity, rng=rng)
        # The loop watches the error *magnitude* and only for increases: a model that
        # is still converging (errors shrinking) must not look like drift.
        drift_params = {"direction": "up"} if drift_method == "cusum" else {}
        self.drift_detector = ConceptDriftDetector(window_size=drift_window, method=drift_method, **drift_params)
        self.model_manager = ModelVersionManager(base_model)
        self.metrics = PrequentialMetrics(metrics_window)
        self.batch_size = int(batch_size)
        self.replay_batch_size = int(replay_batch_size)
        self.lr_boost_factor = float(lr_boost_factor)
        self.lr_boost_batches = int(lr_boost_batches)
        self.max_drift_events = int(max_drift_events)
        # After a change the old concept's samples have the largest errors, so a
        # prioritized replay would keep training on them: replay post-change only.
        self.forget_replay_on_drift = bool(forget_replay_on_drift)
        self.on_drift = on_drift
        self.step_every_observe = bool(step_every_observe)
        self.spec = spec
        self._reset()

    def _reset(self) -> None:
        self._pending_x: list[torch.Tensor] = []
        self._pending_y: list[torch.Tensor] = []
        self._pending_slots: list[np.ndarray] = []
        self._pending_count = 0
        self._samples = 0
        self._batches = 0
        self._boost_remaining = 0
        self._drift_events: deque[DriftEvent] = deque(maxlen=self.max_drift_events)

    # ----------------------------------------------------------------- results
    @property
    def config(self) -> OnlineSGDConfig:
        """The learner's live config (``learning_rate`` is writable)."""
        return self.online_learner.config

    @property
    def samples_seen(self) -> int:
        """Accepted samples."""
        return self._samples

    @property
    def batches(self) -> int:
        """Mini-batch updates attempted (applied or skipped by the divergence guard)."""
        return self._batches

    @property
    def pending(self) -> int:
        """Accepted samples waiting for the next update."""
        return self._pending_count

    @property
    def lr_boost_remaining(self) -> int:
        """Updates left at the boosted learning rate (0 when not boosted)."""
        return self._boost_remaining

    @property
    def diverged_steps(self) -> int:
        """Updates skipped because the loss was NaN/inf (weights restored)."""
        return self.online_learner.diverged_steps

    @property
    def rejected_batches(self) -> int:
        """Feedback batches refused with :class:`InvalidFeedback`."""
        return self.online_learner.rejected_batches

    @property
    def drift_events(self) -> tuple[DriftEvent, ...]:
        """Recent drift events, oldest first."""
        return tuple(self._drift_events)

    def drain_drift_events(self) -> list[DriftEvent]:
        """Return and forget the recorded drift events (for a coordinator that polls)."""
        events = list(self._drift_events)
        self._drift_events.clear()
        return events

    # ---------------------------------------------------------------- ingest
    def encode_targets(self, y: torch.Tensor) -> torch.Tensor:
        """Targets in the units the model learns (the spec's target scaling; as given without a spec)."""
        if self.spec is None:
            return y
        return preprocessing.encode_targets(self.model, y)

    def observe(self, inputs: Any, targets: Any, passes: int = 1) -> ObserveResult:
        """Synchronous batch entry (the ``learn`` task calls this).

        Raises :class:`InvalidFeedback` before anything is touched if the batch is bad.
        All samples of the batch are predicted before any update they trigger.
        ``passes`` (with ``step_every_observe``): steps on the newest samples, at least 1.
        """
        x, y = self.online_learner.validate(inputs, targets)
        # Pending samples outlive this call; do not alias a caller's reusable buffer.
        x, y = x.clone(), y.clone()
        learner = self.online_learner
        # Prequential: the batch is predicted and scored with the statistics from before it, as
        # the champion is, and only a batch that is accepted moves the served statistics.
        outputs = learner.predict(x)
        with torch.no_grad():
            per_sample = learner.per_sample_loss(outputs, self.encode_targets(y))
            # Metrics, drift and the caller see the loss in target units; replay priorities, like
            # the steps that refresh them, read it in the units the model learns.
            raw = per_sample if self.spec is None or self.spec.is_classifier else \
                learner.per_sample_loss(preprocessing.decode_regression(self.model, outputs), y)
        losses = raw.numpy().astype(np.float64)
        if not np.all(np.isfinite(losses)):
            # Finite but extreme inputs can overflow the model; such a sample would
            # poison the replay priorities and the drift statistics.
            learner.count_rejected()
            raise InvalidFeedback("feedback makes the model output overflow", reason="non_finite_output")
        if self.spec is not None:
            preprocessing.observe(self.model, self.spec, x, None if self.spec.is_classifier else y)
        mistakes = per_sample_errors(learner.config.loss, outputs, y)
        correct = None if mistakes is None else (mistakes == 0).numpy()
        priorities = self._priority(per_sample)
        self.metrics.update(losses, correct)
        # Error magnitude (|actual - prediction| for one output), in target units.
        errors = self._priority(raw).numpy().astype(np.float64)

        events = []
        update_error = self.drift_detector.update_error
        for i, error in enumerate(errors.tolist()):
            if update_error(error):
                events.append(self._on_drift_detected(self._samples + i + 1, error))
        self._samples += x.shape[0]

        stored = self.replay_buffer.add_batch(x.numpy(), y.numpy(), priorities.numpy())
        # A batch larger than the buffer keeps only its newest items; -1 marks the rest.
        slots = np.full(x.shape[0], -1, dtype=np.int64)
        slots[x.shape[0] - stored.size :] = stored
        self._pending_x.append(x)
        self._pending_y.append(y)
        self._pending_slots.append(slots)
        self._pending_count += x.shape[0]

        step_losses = []
        if self.step_every_observe:
            newest = None
            while self._pending_count > 0:
                newest = self._take_pending(min(self.batch_size, self._pending_count))
                step_losses.append(self._update(*newest))
            for _ in range(max(1, int(passes)) - 1):
                step_losses.append(self._update(*newest))
            self._count_boosted_batch()  # this schedule's boost counts calls, whatever their passes
        else:
            while self._pending_count >= self.batch_size:
                step_losses.append(self._update_from_pending())
        return ObserveResult(x.shape[0], len(step_losses), tuple(step_losses), tuple(events), tuple(losses.tolist()),
                             () if mistakes is None else tuple(mistakes.tolist()))

    async def learn_from_stream(self, data_stream: AsyncIterator[tuple[Any, Any]]) -> int:
        """Consume ``(input, target)`` pairs (single samples or small batches) until the stream ends.

        Bad feedback is counted (:attr:`rejected_batches`) and skipped so one bad
        message does not stop the stream. Returns the number of accepted samples.
        """
        accepted = 0
        async for input_data, target in data_stream:
            try:
                accepted += self.observe(input_data, target).accepted
            except InvalidFeedback as exc:
                logger.warning("rejected feedback: %s", exc)
        return accepted

    # --------------------------------------------------------------- updates
    def _priority(self, per_sample_loss: torch.Tensor) -> torch.Tensor:
        # PER uses |error|: the root of the squared error for regression, the
        # log loss itself for classifiers.
        return error_magnitude(self.online_learner.config.loss, per_sample_loss)

    def _take_pending(self, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        x = torch.cat(self._pending_x) if len(self._pending_x) > 1 else self._pending_x[0]
        y = torch.cat(self._pending_y) if len(self._pending_y) > 1 else self._pending_y[0]
        slots = np.concatenate(self._pending_slots)
        n = self.batch_size if n is None else n
        self._pending_x, self._pending_y, self._pending_slots = [x[n:]], [y[n:]], [slots[n:]]
        self._pending_count -= n
        if self._pending_count == 0:
            self._pending_x, self._pending_y, self._pending_slots = [], [], []
        return x[:n], y[:n], slots[:n]

    def _update_from_pending(self) -> float:
        x, y, slots = self._take_pending()
        return self._update(x, y, slots)

    def _update(self, x: torch.Tensor, y: torch.Tensor, slots: np.ndarray | None) -> float:
        weights = None
        indices = slots
        if self.replay_batch_size > 0 and len(self.replay_buffer) > 0:
            replay = self.replay_buffer.sample(self.replay_batch_size)
            x = torch.cat([x, torch.from_numpy(replay.inputs)])
            y = torch.cat([y, torch.from_numpy(replay.targets)])
            weights = torch.cat([torch.ones(x.shape[0] - len(replay)), torch.from_numpy(replay.weights)])
            indices = replay.indices if slots is None else np.concatenate([slots, replay.indices])
        result = self.online_learner.step(x, self.encode_targets(y), weights)
        if result.applied:
            priorities = self._priority(result.per_sample_loss).numpy()
            if slots is None:
                priorities = priorities[-len(indices) :]
            stored = indices >= 0
            self.replay_buffer.update_priorities(indices[stored], priorities[stored])
        else:
            logger.warning("non-finite loss %s: step skipped, last good weights restored", result.loss)
        self._batches += 1
        if not self.step_every_observe:
            self._count_boosted_batch()
        return result.loss

    # ---------------------------------------------------------------- drift
    def _on_drift_detected(self, sample_index: int, error: float) -> DriftEvent:
        event = DriftEvent(
            sample_index=sample_index,
            batch_index=self._batches,
            error=float(error),
            method=self.drift_detector.method,
            model_version=self.model_manager.active_version,
        )
        logger.warning("concept drift detected at sample %d", sample_index)
        self._drift_events.append(event)
        if self.forget_replay_on_drift:
            self.replay_buffer.clear()
            # Pending samples keep training, but their buffer slots are gone.
            self._pending_slots = [np.full_like(slots, -1) for slots in self._pending_slots]
        self._start_lr_boost()
        if self.on_drift is not None:
            try:
                self.on_drift(event)
            except Exception:  # a coordinator hook must not break learning; the event is kept
                logger.exception("on_drift callback failed")
        return event

    def _start_lr_boost(self) -> None:
        # The seed slept 10 s with the rate doubled; it meant "for the next 10
        # batches", so the boost is counted in updates, not wall time. A drift
        # during a boost extends it rather than doubling again.
        if self._boost_remaining == 0:
            self.online_learner.config.learning_rate *= self.lr_boost_factor
        self._boost_remaining = self.lr_boost_batches

    def _count_boosted_batch(self) -> None:
        if self._boost_remaining > 0:
            self._boost_remaining -= 1
            if self._boost_remaining == 0:
                self.online_learner.config.learning_rate /= self.lr_boost_factor

    async def _handle_drift(self) -> None:
        """Seed hook: boost the learning rate for the next ``lr_boost_batches`` updates."""
        self._start_lr_boost()

    async def _batch_update(self, batch: list[tuple[Any, Any]]) -> float:
        """Seed hook: one update on ``batch`` (list of ``(input, target)``) plus replayed samples."""
        x, y = self.online_learner.validate(torch.stack([torch.as_tensor(b[0]) for b in batch]),
                                            torch.stack([torch.as_tensor(b[1]) for b in batch]))
        return self._update(x, y, None)

    def load_weights(self, state_dict: Mapping[str, torch.Tensor]) -> bool:
        """The learner continues from ``state_dict`` (see :meth:`OnlineSGDLearner.load_weights`).
        When the incoming label table gives known labels other outputs, the stored
        targets (replay, pending samples) are forgotten: their indices name other classes
        now. Returns whether that happened."""
        conflict = self.online_learner.load_weights(state_dict)
        if conflict:
            self.replay_buffer.clear()
            self._pending_x, self._pending_y, self._pending_slots = [], [], []
            self._pending_count = 0
        return conflict

    def continue_from(self, version: int) -> None:
        """The model now descends from served ``version`` (its weights are the caller's
        business): drift events and checkpoints then name that version."""
        self.model_manager = ModelVersionManager(self.model, initial_version=int(version))

    # ------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        """Learner, replay, detector, metrics and loop state (tensors, arrays, JSON scalars)."""
        pending = self._pending_count > 0
        return {
            "learner": self.online_learner.state_dict(),
            "replay": self.replay_buffer.state_dict(),
            "detector": self.drift_detector.state_dict(),
            "metrics": self.metrics.state_dict(),
            "loop": {
                "samples": self._samples,
                "batches": self._batches,
                "boost_remaining": self._boost_remaining,
                "pending_x": torch.cat(self._pending_x) if pending else None,
                "pending_y": torch.cat(self._pending_y) if pending else None,
                "pending_slots": np.concatenate(self._pending_slots) if pending else None,
                "drift_events": [asdict(e) for e in self._drift_events],
                "active_version": self.model_manager.active_version,
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` (the model must have the same architecture)."""
        self.online_learner.load_state_dict(state["learner"])
        self.replay_buffer.load_state_dict(state["replay"])
        self.drift_detector.load_state_dict(state["detector"])
        self.metrics.load_state_dict(state["metrics"])
        loop = state["loop"]
        self._reset()
        self._samples, self._batches = int(loop["samples"]), int(loop["batches"])
        self._boost_remaining = int(loop["boost_remaining"])
        if loop["pending_x"] is not None:
            self._pending_x, self._pending_y = [loop["pending_x"]], [loop["pending_y"]]
            self._pending_slots = [np.asarray(loop["pending_slots"])]
            self._pending_count = int(loop["pending_x"].shape[0])
        self._drift_events.extend(DriftEvent(**e) for e in loop["drift_events"])
        self.model_manager = ModelVersionManager(self.model, initial_version=int(loop["active_version"]))
