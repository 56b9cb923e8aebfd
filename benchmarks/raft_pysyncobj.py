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
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MEMBERS = ("m1", "m2", "m3")

# Option names as in pysyncobj/config.py (0.3.17). SyncObjConf.validate() asserts
# raftMinTimeout > 3 * appendEntriesPeriod strictly, and 3 * 0.05 == 0.15000000000000002 in floating point,
# so the matched minimum is 0.151 s (1 ms above OmniMind's 150 ms) with the 50 ms heartbeat kept exact.
CONFIGS = {
    "default": {},
    "matched": {"raftMinTimeout": 0.151, "raftMaxTimeout": 0.3, "appendEntriesPeriod": 0.05},
}


# --------------------------------------------------------------------------------------------------------
# member process
# --------------------------------------------------------------------------------------------------------

def member_main(args) -> int:
    from pysyncobj import SyncObj, SyncObjConf, replicated

    out_lock = threading.Lock()

    def emit(kind, **fields):
        fields.update(ev=kind, t=time.time())
        line = json.dumps(fields)
        with out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def on_state(old, new):
        emit("state", old=old, new=new)

    class Counter(SyncObj):
        def __init__(self, self_addr, peers, conf):
            self.value = 0
            super().__init__(self_addr, peers, conf)

        @replicated
        def incr(self):
            self.value += 1
            return self.value

    conf_kwargs = json.loads(args.conf)
    conf = SyncObjConf(onStateChanged=on_state, **conf_kwargs)
    obj = Counter(args.self_addr, args.peers.split(","), conf)
    # Constructed, not yet connected (the tick thread first sleeps 0.1 s): what was reloaded from disk.
    emit("start", term=obj.raftCurrentTerm, voted_for=obj._SyncObj__votedForNodeId,
         log_len=obj._getRaftLogSize(), pid=os.getpid())

    def poll():
        last = None
        others = sorted(obj.otherNodes, key=lambda n: n.id)
        last_conn_check = 0.0
        conn = ()
        while True:
            now = time.monotonic()
            if now - last_conn_check > 0.01:
                conn = tuple(n.id for n in others if obj.isNodeConnected(n))
                last_conn_check = now
            leader = obj._getLeader()
            view = (leader.id if leader is not None else None, obj.raftCurrentTerm, obj._isLeader(), conn,
                    obj.isReady())
            if view != last:
                emit("view", leader=view[0], term=view[1], is_leader=view[2], connected=list(view[3]),
                     ready=view[4])
                last = view
            time.sleep(0.001)

    threading.Thread(target=poll, daemon=True).start()

    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "bench":
            n, warmup = int(cmd[1]), int(cmd[2])
            samples, errors = [], 0
            for i in range(warmup + n):
                t0 = time.perf_counter()
                try:
                    obj.incr(sync=True, timeout=10)
                except Exception:  # SyncObjException: timeout or fail reason
                    errors += 1
                    continue
                if i >= warmup:
                    samples.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            for _ in range(200):  # throughput with PySyncObj's own batching: async calls, wait for the last
                obj.incr()
            obj.incr(sync=True, timeout=30)
            tput = 201 / (time.perf_counter() - t0)
            emit("bench", samples_ms=samples, errors=errors, value=obj.value, async_commits_per_s=tput)
        elif cmd[0] == "quit":
            break
    obj.destroy()
    return 0


# --------------------------------------------------------------------------------------------------------
# parent
# --------------------------------------------------------------------------------------------------------

_T0 = time.monotonic()


def elapsed() -> str:
    return f"{time.monotonic() - _T0:6.1f}s"


class Member:
    def __init__(self, name, addr, peers, conf, events):
        self.name, self.addr, self.peers, self.conf, self.events = name, addr, peers, conf, events
        self.proc = None
        self.view = None  # latest "view" event
        self.start_event = None
        self.alive = False

    def start(self):
        self.view, self.start_event = None, None
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--member", "--self-addr", self.addr, "--peers", ",".join(self.peers),
             "--conf", json.dumps(self.conf)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            bufsize=1, start_new_session=True,
        )
        self.alive = True
        proc = self.proc

        def reader():
            for line in proc.stdout:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                ev["member"] = self.name
                ev["gen"] = id(proc)
                if proc is self.proc:
                    if ev["ev"] == "view":
                        self.view = ev
                    elif ev["ev"] == "start":
                        self.start_event = ev
                self.events.put(ev)

        threading.Thread(target=reader, daemon=True).start()

    def signal(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self):
        self.signal(signal.SIGKILL)
        self.proc.wait()
        self.alive = False

    def send(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()


class Cluster:
    def __init__(self, conf):
        ports = [free_port() for _ in MEMBERS]
        addrs = {m: f"127.0.0.1:{p}" for m, p in zip(MEMBERS, ports)}
        self.events: queue.Queue = queue.Queue()
        self.members = {m: Member(m, addrs[m], [addrs[o] for o in MEMBERS if o != m], conf, self.events)
                        for m in MEMBERS}
        self.by_addr = {addrs[m]: m for m in MEMBERS}

    def start(self):
        for m in self.members.values():
            m.start()

    def settled(self):
        """All three alive, connected to both peers, agreeing on one leader and term; returns the leader."""
        views = [m.view for m in self.members.values()]
        if not all(m.alive for m in self.members.values()) or any(v is None for v in views):
            return None
        if {(v["leader"], v["term"]) for v in views}.__len__() != 1 or views[0]["leader"] is None:
            return None
        if any(len(v["connected"]) != 2 or not v["ready"] for v in views):
            return None
        leader = self.members[self.by_addr[views[0]["leader"]]]
        return leader if leader.view["is_leader"] else None

    def wait(self, predicate, timeout):
        try:
            return wait_until(predicate, timeout=timeout, interval=0.005, message="condition")
        except AssertionError:  # the harness's timeout; the callers here catch TimeoutError
            raise TimeoutError("condition not met") from None

    def drain(self):
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def stop(self):
        for m in self.members.values():
            if m.proc is not None and m.proc.poll() is None:
                m.signal(signal.SIGKILL)
        for m in self.members.values():
            if m.proc is not None:
                try:
                    m.proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass


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
            old_voted = None
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


def percentile(samples, fraction):
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(samples):
    if not samples:
        return {"n": 0}
    return {"n": len(samples), "p50_ms": round(percentile(samples, 0.5), 3),
            "p99_ms": round(percentile(samples, 0.99), 3), "mean_ms": round(sum(samples) / len(samples), 3),
            "max_ms": round(max(samples), 3), "min_ms": round(min(samples), 3)}


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


def fmt(x, digits=0):
    return "n/a" if x is None or x != x else f"{x:.{digits}f}"


def write_markdown(report):
    s = report["setup"]
    lines = [
        "# PySyncObj on the same three-process loopback setup",
        "",
        f"PySyncObj {report['pysyncobj_version']}, Python {s['python']} on {s['platform']} ({s['cpus']} CPUs); "
        f"1-minute load average {s['load_average_1m_before']} before, {s['load_average_1m_after']} after; "
        f"run took {s['runtime_s']} s. Produced by `python benchmarks/raft_pysyncobj.py`.",
        "",
        "| config | election timeout | heartbeat | tick | kill → new leader p50 / p99 / max ms (n) "
        "| kill → other survivor follows p50 / p99 ms | commit p50 / p99 ms, file journal | "
        "commit p50 / p99 ms, no journal | commit p50 / p99 ms, file journal, `appendEntriesUseBatch=False` |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in report["configs"].items():
        o, e, f = r["options"], r["kill_to_new_leader_ms"], r["kill_to_other_survivor_follows_ms"]
        cf, cm = r["commit_latency_file_journal"], r["commit_latency_memory_journal"]
        cn = r["commit_latency_file_journal_no_batch"]
        lines.append(
            f"| {name} | {o['raftMinTimeout'] * 1000:.0f}–{o['raftMaxTimeout'] * 1000:.0f} ms "
            f"| {o['appendEntriesPeriod'] * 1000:.0f} ms | {o['autoTickPeriod'] * 1000:.0f} ms "
            f"| {fmt(e.get('p50_ms'))} / {fmt(e.get('p99_ms'))} / {fmt(e.get('max_ms'))} ({e['n']}"
            f"{', ' + str(r['failover_failures']) + ' failed' if r['failover_failures'] else ''}) "
            f"| {fmt(f.get('p50_ms'))} / {fmt(f.get('p99_ms'))} "
            f"| {fmt(cf.get('p50_ms'), 1)} / {fmt(cf.get('p99_ms'), 1)} (n={cf['n']}) "
            f"| {fmt(cm.get('p50_ms'), 1)} / {fmt(cm.get('p99_ms'), 1)} (n={cm['n']}) "
            f"| {fmt(cn.get('p50_ms'), 1)} / {fmt(cn.get('p99_ms'), 1)} (n={cn['n']}) |")
    lines += ["", "Async throughput (200 un-awaited increments then one sync call, PySyncObj's batching): " + "; ".join(
        f"{name}: {r['commit_latency_file_journal']['async_commits_per_s']} commits/s file journal, "
        f"{r['commit_latency_memory_journal']['async_commits_per_s']} no journal, "
        f"{r['commit_latency_file_journal_no_batch']['async_commits_per_s']} file journal without batching"
        for name, r in report["configs"].items()) + "."]
    lines += ["", "## Method", "",
              "- Three `SyncObj` processes (own process group each) on 127.0.0.1, PySyncObj's TCP transport. "
              "Failover runs with `journalFile` set for each member (so a restarted member keeps log, term and "
              "vote, as OmniMind's members do); every timing option is PySyncObj's default (`default`) or "
              "matched to OmniMind's 150–300 ms election timeout and 50 ms heartbeat (`matched`; "
              "`raftMinTimeout` is 0.151 s because `SyncObjConf.validate()` requires "
              "`raftMinTimeout > 3 * appendEntriesPeriod` strictly and 3 × 0.05 = 0.15000000000000002).",
              "- `connectionRetryTime` is left as listed in the options (PySyncObj's default 5 s unless "
              "`--connection-retry-time` was given): a restarted member is dialled by higher-addressed peers only "
              "on their next retry, which paces each trial (~5 s) and makes the run take ~7 min on 2 CPUs.",
              "- Kill → new leader: the parent stamps `time.time()` and SIGKILLs the leader's process group; the "
              "new leader's `onStateChanged(…, LEADER)` callback stamps `time.time()` inside that process. "
              "\"Other survivor follows\": the remaining member's 1 ms poll of `_getLeader()` first returns the "
              "new leader at a higher term. The killed member is then restarted and the next trial waits until "
              "all three are connected to each other and agree on the leader.",
              "- Commit latency: sequential `@replicated` counter increments with `sync=True` on the leader, "
              "after 10 warm-up calls: with the file journal on the failover cluster once its trials are over "
              f"({report['setup']['commits']} calls); with PySyncObj's default in-memory journal on a fresh "
              f"cluster ({report['setup']['memory_commits']} calls — the latency is tick-bound either way, so "
              "kept short for the runtime budget); and with the file journal and `appendEntriesUseBatch=False` "
              f"(documented as \"improve single request speed\") on a fresh cluster ({report['setup']['commits']} "
              "calls).",
              ""]
    lines += observations(report)
    (RESULTS / "raft_pysyncobj.md").write_text("\n".join(lines) + "\n")


def observations(report):
    lines = ["## Observed PySyncObj behaviours", ""]
    for name, r in report["configs"].items():
        rs = r["restarts"]
        kept = sum(1 for x in rs if x["term_reloaded"] >= x["term_before_kill"])
        lines.append(f"- Term after restart ({name}, `journalFile` set): {kept} of {len(rs)} restarted members "
                     "reloaded a term ≥ the term they had when killed "
                     f"(e.g. {rs[0] if rs else 'n/a'}).")
        known = [x for x in rs if x["new_leader_term"] is not None]
        bumped = [x for x in known if x["term_after_rejoin"] > x["new_leader_term"]]
        moved = [x for x in known if x["leader_after_rejoin"] != x["new_leader"]]
        if known:
            lines.append(
                f"- Rejoin of the restarted member ({name}): in {len(bumped)} of {len(known)} trials the term rose "
                f"again while it rejoined (by {sum(x['term_after_rejoin'] - x['new_leader_term'] for x in known)} "
                f"terms in total), and in {len(moved)} the leader changed; median rejoin "
                f"{percentile([x['rejoin_s'] for x in rs], 0.5):.1f} s (`connectionRetryTime` "
                f"{r['options']['connectionRetryTime']} s)." + (
                    " Source: of two members, only the higher address dials (`transport.py` `_shouldConnect`), so "
                    "the restarted member may wait for a peer's next retry, while `_onTick` lets it start an "
                    "election as soon as it is connected to anyone; a `request_vote` with a higher term makes the "
                    "receiver adopt that term and step down (`__onMessageReceived`), as there is no PreVote."
                    if bumped else ""))
        iso = r.get("isolated_leader")
        if iso:
            verb = "stepped down after" if iso["stepped_down"] else "was still leader after"
            lines.append(f"- Isolated leader ({name}; both followers SIGSTOPped): it {verb} "
                         f"{iso['leader_kept_leading_s']:.1f} s (`leaderFallbackTimeout` = "
                         f"{r['options']['leaderFallbackTimeout']} s, `config.py`). Issue 3 specifies OmniMind's "
                         "CheckQuorum to step down within one election timeout; that is checked in simulation, not "
                         "timed here.")
    lines += [
        "- From the installed source (pysyncobj 0.3.17): `SyncObj.__init__` reloads `currentTerm` and `votedFor` "
        "from the journal (`syncobj.py`, \"Restore raft persistent state\"), and `FileJournal.setCurrentTerm` "
        "stores them synchronously in `<journalFile>.meta` (`journal.py`). So issue #84 (term/vote not "
        "persisted) is fixed in this version **when `journalFile` is set**; without it (the default) the "
        "`MemoryJournal` keeps everything in memory and a restarted member comes back at term 0 with an empty "
        "log. The `.meta` write is write + `flush()` + rename with no `os.fsync`, and log entries are written "
        "into an `mmap` that is only flushed on `destroy()`: durable across a process kill (page cache), not "
        "across a power loss or kernel crash. `fullDumpFile` stores the serialized state machine at log "
        "compaction (snapshot), not term/vote.",
        "- A follower checks its election deadline once per tick in `_onTick` (`autoTickPeriod`, 50 ms in both "
        "configs), so kill → new leader times fall on ~50 ms steps.",
        "- No PreVote (no pre-vote message type in `syncobj.py`), and no CheckQuorum at election-timeout scale: "
        "a leader steps down only after `leaderFallbackTimeout` (default 30 s, `config.py`) without responses "
        "from a majority.",
        "- With the default `appendEntriesUseBatch=True`, a new command waits for the tick thread, which polls "
        "sockets for up to `autoTickPeriod` (50 ms) — no wake-up is sent (`_applyCommand` only notifies the "
        "pipe when batching is off) — and the commit is noticed on a later tick, so sequential sync calls "
        "take about two ticks (see the measured p50 above) whatever the network or the journal.",
    ]
    return lines


def write_comparison(report):
    ours_fail = json.loads((RESULTS / "raft_failover.json").read_text()) if (RESULTS / "raft_failover.json").exists() else None
    ours_commit = json.loads((RESULTS / "raft_commit.json").read_text()) if (RESULTS / "raft_commit.json").exists() else None
    d, m = report["configs"].get("default"), report["configs"].get("matched")

    def col(r, key, digits=0):
        if r is None:
            return "not run"
        x = r[key]
        if not x.get("n"):
            return "no samples"
        return f"{fmt(x['p50_ms'], digits)} / {fmt(x['p99_ms'], digits)} / {fmt(x['max_ms'], digits)} (n={x['n']})"

    lines = [
        "# Raft: OmniMind vs PySyncObj (three members on loopback, same machine)",
        "",
        f"Machine: {report['setup']['platform']}, {report['setup']['cpus']} CPUs. OmniMind figures are read from "
        "`raft_failover.json` and `raft_commit.json`; PySyncObj figures from `raft_pysyncobj.json` "
        f"(PySyncObj {report['pysyncobj_version']}). Cells are p50 / p99 / max in ms.",
        "",
        "| measure | OmniMind (150–300 ms election, 50 ms heartbeat) | PySyncObj default "
        f"({opts(d)}) | PySyncObj matched ({opts(m)}) |",
        "|---|---|---|---|",
    ]
    if ours_fail:
        e = ours_fail["kill_to_new_leader_ms"]
        ours_e = f"{e['p50']:.0f} / {e['p99']:.0f} / {e['max']:.0f} (n={e['n']})"
        dd = ours_fail.get("kill_to_first_dispatch_ms")
        ours_d = f"{dd['p50']:.0f} / {dd['p99']:.0f} / {dd['max']:.0f} (n={dd['n']})" if dd else "n/a"
    else:
        ours_e = ours_d = "raft_failover.json absent"
    lines.append(f"| SIGKILL leader → a survivor is leader (3 processes) | {ours_e} | "
                 f"{col(d, 'kill_to_new_leader_ms')} | {col(m, 'kill_to_new_leader_ms')} |")
    lines.append(f"| SIGKILL leader → other survivor follows the new leader | not measured | "
                 f"{col(d, 'kill_to_other_survivor_follows_ms')} | {col(m, 'kill_to_other_survivor_follows_ms')} |")
    lines.append(f"| SIGKILL leader → first scheduled dispatch by the new leader | {ours_d} | no scheduler "
                 "(n/a) | no scheduler (n/a) |")
    if ours_commit:
        cf = ours_commit.get("commit_latency_tcp_file_storage")
        cm = ours_commit.get("commit_latency_tcp_memory_storage")
        setup = ours_commit.get("setup", {})
        ours_cf = (f"{cf['p50_ms']:.1f} / {cf['p99_ms']:.1f} / {cf['max_ms']:.1f} (n={cf['n']})" if cf else "n/a")
        ours_cm = (f"{cm['p50_ms']:.1f} / {cm['p99_ms']:.1f} / {cm['max_ms']:.1f} (n={cm['n']})" if cm else "n/a")
        commit_note = (f"OmniMind commit latency: {setup.get('transport', 'see raft_commit.json')} — its three "
                       "members share one process and one event loop, whereas the PySyncObj members are three "
                       "processes.")
    else:
        ours_cf = ours_cm = "raft_commit.json absent"
        commit_note = "OmniMind commit latency: benchmarks/results/raft_commit.json was not present."
    lines.append(f"| commit latency, durable log (OmniMind FileStorage with fsync; PySyncObj `journalFile`, "
                 f"no fsync) | {ours_cf} | {col(d, 'commit_latency_file_journal', 1)} | "
                 f"{col(m, 'commit_latency_file_journal', 1)} |")
    lines.append(f"| commit latency, in-memory log | {ours_cm} | {col(d, 'commit_latency_memory_journal', 1)} | "
                 f"{col(m, 'commit_latency_memory_journal', 1)} |")
    lines.append(f"| commit latency, durable log, PySyncObj with `appendEntriesUseBatch=False` (non-default) | "
                 f"(as above) {ours_cf} | {col(d, 'commit_latency_file_journal_no_batch', 1)} | "
                 f"{col(m, 'commit_latency_file_journal_no_batch', 1)} |")
    iso = (m or {}).get("isolated_leader") or (d or {}).get("isolated_leader")
    iso_cell = ("n/a" if not iso else
                f"{'stepped down after' if iso['stepped_down'] else 'still leader after'} "
                f"{iso['leader_kept_leading_s']:.1f} s")
    lines.append(f"| leader cut off from both followers keeps leading | steps down by CheckQuorum (simulated: "
                 "`tests/raft/test_raft_core_scenarios.py::test_raft_isolated_leader_steps_down_only_with_check_quorum`"
                 f"; not timed here) | not run (same `leaderFallbackTimeout`, 30 s) | {iso_cell} |")
    lines.append("| term / vote durable across restart | yes: `hard_state.json` written, fsync'd, renamed; log "
                 "fsync'd (`omnimind/scaling/raft/storage/file.py`) | only with `journalFile` (default: in memory); "
                 "no fsync anywhere in pysyncobj | same |")
    lines += [
        "",
        "Notes:",
        "",
        "- Failover: both measure SIGKILL (parent's `time.time()`) → the moment the new leader's own process "
        "records that it became leader, all on one machine clock. OmniMind's members are `celery worker` "
        "processes with the Raft bootstep, PySyncObj's are plain Python processes holding a `SyncObj`.",
        f"- {commit_note} PySyncObj's commit latency is a `@replicated` method called with `sync=True` on the "
        "leader; with the default `appendEntriesUseBatch=True` it is set by the 50 ms `autoTickPeriod` "
        "(see raft_pysyncobj.md); with the non-default `appendEntriesUseBatch=False` the tick wait goes away. "
        "OmniMind's FileStorage fsyncs log appends; PySyncObj's file journal is an mmap that is never fsync'd "
        "or msync'd while running, so its \"durable\" row is not like-for-like with OmniMind's.",
        "- Percentiles: PySyncObj's are nearest-rank (with 20 trials p99 is the maximum); "
        "`raft_failover.py` uses numpy's interpolating `np.percentile`, so OmniMind's failover p99 lies between its "
        "two largest samples. Compare maxima for the tail.",
        "- PySyncObj's `raftMinTimeout` in the matched run is 0.151 s, not 0.150 s: `SyncObjConf.validate()` "
        "needs `raftMinTimeout > 3 * appendEntriesPeriod` and 3 × 0.05 evaluates to 0.15000000000000002.",
        "",
    ]
    lines += observations(report)
    (RESULTS / "raft_comparison.md").write_text("\n".join(lines) + "\n")


def opts(r):
    if r is None:
        return "not run"
    o = r["options"]
    return (f"{o['raftMinTimeout'] * 1000:.0f}–{o['raftMaxTimeout'] * 1000:.0f} ms election, "
            f"{o['appendEntriesPeriod'] * 1000:.0f} ms heartbeat, {o['autoTickPeriod'] * 1000:.0f} ms tick")


if __name__ == "__main__":
    sys.exit(main())
