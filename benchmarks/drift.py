"""Drift detection: delay after an abrupt mean shift and false alarms on stable errors.

Detectors, all fed the same error streams through ``ConceptDriftDetector``:
OmniMind's default (``cusum``: two-sided CUSUM on standardized errors, warm-up
window 100), river's ``ADWIN`` and ``PageHinkley`` with river's defaults.

* delay: ``STREAMS`` seeded streams of 1 000 N(0, 1) errors followed by 2 000
  N(δ, 1) errors, δ = 5 and δ = 1; delay = first alarm at/after the change
  minus the change index (median, p90); alarms before the change and misses
  are counted separately;
* false alarms: ``STREAMS`` seeded streams of 10 000 N(0, 1) errors; every
  alarm counts (detectors keep running); reported per 10 000 samples.

Run: ``.venv/bin/python benchmarks/drift.py`` (writes benchmarks/results/drift.{json,md,png}).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from omnimind.learning import ConceptDriftDetector  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
STREAMS, CHANGE, AFTER, STABLE = 200, 1000, 2000, 10_000
METHODS = {"omnimind_cusum": "cusum", "river_adwin": "adwin", "river_page_hinkley": "page_hinkley"}


def alarms(method: str, errors: np.ndarray) -> list[int]:
    detector = ConceptDriftDetector(window_size=100, method=method)
    update = detector.update_error
    return [i for i, e in enumerate(errors.tolist()) if update(e)]


def delays(method: str, shift: float) -> dict:
    found, early, missed = [], 0, 0
    for seed in range(STREAMS):
        rng = np.random.default_rng([seed, int(shift * 10)])
        errors = np.concatenate([rng.normal(0, 1, CHANGE), rng.normal(shift, 1, AFTER)])
        hits = alarms(method, errors)
        early += sum(1 for h in hits if h < CHANGE)
        after = [h for h in hits if h >= CHANGE]
        if after:
            found.append(after[0] - CHANGE)
        else:
            missed += 1
    arr = np.asarray(found, dtype=float)
    return {
        "median": float(np.median(arr)) if arr.size else None,
        "p90": float(np.percentile(arr, 90)) if arr.size else None,
        "mean": float(arr.mean()) if arr.size else None,
        "missed": missed,
        "alarms_before_change": early,
        "all": arr.tolist(),
    }


def false_alarms(method: str) -> dict:
    total = 0
    for seed in range(STREAMS):
        errors = np.random.default_rng([seed, 777]).normal(0, 1, STABLE)
        total += len(alarms(method, errors))
    return {"alarms": total, "samples": STREAMS * STABLE, "per_10k": total / (STREAMS * STABLE) * 10_000}


def plot(result: dict) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    names = list(METHODS)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for ax, shift in zip(axes[:2], ("5.0", "1.0")):
        data = [result["detectors"][n]["delay"][shift]["all"] for n in names]
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(names) + 1), [n.replace("_", "\n", 1) for n in names], fontsize=8)
        ax.set_title(f"detection delay, shift {shift}σ ({STREAMS} streams)")
        ax.set_ylabel("samples after change")
    fa = [result["detectors"][n]["false_alarms"]["per_10k"] for n in names]
    axes[2].bar([n.replace("_", "\n", 1) for n in names], fa, color=["tab:blue", "tab:gray", "tab:gray"])
    axes[2].set_title("false alarms per 10k stable N(0,1)")
    axes[2].tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "drift.png", dpi=120)


def main() -> None:
    detectors = {}
    for name, method in METHODS.items():
        detectors[name] = {
            "delay": {str(s): delays(method, s) for s in (5.0, 1.0)},
            "false_alarms": false_alarms(method),
        }
        d = detectors[name]
        print(name, {k: (v["median"], v["missed"], v["alarms_before_change"]) for k, v in d["delay"].items()},
              d["false_alarms"], flush=True)
    result = {
        "benchmark": "drift",
        "streams": STREAMS,
        "change_at": CHANGE,
        "stable_samples_per_stream": STABLE,
        "target": "median delay <= PageHinkley's, false alarms = ADWIN's (0 per 10k)",
        "detectors": detectors,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    slim = json.loads(json.dumps(result))
    for d in slim["detectors"].values():
        for v in d["delay"].values():
            v.pop("all")
    (RESULTS / "drift.json").write_text(json.dumps(slim, indent=2))
    plot(result)
    lines = ["# Drift detection: OmniMind CUSUM vs river ADWIN / PageHinkley", "",
             f"{STREAMS} seeded streams per cell; change after {CHANGE} N(0,1) errors; "
             f"false alarms over {STREAMS} × {STABLE:,} stable N(0,1) errors. river defaults.", "",
             "| detector | median delay 5σ | p90 5σ | median delay 1σ | p90 1σ | missed (5σ/1σ) "
             "| alarms before change | false alarms / 10k |",
             "|---|---|---|---|---|---|---|---|"]
    for name, d in detectors.items():
        a, b = d["delay"]["5.0"], d["delay"]["1.0"]
        lines.append(f"| {name} | {a['median']:.0f} | {a['p90']:.0f} | {b['median']:.0f} | {b['p90']:.0f} | "
                     f"{a['missed']}/{b['missed']} | {a['alarms_before_change'] + b['alarms_before_change']} | "
                     f"{d['false_alarms']['per_10k']:.3f} |")
    lines += ["", "Target: delay ≤ PageHinkley's with ADWIN's false-alarm rate (0 per 10k). Plot: drift.png."]
    (RESULTS / "drift.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
