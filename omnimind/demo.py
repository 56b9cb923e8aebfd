"""``omnimind demo``: drive a running farm with a drifting feedback stream.

Streams are generated locally (nothing is downloaded): the design notes' mean
shift (targets jump by +5 halfway) and river's synthetic generators with an
abrupt concept change halfway (``ConceptDriftStream`` over SEA or Agrawal
variants, a rotating Hyperplane). Features are padded or cut to the model's
input size. Each batch goes to ``tasks.training.learn``; the learner's
prequential (predict-then-learn) loss is plotted with detected drifts marked.

>>> stream = make_stream("mean_shift", n_features=4, total=64, seed=0)
>>> x, y, true_drift = next(iter(stream.batches(32)))
>>> x.shape, y.shape, stream.drift_at
((32, 4), (32,), 32)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from omnimind import keys
from omnimind.redis_client import redis_client

STREAMS = ("mean_shift", "sea", "hyperplane", "agrawal")

# Agrawal's numeric ranges, to scale its features into roughly [0, 1].
_AGRAWAL_SCALE = {"salary": 150_000, "commission": 75_000, "age": 80, "elevel": 4, "car": 20, "zipcode": 8,
                  "hvalue": 1_000_000, "hyears": 30, "loan": 500_000}


@dataclass
class DriftingStream:
    x: np.ndarray
    y: np.ndarray
    drift_at: int

    def batches(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray, bool]]:
        """``(inputs, targets, crosses_the_true_drift)`` per batch."""
        for start in range(0, len(self.x) - size + 1, size):
            yield self.x[start : start + size], self.y[start : start + size], start <= self.drift_at < start + size


def _fit(x: np.ndarray, n_features: int) -> np.ndarray:
    out = np.zeros((x.shape[0], n_features), dtype=np.float32)
    width = min(n_features, x.shape[1])
    out[:, :width] = x[:, :width]
    return out


def _river(stream, total: int, keys=None) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for features, label in stream.take(total):
        names = keys or sorted(features)
        xs.append([float(features[k]) / (_AGRAWAL_SCALE.get(k, 1.0)) for k in names])
        ys.append(float(label))
    return np.asarray(xs, dtype=np.float32), np.asarray(ys, dtype=np.float32)


def make_stream(name: str, n_features: int, total: int, seed: int = 0) -> DriftingStream:
    """``total`` samples with one abrupt change of concept at ``total // 2``."""
    drift_at = total // 2
    if name == "mean_shift":
        rng = np.random.default_rng(seed)
        w = np.linspace(-1, 1, n_features)
        x = rng.normal(size=(total, n_features)).astype(np.float32)
        y = (x @ w).astype(np.float32)
        y[drift_at:] += 5.0  # the design notes' test: actual values move to mean 5
        return DriftingStream(x, y, drift_at)
    from river.datasets import synth

    if name == "sea":
        stream = synth.ConceptDriftStream(synth.SEA(seed=seed, variant=0), synth.SEA(seed=seed + 1, variant=3),
                                          seed=seed, position=drift_at, width=50)
        x, y = _river(stream, total)
        return DriftingStream(_fit(x / 10.0, n_features), y, drift_at)
    if name == "hyperplane":
        before = synth.Hyperplane(seed=seed, n_features=min(n_features, 16), mag_change=0.0)
        after = synth.Hyperplane(seed=seed + 7, n_features=min(n_features, 16), mag_change=0.0)
        stream = synth.ConceptDriftStream(before, after, seed=seed, position=drift_at, width=50)
        x, y = _river(stream, total)
        return DriftingStream(_fit(x, n_features), y, drift_at)
    if name == "agrawal":
        stream = synth.ConceptDriftStream(synth.Agrawal(classification_function=0, seed=seed),
                                          synth.Agrawal(classification_function=2, seed=seed + 1),
                                          seed=seed, position=drift_at, width=50)
        x, y = _river(stream, total, keys=list(_AGRAWAL_SCALE))
        return DriftingStream(_fit(x, n_features), y, drift_at)
    raise ValueError(f"unknown stream {name!r}; choose one of {STREAMS}")


def run_demo(app, settings, stream_name: str, batches: int, batch_size: int, out: Path, seed: int = 0,
             echo=print) -> dict:
    """Send the stream to the farm's learner; returns the trace and writes ``out`` (PNG)."""
    stream = make_stream(stream_name, settings.model_input_size, batches * batch_size, seed)
    client = redis_client(settings.redis_url, settings.sentinel_master)
    trace = {"samples": [], "prequential_loss": [], "step_loss": [], "drifts": [], "true_drift": stream.drift_at}
    sent = 0
    for i, (x, y, _) in enumerate(stream.batches(batch_size), 1):
        result = app.send_task("tasks.training.learn", kwargs={"inputs": x.tolist(), "targets": y.tolist()}).get(
            timeout=60
        )
        sent += len(x)
        summary = json.loads(client.get(keys.learner_status(result["node_id"])) or "{}")
        window = (summary.get("prequential") or {}).get(str(result["model_version"]), {})
        trace["samples"].append(sent)
        trace["prequential_loss"].append(window.get("loss"))
        trace["step_loss"].append(result["loss"])
        if result["drift"]:
            trace["drifts"].append(sent)
        if i % 10 == 0 or i == batches:
            echo(f"batch {i}/{batches}  samples {sent}  prequential loss {window.get('loss', float('nan')):.4f}  "
                 f"drifts detected {len(trace['drifts'])}")
    plot(trace, stream_name, out)
    return trace


def plot(trace: dict, title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    losses = [np.nan if v is None else v for v in trace["prequential_loss"]]
    ax.plot(trace["samples"], losses, label="prequential loss (sliding window)")
    ax.axvline(trace["true_drift"], color="grey", linestyle="--", label="true concept change")
    for i, at in enumerate(trace["drifts"]):
        ax.axvline(at, color="red", alpha=0.6, label="drift detected" if i == 0 else None)
    ax.set_xlabel("feedback samples")
    ax.set_ylabel("loss")
    ax.set_title(f"OmniMind online learning: {title}")
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(args) -> int:
    from omnimind.app import app
    from omnimind.config import get_settings

    settings = get_settings()

    trace = run_demo(app, settings, args.stream, args.batches, args.batch_size, Path(args.out), args.seed)
    print(f"omnimind demo: {len(trace['drifts'])} drift(s) detected (true change after {trace['true_drift']} "
          f"samples); plot written to {args.out}")
    return 0

