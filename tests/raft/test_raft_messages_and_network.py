"""Wire-format validation, the in-process fault model, and replayability of simulations."""

import random

import pytest

from omnimind.scaling.raft import (
    InProcessNetwork,
    LogEntry,
    MalformedMessage,
    Message,
    MessageType,
    SimulatedCluster,
    Snapshot,
)


def test_raft_message_round_trips_with_entries_and_snapshot():
    message = Message(MessageType.INSTALL_SNAPSHOT, sender="n1", recipient="n2", term=7,
                      snapshot=Snapshot(index=40, term=6, data={"schedule": {"slot": 12}}))
    assert Message.from_dict(message.to_dict()) == message
    append = Message(MessageType.APPEND, sender="n1", recipient="n2", term=7, index=3, log_term=6, commit=3,
                     entries=(LogEntry(7, 4, None), LogEntry(7, 5, [1, "two"])))
    assert Message.from_dict(append.to_dict()) == append


@pytest.mark.parametrize("tampered", [
    {"type": "vote_everyone"},
    {"term": -1},
    {"term": True},
    {"index": "3"},
    {"sender": None},
    {"reject": "yes"},
    {"entries": {"term": 1}},
    {"entries": [{"term": 1, "index": -2}]},
    {"snapshot": [1, 2]},
])
def test_raft_message_from_dict_rejects_malformed_fields(tampered):
    data = Message(MessageType.HEARTBEAT, sender="n1", recipient="n2", term=1).to_dict()
    data.update(tampered)
    with pytest.raises(MalformedMessage):
        Message.from_dict(data)


def test_raft_in_process_network_faults_are_seeded_and_recoverable():
    message = Message(MessageType.HEARTBEAT, sender="a", recipient="b", term=1)

    def fates(seed):
        network = InProcessNetwork(rng=random.Random(seed))
        network.drop(0.5)
        network.delay(0.0, 0.1)
        return [network.route(message) for _ in range(50)]

    assert fates(11) == fates(11)
    assert None in fates(11) and any(fates(11))
    network = InProcessNetwork()
    network.isolate("b")
    assert network.route(message) is None
    network.recover()
    assert network.route(message) == 0.0
    with pytest.raises(ValueError):
        network.drop(1.5)


def test_raft_simulation_replays_exactly_from_its_seed():
    def history(seed):
        cluster = SimulatedCluster(["a", "b", "c"], seed=seed)
        cluster.network.drop(0.2)
        cluster.network.delay(0.0, 0.05)
        for step in range(300):
            if step % 7 == 0:
                cluster.propose(f"c{step}")
            cluster.tick()
        return cluster.committed_commands(), {n: core.term for n, core in cluster.cores.items()}

    assert history(5) == history(5)
