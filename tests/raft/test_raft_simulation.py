"""Randomized fault schedules over a deterministic, tick-driven cluster (no asyncio, no real time).

Each seed builds its own schedule of isolations, cuts, drops, delays, recoveries, crashes and restarts with
proposals sprinkled in; the simulation checks the safety invariants continuously (see
``omnimind.scaling.raft.simulation``). After the faults heal, a leader must emerge and every proposal must end
up committed (re-proposed, as a client would, if a failed leader lost it) and applied identically everywhere.
A failure names its seed; replay it with ``run_schedule(seed)``.
"""

import random

import pytest

from omnimind.scaling.raft import SimulatedCluster

SCHEDULES = 1000
CHUNK = 100
CHAOS_TICKS = 300


def run_schedule(seed: int) -> None:
    rng = random.Random(seed)
    node_ids = [f"n{i}" for i in range(5 if seed % 4 == 0 else 3)]
    # Vary the configuration too, so flow control, snapshots and the non-default protocol options get exercised.
    cluster = SimulatedCluster(node_ids, seed=seed, snapshot_every=rng.choice([None, 4, 16]),
                               pre_vote=seed % 5 != 1, check_quorum=seed % 7 != 2,
                               max_entries_per_message=rng.choice([1, 4, 64]),
                               max_inflight_messages=rng.choice([1, 4, 64]))
    network = cluster.network
    crashed: set[str] = set()
    proposals: list[str] = []

    def victim() -> str:
        # Faults that hit the leader are the interesting ones; aim half of them there.
        leader = cluster.leader()
        return leader if leader is not None and rng.random() < 0.5 else rng.choice(node_ids)

    for tick in range(CHAOS_TICKS):
        roll = rng.random()
        if roll < 0.02:
            network.isolate(victim())
        elif roll < 0.04:
            network.cut(victim(), rng.choice(node_ids))
        elif roll < 0.05:
            network.drop(rng.choice([0.05, 0.2, 0.5]))
        elif roll < 0.06:
            network.delay(0.0, rng.choice([0.02, 0.06, 0.15]))
        elif roll < 0.075:
            network.recover()
        elif roll < 0.09 and len(crashed) < len(node_ids) // 2:
            crashed_node = victim()
            cluster.crash(crashed_node)
            crashed.add(crashed_node)
        elif roll < 0.10 and crashed:
            revived = rng.choice(sorted(crashed))
            cluster.restart(revived)
            crashed.discard(revived)
        elif roll < 0.11:
            cluster.transfer_leadership(rng.choice(node_ids))
        if rng.random() < 0.25:
            command = f"s{seed}-p{len(proposals)}"
            if cluster.propose(command) is not None:
                proposals.append(command)
        cluster.tick()
        if tick % 10 == 0:
            cluster.check_log_matching()

    network.recover()
    for node_id in sorted(crashed):
        cluster.restart(node_id)
    assert cluster.run_until(lambda: cluster.leader() is not None, max_ticks=400), f"seed {seed}: no leader"

    # A client retries whatever a failed leader lost; the healed cluster must commit all of it. A proposal is
    # refused while leadership moves (an election, or a transfer begun during the chaos): wait and retry.
    for _ in range(10):
        missing = [command for command in proposals if command not in set(cluster.committed_commands())]
        entries = [cluster.propose(command) for command in missing + [f"s{seed}-final"]]
        if all(entries) and cluster.run_until(
                lambda entries=entries: all(map(cluster.is_applied_everywhere, entries)), max_ticks=400):
            break
        for _ in range(30):
            cluster.tick()
    committed = cluster.committed_commands()
    assert set(proposals) <= set(committed), f"seed {seed}: proposals never committed"
    applied_logs = {tuple(cluster.applied[node_id]) for node_id in node_ids}
    assert len(applied_logs) == 1, f"seed {seed}: members applied different histories"
    cluster.check_log_matching()


@pytest.mark.parametrize("first_seed", range(0, SCHEDULES, CHUNK))
def test_raft_random_fault_schedules(first_seed):
    for seed in range(first_seed, first_seed + CHUNK):
        try:
            run_schedule(seed)
        except AssertionError as failure:  # InvariantViolation is an AssertionError too
            raise AssertionError(f"fault schedule seed {seed} failed: {failure}") from failure
