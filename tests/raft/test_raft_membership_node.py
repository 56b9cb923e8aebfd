"""Membership changes of running RaftNodes: in process, and over TCP with file storage (replacing a dead
member without restarting the others, and restarting members from the configuration in their logs)."""

import asyncio

import pytest

from omnimind.scaling.raft import (
    FileStorage,
    InProcessNetwork,
    NotLeader,
    RaftNode,
    TcpTransport,
    add_member,
    remove_member,
)
from tests.helpers import free_ports

SECRET = "raft-membership-test-secret"


async def the_leader(nodes, timeout=5.0):
    live_ids = {node.node_id for node in nodes}

    def agreed():
        leaders = {node.leader_id for node in nodes}
        return len(leaders) == 1 and leaders <= live_ids

    await asyncio.gather(*(node.wait_for(agreed, timeout) for node in nodes))
    return next(node for node in nodes if node.is_leader)


async def applied_everywhere(nodes, entry, timeout=5.0):
    await asyncio.gather(*(node.wait_for(lambda node=node: node.last_applied >= entry.index, timeout)
                           for node in nodes))


async def test_a_new_member_catches_up_from_a_snapshot_then_votes():
    network = InProcessNetwork()
    nodes = [RaftNode(n, ["n1", "n2", "n3"], transport=network.transport(n), snapshot_threshold=16)
             for n in ("n1", "n2", "n3")]
    newcomer = RaftNode("n4", ["n1", "n2", "n3", "n4"], transport=network.transport("n4"), join=True)
    try:
        for node in nodes:
            await node.start()
        leader = await the_leader(nodes)
        for i in range(100):
            await leader.propose({"op": "set", "key": f"k{i}", "value": i})
        assert leader.core.log.snapshot.index > 0  # the newcomer cannot get the log from index 1
        await newcomer.start()
        config = await add_member(leader, "n4", timeout=10)
        assert config.voters == ("n1", "n2", "n3", "n4") and config.learners == ()
        assert newcomer.core.log.snapshot.index > 0 and newcomer.core.is_voter
        await newcomer.wait_for(lambda: newcomer.state_machine.data == leader.state_machine.data, timeout=5)
        # Now a voter: with two of the old members gone, the leader, n4 and one more still commit.
        network.isolate(next(node.node_id for node in nodes if node is not leader))
        entry = await leader.propose({"op": "set", "key": "after", "value": 1}, timeout=5)
        await applied_everywhere([leader, newcomer], entry)
    finally:
        for node in nodes + [newcomer]:
            await node.stop()


async def test_removing_the_leader_hands_leadership_over_first():
    network = InProcessNetwork()
    nodes = [RaftNode(n, ["n1", "n2", "n3"], transport=network.transport(n)) for n in ("n1", "n2", "n3")]
    try:
        for node in nodes:
            await node.start()
        leader = await the_leader(nodes)
        with pytest.raises(NotLeader) as handed_over:
            await remove_member(leader, leader.node_id, timeout=5)
        successor = next(node for node in nodes if node.node_id == handed_over.value.leader_id)
        assert successor is not leader and successor.is_leader
        config = await remove_member(successor, leader.node_id, timeout=5)
        assert leader.node_id not in config
        await leader.wait_for(lambda: not leader.is_leader, timeout=5)
        rest = [node for node in nodes if node is not leader]
        entry = await successor.propose({"op": "set", "key": "two", "value": 2}, timeout=5)
        await applied_everywhere(rest, entry)
        assert all(node.core.voters == config.voters for node in rest)
    finally:
        for node in nodes:
            await node.stop()


async def test_tcp_group_replaces_a_dead_member_and_restarts_from_its_log(tmp_path):
    ports = dict(zip(("n1", "n2", "n3", "n4"), free_ports(4), strict=True))
    address = {member: ("127.0.0.1", port) for member, port in ports.items()}
    first = {member: address[member] for member in ("n1", "n2", "n3")}

    def member(name, peers, join=False):
        return RaftNode(name, list(peers), transport=TcpTransport(name, peers, SECRET), join=join,
                        storage=FileStorage(tmp_path / name), snapshot_threshold=32)

    nodes = {name: member(name, first) for name in first}
    try:
        for node in nodes.values():
            await node.start()
        leader = await the_leader(list(nodes.values()))
        for i in range(50):
            await leader.propose({"op": "set", "key": "slot", "value": i})
        dead = next(name for name in nodes if name != leader.node_id)
        await nodes.pop(dead).stop()
        # The replacement knows the survivors' addresses only; its own reaches them through the configuration.
        contact = {name: address[name] for name in (*nodes, "n4")}
        nodes["n4"] = member("n4", contact, join=True)
        await nodes["n4"].start()
        await add_member(leader, "n4", "127.0.0.1:%d" % ports["n4"], timeout=10)
        config = await remove_member(leader, dead, timeout=10)
        assert set(config.voters) == set(nodes) and set(config.addresses) == set(nodes)
        entry = await leader.propose({"op": "set", "key": "slot", "value": 99}, timeout=5)
        await applied_everywhere(list(nodes.values()), entry)
        assert all(node.transport.peers.keys() == nodes.keys() for node in nodes.values())

        # Restart everyone with the stale bootstrap peer list: the configuration in the logs wins.
        for node in nodes.values():
            await node.stop()
        nodes = {name: member(name, first if name != "n4" else contact, join=name == "n4") for name in nodes}
        for node in nodes.values():
            await node.start()
        leader = await the_leader(list(nodes.values()), timeout=10)
        assert all(node.core.configuration == config for node in nodes.values())
        entry = await leader.propose({"op": "set", "key": "slot", "value": 100}, timeout=5)
        await applied_everywhere(list(nodes.values()), entry)
        assert {node.state_machine.data["slot"] for node in nodes.values()} == {100}
    finally:
        for node in nodes.values():
            await node.stop()
