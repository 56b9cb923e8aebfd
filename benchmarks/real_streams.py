"""Real streams: is the model the farm serves as good as River's and deep-river's on public data?

Streams River ships (nothing downloaded; benchmarks/real_streams_data.py): Phishing (binary, 1,250),
ImageSegments (7 classes, 2,310), FriedmanDrift (regression, 4,000, the concept changes at 1/3 and back
at 2/3) and TrumpApproval (regression, 1,001, features whose scales differ by five orders of magnitude).

Per stream, a farm in the Procfile's shape as a new user would run it: a private redis-server, then
`omnimind up` on the checkout's `inference` and `training` lines (same commands and flags, ports moved to
free ones; the training worker is a one-member Raft group), a fresh data dir, a small MLP for the stream
through OMNIMIND_MODEL_FACTORY (benchmarks/stream_models.py), OMNIMIND_LEARNING_LOSS=cross_entropy for
the classifiers and every other setting at its default. A plain Celery client sends the stream in order,
at its own pace (--rate samples/s, mini-batches of --batch): for each mini-batch it first calls
`predict` (the served model) and waits for the answer, then sends `learn` with the true targets
(real_streams_farm.serve_and_learn). That is progressive validation of what users are served. Where
`predict` returns raw outputs (main's farm today), a classifier's served label is their argmax, read
client-side, and the farm learns class indices; a farm with classifier heads is read through its labels
and learns the labels (as text). Then, the stream learned, its samples (cycled to --throughput-samples)
are sent to `learn` again, all at once, in batches of --throughput-batch, --throughput-rounds times: the
farm's learn throughput (samples/s, first send to last result; the best round counts, the least disturbed
by other work on the shared cores); the same with the larger --throughput-extra-batches is shown beside it.

Baselines in the same run, each kind in a process of its own right after the stream's farm has stopped
(benchmarks/real_streams_baselines.py), on the same samples in the same order, predict_one then
learn_one: deep-river's Classifier/Regressor with the same torch module (same seed: same initial
weights) behind River's StandardScaler, Adam at 1e-3; River's scaled logistic/softmax or linear
regression, Hoeffding tree, Hoeffding adaptive tree, ARF and scaled kNN. deep-river's learn throughput is
samples over the wall time spent in its learn_one, in runs of 250 samples, the best run counting (after a
warm-up of 50 samples on a throwaway copy), with
one torch thread as the farm's learner (OMNIMIND_LEARNER_TORCH_THREADS=1 by default; torch's default of one
thread per core is several times slower for these small steps on the loaded, shared cores).

Targets (issue 19): served progressive error (error rate for a classifier, MAE for regression) at most
1.1x deep-river's and 1.25x the best River model's on every stream; farm learn throughput at least 10x
deep-river's learn_one.

    python benchmarks/real_streams.py [--quick] [--streams phishing,friedman] [--rate 50] [--name NAME]

Writes benchmarks/results/<NAME>.{json,md,png} (NAME: real_streams by default, real_streams_quick with --quick).
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from harness import RESULTS, ROOT, private_redis, pyplot, save_figure, stop_all, write_results
from real_streams_baselines import run_in_subprocess
from real_streams_data import STREAMS, RealStream, load
from real_streams_farm import StreamFarm, learn_burst, serve_and_learn, store_publications
from real_streams_metrics import (TARGETS, best_and_median, error_name, pacing, progressive_error, ratio,
                                  rolling, sample_errors, schedule, throughput_verdict, verdict)

QUICK_SAMPLES = 500
CURVE_POINTS = 120  # points kept per rolling-error curve in the JSON


def git_commit() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "main_merge_base": git("merge-base", "HEAD", "main") or None,
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def learn_bursts(app, farm: StreamFarm, stream: RealStream, batch_size: int, args) -> dict:
    """--throughput-rounds learn bursts in batches of ``batch_size``: best and median samples/s, and samples
    per CPU second of the training worker over all of them."""
    rounds = []
    for _ in range(args.throughput_rounds):
        before = farm.cpu_s()
        burst = learn_burst(app, stream, batch_size, args.throughput_samples, farm.heads)
        burst["training_cpu_s"] = farm.cpu_s().get("training", math.nan) - before.get("training", math.nan)
        rounds.append(burst)
    samples, cpu = sum(r["samples"] for r in rounds), sum(r["training_cpu_s"] for r in rounds)
    return {"batch_size": batch_size, "rounds": rounds,
            "samples_per_s": best_and_median([r["samples_per_s"] for r in rounds]),
            "samples_per_training_cpu_s": samples / cpu if cpu > 0 else None}


def run_farm(app, client, stream: RealStream, run_dir: Path, args) -> dict:
    """One farm for ``stream``: the paced progressive run, then the learn burst."""
    client.flushall()
    farm = StreamFarm(app, stream, run_dir)
    try:
        print(f"{stream.name}: farm up in {farm.startup_s:.1f} s; {len(stream)} samples at {args.rate:g}/s in "
              f"batches of {args.batch}", flush=True)
        plan = schedule(len(stream), args.batch, args.rate)
        cpu0 = farm.cpu_s()
        run = serve_and_learn(app, stream, plan, farm.heads)
        cpu1 = farm.cpu_s()
        publications = store_publications(client)
        burst = learn_bursts(app, farm, stream, args.throughput_batch, args)
        larger = [learn_bursts(app, farm, stream, size, args) for size in args.throughput_extra_batches]
    finally:
        farm.stop()
    errors = sample_errors(stream.task, stream.y, run["predictions"])
    versions = [v for v in run["versions"] if v is not None]
    first_new = next((i for i, v in enumerate(run["versions"]) if v is not None and v > 0), None)
    losses = [r["loss"] for r in run["learn"] if r and r.get("loss") is not None]
    lag = np.subtract([d for d in run["learn_done_s"] if d is not None],
                      [s for s, d in zip(run["sent_s"], run["learn_done_s"]) if d is not None])
    tail = max(1, len(losses) // 10)
    result = {
        "samples": len(stream), "errors": errors, "error": progressive_error(errors),
        "classifier_heads": farm.heads,
        "startup_s": farm.startup_s, "duration_s": run["duration_s"],
        "pacing": pacing(plan, run["sent_s"]),
        "predict_round_trip_s": {"p50": float(np.median(run["predict_s"])), "max": float(np.max(run["predict_s"]))},
        "learned_lag_s": {"p50": float(np.median(lag)) if lag.size else None,
                          "max": float(lag.max()) if lag.size else None},
        "served_versions": sorted(set(versions)), "first_new_version_at_sample": first_new,
        "version_changes": version_changes(run["versions"]),
        "versions_after_stream": publications,
        "learner_loss": {"first": losses[0] if losses else None,
                         "last_tenth_mean": float(np.mean(losses[-tail:])) if losses else None},
        "updates": sum(r.get("updates", 0) or 0 for r in run["learn"] if r),
        "drifts_reported": sum(1 for r in run["learn"] if r and r.get("drift")),
        "cpu_s": {name: cpu1[name] - cpu0[name] for name in cpu1},
        "learn_burst": burst, "learn_bursts_larger": larger,
        "task_errors": run["errors"][:20], "task_error_count": len(run["errors"]),
    }
    print(f"  served {error_name(stream.task)} {result['error']:.4g}; served versions {result['served_versions']} "
          f"(first new at sample {first_new}); learner loss {result['learner_loss']}; sent at "
          f"{result['pacing']['achieved_rate']:.1f}/s; learn bursts {burst['samples_per_s']['best']:.0f} samples/s "
          f"at best; "
          f"{len(run['errors'])} task error(s)", flush=True)
    return result


def version_changes(versions: list) -> list[dict]:
    """Where the served version changed (a sample whose predict failed has none and changes nothing)."""
    changes, last = [], 0
    for i, version in enumerate(versions):
        if version is not None and version != last:
            changes.append({"sample": i, "version": version})
            last = version
    return changes


def curve(errors, window: int) -> dict:
    r = rolling(errors, window)
    idx = np.unique(np.linspace(0, len(r) - 1, min(CURVE_POINTS, len(r))).astype(int))
    return {"sample": idx.tolist(), "rolling": [float(f"{v:.4g}") if math.isfinite(v) else None for v in r[idx]]}


def from_sample(start: int | None, served, deep_river, best_river) -> dict | None:
    """The progressive errors from ``start`` on (the first sample a published version served): how the
    farm does once it serves a learned model, beside the baselines on the same samples. A diagnostic,
    not a target: users are served version 0 before that."""
    if start is None:
        return None
    out = {"sample": start, "served": progressive_error(served[start:]),
           "deep_river": progressive_error(deep_river[start:]),
           "best_river": progressive_error(best_river[start:]) if best_river is not None else None}
    out["vs_deep_river"] = ratio(out["served"], out["deep_river"])
    out["vs_best_river"] = ratio(out["served"], out["best_river"]) if out["best_river"] is not None else None
    return out


def summarize(streams: list[RealStream], farms: dict, river: dict, deep: dict, window: int) -> dict:
    out = {}
    for stream in streams:
        farm, deep_r = farms[stream.name], deep["streams"][stream.name]["deep-river"]
        river_r = river["streams"][stream.name]
        v = verdict(farm["error"], deep_r["error"], {name: r["error"] for name, r in river_r.items()})
        out[stream.name] = {
            "task": stream.task, "metric": error_name(stream.task), "samples": len(stream), **v,
            "river": {name: r["error"] for name, r in river_r.items()},
            # best of the farm's bursts against deep-river's best run of samples: each as undisturbed as
            # the shared cores allowed
            "throughput": throughput_verdict(farm["learn_burst"]["samples_per_s"]["best"],
                                             deep_r["learn_samples_per_s_windows"]["best"]),
            # the same per CPU second (the training worker's; deep-river's process in learn_one): less
            # sensitive to what else runs on the shared cores
            "throughput_per_cpu_s": throughput_verdict(farm["learn_burst"]["samples_per_training_cpu_s"],
                                                       deep_r["learn_samples_per_cpu_s"]),
            "from_first_version": from_sample(farm["first_new_version_at_sample"], farm["errors"], deep_r["errors"],
                                              river_r[v["best_river"]]["errors"] if v["best_river"] else None),
            "curves": {"served (farm)": curve(farm["errors"], window), "deep-river": curve(deep_r["errors"], window),
                       **{name: curve(r["errors"], window) for name, r in river_r.items()}},
        }
    return out


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return "inf"
    return f"{value:.{digits}g}"


def mark(ok) -> str:
    return {True: "pass", False: "**FAIL**", None: "n/a"}[ok]


def write(report: dict, name: str, streams: list[RealStream]) -> None:
    s, m = report["summary"], report["machine"]
    md = [f"# Real streams: the served model against River and deep-river ({name})", "",
          f"Code: `{report['code']['branch']}` at {report['code']['commit'][:10]}"
          f"{' (with uncommitted changes)' if report['code']['dirty'] else ''}"
          f"{f' (from main at {base[:10]})' if (base := report['code'].get('main_merge_base')) else ''}. "
          f"Machine: {m['platform']}, "
          f"{m['cpus']} CPUs **shared with other agents' work** (load average {m['load_before']} before, "
          f"{m['load_after']} after): timings and throughputs are noisy. Every learner sees the same samples "
          f"in the same order: the baselines' errors are reproducible, the farm's also depend on when its "
          f"learner published (so on timing).", "",
          report["setup"], "",
          "| stream | samples | metric | served (farm) | deep-river, same MLP | best River (model) | "
          f"served / deep-river (≤ {TARGETS['vs_deep_river']}) | served / best River (≤ {TARGETS['vs_best_river']}) "
          f"| farm learn samples/s (batches of {report['args']['throughput_batch']}) | deep-river learn_one "
          f"samples/s | ratio (≥ {TARGETS['learn_throughput_vs_deep_river']:g}) "
          "| per CPU second: farm training worker / deep-river (ratio) |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for stream in streams:
        r = s[stream.name]
        t, c = r["throughput"], r["throughput_per_cpu_s"]
        md.append(f"| {stream.name} | {r['samples']} | {r['metric']} | {fmt(r['served'])} | {fmt(r['deep_river'])} | "
                  f"{fmt(r['best_river_error'])} ({r['best_river']}) | {fmt(r['vs_deep_river'])} "
                  f"{mark(r['pass_deep_river'])} | {fmt(r['vs_best_river'])} {mark(r['pass_best_river'])} | "
                  f"{fmt(t['farm'], 4)} | {fmt(t['deep_river'], 4)} | {fmt(t['ratio'])} {mark(t['pass'])} | "
                  f"{fmt(c['farm'], 4)} / {fmt(c['deep_river'], 4)} ({fmt(c['ratio'])}) |")
    passed = [v for r in s.values() for v in (r["pass_deep_river"], r["pass_best_river"], r["throughput"]["pass"])]
    md += ["", f"Targets met: {sum(1 for p in passed if p)} of {len(passed)}.", "",
           "The throughput verdict is on wall-clock samples/s (the issue's measure) at the learner's own step "
           f"size ({report['args']['throughput_batch']} samples per learn; the farm table shows larger batches): "
           "the farm's best learn burst "
           "against deep-river's best run of 250 learn_one calls, measured one after the other on the same 2 "
           "shared cores; the per-CPU-second column (all of the farm's bursts, the whole deep-river run) is the "
           "same comparison with less of the other agents' load in it.", "",
           "## From the first published version on (a diagnostic, not a target)", "",
           "The same progressive errors counted only from the first sample a published version served (before "
           "it, users are served the untrained version 0), baselines on the same samples.", "",
           "| stream | from sample | served (farm) | deep-river | best River | served / deep-river | "
           "served / best River |", "|---|---|---|---|---|---|---|",
           *[f"| {n} | {f['sample']} | {fmt(f['served'])} | {fmt(f['deep_river'])} | {fmt(f['best_river'])} | "
             f"{fmt(f['vs_deep_river'])} | {fmt(f['vs_best_river'])} |" if (f := s[n]["from_first_version"])
             else f"| {n} | never | | | | | |" for n in s], "",
           "## Every River model (progressive error, same samples)", "",
           "| stream | " + " | ".join(["deep-river"] + list(next(iter(s.values()))["river"])) + " |"]
    md.append("|---" * (len(next(iter(s.values()))["river"]) + 2) + "|")
    for stream in streams:
        r = s[stream.name]
        md.append(f"| {stream.name} | {fmt(r['deep_river'])} | "
                  + " | ".join(fmt(v) for v in r["river"].values()) + " |")
    md += ["", "(Model names differ by task: logistic/softmax for classifiers, linear for regression; columns "
           "follow the first stream's names in order.)", "",
           "## The farm", "",
           "| stream | startup s | sent at (samples/s) | predict round trip p50 / max s | learned lag p50 / max s "
           "| served versions | first new version at sample | versions in store after "
           "| learner loss first → last tenth | updates | drifts | farm CPU s (inference / training) | task errors "
           "| learn bursts: batch, samples/s best / "
           "median, samples per training CPU s |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for stream in streams:
        f = report["farm"][stream.name]
        reasons = [f"v{p['version']} {p['reason']}" for p in f["versions_after_stream"]]
        md.append(f"| {stream.name} | {f['startup_s']:.1f} | {f['pacing']['achieved_rate']:.1f} "
                  f"(late max {f['pacing']['late_max_s']:.2f} s) | {f['predict_round_trip_s']['p50']:.3f} / "
                  f"{f['predict_round_trip_s']['max']:.3f} | {fmt(f['learned_lag_s']['p50'])} / "
                  f"{fmt(f['learned_lag_s']['max'])} | {f['served_versions']} | {f['first_new_version_at_sample']} | "
                  f"{', '.join(reasons) or 'none'} | {fmt(f['learner_loss']['first'])} → "
                  f"{fmt(f['learner_loss']['last_tenth_mean'])} | {f['updates']} | {f['drifts_reported']} | "
                  f"{f['cpu_s'].get('inference', math.nan):.1f} / {f['cpu_s'].get('training', math.nan):.1f} | "
                  f"{f['task_error_count']} | "
                  + "; ".join(f"{b['batch_size']}: {b['samples_per_s']['best']:.0f} / "
                              f"{b['samples_per_s']['median']:.0f}, {fmt(b['samples_per_training_cpu_s'], 4)}"
                              for b in [f["learn_burst"], *f.get("learn_bursts_larger", [])]) + " |")
    md += ["", "Definitions are in the docstring of `benchmarks/real_streams.py`; per-sample errors behind the "
           f"figure are rolling means over {report['args']['window']} samples.", "", f"![rolling error]({name}.png)"]
    write_results(name, report, md)
    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(len(streams), 1, figsize=(11, 3.3 * len(streams)), squeeze=False)
    for ax, stream in zip(axes[:, 0], streams):
        r = s[stream.name]
        main = {"served (farm)": "tab:red", "deep-river": "tab:blue", r["best_river"]: "tab:green"}
        shown = []
        for label, c in r["curves"].items():
            y = np.array([np.nan if v is None else v for v in c["rolling"]], dtype=float)
            if label in main:
                ax.plot(c["sample"], y, color=main[label], lw=1.8, label=label if label != r["best_river"]
                        else f"best River: {label}")
                shown.append(np.nanmax(y) if np.isfinite(y).any() else 0.0)
            else:
                ax.plot(c["sample"], y, color="grey", lw=0.6, alpha=0.6)
        top = max(shown) if shown else 1.0
        lows = [v for c in r["curves"].values() for v in c["rolling"] if v is not None and v > 0]
        if lows and top / min(lows) > 50:  # orders of magnitude apart: a log scale shows them all
            ax.set_yscale("log")
            ax.set_ylim(min(lows) / 1.5, top * 1.5)
        else:
            ax.set_ylim(0, top * 1.15 if top > 0 else 1.0)
        for change in report["farm"][stream.name]["version_changes"]:
            ax.axvline(change["sample"], color="tab:red", ls="--", lw=0.6, alpha=0.5)
        if stream.name == "friedman":
            for at in (len(stream) // 3, 2 * (len(stream) // 3)):
                ax.axvline(at, color="k", ls=":", lw=1)
        ax.set_title(f"{stream.name}: rolling {r['metric']} ({report['args']['window']} samples); grey: other River "
                     f"models (clipped); red dashes: a new version served")
        ax.set_xlabel("sample")
        ax.legend(loc="best", fontsize=8)
    save_figure(fig, name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--streams", default=None,
                        help=f"comma-separated, of {', '.join(STREAMS)} (default: all; --quick: phishing,friedman)")
    parser.add_argument("--rate", type=float, default=50.0, help="samples per second sent to the farm")
    parser.add_argument("--batch", type=int, default=8, help="samples per predict/learn mini-batch")
    parser.add_argument("--throughput-batch", type=int, default=32, help="samples per learn in the burst")
    parser.add_argument("--throughput-extra-batches", type=lambda v: [int(x) for x in v.split(",") if x],
                        default=[256], help="more learn batch sizes to burst (comma-separated; shown, not judged)")
    parser.add_argument("--throughput-samples", type=int, default=3000,
                        help="samples in each learn burst (the stream cycled)")
    parser.add_argument("--throughput-rounds", type=int, default=3, help="learn bursts (the best counts)")
    parser.add_argument("--window", type=int, default=100, help="samples per rolling-error point")
    parser.add_argument("--deep-river-threads", type=int, default=1,
                        help="torch threads of deep-river's process (0: torch's default); 1 as the farm's learner "
                             "(OMNIMIND_LEARNER_TORCH_THREADS defaults to 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=None, help="at most this many samples per stream")
    parser.add_argument("--name", default=None,
                        help="results file name (benchmarks/results/NAME.*; real_streams, or real_streams_quick)")
    parser.add_argument("--quick", action="store_true",
                        help=f"phishing and friedman, {QUICK_SAMPLES} samples each, at 100 samples/s: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.streams = args.streams or "phishing,friedman"
        args.samples, args.rate, args.window = QUICK_SAMPLES, 100.0, 50
        args.throughput_samples, args.throughput_rounds = 1000, 2
    args.name = args.name or ("real_streams_quick" if args.quick else "real_streams")
    names = [n.strip() for n in (args.streams or ",".join(STREAMS)).split(",") if n.strip()]
    unknown = set(names) - set(STREAMS)
    if unknown:
        parser.error(f"unknown stream(s) {sorted(unknown)}; known: {', '.join(STREAMS)}")
    started = time.monotonic()
    streams = [load(n, limit=args.samples, seed=42) for n in names]
    port, redis_proc = private_redis()  # before any omnimind import
    import redis

    from omnimind.app import app

    app.conf.task_send_sent_event = False  # a plain Celery client (Celery's default)
    client = redis.Redis(port=port)
    base = Path(tempfile.mkdtemp(prefix="omnimind-real-streams-"))
    load_before = [round(x, 2) for x in os.getloadavg()]
    farms, river, deep, ok = {}, {"streams": {}}, {"streams": {}}, False
    work = Path(tempfile.mkdtemp(prefix="omnimind-real-streams-baselines-"))
    try:
        for stream in streams:
            farms[stream.name] = run_farm(app, client, stream, base / stream.name, args)
            # Right after the farm stops, so that its throughput and deep-river's are measured close together.
            for kind, into in (("river", river), ("deep_river", deep)):
                out = run_in_subprocess(kind, [stream], args.seed, work, args.deep_river_threads or None)
                into["versions"] = out["versions"]
                into["streams"].update(out["streams"])
        ok = True
    finally:
        stop_all(redis_proc)
        shutil.rmtree(work, ignore_errors=True)
        if ok:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"farm logs kept in {base}", file=sys.stderr)
    summary = summarize(streams, farms, river, deep, args.window)
    report = {
        "code": git_commit(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_before": load_before,
                    "load_after": [round(x, 2) for x in os.getloadavg()],
                    "note": "CPUs shared with other agents' work: timings and throughputs are noisy"},
        "setup": (f"Per stream, a fresh farm (`omnimind up` on the Procfile's inference + training lines, "
                  f"OMNIMIND_MODEL_FACTORY=benchmarks.stream_models:<stream>, cross entropy for classifiers, "
                  f"every other setting at its default); {args.rate:g} samples/s in mini-batches of {args.batch}, "
                  f"predict (answer awaited) then learn; served class = the head's label where the farm has "
                  f"classifier heads, else the argmax of the returned outputs. Learn "
                  f"bursts: {args.throughput_rounds} x {args.throughput_samples} samples (the stream cycled) in learn "
                  f"batches of {args.throughput_batch}, all at once. "
                  f"Baselines right after each farm, each kind in a process of its own: deep-river "
                  f"{deep['versions'].get('deep_river')} (river {deep['versions'].get('river')}, torch "
                  f"{deep['versions'].get('torch')}, {deep['versions'].get('torch_threads')} torch threads) and "
                  f"River {river['versions'].get('river')}."),
        "args": vars(args), "targets": TARGETS, "wall_s": time.monotonic() - started,
        "summary": summary,
        "farm": {name: {k: v for k, v in f.items() if k != "errors"} for name, f in farms.items()},
        "baselines": {"versions": {"river": river["versions"], "deep_river": deep["versions"]},
                      "timing": {name: {"deep-river": {k: v for k, v in deep["streams"][name]["deep-river"].items()
                                                       if k != "errors"},
                                        **{m: {k: v for k, v in r.items() if k != "errors"}
                                           for m, r in river["streams"][name].items()}}
                                 for name in farms}},
    }
    write(report, args.name, streams)
    for stream in streams:
        r = summary[stream.name]
        print(f"{stream.name}: served {fmt(r['served'])} vs deep-river {fmt(r['deep_river'])} "
              f"(x{fmt(r['vs_deep_river'])}) vs best River {r['best_river']} {fmt(r['best_river_error'])} "
              f"(x{fmt(r['vs_best_river'])}); learn throughput x{fmt(r['throughput']['ratio'])} deep-river")
    print(f"({report['wall_s']:.0f} s wall; results in {RESULTS}/{args.name}.*)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
