"""RaftNode clusters on asyncio: in-process and over TCP on loopback."""

import asyncio

import pytest

from omnimind.scaling.raft import InProcessNetwork, NodeState, NotLeader, RaftConfigError, RaftNode, TcpTransport
from tests.helpers import free_ports

SECRET = "raft-test-secret"
NODE_IDS = ["n1", "n2", "n3"]


async def started(nodes):
    for node in nodes:
        await node.start()
    return {node.node_id: node for node in nodes}


async def stop_all(nodes):
    for node in nodes:
        await node.stop()


async def the_leader(nodes, timeout=5.0, excluding=()):
    """The leader among ``nodes`` (minus ``excluding``) once all of those agree on which of them it is."""
    live = [node for node in nodes if node.node_id not in excluding]
    live_ids = {node.node_id for node in live}

    def agreed():
        leaders = {node.leader_id for node in live}
        return len(leaders) == 1 and leaders <= live_ids

    await asyncio.gather(*(node.wait_for(agreed, timeout) for node in live))
    return next(node for node in live if node.is_leader)


@pytest.fixture
async def in_process_cluster():
    network = InProcessNetwork()
    nodes = [RaftNode(node_id, NODE_IDS, transport=network.transport(node_id)) for node_id in NODE_IDS]
    await started(nodes)
    yield network, nodes
    await stop_all(nodes)


async def test_raft_node_propose_commits_on_every_member(in_process_cluster):
    _, nodes = in_process_cluster
    leader = await the_leader(nodes)
    entries = [await leader.propose({"op": "set", "key": f"k{i}", "value": i}) for i in range(20)]
    assert [entry.index for entry in entries] == list(range(entries[0].index, entries[0].index + 20))
    await asyncio.gather(*(node.wait_for(lambda node=node: node.last_applied >= entries[-1].index, 5)
                           for node in nodes))
    assert all(node.state_machine.data == leader.state_machine.data for node in nodes)
    assert leader.state_machine.data["k19"] == 19


async def test_raft_node_follower_refuses_proposals_with_a_hint(in_process_cluster):
    _, nodes = in_process_cluster
    leader = await the_leader(nodes)
    follower = next(node for node in nodes if node is not leader)
    with pytest.raises(NotLeader) as refused:
        await follower.propose("x")
    assert refused.value.leader_id == leader.node_id
    assert follower.state is NodeState.FOLLOWER and leader.leader_changes >= 1


async def test_raft_node_reports_leadership_changes_and_fails_over(in_process_cluster):
    network, nodes = in_process_cluster
    old_leader = await the_leader(nodes)
    old_term = old_leader.current_term
    seen = []
    follower = next(node for node in nodes if node is not old_leader)
    follower.add_leadership_listener(lambda leader_id, term: seen.append((leader_id, term)))
    network.isolate(old_leader.node_id)
    new_leader = await the_leader(nodes, excluding={old_leader.node_id})
    assert new_leader.current_term > old_term
    assert (new_leader.node_id, new_leader.current_term) in seen
    # CheckQuorum: the isolated old leader gives up on its own.
    await old_leader.wait_for(lambda: not old_leader.is_leader, timeout=5)


async def test_raft_node_transfers_leadership_to_a_lagging_follower(in_process_cluster):
    network, nodes = in_process_cluster
    leader = await the_leader(nodes)
    laggard = next(node for node in nodes if node is not leader)
    network.cut(leader.node_id, laggard.node_id)
    for i in range(10):
        await leader.propose({"op": "set", "key": "slot", "value": i})
    assert laggard.commit_index < leader.commit_index
    network.recover()
    assert await leader.transfer_leadership(to=laggard.node_id) == laggard.node_id
    await laggard.wait_for(lambda: laggard.is_leader, timeout=5)
    await laggard.wait_for(lambda: laggard.state_machine.data.get("slot") == 9, timeout=5)


async def test_raft_node_catches_up_a_far_behind_follower_with_a_snapshot():
    network = InProcessNetwork()
    nodes = [RaftNode(node_id, NODE_IDS, transport=network.transport(node_id), snapshot_threshold=8)
             for node_id in NODE_IDS]
    await started(nodes)
    try:
        leader = await the_leader(nodes)
        laggard = next(node for node in nodes if node is not leader)
        network.isolate(laggard.node_id)
        for i in range(30):
            await leader.propose({"op": "set", "key": f"k{i}", "value": i})
        assert leader.core.log.first_index > laggard.commit_index + 1  # the entries it needs are compacted away
        network.recover()
        await laggard.wait_for(lambda: laggard.state_machine.data == leader.state_machine.data, timeout=5)
    finally:
        await stop_all(nodes)


async def test_raft_node_graceful_stop_hands_leadership_over(in_process_cluster):
    _, nodes = in_process_cluster
    leader = await the_leader(nodes)
    term = leader.current_term
    await leader.stop(transfer_leadership=True)
    # stop() returned only after the handover: a successor already leads, without any election timeout.
    successors = [node for node in nodes if node is not leader and node.is_leader]
    assert len(successors) == 1 and successors[0].current_term == term + 1


def test_raft_node_refuses_inconsistent_membership():
    peers = {"n1": ("127.0.0.1", 7001), "n2": ("127.0.0.1", 7002)}
    with pytest.raises(RaftConfigError, match="differ"):
        RaftNode("n1", NODE_IDS, transport=TcpTransport("n1", peers, SECRET))
    with pytest.raises(RaftConfigError, match="handed to"):
        RaftNode("n1", NODE_IDS, transport=InProcessNetwork().transport("n2"))
    with pytest.raises(RaftConfigError, match="missing"):
        RaftNode("n9", NODE_IDS)
    with pytest.raises(RaftConfigError, match="duplicate"):
        RaftNode("n1", ["n1", "n2", "n2"])


async def test_raft_node_same_ids_on_one_default_network_are_refused():
    first = RaftNode("twin", ["twin"])
    await first.start()
    with pytest.raises(RaftConfigError):
        await RaftNode("twin", ["twin"]).start()
    await first.stop()


@pytest.fixture
async def tcp_cluster(tmp_path):
    ports = free_ports(len(NODE_IDS))
    peers = {node_id: ("127.0.0.1", port) for node_id, port in zip(NODE_IDS, ports, strict=True)}
    nodes = [RaftNode(node_id, NODE_IDS, transport=TcpTransport(node_id, peers, SECRET)) for node_id in NODE_IDS]
    await started(nodes)
    yield nodes
    await stop_all(nodes)


async def test_raft_tcp_cluster_elects_commits_and_fails_over(tcp_cluster):
    nodes = tcp_cluster
    leader = await the_leader(nodes)
    for i in range(10):
        await leader.propose({"op": "set", "key": "before", "value": i})
    await leader.stop()  # killed: no leadership transfer
    survivors = [node for node in nodes if node is not leader]
    new_leader = await the_leader(survivors)
    assert new_leader.current_term > leader.current_term
    assert new_leader.state_machine.data["before"] == 9  # nothing committed was lost
    entry = await new_leader.propose({"op": "set", "key": "after", "value": 1})
    await asyncio.gather(*(node.wait_for(lambda node=node: node.last_applied >= entry.index, 5)
                           for node in survivors))
    assert all(node.dropped_frames == {} or set(node.dropped_frames) == {"send_queue_full"} for node in survivors)
