"""A quick, in-process prequential check of the farm's learning on River's bundled streams.

For each stream (``Phishing``: binary, 1,250 samples; ``ImageSegments``: 7
classes, 2,310 samples) the script builds what a training worker builds, without
Celery: a :class:`~omnimind.models.runtime.ModelRuntime` from the settings and a
:class:`workers.learner.LearnerService` on a real Redis (started here on a free
port). It then feeds the stream in order, in mini-batches, at the stream's pace
(``--rate`` samples/s, 50 by default), and for each mini-batch first predicts
with the *served* model (the learner's champion: the version the gate last
published, which every worker would serve), then learns. The error rate of
those predictions is the served progressive (prequential) error. The learner
acts as the leader of a one-node farm: it publishes under the store's newest
fence (no Raft group in this process).

River's best standard model for each stream runs on the same stream in the same
run (a scaled logistic regression, a kNN), for reference.

The script also runs against an older checkout (``PYTHONPATH`` pointing at it):
without ``omnimind.learning.spec`` it feeds integer class labels with
``OMNIMIND_LEARNING_LOSS=cross_entropy``, as a user had to then.

Run: ``.venv/bin/python benchmarks/learning_streams_quick.py [--rate 50] [--batch 5] [--before OLD.json]``;
writes benchmarks/results/learning_streams_quick.{json,md} (``--out`` elsewhere: JSON only). ``--before``
adds the served error of an earlier run (e.g. of an older checkout) to the table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from omnimind.config import Settings  # noqa: E402
from omnimind.embedded_redis import free_port, start_redis  # noqa: E402
from omnimind.redis_client import redis_client  # noqa: E402

try:
    from omnimind.learning import preprocessing
    HEADS = True
except ImportError:  # an older checkout
    HEADS = False

#: Width of the MLP's hidden layers (input -> 64 -> 64 -> outputs).
HIDDEN = 64


def mlp(settings) -> nn.Module:
    """The stream's MLP: ``OMNIMIND_MODEL_INPUT_SIZE`` -> 64 -> 64 -> ``_outputs`` (set per stream)."""
    return nn.Sequential(nn.Linear(settings.model_input_size, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                         nn.Linear(HIDDEN, mlp.outputs))


mlp.outputs = 1


def streams():
    from river import datasets
    return {
        "phishing": (datasets.Phishing(), "binary", 2),
        "image_segments": (datasets.ImageSegments(), "multiclass", 7),
    }


def load(dataset):
    rows, labels = [], []
    names = None
    for x, y in dataset:
        names = names or sorted(x)
        rows.append([float(x[n]) for n in names])
        labels.append(y if isinstance(y, str) else (str(y).lower() if isinstance(y, bool) else y))
    return np.asarray(rows, dtype=np.float32), labels


def run_farm(name, dataset, head, classes, rate, batch, data_dir, redis_url) -> dict:
    from omnimind.models.runtime import ModelRuntime
    from omnimind.models.store import ModelStore
    from workers import publisher
    from workers.learner import LearnerService

    x, labels = load(dataset)
    order = sorted(set(labels), key=str)
    env = {"OMNIMIND_REDIS_URL": redis_url, "OMNIMIND_BROKER_URL": redis_url,
           "OMNIMIND_MODEL_FACTORY": "benchmarks.learning_streams_quick:mlp",
           "OMNIMIND_MODEL_INPUT_SIZE": str(x.shape[1]), "OMNIMIND_DATA_DIR": data_dir,
           "OMNIMIND_BATCHING": "0", "OMNIMIND_DEVICE": "cpu"}
    if HEADS:
        env["OMNIMIND_MODEL_HEAD"] = head
        mlp.outputs = 1 if head == "binary" else classes
    else:
        env["OMNIMIND_LEARNING_LOSS"] = "cross_entropy"
        mlp.outputs = classes
    # OMNIMIND_* variables of this process win: the tuned case besides the defaults.
    env.update({k: v for k, v in os.environ.items() if k.startswith("OMNIMIND_") and k not in (
        "OMNIMIND_REDIS_URL", "OMNIMIND_BROKER_URL", "OMNIMIND_DATA_DIR")})
    settings = Settings.from_env(env)
    client = redis_client(redis_url)
    client.flushdb()
    store = ModelStore(client, keep_versions=settings.model_keep_versions, producer="quick")
    publisher.leader_fence = lambda: store.fence()  # a one-node farm: this learner leads
    runtime = ModelRuntime(settings)
    learner = LearnerService(settings, runtime, client, f"quick-{name}-{time.time_ns()}")
    errors, learner_errors, published = 0, 0, 0
    trace_served: list[bool] = []
    trace_learner: list[bool] = []
    interval = batch / rate
    started = time.monotonic()
    for i, start in enumerate(range(0, len(x), batch)):
        wait = started + i * interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)  # the stream's own pace: the benchmark's subject, not a synchronisation
        xb, yb = x[start:start + batch], labels[start:start + batch]
        champion = learner.champion
        with torch.no_grad():
            out = champion.model(torch.from_numpy(xb))
        if HEADS:
            rows, _ = preprocessing.decode_outputs(champion.model, learner.spec, out.numpy())
            predicted = [row["label"] for row in rows]
            targets = np.empty(len(yb), dtype=object)
            targets[:] = yb
        else:
            predicted = [order[int(k)] for k in out.argmax(dim=1)]
            targets = np.asarray([[order.index(v)] for v in yb], dtype=np.float32)
        served_wrong = [p != t for p, t in zip(predicted, yb)]
        errors += sum(served_wrong)
        trace_served.extend(served_wrong)
        if HEADS:  # the learner's own prequential error, beside the served one
            with torch.no_grad():
                mine = learner.system.model.eval()(torch.from_numpy(xb))
            rows, _ = preprocessing.decode_outputs(learner.system.model, learner.spec, mine.numpy())
            mine_wrong = [row["label"] != t for row, t in zip(rows, yb)]
            learner_errors += sum(mine_wrong)
            trace_learner.extend(mine_wrong)
        learner.learn(xb, targets, champion.number, f"{name}-{i}")
        published = learner.champion.number
    return {"samples": len(x), "served_error": errors / len(x),
            "learner_error": learner_errors / len(x) if HEADS else None, "versions_published": published,
            "gate_refusals": dict(learner._refusals),
            "error_by_block": {"block": BLOCK, "served": _blocks(trace_served), "learner": _blocks(trace_learner)},
            "seconds": round(time.monotonic() - started, 1)}


#: Samples per block of the error trace.
BLOCK = 100


def _blocks(wrong: list) -> list:
    return [round(float(np.mean(wrong[i:i + BLOCK])), 3) for i in range(0, len(wrong), BLOCK)]


def run_river(name, dataset) -> dict:
    from river import linear_model, neighbors
    from river import preprocessing as rp
    model = (rp.StandardScaler() | linear_model.LogisticRegression()) if name == "phishing" else \
        (rp.StandardScaler() | neighbors.KNNClassifier())
    errors = n = 0
    for x, y in dataset:
        errors += model.predict_one(x) != y
        model.learn_one(x, y)
        n += 1
    return {"model": "StandardScaler | " + ("LogisticRegression" if name == "phishing" else "KNNClassifier"),
            "error": errors / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=50.0, help="samples per second")
    parser.add_argument("--batch", type=int, default=5, help="samples per learn call")
    parser.add_argument("--streams", default="phishing,image_segments")
    parser.add_argument("--out", default="")
    parser.add_argument("--before", default="", help="an earlier run's JSON, shown beside this one")
    args = parser.parse_args()
    # The factory setting names this module: let it resolve to this very module (and its ``mlp.outputs``).
    sys.modules.setdefault("benchmarks.learning_streams_quick", sys.modules[__name__])
    torch.set_num_threads(1)
    port = free_port()
    server = start_redis(port)
    results = {"rate": args.rate, "batch": args.batch, "heads": HEADS, "streams": {}}
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            for name, (dataset, head, classes) in streams().items():
                if name not in args.streams.split(","):
                    continue
                farm = run_farm(name, dataset, head, classes, args.rate, args.batch, data_dir,
                                f"redis://127.0.0.1:{port}/0")
                river = run_river(name, dataset)
                results["streams"][name] = {"farm": farm, "river": river}
                print(name, json.dumps(results["streams"][name]), flush=True)
    finally:
        server.terminate()
        server.wait()
    if args.before:
        results["before"] = json.loads(Path(args.before).read_text())
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        return
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "learning_streams_quick.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "learning_streams_quick.md").write_text(markdown(results))
    print(markdown(results))


def markdown(results: dict) -> str:
    before = results.get("before", {}).get("streams", {})
    lines = ["# Quick prequential check: River's bundled streams through the learner service", "",
             f"In-process (no Celery), real Redis; {results['rate']:g} samples/s in learn calls of "
             f"{results['batch']}, each mini-batch predicted by the served version (the gate's champion) "
             "before it is learned. Error rate of those predictions over the whole stream.", "",
             "| stream | served error | learner's own error | versions published | River, same run | "
             "served / River | served error before |", "|---|---|---|---|---|---|---|"]
    for name, run in results["streams"].items():
        farm, river = run["farm"], run["river"]
        old = before.get(name, {}).get("farm", {}).get("served_error")
        mine = "-" if farm["learner_error"] is None else format(farm["learner_error"], ".3f")
        model = river["model"].replace("|", "\\|")  # a pipe inside a table cell
        lines.append(f"| {name} | {farm['served_error']:.3f} | {mine} | {farm['versions_published']} | "
                     f"{river['error']:.3f} ({model}) | {farm['served_error'] / river['error']:.2f} | "
                     f"{'-' if old is None else format(old, '.3f')} |")
    if before:
        lines += ["", "Before: the same script on an older checkout (integer labels, "
                      "`OMNIMIND_LEARNING_LOSS=cross_entropy`, its defaults otherwise)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
