"""Round-trip latency and throughput of `predict` vs a bare no-op Celery task.

Both run on the same redis-server and the same inference worker, with the pool and
concurrency of the Procfile's inference line (read from it: a threads pool of 16 when
this was written), interleaved in blocks so machine noise
hits both alike. Redis commands per task are counted from INFO commandstats to
show what `predict` costs beyond Celery's own traffic.

    python benchmarks/predict_latency.py [--requests 2000] [--burst 1000]

Writes benchmarks/results/predict_latency.{json,md,png}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time

import numpy as np
from harness import ROOT, percentiles_ms, private_redis, pyplot, save_figure, spawn_worker, stop_all, write_results


def procfile_inference_worker() -> tuple[str, int]:
    """The pool and concurrency the Procfile's ``inference`` line runs (what ``omnimind up`` starts)."""
    from omnimind.farm import parse_procfile

    command = {spec.name: spec.command for spec in parse_procfile((ROOT / "Procfile").read_text())}["inference"]
    pool = re.search(r"--pool[= ](\w+)", command)
    concurrency = re.search(r"--concurrency[= ](\d+)", command)
    if pool is None or concurrency is None:
        raise SystemExit(f"the Procfile's inference line names no --pool or --concurrency: {command!r}")
    return pool.group(1), int(concurrency.group(1))


def total_commands(client) -> int:
    return sum(v["calls"] for v in client.info("commandstats").values())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000, help="sequential round trips per task kind")
    parser.add_argument("--burst", type=int, default=1000, help="tasks in flight for the throughput test")
    parser.add_argument("--block", type=int, default=100, help="interleaving block size")
    args = parser.parse_args()

    port, redis_proc = private_redis()  # before the settings are first read
    pool, concurrency = procfile_inference_worker()
    worker = spawn_worker("bench@%h", "inference", pool, concurrency)
    try:
        import redis

        from omnimind.app import app

        client = redis.Redis(port=port)
        inputs = [0.5] * 16
        kinds = {
            "noop": lambda: app.send_task("tasks.inference.noop"),
            "predict": lambda: app.send_task("tasks.inference.predict", kwargs={"inputs": inputs}),
        }
        deadline = time.monotonic() + 60
        while True:  # wait until the worker answers
            try:
                kinds["predict"]().get(timeout=2)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
        for _ in range(200):  # warm-up
            for send in kinds.values():
                send().get(timeout=10)

        latencies = {k: [] for k in kinds}
        commands = {k: 0 for k in kinds}
        for start in range(0, args.requests, args.block):
            for kind, send in kinds.items():
                before = total_commands(client)
                for _ in range(min(args.block, args.requests - start)):
                    t0 = time.perf_counter()
                    send().get(timeout=10)
                    latencies[kind].append(time.perf_counter() - t0)
                commands[kind] += total_commands(client) - before - 1  # minus the INFO itself

        throughput = {}
        for kind, send in kinds.items():
            t0 = time.perf_counter()
            results = [send() for _ in range(args.burst)]
            for r in results:
                r.get(timeout=60)
            throughput[kind] = args.burst / (time.perf_counter() - t0)

        report = {
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
            "worker": f"{pool} pool, concurrency {concurrency} (the Procfile's inference worker), default OmniMind "
                      "settings (task events off)",
            "latency": {k: percentiles_ms(v) for k, v in latencies.items()},
            "redis_commands_per_task": {k: commands[k] / args.requests for k in kinds},
            "throughput_tasks_per_s": throughput,
        }
        lat = report["latency"]
        report["ratios"] = {
            "predict_p50_over_noop_p50": lat["predict"]["p50_ms"] / lat["noop"]["p50_ms"],
            "predict_p99_over_noop_p99": lat["predict"]["p99_ms"] / lat["noop"]["p99_ms"],
            "extra_redis_commands_per_predict": report["redis_commands_per_task"]["predict"]
            - report["redis_commands_per_task"]["noop"],
            "throughput_predict_over_noop": throughput["predict"] / throughput["noop"],
        }
        write(report, latencies)
        print(json.dumps(report["ratios"], indent=2))
    finally:
        stop_all(worker)
        stop_all(redis_proc)  # last: the worker needs it to shut down warmly
    return 0


def write(report, latencies) -> None:
    lat, ratios = report["latency"], report["ratios"]
    md = [
        "# predict vs no-op round trip",
        "",
        f"Machine: {report['machine']['platform']}, {report['machine']['cpus']} CPUs. Worker: {report['worker']}.",
        "",
        "| task | p50 ms | p90 ms | p99 ms | mean ms | Redis cmds/task | burst tasks/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in ("noop", "predict"):
        lk = lat[kind]
        md.append(
            f"| {kind} | {lk['p50_ms']:.2f} | {lk['p90_ms']:.2f} | {lk['p99_ms']:.2f} | {lk['mean_ms']:.2f} | "
            f"{report['redis_commands_per_task'][kind]:.1f} | {report['throughput_tasks_per_s'][kind]:.0f} |"
        )
    md += [
        "",
        f"- predict p50 / no-op p50 = **{ratios['predict_p50_over_noop_p50']:.3f}** (target ≤ 1.2)",
        f"- predict p99 = **{lat['predict']['p99_ms']:.2f} ms** (target ≤ 10 ms on loopback)",
        f"- extra Redis commands per predict beyond Celery's own = **{ratios['extra_redis_commands_per_predict']:.2f}** (target ≤ 3)",
        f"- burst throughput predict / no-op = **{ratios['throughput_predict_over_noop']:.3f}**",
        "",
        "![latency CDF](predict_latency.png)",
    ]
    write_results("predict_latency", report, md)
    plt = pyplot()
    if plt is not None:
        fig, ax = plt.subplots(figsize=(7, 4))
        for kind, samples in latencies.items():
            xs = np.sort(np.asarray(samples) * 1000)
            ax.plot(xs, np.arange(1, xs.size + 1) / xs.size, label=kind)
        ax.set_xlabel("round trip (ms)")
        ax.set_ylabel("fraction of requests")
        ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        ax.set_title("predict vs no-op round trip (same worker, same Redis)")
        save_figure(fig, "predict_latency")


if __name__ == "__main__":
    sys.exit(main())
