"""The training worker's online learner: the I/O around ``OnlineLearningSystem``.

The learning core is pure; this runner feeds it validated feedback, appends
every accepted sample to the experience stream (what retraining reads), records
drift events where the coordinator finds them, publishes a status summary for
``omnimind status``, and checkpoints to disk so a restarted training worker
resumes instead of starting cold. One learner per process; calls are
serialised by a lock (the core is not thread-safe).
"""
from __future__ import annotations

import copy
import json
import logging
import threading
from dataclasses import asdict
from pathlib import Path

import numpy as np
import redis
import torch

from omnimind import keys
from omnimind.config import Settings
from omnimind.learning import OnlineLearningSystem, OnlineSGDConfig, PrequentialMetrics, load_checkpoint, save_checkpoint
from omnimind.models.runtime import ModelRuntime
from omnimind.models.serialization import load_into
from omnimind.observability import metrics
from omnimind.redis_client import redis_client

logger = logging.getLogger(__name__)

#: Prequential windows kept per model version in the status summary.
VERSIONS_REPORTED = 5
DRIFT_STREAM_MAXLEN = 10_000


class LearnerService:
    """Owns one ``OnlineLearningSystem`` and everything it writes outside memory."""

    def __init__(self, settings: Settings, runtime: ModelRuntime, client: redis.Redis, node_id: str) -> None:
        self.settings = settings
        self.client = client
        self.node_id = node_id
        # Its own copy: training must never mutate the weights a co-located
        # inference task is serving.
        model = copy.deepcopy(runtime.served.module).train()
        self.system = OnlineLearningSystem(
            model,
            config=OnlineSGDConfig(learning_rate=settings.learning_rate, loss=settings.learning_loss),
            replay_capacity=settings.replay_capacity,
            drift_method=settings.drift_method,
            rng=np.random.default_rng(settings.model_seed),
        )
        self._lock = threading.Lock()
        self.base_version = runtime.model_version
        self.checkpoint_dir = Path(settings.data_dir) / "learner" / node_id.replace("/", "_")
        self._by_version: dict[int, PrequentialMetrics] = {}
        self.resumed = self._resume(runtime)
        self._by_version.setdefault(self.base_version, self.system.metrics)
        self._checkpointed_at = self.system.batches
        self._diverged_seen = self.system.diverged_steps

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
        if saved["base_version"] != runtime.model_version:
            # Another version became active meanwhile (a publish, a rollback): learn on
            # from it, keeping replay and drift state.
            self.base_version = saved["base_version"]
            self.adopt(runtime.model_version, runtime.served.module.state_dict())
        return True

    def learn(self, x: np.ndarray, y: np.ndarray, served_version: int) -> dict:
        """Learn from a validated batch; raises ``InvalidFeedback`` on unlearnable data."""
        if self.settings.learning_loss == "cross_entropy":
            y = y.reshape(-1).astype(np.int64)
        with self._lock:
            result = self.system.observe(torch.from_numpy(x), torch.from_numpy(y))
            self._record(x, y, served_version, result)
            if self.system.batches - self._checkpointed_at >= self.settings.checkpoint_every:
                self._checkpoint()
        return {
            "accepted": result.accepted,
            "updates": result.updates,
            "loss": result.losses[-1] if result.losses else None,
            "drift": bool(result.drift_events),
        }

    def _record(self, x, y, served_version: int, result) -> None:
        pipe = self.client.pipeline(transaction=True)  # one atomic round trip per learn call
        for row, target in zip(x.tolist(), y.tolist()):
            pipe.xadd(
                keys.EXPERIENCE,
                {"x": json.dumps(row), "y": json.dumps(target), "v": served_version},
                maxlen=self.settings.experience_maxlen,
                approximate=True,
            )
        for event in result.drift_events:
            pipe.xadd(
                keys.DRIFT_EVENTS,
                {"node_id": self.node_id, **{k: json.dumps(v) for k, v in asdict(event).items()}},
                maxlen=DRIFT_STREAM_MAXLEN,
                approximate=True,
            )
        pipe.set(keys.learner_status(self.node_id), json.dumps(self.summary()), ex=3600)
        pipe.execute()
        metrics.feedback_samples.inc(result.accepted)
        metrics.learning_batches_total.inc(result.updates)
        finite = [loss for loss in result.losses if np.isfinite(loss)]
        if finite:
            metrics.learning_loss.set(finite[-1])
        metrics.drift_detections.inc(len(result.drift_events))
        metrics.replay_size.set(len(self.system.replay_buffer))
        diverged = self.system.diverged_steps
        metrics.learning_divergences.inc(diverged - self._diverged_seen)
        self._diverged_seen = diverged

    def adopt(self, version: int, state_dict: dict) -> None:
        """Continue from a newly active version (a validated retrain, or an
        operator's rollback): its weights, a fresh optimizer state and a fresh
        prequential window; replay and drift state are kept."""
        with self._lock:
            load_into(self.system.model, state_dict)
            self.system.online_learner.optimizer.state.clear()
            if version != self.base_version:
                self._by_version.setdefault(self.base_version, self.system.metrics)
                self.base_version = version
                window = self.system.metrics.window_size
                self.system.metrics = self._by_version.setdefault(version, PrequentialMetrics(window))
                for old in sorted(self._by_version)[:-VERSIONS_REPORTED]:
                    del self._by_version[old]
        logger.info("Learner continues from model v%d", version)

    def model_copy(self):
        """A copy of the learner's current model (the starting point of a retrain)."""
        with self._lock:
            return copy.deepcopy(self.system.model)

    def summary(self) -> dict:
        system = self.system
        recent = sorted(self._by_version)[-VERSIONS_REPORTED:]
        return {
            "node_id": self.node_id,
            "samples": system.samples_seen,
            "batches": system.batches,
            "learning_rate": system.config.learning_rate,
            "lr_boost_remaining": system.lr_boost_remaining,
            "drift_events": len(system.drift_events),
            "diverged_steps": system.diverged_steps,
            "replay_size": len(system.replay_buffer),
            "model_version": self.base_version,
            "prequential": {str(v): self._by_version[v].snapshot() for v in recent},
        }

    def checkpoint(self) -> None:
        with self._lock:
            self._checkpoint()

    def _checkpoint(self) -> None:
        # The served version the learner descends from travels with its state.
        save_checkpoint(self.checkpoint_dir, {"system": self.system.state_dict(), "base_version": self.base_version})
        self._checkpointed_at = self.system.batches


_service: LearnerService | None = None
_service_lock = threading.Lock()


def get_learner(settings: Settings, runtime: ModelRuntime, node_id: str) -> LearnerService:
    global _service
    with _service_lock:
        if _service is None:
            _service = LearnerService(settings, runtime, redis_client(settings.redis_url), node_id)
        return _service


def current_learner() -> LearnerService | None:
    return _service
