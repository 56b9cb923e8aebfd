"""The farm side of the real-streams benchmark: one `omnimind up` farm per stream (the Procfile's
inference + training lines, its model set through OMNIMIND_MODEL_FACTORY), the stream driven through it at
its own pace with predict before learn, and a burst that measures how fast the farm learns.

:func:`serve_and_learn` is the one place that speaks the farm's task API: what a request carries and how a
served answer is read (:func:`real_streams_metrics.served_predictions`).
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
from harness import ROOT, omnimind_up, procfile_farm, stop_all, wait_until
from real_streams_data import RealStream
from real_streams_metrics import Batch, served_predictions

PREDICT, LEARN = "tasks.inference.predict", "tasks.training.learn"


def farm_env(stream: RealStream, data_dir: Path) -> dict[str, str]:
    """What a user sets for this stream: the model factory and its input size, cross entropy for a
    classifier. Every other setting keeps its default."""
    env = {"OMNIMIND_DATA_DIR": str(data_dir),
           "OMNIMIND_MODEL_FACTORY": f"benchmarks.stream_models:{stream.name}",
           "OMNIMIND_MODEL_INPUT_SIZE": str(len(stream.features)),
           # the workers import this checkout (and benchmarks.stream_models), wherever they run
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    if stream.task != "regression":
        env["OMNIMIND_LEARNING_LOSS"] = "cross_entropy"
    return env


class StreamFarm:
    """An `omnimind up` farm (inference + training, a one-member Raft group) for one stream."""

    def __init__(self, app, stream: RealStream, run_dir: Path) -> None:
        import psutil

        self.app, self.run_dir = app, run_dir
        procfile, self.info = procfile_farm(("inference", "training"), run_dir)
        self.env = {**farm_env(stream, run_dir / "data"), **self.info["env"]}
        self.proc = omnimind_up(procfile, run_dir, self.env)
        started = time.monotonic()
        try:
            wait_until(self._ready, timeout=240, interval=0.25, message="the farm to answer pings")
            probe = encode_inputs(stream, stream.x[:1])
            answer = app.send_task(PREDICT, kwargs={"inputs": probe}).get(timeout=120)
            #: Whether the farm answers a classifier with its head (label, probabilities, top_k; it then
            #: learns labels) rather than raw outputs (it then learns class indices).
            self.heads = stream.task != "regression" and isinstance(answer["outputs"][0], dict)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started
        self.processes = {}
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            cmdline = " ".join(child.cmdline())
            for name in ("inference", "training"):
                if f"-Q {name}" in cmdline and name not in self.processes:
                    self.processes[name] = child

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise SystemExit(f"omnimind up exited:\n{(self.run_dir / 'farm.log').read_text()[-3000:]}")
        try:
            names = [n for reply in self.app.control.ping(timeout=0.5) for n in reply]
        except Exception:  # noqa: BLE001 - not up yet
            return False
        self.nodes = {q: next((n for n in names if n.startswith(f"{q}@")), None) for q in ("inference", "training")}
        return all(self.nodes.values())

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds (user + system) of each worker process so far."""
        out = {}
        for name, proc in self.processes.items():
            try:
                t = proc.cpu_times()
                out[name] = t.user + t.system
            except Exception:  # noqa: BLE001 - gone
                out[name] = float("nan")
        return out

    def stop(self) -> None:
        stop_all(self.proc, timeout=60)


# ------------------------------------------------------------------ the farm's task API
def encode_inputs(stream: RealStream, rows: np.ndarray) -> list:
    """A request's ``inputs``: today's farm takes one float vector per example, in ``stream.features`` order.
    (A farm with named inputs would take ``[dict(zip(stream.features, row)) ...]``.)"""
    return np.asarray(rows, dtype=np.float64).tolist()


def encode_targets(stream: RealStream, labels: list, heads: bool) -> list:
    """A learn's ``targets``: for a classifier, its labels as text where the farm has classifier heads,
    else class indices (a farm without heads learns cross entropy on indices); for regression, the value."""
    if stream.task == "regression":
        return [float(v) for v in labels]
    if heads:
        return [str(label) for label in labels]
    return stream.class_index(labels)


def serve_and_learn(app, stream: RealStream, batches: list[Batch], heads: bool, timeout: float = 120.0) -> dict:
    """Progressive validation of what the farm serves: for each mini-batch, when it is due, ``predict``
    (the served model) and wait for its answer, then send ``learn`` with the true targets and go on
    without waiting for it. A collector thread takes the learn results as they come.

    ``heads``: the farm answers with classifier heads and learns labels (:attr:`StreamFarm.heads`).
    Returns per-sample ``predictions`` and served ``versions``, per-batch ``sent_s`` (since the first
    send), ``predict_s`` (round trip), ``learn_done_s`` and ``learn`` results, and ``errors``.
    """
    n = len(stream)
    predictions: list = [None] * n
    versions: list = [None] * n
    sent_s, predict_s, errors = [], [], []
    learn_results: list = [None] * len(batches)
    learn_done_s: list = [None] * len(batches)
    pending: deque = deque()
    all_sent = threading.Event()
    t0 = time.monotonic()

    def collect() -> None:
        while not (all_sent.is_set() and not pending):
            if not pending:
                time.sleep(0.005)
                continue
            i, result = pending.popleft()
            try:
                learn_results[i] = result.get(timeout=timeout)
            except Exception as exc:  # noqa: BLE001 - recorded and reported
                errors.append(f"learn batch {i}: {type(exc).__name__}: {exc}")
            learn_done_s[i] = time.monotonic() - t0

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    try:
        for i, batch in enumerate(batches):
            time.sleep(max(0.0, batch.due_s - (time.monotonic() - t0)))  # late: send at once, never skip
            sent = time.monotonic() - t0
            sent_s.append(sent)
            rows = stream.x[batch.start:batch.stop]
            inputs = encode_inputs(stream, rows)
            try:
                served = app.send_task(PREDICT, kwargs={"inputs": inputs}).get(timeout=timeout)
                predictions[batch.start:batch.stop] = served_predictions(served, stream.task, stream.classes)
                versions[batch.start:batch.stop] = [served.get("model_version")] * (batch.stop - batch.start)
            except Exception as exc:  # noqa: BLE001 - a missing prediction counts as wrong
                errors.append(f"predict batch {i}: {type(exc).__name__}: {exc}")
            predict_s.append(time.monotonic() - t0 - sent)
            targets = encode_targets(stream, stream.y[batch.start:batch.stop], heads)
            pending.append((i, app.send_task(LEARN, kwargs={"inputs": inputs, "targets": targets})))
    finally:
        all_sent.set()
        collector.join()
    return {"predictions": predictions, "versions": versions, "sent_s": sent_s, "predict_s": predict_s,
            "learn": learn_results, "learn_done_s": learn_done_s, "errors": errors,
            "duration_s": time.monotonic() - t0}


def learn_burst(app, stream: RealStream, batch_size: int, min_samples: int, heads: bool,
                timeout: float = 300.0) -> dict:
    """The stream's samples, cycled to at least ``min_samples``, sent to ``learn`` all at once in batches
    of ``batch_size``; samples per second from the first send to the last result."""
    n = len(stream)
    rows = np.arange(max(n, min_samples)) % n
    t0 = time.monotonic()
    results = []
    for start in range(0, rows.size, batch_size):
        idx = rows[start:start + batch_size]
        results.append(app.send_task(LEARN, kwargs={
            "inputs": encode_inputs(stream, stream.x[idx]),
            "targets": encode_targets(stream, [stream.y[i] for i in idx], heads)}))
    sent = time.monotonic() - t0
    failures = 0
    for result in results:
        try:
            result.get(timeout=timeout)
        except Exception:  # noqa: BLE001 - counted
            failures += 1
    wall = time.monotonic() - t0
    return {"samples": int(rows.size), "batch_size": batch_size, "tasks": len(results), "failures": failures,
            "send_s": sent, "wall_s": wall, "samples_per_s": rows.size / wall}


def store_publications(client) -> list[dict]:
    """The versions in the model store with their reason (version 0 is never published)."""
    from omnimind.models.store import ModelStore

    out = []
    for meta in ModelStore(client).list_versions():
        reason = getattr(meta, "reason", None) or getattr(meta, "extras", {}).get("reason")
        out.append({"version": meta.version, "reason": reason})
    return out
