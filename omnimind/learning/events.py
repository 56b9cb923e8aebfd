"""Plain records the learning loop hands to its callers (JSON-able via ``dataclasses.asdict``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DriftEvent", "ObserveResult"]


@dataclass(frozen=True)
class DriftEvent:
    """A detected drift, for the coordinator to turn into an early retrain.

    >>> from dataclasses import asdict
    >>> asdict(DriftEvent(sample_index=1234, batch_index=38, error=4.2, method="cusum", model_version=3))["batch_index"]
    38
    """

    sample_index: int  # 1-based position of the sample in the accepted stream
    batch_index: int  # updates completed when it was detected
    error: float  # the error (or per-sample loss) that tipped the detector
    method: str
    model_version: int


@dataclass(frozen=True)
class ObserveResult:
    """What one ``OnlineLearningSystem.observe`` call did.

    >>> ObserveResult(accepted=64, updates=2, losses=(0.5, 0.4), drift_events=()).updates
    2
    """

    accepted: int
    updates: int
    losses: tuple[float, ...]  # one per mini-batch update the call triggered
    drift_events: tuple[DriftEvent, ...]
    #: Each accepted sample's loss, predicted before it was learned (prequential).
    sample_losses: tuple[float, ...] = ()
    #: A classifier's mistakes on them (1.0 wrong, 0.0 right), also prequential; empty for regression.
    sample_errors: tuple[float, ...] = ()
