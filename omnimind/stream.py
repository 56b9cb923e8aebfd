"""``omnimind stream``: drive a drifting feedback stream through a real farm and watch what it serves.

:func:`make_stream` builds one from a seed: ``abrupt`` (concept A, ``y = x·w + b`` plus
noise, then B: new weights, offset ±3), ``gradual`` (river's ``ConceptDriftStream``
from A to B), ``recurring`` (A, B, A), ``friedman`` (river's ``synth.FriedmanDrift``).
:class:`StreamDriver` sends it to ``learn`` at a fixed rate (each batch to ``predict``
first: the served model's prequential error), probes ``predict`` on a fixed probe set
(served MSE against the current concept's noise-free targets), reads the learner's
status JSON and the store's publish notices. ``benchmarks/freshness.py`` reuses it.

>>> s = make_stream("recurring", n_features=4, rate=100, phase_seconds=1.0, seed=0)
>>> s.x.shape, [(c.at, c.label) for c in s.changes], s.weights(150), s.weights(250)
((300, 4), [(100, 'A→B'), (200, 'B→A')], {1: 1.0}, {0: 1.0})
"""
from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from omnimind import keys

STREAMS = ("abrupt", "gradual", "recurring", "friedman")
NOISE = 0.1  # standard deviation of the label noise of the linear concepts


@dataclass(frozen=True)
class Change:
    """A change to concept ``after`` at sample ``at`` (the centre of a gradual one, ``width`` samples wide)."""

    at: int
    after: int
    width: int = 1
    label: str = ""

    def progress(self, index: int) -> float:
        """Share of samples from the new concept at sample ``index`` (river's sigmoid when gradual)."""
        ramp = -4.0 * (index + 1 - self.at) / self.width
        return float(index >= self.at) if self.width <= 1 else 1.0 / (1.0 + math.exp(min(50.0, ramp)))


@dataclass
class FeedbackStream:
    """Feedback samples in send order, and the schedule of concepts behind them (concept 0 first)."""

    name: str
    x: np.ndarray
    y: np.ndarray
    rate: float
    changes: list[Change]
    concepts: list[tuple[np.ndarray, float]] = field(default_factory=list)  # (w, b); none for friedman

    def weights(self, index: int) -> dict[int, float]:
        """Concept index -> share of the samples drawn from it around sample ``index``."""
        current = {0: 1.0}
        for change in self.changes:
            p = change.progress(index)
            current = {k: v * (1 - p) for k, v in current.items()}
            current[change.after] = current.get(change.after, 0.0) + p
        return {k: round(v, 9) for k, v in current.items() if v > 1e-9}

    def expected(self, x: np.ndarray, index: int) -> np.ndarray | None:
        """Noise-free target of ``x`` under the concept(s) current at sample ``index``; None for friedman."""
        if not self.concepts:
            return None
        return sum(share * (x @ self.concepts[k][0] + self.concepts[k][1]) for k, share in self.weights(index).items())

    def batches(self, size: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        return ((i, self.x[i:i + size], self.y[i:i + size]) for i in range(0, len(self.x) - size + 1, size))


def _linear_river(w: np.ndarray, b: float, seed: int):
    """A river regression dataset of one linear concept (for ``ConceptDriftStream``)."""
    from river.datasets import base

    class LinearConcept(base.SyntheticDataset):
        def __iter__(self):
            rng = np.random.default_rng(seed)
            while True:
                x = rng.normal(size=len(w))
                yield dict(enumerate(x)), float(x @ w + b + NOISE * rng.normal())

    return LinearConcept(task=base.REG, n_features=len(w))


def _from_river(dataset, total: int, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    rows = [(list(x.values()), y) for x, y in dataset.take(total)]
    x = np.zeros((len(rows), n_features), dtype=np.float32)
    width = min(n_features, len(rows[0][0]))
    x[:, :width] = np.asarray([r[0][:width] for r in rows], dtype=np.float32)
    return x, np.asarray([r[1] for r in rows], dtype=np.float32)


def make_stream(name: str, n_features: int = 16, rate: float = 320.0, phase_seconds: float = 20.0,
                seed: int = 0, width_seconds: float | None = None) -> FeedbackStream:
    """One stream of ``phase_seconds`` phases at ``rate`` samples/s (see the module doc)."""
    phase = int(round(rate * phase_seconds))
    rng = np.random.default_rng(seed)
    a, b = ((rng.normal(size=n_features) / math.sqrt(n_features), offset)  # concepts y = x @ w + offset
            for offset in (0.0, float(rng.choice([-3.0, 3.0]))))
    if name in ("abrupt", "recurring"):
        plan = [0, 1] if name == "abrupt" else [0, 1, 0]
        x = rng.normal(size=(phase * len(plan), n_features)).astype(np.float32)
        noise = NOISE * rng.normal(size=len(x))
        concept = np.repeat(plan, phase)  # the concept of every sample
        w, offset = np.stack([a[0], b[0]])[concept], np.asarray([a[1], b[1]])[concept]
        y = np.sum(x * w, axis=1) + offset + noise
        changes = [Change(i * phase, plan[i], 1, "AB"[plan[i - 1]] + "→" + "AB"[plan[i]]) for i in range(1, len(plan))]
        return FeedbackStream(name, x, y.astype(np.float32), rate, changes, [a, b])
    from river.datasets import synth

    if name == "gradual":
        width = max(2, int(round(rate * (phase_seconds / 4 if width_seconds is None else width_seconds))))
        drift = synth.ConceptDriftStream(_linear_river(*a, seed + 1), _linear_river(*b, seed + 2), seed=seed,
                                         position=phase, width=width)
        x, y = _from_river(drift, 2 * phase, n_features)
        return FeedbackStream(name, x, y, rate, [Change(phase, 1, width, "A→B")], [a, b])
    if name == "friedman":
        dataset = synth.FriedmanDrift(drift_type="gra", position=(phase, 2 * phase), seed=seed)
        x, y = _from_river(dataset, 3 * phase, n_features)
        return FeedbackStream(name, x, y, rate, [Change(phase, 1, 1, "1→2"), Change(2 * phase, 0, 1, "2→1")])
    raise ValueError(f"unknown stream {name!r}; choose one of {STREAMS}")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def learner_window(summary: dict) -> tuple[float | None, int]:
    """``(loss, samples)`` of the learner's prequential window for the version it descends from.

    >>> learner_window({"model_version": 2, "prequential": {"2": {"loss": 0.25, "count": 3}}})
    (0.25, 3)
    """
    windows = summary.get("prequential") or {}
    newest = max(windows, key=lambda k: int(k) if str(k).isdigit() else -1, default=None)
    entry = windows.get(str(summary.get("model_version"))) or windows.get(newest) or {}
    loss = entry.get("loss")
    return (None if loss is None or not math.isfinite(loss) else float(loss)), int(entry.get("count") or 0)


class StreamDriver:
    """Sends a :class:`FeedbackStream` to a farm at its rate and records what the farm serves.

    >>> driver = StreamDriver(None, None, make_stream("abrupt", 16, rate=320, phase_seconds=1))
    >>> driver.batch_size, round(driver.interval, 3), driver.probe_x.shape
    (32, 0.1, (256, 16))
    """

    def __init__(self, app, redis_client, stream: FeedbackStream, batch_size: int = 32, probe_interval: float = 0.5,
                 probe_size: int = 256, seed: int = 0, node_id: str | None = None) -> None:
        self.app, self.client, self.stream = app, redis_client, stream
        self.batch_size, self.probe_interval, self.interval = batch_size, probe_interval, batch_size / stream.rate
        self.probe_x = np.random.default_rng(seed + 1_000_003).normal(
            size=(probe_size, stream.x.shape[1])).astype(np.float32)
        self.probes = {k: [] for k in ("t", "at", "version", "mse", "learner_loss", "learner_count",
                                       "learner_samples", "learner_version")}
        self.batches = {k: [] for k in ("t", "start", "version", "mse", "mae", "learn_loss", "done_t")}
        self.probe_outputs: list[np.ndarray] = []  # served outputs per probe (not in the trace)
        self.publications, self.errors, self.change_t = [], [], {}
        # node_id: the learner's (else learned from the first learn result); learner_base: its sample
        # count before this stream. _sent: all sent; _stop: all learned (probes and the watcher stop).
        self.node_id, self.learner_base, self.sent, self.send_s = node_id, None, 0, 0.0
        self._pending, self._sent, self._stop, self._t0 = deque(), threading.Event(), threading.Event(), 0.0

    def now(self) -> float:
        return time.monotonic() - self._t0

    def run(self, echo: Callable[[str], None] | None = None) -> dict:
        """Send the whole stream, then probe on until the farm has learned all of it (its backlog
        drained); returns :meth:`trace`. ``echo`` gets one line per second."""
        from omnimind.models.store import ModelStore  # imports torch: seconds, so before anything is sent

        store = ModelStore(self.client)
        pubsub = store.subscribe()  # subscribed now: no publication notice of this run is missed
        self._t0, next_line = time.monotonic(), [1.0]
        self.learner_base = self._status().get("samples", 0) if self.node_id else None
        threads = [threading.Thread(target=f, args=a, daemon=True)
                   for f, a in ((self._collect, ()), (self._probe, ()), (self._watch, (store, pubsub)))]
        for thread in threads:
            thread.start()

        def tick(note: str = "") -> None:
            if echo and self.now() >= next_line[0]:
                echo(self.line() + note)
                next_line[0] += 1.0

        changes = sorted(c.at for c in self.stream.changes)
        for i, (start, x, y) in enumerate(self.stream.batches(self.batch_size)):
            time.sleep(max(0.0, i * self.interval - self.now()))  # late: send at once, never skip
            while changes and changes[0] < start + self.batch_size:
                self.change_t[changes.pop(0)] = self.now()
            inputs = x.tolist()
            predicted = self.app.send_task("tasks.inference.predict", kwargs={"inputs": inputs})
            learned = self.app.send_task("tasks.training.learn", kwargs={"inputs": inputs, "targets": y.tolist()})
            self._pending.append((self.now(), start, y, predicted, learned))
            self.sent = start + len(x)
            tick()
        self.send_s = self.now()
        self._sent.set()
        while threads[0].is_alive():
            threads[0].join(timeout=0.2)
            tick("  (all sent; the farm is still learning)")
        self._stop.set()
        for thread in threads[1:]:
            thread.join(timeout=60)
        return self.trace()

    def line(self) -> str:
        """One status line: served version, served MSE, learner loss, publications so far."""
        version, mse, learner = (self.probes[k][-1] if self.probes[k] else None
                                 for k in ("version", "mse", "learner_loss"))
        return (f"t={self.now():6.1f}s  sent {self.sent:6d}  served v{version}  served mse {_fmt(mse)}  "
                f"learner loss {_fmt(learner)}  publications {len(self.publications)}")

    def _collect(self) -> None:
        while not (self._sent.is_set() and not self._pending):
            if not self._pending:
                time.sleep(0.01)
                continue
            t, start, y, predicted, learned = self._pending.popleft()
            try:
                served, out = predicted.get(timeout=60), learned.get(timeout=120)
            except Exception as exc:  # noqa: BLE001 - recorded and reported, never hidden
                self.errors.append(f"batch {start}: {type(exc).__name__}: {exc}")
                continue
            self.node_id = self.node_id or out.get("node_id")
            err = np.asarray(served["outputs"], dtype=np.float64).reshape(-1) - y
            for key, value in dict(t=t, start=start, version=served["model_version"], mse=float(np.mean(err ** 2)),
                                   mae=float(np.mean(np.abs(err))), learn_loss=out.get("loss"),
                                   done_t=self.now()).items():
                self.batches[key].append(value)

    def _status(self) -> dict:
        raw = self.client.get(keys.learner_status(self.node_id)) if self.node_id else None
        return json.loads(raw) if raw else {}

    def _probe(self) -> None:
        while not self._stop.is_set():
            t, at = self.now(), self.sent
            try:
                served = self.app.send_task("tasks.inference.predict", kwargs={"inputs": self.probe_x.tolist()}
                                            ).get(timeout=30)
                summary = self._status()
            except Exception as exc:  # noqa: BLE001
                self.errors.append(f"probe at {t:.1f}s: {type(exc).__name__}: {exc}")
                self._stop.wait(self.probe_interval)
                continue
            outputs = np.asarray(served["outputs"], dtype=np.float64).reshape(-1)
            target, (loss, count) = self.stream.expected(self.probe_x, at), learner_window(summary)
            for key, value in dict(t=t, at=at, version=served["model_version"], learner_loss=loss,
                                   mse=None if target is None else float(np.mean((outputs - target) ** 2)),
                                   learner_count=count, learner_samples=summary.get("samples"),
                                   learner_version=summary.get("model_version")).items():
                self.probes[key].append(value)
            self.probe_outputs.append(outputs)
            self._stop.wait(max(0.0, self.probe_interval - (self.now() - t)))

    def _watch(self, store, pubsub) -> None:
        for notice in store.notices(pubsub, timeout=0.2):
            if self._stop.is_set():
                return pubsub.close()
            if notice is not None and notice.event == "publish":  # metadata None: pruned already
                meta = {m.version: m for m in store.list_versions()}.get(notice.version)
                reason = meta and (getattr(meta, "reason", None) or meta.extras.get("reason"))
                self.publications.append({"t": self.now(), "version": notice.version, "reason": reason,
                                          "size_bytes": meta and meta.size_bytes})

    def trace(self) -> dict:
        """Everything recorded, JSON-able; times in seconds since the first batch was sent. A change's
        ``t`` is when the batch holding its sample ``at`` was sent (a gradual one's centre)."""
        return {"stream": self.stream.name, "rate": self.stream.rate, "batch_size": self.batch_size,
                "samples": self.sent, "send_s": self.send_s, "duration_s": self.now(),
                "learner_base": self.learner_base, "probes": self.probes, "batches": self.batches,
                "changes": [{"at": c.at, "width": c.width, "label": c.label, "t": self.change_t.get(c.at),
                             "width_s": c.width / self.stream.rate} for c in self.stream.changes],
                "publications": self.publications, "errors": self.errors}


def plot_trace(trace: dict, ax, title: str = "") -> None:
    """Served MSE over time with concept-change and version-change marks, on a matplotlib axis."""
    p, b = trace["probes"], trace["batches"]
    ok = [i for i, m in enumerate(p["mse"]) if m is not None]
    if ok:
        ax.plot([p["t"][i] for i in ok], [max(p["mse"][i], 1e-6) for i in ok], drawstyle="steps-post",
                label="served MSE on the probe set")
    else:  # no closed-form concept: the served model's error on each feedback batch
        ax.plot(b["t"], b["mse"], drawstyle="steps-post", label="served prequential MSE")
    ax.set_yscale("log")
    for i, c in enumerate(c for c in trace["changes"] if c["t"] is not None):
        ax.axvline(c["t"], color="grey", linestyle="--", label="concept change" if i == 0 else None)
        if c["width"] > 1:
            ax.axvspan(c["t"] - c["width_s"] / 2, c["t"] + c["width_s"] / 2, color="grey", alpha=0.15)
    if trace.get("send_s"):
        ax.axvline(trace["send_s"], color="black", linewidth=0.6, linestyle=":", label="last feedback sent")
    swaps = [(t, v) for k, (t, v) in enumerate(zip(p["t"], p["version"])) if k and v != p["version"][k - 1]]
    for i, (t, version) in enumerate(swaps):
        ax.axvline(t, color="tab:green", alpha=0.6, linewidth=0.8, label="served version changed" if i == 0 else None)
        ax.annotate(f"v{version}", (t, 1.0), xycoords=("data", "axes fraction"), fontsize=6, rotation=90, va="top")
    ax.set(xlabel="seconds since the first feedback", ylabel="MSE", title=title or f"{trace['stream']}: served loss")
    ax.legend(fontsize=7, loc="upper left")


def main(args) -> int:
    from matplotlib.figure import Figure

    from omnimind.app import app
    from omnimind.config import get_settings
    from omnimind.redis_client import redis_client

    settings = get_settings()

    stream = make_stream(args.stream, settings.model_input_size, args.rate, args.phase_seconds, args.seed)
    driver = StreamDriver(app, redis_client(settings.redis_url), stream, args.batch_size, args.probe_interval,
                          probe_size=min(256, settings.max_batch_size), seed=args.seed)
    try:  # a farm that serves, or a clear message before anything is sent
        app.send_task("tasks.inference.predict", kwargs={"inputs": driver.probe_x[:1].tolist()}).get(args.timeout)
    except Exception as exc:  # noqa: BLE001
        print(f"omnimind stream: no answer from the farm at {settings.broker_url}: {type(exc).__name__}: {exc}")
        return 1
    print(f"omnimind stream: {args.stream}, {len(stream.x)} samples at {args.rate:g}/s, changes at "
          + ", ".join(f"{c.at / args.rate:g}s ({c.label})" for c in stream.changes), flush=True)
    trace = driver.run(echo=lambda line: print(line, flush=True))
    fig = Figure(figsize=(10, 4), layout="tight")
    plot_trace(trace, fig.subplots(), f"omnimind stream {args.stream} (seed {args.seed})")
    (out := Path(args.out)).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"omnimind stream: {trace['samples']} samples sent in {trace['send_s']:.1f}s, learned by "
          f"{trace['duration_s']:.1f}s; {len(trace['publications'])} publication(s), served versions "
          f"{sorted(set(trace['probes']['version']))}, {len(trace['errors'])} error(s); plot written to {out}")
    for error in trace["errors"][:5]:
        print(f"omnimind stream: error: {error}")
    return 1 if trace["errors"] else 0
