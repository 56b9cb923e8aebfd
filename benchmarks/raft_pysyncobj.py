"""PySyncObj on the same setup as OmniMind's Raft benchmarks: three OS processes on loopback TCP.

For each configuration (PySyncObj's defaults, and timeouts matched to OmniMind's Raft: election
150-300 ms, heartbeat 50 ms):

* failover, ``--trials`` times (default 20): SIGKILL the leader's process group and time
  kill -> a surviving member is leader (the new leader's own ``onStateChanged`` callback, stamped with
  ``time.time()`` inside that process; the parent stamps the kill with ``time.time()``, same machine clock),
  and kill -> the other survivor reports that new leader (its 1 ms poll of ``_getLeader()``). The killed
  member is restarted and the next trial waits until all three are connected and agree on one leader;
  the restarted member reports the term it reloaded from its journal before it talks to anyone.
* commit latency: ``--commits`` (default 1000) sequential calls of a ``@replicated`` counter increment with
  ``sync=True`` on the leader, after a warm-up, with the file journal (``journalFile``) and with no journal
  (PySyncObj's default in-memory journal), each on a fresh three-process cluster.
* once (``--isolation-seconds`` > 0): SIGSTOP both followers and time how long the leader, which now hears
  from nobody, keeps reporting itself leader (``leaderFallbackTimeout``, default 30 s).

Failover runs with ``journalFile`` set for every member, so a restarted member keeps its log, term and vote as
OmniMind's members do; every timing option is left at PySyncObj's default ("default") or set to the matched
values ("matched").

    python benchmarks/raft_pysyncobj.py [--trials 20] [--commits 1000]

Writes benchmarks/results/raft_pysyncobj.{json,md} and benchmarks/results/raft_comparison.md (next to
benchmarks/results/raft_failover.json and, when present, raft_commit.json). ``--rewrite`` only regenerates the two
.md files from raft_pysyncobj.json, e.g. after raft_commit.json has changed. About 7 minutes on 2 CPUs with
PySyncObj's default ``connectionRetryTime`` (5 s paces each rejoin); ``--connection-retry-time 0.5`` takes ~5.

This file runs the benchmark; the member process and the Cluster are in raft_pysyncobj_cluster.py,
the .md writers in raft_pysyncobj_report.py.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

from raft_pysyncobj_cluster import Cluster, member_main
from raft_pysyncobj_report import RESULTS, percentile, summary, write_comparison, write_markdown

# Option names as in pysyncobj/config.py (0.3.17). SyncObjConf.validate() asserts
# raftMinTimeout > 3 * appendEntriesPeriod strictly, and 3 * 0.05 == 0.15000000000000002 in floating point,
# so the matched minimum is 0.151 s (1 ms above OmniMind's 150 ms) with the 50 ms heartbeat kept exact.
CONFIGS = {
    "default": {},
    "matched": {"raftMinTimeout": 0.151, "raftMaxTimeout": 0.3, "appendEntriesPeriod": 0.05},
}


_T0 = time.monotonic()


def elapsed() -> str:
    return f"{time.monotonic() - _T0:6.1f}s"


def run_failover(name, conf, trials, workdir, isolation_seconds, commits):
    conf = {**conf, "journalFile": None}
    cluster = Cluster(conf)
    for m in cluster.members.values():
        m.conf = {**conf, "journalFile": str(workdir / f"{name}-{m.name}.journal")}
    new_leader_ms, other_sees_ms, restarts, failures = [], [], [], 0
    isolation = None
    try:
        cluster.start()
        for trial in range(trials):
            leader = cluster.wait(cluster.settled, 60)
            old_term = leader.view["term"]
            cluster.drain()
            t_kill = time.time()
            leader.kill()
            survivors = [m for m in cluster.members.values() if m is not leader]

            def new_leader_event(events=[]):  # noqa: B006 - accumulates across polls
                events.extend(cluster.drain())
                mine = [e for e in events if e["member"] != leader.name]
                became = [e for e in mine if (e["ev"] == "state" and e["new"] == 2)]
                if not became:
                    return None
                first = min(became, key=lambda e: e["t"])
                winner = cluster.members[first["member"]]
                other = [m for m in survivors if m is not winner][0]
                seen = [e for e in mine if e["member"] == other.name and e["ev"] == "view"
                        and e["leader"] == winner.addr and e["term"] > old_term]
                if not seen:
                    return None
                return first, winner, min(seen, key=lambda e: e["t"])

            winner, new_term = None, None
            try:
                first, winner, seen = cluster.wait(new_leader_event, 60)
                new_term = seen["term"]
            except TimeoutError:
                failures += 1
                print(f"{name} trial {trial + 1}: no new leader within 60 s", flush=True)
            else:
                new_leader_ms.append((first["t"] - t_kill) * 1000)
                other_sees_ms.append((seen["t"] - t_kill) * 1000)
                print(f"[{elapsed()}] {name} trial {trial + 1}: {leader.name} killed -> {winner.name} leader in "
                      f"{new_leader_ms[-1]:.0f} ms, {other_sees_ms[-1]:.0f} ms until the other survivor "
                      f"follows it", flush=True)
            leader.start()
            cluster.wait(lambda: leader.start_event, 30)
            t_restart = time.monotonic()
            settled = cluster.wait(cluster.settled, 60)
            # Did the restarted member's return change the leader (PySyncObj has no PreVote)?
            restarts.append({"member": leader.name, "term_before_kill": old_term,
                             "term_reloaded": leader.start_event["term"],
                             "voted_for_reloaded": leader.start_event["voted_for"],
                             "log_len_reloaded": leader.start_event["log_len"],
                             "new_leader": winner.name if winner else None, "new_leader_term": new_term,
                             "leader_after_rejoin": settled.name, "term_after_rejoin": settled.view["term"],
                             "rejoin_s": round(time.monotonic() - t_restart, 2)})
        cluster.wait(cluster.settled, 60)
        if isolation_seconds > 0:
            leader = cluster.settled()
            followers = [m for m in cluster.members.values() if m is not leader]
            cluster.drain()
            t0 = time.time()
            for f in followers:
                f.signal(signal.SIGSTOP)
            try:
                def stepped_down(events=[]):  # noqa: B006
                    events.extend(cluster.drain())
                    return next((e for e in events if e["member"] == leader.name and e["ev"] == "state"
                                 and e["old"] == 2), None)
                ev = cluster.wait(stepped_down, isolation_seconds)
                isolation = {"leader_kept_leading_s": ev["t"] - t0, "stepped_down": True}
            except TimeoutError:
                isolation = {"leader_kept_leading_s": time.time() - t0, "stepped_down": False,
                             "observed_for_s": isolation_seconds}
            finally:
                for f in followers:
                    f.signal(signal.SIGCONT)
            print(f"{name}: isolated leader {'stepped down after' if isolation['stepped_down'] else 'still leading after'}"
                  f" {isolation['leader_kept_leading_s']:.1f} s", flush=True)
        # Commit latency with the file journal on this (settled) cluster.
        commit = bench(cluster, name, commits, "file journal")
    finally:
        cluster.stop()
    return {"kill_to_new_leader_ms": new_leader_ms, "kill_to_other_survivor_follows_ms": other_sees_ms,
            "failures": failures, "restarts": restarts, "isolation": isolation, "commit": commit}


def bench(cluster, name, commits, label, warmup=10):
    leader = cluster.wait(cluster.settled, 60)
    cluster.drain()
    leader.send(f"bench {commits} {warmup}")

    def result():
        for e in cluster.drain():
            if e["ev"] == "bench":
                return e
        return None

    ev = cluster.wait(result, 400)
    print(f"[{elapsed()}] {name} commit ({label}): p50 {percentile(ev['samples_ms'], 0.5):.2f} ms "
          f"p99 {percentile(ev['samples_ms'], 0.99):.2f} ms, {ev['errors']} errors", flush=True)
    return ev


def run_commit(name, conf, commits, workdir, journal: bool, label):
    cluster = Cluster(conf)
    for m in cluster.members.values():
        m.conf = {**conf, "journalFile": str(workdir / f"commit-{name}-{m.name}.journal") if journal else None}
    try:
        cluster.start()
        return bench(cluster, name, commits, label)
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--member", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--self-addr", help=argparse.SUPPRESS)
    parser.add_argument("--peers", help=argparse.SUPPRESS)
    parser.add_argument("--conf", help=argparse.SUPPRESS)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--commits", type=int, default=1000)
    parser.add_argument("--memory-commits", type=int, default=100,
                        help="calls with the in-memory journal (latency is tick-bound either way; kept short)")
    parser.add_argument("--isolation-seconds", type=float, default=35.0,
                        help="observe an isolated leader this long (once, matched config); 0 to skip")
    parser.add_argument("--configs", default="default,matched")
    parser.add_argument("--rewrite", action="store_true",
                        help="only regenerate the .md files from raft_pysyncobj.json (e.g. after raft_commit.json "
                             "changed)")
    parser.add_argument("--connection-retry-time", type=float, default=None,
                        help="override connectionRetryTime in every config (PySyncObj default 5 s paces how fast a "
                             "restarted member is reconnected between trials; 0.5 shortens the run by ~2 min)")
    args = parser.parse_args()
    if args.member:
        return member_main(args)
    if args.rewrite:
        report = json.loads((RESULTS / "raft_pysyncobj.json").read_text())
        write_markdown(report)
        write_comparison(report)
        return 0

    import pysyncobj
    from pysyncobj import SyncObjConf

    load_before = os.getloadavg()[0]
    started = time.time()
    workdir = Path(tempfile.mkdtemp(prefix="pysyncobj-bench-"))
    results = {}
    for name in args.configs.split(","):
        conf = dict(CONFIGS[name])
        if args.connection_retry_time is not None:
            conf["connectionRetryTime"] = args.connection_retry_time
        effective = SyncObjConf(**conf)
        effective.validate()
        failover = run_failover(name, conf, args.trials, workdir,
                                args.isolation_seconds if name == "matched" else 0, args.commits)
        commit_file = failover["commit"]
        commit_mem = run_commit(name, conf, args.memory_commits, workdir, False, "no journal")
        commit_nobatch = run_commit(name, {**conf, "appendEntriesUseBatch": False}, args.commits, workdir, True,
                                    "file journal, appendEntriesUseBatch=False")
        results[name] = {
            "options": {k: getattr(effective, k) for k in (
                "raftMinTimeout", "raftMaxTimeout", "appendEntriesPeriod", "autoTickPeriod", "connectionTimeout",
                "connectionRetryTime", "leaderFallbackTimeout", "appendEntriesUseBatch")},
            "kill_to_new_leader_ms": summary(failover["kill_to_new_leader_ms"]),
            "kill_to_other_survivor_follows_ms": summary(failover["kill_to_other_survivor_follows_ms"]),
            "failover_failures": failover["failures"],
            "restarts": failover["restarts"],
            "isolated_leader": failover["isolation"],
            "commit_latency_file_journal": {**summary(commit_file["samples_ms"]), "errors": commit_file["errors"],
                                            "async_commits_per_s": round(commit_file["async_commits_per_s"], 1)},
            "commit_latency_memory_journal": {**summary(commit_mem["samples_ms"]), "errors": commit_mem["errors"],
                                              "async_commits_per_s": round(commit_mem["async_commits_per_s"], 1)},
            "commit_latency_file_journal_no_batch": {
                **summary(commit_nobatch["samples_ms"]), "errors": commit_nobatch["errors"],
                "async_commits_per_s": round(commit_nobatch["async_commits_per_s"], 1)},
            "samples": {"kill_to_new_leader_ms": failover["kill_to_new_leader_ms"],
                        "kill_to_other_survivor_follows_ms": failover["kill_to_other_survivor_follows_ms"]},
        }
    report = {
        "benchmark": "raft_pysyncobj",
        "pysyncobj_version": pysyncobj.__version__ if hasattr(pysyncobj, "__version__") else _version(),
        "setup": {"members": 3, "transport": "PySyncObj TCP on loopback, one OS process per member",
                  "trials": args.trials, "commits": args.commits, "memory_commits": args.memory_commits,
                  "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                  "load_average_1m_before": round(load_before, 2),
                  "load_average_1m_after": round(os.getloadavg()[0], 2),
                  "runtime_s": round(time.time() - started, 1)},
        "configs": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "raft_pysyncobj.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report)
    write_comparison(report)
    return 0


def _version():
    from pysyncobj.version import VERSION
    return VERSION


if __name__ == "__main__":
    sys.exit(main())
