"""OmniMind's own per-task overhead: ``predict`` (default tiny MLP) vs ``noop`` on the Procfile's worker.

The worker is the Procfile's ``inference`` line as written (threads pool, --concurrency=16,
--loglevel=INFO, a metrics port, so prometheus multiprocess files are written), with its
metrics port moved to a free one, on a private redis-server.

What the no-op includes: ``tasks.inference.noop`` is an OmniMind task like ``predict``, so it
pays everything every task on that worker pays: Celery's own message handling, result store
and ack (task events too when they are on; off by default), plus OmniMind's per-task hooks
(the argument check, arming the time-limit watchdog, the metric signal handlers and the
queue-wait stamp). ``predict / noop`` therefore
measures what ``predict`` itself adds: validation, the model runtime and batcher, the forward
pass, the batch metrics and a bigger message and result. The worker-side runtime (prerun to
postrun, from the worker's ``omnimind_task_runtime_seconds``; it includes storing the result) and
the worker's CPU time per task (every thread, from ``/proc/<pid>/task/*/schedstat``, which a
loaded machine disturbs far less than wall time) are reported too.

``--tree REF`` (repeatable) also measures the worker code of a git ref (exported with
``git archive`` to a temporary folder), e.g. the commit before the overhead fixes: every tree
gets its own worker in turn, ``--rounds`` times (A B A B ...), and within a turn noop and
predict alternate in blocks, so each ratio compares samples taken side by side.

    python benchmarks/overhead.py [--tree f85983a] [--requests 600] [--burst 200] [--rounds 2]

Writes benchmarks/results/overhead.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import (ROOT, answers, free_port, metric_value, percentiles_ms, private_redis, scrape, stop_all, wait_until,
                     write_results)

INPUTS = [0.5] * 16


def procfile_inference_argv(metrics_port: int) -> list[str]:
    """The Procfile's inference command as argv, run by this interpreter, metrics on ``metrics_port``."""
    from omnimind.farm import parse_procfile

    spec = next(s for s in parse_procfile((ROOT / "Procfile").read_text()) if s.name == "inference")
    command = re.sub(r"(--metrics-port[= ])\d+", lambda m: m.group(1) + str(metrics_port), spec.command)
    argv = shlex.split(command)
    assert argv[0] == "celery", argv
    return [sys.executable, "-m", "celery", *argv[1:]]


def export_tree(ref: str, into: Path) -> Path:
    """``git archive ref`` unpacked under ``into``: a plain copy of that commit's files."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run_closed(send, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        send().get(timeout=30)
        out.append(time.perf_counter() - t0)
    return out


def run_burst(send, n: int) -> tuple[list[float], float]:
    t0 = time.perf_counter()
    sent = [(time.perf_counter(), send()) for _ in range(n)]
    latencies = []
    for at, result in sent:
        result.get(timeout=60)
        latencies.append(time.perf_counter() - at)
    return latencies, time.perf_counter() - t0


def cpu_seconds(pid: int) -> float:
    """On-CPU time of every thread of process ``pid`` so far (``/proc/<pid>/task/*/schedstat``, ns)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):  # a thread that just ended
            pass
    return total / 1e9


def runtime_totals(port: int) -> dict:
    text = scrape(port)
    return {task: (metric_value(text, "omnimind_task_runtime_seconds_sum", task=f"tasks.inference.{task}"),
                   metric_value(text, "omnimind_task_runtime_seconds_count", task=f"tasks.inference.{task}"))
            for task in ("noop", "predict")}


def measure_turn(app, tree: Path, args, acc: dict) -> None:
    """One worker of ``tree``: noop and predict alternating in blocks, closed loop then bursts."""
    port = free_port()
    log = open(tree / "overhead-worker.log", "ab") if args.keep_logs else subprocess.DEVNULL
    worker = subprocess.Popen(procfile_inference_argv(port), cwd=tree, stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONPATH": str(tree)}, start_new_session=True)
    kinds = {"noop": lambda: app.send_task("tasks.inference.noop"),
             "predict": lambda: app.send_task("tasks.inference.predict", kwargs={"inputs": INPUTS})}
    try:
        wait_until(lambda: answers(kinds["predict"]), timeout=120, message="worker answers")
        wait_until(lambda: _scrapes(port), timeout=30, message="metrics page")
        for send in kinds.values():  # warm-up
            run_closed(send, 100)
            run_burst(send, args.burst)
        before = runtime_totals(port)
        for start in range(0, args.requests, args.block):
            for kind, send in kinds.items():
                n, cpu = min(args.block, args.requests - start), cpu_seconds(worker.pid)
                acc["closed"][kind] += run_closed(send, n)
                acc["cpu"][kind][0] += cpu_seconds(worker.pid) - cpu
                acc["cpu"][kind][1] += n
        after = runtime_totals(port)
        for kind in kinds:
            acc["runtime"][kind][0] += after[kind][0] - before[kind][0]
            acc["runtime"][kind][1] += after[kind][1] - before[kind][1]
        for _ in range(args.bursts):
            for kind, send in kinds.items():
                latencies, wall = run_burst(send, args.burst)
                acc["burst"][kind] += latencies
                acc["burst_wall"][kind] += wall
                acc["burst_n"][kind] += len(latencies)
    finally:
        stop_all(worker)


def _scrapes(port: int) -> bool:
    try:
        scrape(port)
        return True
    except OSError:
        return False


def summarize(acc: dict) -> dict:
    closed = {k: percentiles_ms(v) for k, v in acc["closed"].items()}
    burst = {k: percentiles_ms(v) for k, v in acc["burst"].items()}
    throughput = {k: acc["burst_n"][k] / acc["burst_wall"][k] for k in acc["burst_n"]}
    runtime_us = {k: (s / c * 1e6 if c else None) for k, (s, c) in acc["runtime"].items()}
    cpu_us = {k: s / c * 1e6 for k, (s, c) in acc["cpu"].items()}
    return {
        "closed_loop_c1": closed,
        "burst": {**burst, "throughput_per_s": throughput},
        "worker_runtime_mean_us": runtime_us,
        "worker_cpu_us_per_task": cpu_us,
        "ratios": {
            "predict_p50_over_noop_p50": closed["predict"]["p50_ms"] / closed["noop"]["p50_ms"],
            "predict_mean_over_noop_mean": closed["predict"]["mean_ms"] / closed["noop"]["mean_ms"],
            "burst_p50_predict_over_noop": burst["predict"]["p50_ms"] / burst["noop"]["p50_ms"],
            "burst_throughput_predict_over_noop": throughput["predict"] / throughput["noop"],
            "worker_cpu_predict_over_noop": cpu_us["predict"] / cpu_us["noop"],
        },
        "predict_minus_noop": {
            "closed_p50_us": (closed["predict"]["p50_ms"] - closed["noop"]["p50_ms"]) * 1000,
            "worker_cpu_us": cpu_us["predict"] - cpu_us["noop"],
            "worker_runtime_us": (runtime_us["predict"] - runtime_us["noop"])
            if None not in runtime_us.values() else None,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", action="append", default=[], help="git ref to measure too (e.g. the baseline)")
    parser.add_argument("--requests", type=int, default=600, help="closed-loop round trips per kind per turn")
    parser.add_argument("--block", type=int, default=50, help="interleaving block size")
    parser.add_argument("--burst", type=int, default=200, help="tasks per burst")
    parser.add_argument("--bursts", type=int, default=3, help="bursts per kind per turn")
    parser.add_argument("--rounds", type=int, default=2, help="turns per tree")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()

    _, redis_proc = private_redis()  # before the settings are first read
    tmp = tempfile.TemporaryDirectory(prefix="omnimind-overhead-")
    try:
        from omnimind.app import app

        trees = {ref: export_tree(ref, Path(tmp.name) / f"tree{i}") for i, ref in enumerate(args.tree)}
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True).stdout.strip())
        trees["working tree" + (f" ({head}{'+changes' if dirty else ''})" if head else "")] = ROOT
        accs = {name: {"closed": {"noop": [], "predict": []}, "burst": {"noop": [], "predict": []},
                       "burst_wall": {"noop": 0.0, "predict": 0.0}, "burst_n": {"noop": 0, "predict": 0},
                       "runtime": {"noop": [0.0, 0.0], "predict": [0.0, 0.0]},
                       "cpu": {"noop": [0.0, 0], "predict": [0.0, 0]}} for name in trees}
        for round_ in range(args.rounds):
            for name, tree in trees.items():
                print(f"round {round_ + 1}/{args.rounds}: {name}", flush=True)
                measure_turn(app, tree, args, accs[name])
    finally:
        stop_all(redis_proc)
        tmp.cleanup()
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average": os.getloadavg()},
        "worker": "the Procfile's inference line: threads pool, --concurrency=16, --loglevel=INFO, metrics on",
        "model": "default (tiny MLP 16-64-64-1)",
        "noop_includes": "Celery's message handling, result store and ack (task events are off by default), and OmniMind's per-task "
                         "hooks (argument check, time-limit watchdog, metric signal handlers, queue-wait stamp)",
        "settings": {k: v for k, v in vars(args).items() if k != "keep_logs"},
        "trees": {name: summarize(acc) for name, acc in accs.items()},
    }
    write(report)
    print(json.dumps({name: t["ratios"] for name, t in report["trees"].items()}, indent=2))
    return 0


def write(report: dict) -> None:
    s = report["settings"]
    md = ["# OmniMind's per-task overhead: predict vs no-op", "",
          f"Machine: {report['machine']['platform']}, {report['machine']['cpus']} CPUs (load average at the end "
          f"{report['machine']['load_average'][0]:.1f}). Worker: {report['worker']}. Model: {report['model']}.", "",
          f"The no-op includes {report['noop_includes']}; the ratio is what `predict` adds on top.", "",
          f"Per tree and turn ({s['rounds']} turns per tree, trees alternating): {s['requests']} closed-loop round "
          f"trips per kind at concurrency 1 (noop and predict alternating in blocks of {s['block']}), then "
          f"{s['bursts']} bursts of {s['burst']} per kind, alternating.", "",
          "| code | noop p50 ms | predict p50 ms | **p50 ratio** | mean ratio | worker runtime noop / predict µs | "
          "worker CPU noop / predict µs per task | burst p50 ratio | burst throughput predict/noop |",
          "|---|---|---|---|---|---|---|---|---|"]
    for name, t in report["trees"].items():
        c, r, w = t["closed_loop_c1"], t["ratios"], t["worker_runtime_mean_us"]
        runtime = f"{w['noop']:.0f} / {w['predict']:.0f}" if None not in w.values() else "n/a"
        cpu = t["worker_cpu_us_per_task"]
        md.append(f"| {name} | {c['noop']['p50_ms']:.3f} | {c['predict']['p50_ms']:.3f} | "
                  f"**{r['predict_p50_over_noop_p50']:.3f}** | {r['predict_mean_over_noop_mean']:.3f} | {runtime} | "
                  f"{cpu['noop']:.0f} / {cpu['predict']:.0f} | "
                  f"{r['burst_p50_predict_over_noop']:.3f} | {r['burst_throughput_predict_over_noop']:.3f} |")
    md += ["", "Target: predict p50 ≤ 1.1 × no-op p50 (closed loop, concurrency 1)."]
    write_results("overhead", report, md)


if __name__ == "__main__":
    sys.exit(main())
