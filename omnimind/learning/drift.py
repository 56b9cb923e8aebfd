"""Concept-drift detection on the prediction-error stream (seed API: ``ConceptDriftDetector``)."""

from __future__ import annotations

from typing import Any, Mapping

from omnimind.config import DRIFT_METHODS

from .base import DriftMethod
from .cusum import CusumDriftMethod
from .river_drift import RIVER_METHODS, RiverDriftMethod

__all__ = ["ConceptDriftDetector", "DRIFT_METHODS"]


class ConceptDriftDetector:
    """``update(prediction, actual) -> bool`` over the error ``actual - prediction``.

    ``method``: ``"cusum"`` (default, OmniMind's calibrated two-sided CUSUM with a
    warning level; ``window_size`` is its stable warm-up window, during which it
    never alarms), or river's ``"adwin"``, ``"page_hinkley"``, ``"kswin"``
    (``window_size`` is KSWIN's window). ``params`` go to the method's constructor.
    :meth:`update_error` takes an error (or a per-sample loss) directly.

    >>> import random
    >>> rng = random.Random(1)
    >>> detector = ConceptDriftDetector(window_size=100)
    >>> any(detector.update(rng.gauss(0, 1), rng.gauss(0, 1)) for _ in range(100))
    False
    >>> any(detector.update(rng.gauss(0, 1), rng.gauss(5, 1)) for _ in range(200))
    True
    >>> detector.drift_count, detector.samples_seen
    (1, 107)
    """

    def __init__(self, window_size: int = 100, method: str = "cusum", *, seed: int = 0, **params: Any) -> None:
        if method not in DRIFT_METHODS:
            raise ValueError(f"method must be one of {DRIFT_METHODS}, got {method!r}")
        self.window_size = int(window_size)
        self.method = method
        self.seed = int(seed)
        self.params = dict(params)
        self._reset()

    def _reset(self) -> None:
        self._impl = self._build()
        self._samples = 0
        self._drifts = 0
        self._last_drift_at: int | None = None

    def _build(self) -> DriftMethod:
        if self.method == "cusum":
            return CusumDriftMethod(warmup=self.window_size, **self.params)
        params = dict(self.params)
        if self.method == "kswin":
            params.setdefault("window_size", self.window_size)
        return RiverDriftMethod(self.method, seed=self.seed, **params)

    # ----------------------------------------------------------------- results
    @property
    def samples_seen(self) -> int:
        """Errors fed so far."""
        return self._samples

    @property
    def drift_count(self) -> int:
        """Drifts detected so far."""
        return self._drifts

    @property
    def last_drift_at(self) -> int | None:
        """1-based sample number of the most recent drift, or None."""
        return self._last_drift_at

    @property
    def in_warning(self) -> bool:
        """True while the method suspects a change that is not confirmed yet."""
        return self._impl.in_warning

    # ------------------------------------------------------------------ update
    def update(self, prediction: float, actual: float) -> bool:
        """Feed one (prediction, actual) pair; True when drift is declared at it."""
        return self.update_error(float(actual) - float(prediction))

    def update_error(self, error: float) -> bool:
        """Feed one error value directly."""
        self._samples += 1
        drift = self._impl.update(error)
        if drift:
            self._drifts += 1
            self._last_drift_at = self._samples
        return drift

    # ------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        """JSON-able state."""
        return {
            "window_size": self.window_size,
            "method": self.method,
            "seed": self.seed,
            "params": dict(self.params),
            "samples": self._samples,
            "drifts": self._drifts,
            "last_drift_at": self._last_drift_at,
            "impl": self._impl.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.window_size = int(state["window_size"])
        self.method = str(state["method"])
        self.seed = int(state["seed"])
        self.params = dict(state["params"])
        self._reset()
        self._samples, self._drifts = int(state["samples"]), int(state["drifts"])
        self._last_drift_at = state["last_drift_at"]
        self._impl.load_state_dict(state["impl"])
