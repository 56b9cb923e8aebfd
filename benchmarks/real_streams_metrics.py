"""The pure parts of the real-streams benchmark: the send schedule, what a served answer predicts,
progressive and rolling error, and the verdicts against the targets of issue 19.

No I/O, no clock, nothing but numpy: tests/unit/test_unit_real_streams.py checks them.

>>> errors = sample_errors("multiclass", ["a", "b", "c"], ["a", "c", "c"])
>>> errors.tolist(), progressive_error(errors)
([0.0, 1.0, 0.0], 0.3333333333333333)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

#: The benchmark's targets (issue 19): served progressive error at most these times the baseline's,
#: on every stream, and the farm's learn throughput at least this many times deep-river's learn_one.
TARGETS = {"vs_deep_river": 1.1, "vs_best_river": 1.25, "learn_throughput_vs_deep_river": 10.0}

CLASSIFIERS = ("binary", "multiclass")


# ------------------------------------------------------------------ pacing
@dataclass(frozen=True)
class Batch:
    """Rows ``[start, stop)`` of a stream, due to be sent ``due_s`` seconds after the first."""

    start: int
    stop: int
    due_s: float


def schedule(n_samples: int, batch_size: int, rate: float) -> list[Batch]:
    """Mini-batches of ``batch_size`` rows (the last may be short), each due when the stream, at
    ``rate`` samples per second, has produced its first row.

    >>> [(b.start, b.stop, b.due_s) for b in schedule(5, 2, 4.0)]
    [(0, 2, 0.0), (2, 4, 0.5), (4, 5, 1.0)]
    """
    if n_samples < 0 or batch_size < 1 or not rate > 0:
        raise ValueError(f"need n_samples >= 0, batch_size >= 1 and rate > 0, got {n_samples}, {batch_size}, {rate}")
    return [Batch(start, min(start + batch_size, n_samples), start / rate)
            for start in range(0, n_samples, batch_size)]


def pacing(batches: Sequence[Batch], sent_s: Sequence[float]) -> dict:
    """How closely the sends kept to the schedule: the achieved rate (rows over the span from the first
    send to the time the last batch's rows were all due, i.e. its send plus one batch interval at the
    planned rate) and how late batches went out.

    >>> plan = schedule(6, 2, 2.0)                     # due at 0, 1, 2 s
    >>> p = pacing(plan, [0.0, 1.5, 2.0])
    >>> p["planned_rate"], p["achieved_rate"], p["late_max_s"], p["late_over_1s"]
    (2.0, 2.0, 0.5, 0)
    """
    if len(batches) != len(sent_s) or not batches:
        raise ValueError("one send time per batch, at least one batch")
    rows = batches[-1].stop - batches[0].start
    step = batches[1].due_s - batches[0].due_s if len(batches) > 1 else 0.0
    planned_span = batches[-1].due_s + step - batches[0].due_s
    late = np.maximum(0.0, np.asarray(sent_s) - np.asarray([b.due_s for b in batches]))
    span = sent_s[-1] + step - sent_s[0]
    return {"rows": rows, "planned_rate": rows / planned_span if planned_span > 0 else math.inf,
            "achieved_rate": rows / span if span > 0 else math.inf,
            "late_p50_s": float(np.median(late)), "late_max_s": float(late.max()),
            "late_over_1s": int((late > 1.0).sum())}


# ------------------------------------------------------------------ served answers
def served_predictions(result: dict, task: str, classes: Sequence[Any]) -> list:
    """One prediction per example of a ``tasks.inference.predict`` result for a batch.

    Classifiers: the served label. An example's output that is a classifier head's answer (a dict) is
    read first: its ``label``, else its ``top_k``'s first entry (``[label, p]`` or ``{"label": ...}``),
    else the argmax of its ``probabilities`` (a list in the order of the result's ``labels``, or a
    ``{label: p}``). Raw outputs (today's farm returns logits) are read as their argmax (one output: its
    sign). An integer label is a class index into ``classes``; any other label is matched by its text. A
    head with no label to give (none seen yet) predicts None, which counts as wrong.
    Regression: the first output.

    >>> served_predictions({"outputs": [[0.1, 2.0], [3.0, -1.0]]}, "binary", [False, True])
    [True, False]
    >>> head = {"label": "sky", "probabilities": [0.1, 0.9], "top_k": [["sky", 0.9], ["grass", 0.1]]}
    >>> served_predictions({"outputs": [head], "labels": ["grass", "sky"]}, "multiclass", ["grass", "sky"])
    ['sky']
    >>> served_predictions({"outputs": [[1.5], [2.5]]}, "regression", [])
    [1.5, 2.5]
    """
    outputs = result["outputs"]
    if task == "regression":
        return [float(np.asarray(row, dtype=np.float64).reshape(-1)[0]) for row in outputs]
    order = result.get("labels")  # the order of a head's probabilities
    return [_served_label(out, order, classes) for out in outputs]


def _served_label(out, order, classes: Sequence[Any]):
    if isinstance(out, dict):
        if out.get("label") is not None:
            return _label(out["label"], classes)
        if out.get("top_k"):
            first = out["top_k"][0]
            return _label(first["label"] if isinstance(first, dict) else first[0], classes)
        probabilities = out.get("probabilities")
        if not probabilities:  # a head that has seen no label yet predicts none: counted as wrong
            return None
        if isinstance(probabilities, dict):
            return _label(max(probabilities, key=probabilities.get), classes)
        index = int(np.argmax(np.asarray(probabilities, dtype=np.float64)))
        return _label(order[index] if order else index, classes)
    logits = np.asarray(out, dtype=np.float64).reshape(-1)
    return classes[int(logits[0] > 0) if logits.size == 1 else int(np.argmax(logits))]


def _label(value, classes: Sequence[Any]):
    """A served label as the stream spells it: an int is a class index (today's farm learns and serves
    indices into ``classes``); anything else is a label, matched by its text (JSON turns labels to text)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return classes[int(value)]
    return {str(c): c for c in classes}.get(str(value), value)


# ------------------------------------------------------------------ errors
def sample_errors(task: str, y_true: Sequence, y_pred: Sequence) -> np.ndarray:
    """Per-sample progressive error: 0/1 for a classifier (a missing prediction is wrong), absolute
    error for regression (a missing or non-finite prediction is infinitely wrong).

    >>> sample_errors("regression", [1.0, 2.0], [1.5, None]).tolist()
    [0.5, inf]
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} targets but {len(y_pred)} predictions")
    if task in CLASSIFIERS:
        return np.asarray([0.0 if p is not None and p == t else 1.0 for t, p in zip(y_true, y_pred)])
    if task != "regression":
        raise ValueError(f"unknown task {task!r}")
    pred = np.asarray([math.inf if p is None else float(p) for p in y_pred])
    err = np.abs(np.asarray(y_true, dtype=np.float64) - pred)
    return np.where(np.isfinite(err), err, math.inf)


def progressive_error(errors: Sequence[float]) -> float:
    """Mean per-sample error: the error rate of a classifier, the MAE of a regressor."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.size == 0:
        raise ValueError("no samples")
    return float(errors.mean())


def rolling(errors: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` samples (fewer at the start).

    >>> rolling([1, 0, 1, 1], 2).tolist()
    [1.0, 0.5, 0.5, 1.0]
    """
    a = np.asarray(errors, dtype=np.float64)
    if window < 1:
        raise ValueError("window must be >= 1")
    if a.size == 0:
        return a
    sums = np.cumsum(np.insert(a, 0, 0.0))
    ends = np.arange(1, a.size + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def error_name(task: str) -> str:
    return "error rate" if task in CLASSIFIERS else "MAE"


# ------------------------------------------------------------------ verdicts
def ratio(value: float, baseline: float) -> float:
    """``value / baseline``; a zero baseline gives 1 for a zero value, else infinity.

    >>> ratio(0.2, 0.1), ratio(0.0, 0.0), ratio(0.1, 0.0)
    (2.0, 1.0, inf)
    """
    if baseline == 0:
        return 1.0 if value == 0 else math.inf
    return value / baseline


def verdict(served: float, deep_river: float | None, river: dict[str, float]) -> dict:
    """The served error against deep-river's and the best River model's, with pass/fail per target
    (a missing baseline: ``None``, never a pass).

    >>> v = verdict(0.12, 0.11, {"logistic": 0.10, "knn": 0.2})
    >>> v["best_river"], round(v["vs_best_river"], 2), v["pass_deep_river"], v["pass_best_river"]
    ('logistic', 1.2, True, True)
    """
    finite = {name: err for name, err in river.items() if err is not None and math.isfinite(err)}
    best = min(finite, key=finite.get) if finite else None
    vs_deep = ratio(served, deep_river) if deep_river is not None else None
    vs_best = ratio(served, finite[best]) if best is not None else None
    return {"served": served, "deep_river": deep_river, "best_river": best,
            "best_river_error": finite[best] if best is not None else None,
            "vs_deep_river": vs_deep, "vs_best_river": vs_best,
            "pass_deep_river": None if vs_deep is None else vs_deep <= TARGETS["vs_deep_river"],
            "pass_best_river": None if vs_best is None else vs_best <= TARGETS["vs_best_river"]}


def throughput_verdict(farm_samples_per_s: float | None, deep_river_samples_per_s: float | None) -> dict:
    """The farm's learn throughput against deep-river's ``learn_one``.

    >>> throughput_verdict(9000.0, 800.0)["pass"]
    True
    """
    if not farm_samples_per_s or not deep_river_samples_per_s:
        return {"farm": farm_samples_per_s, "deep_river": deep_river_samples_per_s, "ratio": None, "pass": None}
    r = farm_samples_per_s / deep_river_samples_per_s
    return {"farm": farm_samples_per_s, "deep_river": deep_river_samples_per_s, "ratio": r,
            "pass": r >= TARGETS["learn_throughput_vs_deep_river"]}


def window_rates(durations_s: Sequence[float], window: int) -> list[float]:
    """Samples per second in each run of ``window`` consecutive samples (a short tail run is dropped unless
    it is the only one), from each sample's duration.

    >>> window_rates([0.001] * 5, 2)
    [1000.0, 1000.0]
    """
    d = np.asarray(durations_s, dtype=np.float64)
    if window < 1 or d.size == 0:
        raise ValueError("need window >= 1 and at least one sample")
    runs = [d[i:i + window] for i in range(0, d.size, window)]
    if len(runs) > 1 and runs[-1].size < window:
        runs.pop()
    return [float(r.size / r.sum()) if r.sum() > 0 else math.inf for r in runs]


def best_and_median(rates: Sequence[float]) -> dict:
    """The best rate (the least disturbed by other work on shared cores) and the median.

    >>> best_and_median([3.0, 1.0, 2.0])
    {'best': 3.0, 'median': 2.0}
    """
    if not len(rates):
        raise ValueError("no rates")
    return {"best": float(max(rates)), "median": float(np.median(rates))}
