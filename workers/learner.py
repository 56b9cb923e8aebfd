"""The training worker's online learner: the I/O around ``OnlineLearningSystem``.

The learning core is pure; this runner feeds it validated feedback, records
every accepted sample in the experience stream (:mod:`omnimind.experience`,
what retraining reads), publishes a status summary for ``omnimind status`` and
checkpoints to disk so a restarted training worker resumes instead of
starting cold. One learner per process; calls are serialised by a lock (the
core is not thread-safe).

The freshness path: the learner is the *challenger* of the served *champion*
(:class:`~omnimind.learning.ChallengerGate`). Every feedback sample is scored by
both before the learner learns it; when the gate finds the challenger better on
the newest window (at once after a drift, on post-change samples only), a
learner whose worker leads the Raft group publishes it through the fenced
store, and every worker swaps it in. A challenger that diverged is reset from
the champion. A ``learn`` redelivered under the same task id is answered from
the record of its first run, neither learned nor recorded twice.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import redis
import torch

from omnimind import keys
from omnimind.config import Settings
from omnimind.experience import ExperienceStream
from omnimind.learning import (
    ChallengerGate, InvalidFeedback, ModelVersion, OnlineLearningSystem, OnlineSGDConfig, PrequentialMetrics, load_checkpoint,
    preprocessing, save_checkpoint,
)
from omnimind.learning.budget import UpdateBudget
from omnimind.learning.losses import per_sample_errors
from omnimind.learning.spec import ModelSpec
from omnimind.models.runtime import ModelRuntime
from omnimind.models.store import ModelStore
from omnimind.observability import metrics
from workers import publisher
from workers.learner_status import VERSIONS_REPORTED, count_learning, learner_summary

logger = logging.getLogger(__name__)


def optimizer(settings: Settings, spec: ModelSpec) -> str:
    """``OMNIMIND_LEARNING_OPTIMIZER``, or the head's default: adam for a classifier, sgd for a regressor."""
    return settings.learning_optimizer or spec.default_optimizer


def learning_rate(settings: Settings, spec: ModelSpec) -> float:
    """``OMNIMIND_LEARNING_RATE``, or the optimizer's default: 0.003 for adam/adamw, 0.01 for sgd."""
    if settings.learning_rate is not None:
        return settings.learning_rate
    return 0.01 if optimizer(settings, spec) == "sgd" else 0.003


class LearnerService:
    """Owns one ``OnlineLearningSystem``, its champion, and everything it writes outside memory."""

    def __init__(self, settings: Settings, runtime: ModelRuntime, client: redis.Redis, node_id: str) -> None:
        self.settings = settings
        self.client = client
        self.node_id = node_id
        self.experience = ExperienceStream(client, settings.experience_maxlen)
        self.store = ModelStore(client, keep_versions=settings.model_keep_versions, producer=node_id)
        # Its own copies: training must never mutate the weights a co-located
        # inference task is serving.
        # On the CPU: the replay buffer and the experience stream hold NumPy rows.
        served = runtime.served
        self.spec = runtime.spec
        # The farm's schedule (the seed's 32 + 16 per step stays OnlineLearningSystem's default):
        # a step on every learn call, and more passes while the stream leaves time (UpdateBudget).
        self.system = OnlineLearningSystem(
            copy.deepcopy(served.model).to("cpu").train(),
            config=OnlineSGDConfig(
                learning_rate=learning_rate(settings, self.spec), optimizer=optimizer(settings, self.spec),
                weight_decay=settings.learning_weight_decay, loss=self.spec.loss,
                grad_clip_norm=settings.learning_grad_clip or None,
            ),
            batch_size=settings.learning_batch_size,
            replay_batch_size=settings.learning_replay_size,
            replay_capacity=settings.replay_capacity,
            drift_method=settings.drift_method,
            rng=np.random.default_rng(settings.model_seed),
            step_every_observe=True,
            spec=self.spec,
            lr_boost_factor=settings.learning_drift_boost,
        )
        self.budget = UpdateBudget(max_passes=settings.learning_max_passes, share=settings.learning_time_budget)
        self.system.continue_from(served.number)
        self.champion = ModelVersion(copy.deepcopy(served.model).to("cpu").eval(), served.number)
        #: The gate's metric: the model's own loss (log loss for a classifier), or a classifier's error rate.
        self.gate_metric = settings.challenger_metric
        if self.gate_metric == "error_rate" and not self.spec.is_classifier:
            raise ValueError("OMNIMIND_CHALLENGER_METRIC=error_rate needs a classifier head")
        self.gate = ChallengerGate(
            window=settings.challenger_window, min_samples=min(settings.challenger_min_samples, settings.challenger_window),
            check_every=settings.challenger_check_every, tolerance=settings.challenger_tolerance,
            min_interval=settings.challenger_min_interval,
            # A 10x worse error rate is no sign of divergence (a champion with 1 mistake in the
            # window); a diverging classifier shows in non-finite outputs, handled in learn().
            **({} if self.gate_metric == "loss" else {"divergence_factor": math.inf}),
        )
        self._lock = threading.Lock()
        self.checkpoint_dir = Path(settings.data_dir) / "learner" / node_id.replace("/", "_")
        self._by_version: dict[int, PrequentialMetrics] = {}
        self._behind_since: float | None = None
        self._last_publication: dict | None = None
        self._last_refusal: dict | None = None
        self._refusals: dict[str, int] = {}
        self._drift_at: int | None = None
        # The newest rows, and the rows from before the last drift: a challenger published
        # after a drift must fit the new concept better than the old one.
        self._recent: deque = deque(maxlen=settings.challenger_window)
        self._before_drift: list | None = None
        self.resumed = self._resume(runtime)
        self._by_version.setdefault(self.version, self.system.metrics)
        self._checkpointed_at = self.system.batches
        self._diverged_seen = self.system.diverged_steps

    @property
    def version(self) -> int:
        """The served version the learner descends from."""
        return self.system.model_manager.active_version

    def _resume(self, runtime: ModelRuntime) -> bool:
        if not (self.checkpoint_dir / "learner.safetensors").exists():
            return False
        try:
            saved = load_checkpoint(self.checkpoint_dir)
            self.system.load_state_dict(saved["system"])
        except Exception as exc:  # a checkpoint of another architecture, or damaged
            logger.error("Ignoring learner checkpoint in %s: %s", self.checkpoint_dir, exc)
            return False
        logger.info(
            "Learner resumed from %s: %d samples, %d batches",
            self.checkpoint_dir, self.system.samples_seen, self.system.batches,
        )
        if self.version != runtime.model_version:
            # Another version became active meanwhile (a publish, a rollback): learn on
            # from it, keeping replay and drift state.
            self._adopt(runtime.model_version, runtime.served.model.state_dict())
        return True

    # ------------------------------------------------------------------ learning
    def _targets(self, y) -> np.ndarray:
        """Targets as the learner learns them: a classifier's labels (strings or integers)
        become output indices (int64 for cross_entropy, 0/1 floats for bce), growing the
        label table under the ``grow`` policy; raises ``InvalidFeedback``. Regression
        targets are returned as they are. Called under the lock, with the observe that
        learns them: a version adopted in between (the follower thread) must not change
        what the indices mean."""
        if not self.spec.is_classifier:
            return y
        indices = preprocessing.label_indices(self.system.model, self.spec, list(np.asarray(y).reshape(-1)))
        if self.spec.loss == "bce":
            return indices.numpy().astype(np.float32).reshape(-1, 1)
        return indices.numpy()

    def learn(self, x: np.ndarray, y: np.ndarray, served_version: int, task_id: str) -> dict:
        """Learn from a validated batch once per ``task_id``; raises ``InvalidFeedback`` on unlearnable data.
        A classifier's ``y`` holds labels (see :meth:`_targets`)."""
        first = self.experience.recorded(task_id)
        if first is not None:
            metrics.learn_duplicates.inc()
            logger.info("learn %s was learned and recorded before: not again", task_id)
            return {**first, "duplicate": True}
        with self._lock:
            # The experience stream keeps a classifier's labels as sent: a retrain maps them with
            # its shadow's table, whatever indices this learner's table gives them.
            labels = y
            y = self._targets(y)
            before = self.system.samples_seen
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)
            champion_losses, champion_errors = self._champion_losses(xt, yt)
            started = time.monotonic()
            passes = self.budget.passes(started)
            try:
                result = self.system.observe(xt, yt, passes=passes)
            except InvalidFeedback as exc:
                # Feedback the champion predicts finitely but the learner overflows on:
                # the learner diverged, not the feedback. Start it over from the champion.
                if exc.reason != "non_finite_output" or not np.all(np.isfinite(champion_losses)):
                    raise
                logger.warning("Learner output overflows on feedback the champion handles: reset from v%d",
                               self.champion.number)
                self._refused("diverged")
                self._reset_from_champion()
                yt = torch.from_numpy(self._targets(labels))  # in the table the learner has now
                result = self.system.observe(xt, yt)
            self.budget.spent(time.monotonic() - started, result.updates)
            self._score(result, champion_losses, champion_errors, xt, yt)
            outcome = {
                "accepted": result.accepted,
                "updates": result.updates,
                "loss": result.losses[-1] if result.losses else None,
                "drift": bool(result.drift_events),
            }
            drifts = [(event.sample_index - before - 1, event) for event in result.drift_events]
            if not self.experience.record(task_id, x, labels, served_version=served_version, node_id=self.node_id,
                                          outcome=outcome, drifts=drifts):
                metrics.learn_duplicates.inc()  # a twin ran concurrently on another learner
            self._count(result)
            decision = self.gate.decide(time.monotonic())
            if decision is not None:
                self._act(decision)
            self.client.set(keys.learner_status(self.node_id), json.dumps(self.summary()), ex=3600)
            if self.system.batches - self._checkpointed_at >= self.settings.checkpoint_every:
                self._checkpoint()
        return {**outcome, "duplicate": False}

    def _champion_losses(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
        """The served model's per-sample loss and (a classifier's) 0/1 mistakes, on arrival
        (before the challenger learns)."""
        learner = self.system.online_learner
        x, y = learner.validate(x, y)  # the same refusals as the learner's own
        with torch.inference_mode():
            outputs = self.champion.model(x)
            if not self.spec.is_classifier:
                # In target units, as the learner's own prequential losses (each version scales targets
                # with its own statistics).
                outputs = preprocessing.decode_regression(self.champion.model, outputs)
            losses = learner.per_sample_loss(outputs, y)
            mistakes = per_sample_errors(self.spec.loss, outputs, y)
        return losses.tolist(), [] if mistakes is None else mistakes.tolist()

    def _score(self, result, champion_losses: list[float], champion_errors: list[float], x: torch.Tensor,
               y: torch.Tensor) -> None:
        drift_row = 0
        if result.drift_events:
            self._drift_at = result.drift_events[-1].sample_index
            drift_row = self._drift_at - (self.system.samples_seen - result.accepted) - 1
            # Only post-change samples judge the models after a drift.
            self.gate.drift()
            self._before_drift = list(self._recent) + list(zip(x[:drift_row], y[:drift_row]))
            self._recent.clear()
        if self.gate_metric == "error_rate":
            self.gate.observe(result.sample_errors[drift_row:], champion_errors[drift_row:])
        else:
            self.gate.observe(result.sample_losses[drift_row:], champion_losses[drift_row:])
        self._recent.extend(zip(x[drift_row:], y[drift_row:]))

    def _fits_old_concept_better(self) -> bool:
        """After a drift: whether the challenger still fits the rows from before it at
        least as well as the rows since (publishing it would serve the old concept)."""
        if not self.gate.drift_pending or not self._before_drift or not self._recent:
            return False
        learner = self.system.online_learner

        def loss(rows) -> float:
            x = torch.stack([row[0] for row in rows])
            y = torch.stack([row[1] for row in rows])
            return float(learner.per_sample_loss(learner.predict(x), self.system.encode_targets(y)).mean())

        return loss(self._before_drift[-len(self._recent):]) <= loss(self._recent)

    def _act(self, decision) -> None:
        now = time.monotonic()
        metrics.live_window_loss.labels(model="champion").set(decision.champion_loss)
        metrics.live_window_loss.labels(model="challenger").set(decision.challenger_loss)
        if decision.reason in ("not_better", "diverged"):
            self._behind_since = None
        elif self._behind_since is None:
            self._behind_since = now
        metrics.freshness_lag.set(0.0 if self._behind_since is None else now - self._behind_since)
        if decision.reason == "diverged":
            logger.warning("Challenger diverged (loss %.4g vs champion %.4g): reset from v%d",
                           decision.challenger_loss, decision.champion_loss, self.champion.number)
            self._reset_from_champion()
        if not decision.publish:
            self._refused(decision.reason)
            return
        if self.settings.challenger_publish != "leader":
            return
        if self._fits_old_concept_better():
            self._refused("old_concept")
            return
        try:
            fence = publisher.leader_fence()
            snapshot = {k: v.detach().to("cpu").clone() for k, v in self.system.model.state_dict().items()}
            published = publisher.publish(
                self.store, snapshot, reason=decision.reason, fence=fence, expected_active=self.champion.number,
                metadata={"validation_loss": decision.challenger_loss, "current_loss": decision.champion_loss,
                          "samples_trained": decision.samples, "parent_version": self.champion.number,
                          "producer": self.node_id},
            )
        except publisher.PublicationRefused as exc:
            self._refused(exc.reason, counted=exc.reason != "not_leader")
            return
        except (redis.RedisError, OSError) as exc:  # the feedback is learned and recorded; publish next check
            logger.warning("Challenger not published: %s", exc)
            return
        self.gate.published(now)
        self._before_drift = None
        self._behind_since = None
        metrics.freshness_lag.set(0.0)
        champion = copy.deepcopy(self.system.model).eval()
        self._promote(ModelVersion(champion, published.version))
        self._last_publication = {"version": published.version, "reason": decision.reason, "at": time.time(),
                                  "champion_loss": decision.champion_loss,
                                  "challenger_loss": decision.challenger_loss}

    def _refused(self, reason: str, counted: bool = False) -> None:
        if not counted:
            publisher.refuse(reason)
        self._refusals[reason] = self._refusals.get(reason, 0) + 1
        self._last_refusal = {"reason": reason, "at": time.time()}

    def _reset_from_champion(self) -> None:
        self._load_weights(self.champion.model.state_dict())
        self.gate.champion_changed()

    def _load_weights(self, state_dict: dict) -> None:
        if self.system.load_weights(state_dict):
            # The incoming label table gives known labels other outputs: the rows kept for
            # the drift check hold indices of the old table (the system forgot its replay).
            logger.warning("Learner: the adopted version numbers labels differently; replay and recent rows cleared")
            self._recent.clear()
            self._before_drift = None

    def _count(self, result) -> None:
        self._diverged_seen = count_learning(result, self.system, self._diverged_seen)

    # ------------------------------------------------------------------ versions
    def adopt(self, version: int, state_dict: dict) -> None:
        """Continue from a newly active version: a retrain, an operator's rollback, or
        another learner's publication (its weights, a fresh optimizer state and a
        fresh prequential window; replay and drift state are kept). The version
        this learner published itself is its own weights already."""
        with self._lock:
            if version == self.champion.number:
                return
            self._adopt(version, state_dict)

    def _adopt(self, version: int, state_dict: dict) -> None:
        self._load_weights({k: v.to("cpu") for k, v in state_dict.items()})
        champion = copy.deepcopy(self.system.model).eval()
        self._promote(ModelVersion(champion, version))
        self.gate.champion_changed()
        logger.info("Learner continues from model v%d", version)

    def _promote(self, champion: ModelVersion) -> None:
        """``champion`` is the active version now, and the learner descends from it."""
        self._by_version.setdefault(self.version, self.system.metrics)
        self.champion = champion
        if champion.number != self.version:
            self.system.continue_from(champion.number)
            window = self.system.metrics.window_size
            self.system.metrics = self._by_version.setdefault(champion.number, PrequentialMetrics(window))
            for old in sorted(self._by_version)[:-VERSIONS_REPORTED]:
                del self._by_version[old]

    def model_copy(self):
        """A copy of the learner's current model (the starting point of a retrain)."""
        with self._lock:
            return copy.deepcopy(self.system.model)

    # -------------------------------------------------------------------- status
    def summary(self) -> dict:
        return learner_summary(self)

    def checkpoint(self) -> None:
        with self._lock:
            self._checkpoint()

    def _checkpoint(self) -> None:
        # The served version the learner descends from travels inside the system's state.
        save_checkpoint(self.checkpoint_dir, {"system": self.system.state_dict()})
        self._checkpointed_at = self.system.batches
