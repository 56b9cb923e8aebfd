"""Raft benchmark: time to add a member (learner -> voter) to a group whose log holds 10k entries.

Per trial: three ``RaftNode`` members over authenticated TCP on loopback with ``FileStorage`` (fsync on every
append), one process; ``--entries`` (default 10 000) key-value entries are committed (16 concurrent
proposers, 1 000 distinct keys). A fourth member is started empty (``join=True``, it knows the others'
addresses); then the clock starts and ``add_member`` runs on the leader: the learner's configuration entry is
committed, the learner catches up, the promotion is committed. The clock stops when ``add_member`` returns.
Two variants: the default snapshot threshold (1 024 applied entries, so the learner gets a snapshot and the
tail) and compaction off (the learner replays all 10k entries through appends of 64).

Writes ``benchmarks/results/raft_membership.json`` and ``.md``. Run: ``python benchmarks/raft_membership.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omnimind.scaling.raft import FileStorage, RaftNode, TcpTransport, add_member  # noqa: E402
from harness import RESULTS, free_port, summary_ms, write_results  # noqa: E402

SECRET = "benchmark-secret"
TARGET_S = 2.0


async def one_trial(root: Path, entries: int, snapshot_threshold: int) -> dict:
    ids = ["n1", "n2", "n3", "n4"]
    peers = {node_id: ("127.0.0.1", free_port()) for node_id in ids}
    first = {node_id: peers[node_id] for node_id in ids[:3]}

    def member(node_id: str, known: dict, join: bool = False) -> RaftNode:
        return RaftNode(node_id, list(known), transport=TcpTransport(node_id, known, SECRET), join=join,
                        storage=FileStorage(root / node_id), snapshot_threshold=snapshot_threshold)

    nodes = [member(node_id, first) for node_id in first]
    newcomer = member("n4", peers, join=True)
    try:
        for node in nodes:
            await node.start()
        leader = await elected_leader(nodes)

        async def proposer(worker: int, count: int) -> None:
            for i in range(count):
                await leader.propose({"op": "set", "key": f"k{(worker * count + i) % 1000}", "value": i})

        filled = time.perf_counter()
        await asyncio.gather(*(proposer(worker, entries // 16) for worker in range(16)))
        fill_s = time.perf_counter() - filled
        await newcomer.start()
        started = time.perf_counter()
        config = await add_member(leader, "n4", "127.0.0.1:%d" % peers["n4"][1], timeout=60)
        elapsed = time.perf_counter() - started
        assert "n4" in config.voters and newcomer.core.is_voter
        commit = leader.commit_index
        await newcomer.wait_for(lambda: newcomer.last_applied >= commit, timeout=60)
        applied = time.perf_counter() - started
        assert newcomer.state_machine.data == leader.state_machine.data
        return {"add_s": elapsed, "applied_s": applied, "log_last_index": leader.core.log.last_index, "fill_s": fill_s,
                "learner_got_snapshot": newcomer.core.log.snapshot.index > 0,
                "leader_snapshot_index": leader.core.log.snapshot.index}
    finally:
        for node in nodes + [newcomer]:
            await node.stop()


async def elected_leader(nodes: list[RaftNode], timeout: float = 10.0) -> RaftNode:
    ids = {node.node_id for node in nodes}

    def agreed() -> bool:
        leaders = {node.leader_id for node in nodes}
        return len(leaders) == 1 and leaders <= ids

    await asyncio.gather(*(node.wait_for(agreed, timeout) for node in nodes))
    return next(node for node in nodes if node.is_leader)


async def variant(entries: int, snapshot_threshold: int, trials: int) -> dict:
    runs = []
    for _ in range(trials):
        with tempfile.TemporaryDirectory(prefix="raft-membership-bench-") as root:
            runs.append(await one_trial(Path(root), entries, snapshot_threshold))
    return {**summary_ms([run["add_s"] for run in runs]), "snapshot_threshold": snapshot_threshold,
            "log_last_index": runs[0]["log_last_index"],
            "learner_applied_everything": summary_ms([run["applied_s"] for run in runs]),
            "learner_got_snapshot": all(run["learner_got_snapshot"] for run in runs),
            "fill_s_mean": round(sum(run["fill_s"] for run in runs) / len(runs), 2)}


async def main(arguments: argparse.Namespace) -> dict:
    load_before = os.getloadavg()[0]  # the machine may be shared; a busy one inflates every tail
    with_snapshot = await variant(arguments.entries, 1024, arguments.trials)
    without_snapshot = await variant(arguments.entries, arguments.entries * 10, arguments.trials)
    return {
        "benchmark": "raft_membership",
        "setup": {"members_before": 3, "entries": arguments.entries, "trials": arguments.trials,
                  "transport": "TCP loopback, HMAC-SHA256 frames, one process", "storage": "FileStorage (fsync)",
                  "heartbeat_ms": 50, "tick_ms": 10, "max_entries_per_message": 64,
                  "python": platform.python_version(), "platform": platform.platform(),
                  "cpus": os.cpu_count(), "load_average_1m_before": round(load_before, 2),
                  "load_average_1m_after": round(os.getloadavg()[0], 2)},
        "target_s": TARGET_S,
        "add_member_snapshot_and_tail": with_snapshot,
        "add_member_full_log_replay": without_snapshot,
    }


def markdown(results: dict) -> str:
    def row(name: str, data: dict) -> str:
        return (f"| {name} | {data['n']} | {data['log_last_index']} | {data['p50_ms']} | {data['p99_ms']} | "
                f"{data['max_ms']} | {'yes' if data['max_ms'] <= 1000 * TARGET_S else 'no'} |")

    setup = results["setup"]
    return "\n".join([
        "# Raft: time to add a member (learner -> voter)",
        "",
        f"Three members plus the newcomer in one Python {setup['python']} process on {setup['platform']} "
        f"({setup['cpus']} CPUs), TCP on loopback, FileStorage (fsync); heartbeat {setup['heartbeat_ms']} ms, "
        f"tick {setup['tick_ms']} ms; {setup['entries']} entries committed before each add; "
        f"{setup['trials']} trials per variant; 1-minute load average {setup['load_average_1m_before']} "
        f"before, {setup['load_average_1m_after']} after. Produced by `python benchmarks/raft_membership.py`.",
        "",
        f"| variant | trials | leader's last index | p50 (ms) | p99 (ms) | max (ms) | max <= {TARGET_S} s |",
        "|---|---|---|---|---|---|---|",
        row("snapshot (every 1024 applied) + tail", results["add_member_snapshot_and_tail"]),
        row("no compaction: replay all entries", results["add_member_full_log_replay"]),
        "",
        "The new voter had applied everything the leader had committed at the promotion after p50 "
        f"{results['add_member_snapshot_and_tail']['learner_applied_everything']['p50_ms']} ms (snapshot) and "
        f"{results['add_member_full_log_replay']['learner_applied_everything']['p50_ms']} ms (replay), "
        "and its state machine equalled the leader's.",
        "",
        "Timed from `add_member` on the leader to its return: the learner's configuration entry committed, the "
        "learner caught up to within 64 entries of the leader's last index (the leader polls its progress "
        "every tick, 10 ms), the promotion committed. The newcomer's start (TCP listen, empty storage) is "
        "not included. All members share one event loop and one disk, so their fsyncs run one after another.",
        "",
    ])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    arguments = parser.parse_args()
    results = asyncio.run(main(arguments))
    write_results("raft_membership", results, markdown(results).splitlines(), arguments.output)
    print(markdown(results))
