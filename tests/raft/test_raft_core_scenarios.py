"""The scenarios etcd-io/raft is known for, on the pure core (tick-driven, deterministic)."""

import random

import pytest

from omnimind.scaling.raft import (
    HardState,
    LogEntry,
    Message,
    MessageType,
    NotLeader,
    ProposalDropped,
    RaftConfigError,
    RaftCore,
    Role,
    SimulatedCluster,
)

ELECTION_TICKS = 10


def elect(cluster: SimulatedCluster) -> str:
    assert cluster.run_until(lambda: cluster.leader() is not None, max_ticks=20 * ELECTION_TICKS)
    # Let the new leader's no-op commit so every member knows who leads.
    leader = cluster.leader()
    assert cluster.run_until(lambda: all(core.leader_id == leader for core in cluster.cores.values()),
                             max_ticks=5 * ELECTION_TICKS)
    return leader


def followers(cluster: SimulatedCluster, leader: str) -> list[str]:
    return [node_id for node_id in cluster.node_ids if node_id != leader]


@pytest.mark.parametrize("check_quorum", [True, False])
def test_raft_isolated_leader_steps_down_only_with_check_quorum(check_quorum):
    cluster = SimulatedCluster(["a", "b", "c"], seed=1, check_quorum=check_quorum)
    old_leader = elect(cluster)
    cluster.network.isolate(old_leader)
    cluster.run_until(lambda: cluster.cores[old_leader].role is not Role.LEADER, max_ticks=3 * ELECTION_TICKS)
    if check_quorum:
        assert cluster.cores[old_leader].role is Role.FOLLOWER
        # ...and the majority side elected someone else in a newer term.
        others = followers(cluster, old_leader)
        assert cluster.run_until(lambda: any(cluster.cores[n].role is Role.LEADER for n in others),
                                 max_ticks=10 * ELECTION_TICKS)
    else:
        assert cluster.cores[old_leader].role is Role.LEADER  # the PySyncObj behaviour CheckQuorum prevents


@pytest.mark.parametrize("pre_vote", [True, False])
def test_raft_rejoining_partitioned_follower_cannot_depose_the_leader(pre_vote):
    cluster = SimulatedCluster(["a", "b", "c"], seed=2, pre_vote=pre_vote, check_quorum=False)
    leader = elect(cluster)
    term = cluster.cores[leader].term
    straggler = followers(cluster, leader)[0]
    cluster.network.isolate(straggler)
    for _ in range(10 * ELECTION_TICKS):  # many election timeouts alone
        cluster.tick()
    cluster.network.recover()
    for _ in range(5 * ELECTION_TICKS):
        cluster.tick()
    if pre_vote:
        # The straggler's pre-votes failed while isolated, so its term never rose and the leader stays.
        assert cluster.leader() == leader and cluster.cores[leader].term == term
        assert cluster.cores[straggler].term == term and cluster.cores[straggler].leader_id == leader
    else:
        assert cluster.cores[leader].term > term  # without PreVote the rejoining member forces an election


def test_raft_leader_lease_ignores_vote_requests_from_a_higher_term():
    cluster = SimulatedCluster(["a", "b", "c"], seed=3)
    leader = elect(cluster)
    follower = followers(cluster, leader)[0]
    term = cluster.cores[leader].term
    disruptive = Message(MessageType.VOTE, sender=followers(cluster, leader)[1], recipient=follower,
                         term=term + 5, index=100, log_term=term + 4)
    cluster.cores[follower].step(disruptive)
    assert cluster.cores[follower].term == term  # heard from the leader recently: ignored, term unchanged
    cluster.cores[leader].step(Message(MessageType.VOTE, sender=follower, recipient=leader, term=term + 5,
                                       index=100, log_term=term + 4))
    assert cluster.cores[leader].role is Role.LEADER and cluster.cores[leader].term == term


def test_raft_dueling_candidates_converge():
    cluster = SimulatedCluster(["a", "b", "c", "d"], seed=4, pre_vote=False)
    # a reaches b (not d), c reaches d (not b): simultaneous campaigns split the vote 2-2 in a 4-member group.
    cluster.network.cut("a", "d")
    cluster.network.cut("c", "b")
    cluster.cores["a"].campaign()
    cluster.cores["c"].campaign()
    for node_id in ("a", "c"):
        cluster._process(node_id)
    for _ in range(3):
        cluster.tick()
    assert cluster.leader() is None
    assert cluster.cores["a"].role is Role.CANDIDATE and cluster.cores["c"].role is Role.CANDIDATE
    # Randomized timeouts break the tie: one of them wins a later term, and only one.
    assert cluster.run_until(lambda: cluster.leader() is not None, max_ticks=20 * ELECTION_TICKS)
    leaders = [core for core in cluster.cores.values() if core.role is Role.LEADER]
    assert len(leaders) == 1 and leaders[0].term >= 2


def _leader_with_log(entries, term, voters=("n1", "n2", "n3", "n4", "n5")):
    core = RaftCore("n1", voters, rng=random.Random(5), hard_state=HardState(term=term), entries=entries,
                    pre_vote=False)
    core.campaign()
    for voter in voters[1:3]:
        core.step(Message(MessageType.VOTE_RESPONSE, sender=voter, recipient="n1", term=term + 1))
    assert core.role is Role.LEADER
    core.ready()  # discard the appends the election produced
    return core


def test_raft_figure_8_old_term_entry_is_not_committed_by_counting():
    # Entry 2 is from term 2; n1 leads term 4 and appended its no-op at index 3.
    core = _leader_with_log([LogEntry(1, 1, "x"), LogEntry(2, 2, "y")], term=3)
    assert core.log.last_index == 3 and core.log.term(3) == 4
    for follower in ("n2", "n3"):
        core.step(Message(MessageType.APPEND_RESPONSE, sender=follower, recipient="n1", term=4, index=2))
    # Index 2 is on n1, n2, n3 (a majority of five) but from an old term: counting replicas must not commit it.
    assert core.commit_index == 0
    for follower in ("n2", "n3"):
        core.step(Message(MessageType.APPEND_RESPONSE, sender=follower, recipient="n1", term=4, index=3))
    assert core.commit_index == 3  # committing the term-4 no-op commits everything before it


def test_raft_fast_backtracking_skips_a_whole_conflicting_term():
    # The leader's log has many term-2 entries; a follower holds a divergent run of term-3 entries.
    leader_entries = [LogEntry(1, 1)] + [LogEntry(2, i) for i in range(2, 12)]
    core = _leader_with_log(leader_entries, term=4, voters=("n1", "n2", "n3"))
    probe_index = core.log.last_index - 1
    core.step(Message(MessageType.APPEND_RESPONSE, sender="n2", recipient="n1", term=5, index=probe_index,
                      reject=True, reject_hint=3, log_term=1))
    append = [m for m in core.ready().messages if m.recipient == "n2" and m.type is MessageType.APPEND]
    assert append and append[-1].index == 1  # one round trip back to the last entry that can match


def _lagging_cluster(seed: int, lag: int):
    cluster = SimulatedCluster(["a", "b", "c"], seed=seed)
    leader = elect(cluster)
    laggard = followers(cluster, leader)[0]
    cluster.network.isolate(laggard)
    entries = [cluster.propose(f"cmd-{i}") for i in range(lag)]
    assert cluster.run_until(lambda: cluster.is_applied_everywhere(entries[-1], [leader]), max_ticks=50)
    cluster.network.recover()
    return cluster, leader, laggard, entries


def test_raft_leadership_transfer_to_an_up_to_date_follower():
    cluster = SimulatedCluster(["a", "b", "c"], seed=6)
    leader = elect(cluster)
    target = followers(cluster, leader)[1]
    cluster.transfer_leadership(target)
    with pytest.raises(ProposalDropped):
        cluster.cores[leader].propose("refused while transferring")
    # Much faster than an election timeout: the target campaigns at once on TimeoutNow.
    assert cluster.run_until(lambda: cluster.leader() == target, max_ticks=ELECTION_TICKS // 2)
    assert cluster.cores[leader].role is Role.FOLLOWER


def test_raft_leadership_transfer_to_a_lagging_follower_catches_it_up_first():
    cluster, leader, laggard, entries = _lagging_cluster(seed=7, lag=20)
    assert cluster.cores[laggard].log.last_index < entries[-1].index
    cluster.transfer_leadership(laggard)
    assert cluster.run_until(lambda: cluster.leader() == laggard, max_ticks=3 * ELECTION_TICKS)
    new_leader_log = cluster.cores[laggard].log
    assert all(new_leader_log.term(entry.index) == entry.term for entry in entries)


def test_raft_snapshot_is_installed_on_a_far_behind_follower():
    cluster = SimulatedCluster(["a", "b", "c"], seed=8, snapshot_every=5)
    leader = elect(cluster)
    laggard = followers(cluster, leader)[0]
    cluster.network.isolate(laggard)
    entries = [cluster.propose(f"cmd-{i}") for i in range(30)]
    assert cluster.run_until(lambda: cluster.is_applied_everywhere(entries[-1], [leader]), max_ticks=100)
    # The leader compacted past everything the laggard has: only a snapshot can bring it up to date.
    assert cluster.cores[leader].log.first_index > cluster.cores[laggard].log.last_index + 1
    cluster.network.recover()
    assert cluster.run_until(lambda: cluster.is_applied_everywhere(entries[-1]), max_ticks=100)
    assert cluster.applied[laggard] == cluster.applied[leader]
    # And it keeps replicating normally afterwards.
    later = cluster.propose("after-the-snapshot")
    assert cluster.run_until(lambda: cluster.is_applied_everywhere(later), max_ticks=50)


def test_raft_follower_refuses_proposals_with_a_leader_hint():
    cluster = SimulatedCluster(["a", "b", "c"], seed=9)
    leader = elect(cluster)
    with pytest.raises(NotLeader) as refused:
        cluster.cores[followers(cluster, leader)[0]].propose("x")
    assert refused.value.leader_id == leader


def test_raft_crash_restart_keeps_term_vote_and_log():
    cluster = SimulatedCluster(["a", "b", "c"], seed=10)
    elect(cluster)
    entry = cluster.propose("durable")
    assert cluster.run_until(lambda: cluster.is_applied_everywhere(entry), max_ticks=50)
    before = {n: (core.term, core.vote, core.log.last_index) for n, core in cluster.cores.items()}
    for node_id in cluster.node_ids:
        cluster.crash(node_id)
    for node_id in cluster.node_ids:
        cluster.restart(node_id)
    after = {n: (core.term, core.vote, core.log.last_index) for n, core in cluster.cores.items()}
    assert after == before
    assert cluster.run_until(lambda: cluster.leader() is not None, max_ticks=20 * ELECTION_TICKS)
    assert "durable" in cluster.committed_commands()


@pytest.mark.parametrize("voters", [["a", "b", "a"], ["b", "c"]])
def test_raft_bad_membership_is_refused(voters):
    with pytest.raises(RaftConfigError):
        RaftCore("a", voters, rng=random.Random(0))
