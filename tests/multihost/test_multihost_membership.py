"""Replacing a dead Raft member across namespace hosts (issue 13 item 2).

Three members on their own hosts; one dies (SIGKILL, its Raft link cut). A new host joins with
``OMNIMIND_RAFT_JOIN=1``, and ``omnimind raft add`` / ``remove`` (run from the test's namespace, through Redis)
swap it in for the dead one without restarting the survivors. The newcomer then counts: with the leader cut
off, it and the remaining survivor elect a leader. Throughout: one leader per term, every slot accepted once.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.helpers import wait_until
from tests.multihost.farm import MEMBERS, RAFT_PORT, SECRET
from tests.multihost.test_multihost_partitions import Watch


def raft_cli(farm, *args):
    env = {**os.environ, "OMNIMIND_REDIS_URL": farm.url, "OMNIMIND_BROKER_URL": farm.url,
           "OMNIMIND_RAFT_SECRET": SECRET}
    return subprocess.run([sys.executable, "-m", "omnimind.cli", "raft", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_dead_member_is_replaced_by_a_new_host(farm):
    farm.start_redis()
    for member in MEMBERS:
        farm.start_worker(member)
    farm.wait_registered(MEMBERS)
    watch = Watch(farm)
    watch.start()
    try:
        first = wait_until(farm.leader, timeout=30, message="a leader")
        wait_until(lambda: len(farm.accepted()) >= 2, timeout=30, message="2 accepted slots")
        dead = next(m for m in MEMBERS if m != first["member_id"])
        farm.cut(dead)
        os.killpg(farm.procs[dead].proc.pid, signal.SIGKILL)
        farm.procs[dead].proc.wait(10)
        survivors = [m for m in MEMBERS if m != dead]
        pids = {m: farm.procs[m].proc.pid for m in survivors}

        address = farm.add_member_host("n4")
        contacts = ",".join(f"{m}={farm.net.hosts[m].address('raft')}:{RAFT_PORT}" for m in survivors)
        farm.start_worker("n4", peers=f"{contacts},n4={address}:{RAFT_PORT}", join=True)
        farm.wait_registered(["n4"])
        added = raft_cli(farm, "add", f"n4={address}:{RAFT_PORT}")
        assert added.returncode == 0, added.stderr
        removed = raft_cli(farm, "remove", dead)
        assert removed.returncode == 0, removed.stderr
        group = sorted([*survivors, "n4"])
        wait_until(lambda: all(farm.statuses().get(m, {}).get("voters") == group for m in group), timeout=30,
                   message=f"every member to follow {group}")
        assert {m: farm.procs[m].proc.pid for m in survivors} == pids and all(farm.procs[m].alive() for m in group)
        before = len(farm.accepted())
        wait_until(lambda: len(farm.accepted()) >= before + 2, timeout=30, message="dispatches with n4 voting")

        # The leader loses its Raft links: the other survivor and n4 (a quorum of the three) elect a leader.
        old = wait_until(farm.leader, timeout=30, message="the leader")
        farm.cut(old["member_id"])
        others = [m for m in group if m != old["member_id"]]
        wait_until(lambda: farm.leader(among=others, above_term=old["term"]), timeout=30,
                   message="a leader of the other two")
        before = len(farm.accepted())
        wait_until(lambda: len(farm.accepted()) >= before + 2, timeout=30, message="dispatches under it")
        farm.heal(old["member_id"])
    finally:
        watch.stop.set()
        watch.join(10)
    assert not watch.errors, watch.errors[:3]
    assert all(len(members) == 1 for members in watch.leaders.values()), watch.leaders
    slots = sorted(a["slot"] for a in farm.accepted())
    assert slots == list(range(1, len(slots) + 1)), f"slots repeated or missed: {slots}"
