"""The TCP transport on loopback: authenticated round trips, rejected frames, reconnects."""

import asyncio
import json
import struct

import pytest

from omnimind.scaling.raft import Message, MessageType, RaftConfigError, TcpTransport, parse_peer_addresses
from omnimind.scaling.raft.transport.framing import encode_frame, mac
from tests.helpers import free_ports

SECRET = b"correct horse battery staple"


async def eventually(condition, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.01)


@pytest.fixture
async def pair():
    port_a, port_b = free_ports(2)
    peers = {"a": ("127.0.0.1", port_a), "b": ("127.0.0.1", port_b)}
    received = {"a": [], "b": []}
    transports = {node_id: TcpTransport(node_id, peers, SECRET, max_frame_bytes=4096) for node_id in peers}
    for node_id, transport in transports.items():
        await transport.start(received[node_id].append)
    yield transports, received, peers
    for transport in transports.values():
        await transport.stop()


async def test_raft_tcp_frames_round_trip(pair):
    transports, received, _ = pair
    message = Message(MessageType.APPEND, sender="a", recipient="b", term=2, index=1, log_term=1, commit=1,
                      entries=())
    transports["a"].send(message)
    transports["b"].send(Message(MessageType.APPEND_RESPONSE, sender="b", recipient="a", term=2, index=1))
    await eventually(lambda: received["b"] and received["a"])
    assert received["b"] == [message]
    assert transports["b"].dropped_frames == {}


async def send_raw(port, payload: bytes):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    return reader, writer


async def test_raft_tcp_wrong_secret_is_dropped_and_counted(pair):
    transports, received, peers = pair
    forged = encode_frame(Message(MessageType.HEARTBEAT, sender="a", recipient="b", term=99), b"wrong secret")
    _, writer = await send_raw(peers["b"][1], forged)
    await eventually(lambda: transports["b"].dropped_frames.get("unauthenticated") == 1)
    assert received["b"] == []
    writer.close()


async def test_raft_tcp_malformed_frame_is_dropped_and_counted(pair):
    transports, received, peers = pair
    for body in (b"{not json", json.dumps({"type": "bogus"}).encode(), json.dumps([1, 2]).encode()):
        frame = struct.pack(">I", len(body)) + body + mac(body, SECRET)  # authentic, but not a message
        _, writer = await send_raw(peers["b"][1], frame)
        writer.close()
    await eventually(lambda: transports["b"].dropped_frames.get("malformed") == 3)
    # The stream stays usable after a malformed frame: a good one on the same connection still arrives.
    good = encode_frame(Message(MessageType.HEARTBEAT, sender="a", recipient="b", term=1), SECRET)
    bad_body = b"[]"
    _, writer = await send_raw(peers["b"][1], struct.pack(">I", 2) + bad_body + mac(bad_body, SECRET) + good)
    await eventually(lambda: len(received["b"]) == 1)
    writer.close()


async def test_raft_tcp_oversized_frame_is_dropped_and_the_connection_closed(pair):
    transports, received, peers = pair
    reader, writer = await send_raw(peers["b"][1], struct.pack(">I", 10_000_000) + b"x" * 64)
    await eventually(lambda: transports["b"].dropped_frames.get("oversized") == 1)
    assert await asyncio.wait_for(reader.read(), timeout=5) == b""  # closed by the receiver
    assert received["b"] == []
    writer.close()


async def test_raft_tcp_misaddressed_frame_is_dropped(pair):
    transports, received, peers = pair
    _, writer = await send_raw(peers["b"][1], encode_frame(
        Message(MessageType.HEARTBEAT, sender="mallory", recipient="b", term=1), SECRET))
    await eventually(lambda: transports["b"].dropped_frames.get("misaddressed") == 1)
    writer.close()


async def test_raft_tcp_reconnects_after_the_peer_restarts(pair):
    transports, received, peers = pair
    await transports["b"].stop()
    transports["a"].send(Message(MessageType.HEARTBEAT, sender="a", recipient="b", term=1))
    restarted = TcpTransport("b", peers, SECRET)
    late = []
    await restarted.start(late.append)
    try:
        async def keep_sending():
            while not late:
                transports["a"].send(Message(MessageType.HEARTBEAT, sender="a", recipient="b", term=1))
                await asyncio.sleep(0.02)
        await asyncio.wait_for(keep_sending(), timeout=5)
    finally:
        await restarted.stop()


async def test_raft_tcp_dead_peer_does_not_block_sends():
    port_a, dead_port = free_ports(2)
    transport = TcpTransport("a", {"a": ("127.0.0.1", port_a), "dead": ("127.0.0.1", dead_port)}, SECRET,
                             send_queue_size=4)
    await transport.start(lambda message: None)
    for term in range(10):  # never blocks; the oldest queued frames are shed
        transport.send(Message(MessageType.HEARTBEAT, sender="a", recipient="dead", term=term))
    assert transport.dropped_frames["send_queue_full"] == 6
    await transport.stop()


def test_raft_tcp_configuration_errors():
    with pytest.raises(RaftConfigError):
        TcpTransport("n9", {"n1": ("127.0.0.1", 1)}, SECRET)
    with pytest.raises(RaftConfigError):
        parse_peer_addresses("n1=127.0.0.1")
