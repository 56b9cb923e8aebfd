"""The Raft coordinator in three real worker processes: failover, fencing, restart."""
import json
import shutil
import signal

import pytest

from omnimind import keys
from omnimind.status import raft_members
from tests.helpers import free_port, raft_leader, wait_until

SECRET = "test-secret-0123456789abcdef"


@pytest.fixture
def raft_farm(start_worker, tmp_path):
    ports = {m: free_port() for m in ("n1", "n2", "n3")}
    peers = ",".join(f"{m}=127.0.0.1:{p}" for m, p in ports.items())

    def start(member, **extra):
        return start_worker(
            f"raft-{member}", queues="training", pool="solo", concurrency=1,
            OMNIMIND_RAFT_ID=member, OMNIMIND_RAFT_PEERS=peers, OMNIMIND_RAFT_SECRET=SECRET,
            OMNIMIND_DATA_DIR=tmp_path / member, OMNIMIND_RETRAIN_INTERVAL="1", **extra,
        )

    start.peers = peers
    return start


def accepted_slots(redis_client):
    return [int(fields[b"slot"]) for _, fields in redis_client.xrange(keys.schedule_accepted("retrain"))]


def assert_consecutive(slots):
    # In any order: a slot a stalled consumer reserved runs after later ones.
    assert sorted(slots) == list(range(1, len(slots) + 1)), f"slots repeated or missed: {slots}"


def test_leader_sigkill_failover_keeps_every_slot_once(raft_farm, redis_client):
    workers = {m: raft_farm(m) for m in ("n1", "n2", "n3")}
    first = wait_until(lambda: raft_leader(redis_client, workers), timeout=30, message="a leader")
    wait_until(lambda: len(accepted_slots(redis_client)) >= 3, timeout=30, message="3 dispatches")
    workers.pop(first).kill()
    second = wait_until(lambda: raft_leader(redis_client, workers), timeout=30, message="a new leader")
    assert second != first
    before = len(accepted_slots(redis_client))
    wait_until(lambda: len(accepted_slots(redis_client)) >= before + 3, timeout=30, message="dispatches resume")
    assert_consecutive(accepted_slots(redis_client))
    from omnimind.config import settings
    from omnimind.status import read_status, render

    # Leadership may move again between the two survivors on a loaded machine: the
    # screen must name whoever leads now.
    wait_until(lambda: (lambda now: now and f"RAFT  leader {now}" in render(read_status(settings)))(raft_leader(redis_client, workers)),
               timeout=15, message="the status screen to name the leader")


def test_paused_leader_dispatch_is_fenced_off(raft_farm, redis_client, tmp_path):
    # The failpoint makes the leader that reaches slot 3 SIGSTOP itself between
    # committing the slot and sending it, the window the fence exists for. Its
    # marker's folder appears only once all three members answer pings: until then
    # the leader cannot write the marker, fails that send and retries it (slot 3 is
    # committed, not sent), so a member still starting up is never the one stopped.
    marker = tmp_path / "gate" / "paused.json"
    workers = {m: raft_farm(m, OMNIMIND_RAFT_FAILPOINT_PAUSE_BEFORE_SEND=f"3@{marker}") for m in ("n1", "n2", "n3")}
    marker.parent.mkdir()
    wait_until(lambda: marker.exists() and marker.stat().st_size > 0, timeout=30, message="a leader paused at slot 3")
    paused_at = json.loads(marker.read_text())
    old, old_term = paused_at["member_id"], paused_at["term"]
    paused = workers[old]
    wait_until(lambda: process_state(paused_at["pid"]) == "T", timeout=10, message="the leader to be stopped")
    try:
        others = {m: w for m, w in workers.items() if m != old}
        wait_until(lambda: (lambda m: m and raft_members(redis_client)[m]["term"] > old_term)(raft_leader(redis_client, others)),
                   timeout=30, message="a new leader")
        # The new leader re-sends slot 3 (committed, never confirmed sent), then goes on.
        wait_until(lambda: len(accepted_slots(redis_client)) >= 5, timeout=30, message="new leader dispatches")
    finally:
        paused.signal(signal.SIGCONT)
    # The resumed ex-leader sends the slot it had committed, with its old fence: refused.
    wait_until(
        lambda: any("stale" in line and "Refusing retrain dispatch retrain slot 3" in line
                    for w in workers.values() for line in w.output().splitlines()),
        timeout=30, message="the stale dispatch to be refused",
    )
    assert_consecutive(accepted_slots(redis_client))


def process_state(pid: int) -> str:
    """The one-letter state in /proc/PID/stat ("T" once stopped)."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def test_full_restart_keeps_terms_log_and_schedule(raft_farm, redis_client):
    workers = {m: raft_farm(m) for m in ("n1", "n2", "n3")}
    wait_until(lambda: raft_leader(redis_client, workers), timeout=30, message="a leader")
    wait_until(lambda: len(accepted_slots(redis_client)) >= 3, timeout=30, message="3 dispatches")
    before = raft_members(redis_client)
    for worker in workers.values():
        worker.kill()  # all at once, no goodbyes
    slots_before = accepted_slots(redis_client)
    workers = {m: raft_farm(m) for m in ("n1", "n2", "n3")}
    wait_until(lambda: raft_leader(redis_client, workers), timeout=30, message="a leader after restart")
    after = raft_members(redis_client)
    for member, status in before.items():
        assert after[member]["term"] >= status["term"]
    wait_until(lambda: len(accepted_slots(redis_client)) >= len(slots_before) + 2, timeout=30,
               message="the schedule to continue")
    assert_consecutive(accepted_slots(redis_client))
    assert max(after[m]["commit_index"] for m in after) >= max(before[m]["commit_index"] for m in before)


def test_cluster_rebuilt_from_empty_data_dirs_continues_the_schedule(raft_farm, redis_client, tmp_path):
    workers = {m: raft_farm(m) for m in ("n1", "n2", "n3")}
    wait_until(lambda: len(accepted_slots(redis_client)) >= 3, timeout=30, message="3 dispatches")
    for worker in workers.values():
        worker.kill()
    slots_before = accepted_slots(redis_client)
    for member in workers:
        shutil.rmtree(tmp_path / member)  # the Raft log, term and vote are gone; Redis keeps its fences
    workers = {m: raft_farm(m) for m in ("n1", "n2", "n3")}
    wait_until(lambda: len(accepted_slots(redis_client)) >= len(slots_before) + 2, timeout=30,
               message="the rebuilt cluster's dispatches to be accepted")
    assert_consecutive(accepted_slots(redis_client))
    # Without the genesis entry every dispatch of the new cluster (term 1 again) is refused
    # as stale, and its slot 1 as a duplicate. (A re-sent, unconfirmed slot is still
    # refused as a duplicate: that is the slot check doing its job.)
    outputs = [w.output() for w in workers.values()]
    assert not [line for out in outputs for line in out.splitlines() if "Refusing retrain dispatch" in line and "stale" in line]
    assert any("genesis with fence base" in out for out in outputs)


def test_drift_event_dispatches_an_early_retrain(start_worker, redis_client, tmp_path):
    ports = {m: free_port() for m in ("n1", "n2", "n3")}
    peers = ",".join(f"{m}=127.0.0.1:{p}" for m, p in ports.items())
    workers = {
        m: start_worker(
            f"drift-{m}", queues="training", pool="solo", concurrency=1, OMNIMIND_RAFT_ID=m, OMNIMIND_RAFT_PEERS=peers,
            OMNIMIND_RAFT_SECRET=SECRET, OMNIMIND_DATA_DIR=tmp_path / m,
            OMNIMIND_RETRAIN_INTERVAL="3600", OMNIMIND_DRIFT_RETRAIN_MIN_GAP="3",
        )
        for m in ("n1", "n2", "n3")
    }
    wait_until(lambda: raft_leader(redis_client, workers), timeout=30, message="a leader")
    assert accepted_slots(redis_client) == []  # the hourly schedule is not due
    redis_client.xadd(keys.DRIFT_EVENTS, {"node_id": "learner@test", "error": "4.2"})
    wait_until(lambda: accepted_slots(redis_client) == [1], timeout=15, message="an early retrain")
    # A storm: two more events at once are answered by one more retrain, after the gap.
    redis_client.xadd(keys.DRIFT_EVENTS, {"node_id": "learner@test", "error": "5.0"})
    redis_client.xadd(keys.DRIFT_EVENTS, {"node_id": "learner@test", "error": "5.1"})
    wait_until(lambda: accepted_slots(redis_client) == [1, 2], timeout=15, message="one more retrain")
    (_, first), (_, second) = redis_client.xrange(keys.schedule_accepted("retrain"))
    assert second[b"index"] != first[b"index"]


@pytest.mark.parametrize(
    "member, peers, secret, data_dir, message",
    [
        ("n4", "n1=127.0.0.1:7101,n2=127.0.0.1:7102", SECRET, None, "own id 'n4' is missing"),
        ("n1", "n1=127.0.0.1:7101,n1=127.0.0.1:7102", SECRET, None, "duplicate member id 'n1'"),
        ("n1", "n1=127.0.0.1:7101,n2=127.0.0.1:7101", SECRET, None, "share an address"),
        ("n1", "n1=127.0.0.1:7101,n2=127.0.0.1:7102", "short", None, "OMNIMIND_RAFT_SECRET"),
        ("n1", "n1=127.0.0.1:7101,n2=127.0.0.1:7102", SECRET, "/proc/omnimind-raft", "is not usable"),
    ],
)
def test_bad_raft_configuration_refuses_to_start(redis_server, tmp_path, member, peers, secret, data_dir, message):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "OMNIMIND_RAFT_SECRET": secret, "OMNIMIND_DATA_DIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "celery", "-A", "omnimind", "worker", "-Q", "training", "--pool=solo",
           "-n", "badraft@%h", "--raft-id", member, "--raft-peers", peers]
    if data_dir:
        cmd += ["--raft-data-dir", data_dir]
    proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr



def test_member_with_a_wrong_secret_refuses_to_start(raft_farm, redis_client, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    workers = {m: raft_farm(m) for m in ("n1", "n2")}
    wait_until(lambda: raft_leader(redis_client, workers), timeout=30, message="a leader of two")
    env = {**os.environ, "OMNIMIND_RAFT_SECRET": "not-the-shared-secret-at-all",
           "OMNIMIND_DATA_DIR": str(tmp_path / "n3"), "OMNIMIND_RAFT_PEERS": raft_farm.peers}
    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "omnimind", "worker", "-Q", "training", "--pool=solo",
         "-n", "wrongsecret@%h", "--raft-id", "n3"],
        cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode != 0
    assert "OMNIMIND_RAFT_SECRET differs" in proc.stdout + proc.stderr
    # The group is unharmed: it has a leader (on a loaded machine it may be re-electing
    # at the very moment the refused member exits, so wait for one).
    wait_until(lambda: raft_leader(redis_client, workers), timeout=30, message="a leader after the refusal")


def test_forged_fence_is_refused_and_the_schedule_carries_on(start_worker, redis_client, tmp_path, celery_app):
    """The issue's attack: one retrain with the fence [term+1000000, 1] on the next slot.
    Unsigned, signed with another key, or with a malformed slot header, it is refused
    before the fence check, and the real leader's next slots are accepted."""
    from omnimind.fence import AUTH_HEADER, FENCE_HEADER, SLOT_HEADER, sign_dispatch
    from tests.helpers import metric_value, scrape

    metrics_port = free_port()
    worker = start_worker(
        "raft-solo", queues="training", pool="solo", concurrency=1, OMNIMIND_RAFT_ID="n1",
        OMNIMIND_RAFT_PEERS=f"n1=127.0.0.1:{free_port()}", OMNIMIND_RAFT_SECRET=SECRET,
        OMNIMIND_DATA_DIR=tmp_path / "n1", OMNIMIND_RETRAIN_INTERVAL="1", OMNIMIND_METRICS_PORT=metrics_port,
    )
    wait_until(lambda: len(accepted_slots(redis_client)) >= 2, timeout=30, message="2 dispatches")
    fence_before = redis_client.hgetall(keys.schedule_fence("retrain"))
    term, next_slot = int(fence_before[b"term"]), max(accepted_slots(redis_client)) + 1
    huge = [term + 1_000_000, 1]
    attacks = {
        "forged": {FENCE_HEADER: huge, SLOT_HEADER: ["retrain", next_slot],
                   AUTH_HEADER: sign_dispatch("not-the-raft-secret-at-all", "retrain", next_slot, huge)},
        "unsigned": {FENCE_HEADER: huge, SLOT_HEADER: ["retrain", next_slot]},
        "malformed": {FENCE_HEADER: huge, SLOT_HEADER: ["retrain"], AUTH_HEADER: "0" * 64},  # was an IndexError
    }
    for outcome, headers in attacks.items():
        result = celery_app.send_task("tasks.training.retrain", headers=headers).get(timeout=30)
        assert result["outcome"] == outcome, result
    # No fence moved: the real leader's term is still the newest, and it goes on.
    assert int(redis_client.hget(keys.schedule_fence("retrain"), "term")) < term + 1_000_000
    wait_until(lambda: max(accepted_slots(redis_client)) >= next_slot + 2, timeout=30,
               message="the real schedule to carry on past the forged slot")
    assert_consecutive(accepted_slots(redis_client))
    out = worker.output()
    assert not [line for line in out.splitlines() if "Refusing retrain dispatch" in line and "stale" in line]
    text = scrape(metrics_port)
    for reason in attacks:
        assert metric_value(text, "omnimind_dispatch_refusals_total", reason=reason) == 1
