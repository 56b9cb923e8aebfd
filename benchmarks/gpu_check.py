"""GPU check: an inference worker with ``OMNIMIND_DEVICE=cuda``, four checks, one JSON report.

Run it through ``benchmarks/gpu_check.sh`` (which makes the venv and a CUDA torch) or
directly with a venv that has one:

    python benchmarks/gpu_check.py [--out benchmarks/results/gpu_check.json] [--swaps 100]

It starts a private redis-server (:mod:`omnimind.embedded_redis`) and one inference
worker (threads pool, ``--concurrency=16``: the Procfile's line) serving the wide MLP
(``omnimind.models.factory:wide_mlp``, 8.4 M parameters) on CUDA, and checks:

1. **cpu_equality** — outputs of 32 predicts sent one at a time equal the CPU outputs
   of the same weights, computed in this process (the factory's fixed seed gives
   the worker and this process the same version 0), within ``atol + rtol·|cpu|``;
2. **batching** — a concurrent burst of 64 predicts forms batches larger than one
   (the results' ``"batch": {"id", "examples"}``), with outputs equal to the CPU ones;
3. **hot_swap** — a version published through the model store is served (its
   ``model_version`` and its outputs, against the CPU outputs of the new weights);
4. **memory_after_swaps** — after ``--swaps`` (100) more publishes, each one served
   before the next, ``torch.cuda.memory_allocated`` read inside the worker (the
   ``tasks.inference.device_memory`` probe) has grown by less than one model's size.

Without CUDA (no GPU, or a CPU build of torch) it writes ``"cuda": false`` and the
reason, runs the same checks with the worker on the CPU (memory: the worker's RSS,
with a looser bound, since freed heap is not always returned to the OS) and exits 0
when they pass. Exit status 1: a check failed (the report says which), or
``GPU_CHECK_EXPECT_CUDA=1`` (set by gpu_check.sh when ``nvidia-smi`` lists a GPU) and
torch still has no CUDA.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
from harness import ROOT, private_redis, spawn_worker, stop_all

WIDE = "omnimind.models.factory:wide_mlp"
ATOL, RTOL = 1e-4, 1e-3  # CUDA float32 kernels vs the CPU ones (TF32 stays off for float32 matmul by default)


def cuda_status() -> tuple[bool, str, dict]:
    import torch

    info = {"torch": torch.__version__, "torch_cuda": torch.version.cuda}
    if torch.version.cuda is None:
        return False, f"torch {torch.__version__} is a CPU build (no CUDA)", info
    if not torch.cuda.is_available():
        return False, f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device", info
    info.update(device_name=torch.cuda.get_device_name(0), device_count=torch.cuda.device_count())
    return True, "", info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_check.json")
    parser.add_argument("--swaps", type=int, default=100, help="swaps before the memory reading")
    parser.add_argument("--timeout", type=float, default=270.0, help="seconds for all checks (the script: < 5 min)")
    args = parser.parse_args()
    started = time.monotonic()
    cuda, reason, torch_info = cuda_status()
    device = "cuda" if cuda else "cpu"
    report: dict = {"cuda": cuda, **({"reason": reason} if not cuda else {}), "device": device, **torch_info,
                    "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                "python": platform.python_version()},
                    "model": WIDE, "worker": "threads pool, --concurrency=16", "checks": {}}
    data_dir = tempfile.mkdtemp(prefix="omnimind-gpu-check-")
    port, redis_proc = private_redis(OMNIMIND_DATA_DIR=data_dir, OMNIMIND_MODEL_FACTORY=WIDE,
                                     OMNIMIND_MODEL_KEEP_VERSIONS="3")  # before the settings are first read
    worker = None
    try:
        worker = spawn_worker("gpu-check@%h", "inference", "threads", 16, env={"OMNIMIND_DEVICE": device})
        report["checks"] = run_checks(port, worker, args, started, report)
    except Exception as exc:  # the report still gets written, with the error
        report["error"] = f"{type(exc).__name__}: {exc}"
        report["traceback"] = traceback.format_exc()[-4000:]
    finally:
        if worker is not None:
            stop_all(worker)  # before Redis, so that it deregisters cleanly
        stop_all(redis_proc)
    report["seconds"] = round(time.monotonic() - started, 1)
    checks = report["checks"]
    report["passed"] = "error" not in report and len(checks) == 4 and all(c.get("passed") for c in checks.values())
    if os.environ.get("GPU_CHECK_EXPECT_CUDA") == "1" and not cuda:  # gpu_check.sh saw a GPU (nvidia-smi)
        report["passed"] = False
        report["reason"] = f"nvidia-smi lists a GPU but {reason}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("cuda", "device", "passed", "seconds") if k in report}
                     | {name: c.get("passed") for name, c in checks.items()} | ({"reason": report["reason"]} if "reason" in report else {})
                     | ({"error": report["error"]} if "error" in report else {})))
    print(f"report: {args.out}")
    return 0 if report["passed"] else 1


def run_checks(port: int, worker, args, started: float, report: dict) -> dict:
    import redis
    import torch

    from omnimind.app import app

    from omnimind.config import settings
    from omnimind.models.factory import build_model
    from omnimind.models.store import ModelStore

    deadline = started + args.timeout

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"the checks ran past --timeout {args.timeout:g}s")
        return remaining

    def predict(x):
        return app.send_task("tasks.inference.predict", kwargs={"inputs": x})

    def probe() -> dict:
        return app.send_task("tasks.inference.device_memory").get(timeout=min(30, left()))

    cpu_model = build_model(settings)  # version 0: the same seed as the worker's

    def cpu_outputs(model, inputs) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.tensor(inputs, dtype=torch.float32)).numpy()

    def compare(outputs, expected) -> dict:
        got, want = np.asarray(outputs, dtype=np.float64).reshape(len(expected), -1), expected.astype(np.float64)
        return {"max_abs_difference": float(np.max(np.abs(got - want))),
                "within_tolerance": bool(np.allclose(got, want, atol=ATOL, rtol=RTOL))}

    # The worker answers (it builds the model on its device on first use).
    t0 = time.monotonic()
    while True:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode}")
        try:
            predict([0.0] * settings.model_input_size).get(timeout=5)
            break
        except Exception:
            if left() < 0 or time.monotonic() - t0 > 120:
                raise
    served_on = probe()
    report["worker_start_s"] = round(time.monotonic() - t0, 1)
    report["served_on"] = served_on["device"]
    checks: dict = {}
    rng = np.random.default_rng(12)
    inputs = rng.normal(size=(64, settings.model_input_size)).astype(np.float32)
    expected = cpu_outputs(cpu_model, inputs)

    # 1. Outputs equal the CPU ones.
    alone = [predict(x.tolist()).get(timeout=min(30, left())) for x in inputs[:32]]
    checks["cpu_equality"] = {"requests": 32, "device": served_on["device"], "atol": ATOL, "rtol": RTOL,
                              **compare([r["outputs"] for r in alone], expected[:32])}
    checks["cpu_equality"]["passed"] = (checks["cpu_equality"]["within_tolerance"]
                                        and served_on["device"].startswith(report["device"]))

    # 2. Batching: a concurrent burst forms batches > 1 (a few tries: a fast GPU can drain a burst alone).
    tries = []
    for _ in range(5):
        burst = [predict(x.tolist()) for x in inputs]
        results = [r.get(timeout=min(60, left())) for r in burst]
        sizes = {r["batch"]["id"]: r["batch"]["examples"] for r in results if "batch" in r}
        tries.append({"requests": len(results), "passes": len(sizes), "max_batch": max(sizes.values(), default=0),
                      "average_batch": len(results) / len(sizes) if sizes else 0.0,
                      **compare([r["outputs"] for r in results], expected)})
        if tries[-1]["max_batch"] > 1:
            break
    best = tries[-1]
    checks["batching"] = {**best, "bursts": len(tries),
                          "passed": best["max_batch"] > 1 and all(t["within_tolerance"] for t in tries)}

    # 3. Hot swap: a new version through the model store is served, with its own outputs.
    store = ModelStore(redis.Redis(port=port), keep_versions=3)
    template = cpu_model.state_dict()
    last_bias = sorted(k for k in template if k.endswith(".bias"))[-1]

    def weights(marker: float) -> dict:
        state = {k: v.clone() for k, v in template.items()}
        state[last_bias].add_(marker)
        return state

    def wait_served(version: int) -> float:
        t = time.monotonic()
        while probe()["model_version"] != version:
            time.sleep(0.01)
        return time.monotonic() - t

    state = weights(1.5)
    version = store.publish(state).version
    propagation = wait_served(version)
    swapped_model = build_model(settings)
    swapped_model.load_state_dict(state)
    after = [predict(x.tolist()).get(timeout=min(30, left())) for x in inputs[:16]]
    checks["hot_swap"] = {"version": version, "propagation_s": round(propagation, 4),
                          "served_versions": sorted({r["model_version"] for r in after}),
                          **compare([r["outputs"] for r in after], cpu_outputs(swapped_model, inputs[:16]))}
    checks["hot_swap"]["passed"] = (checks["hot_swap"]["within_tolerance"]
                                    and checks["hot_swap"]["served_versions"] == [version])

    # 4. Memory after --swaps swaps, each served before the next.
    model_bytes = sum(p.numel() * p.element_size() for p in cpu_model.parameters())
    before = probe()
    t_swaps = time.monotonic()
    for i in range(args.swaps):
        version = store.publish(weights(2.0 + i)).version
        while probe()["model_version"] != version:
            left()
            time.sleep(0.005)
    swaps_s = time.monotonic() - t_swaps
    last = predict(inputs[0].tolist()).get(timeout=min(30, left()))
    memory_after = probe()
    if report["cuda"]:
        growth = memory_after["allocated_bytes"] - before["allocated_bytes"]
        bound, what = model_bytes, "torch.cuda.memory_allocated in the worker"
    else:
        growth = memory_after["rss_bytes"] - before["rss_bytes"]
        bound, what = 5 * model_bytes, "worker RSS (no CUDA)"
    checks["memory_after_swaps"] = {
        "swaps": args.swaps, "seconds": round(swaps_s, 1), "measured": what, "model_bytes": model_bytes,
        "before": before, "after": memory_after, "growth_bytes": growth, "bound_bytes": bound,
        "serving_after": last["model_version"],
        "passed": growth <= bound and last["model_version"] == version,
    }
    return checks


if __name__ == "__main__":
    sys.exit(main())
