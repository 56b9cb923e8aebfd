"""Latency of one online-learning update (32 new + 16 replayed) vs a bare torch step, and the farm's schedule.

Measures, in the same process and on the same model (the farm's default MLP,
16 -> 64 -> 64 -> 1):

* ``bare_torch_step``: forward + MSE + backward + SGD step on 48 ready-made rows;
* ``update_only``: the system's update (replay sample of 16, IS weights, step,
  divergence check, priority update) on 32 pending rows;
* ``observe_32``: the full ``OnlineLearningSystem.observe`` of a 32-row batch
  (validation, prediction, drift detector, prequential metrics, replay add,
  then the update above) with the replay buffer full (10 000 items);
* ``observe_32_farm``: the same call as the farm's learner makes it with default settings
  (``workers/learner.py``) for this regressor: a step on every call (here one pass, what a fast
  stream gets), SGD at 0.01 with gradient clipping, and online preprocessing (the input and target
  statistics updated, targets standardized at every step);
* ``extra_pass_farm``: what each further pass of a slow stream's call costs on top.

Run: ``.venv/bin/python benchmarks/learning_update.py`` (writes benchmarks/results/learning_update.{json,md}).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from omnimind.learning import OnlineLearningSystem, OnlineSGDConfig, preprocessing  # noqa: E402
from omnimind.learning.spec import ModelSpec  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
IN_FEATURES, WARMUP, ITERATIONS = 16, 300, 3000


def default_model(in_features: int = IN_FEATURES) -> nn.Module:
    return nn.Sequential(nn.Linear(in_features, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))


def percentiles(samples_s: list[float]) -> dict:
    us = np.asarray(samples_s) * 1e6
    return {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)),
            "mean_us": float(us.mean()), "max_us": float(us.max()), "n": int(us.size)}


def bench_bare(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    times = []
    for i in range(WARMUP + ITERATIONS):
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        if i >= WARMUP:
            times.append(time.perf_counter() - t0)
    return times


def make_system(seed: int) -> OnlineLearningSystem:
    torch.manual_seed(seed)
    system = OnlineLearningSystem(default_model(), config=OnlineSGDConfig(learning_rate=0.01),
                                  rng=np.random.default_rng(seed))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(10_000, IN_FEATURES, generator=gen)
    system.observe(x, x[:, :1] * 0.5)  # fills the replay buffer to capacity
    return system


def make_farm_system(seed: int) -> OnlineLearningSystem:
    """The farm learner's core with the default settings (omnimind.config, workers/learner.py)."""
    torch.manual_seed(seed)
    spec = ModelSpec()
    model = preprocessing.attach(default_model(), spec, input_width=IN_FEATURES, output_width=1)
    # A regressor's defaults: SGD at 0.01 (workers.learner.optimizer/learning_rate), clipping at 10.
    system = OnlineLearningSystem(model, config=OnlineSGDConfig(learning_rate=0.01, optimizer="sgd",
                                                                grad_clip_norm=10.0),
                                  rng=np.random.default_rng(seed), step_every_observe=True, spec=spec)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(10_000, IN_FEATURES, generator=gen)
    system.observe(x[:32], x[:32, :1] * 0.5)
    system.replay_buffer.add_batch(x.numpy(), (x[:, :1] * 0.5).numpy(), np.ones(10_000))  # full, as above
    return system


def bench_observe(system: OnlineLearningSystem, batches: list, passes: int = 1) -> list[float]:
    times = []
    for i, (x, y) in enumerate(batches):
        t0 = time.perf_counter()
        system.observe(x, y, passes=passes)
        if i >= WARMUP:
            times.append(time.perf_counter() - t0)
    return times


def bench_update_only(system: OnlineLearningSystem, batches: list) -> list[float]:
    times = []
    slots = np.arange(32)
    for i, (x, y) in enumerate(batches):
        t0 = time.perf_counter()
        system._update(x, y, slots)
        if i >= WARMUP:
            times.append(time.perf_counter() - t0)
    return times


def run(threads: int) -> dict:
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(WARMUP + ITERATIONS):
        x = torch.randn(32, IN_FEATURES, generator=gen)
        batches.append((x, x[:, :1] * 0.5 + 0.1 * torch.randn(32, 1, generator=gen)))
    x48 = torch.randn(48, IN_FEATURES, generator=gen)
    torch.manual_seed(0)
    farm_one = percentiles(bench_observe(make_farm_system(3), batches))
    farm_four = percentiles(bench_observe(make_farm_system(4), batches, passes=4))
    extra = {k: (farm_four[k] - farm_one[k]) / 3 for k in ("p50_us", "p99_us", "mean_us", "max_us")}
    return {
        "torch_threads": threads,
        "bare_torch_step": percentiles(bench_bare(default_model(), x48, x48[:, :1])),
        "update_only": percentiles(bench_update_only(make_system(1), batches)),
        "observe_32": percentiles(bench_observe(make_system(2), batches)),
        "observe_32_farm": farm_one,
        "extra_pass_farm": {**extra, "n": farm_four["n"]},
    }


def main() -> None:
    runs = [run(1), run(torch.get_num_threads() if torch.get_num_threads() > 1 else 2)]
    result = {
        "benchmark": "learning_update",
        "model": "Sequential(Linear(16,64), ReLU, Linear(64,64), ReLU, Linear(64,1))",
        "batch": "32 new + 16 replayed, replay capacity 10000 (full)",
        "target": "observe_32 p99 <= 2000 us on CPU",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "runs": runs,
        # The 2-core host is shared with other jobs; a high load explains p99 outliers.
        "loadavg_1m_after": os.getloadavg()[0],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "learning_update.json").write_text(json.dumps(result, indent=2))
    lines = ["# Online update latency (32 new + 16 replayed)", "",
             f"Model: {result['model']}; {result['batch']}; torch {torch.__version__}, CPU.", "",
             "| torch threads | measurement | p50 (µs) | p99 (µs) | mean (µs) |", "|---|---|---|---|---|"]
    for r in runs:
        for name in ("bare_torch_step", "update_only", "observe_32", "observe_32_farm", "extra_pass_farm"):
            s = r[name]
            lines.append(f"| {r['torch_threads']} | {name} | {s['p50_us']:.0f} | {s['p99_us']:.0f} "
                         f"| {s['mean_us']:.0f} |")
    lines += ["", "`observe_32` is the full per-batch cost the `learn` task pays (validation, prediction,",
              "drift detector, prequential metrics, replay add + sample(16) + priority update, IS-weighted",
              "step, divergence check). Target: p99 ≤ 2 000 µs (the seed asked < 100 ms).",
              "`observe_32_farm` is the same call as the farm's learner makes it (one step per call: a fast",
              "stream's; a regressor's defaults: SGD with clipping; input/target statistics updated, targets",
              "standardized);",
              "`extra_pass_farm` is what each further pass of a slow stream adds ((4 passes - 1 pass) / 3).",
             f"Host load average (1 min) after the run: {result['loadavg_1m_after']:.2f} on "
             f"{os.cpu_count()} CPUs; p99 with 2 torch threads is sensitive to other jobs."]
    (RESULTS / "learning_update.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
