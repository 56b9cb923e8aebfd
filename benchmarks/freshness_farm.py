"""Freshness benchmark, the farm side: an `omnimind up` farm, one stream driven through it with its
Redis and CPU costs, and the marginal cost of a publication."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from freshness_analysis import publication_checks, recovery, stationary
from harness import metric_value, omnimind_up, procfile_farm, scrape, stop_all, wait_until

GAUGES = ("omnimind_model_freshness_lag_seconds",)
PUBLISHED, REFUSED = "omnimind_model_publications_by_reason_total", "omnimind_model_publication_refusals_total"


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
    def per_pub(total):
        return total / n_pub if n_pub else None

    result["all_in_per_publication"] = {"redis_commands": per_pub(result["redis"]["commands"]),
                                        "cpu_s": per_pub(sum(result["cpu_s"].values()))}
    return result


def marginal_publication_cost(farm: Farm, client, count: int, window_s: float, rounds: int = 3) -> dict:
    """Stream stopped: ``rounds`` pairs of windows of ``window_s`` seconds, one idle, one with ``count``
    republications of the active weights (fetched once before), each a full publish -> notice ->
    verify -> swap in every worker (and the learner's adopt). Marginal cost = (publishing - idle) / n."""
    from omnimind.app import app
    from omnimind.config import settings
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
