"""What the training worker's learner tells the outside: its status summary (for
``omnimind status``, written under ``keys.learner_status``) and its metrics.

Kept beside :mod:`workers.learner` as :mod:`workers.raft_status` is beside the Raft
member: the service decides, these read its state and report it.
"""
from __future__ import annotations

import time

import numpy as np

from omnimind.observability import metrics
from workers import publisher

#: Prequential windows kept per model version in the status summary.
VERSIONS_REPORTED = 5


def learner_summary(service) -> dict:
    """The status summary of ``service`` (a ``workers.learner.LearnerService``)."""
    system, gate = service.system, service.gate
    by_version = service._by_version
    recent = [v for v in sorted(by_version)[-VERSIONS_REPORTED:] if by_version[v].count > 0]
    lag = None if service._behind_since is None else time.monotonic() - service._behind_since
    return {
        "node_id": service.node_id,
        "samples": system.samples_seen,
        "batches": system.batches,
        "learning_rate": system.config.learning_rate,
        "lr_boost_remaining": system.lr_boost_remaining,
        "drift_events": len(system.drift_events),
        "diverged_steps": system.diverged_steps,
        "replay_size": len(system.replay_buffer),
        "model_version": service.version,
        "prequential": {str(v): by_version[v].snapshot() for v in recent},
        "freshness": {
            "champion_version": service.champion.number,
            "champion_loss": gate.champion_loss,
            "challenger_loss": gate.challenger_loss,
            "window_samples": gate.window_samples,
            "publishing": service.settings.challenger_publish == "leader" and publisher.is_leader(),
            "last_publication": service._last_publication,
            "last_refusal": service._last_refusal,
            "refusals": dict(service._refusals),
            "lag_s": lag,
            "drift_at_sample": service._drift_at,
        },
    }


def count_learning(result, system, diverged_seen: int) -> int:
    """Record one ``observe`` result of ``system`` in the metrics; returns the divergences
    counted so far (``diverged_seen`` is the previous return)."""
    metrics.feedback_samples.inc(result.accepted)
    metrics.learning_batches_total.inc(result.updates)
    finite = [loss for loss in result.losses if np.isfinite(loss)]
    if finite:
        metrics.learning_loss.set(finite[-1])
    metrics.drift_detections.inc(len(result.drift_events))
    metrics.replay_size.set(len(system.replay_buffer))
    diverged = system.diverged_steps
    metrics.learning_divergences.inc(diverged - diverged_seen)
    return diverged
