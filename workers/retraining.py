"""The deep retrain: shadow-train on the experience window, gate, publish.

``tasks.training.retrain`` is a thin adapter over :func:`retrain`. The window is
drift-aware: it never reaches back past the newest drift marker
(:mod:`omnimind.experience`), so a retrain after a change trains and
validates on the new concept only, and with too few post-change samples it
skips instead of fitting the old one. The shadow starts from what this
worker's online learner knows (if it has one), is validated against the
served model on the newest slice of the window, and is published with the
dispatch's fence through :mod:`workers.publisher`.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import replace

import numpy as np
import torch

from omnimind.config import Settings
from omnimind.experience import ExperienceStream
from omnimind.learning import ChallengerGate, ContinuousTrainer, ModelVersionManager, RetrainOutcome, preprocessing
from omnimind.models.runtime import ModelRuntime
from omnimind.models.store import ModelStore
from omnimind.observability import metrics
from workers import publisher
from workers.learner import LearnerService

logger = logging.getLogger(__name__)


def retrain(settings: Settings, client, runtime: ModelRuntime, learner: LearnerService | None, *,
            fence, window: int | None, node_id: str, scheduled: bool) -> dict:
    """Run one retrain; returns the JSON-able outcome (``outcome``: published, rejected,
    skipped, stale_fence or superseded)."""
    experience = ExperienceStream(client, settings.experience_maxlen)
    spec = runtime.spec
    data = experience.window(window or settings.retrain_window, runtime.example_shape, labels=spec.is_classifier)
    # Start from what the online learner has learned since the last version, if this worker has one.
    shadow = learner.model_copy() if learner is not None else copy.deepcopy(runtime.served.model)
    served = runtime.served
    # The experience stream keeps float32 rows: token ids go back to int64. A classifier's labels
    # are recorded as sent and take the outputs the shadow's table gives them. Regression targets
    # are learned in the shadow's units, and the served model is judged in them too (InShadowUnits).
    if spec.is_classifier:
        y = preprocessing.label_indices(shadow, spec, data.y).to(torch.float32).reshape(-1, 1)
    else:
        y = preprocessing.encode_targets(shadow, data.y)
    data = replace(data, x=data.x.to(runtime.example_dtype), y=y)
    judged = served if spec.is_classifier else replace(served, model=InShadowUnits(served.model, shadow).eval())
    trainer = ContinuousTrainer(
        ModelVersionManager(judged.model, initial_version=served.number),
        loss=spec.loss,
        rng=np.random.default_rng(settings.model_seed + served.number),
    )
    device = runtime.device
    outcome = trainer.retrain(data.x.to(device), data.y.to(device), shadow=shadow.to(device))
    if outcome.accepted:
        outcome = _confirm(trainer, outcome, data, judged, device)
    result = {**outcome.as_dict(), "model_version": served.number, "since_drift": data.since_drift}
    if not outcome.accepted:
        if outcome.shadow is not None:  # trained and failed the gate (not merely skipped)
            metrics.model_validation_rejections.inc()
            publisher.refuse("diverged" if outcome.val_loss is None or not np.isfinite(outcome.val_loss)
                             else "not_better")
        else:
            publisher.refuse("too_few_samples")
        logger.info("Retrain kept v%d: %s", served.number, outcome.reason)
        return {**result, "outcome": "rejected" if outcome.shadow is not None else "skipped"}
    store = ModelStore(client, keep_versions=settings.model_keep_versions, producer=node_id)
    reason = ("retrain_drift" if data.since_drift else "retrain") if scheduled else "manual"
    try:
        published = publisher.publish(
            store, outcome.shadow.state_dict(), reason=reason,
            fence=fence or store.fence(),  # a manual retrain acts under the newest fence
            expected_active=served.number,  # validated against it: publish only if it is still active
            metadata={"validation_loss": outcome.val_loss, "samples_trained": outcome.samples,
                      "parent_version": served.number, "current_loss": outcome.current_loss},
        )
    except publisher.PublicationRefused as exc:
        logger.warning("Retrain result not published: %s", exc)
        return {**result, "outcome": exc.reason if exc.reason != "stale_fence" else "stale"}
    return {**result, "outcome": "published", "version": published.version}


def _confirm(trainer: ContinuousTrainer, outcome: RetrainOutcome, data, served, device) -> RetrainOutcome:
    """The seed's gate passes a shadow up to 5% worse; on noisy labels that lets a
    worse model through by chance. Publish only a shadow that the learner's own
    champion/challenger gate, on the same held-out slice, finds better with confidence."""
    held_out = max(1, int(round(data.samples * trainer.validation_fraction)))
    x, y = data.x[-held_out:].to(device), data.y[-held_out:].to(device)
    gate = ChallengerGate(window=held_out, min_samples=1, check_every=1, min_interval=0.0)
    gate.observe(_per_sample(trainer, outcome.shadow, x, y), _per_sample(trainer, served.model, x, y))
    decision = gate.decide(now=0.0)
    if decision.publish:
        return outcome
    return replace(outcome, accepted=False,
                   reason=f"not better than v{served.number} with confidence on {held_out} held-out samples")


def _per_sample(trainer: ContinuousTrainer, model, x, y) -> list[float]:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        losses = trainer.per_sample_loss(model(x), y)
    model.train(was_training)
    return losses.to("cpu").tolist()


class InShadowUnits(torch.nn.Module):
    """The served regressor's outputs in the target units of the shadow (each version
    standardizes targets with its own statistics): what the gate compares."""

    def __init__(self, served: torch.nn.Module, shadow: torch.nn.Module) -> None:
        super().__init__()
        self.served, self.shadow = served, shadow

    def forward(self, x):
        raw = preprocessing.decode_regression(self.served, self.served(x))
        return preprocessing.encode_targets(self.shadow, raw)
