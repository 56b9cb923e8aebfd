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
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from harness import (RESULTS, metric_value, omnimind_up, private_redis, procfile_farm, pyplot, save_figure, scrape,
                     stop_all, wait_until, write_results)

STREAM_ORDER = ("abrupt", "gradual", "recurring")
TARGETS = {"abrupt_p50_s": 5.0, "abrupt_p90_s": 10.0, "stationary_ratio": 1.2, "publication_rise": 1.05}
GAUGES = ("omnimind_model_freshness_lag_seconds",)
PUBLISHED, REFUSED = "omnimind_model_publications_by_reason_total", "omnimind_model_publication_refusals_total"
LEARNER_WINDOW = 1000  # samples in the learner's prequential window (omnimind.learning.system: metrics_window)


def nearest_rank(values, q: float) -> float | None:
    """Nearest-rank percentile; None counts as +inf (a change never recovered)."""
    ordered = sorted(math.inf if v is None else v for v in values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else None


def fmt_s(value) -> str:
    if value is None or value == "never" or math.isinf(value):
        return "n/a" if value is None else "never"
    return f"{value:.1f} s"


def recovery(trace: dict, k: int, stream=None, probe_x=None, level_s: float = 3.0, factor: float = 2.0,
             hold_s: float = 1.0) -> dict:
    """Recovery after change ``k`` of a trace (see the module doc). ``settled``: the served model fit the
    old concept before the change (its probe MSE below half the variance of the old targets)."""
    p, change = trace["probes"], trace["changes"][k]
    t_c, half = change["t"], change["width_s"] / 2 if change["width"] > 1 else 0.0
    if t_c is None:
        return {"label": change["label"], "seconds": None, "pre_level": None, "note": "change never sent"}
    following = [c["t"] - (c["width_s"] / 2 if c["width"] > 1 else 0) for c in trace["changes"][k + 1:]]
    horizon = min(following + [trace["duration_s"]])
    series = [(t, m, v) for t, m, v in zip(p["t"], p["mse"], p["version"]) if m is not None]
    before = [m for t, m, _ in series if t_c - half - level_s <= t < t_c - half]
    if not before:
        return {"label": change["label"], "seconds": None, "pre_level": None, "note": "no probes before the change"}
    level = float(np.median(before))
    after = [(t, m) for t, m, _ in series if t_c <= t < horizon]
    seconds = None
    for i, (t, m) in enumerate(after):
        if m <= factor * level and all(m2 <= factor * level for t2, m2 in after[i:] if t2 <= t + hold_s) \
                and (after[-1][0] >= min(t + hold_s, horizon - 0.5)):
            seconds = t - t_c
            break
    old = next((v for t, _, v in reversed(series) if t < t_c), None)
    swap = next((t - t_c for t, _, v in series if t >= t_c and v != old), None)
    peak = max((m for _, m in after), default=None)
    settled = None
    if stream is not None and stream.concepts:
        old_targets = stream.expected(probe_x, max(0, change["at"] - change["width"] // 2 - 1))
        settled = bool(level < 0.5 * float(np.var(old_targets)))
    return {"label": change["label"], "seconds": seconds, "pre_level": level, "peak": peak, "settled": settled,
            "horizon_s": horizon - t_c, "first_version_change_s": swap}


def phase_tails(trace: dict) -> list[tuple[int, int]]:
    """The second half of every phase, in sample indices (a gradual change's width left out)."""
    edges = [0]
    for c in trace["changes"]:
        half = c["width"] // 2 if c["width"] > 1 else 0
        edges += [c["at"] - half, c["at"] + half]
    edges.append(trace["samples"])
    return [((a + b) // 2, b) for a, b in zip(edges[::2], edges[1::2]) if b > a]


def stationary(trace: dict) -> list[dict]:
    """Served vs learner prequential loss on the same samples: the second half of each phase.

    Served: MSE of the served predictions of the feedback batches in it. Learner: the windowed
    prequential loss of its status JSON, from the probes whose window (its newest min(count,
    LEARNER_WINDOW) samples, placed by the learner's sample counter) lies inside it; so a
    learning backlog does not shift the learner's figure into another phase.
    """
    b, p, size, base, out = trace["batches"], trace["probes"], trace["batch_size"], trace["learner_base"], []
    for lo, hi in phase_tails(trace):
        served = [m for s, m in zip(b["start"], b["mse"]) if lo <= s and s + size <= hi]
        learner = [] if base is None else [
            loss for loss, count, seen in zip(p["learner_loss"], p["learner_count"], p["learner_samples"])
            if loss is not None and seen is not None and lo <= seen - base - min(count, LEARNER_WINDOW)
            and seen - base <= hi]
        s, lr = (float(np.mean(v)) if v else None for v in (served, learner))
        out.append({"samples": [lo, hi], "served": s, "learner": lr, "learner_probes": len(learner),
                    "ratio": s / lr if s is not None and lr else None})
    return out


def publication_checks(trace: dict, outputs: list, stream, probe_x) -> list[dict]:
    """Old vs new version (the probes just before and just after a served-version change) on the
    probe set, against one target: ``ratio`` the concept of the newest feedback sent (what users
    get), ``ratio_live`` the concept of the newest feedback the learner had learned at that probe
    (its live window: what a publication gate can know; the two differ under a learning backlog)."""
    p, base, out = trace["probes"], trace["learner_base"], []
    if not stream.concepts:
        return out
    for k in range(1, len(p["version"])):
        if p["version"][k] == p["version"][k - 1]:
            continue
        entry = {"t": p["t"][k], "from": p["version"][k - 1], "to": p["version"][k]}
        seen = p["learner_samples"][k]
        indices = {"": p["at"][k], "_live": None if base is None or seen is None else
                   min(max(seen - base - 1, 0), len(stream.x) - 1)}
        for suffix, index in indices.items():
            if index is None:
                continue
            target = stream.expected(probe_x, index)
            before, after = (float(np.mean((outputs[i] - target) ** 2)) for i in (k - 1, k))
            entry.update({f"before{suffix}": before, f"after{suffix}": after,
                          f"ratio{suffix}": after / before if before > 0 else None})
        out.append(entry)
    return out


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


class Farm:
    """One `omnimind up` farm (inference + training) on the benchmark's Redis, and its processes."""

    def __init__(self, app, run_dir: Path) -> None:
        import psutil

        self.app, self.run_dir = app, run_dir
        procfile, self.info = procfile_farm(("inference", "training"), run_dir)
        self.proc = omnimind_up(procfile, run_dir, {"OMNIMIND_DATA_DIR": str(run_dir / "data"), **self.info["env"]})
        started = time.monotonic()
        wait_until(self._ready, timeout=180, interval=0.25, message="the farm to answer pings")
        self.app.send_task("tasks.inference.predict", kwargs={"inputs": [[0.0] * 16]}).get(timeout=60)
        self.startup_s = time.monotonic() - started
        self.processes = {}
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            cmdline = " ".join(child.cmdline())
            for name in ("inference", "training"):
                if f"-Q {name}" in cmdline:
                    self.processes[name] = child
        if set(self.processes) != {"inference", "training"}:
            raise SystemExit(f"farm processes not found (found {sorted(self.processes)}): CPU cannot be measured")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise SystemExit(f"omnimind up exited:\n{(self.run_dir / 'farm.log').read_text()[-3000:]}")
        try:
            names = [n for reply in self.app.control.ping(timeout=0.5) for n in reply]
        except Exception:  # noqa: BLE001
            return False
        self.nodes = {q: next((n for n in names if n.startswith(f"{q}@")), None) for q in ("inference", "training")}
        return all(self.nodes.values())

    def cpu(self) -> dict[str, float]:
        times = {name: p.cpu_times() for name, p in self.processes.items()}
        return {name: t.user + t.system for name, t in times.items()}

    def metrics(self) -> str:
        try:
            return scrape(self.info["metrics_ports"]["training"])
        except Exception:  # noqa: BLE001
            return ""

    def stop(self) -> None:
        stop_all(self.proc, timeout=60)


def redis_counts(client) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in client.info("commandstats").items()}


def counter_delta(before: str, after: str, name: str) -> dict[str, float] | None:
    """Increase of counter ``name`` per ``reason`` label between two scrapes (None: not exported)."""
    if name not in after:
        return None
    reasons = {line.split('reason="', 1)[1].split('"', 1)[0] for line in after.splitlines()
               if line.startswith(name + "{") and 'reason="' in line}
    deltas = {r: metric_value(after, name, reason=r) - metric_value(before, name, reason=r) for r in sorted(reasons)}
    return {r: d for r, d in deltas.items() if d}


def run_stream(farm: Farm, client, stream, seed: int, farm_index: int) -> dict:
    """Drive one stream through the farm; the trace plus the farm-side costs of the run."""
    from omnimind.app import app
    from omnimind.stream import StreamDriver

    client.config_resetstat()
    memory0, cpu0, text0 = client.info("memory")["used_memory"], farm.cpu(), farm.metrics()
    gauges, stop = {g: [] for g in GAUGES}, threading.Event()

    def sample_gauges():
        while not stop.wait(1.0):
            text = farm.metrics()
            for g in GAUGES:
                if g in text:
                    gauges[g].append(metric_value(text, g))

    sampler = threading.Thread(target=sample_gauges, daemon=True)
    sampler.start()
    driver = StreamDriver(app, client, stream, seed=seed, node_id=farm.nodes["training"])
    trace = driver.run()
    stop.set()
    sampler.join()
    cpu1, text = farm.cpu(), farm.metrics()
    commands = redis_counts(client)
    duration = trace["duration_s"]
    n_pub = len(trace["publications"])
    result = {
        "stream": stream.name, "seed": seed, "farm": farm_index, "trace": trace,
        "recovery": [recovery(trace, k, stream, driver.probe_x) for k in range(len(trace["changes"]))]
        if stream.concepts else [],
        "stationary": stationary(trace),
        "publication_checks": publication_checks(trace, driver.probe_outputs, stream, driver.probe_x),
        "publications": n_pub, "publications_per_min": n_pub / duration * 60,
        "reasons": {r: sum(1 for p in trace["publications"] if p["reason"] == r)
                    for r in {p["reason"] for p in trace["publications"]}},
        "prometheus": {"publications_by_reason": counter_delta(text0, text, PUBLISHED),
                       "refusals_by_reason": counter_delta(text0, text, REFUSED),
                       "freshness_lag_s": {"median": float(np.median(v)) if (v := gauges[GAUGES[0]]) else None,
                                           "max": max(v) if v else None}},
        "feed": {"samples": trace["samples"], "rate": trace["samples"] / max(trace["send_s"], 1e-9),
                 "send_s": trace["send_s"], "drain_s": duration - trace["send_s"],
                 "learned_lag_s": {"p50": float(np.median(lag)) if (lag := np.subtract(
                     trace["batches"]["done_t"], trace["batches"]["t"])).size else None,
                                   "max": float(lag.max()) if lag.size else None}},
        "redis": {"commands": sum(commands.values()), "top": dict(sorted(commands.items(), key=lambda kv: -kv[1])[:8]),
                  "used_memory_delta": client.info("memory")["used_memory"] - memory0},
        "cpu_s": {name: cpu1[name] - cpu0[name] for name in cpu1},
    }
    per_pub = (lambda total: total / n_pub if n_pub else None)
    result["all_in_per_publication"] = {"redis_commands": per_pub(result["redis"]["commands"]),
                                        "cpu_s": per_pub(sum(result["cpu_s"].values()))}
    return result


def marginal_publication_cost(farm: Farm, client, count: int, window_s: float, rounds: int = 3) -> dict:
    """Stream stopped: ``rounds`` pairs of windows of ``window_s`` seconds, one idle, one with ``count``
    republications of the active weights (fetched once before), each a full publish -> notice ->
    verify -> swap in every worker (and the learner's adopt). Marginal cost = (publishing - idle) / n."""
    from omnimind.app import app, settings
    from omnimind.models.factory import build_model
    from omnimind.models.store import ModelStore

    store = ModelStore(client, keep_versions=settings.model_keep_versions, producer="freshness-benchmark")
    active = store.active_version()
    state = build_model(settings).state_dict() if active is None else store.fetch(active)[1]
    own, sizes, last = [], [], None

    def window(publish: bool) -> tuple[int, float]:
        nonlocal last
        client.config_resetstat()
        cpu0, started = farm.cpu(), time.monotonic()
        for k in range(count if publish else 0):
            time.sleep(max(0.0, started + (k + 0.5) * window_s / count - time.monotonic()))
            t0 = time.process_time()
            last = store.publish(state, {"reason": "benchmark"}, fence=store.fence())
            own.append(time.process_time() - t0)
            sizes.append(last.size_bytes)
        time.sleep(max(0.0, window_s - (time.monotonic() - started)))
        cpu1 = farm.cpu()
        return sum(redis_counts(client).values()), sum(cpu1[n] - cpu0[n] for n in cpu1)

    windows = {"idle": [], "publishing": []}
    for _ in range(rounds):
        for kind in windows:
            windows[kind].append(window(kind == "publishing"))
    served = app.send_task("tasks.inference.predict", kwargs={"inputs": [[0.0] * 16]}).get(timeout=30)
    totals = {kind: [sum(w[i] for w in ws) for i in (0, 1)] for kind, ws in windows.items()}
    n = count * rounds
    return {"publications": n, "window_s": window_s, "rounds": rounds,
            "windows": {k: [{"redis_commands": c, "farm_cpu_s": round(u, 3)} for c, u in ws]
                        for k, ws in windows.items()},
            "last_published_served": served["model_version"] >= last.version,
            "per_publication": {"redis_commands": (totals["publishing"][0] - totals["idle"][0]) / n,
                                "farm_cpu_s": (totals["publishing"][1] - totals["idle"][1]) / n,
                                "publisher_cpu_s": float(np.mean(own)), "blob_bytes": float(np.mean(sizes))}}


def friedman_mae(run: dict, arf: dict | None, phase: int) -> dict:
    """Served prequential MAE on the Friedman stream against ARF's on the very same samples."""
    b = run["trace"]["batches"]
    size = run["trace"]["batch_size"]
    out = {"served_mae": float(np.mean(b["mae"])) if b["mae"] else None, "batches": len(b["mae"])}
    if arf is not None and b["start"]:
        errors = np.asarray(arf["errors"])
        out["arf_mae"] = float(np.mean([errors[s:s + size].mean() for s in b["start"]]))
        out["arf_mae_whole_stream"], out["arf_cpu_s"] = arf["mae"], arf["cpu_s"]
        out["ratio"] = out["served_mae"] / out["arf_mae"]
        out["by_phase"] = []
        for k in range(3):
            idx = [i for i, s in enumerate(b["start"]) if k * phase <= s < (k + 1) * phase]
            if idx:
                served = float(np.mean([b["mae"][i] for i in idx]))
                ours = float(np.mean([errors[b["start"][i]:b["start"][i] + size].mean() for i in idx]))
                out["by_phase"].append({"phase": k + 1, "served_mae": served, "arf_mae": ours, "ratio": served / ours})
    return out


def spread(values) -> dict:
    """p50/p90 (nearest rank) of recovery times; "never" where that rank did not recover."""
    ranks = {q: nearest_rank(values, f) for q, f in (("p50", 0.5), ("p90", 0.9))}
    return {"n": len(values), **{q: "never" if v is not None and math.isinf(v) else v for q, v in ranks.items()},
            "not_recovered": sum(v is None for v in values), "values": values}


def summarize(runs: list[dict], friedman: dict | None, friedman_cmp: dict, cost: dict | None) -> dict:
    every = runs + ([friedman] if friedman else [])
    recoveries, unsettled = {}, {}
    for run in runs:
        for r in run["recovery"]:
            key = run["stream"] if run["stream"] != "recurring" else f"recurring {r['label']}"
            recoveries.setdefault(key, []).append(r["seconds"])
            unsettled[key] = unsettled.get(key, 0) + (r.get("settled") is False)
    ratios = [w["ratio"] for run in every for w in run["stationary"] if w["ratio"] is not None]
    checks = [c for run in runs for c in run["publication_checks"]]
    pubs, minutes = sum(r["publications"] for r in every), sum(r["trace"]["duration_s"] for r in every) / 60
    reasons = {}
    for run in every:
        for reason, n in run["reasons"].items():
            reasons[str(reason)] = reasons.get(str(reason), 0) + n
    commands, cpu = sum(r["redis"]["commands"] for r in every), sum(sum(r["cpu_s"].values()) for r in every)
    return {
        "recovery_s": {k: {**spread(v), "unsettled_before": unsettled[k]} for k, v in recoveries.items()},
        "stationary_ratio": {"n": len(ratios), "median": float(np.median(ratios)) if ratios else None,
                             "max": max(ratios) if ratios else None,
                             "over_target": sum(r > TARGETS["stationary_ratio"] for r in ratios)},
        "publication_check": {
            "version_changes": len(checks),
            **{f"worst{k}": max((c[f"ratio{k}"] for c in checks if c.get(f"ratio{k}") is not None), default=None)
               for k in ("", "_live")},
            **{f"violations{k}": sum(c.get(f"ratio{k}") is not None and c[f"ratio{k}"] > TARGETS["publication_rise"]
                                     for c in checks) for k in ("", "_live")}},
        "publications": {"total": pubs, "per_min": pubs / minutes if minutes else None, "by_reason": reasons},
        "all_in_per_publication": {"redis_commands": commands / pubs if pubs else None,
                                   "farm_cpu_s": cpu / pubs if pubs else None},
        "marginal_per_publication": cost and cost["per_publication"],
        "feed": {"min_rate": min(r["feed"]["rate"] for r in every),
                 "max_learned_lag_s": max((r["feed"]["learned_lag_s"]["max"] or 0) for r in every)},
        "friedman": friedman_cmp,
        "errors": sum(len(r["trace"]["errors"]) for r in every),
    }


def lines(summary: dict, args) -> list[str]:
    s, out = summary, []
    for key, v in s["recovery_s"].items():
        target = f" (target p50 ≤ {TARGETS['abrupt_p50_s']:g} s, p90 ≤ {TARGETS['abrupt_p90_s']:g} s)" \
            if key == "abrupt" else ""
        out.append(f"recovery to 2x the pre-change served MSE, {key}: p50 **{fmt_s(v['p50'])}**, "
                   f"p90 **{fmt_s(v['p90'])}** over {v['n']} change(s), {v['not_recovered']} not recovered "
                   f"before the next change or the end{target}; {v['unsettled_before']} of them started from a "
                   "served model that did not fit the old concept (MSE ≥ half the target variance)")
    st = s["stationary_ratio"]
    out.append(f"served / learner prequential loss on the same samples, second half of each phase: median "
               f"**{st['median'] or float('nan'):.3f}**, "
               f"max {st['max'] or float('nan'):.3f} over {st['n']} phase tails, {st['over_target']} above "
               f"{TARGETS['stationary_ratio']} (target ≤ {TARGETS['stationary_ratio']})")
    pc = s["publication_check"]
    out.append(f"served probe MSE just after / just before each served-version change ({pc['version_changes']}): "
               f"against the newest feedback sent worst **{pc['worst'] or float('nan'):.3f}**, "
               f"{pc['violations']} above {TARGETS['publication_rise']}; against the learner's live window worst "
               f"**{pc['worst_live'] or float('nan'):.3f}**, {pc['violations_live']} above "
               f"{TARGETS['publication_rise']} (target: none)")
    p = s["publications"]
    out.append(f"publications: **{p['total']}** ({(p['per_min'] or 0):.1f}/min of streaming), "
               f"by reason {p['by_reason']}")
    a, m = s["all_in_per_publication"], s["marginal_per_publication"]
    out.append("all-in cost per publication (whole runs ÷ publications, all feedback traffic included): "
               + ("n/a (no publications)" if a["redis_commands"] is None else
                  f"{a['redis_commands']:.0f} Redis commands, {a['farm_cpu_s']:.2f} s farm CPU"))
    if m:
        out.append(f"marginal cost per publication (vs an idle window, no feedback): "
                   f"**{m['redis_commands']:.1f} Redis commands**, {m['blob_bytes'] / 1024:.1f} KiB blob, "
                   f"farm CPU **{m['farm_cpu_s'] * 1000:.1f} ms** (inference + training workers), publisher CPU "
                   f"{m['publisher_cpu_s'] * 1000:.1f} ms")
    f = s["friedman"]
    if f.get("ratio") is not None:
        out.append(f"FriedmanDrift (gra): served prequential MAE **{f['served_mae']:.3f}**, river ARFRegressor "
                   f"progressive validation on the same samples {f['arf_mae']:.3f} → ratio **{f['ratio']:.2f}** "
                   "(lower is better for the farm)")
    fd = s["feed"]
    out.append(f"feedback actually sent: ≥ {fd['min_rate']:.0f} samples/s in every run (asked {args.rate:g}; "
               f"target ≥ 300); worst feedback → learned lag {fd['max_learned_lag_s']:.1f} s; "
               f"{s['errors']} client error(s)")
    return out


def write(report: dict, plotted: list[dict]) -> None:
    s = report["summary"]
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
    port, redis_proc = private_redis()  # before any omnimind import
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
