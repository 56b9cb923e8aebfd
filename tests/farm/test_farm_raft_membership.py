"""Changing the Raft coordinator group of real workers with ``omnimind raft add|remove``: a dead member is
replaced without restarting the others, and the newcomer then counts in elections."""
import os
import subprocess
import sys

import pytest

from omnimind import keys
from omnimind.status import raft_members
from tests.helpers import free_port, raft_leader, wait_until

SECRET = "test-secret-0123456789abcdef"
MEMBERS = ("n1", "n2", "n3", "n4")


@pytest.fixture
def raft_group(start_worker, tmp_path):
    ports = {m: free_port() for m in MEMBERS}

    def start(member, among, **extra):
        peers = ",".join(f"{m}=127.0.0.1:{ports[m]}" for m in among)
        return start_worker(
            f"raft-{member}", queues="training", pool="solo", concurrency=1,
            OMNIMIND_RAFT_ID=member, OMNIMIND_RAFT_PEERS=peers, OMNIMIND_RAFT_SECRET=SECRET,
            OMNIMIND_DATA_DIR=tmp_path / member, OMNIMIND_RETRAIN_INTERVAL="1", **extra,
        )

    start.ports = ports
    return start


def accepted_slots(redis_client):
    return [int(fields[b"slot"]) for _, fields in redis_client.xrange(keys.schedule_accepted("retrain"))]


def raft_cli(*args, timeout=120):
    env = {**os.environ, "OMNIMIND_RAFT_SECRET": SECRET}
    return subprocess.run([sys.executable, "-m", "omnimind.cli", "raft", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_dead_member_is_replaced_without_restarting_the_others(raft_group, redis_client):
    workers = {m: raft_group(m, ("n1", "n2", "n3")) for m in ("n1", "n2", "n3")}
    first_leader = wait_until(lambda: raft_leader(redis_client, workers), timeout=30, message="a leader")
    wait_until(lambda: len(accepted_slots(redis_client)) >= 2, timeout=30, message="2 dispatches")
    dead = next(m for m in sorted(workers) if m != first_leader)
    workers.pop(dead).kill()
    pids = {m: w.pid for m, w in workers.items()}

    # The newcomer knows the survivors' addresses; the group learns its own from the `add`.
    workers["n4"] = raft_group("n4", (*workers, "n4"), OMNIMIND_RAFT_JOIN="1")
    added = raft_cli("add", f"n4=127.0.0.1:{raft_group.ports['n4']}")
    assert added.returncode == 0, added.stderr
    assert "voters" in added.stdout and "n4" in added.stdout
    removed = raft_cli("remove", dead)
    assert removed.returncode == 0, removed.stderr
    wanted = sorted(workers)
    wait_until(lambda: all(raft_members(redis_client).get(m, {}).get("voters") == wanted for m in workers),
               timeout=30, message=f"every member to follow the configuration {wanted}")
    assert {m: w.pid for m, w in workers.items() if m in pids} == pids  # nobody was restarted
    assert all(w.proc.poll() is None for w in workers.values())
    shown = raft_cli("status")
    assert shown.returncode == 0 and f"voters   {' '.join(wanted)}" in shown.stdout, shown.stdout

    # n4 now counts: with the leader gone too, the two remaining voters (n4 one of them) elect a leader and
    # the schedule goes on with every slot exactly once.
    before = len(accepted_slots(redis_client))
    wait_until(lambda: len(accepted_slots(redis_client)) >= before + 2, timeout=30, message="dispatches go on")
    current = wait_until(lambda: raft_leader(redis_client, workers), timeout=30, message="the leader")
    workers.pop(current).kill()
    wait_until(lambda: raft_leader(redis_client, workers), timeout=30, message="a leader of the two left")
    before = len(accepted_slots(redis_client))
    wait_until(lambda: len(accepted_slots(redis_client)) >= before + 2, timeout=30, message="dispatches resume")
    slots = accepted_slots(redis_client)
    assert sorted(slots) == list(range(1, len(slots) + 1)), f"slots repeated or missed: {slots}"


def test_removing_the_leader_hands_over_and_a_bad_secret_is_refused(raft_group, redis_client):
    workers = {m: raft_group(m, ("n1", "n2", "n3")) for m in ("n1", "n2", "n3")}
    first_leader = wait_until(lambda: raft_leader(redis_client, workers), timeout=30, message="a leader")
    env = {**os.environ, "OMNIMIND_RAFT_SECRET": "not-the-group-secret-at-all"}
    forged = subprocess.run([sys.executable, "-m", "omnimind.cli", "raft", "remove", "n1", "--timeout", "3"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert forged.returncode == 1 and "no outcome" in forged.stderr
    assert all(s.get("voters") == ["n1", "n2", "n3"] for s in raft_members(redis_client).values())

    removed = raft_cli("remove", first_leader)
    assert removed.returncode == 0, removed.stderr
    rest = sorted(set(workers) - {first_leader})
    wait_until(lambda: all(raft_members(redis_client).get(m, {}).get("voters") == rest for m in rest),
               timeout=30, message=f"the survivors to follow {rest}")
    new_leader = wait_until(lambda: raft_leader(redis_client, rest), timeout=30, message="a new leader")
    assert new_leader != first_leader
    before = len(accepted_slots(redis_client))
    wait_until(lambda: len(accepted_slots(redis_client)) >= before + 2, timeout=30, message="dispatches go on")
    assert workers[first_leader].proc.poll() is None  # removed, not stopped: the operator stops it
