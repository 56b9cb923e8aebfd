"""The pure core's membership rules, step by step (no runner): when a change is accepted, when it takes effect,
what a snapshot carries, and who may vote."""

import random

import pytest

from omnimind.scaling.raft import (
    Configuration,
    LogEntry,
    MalformedMessage,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDropped,
    RaftConfigError,
    RaftCore,
    SimulatedCluster,
)


def elected_cluster(seed=5):
    cluster = SimulatedCluster(["a", "b", "c"], seed=seed)
    assert cluster.run_until(lambda: cluster.leader() is not None, max_ticks=300)
    leader = cluster.cores[cluster.leader()]
    assert cluster.run_until(lambda: leader.commit_index >= 1, max_ticks=100)  # its term's no-op
    return cluster, leader


def test_a_leader_accepts_a_change_only_after_committing_in_its_term():
    leader = RaftCore("a", ["a", "b", "c"], rng=random.Random(1), pre_vote=False)
    leader.campaign()
    leader.step(Message(MessageType.VOTE_RESPONSE, sender="b", recipient="a", term=1))
    assert leader.is_leader and leader.commit_index == 0  # the no-op of term 1 is not committed yet
    with pytest.raises(ProposalDropped, match="no entry of this term"):
        leader.propose_config(leader.configuration.with_learner("d"))
    leader.step(Message(MessageType.APPEND_RESPONSE, sender="b", recipient="a", term=1, index=1))
    entry = leader.propose_config(leader.configuration.with_learner("d"))
    assert entry.is_config and leader.learners == ("d",)
    with pytest.raises(ProposalDropped, match="not committed yet"):
        leader.propose_config(leader.configuration.promoted("d"))


def test_one_voter_at_a_time_and_never_the_leader_itself():
    _, leader = elected_cluster()
    two_more = Configuration.of(leader.voters + ("d", "e"))
    with pytest.raises(RaftConfigError, match="one member at a time"):
        leader.propose_config(two_more)
    with pytest.raises(RaftConfigError, match="transfer leadership first"):
        leader.propose_config(leader.configuration.without(leader.node_id))
    with pytest.raises(RaftConfigError, match="not a learner"):
        leader.configuration.promoted("d")


def test_a_configuration_is_in_effect_when_appended_and_gone_when_truncated():
    follower = RaftCore("b", ["a", "b", "c"], rng=random.Random(2))
    grown = Configuration.of(["a", "b", "c"], ["d"], {"d": "10.0.0.4:7001"})
    follower.step(Message(MessageType.APPEND, sender="a", recipient="b", term=1,
                          entries=(LogEntry(1, 1, None), LogEntry(1, 2, grown.to_dict(), "config")), commit=1))
    assert follower.commit_index == 1 and follower.configuration == grown  # uncommitted, already in effect
    # A new leader of term 2 overwrites the uncommitted entry: the configuration goes with it.
    follower.step(Message(MessageType.APPEND, sender="c", recipient="b", term=2, index=1, log_term=1,
                          entries=(LogEntry(2, 2, None),), commit=1))
    assert follower.configuration == Configuration.of(["a", "b", "c"])


def test_a_snapshot_carries_the_configuration_across_compaction_and_restart():
    cluster, leader = elected_cluster()
    assert cluster.run_until(lambda: cluster.change_config(lambda c: c.with_learner("d", "h:4")) is not None, 50)
    entry = cluster.propose("after")
    assert cluster.run_until(lambda: cluster.is_applied_everywhere(entry, ["a", "b", "c"]), max_ticks=100)
    snapshot = leader.make_snapshot(data=None)
    assert Configuration.from_dict(snapshot.config).learners == ("d",)
    storage = MemoryStorage()
    storage.save_snapshot(snapshot)
    restarted = RaftCore(leader.node_id, ["a", "b", "c"], rng=random.Random(3), snapshot=storage.load().snapshot)
    assert restarted.learners == ("d",) and restarted.configuration.addresses == {"d": "h:4"}


def test_a_joining_member_follows_any_leader_and_votes_in_no_election():
    joining = RaftCore("d", [], rng=random.Random(4))
    for _ in range(10 * joining.election_ticks):
        joining.tick()
    assert joining.elections_started == 0 and not joining.ready().messages
    joining.step(Message(MessageType.HEARTBEAT, sender="a", recipient="d", term=3))
    assert joining.leader_id == "a" and joining.term == 3


def test_vote_responses_of_learners_are_not_counted():
    grown = Configuration.of(["a", "b", "c"], ["d"])
    candidate = RaftCore("a", ["a", "b", "c"], rng=random.Random(6), pre_vote=False,
                         entries=[LogEntry(1, 1, grown.to_dict(), "config")])
    candidate.campaign()
    assert {message.recipient for message in candidate.ready().messages} == {"b", "c"}  # no request to d
    candidate.step(Message(MessageType.VOTE_RESPONSE, sender="d", recipient="a", term=candidate.term))
    assert not candidate.is_leader
    candidate.step(Message(MessageType.VOTE_RESPONSE, sender="b", recipient="a", term=candidate.term))
    assert candidate.is_leader


def test_malformed_configuration_entries_are_refused_on_the_wire():
    with pytest.raises(MalformedMessage):
        LogEntry.from_dict({"term": 1, "index": 1, "command": {"voters": "a"}, "kind": "config"})
    with pytest.raises(MalformedMessage, match="unknown entry kind"):
        LogEntry.from_dict({"term": 1, "index": 1, "command": None, "kind": "weird"})
