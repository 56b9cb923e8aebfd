"""Champion/challenger: when the online learner may replace the served model.

The served model is the *champion*; the online learner is the *challenger*.
Both are scored prequentially on the same newest window of live feedback: each
sample's challenger loss is the learner's loss on it *before* it learned it,
and its champion loss is the served model's loss on it, computed on arrival.
Neither has seen the samples it is scored on, so the comparison is fair, and
paired (same samples), so a window of a few hundred samples tells them apart.

The window restarts whenever the champion changes (the new champion may have
learned the old window) and at a detected drift (only post-change samples
count). Once ``min_samples`` samples are in the window a check runs at every
call while a drift is unanswered, and otherwise whenever the window has grown
by half since the last check, or by ``check_every`` samples: on a young window
checks come at geometrically spaced sizes (32, 48, 72, ...), so a small or slow
stream gets its first publication as soon as a few dozen paired samples show
the challenger better with confidence, while the number of looks (hence the
chance of publishing on noise) stays small. Pure: no I/O and no clock; the
runner passes ``now`` (seconds, any monotonic origin).

>>> gate = ChallengerGate(min_samples=4, check_every=4, min_interval=1.0)
>>> gate.observe([0.5, 0.4, 0.5, 0.4], [1.0, 1.1, 0.9, 1.0])
>>> decision = gate.decide(now=10.0)
>>> decision.publish, decision.reason, round(decision.ratio, 2)
(True, 'challenger', 0.45)
>>> gate.published(now=10.0); gate.window_samples
0
>>> gate.drift(); gate.observe([2.0] * 4, [1.0] * 4)
>>> gate.decide(now=10.5).reason          # worse than the champion on post-change data
'not_better'
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Iterable

__all__ = ["ChallengerGate", "GateDecision"]


@dataclass(frozen=True)
class GateDecision:
    """One check: ``publish`` or not, and why (a label of ``omnimind_model_publication*``)."""

    publish: bool
    reason: str
    champion_loss: float
    challenger_loss: float
    samples: int
    after_drift: bool

    @property
    def ratio(self) -> float:
        """Challenger loss / champion loss (inf when the champion is perfect and the challenger is not)."""
        if self.champion_loss > 0:
            return self.challenger_loss / self.champion_loss
        return 1.0 if self.challenger_loss == 0 else math.inf

    def as_dict(self) -> dict:
        return {"publish": self.publish, "reason": self.reason, "champion_loss": self.champion_loss,
                "challenger_loss": self.challenger_loss, "samples": self.samples, "after_drift": self.after_drift}


class ChallengerGate:
    """Decides, from paired prequential losses, whether the challenger replaces the champion.

    Hyperparameters: ``window`` (newest samples compared), ``min_samples`` (no
    verdict on fewer), ``check_every`` (samples between regular checks),
    ``tolerance`` (publish when challenger ≤ tolerance × champion; stricter than
    the seed's 1.05, so a publication never makes the live window worse and an
    equal model is not republished), ``confidence_z`` (the paired per-sample
    improvement must also exceed ``z`` standard errors: on noisy labels a window
    of a few hundred samples can make a worse model look better by chance),
    ``divergence_factor`` (a challenger this
    many times worse than the champion, or non-finite, has diverged: the runner
    resets it from the champion), ``min_interval`` (seconds between publications).
    """

    def __init__(
        self,
        *,
        window: int = 256,
        min_samples: int = 64,
        check_every: int = 128,
        tolerance: float = 0.98,
        confidence_z: float = 2.33,
        divergence_factor: float = 10.0,
        min_interval: float = 1.0,
    ) -> None:
        if not 0 < min_samples <= window:
            raise ValueError(f"need 0 < min_samples <= window, got {min_samples} and {window}")
        self.window = int(window)
        self.min_samples = int(min_samples)
        self.check_every = int(check_every)
        self.tolerance = float(tolerance)
        self.confidence_z = float(confidence_z)
        self.divergence_factor = float(divergence_factor)
        self.min_interval = float(min_interval)
        self._reset()

    def _reset(self) -> None:
        self._challenger: deque[float] = deque(maxlen=self.window)
        self._champion: deque[float] = deque(maxlen=self.window)
        self._since_check = 0
        self._drift_pending = False
        self._last_publication_at: float | None = None
        self._last: GateDecision | None = None

    # ----------------------------------------------------------------- results
    @property
    def window_samples(self) -> int:
        """Paired samples in the current window."""
        return len(self._champion)

    @property
    def drift_pending(self) -> bool:
        """A drift was detected and no challenger has been published since."""
        return self._drift_pending

    @property
    def last_decision(self) -> GateDecision | None:
        return self._last

    @property
    def champion_loss(self) -> float | None:
        """Mean champion loss on the window (None while it is empty)."""
        return _mean(self._champion)

    @property
    def challenger_loss(self) -> float | None:
        """Mean challenger loss on the window (None while it is empty)."""
        return _mean(self._challenger)

    # ------------------------------------------------------------------ events
    def observe(self, challenger_losses: Iterable[float], champion_losses: Iterable[float]) -> None:
        """Add one batch of paired per-sample losses (same samples, same order)."""
        challenger, champion = list(challenger_losses), list(champion_losses)
        if len(challenger) != len(champion):
            raise ValueError(f"{len(challenger)} challenger losses but {len(champion)} champion losses")
        self._challenger.extend(float(v) for v in challenger)
        self._champion.extend(float(v) for v in champion)
        self._since_check += len(champion)

    def drift(self) -> None:
        """A change was detected: judge only on samples after it, and check soon."""
        self._clear_window()
        self._drift_pending = True

    def champion_changed(self) -> None:
        """Another version became active (a retrain, a rollback): score it afresh."""
        self._clear_window()

    def published(self, now: float) -> None:
        """The challenger was published: it is the champion now."""
        self._last_publication_at = float(now)
        self._drift_pending = False
        self._clear_window()

    def due(self) -> bool:
        samples = len(self._champion)
        if samples < self.min_samples:
            return False
        return self._drift_pending or self._since_check >= min(self.check_every, max(1, samples // 3))

    def decide(self, now: float) -> GateDecision | None:
        """The verdict of a check, or None when no check is due."""
        if not self.due():
            return None
        self._since_check = 0
        champion, challenger = _mean(self._champion), _mean(self._challenger)
        verdict = self._verdict(champion, challenger, now)
        self._last = GateDecision(verdict == "publish", self._publish_reason() if verdict == "publish" else verdict,
                                  champion, challenger, len(self._champion), self._drift_pending)
        return self._last

    def _verdict(self, champion: float, challenger: float, now: float) -> str:
        if not math.isfinite(challenger) or (math.isfinite(champion) and challenger > self.divergence_factor * champion
                                             and champion > 0):
            return "diverged"
        if math.isfinite(champion) and (challenger > self.tolerance * champion or not self._significant()):
            return "not_better"
        if self._last_publication_at is not None and now - self._last_publication_at < self.min_interval:
            return "rate_limited"
        return "publish"

    def _significant(self) -> bool:
        """Whether the challenger's paired improvement is more than ``confidence_z`` standard errors."""
        diffs = [a - b for a, b in zip(self._champion, self._challenger)]
        n = len(diffs)
        mean = math.fsum(diffs) / n
        variance = math.fsum((d - mean) ** 2 for d in diffs) / max(n - 1, 1)
        return mean > self.confidence_z * math.sqrt(variance / n)

    def _publish_reason(self) -> str:
        return "challenger_drift" if self._drift_pending else "challenger"

    def _clear_window(self) -> None:
        self._challenger.clear()
        self._champion.clear()
        self._since_check = 0

    # -------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        return {"challenger": list(self._challenger), "champion": list(self._champion),
                "since_check": self._since_check, "drift_pending": self._drift_pending}

    def load_state_dict(self, state: dict) -> None:
        self._reset()
        self._challenger.extend(float(v) for v in state.get("challenger", []))
        self._champion.extend(float(v) for v in state.get("champion", []))
        self._since_check = int(state.get("since_check", 0))
        self._drift_pending = bool(state.get("drift_pending", False))


def _mean(values) -> float | None:
    if not values:
        return None
    return math.fsum(values) / len(values)
