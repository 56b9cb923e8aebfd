"""Tasks on the ``training`` queue."""
from __future__ import annotations

import copy
import json
import logging
from typing import Any

import numpy as np
import torch

from omnimind.app import app, settings
from omnimind.errors import InvalidInput
from omnimind import keys
from omnimind.learning import ContinuousTrainer, InvalidFeedback, ModelVersionManager
from omnimind.models.errors import StaleFence, Superseded
from omnimind.models.store import ModelStore
from omnimind.observability import metrics
from omnimind.redis_client import redis_client
from omnimind.scaling.coordinator import FENCE_HEADER, SLOT_HEADER
from omnimind.scaling.dispatch import DispatchGuard
from omnimind.validation import as_array, as_examples
from workers.context import node_id
from workers.learner import current_learner, get_learner

_limits = settings.limits["training"]
logger = logging.getLogger(__name__)

# The learning core's reasons, in the farm's fixed vocabulary of InvalidInput reasons.
_FEEDBACK_REASONS = {"dtype": "type", "length_mismatch": "shape", "non_finite_output": "non_finite"}


def validate_feedback(inputs: Any, targets: Any, example_shape) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, targets)`` as arrays with one target row per example."""
    batch, single = as_examples(inputs, example_shape, settings.max_batch_size)
    y = as_array(targets, "targets")
    if single:
        y = y.reshape(1, -1)
    elif y.ndim == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[0] != batch.shape[0]:
        raise InvalidInput(
            "shape", f"got {batch.shape[0]} example(s) but targets of shape {tuple(np.asarray(targets).shape)}"
        )
    return batch, y


@app.task(name="tasks.training.learn", soft_time_limit=_limits.soft, time_limit=_limits.hard, throws=(InvalidInput,))
def learn(inputs: Any = None, targets: Any = None) -> dict:
    """Learn from feedback: the worker's online learner predicts, checks for
    drift, replays and updates (32 new + 16 replayed per step); every accepted
    sample is also appended to the experience window that retraining reads.

    Returns ``{"accepted", "updates", "loss", "drift", "model_version", "node_id"}``.
    """
    runtime = _serving_runtime()
    x, y = validate_feedback(inputs, targets, runtime.example_shape)
    version = runtime.model_version
    learner = get_learner(settings, runtime, node_id())
    try:
        outcome = learner.learn(x, y, version)
    except InvalidFeedback as exc:
        raise InvalidInput(_FEEDBACK_REASONS.get(exc.reason, exc.reason), str(exc)) from None
    return {**outcome, "model_version": version, "node_id": node_id()}


def read_experience(client, limit: int, example_shape) -> tuple[torch.Tensor, torch.Tensor]:
    """The newest ``limit`` samples of the experience window, oldest first."""
    rows = client.xrevrange(keys.EXPERIENCE, count=limit)
    xs, ys = [], []
    shape = tuple(example_shape)
    for _, fields in reversed(rows):
        x = np.asarray(json.loads(fields[b"x"]), dtype=np.float32)
        if x.shape != shape:  # recorded for another model architecture
            continue
        xs.append(x)
        ys.append(np.asarray(json.loads(fields[b"y"]), dtype=np.float32))
    if not xs:
        return torch.empty((0, *shape)), torch.empty((0, 1))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


@app.task(bind=True, name="tasks.training.retrain", soft_time_limit=_limits.soft, time_limit=_limits.hard)
def retrain(self, window: int | None = None) -> dict:
    """Shadow-train on the experience window, validate against the served model,
    and publish the shadow only if ``val_loss <= 1.05 x current_loss``.

    Sent every ``OMNIMIND_RETRAIN_INTERVAL`` seconds by the Raft leader, fenced:
    a dispatch from a deposed leader, or a slot that already ran, does nothing.
    The publication carries the dispatch's fence, so the model store also
    refuses a stale leader.
    """
    client = redis_client(settings.redis_url)
    verdict = DispatchGuard(client).accept(
        self.request.get(FENCE_HEADER), self.request.get(SLOT_HEADER), self.request.id
    )
    base = {"slot": verdict.slot, "fence": list(verdict.fence) if verdict.fence else None, "node_id": node_id()}
    if not verdict.accepted:
        logger.warning("Refusing retrain dispatch %s slot %s: %s", verdict.entry, verdict.slot, verdict.outcome)
        return {**base, "outcome": verdict.outcome}
    runtime = _serving_runtime()
    x, y = read_experience(client, window or settings.retrain_window, runtime.example_shape)
    learner = current_learner()
    # Start from what the online learner has learned since the last version, if this worker has one.
    shadow = learner.model_copy() if learner is not None else copy.deepcopy(runtime.served.module)
    served = runtime.served
    trainer = ContinuousTrainer(
        ModelVersionManager(served.module, initial_version=served.version),
        loss=settings.learning_loss,
        rng=np.random.default_rng(settings.model_seed + served.version),
    )
    outcome = trainer.retrain(x.to(served.device), y.to(served.device), shadow=shadow.to(served.device))
    result = {**base, **outcome.as_dict(), "model_version": served.version}
    if not outcome.accepted:
        if outcome.shadow is not None:  # trained and failed the gate (not merely skipped)
            metrics.model_validation_rejections.inc()
        logger.info("Retrain kept v%d: %s", served.version, outcome.reason)
        return {**result, "outcome": "rejected" if outcome.shadow is not None else "skipped"}
    store = ModelStore(client, keep_versions=settings.model_keep_versions, producer=node_id())
    fence = verdict.fence or store.fence()  # a manual retrain acts under the newest fence
    try:
        published = store.publish(
            {k: v.detach().cpu() for k, v in outcome.shadow.state_dict().items()},
            {"validation_loss": outcome.val_loss, "samples_trained": outcome.samples,
             "parent_version": served.version, "current_loss": outcome.current_loss},
            fence=fence,
            expected_active=served.version,  # validated against it: publish only if it is still active
        )
    except (StaleFence, Superseded) as exc:
        logger.warning("Retrain result not published: %s", exc)
        return {**result, "outcome": exc.reason}
    logger.info("Published model v%d (val loss %.4g vs %.4g)", published.version, outcome.val_loss, outcome.current_loss)
    return {**result, "outcome": "published", "version": published.version}


def _serving_runtime():
    # Imported on first use: it pulls in torch, which memory and agents workers
    # (they import every task module) never need.
    from workers.model_sync import serving_runtime

    return serving_runtime(settings)
