"""Throughput of ``predict`` against the number of inference workers on one Redis.

For N = 1 .. ``--max-workers`` (default: ``os.cpu_count()`` capped at 8) it adds one
inference worker at a time to a private redis-server. Every worker is started as the
Procfile's ``inference`` line (threads pool, ``--concurrency=16``), with only its
node name (``inference<i>@%h``) and its ``--metrics-port`` (a free port) changed.
Each worker's torch runs ``--torch-threads`` intra-op threads (default
``cpu_count // max_workers``, at least 1, fixed for every N, set through
``OMP_NUM_THREADS``): a worker then stands for a node of fixed size, the way
"3x with 3 nodes" means it; with torch's default (all cores per worker) one worker
already uses the whole machine and more workers can only compete for it.

The load comes from ``--clients`` client processes (default ``max(2, max_workers // 2)``)
so that one Python client is not the bottleneck. For each N and for both a no-op task
(``tasks.inference.noop``) and ``predict``:

- **closed loop**: ``16·N`` tasks kept in flight in all (split over the clients), one
  sent as the oldest one answers, for ``--seconds``;
- **burst**: ``64·N`` tasks sent at once (split over the clients), all awaited,
  repeated for ``--seconds``.

Throughput is tasks answered / wall time; the ratio to 1 worker is the figure (target
>= 0.9·N up to the core count). The no-op rows are the client's and the broker's
ceiling: where predict throughput reaches them, the load generator (or Redis), not
the workers, is what limits it.

    python benchmarks/scaling.py [--max-workers 8] [--model default|wide] [--clients 4] [--seconds 5]

Writes benchmarks/results/scaling.{json,md,png}.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time

from harness import (ROOT, free_port, percentiles_ms, private_redis, pyplot, save_figure, stop_all, wait_until,
                     write_results)

MODELS = {"default": "omnimind.models.factory:default_mlp", "wide": "omnimind.models.factory:wide_mlp"}
IN_FLIGHT_PER_WORKER = 16  # the Procfile line's --concurrency
BURST_PER_WORKER = 64
INPUTS = [0.25] * 16


def inference_command() -> list[str]:
    """The Procfile's inference line as argv, ``celery`` run by this interpreter."""
    from omnimind.farm import find_procfile, parse_procfile

    spec = next((s for s in parse_procfile(find_procfile().read_text()) if s.name == "inference"), None)
    if spec is None:
        raise SystemExit("the Procfile has no inference line")
    argv = shlex.split(spec.command)
    if argv[0] != "celery":
        raise SystemExit(f"the Procfile's inference line does not start with celery: {spec.command}")
    return [sys.executable, "-m", "celery", *argv[1:]]


def worker_argv(base: list[str], index: int, metrics_port: int) -> list[str]:
    argv, out, skip = list(base), [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "-n" or arg == "--hostname":
            out += [arg, f"inference{index}@%h"]
            skip = True
        elif arg.startswith("--hostname="):
            out.append(f"--hostname=inference{index}@%h")
        elif arg == "--metrics-port":
            out += [arg, str(metrics_port)]
            skip = True
        elif arg.startswith("--metrics-port="):
            out.append(f"--metrics-port={metrics_port}")
        else:
            out.append(arg)
    return out


def start_worker(base: list[str], index: int, env: dict) -> subprocess.Popen:
    return subprocess.Popen(worker_argv(base, index, free_port()), cwd=ROOT, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


# --- client processes -----------------------------------------------------------------------
def client(task: str, kwargs: dict, pattern: str, window: int, start_at: float, seconds: float, queue) -> None:
    """Load from one process; puts (answered, elapsed seconds, latencies) on ``queue``."""
    from omnimind.app import app

    send = lambda: (time.perf_counter(), app.send_task(task, kwargs=kwargs))  # noqa: E731
    latencies: list[float] = []
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.perf_counter()
    stop = t0 + seconds
    if pattern == "closed":
        inflight = [send() for _ in range(window)]
        while inflight:
            at, result = inflight.pop(0)
            result.get(timeout=120)
            latencies.append(time.perf_counter() - at)
            if time.perf_counter() < stop:
                inflight.append(send())
    else:
        while time.perf_counter() < stop:
            sent = [send() for _ in range(window)]
            for at, result in sent:
                result.get(timeout=120)
                latencies.append(time.perf_counter() - at)
    queue.put((len(latencies), time.perf_counter() - t0, latencies))


def load(ctx, task: str, kwargs: dict, pattern: str, total: int, clients: int, seconds: float) -> dict:
    shares = [total // clients + (1 if i < total % clients else 0) for i in range(clients)]
    shares = [s for s in shares if s > 0]
    queue = ctx.Queue()
    start_at = time.time() + 1.0  # every client imported and connected first
    procs = [ctx.Process(target=client, args=(task, kwargs, pattern, share, start_at, seconds, queue))
             for share in shares]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=seconds + 180) for _ in procs]
    for proc in procs:
        proc.join(30)
    answered = sum(r[0] for r in results)
    wall = max(r[1] for r in results)
    latencies = [x for r in results for x in r[2]]
    return {"answered": answered, "wall_s": wall, "throughput_per_s": answered / wall, "in_flight": total,
            "clients": len(procs), **percentiles_ms(latencies)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cpus = os.cpu_count() or 1
    parser.add_argument("--max-workers", type=int, default=min(cpus, 8))
    parser.add_argument("--model", choices=sorted(MODELS), default="default")
    parser.add_argument("--clients", type=int, default=0, help="client processes (default max(2, max_workers // 2))")
    parser.add_argument("--seconds", type=float, default=5.0, help="per (N, task, pattern) cell")
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="intra-op threads per worker (default cpu_count // max_workers, at least 1)")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the markdown and figure from the existing scaling.json (no run)")
    args = parser.parse_args()
    if args.report_only:
        from harness import RESULTS

        old = json.loads((RESULTS / "scaling.json").read_text())
        args.max_workers, args.seconds, args.model = old["max_workers"], old["seconds_per_cell"], old["model"].split()[0]
        report = summarize(old["rows"], args, old["client_processes"], old["torch_threads_per_worker"], None)
        report["worker_command"], report["machine"] = old["worker_command"], old["machine"]
        write(report)
        return 0
    clients = args.clients or max(2, args.max_workers // 2)
    torch_threads = args.torch_threads or max(1, cpus // args.max_workers)

    data_dir = tempfile.mkdtemp(prefix="omnimind-scaling-")
    _, redis_proc = private_redis(OMNIMIND_DATA_DIR=data_dir)  # before the settings are first read
    worker_env = {"OMNIMIND_MODEL_FACTORY": MODELS[args.model], "OMP_NUM_THREADS": str(torch_threads),
                  "MKL_NUM_THREADS": str(torch_threads)}
    os.environ["OMNIMIND_MODEL_FACTORY"] = MODELS[args.model]  # the clients' settings agree (unused there)
    base = inference_command()
    workers: list[subprocess.Popen] = []
    rows = []
    ctx = multiprocessing.get_context("spawn")
    try:
        from celery.utils.nodenames import worker_direct

        from omnimind.app import app

        host = socket.gethostname()
        for n in range(1, args.max_workers + 1):
            workers.append(start_worker(base, n, worker_env))

            def answers(queue=worker_direct(f"inference{n}@{host}")):  # noqa: B008 (bound per worker, on purpose)
                if workers[-1].poll() is not None:
                    raise SystemExit(f"worker {n} exited with {workers[-1].returncode}")
                try:
                    return app.send_task("tasks.inference.predict", kwargs={"inputs": INPUTS}, queue=queue).get(timeout=5)
                except Exception:
                    return None

            wait_until(answers, timeout=180, interval=0.2, message=f"worker {n} answers")
            load(ctx, "tasks.inference.predict", {"inputs": INPUTS}, "closed", IN_FLIGHT_PER_WORKER * n, clients, 1.0)
            for task, kwargs in (("tasks.inference.noop", {}), ("tasks.inference.predict", {"inputs": INPUTS})):
                for pattern, per_worker in (("closed", IN_FLIGHT_PER_WORKER), ("burst", BURST_PER_WORKER)):
                    cell = load(ctx, task, kwargs, pattern, per_worker * n, clients, args.seconds)
                    rows.append({"workers": n, "task": task.rsplit(".", 1)[1], "pattern": pattern, **cell})
                    print(f"N={n} {rows[-1]['task']:7} {pattern:6} {cell['throughput_per_s']:8.0f}/s "
                          f"p50 {cell['p50_ms']:.1f} ms", flush=True)
    finally:
        stop_all(*workers, redis_proc)
    report = summarize(rows, args, clients, torch_threads, base)
    write(report)
    print(json.dumps(report["ratios"], indent=2))
    return 0


def summarize(rows, args, clients, torch_threads, base) -> dict:
    cpus = os.cpu_count() or 1
    one = {(r["task"], r["pattern"]): r["throughput_per_s"] for r in rows if r["workers"] == 1}
    for r in rows:
        r["ratio_to_1"] = r["throughput_per_s"] / one[(r["task"], r["pattern"])]
        r["target"] = 0.9 * r["workers"] if r["task"] == "predict" and r["workers"] <= cpus else None
        r["met"] = None if r["target"] is None else r["ratio_to_1"] >= r["target"]
    ceiling = {p: max(r["throughput_per_s"] for r in rows if r["task"] == "noop" and r["pattern"] == p)
               for p in ("closed", "burst")}
    ratios = {f"{r['task']}_{r['pattern']}_N{r['workers']}": round(r["ratio_to_1"], 3) for r in rows}
    command = " ".join(shlex.quote(a) for a in worker_argv(base, 1, 9101)) if base else ""
    return {
        "machine": {"platform": platform.platform(), "cpus": cpus, "python": platform.python_version()},
        "model": f"{args.model} ({MODELS[args.model]})",
        "worker_command": re.sub(r"^\S+ -m celery", "celery", command),
        "torch_threads_per_worker": torch_threads, "client_processes": clients, "seconds_per_cell": args.seconds,
        "in_flight_per_worker_closed": IN_FLIGHT_PER_WORKER, "burst_per_worker": BURST_PER_WORKER,
        "max_workers": args.max_workers, "rows": rows, "ratios": ratios,
        "client_ceiling_noop_per_s": ceiling,
    }


def write(report: dict) -> None:
    m = report["machine"]
    md = ["# Scaling: predict throughput vs inference workers on one Redis", "",
          f"Machine: {m['platform']}, {m['cpus']} CPUs. Model: {report['model']}. "
          f"Workers: the Procfile's inference line (`{report['worker_command']}`, name and metrics port changed per "
          f"worker), {report['torch_threads_per_worker']} torch thread(s) each. Load: {report['client_processes']} "
          f"client processes, closed loop with {report['in_flight_per_worker_closed']}·N in flight, bursts of "
          f"{report['burst_per_worker']}·N; {report['seconds_per_cell']:g} s per cell.", "",
          "| workers | task | pattern | tasks/s | ratio to 1 worker | target | met | p50 ms | p99 ms |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(report["rows"], key=lambda r: (r["task"] != "predict", r["pattern"], r["workers"])):
        target = f"≥ {r['target']:.1f}" if r["target"] is not None else "—"
        md.append(f"| {r['workers']} | {r['task']} | {r['pattern']} | {r['throughput_per_s']:.0f} | "
                  f"{r['ratio_to_1']:.2f} | {target} | {r['met'] if r['met'] is not None else '—'} | "
                  f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")
    c = report["client_ceiling_noop_per_s"]
    md += ["", f"Client (and broker) ceiling, the best no-op throughput of the run: closed loop {c['closed']:.0f}/s, "
           f"bursts {c['burst']:.0f}/s (no target on the no-op rows). Predict throughput near it means the load "
           "generator, Redis or the shared CPUs limit the figure, not the number of workers."]
    above = [r for r in report["rows"] if r["task"] == "predict" and r["throughput_per_s"] > c[r["pattern"]]]
    if above:
        md += ["", "Predict beat that no-op figure in " + ", ".join(f"N={r['workers']} {r['pattern']}" for r in above)
               + ": the no-op cells were themselves bound by the CPUs that clients, redis-server and workers share "
               "(and by whatever else ran on the machine), so here they are a lower bound of the client's ceiling, "
               "not a clean one."]
    md += ["",
           f"This run goes up to {report['max_workers']} workers on {m['cpus']} CPUs; the clients, redis-server and "
           "the workers share those CPUs, so the ratio can only approach N while N is well below the core count. "
           "The 8-worker figure needs a 16-core machine: `python benchmarks/scaling.py --max-workers 8` "
           "(add `--model wide` for the heavy model).", "", "![scaling](scaling.png)"]
    write_results("scaling", report, md)
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ns = sorted({r["workers"] for r in report["rows"]})
    for task in ("predict", "noop"):
        for pattern, style in (("closed", "-o"), ("burst", "--s")):
            xs = sorted((r for r in report["rows"] if r["task"] == task and r["pattern"] == pattern),
                        key=lambda r: r["workers"])
            ax.plot([r["workers"] for r in xs], [r["ratio_to_1"] for r in xs], style, label=f"{task}, {pattern}")
    ax.plot(ns, [0.9 * n for n in ns], ":", color="grey", label="target 0.9·N")
    ax.set_xticks(ns)
    ax.set_xlabel("inference workers")
    ax.set_ylabel("throughput / 1 worker")
    ax.set_title(f"Scaling on {m['cpus']} CPUs ({report['model'].split(' ')[0]} model)")
    ax.legend()
    save_figure(fig, "scaling")


if __name__ == "__main__":
    raise SystemExit(main())
