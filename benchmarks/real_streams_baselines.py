"""The baselines of the real-streams benchmark, each kind in a process of its own:

- ``river``: River's standard online models (the project's river), progressive validation (predict_one,
  then learn_one) on every stream: scaled logistic (softmax for several classes) or linear regression,
  a Hoeffding tree, an adaptive random forest (ARF) and kNN;
- ``deep_river``: deep-river's Classifier/Regressor around the same torch module the farm serves
  (benchmarks/stream_models.py, same seed, so the same initial weights) behind River's StandardScaler,
  Adam at 1e-3, predict_one then learn_one; and how many samples per second its learn_one takes.

deep-river 0.3 pins ``river<0.26`` and ``torch<2.6`` (see /work/shared/notes/deep-river.md): it runs with
river 0.25 from a folder of its own (``.bench-deps``, made by :func:`ensure_deep_river` on first use),
first on ``sys.path`` in its process only, beside the project's torch.

    python benchmarks/real_streams_baselines.py {river,deep_river} STREAMS.json OUT.json
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DEPS = ROOT / ".bench-deps"
#: What deep-river needs beside the project's torch and numpy, installed without their dependencies, at the
#: versions the benchmark was measured with.
DEEP_RIVER_REQUIREMENTS = {
    "river25": ["river==0.25.0"],
    "deep": ["deep-river==0.3.4"],
    "deps": ["pandas==3.1.2", "scikit-learn==1.9.1", "tqdm==4.70.1", "sortedcontainers==2.4.0",
             "python-dateutil==4.0.0", "pytz==2026.6", "tzdata==2026.6", "joblib==1.6.0",
             "threadpoolctl==3.8.0", "scipy==1.17.1", "six==1.17.0"],
}

#: Samples per run in which learn throughput is measured (best and median over the runs).
RATE_WINDOW = 250


def ensure_deep_river(deps: Path = BENCH_DEPS) -> Path:
    """Install deep-river and river 0.25 under ``deps`` (an ignored folder) unless they are there."""
    marker, wanted = deps / ".complete", json.dumps(DEEP_RIVER_REQUIREMENTS, sort_keys=True)
    if marker.exists() and marker.read_text() == wanted:
        return deps
    for folder, packages in DEEP_RIVER_REQUIREMENTS.items():
        print(f"installing {' '.join(packages)} into {deps / folder} (once)", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(deps / folder),
                        *packages], check=True)
    (deps / "deps" / "torchviz.py").write_text("# imported by deep-river, never used by the baseline\n")
    marker.write_text(wanted)
    return deps


def _deep_river_path(deps: Path = BENCH_DEPS) -> None:
    sys.path[:0] = [str(deps / "river25"), str(deps / "deep")]
    sys.path.append(str(deps / "deps"))


def knn_engine(seed: int):
    """kNN's default search engine (SWINN, randomised), seeded."""
    from river import neighbors

    return neighbors.SWINN(seed=seed)


def river_models(task: str, seed: int) -> dict:
    """River's standard online models for ``task``, fresh, with their defaults (kNN's engine seeded)."""
    from river import forest, linear_model, neighbors, preprocessing, tree

    if task == "binary":
        return {"logistic (scaled)": preprocessing.StandardScaler() | linear_model.LogisticRegression(),
                "hoeffding tree": tree.HoeffdingTreeClassifier(),
                "hoeffding adaptive tree": tree.HoeffdingAdaptiveTreeClassifier(seed=seed),
                "ARF": forest.ARFClassifier(seed=seed),
                "kNN (scaled)": preprocessing.StandardScaler() | neighbors.KNNClassifier(engine=knn_engine(seed))}
    if task == "multiclass":
        return {"softmax regression (scaled)": preprocessing.StandardScaler() | linear_model.SoftmaxRegression(),
                "hoeffding tree": tree.HoeffdingTreeClassifier(),
                "hoeffding adaptive tree": tree.HoeffdingAdaptiveTreeClassifier(seed=seed),
                "ARF": forest.ARFClassifier(seed=seed),
                "kNN (scaled)": preprocessing.StandardScaler() | neighbors.KNNClassifier(engine=knn_engine(seed))}
    return {"linear regression (scaled)": preprocessing.StandardScaler() | linear_model.LinearRegression(),
            "hoeffding tree (scaled)": preprocessing.StandardScaler() | tree.HoeffdingTreeRegressor(),
            "hoeffding adaptive tree (scaled)": preprocessing.StandardScaler()
            | tree.HoeffdingAdaptiveTreeRegressor(seed=seed),
            "ARF": forest.ARFRegressor(seed=seed),
            "kNN (scaled)": preprocessing.StandardScaler() | neighbors.KNNRegressor(engine=knn_engine(seed))}


def deep_river_model(stream, seed: int):
    """deep-river around the stream's module (same factory and seed as the farm's) behind a StandardScaler."""
    import torch
    from river import preprocessing
    from stream_models import OUTPUTS, mlp

    torch.manual_seed(seed)  # the farm builds its module under torch.manual_seed(OMNIMIND_MODEL_SEED=0)
    module = mlp(len(stream.features), OUTPUTS[stream.name])
    if stream.task == "regression":
        from deep_river.regression import Regressor

        return preprocessing.StandardScaler() | Regressor(module=module, loss_fn="mse", optimizer_fn="adam",
                                                          lr=1e-3, seed=seed)
    from deep_river.classification import Classifier

    return preprocessing.StandardScaler() | Classifier(module=module, loss_fn="cross_entropy", optimizer_fn="adam",
                                                       lr=1e-3, seed=seed)


def progressive(model, stream) -> dict:
    """predict_one then learn_one on every sample; per-sample errors and the time each step took."""
    from real_streams_metrics import best_and_median, sample_errors, window_rates

    predictions, predict_s, learn_s, learn_cpu_s, learn_each = [], 0.0, 0.0, 0.0, []
    cpu0 = time.process_time()
    for x, y in zip(stream.dicts(), stream.y):
        t0 = time.perf_counter()
        predictions.append(model.predict_one(x))
        t1, c1 = time.perf_counter(), time.process_time()
        model.learn_one(x, y)
        t2, c2 = time.perf_counter(), time.process_time()
        predict_s, learn_s, learn_cpu_s = predict_s + (t1 - t0), learn_s + (t2 - t1), learn_cpu_s + (c2 - c1)
        learn_each.append(t2 - t1)
    if stream.task == "regression":
        predictions = [None if p is None else float(p) for p in predictions]
    errors = sample_errors(stream.task, stream.y, predictions)
    return {"errors": errors.tolist(), "error": float(errors.mean()), "predict_s": predict_s, "learn_s": learn_s,
            "learn_samples_per_s": len(stream) / learn_s if learn_s > 0 else None, "learn_cpu_s": learn_cpu_s,
            # over runs of RATE_WINDOW samples: the best is the least disturbed by other work on the cores
            "learn_samples_per_s_windows": best_and_median(window_rates(learn_each, RATE_WINDOW)),
            "learn_samples_per_cpu_s": len(stream) / learn_cpu_s if learn_cpu_s > 0 else None,
            "cpu_s": time.process_time() - cpu0}


def warm_up(model, stream, samples: int = 50) -> None:
    """A throwaway model through the first samples: torch's and deep-river's one-off costs (lazy
    initialisation, first optimizer step) stay out of the timed, progressive run."""
    for x, y in zip(stream.dicts()[:samples], stream.y[:samples]):
        model.predict_one(x)
        model.learn_one(x, y)


def run(kind: str, streams: list, seed: int, torch_threads: int | None = None) -> dict:
    out: dict = {"kind": kind, "streams": {}}
    if kind == "deep_river":
        import deep_river
        import river
        import torch

        if torch_threads:
            torch.set_num_threads(torch_threads)

        out["versions"] = {"deep_river": getattr(deep_river, "__version__", "?"), "river": river.__version__,
                           "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    else:
        import river

        out["versions"] = {"river": river.__version__}
    for stream in streams:
        started = time.monotonic()
        if kind == "deep_river":
            warm_up(deep_river_model(stream, seed), stream)
            results = {"deep-river": progressive(deep_river_model(stream, seed), stream)}
        else:
            results = {name: progressive(model, stream) for name, model in river_models(stream.task, seed).items()}
        out["streams"][stream.name] = results
        summary = ", ".join(f"{name} {r['error']:.4g}" for name, r in results.items())
        print(f"  {kind} on {stream.name} ({time.monotonic() - started:.0f} s): {summary}", flush=True)
    return out


def run_in_subprocess(kind: str, streams: list, seed: int, work: Path, torch_threads: int | None = None) -> dict:
    """:func:`run` in a fresh interpreter (deep-river with its own river first on sys.path)."""
    if kind == "deep_river":
        ensure_deep_river()
    source, target = work / f"{kind}-streams.json", work / f"{kind}-out.json"
    source.write_text(json.dumps({"seed": seed, "torch_threads": torch_threads,
                                  "streams": [s.to_json() for s in streams]}))
    env = {**os.environ, "PYTHONHASHSEED": "0",  # reproducible iteration over sets of labels
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(":")}
    subprocess.run([sys.executable, str(Path(__file__)), kind, str(source), str(target)], check=True, env=env,
                   cwd=ROOT)
    return json.loads(target.read_text())


def main(argv: list[str]) -> int:
    kind, source, target = argv
    if kind not in ("river", "deep_river"):
        raise SystemExit(f"unknown baseline kind {kind!r}")
    if kind == "deep_river":
        _deep_river_path()  # before anything imports river
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from real_streams_data import RealStream

    data = json.loads(Path(source).read_text())
    streams = [RealStream.from_json(s) for s in data["streams"]]
    Path(target).write_text(json.dumps(run(kind, streams, data["seed"], data.get("torch_threads"))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
