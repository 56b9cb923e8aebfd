"""What a Redis Sentinel failover loses, and how long OmniMind's writes stop.

A real master, replica and sentinel (tests/redis/conftest.py's SentinelCluster) on
loopback. Per trial, four writer threads go through one ``sentinel://`` client as fast as
they can, each with OmniMind's own code: experience appends (``ExperienceStream.record``,
one row per call), registry heartbeats (``RedisRegistryStore.heartbeat``, the sequence
number in ``latency_ms``), and scheduled-dispatch acceptances (``DispatchGuard.accept``,
slot k at fence ``1:k``) without WAIT and with WAIT (OMNIMIND_REDIS_MIN_REPLICAS=1).
The master is SIGKILLed; each writer stops at its first error. Then, on the promoted
replica: which *acknowledged* writes are missing, and the time from the kill to the
sentinel's promotion and to the first write that succeeds again.

Scenarios: "loopback" (replica in sync, down-after-milliseconds 1000), "partitioned"
(the replica's link held 0.5 s before the kill: everything written meanwhile is at
risk), "defaults" (down-after-milliseconds 30000, Redis' default).

    python benchmarks/sentinel_failover.py [--trials 10]

Writes benchmarks/results/sentinel_failover.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import redis
from harness import write_results

from omnimind import keys
from omnimind.experience import ExperienceStream
from omnimind.fence import sign_dispatch
from omnimind.redis_client import redis_client
from omnimind.replication import ReplicaQuorum
from omnimind.scaling.dispatch import DispatchGuard
from omnimind.scaling.node_info import NodeInfo
from omnimind.scaling.registry_store.redis import RedisRegistryStore
from tests.redis.conftest import MASTER_NAME, SentinelCluster

SECRET = "bench-secret-0123456789abcdef"
NODE = "bench@sentinel"


class Writer(threading.Thread):
    """Calls ``write(seq)`` for seq = 1, 2, ... until the first error; ``acked`` are the
    sequence numbers whose call returned (the master acknowledged them), ``refused`` counts
    calls that returned False (an acceptance too few replicas confirmed within the WAIT)."""

    def __init__(self, name: str, write) -> None:
        super().__init__(name=name, daemon=True)
        self.write, self.acked, self.latencies, self.refused = write, [], [], 0

    def run(self) -> None:
        seq = 0
        while True:
            seq += 1
            started = time.perf_counter()
            try:
                if self.write(seq) is False:
                    self.refused += 1  # not acknowledged: an unreplicated acceptance
                    continue
            except redis.RedisError:
                return
            self.latencies.append(time.perf_counter() - started)
            self.acked.append(seq)


def writers(client: redis.Redis) -> dict[str, Writer]:
    experience = ExperienceStream(client)
    registry = RedisRegistryStore(client)
    registry.register(NodeInfo(node_id=NODE, ip_address="127.0.0.1", port=0, capabilities=["inference"]))
    row, target = np.zeros((1, 4), dtype=np.float32), np.zeros((1, 1), dtype=np.float32)
    guards = {"fence_async": DispatchGuard(client, SECRET, replicas=ReplicaQuorum(0)),
              "fence_wait": DispatchGuard(client, SECRET, replicas=ReplicaQuorum(1, 1.0))}

    def accept(entry):
        def write(seq):
            verdict = guards[entry].accept([1, seq], [entry, seq], f"{entry}-{seq}", sign_dispatch(SECRET, entry, seq, (1, seq)))
            return verdict.outcome == "accepted"
        return write

    return {
        "experience": Writer("experience", lambda seq: experience.record(
            f"bench-{seq}", row, target, served_version=1, node_id=NODE, outcome={"seq": seq})),
        "registry": Writer("registry", lambda seq: registry.heartbeat(NODE, 0.1, float(seq))),
        "fence_async": Writer("fence_async", accept("fence_async")),
        "fence_wait": Writer("fence_wait", accept("fence_wait")),
    }


def lost(client: redis.Redis, name: str, acked: list[int]) -> int:
    """Acknowledged writes of ``name`` that the promoted master lacks."""
    if not acked:
        return 0
    if name == "experience":
        pipe = client.pipeline(transaction=False)
        for seq in acked:
            pipe.exists(keys.learn_done(f"bench-{seq}"))
        return sum(1 for present in pipe.execute() if not present)
    if name == "registry":  # heartbeats overwrite each other: how many newest ones vanished
        return max(0, acked[-1] - int(float(client.hget(keys.node(NODE), "latency_ms") or 0)))
    pipe = client.pipeline(transaction=False)  # a dispatch: its slot key (and the fence it advanced)
    for seq in acked:
        pipe.exists(keys.schedule_slot(name, seq))
    return sum(1 for present in pipe.execute() if not present)


def trial(root: Path, down_after_ms: int, hold_s: float) -> dict:
    cluster = SentinelCluster(root, down_after_ms=down_after_ms, through_link=hold_s > 0).start()
    try:
        client = redis_client(cluster.url, MASTER_NAME)
        threads = writers(client)
        for thread in threads.values():
            thread.start()
        time.sleep(1.0 - hold_s)  # the writers' run before the kill (a benchmark's pace, not a wait on a condition)
        if hold_s:
            cluster.link.hold()
            time.sleep(hold_s)
        killed = time.monotonic()
        cluster.kill(cluster.first_master)
        for thread in threads.values():
            thread.join(30)
        if hold_s:
            cluster.link.cut()
        promoted = cluster.wait_failover(cluster.first_master, timeout=down_after_ms / 1000 + 60)
        promoted_s = time.monotonic() - killed
        probe = RedisRegistryStore(client)
        while True:  # kill -> the first write that succeeds again through the sentinel client
            try:
                probe.heartbeat(NODE + "-probe", 0.0, 0.0)
                break
            except redis.RedisError:
                time.sleep(0.005)
        writes_again_s = time.monotonic() - killed
        result = {"promoted_port": promoted, "fence_index_after": {
                      name: int(client.hget(keys.schedule_fence(name), "index") or 0) for name in ("fence_async", "fence_wait")}, "kill_to_promotion_s": round(promoted_s, 3),
                  "kill_to_write_s": round(writes_again_s, 3)}
        for name, thread in threads.items():
            result[name] = {"acked": len(thread.acked), "refused": thread.refused, "lost": lost(client, name, thread.acked),
                            "p50_ms": round(statistics.median(thread.latencies) * 1000, 3) if thread.latencies else None}
        return result
    finally:
        cluster.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--default-trials", type=int, default=2, help="trials at down-after-milliseconds 30000")
    args = parser.parse_args()
    scenarios = {"loopback": (1000, 0.0, args.trials), "partitioned": (1000, 0.5, max(3, args.trials // 3)),
                 "defaults": (30000, 0.0, args.default_trials)}
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    report = {"machine": f"{platform.platform()}, {os.cpu_count()} CPUs", "redis": version.removeprefix("v="),
              "scenarios": {}}
    for scenario, (down_after, hold, trials) in scenarios.items():
        runs = []
        for i in range(trials):
            with tempfile.TemporaryDirectory(prefix="omnimind-sentinel-bench-") as root:
                runs.append(trial(Path(root), down_after, hold))
            print(scenario, i, runs[-1], flush=True)
        report["scenarios"][scenario] = {"down_after_ms": down_after, "hold_s": hold, "trials": runs}
    write_results("sentinel_failover", report, markdown(report))
    return 0


def markdown(report: dict) -> list[str]:
    lines = ["# Redis Sentinel failover: what is lost, and for how long writes stop", "",
             f"Machine: {report['machine']}; redis-server {report['redis']}; one master, one replica, one "
             "sentinel (quorum 1) on loopback. Four writer threads through one `sentinel://` client until the "
             "master is SIGKILLed. \"lost\": writes the master acknowledged that the promoted replica lacks "
             "(sum over trials / acknowledged). `benchmarks/sentinel_failover.py`.", "",
             "| scenario | trials | kill → promotion p50 (max) s | kill → writes again p50 (max) s "
             "| experience lost | registry heartbeats lost | fence (async) lost | fence (WAIT) lost |",
             "|---|---|---|---|---|---|---|---|"]
    for scenario, data in report["scenarios"].items():
        runs = data["trials"]
        if not runs:
            continue
        def span(key):
            values = [r[key] for r in runs]
            return f"{statistics.median(values):.2f} ({max(values):.2f})"
        def loss(name):
            return f"{sum(r[name]['lost'] for r in runs)} / {sum(r[name]['acked'] for r in runs)}"
        lines.append(f"| {scenario} (down-after {data['down_after_ms']} ms"
                     f"{', replica cut off %.1f s before' % data['hold_s'] if data['hold_s'] else ''}) | {len(runs)} "
                     f"| {span('kill_to_promotion_s')} | {span('kill_to_write_s')} | {loss('experience')} "
                     f"| {loss('registry')} | {loss('fence_async')} | {loss('fence_wait')} |")
    loop = report["scenarios"]["loopback"]["trials"]
    p50 = {name: statistics.median(r[name]["p50_ms"] for r in loop if r[name]["p50_ms"] is not None)
           for name in ("fence_async", "fence_wait")}
    lines += ["", f"A dispatch acceptance takes {p50['fence_async']:.2f} ms (p50) without WAIT and "
              f"{p50['fence_wait']:.2f} ms with WAIT 1 (loopback, loaded 2-CPU box).", "",
              "\"partitioned\": the replica's link is held (tests/redis/conftest.py's ReplicationLink, a relay in "
              "the benchmark's process, which also slows WAIT there) for the last 0.5 s before the kill, so "
              "whatever the master acknowledged in that time is lost. The WAIT writer blocks in WAIT from then "
              "on (timeout 1 s) and acknowledges nothing more; everything it had acknowledged was on the replica."]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
