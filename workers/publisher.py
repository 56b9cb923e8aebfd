"""Publishing a candidate model: fenced, verified, counted by reason.

Both ways a new version reaches the store go through :func:`publish`: the
learner's challenger (:mod:`workers.learner`) and the deep retrain
(:mod:`workers.retraining`). The fence proves the publisher acts for the Raft
leader of the newest term; ``expected_active`` makes the store refuse a
candidate validated against a champion that is no longer active.

A learner publishes under a fence of its own only when its worker is the
Raft leader: :func:`leader_fence` commits a barrier entry (so the leadership
is current, not remembered) and returns its fence (``omnimind.fence.fence_at``).
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

import torch

from omnimind.models.errors import StaleFence, Superseded
from omnimind.fence import Fence
from omnimind.models.metadata import PublishedVersion
from omnimind.models.store import ModelStore
from omnimind.observability import metrics
from workers import services

logger = logging.getLogger(__name__)


class PublicationRefused(Exception):
    """The candidate was not published; ``reason`` is one of ``metrics.PUBLICATION_REFUSAL_REASONS``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def is_leader() -> bool:
    """Whether this worker's Raft member (if it has one) leads now."""
    member = services.coordinator()
    return member is not None and member.is_leader


def leader_fence() -> Fence:
    """A fence of this worker's Raft member, freshly committed; raises
    ``PublicationRefused("not_leader")`` when this worker is not the leader."""
    member = services.coordinator()
    if member is None:
        raise PublicationRefused("not_leader", "this worker is not a Raft member")
    fence = member.publication_fence()
    if fence is None:
        raise PublicationRefused("not_leader", "this member does not lead (or has not committed its genesis)")
    return fence


def publish(
    store: ModelStore,
    state_dict: Mapping[str, torch.Tensor],
    *,
    reason: str,
    fence: Fence | None,
    expected_active: int | None,
    metadata: Mapping[str, Any],
) -> PublishedVersion:
    """Publish ``state_dict`` as the next version, counted under ``reason``
    (``metrics.PUBLICATION_REASONS``); raises :class:`PublicationRefused`."""
    weights = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    try:
        published = store.publish(weights, {**metadata, "reason": reason}, fence=fence,
                                  expected_active=expected_active)
    except StaleFence as exc:
        refuse("stale_fence")
        raise PublicationRefused("stale_fence", str(exc)) from None
    except Superseded as exc:
        refuse("superseded")
        raise PublicationRefused("superseded", str(exc)) from None
    metrics.publications_by_reason.labels(reason=reason).inc()
    logger.info("Published model v%d (%s)", published.version, reason)
    return published


def refuse(reason: str) -> None:
    """Count one refusal (a label of ``omnimind_model_publication_refusals_total``)."""
    metrics.publication_refusals.labels(reason=reason).inc()
