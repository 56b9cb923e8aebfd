"""Time limits on solo/threads pools (``omnimind.deadlines``): what they cost, how late they land.

* per-task cost: ``arm`` (soft + hard deadline) + ``disarm`` around a task body, with
  0, 10 000 and 100 000 other deadlines pending (a busy threads worker keeps one pair
  per task in flight for up to the hard limit), against the bare call as baseline,
  and as a fraction of the measured ``predict`` p50 (``predict_latency.json``);
* the same from 4 threads at once (a threads pool of concurrency 4);
* lateness: deadline → exception raised in the task's thread, for a pure-Python
  spin loop and for a loop of 1 ms naps (``time.sleep`` is one C call: it finishes first).

Run: ``.venv/bin/python benchmarks/time_limits.py`` (writes benchmarks/results/time_limits.{json,md,png}).
"""
from __future__ import annotations

import json
import sys
import threading
import time

from harness import RESULTS, pyplot, save_figure, summary_ms, write_results

from omnimind.deadlines import DeadlineWatchdog

CALLS = 20_000
FAR = 3600.0  # pending deadlines that never fire during the run


class SoftLimit(Exception):
    pass


def body() -> None:
    return None


def per_call_us(watchdog: DeadlineWatchdog | None, calls: int) -> float:
    t0 = time.perf_counter()
    if watchdog is None:
        for _ in range(calls):
            body()
    else:
        for _ in range(calls):
            ticket = watchdog.arm([(FAR, SoftLimit), (FAR * 2, SoftLimit)])
            try:
                body()
            finally:
                watchdog.disarm(ticket)
    return (time.perf_counter() - t0) / calls * 1e6


def median(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def cost_with_pending(pending: int) -> float:
    watchdog = DeadlineWatchdog()
    watchdog.start()
    holders = [watchdog.arm([(FAR, SoftLimit)]) for _ in range(pending)]
    try:
        return median([per_call_us(watchdog, CALLS) for _ in range(5)])
    finally:
        for ticket in holders:
            watchdog.disarm(ticket)
        watchdog.stop()


def concurrent_cost(threads: int) -> float:
    watchdog = DeadlineWatchdog()
    watchdog.start()
    results: list[float] = []

    def run():
        results.append(per_call_us(watchdog, CALLS))

    workers = [threading.Thread(target=run) for _ in range(threads)]
    t0 = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - t0
    watchdog.stop()
    return elapsed / (threads * CALLS) * 1e6  # wall µs per task across the pool


def lateness(loop: str, trials: int = 200, deadline: float = 0.02) -> list[float]:
    watchdog = DeadlineWatchdog()
    watchdog.start()
    late = []
    for _ in range(trials):
        ticket = watchdog.arm([(deadline, SoftLimit)])
        started = time.perf_counter()
        try:
            if loop == "spin":
                while True:
                    pass
            else:
                while True:
                    time.sleep(0.001)
        except SoftLimit:
            late.append(time.perf_counter() - started - deadline)
        finally:
            watchdog.disarm(ticket)
    watchdog.stop()
    return late


def main() -> None:
    bare = median([per_call_us(None, CALLS) for _ in range(5)])
    costs = {pending: cost_with_pending(pending) for pending in (0, 10_000, 100_000)}
    pool4 = concurrent_cost(4)
    late = {loop: summary_ms(lateness(loop)) for loop in ("spin", "naps")}
    predict_p50_ms = None
    predict_file = RESULTS / "predict_latency.json"
    if predict_file.exists():
        predict_p50_ms = round(json.loads(predict_file.read_text())["latency"]["predict"]["p50_ms"], 3)
    overhead = {p: round(c - bare, 2) for p, c in costs.items()}
    report = {
        "bare_call_us": round(bare, 3),
        "arm_disarm_us_by_pending": {str(p): round(c, 2) for p, c in costs.items()},
        "overhead_us_by_pending": {str(p): v for p, v in overhead.items()},
        "pool_of_4_wall_us_per_task": round(pool4, 2),
        "lateness_ms": late,
        "predict_p50_ms": predict_p50_ms,
        "overhead_fraction_of_predict_p50": (
            round(overhead[100_000] / (predict_p50_ms * 1000), 5) if predict_p50_ms else None
        ),
    }
    md = [
        "# Time limits on solo/threads pools: cost and lateness",
        "",
        "Same process, no broker. A task arms a soft and a hard deadline and disarms them when it ends.",
        "",
        "| deadlines pending | arm + disarm + body (µs) | overhead vs bare call (µs) |",
        "|---|---|---|",
    ]
    md += [f"| {p:,} | {costs[p]:.2f} | {overhead[p]:.2f} |" for p in costs]
    md += [
        "",
        f"Bare call: {bare:.3f} µs. Four threads at once: {pool4:.2f} µs wall per task.",
    ]
    if predict_p50_ms:
        md.append(
            f"Against the measured predict p50 ({predict_p50_ms} ms): {overhead[100_000]:.2f} µs is "
            f"{report['overhead_fraction_of_predict_p50'] * 100:.2f}% with 100 000 deadlines pending."
        )
    md += [
        "",
        "| task body | lateness p50 (ms) | p99 (ms) | max (ms) |",
        "|---|---|---|---|",
    ]
    md += [f"| {loop} | {s['p50_ms']} | {s['p99_ms']} | {s['max_ms']} |" for loop, s in late.items()]
    md += [
        "",
        "Lateness: from the deadline to the exception in the task's thread, 200 trials of a 20 ms limit.",
        f"A spinning thread gives up the GIL only every switch interval ({sys.getswitchinterval() * 1000:g} ms),",
        "and the watchdog needs the GIL to raise: that interval is the floor of the spin lateness.",
    ]
    write_results("time_limits", report, md)
    plt = pyplot()
    if plt is not None:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.bar([f"{p:,}" for p in costs], [overhead[p] for p in costs])
        ax.set_xlabel("deadlines pending")
        ax.set_ylabel("overhead per task (µs)")
        ax.set_title("arm + disarm cost")
        save_figure(fig, "time_limits")
    print("\n".join(md))


if __name__ == "__main__":
    main()
