"""Partitions across hosts in network namespaces: isolate the Raft leader, measure, heal.

Redis on one namespace host, three `celery -A omnimind worker -Q training --raft-id nX`
members on three others (tests/multihost/farm.py; root only). The members' Raft links are
on a net of their own; a trial sets the leader's veth on it down (it still reaches Redis,
so its status and log tell what it believes), then heals it. Per trial:
  - cut -> a member of the majority leads a newer term (its own `leader_since`),
  - cut -> the first dispatch under the newer term accepted (the consumer's stream entry),
  - cut -> the isolated old leader stops leading (CheckQuorum: the `no longer leads` line
    of its log, millisecond stamps; and its status key, published every 0.25 s),
  - heal -> the old leader is a follower of the new term with the new leader's commit
    index at the heal (status key: 0.25 s resolution).

    sudo python benchmarks/partition.py [--trials 12]

Writes benchmarks/results/partition.{json,md,png}.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

from harness import pyplot, save_figure, summary_ms, wait_until, write_results

from tests.multihost.farm import MEMBERS, Farm
from tests.multihost.netns import unavailable

STOPPED = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/[^\]]*\].*no longer leads \(term (\d+)")


def stopped_at(log: str, term: int) -> float | None:
    """When the log says the member stopped leading in ``term`` (local time, as the worker logs it)."""
    for line in log.splitlines():
        match = STOPPED.match(line)
        if match and int(match.group(2)) == term:
            return datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--interval", type=float, default=0.1, help="schedule interval (s)")
    parser.add_argument("--hold", type=float, default=1.5, help="seconds the old leader stays cut off")
    args = parser.parse_args()
    reason = unavailable()
    if reason:
        print(f"partition.py: {reason}", file=sys.stderr)
        return 2

    farm = Farm(Path(tempfile.mkdtemp(prefix="omnimind-partition-")), retrain_interval=args.interval, inference=())
    samples: dict[str, list[float]] = {"new_leader": [], "first_dispatch": [], "old_leader_log": [],
                                       "old_leader_status": [], "catch_up": []}
    behind: list[int] = []

    def wait(predicate, timeout=60.0):
        return wait_until(predicate, timeout=timeout, interval=0.005, message="condition")

    try:
        farm.start_all()
        for trial in range(args.trials):
            def settled():
                s = farm.statuses()
                views = {(v["leader_id"], v["term"]) for v in s.values()}
                if len(s) != 3 or len(views) != 1:
                    return None
                leader_id, term = views.pop()
                if leader_id is None or s[leader_id]["state"] != "leader":
                    return None
                if not any(a["term"] == term for a in farm.accepted()):
                    return None
                return s[leader_id]

            old = wait(settled)
            old_id, old_term = old["member_id"], old["term"]
            others = [m for m in MEMBERS if m != old_id]
            t_cut = time.time()
            farm.cut(old_id)
            stepped_down = None
            new = None
            while new is None or stepped_down is None:
                if new is None:
                    new = farm.leader(among=others, above_term=old_term)
                if stepped_down is None and farm.statuses()[old_id]["state"] != "leader":
                    stepped_down = time.time()
                if time.time() - t_cut > 60:
                    raise SystemExit(f"trial {trial + 1}: no new leader or no step-down within 60 s")
                time.sleep(0.005)
            first = wait(lambda: next((a["at"] for a in farm.accepted() if a["term"] > old_term), None))
            logged = wait(lambda: stopped_at(farm.procs[old_id].output(), old_term), timeout=10)
            samples["new_leader"].append(new["leader_since"] - t_cut)
            samples["first_dispatch"].append(first - t_cut)
            samples["old_leader_log"].append(logged - t_cut)
            samples["old_leader_status"].append(stepped_down - t_cut)
            time.sleep(max(0.0, args.hold - (time.time() - t_cut)))
            target = farm.statuses()[new["member_id"]]
            lag = target["commit_index"] - farm.statuses()[old_id]["commit_index"]
            t_heal = time.time()
            farm.heal(old_id)
            wait(lambda: (lambda s: s["term"] >= target["term"] and s["state"] == "follower"
                          and s["commit_index"] >= target["commit_index"])(farm.statuses()[old_id]))
            samples["catch_up"].append(time.time() - t_heal)
            behind.append(lag)
            print(f"trial {trial + 1}: {old_id} cut -> {new['member_id']} leads in "
                  f"{samples['new_leader'][-1] * 1000:.0f} ms, first dispatch {samples['first_dispatch'][-1] * 1000:.0f} ms; "
                  f"{old_id} stepped down after {samples['old_leader_log'][-1] * 1000:.0f} ms; caught up "
                  f"{lag} entries in {samples['catch_up'][-1] * 1000:.0f} ms", flush=True)
        accepted = farm.accepted()
    finally:
        farm.close()
    slots = sorted(a["slot"] for a in accepted)
    newest, stale = 0, 0  # accepted entries of an older term after a newer term's first
    for entry in accepted:
        stale += entry["term"] < newest
        newest = max(newest, entry["term"])
    write(samples, behind, args, slots == list(range(1, len(slots) + 1)), len(slots), stale)
    return 0


def write(samples, behind, args, slots_ok: bool, slots: int, stale: int) -> None:
    s = {name: summary_ms(values) for name, values in samples.items()}
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "setup": (f"Redis and 3 celery workers (solo pool, Raft bootstep) on 4 network-namespace hosts; "
                  f"Raft on a bridge of its own, cut by setting the leader's veth down for {args.hold} s; "
                  f"heartbeat 50 ms, election timeout 150-300 ms, pre-vote and CheckQuorum on; "
                  f"schedule interval {args.interval} s"),
        "cut_to_new_leader": s["new_leader"],
        "cut_to_first_dispatch": s["first_dispatch"],
        "cut_to_old_leader_steps_down_log": s["old_leader_log"],
        "cut_to_old_leader_steps_down_status": s["old_leader_status"],
        "heal_to_caught_up": s["catch_up"],
        "entries_behind_at_heal": behind,
        "slots_accepted": slots,
        "every_slot_once": slots_ok,
        "old_term_accepted_after_new_term": stale,
        "samples_s": samples,
    }
    row = lambda label, x: f"| {label} | {x['n']} | {x['p50_ms']:.0f} | {x['p99_ms']:.0f} | {x['max_ms']:.0f} |"  # noqa: E731
    md = [
        "# Partitions across namespace hosts (leader cut off from its peers)",
        "",
        f"Machine: {report['machine']['platform']}, {report['machine']['cpus']} CPUs. {report['setup']}.",
        "",
        "| measure | trials | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
        row("cut → new leader (newer term)", s["new_leader"]),
        row("cut → first dispatch accepted under the new term", s["first_dispatch"]),
        row("cut → isolated old leader steps down (its log)", s["old_leader_log"]),
        row("cut → isolated old leader steps down (status key, 0.25 s cadence)", s["old_leader_status"]),
        row("heal → old leader caught up (status key, 0.25 s cadence)", s["catch_up"]),
        "",
        f"Entries the old leader was behind at the heal: {min(behind)}–{max(behind)}. "
        f"Slots accepted over the run: {slots}, every one once and none skipped: {slots_ok}; "
        f"entries of an older term accepted after a newer term's first: {stale}.",
        "",
        "The old leader's step-down is CheckQuorum's: it checks once per election timeout (150 ms here) whether a "
        "quorum answered during the last one, so it steps down between one and two minimum election timeouts "
        "(150–300 ms) after the cut, within the randomized timeout's upper bound. Its schedule loop stops at once "
        "then (`workers/raft_member.py`), but the loop's pending proposal is not failed by the step-down: the "
        "coordinator thread waits out its 2 s proposal timeout before it logs `schedule stopped` (nothing can be "
        "committed or sent meanwhile). Catch-up after the heal is slower than the Raft round trip (tens of entries): "
        "the transport keeps its TCP connections across the cut, so the first bytes after the heal likely wait for "
        "TCP's retransmission backoff (not verified), and the status key adds up to 0.25 s.",
        "",
        "Targets (issue 13): new leader p50 ≤ 300 ms, p99 ≤ 1 s; an old leader steps down within one election "
        "timeout (CheckQuorum, `omnimind/scaling/raft/core/leader.py`: a leader that did not hear from a quorum "
        "during an election timeout becomes a follower; its lease also makes the voters ignore a vote request "
        "while they heard from a leader within the timeout).",
        "",
        "![partition](partition.png)",
    ]
    write_results("partition", report, md)
    plt = pyplot()
    if plt is not None:
        import numpy as np

        fig, ax = plt.subplots(figsize=(7, 4))
        for label, key in (("new leader", "new_leader"), ("first dispatch", "first_dispatch"),
                           ("old leader steps down", "old_leader_log"), ("caught up after heal", "catch_up")):
            xs = np.sort(np.asarray(samples[key]) * 1000)
            ax.plot(xs, np.arange(1, xs.size + 1) / xs.size, marker=".", label=label)
        ax.axvline(300, color="grey", linestyle="--", label="300 ms")
        ax.set_xlabel("ms after the cut (catch-up: after the heal)")
        ax.set_ylabel("fraction of trials")
        ax.legend()
        save_figure(fig, "partition")


if __name__ == "__main__":
    sys.exit(main())
