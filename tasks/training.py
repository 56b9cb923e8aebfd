"""Tasks on the ``training`` queue."""
from __future__ import annotations

import logging
import uuid
from typing import Any

import numpy as np

from omnimind.app import task
from omnimind.config import settings
from omnimind.errors import InvalidInput
from omnimind.learning import InvalidFeedback
from omnimind.redis_client import redis_client
from omnimind.scaling.dispatch import DispatchGuard
from omnimind.fence import AUTH_HEADER, FENCE_HEADER, SLOT_HEADER
from omnimind.validation import as_array, as_labels
from workers.context import node_id
from workers.services import current_learner, learner as online_learner, serving_runtime
from workers import retraining

logger = logging.getLogger(__name__)

# The learning core's reasons, in the farm's fixed vocabulary of InvalidInput reasons.
_FEEDBACK_REASONS = {"dtype": "type", "length_mismatch": "shape", "non_finite_output": "non_finite",
                     "label_too_long": "too_long", "label_range": "unknown_label"}


def validate_feedback(inputs: Any, targets: Any, runtime) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, targets)`` as arrays with one target row per example (a classifier's:
    one label per example, strings or integers); inputs as the runtime's signature takes them."""
    batch, single = runtime.examples(inputs)
    if runtime.spec.is_classifier:
        return batch, as_labels(targets, batch.shape[0], single)
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


@task(bind=True, name="tasks.training.learn", throws=(InvalidInput,))
def learn(self, inputs: Any = None, targets: Any = None) -> dict:
    """Learn from feedback: the worker's online learner predicts, checks for
    drift, replays and updates (a step on every call, several while the stream
    leaves time; a classifier's targets are its labels); every accepted
    sample is also appended to the experience window that retraining reads.
    A redelivery of the same task is answered without learning it again.

    Returns ``{"accepted", "updates", "loss", "drift", "duplicate", "model_version", "node_id"}``.
    """
    runtime = serving_runtime()
    x, y = validate_feedback(inputs, targets, runtime)
    version = runtime.model_version
    learner = online_learner()
    try:
        outcome = learner.learn(x, y, version, self.request.id or uuid.uuid4().hex)
    except InvalidFeedback as exc:
        raise InvalidInput(_FEEDBACK_REASONS.get(exc.reason, exc.reason), str(exc)) from None
    return {"model_version": version, **outcome, "node_id": node_id()}


@task(bind=True, name="tasks.training.retrain")
def retrain(self, window: int | None = None) -> dict:
    """Shadow-train on the experience window (never past the newest drift),
    validate against the served model, and publish the shadow only if
    ``val_loss <= 1.05 x current_loss`` (see :mod:`workers.retraining`).

    Sent every ``OMNIMIND_RETRAIN_INTERVAL`` seconds by the Raft leader, fenced:
    a dispatch from a deposed leader, or a slot that already ran, does nothing,
    and so does one whose headers are malformed or not signed with the Raft
    secret (``omnimind.fence``, ``omnimind.scaling.dispatch``). The publication carries the
    dispatch's fence, so the model store also refuses a stale leader.
    """
    client = redis_client(settings.redis_url)
    request = self.request
    verdict = DispatchGuard(client, settings.raft_secret).accept(
        request.get(FENCE_HEADER), request.get(SLOT_HEADER), request.id, request.get(AUTH_HEADER)
    )
    base = {"slot": verdict.slot, "fence": list(verdict.fence) if verdict.fence else None, "node_id": node_id()}
    if not verdict.accepted:
        logger.warning("Refusing retrain dispatch %s slot %s: %s%s", verdict.entry, verdict.slot, verdict.outcome,
                       f" ({verdict.detail})" if verdict.detail else "")
        return {**base, "outcome": verdict.outcome}
    outcome = retraining.retrain(
        settings, client, serving_runtime(), current_learner(), fence=verdict.fence, window=window,
        node_id=node_id(), scheduled=verdict.outcome == "accepted",
    )
    return {**base, **outcome}
