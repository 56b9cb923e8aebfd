"""Adapters that run river's drift detectors (ADWIN, Page-Hinkley, KSWIN) behind :class:`DriftMethod`."""

from __future__ import annotations

from collections import deque
from typing import Any, Mapping

from omnimind.config import DRIFT_METHODS

from .base import DriftMethod

__all__ = ["RiverDriftMethod", "RIVER_METHODS"]

#: The drift methods river runs (all of ``omnimind.config.DRIFT_METHODS`` but OmniMind's own CUSUM).
RIVER_METHODS = tuple(m for m in DRIFT_METHODS if m != "cusum")


class RiverDriftMethod(DriftMethod):
    """A ``river.drift`` detector fed the error stream.

    river detectors are not JSON-serialisable, so the checkpoint keeps the errors
    seen since the last drift (at most ``history_limit``) and replays them on
    load: exact for Page-Hinkley (it restarts on drift), close for ADWIN and KSWIN
    (they keep part of the pre-drift window, which the replay does not see).

    >>> method = RiverDriftMethod("page_hinkley")
    >>> any(method.update(0.0) for _ in range(100)), method.update(1000.0)
    (False, True)
    """

    def __init__(self, name: str, *, seed: int = 0, history_limit: int = 10_000, **params: Any) -> None:
        if name not in RIVER_METHODS:
            raise ValueError(f"river method must be one of {RIVER_METHODS}, got {name!r}")
        self.name = name
        self.seed = int(seed)
        self.history_limit = int(history_limit)
        self.params = dict(params)
        self._reset()

    def _reset(self) -> None:
        from river import drift

        if self.name == "adwin":
            self._detector = drift.ADWIN(**self.params)
        elif self.name == "page_hinkley":
            self._detector = drift.PageHinkley(**self.params)
        else:
            self._detector = drift.KSWIN(seed=self.seed, **self.params)
        self._history: deque[float] = deque(maxlen=self.history_limit)

    def update(self, error: float) -> bool:
        error = float(error)
        self._detector.update(error)
        if self._detector.drift_detected:
            # river detectors restart themselves; the replay history restarts with them.
            self._history.clear()
            return True
        self._history.append(error)
        return False

    def state_dict(self) -> dict:
        return {
            "method": self.name,
            "params": dict(self.params),
            "seed": self.seed,
            "history_limit": self.history_limit,
            "history": list(self._history),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.params = dict(state["params"])
        self.seed = int(state["seed"])
        self.history_limit = int(state["history_limit"])
        self._reset()
        for error in state["history"]:
            self._detector.update(float(error))
            self._history.append(float(error))
