"""Freshness: how fast the served model follows a drifting feedback stream, in a real farm.

A farm in the Procfile's shape with default settings: a private redis-server, then
`omnimind up` on the checkout's `inference` and `training` lines (same commands and
flags; only ports moved to free ones, see harness.procfile_farm), fresh data dir.
One farm per seed runs, in turn, the streams of omnimind/stream.py (the code that
`omnimind stream` runs): abrupt change, gradual drift (river's ConceptDriftStream),
a recurring concept (A→B→A); then the first farm runs river's FriedmanDrift while a
niced side process runs river's progressive validation of forest.ARFRegressor on the
same samples. A plain Celery client sends the feedback (--rate samples/s in learn
batches of 32, each batch first sent to predict: the served model's prequential
error) and probes predict on a fixed probe set every 0.5 s (served MSE against the
current concept's noise-free targets, served version).

Reported, next to the targets of issue 10:
- recovery: seconds from a change until the served probe MSE is back within 2x of its
  level just before the change (median of the 3 s before it; a gradual change counts from
  its centre, its level from before its start) and stays there for 1 s; p50/p90 over
  seeds; a change not recovered before the next one counts as infinitely slow;
- stationary ratio: served / learner prequential loss in the second half of each phase
  (served: MSE of the served predictions on the feedback batches; learner: the windowed
  prequential loss in its status JSON, sampled with each probe);
- publication check: for each served-version change between two probes, the MSE of the
  old and the new version's probe outputs against the same (current) targets;
- publications per minute, by reason (store metadata and Prometheus counters);
- Redis and CPU cost per publication: whole run divided by publications, and a marginal
  figure: with the stream stopped, an idle window against a window of --cost-publications
  republications of the active weights through the model store (commands from INFO
  commandstats, CPU from psutil of the farm's processes plus the publisher's own CPU).

    python benchmarks/freshness.py [--seeds 5] [--phase-seconds 15] [--quick]

Writes benchmarks/results/freshness.{json,md,png}.

This file drives the run and writes the results; the farm side is in freshness_farm.py, the
analysis in freshness_analysis.py.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from freshness_analysis import TARGETS, fmt_s, friedman_mae, lines, summarize
from freshness_farm import Farm, marginal_publication_cost, run_stream
from harness import RESULTS, private_redis, pyplot, save_figure, stop_all, write_results

STREAM_ORDER = ("abrupt", "gradual", "recurring")


def arf_progressive(name_seed: tuple, rate: float, phase_seconds: float) -> dict:
    """river's progressive validation (predict, then learn) of ARFRegressor on the Friedman stream."""
    os.nice(19)  # idle CPU only: the farm's figures are measured meanwhile
    from river import forest, metrics

    from omnimind.stream import make_stream

    stream = make_stream("friedman", 16, rate, phase_seconds, name_seed[1])
    model, mae, started = forest.ARFRegressor(seed=name_seed[1]), metrics.MAE(), time.process_time()
    errors = np.empty(len(stream.y))
    for i, (x, y) in enumerate(zip(stream.x[:, :10].tolist(), stream.y.tolist())):
        features = dict(enumerate(x))
        prediction = model.predict_one(features)
        mae.update(y, prediction)
        errors[i] = abs(y - prediction)
        model.learn_one(features, y)
    return {"errors": errors.tolist(), "mae": mae.get(), "cpu_s": time.process_time() - started}


def write(report: dict, plotted: list[dict]) -> None:
    md = ["# Freshness: the served model following a drifting stream", "",
          f"Machine: {report['machine']['platform']}, {report['machine']['cpus']} CPUs, load average "
          f"{report['machine']['load_before']} before / {report['machine']['load_after']} after. "
          f"{report['setup']}", "", *[f"- {line}" for line in report["lines"]], "",
          "| stream | seed | change | pre-change MSE | settled before | peak MSE | recovered after | "
          "first version change after |", "|---|---|---|---|---|---|---|---|"]
    for run in report["runs"]:
        for r in run["recovery"]:
            md.append(f"| {run['stream']} | {run['seed']} | {r['label']} | {r['pre_level'] or float('nan'):.4g} | "
                      f"{ {True: 'yes', False: 'no', None: 'n/a'}[r.get('settled')]} | "
                      f"{r.get('peak') or float('nan'):.4g} | "
                      f"{fmt_s(math.inf if r['seconds'] is None else r['seconds'])} | "
                      f"{fmt_s(r.get('first_version_change_s'))} |")
    md += ["", "| stream | seed | publications/min | reasons | Prometheus by reason | refusals | "
           "freshness lag max | feed rate | Redis cmds | farm CPU s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for run in report["runs"] + ([report["friedman_run"]] if report.get("friedman_run") else []):
        pr = run["prometheus"]
        md.append(f"| {run['stream']} | {run['seed']} | {run['publications_per_min']:.1f} | {run['reasons']} | "
                  f"{pr['publications_by_reason']} | {pr['refusals_by_reason']} | "
                  f"{fmt_s(pr['freshness_lag_s']['max'])} | {run['feed']['rate']:.0f}/s | {run['redis']['commands']} | "
                  f"{sum(run['cpu_s'].values()):.1f} |")
    md += ["", "Definitions are in the docstring of `benchmarks/freshness.py`.", "", "![served MSE](freshness.png)"]
    write_results("freshness", report, md)
    plt = pyplot()
    if plt is None or not plotted:
        return
    from omnimind.stream import plot_trace

    fig, axes = plt.subplots(len(plotted), 1, figsize=(11, 3.2 * len(plotted)), squeeze=False)
    for ax, run in zip(axes[:, 0], plotted):
        plot_trace(run["trace"], ax, f"{run['stream']} (seed {run['seed']}): {len(run['trace']['publications'])} "
                                     f"publication(s)")
    save_figure(fig, "freshness")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seeds", type=int, default=5, help="farms (one per seed), each running every stream")
    parser.add_argument("--phase-seconds", type=float, default=15.0, help="seconds per concept phase")
    parser.add_argument("--rate", type=float, default=320.0, help="feedback samples per second")
    parser.add_argument("--cost-publications", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="1 seed, 4 s phases: about 2 minutes")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.phase_seconds, args.cost_publications = 1, 4.0, 4
    friedman_phase = args.phase_seconds if not args.quick else 3.0
    started = time.monotonic()
    port, redis_proc = private_redis()  # before the settings are first read
    import multiprocessing

    import redis

    from omnimind.app import app
    from omnimind.stream import make_stream

    app.conf.task_send_sent_event = False  # this client is a plain Celery client (Celery's default)
    client = redis.Redis(port=port)
    base = Path(tempfile.mkdtemp(prefix="omnimind-freshness-"))
    load_before = [round(x, 2) for x in os.getloadavg()]
    executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    arf_job = executor.submit(arf_progressive, ("friedman", 1000), args.rate, friedman_phase)
    runs, friedman, cost, startups, ok = [], None, None, [], False
    try:
        for seed in range(args.seeds):
            client.flushall()
            farm = Farm(app, base / f"seed{seed}")
            startups.append(farm.startup_s)
            print(f"seed {seed}: farm up in {farm.startup_s:.1f} s ({', '.join(farm.info['commands'])})", flush=True)
            try:
                for i, name in enumerate(STREAM_ORDER):
                    run = run_stream(farm, client, make_stream(name, 16, args.rate, args.phase_seconds, seed * 10 + i),
                                     seed * 10 + i, seed)
                    runs.append(run)
                    print(f"  {name}: {run['publications']} publication(s), recovery "
                          f"{[fmt_s(math.inf if r['seconds'] is None else r['seconds']) for r in run['recovery']]}, "
                          f"sent {run['feed']['rate']:.0f} samples/s, learned {run['feed']['drain_s']:.1f} s after "
                          f"the last was sent, {len(run['trace']['errors'])} error(s)", flush=True)
                if seed == 0:
                    friedman = run_stream(farm, client, make_stream("friedman", 16, args.rate, friedman_phase, 1000),
                                          1000, seed)
                    print(f"  friedman: {friedman['publications']} publication(s)", flush=True)
                    cost = marginal_publication_cost(farm, client, args.cost_publications,
                                                     window_s=max(3.0, args.cost_publications * 0.6),
                                                     rounds=2 if args.quick else 3)
                    print(f"  marginal publication cost: {cost['per_publication']}", flush=True)
            finally:
                farm.stop()
        print("waiting for river's ARFRegressor (niced side process) ...", flush=True)
        arf = arf_job.result()
        ok = True
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        stop_all(redis_proc)
        if ok:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"farm logs kept in {base}", file=sys.stderr)
    friedman_cmp = friedman_mae(friedman, arf, int(round(args.rate * friedman_phase))) if friedman else {}
    summary = summarize(runs, friedman, friedman_cmp, cost)
    plotted = [r for r in runs if r["farm"] == 0] + ([friedman] if friedman else [])
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_before": load_before,
                    "load_after": [round(x, 2) for x in os.getloadavg()]},
        "setup": (f"One farm per seed (`omnimind up` on the Procfile's inference + training lines, default "
                  f"settings, fresh Redis and data dir), streams in turn: {', '.join(STREAM_ORDER)} "
                  f"({args.phase_seconds:g} s phases), then FriedmanDrift ({friedman_phase:g} s phases) on the "
                  f"first farm; {args.rate:g} samples/s in learn batches of 32, probes every 0.5 s."),
        "args": vars(args), "targets": TARGETS, "farm_startup_s": startups, "wall_s": time.monotonic() - started,
        "summary": summary,
        "marginal_cost": cost,
        "runs": [{k: v for k, v in r.items() if k != "trace" or r["farm"] == 0} for r in runs],  # traces: farm 0
        "friedman_run": friedman,
    }
    report["lines"] = lines(summary, args)
    write(report, plotted)
    print("\n".join(line.replace("**", "") for line in report["lines"]))
    print(f"({report['wall_s']:.0f} s wall; results in {RESULTS})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
