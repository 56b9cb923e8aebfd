"""Freshness benchmark, the pure analysis of a run: recovery, stationary ratio, publication checks,
the Friedman comparison, the summary and its report lines (no farm, no Redis)."""
from __future__ import annotations

import math

import numpy as np

TARGETS = {"abrupt_p50_s": 5.0, "abrupt_p90_s": 10.0, "stationary_ratio": 1.2, "publication_rise": 1.05}
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
