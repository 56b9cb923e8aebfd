"""Hot-swap benchmark: propagation time, predict latency during swaps, RSS over many swaps.

Two inference workers (the Procfile's settings: threads pool, concurrency 2 here)
on a private redis-server; versions are published with the model store.

1. propagation: time from `publish` returning until every worker answers with
   the new version (polled through each worker's direct queue), over --swaps;
2. predict latency of a steady client load, without swaps and then during a
   burst of swaps (one publish every --burst-gap seconds), same duration;
3. RSS of each worker process before and after --rss-swaps swaps.

    python benchmarks/hot_swap.py [--swaps 30] [--rss-swaps 200]

Writes benchmarks/results/hot_swap.{json,md,png}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import threading
import time

import numpy as np
from harness import private_redis, pyplot, save_figure, spawn_worker, stop_all, write_results


def pct(samples, q):
    return float(np.percentile(np.asarray(samples) * 1000, q))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--swaps", type=int, default=30)
    parser.add_argument("--rss-swaps", type=int, default=200)
    parser.add_argument("--phase-seconds", type=float, default=8.0)
    parser.add_argument("--burst-gap", type=float, default=0.25)
    args = parser.parse_args()

    port, redis_proc = private_redis(OMNIMIND_MODEL_KEEP_VERSIONS="3")  # before the settings are first read
    workers = {}
    for name in ("swap1", "swap2"):
        hostname = f"{name}@{socket.gethostname()}"
        workers[hostname] = spawn_worker(hostname, "inference", "threads", 2)
    try:
        import psutil
        import redis
        from celery.utils.nodenames import worker_direct

        from omnimind.app import app

        from omnimind.config import settings
        from omnimind.models.factory import build_model
        from omnimind.models.store import ModelStore

        inputs = [0.5] * 16
        store = ModelStore(redis.Redis(port=port), keep_versions=3)
        template = build_model(settings).state_dict()

        def weights(marker):
            state = {k: v.clone() for k, v in template.items()}
            state["4.bias"].fill_(marker)
            return state

        def predict(queue=None):
            return app.send_task("tasks.inference.predict", kwargs={"inputs": inputs},
                                 **({"queue": queue} if queue else {})).get(timeout=30)

        deadline = time.monotonic() + 90
        for hostname in workers:
            while True:
                try:
                    predict(worker_direct(hostname))
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
        fence = [1, 0]

        def publish(marker):
            fence[1] += 1
            return store.publish(weights(float(marker)), fence=tuple(fence)).version

        def wait_all(version):
            t0 = time.perf_counter()
            arrival = {}
            pending = set(workers)
            while pending:
                for hostname in list(pending):
                    if predict(worker_direct(hostname))["model_version"] >= version:
                        arrival[hostname] = time.perf_counter() - t0
                        pending.discard(hostname)
            return max(arrival.values())

        # 1. propagation
        propagation = []
        for i in range(args.swaps):
            version = publish(i)
            propagation.append(wait_all(version))
            time.sleep(0.05)

        # 2. latency: steady vs burst of swaps, same client load
        def load(seconds, during=None):
            latencies, failures, stop = [], [], threading.Event()

            def client():
                while not stop.is_set():
                    t0 = time.perf_counter()
                    try:
                        predict()
                        latencies.append(time.perf_counter() - t0)
                    except Exception as exc:
                        failures.append(repr(exc))

            threads = [threading.Thread(target=client) for _ in range(2)]
            for t in threads:
                t.start()
            end = time.monotonic() + seconds
            swaps = 0
            while time.monotonic() < end:
                if during:
                    during()
                    swaps += 1
                    time.sleep(args.burst_gap)
                else:
                    time.sleep(0.1)
            stop.set()
            for t in threads:
                t.join()
            return latencies, failures, swaps

        steady, steady_fail, _ = load(args.phase_seconds)
        burst, burst_fail, burst_swaps = load(args.phase_seconds, during=lambda: publish(0))
        steady2, steady2_fail, _ = load(args.phase_seconds)  # steady again, to see drift of the machine

        # 3. RSS over many swaps
        procs = {h: psutil.Process(p.pid) for h, p in workers.items()}
        rss_before = {h: p.memory_info().rss for h, p in procs.items()}
        rss_trace = []
        for i in range(args.rss_swaps):
            version = publish(i)
            wait_all(version)
            if i % 10 == 9:
                rss_trace.append([p.memory_info().rss / 2**20 for p in procs.values()])
        rss_after = {h: p.memory_info().rss for h, p in procs.items()}
        model_mb = sum(v.numel() * v.element_size() for v in template.values()) / 2**20

        report = {
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "workers": "2 inference workers, threads pool, concurrency 2",
            "propagation_ms": {"n": len(propagation), "p50": pct(propagation, 50), "p99": pct(propagation, 99),
                               "max": max(propagation) * 1000},
            "latency_ms": {
                "steady": {"n": len(steady), "p50": pct(steady, 50), "p99": pct(steady, 99), "failures": len(steady_fail)},
                "during_swaps": {"n": len(burst), "p50": pct(burst, 50), "p99": pct(burst, 99),
                                 "failures": len(burst_fail), "swaps": burst_swaps},
                "steady_after": {"n": len(steady2), "p50": pct(steady2, 50), "p99": pct(steady2, 99),
                                 "failures": len(steady2_fail)},
            },
            "rss_mb": {
                "swaps": args.rss_swaps,
                "before": {h: v / 2**20 for h, v in rss_before.items()},
                "after": {h: v / 2**20 for h, v in rss_after.items()},
                "growth": {h: (rss_after[h] - rss_before[h]) / 2**20 for h in procs},
                "model_size_mb": model_mb,
                "trace_every_10_swaps": rss_trace,
            },
        }
        lat = report["latency_ms"]
        report["ratios"] = {"p99_during_swaps_over_steady": lat["during_swaps"]["p99"] / lat["steady"]["p99"],
                            "p50_during_swaps_over_steady": lat["during_swaps"]["p50"] / lat["steady"]["p50"]}
        write(report, propagation)
        print(json.dumps({"propagation_ms": report["propagation_ms"], "ratios": report["ratios"],
                          "rss_growth_mb": report["rss_mb"]["growth"]}, indent=2))
    finally:
        stop_all(*workers.values())
        stop_all(redis_proc)
    return 0


def write(report, propagation) -> None:
    p, lat, rss = report["propagation_ms"], report["latency_ms"], report["rss_mb"]
    md = [
        "# Hot swap",
        "",
        f"Machine: {report['machine']['platform']}, {report['machine']['cpus']} CPUs. {report['workers']}.",
        "",
        f"- swap propagation (publish returned → every worker serving it), {p['n']} swaps: "
        f"p50 **{p['p50']:.1f} ms**, p99 **{p['p99']:.1f} ms** (target p99 ≤ 250 ms)",
        f"- predict p99 steady **{lat['steady']['p99']:.2f} ms**, during {lat['during_swaps']['swaps']} swaps "
        f"**{lat['during_swaps']['p99']:.2f} ms** → ratio **{report['ratios']['p99_during_swaps_over_steady']:.3f}** "
        f"(target ≤ 1.1); steady again afterwards {lat['steady_after']['p99']:.2f} ms",
        f"- failed requests: steady {lat['steady']['failures']}, during swaps {lat['during_swaps']['failures']}",
        f"- RSS over {rss['swaps']} swaps: " + ", ".join(
            f"{h.split('@')[0]} {rss['before'][h]:.0f} → {rss['after'][h]:.0f} MB ({rss['growth'][h]:+.1f})" for h in rss["before"]
        ) + f"; one model copy is {rss['model_size_mb']:.3f} MB",
        "",
        "![propagation](hot_swap.png)",
    ]
    write_results("hot_swap", report, md)
    plt = pyplot()
    if plt is not None:
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
        a.plot(np.asarray(propagation) * 1000, marker="o")
        a.set_xlabel("swap")
        a.set_ylabel("propagation (ms)")
        a.set_title("publish → all workers serving")
        trace = np.asarray(rss["trace_every_10_swaps"])
        if trace.size:
            for i, name in enumerate(rss["before"]):
                b.plot(np.arange(1, len(trace) + 1) * 10, trace[:, i], label=name.split("@")[0])
        b.set_xlabel("swaps")
        b.set_ylabel("RSS (MB)")
        b.legend()
        b.set_title("worker RSS")
        save_figure(fig, "hot_swap")


if __name__ == "__main__":
    sys.exit(main())
