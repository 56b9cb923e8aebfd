"""Asyncio TCP transport with HMAC-authenticated, length-prefixed frames (see :mod:`.framing`).

Each member listens on its own address and keeps one outbound connection per peer, fed by a bounded queue and
a dedicated sender task: a dead or slow peer fills (and overflows, oldest frame first) only its own queue.
Senders reconnect with exponential backoff. Rejected inbound frames are dropped, logged and counted in
:attr:`TcpTransport.dropped_frames` by reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping

from ..core.errors import RaftConfigError
from ..core.messages import Message
from .base import DeliverCallback, RaftTransport
from .framing import LENGTH_PREFIX, MAC_SIZE, FrameRejected, check_length, decode_frame_body, encode_frame

logger = logging.getLogger(__name__)

Address = tuple[str, int]


def parse_peer_addresses(spec: str) -> dict[str, Address]:
    """Parse ``"n1=127.0.0.1:7001,n2=127.0.0.1:7002"``; :class:`RaftConfigError` on duplicates or bad syntax.

    >>> parse_peer_addresses("n1=127.0.0.1:7001, n2=localhost:7002")
    {'n1': ('127.0.0.1', 7001), 'n2': ('localhost', 7002)}
    >>> parse_peer_addresses("n1=a:1,n1=b:2")
    Traceback (most recent call last):
    ...
    omnimind.scaling.raft.core.errors.RaftConfigError: duplicate member id 'n1' in the peer list
    """
    peers: dict[str, Address] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        node_id, _, address = item.partition("=")
        host, _, port = address.rpartition(":")
        if not node_id or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise RaftConfigError(f"peer {item!r} is not of the form id=host:port")
        if node_id in peers:
            raise RaftConfigError(f"duplicate member id {node_id!r} in the peer list")
        peers[node_id] = (host, int(port))
    return peers


def check_peers(node_id: str, peers: Mapping[str, Address]) -> None:
    """:class:`RaftConfigError` unless ``peers`` (every member, ``node_id`` included) is a usable group for
    ``node_id``: not empty, naming ``node_id``, one address per member.

    >>> check_peers("n3", parse_peer_addresses("n1=127.0.0.1:7001,n2=127.0.0.1:7002"))
    Traceback (most recent call last):
    ...
    omnimind.scaling.raft.core.errors.RaftConfigError: own id 'n3' is missing from the peer list ['n1', 'n2']
    """
    if not peers:
        raise RaftConfigError("the peer list (--raft-peers, OMNIMIND_RAFT_PEERS) is empty: list every member as "
                              "id=host:port")
    if node_id not in peers:
        raise RaftConfigError(f"own id {node_id!r} is missing from the peer list {sorted(peers)}")
    addresses = list(peers.values())
    if len(set(addresses)) != len(addresses):
        raise RaftConfigError(f"two members share an address in {dict(peers)}")


class TcpTransport(RaftTransport):
    """A member's TCP endpoint. ``peers`` maps every member id, our own included, to its address; we listen on
    ``peers[node_id]`` unless ``listen`` overrides it (port 0 picks a free port, see :attr:`listen_address`).

    >>> TcpTransport("n1", {"n1": ("127.0.0.1", 0)}, secret=b"")
    Traceback (most recent call last):
    ...
    omnimind.scaling.raft.core.errors.RaftConfigError: the Raft shared secret must not be empty
    """

    def __init__(self, node_id: str, peers: Mapping[str, Address], secret: bytes | str, *,
                 listen: Address | None = None, max_frame_bytes: int = 16 * 1024 * 1024,
                 send_queue_size: int = 1024, reconnect_min_delay: float = 0.02,
                 reconnect_max_delay: float = 1.0, connect_timeout: float = 1.0) -> None:
        if node_id not in peers:
            raise RaftConfigError(f"own id {node_id!r} is missing from the peer list {sorted(peers)}")
        self.secret = secret.encode() if isinstance(secret, str) else bytes(secret)
        if not self.secret:
            raise RaftConfigError("the Raft shared secret must not be empty")
        self.node_id = node_id
        self.peers = dict(peers)
        self.max_frame_bytes = max_frame_bytes
        self.send_queue_size = send_queue_size
        self.reconnect_min_delay = reconnect_min_delay
        self.reconnect_max_delay = reconnect_max_delay
        self.connect_timeout = connect_timeout
        self._listen = listen or self.peers[node_id]
        self._server: asyncio.base_events.Server | None = None
        self._deliver: DeliverCallback | None = None
        self._queues: dict[str, asyncio.Queue[bytes]] = {}
        self._senders: dict[str, asyncio.Task] = {}
        self._inbound: dict[asyncio.Task, asyncio.StreamWriter] = {}
        self._closing = False
        self._dropped: dict[str, int] = {}
        self._rng = random.Random()
        self.frames_sent = 0
        self.frames_received = 0
        self.connect_failures = 0

    @property
    def dropped_frames(self) -> dict[str, int]:
        """Dropped frames by reason: ``oversized``, ``unauthenticated``, ``malformed``, ``misaddressed`` (inbound),
        ``send_queue_full``, ``unknown_peer``, ``unencodable`` (outbound)."""
        return dict(self._dropped)

    @property
    def listen_address(self) -> Address:
        if self._server is None:
            return self._listen
        return self._server.sockets[0].getsockname()[:2]

    def _count_drop(self, reason: str, detail: str) -> None:
        count = self._dropped[reason] = self._dropped.get(reason, 0) + 1
        # The 1st, 2nd, 4th, 8th... of a kind: a steady source (a removed member that is still running keeps
        # asking for votes) must not flood the log; the counter has every one.
        if count & (count - 1) == 0:
            logger.warning("raft %s dropped a frame (%s, %d so far): %s", self.node_id, reason, count, detail)

    async def start(self, deliver: DeliverCallback) -> None:
        self._deliver = deliver
        host, port = self._listen
        try:
            self._server = await asyncio.start_server(self._serve_connection, host, port)
        except OSError as error:
            raise RaftConfigError(f"cannot listen on {host}:{port}: {error}") from error
        for peer in self.peers:
            if peer != self.node_id:
                self._start_sender(peer)

    def _start_sender(self, peer: str) -> None:
        self._queues[peer] = asyncio.Queue(self.send_queue_size)
        self._senders[peer] = asyncio.create_task(self._send_loop(peer), name=f"raft-send-{self.node_id}-{peer}")

    def update_peers(self, peers: Mapping[str, Address]) -> None:
        """Follow a membership change: send to new members, stop sending to (and accepting from) removed ones,
        re-dial a member whose address changed. Our own listening address never changes."""
        peers = {peer: address for peer, address in peers.items() if peer != self.node_id}
        for peer in list(self._senders):
            if peers.get(peer) != self.peers.get(peer):
                self._senders.pop(peer).cancel()  # its frames are dropped with it; Raft resends what matters
                del self._queues[peer]
        self.peers = {**peers, self.node_id: self.peers[self.node_id]}
        if self._server is not None and not self._closing:
            for peer in peers:
                if peer not in self._senders:
                    self._start_sender(peer)

    def send(self, message: Message) -> None:
        queue = self._queues.get(message.recipient)
        if queue is None:
            self._count_drop("unknown_peer", f"no peer {message.recipient!r}")
            return
        try:
            frame = encode_frame(message, self.secret)
        except (TypeError, ValueError) as error:
            self._count_drop("unencodable", str(error))
            return
        if queue.full():
            # Raft resends whatever matters; the newest messages are the most useful, so shed the oldest.
            queue.get_nowait()
            self._count_drop("send_queue_full", f"queue to {message.recipient} is full")
        queue.put_nowait(frame)

    async def _send_loop(self, peer: str) -> None:
        host, port = self.peers[peer]
        queue = self._queues[peer]
        backoff = self.reconnect_min_delay
        while True:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), self.connect_timeout)
            except (OSError, asyncio.TimeoutError):
                self.connect_failures += 1
                await asyncio.sleep(backoff * (0.5 + self._rng.random()))  # jitter avoids reconnect storms
                backoff = min(backoff * 2, self.reconnect_max_delay)
                continue
            backoff = self.reconnect_min_delay
            try:
                while True:
                    writer.write(await queue.get())
                    sent = 1
                    while not queue.empty():  # coalesce whatever piled up into one drain
                        writer.write(queue.get_nowait())
                        sent += 1
                    await writer.drain()
                    self.frames_sent += sent
            except (OSError, ConnectionError):
                logger.info("raft %s lost its connection to %s; reconnecting", self.node_id, peer)
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:  # accepted just before the server closed
            writer.close()
            return
        handler = asyncio.current_task()
        self._inbound[handler] = writer
        try:
            while True:
                (length,) = LENGTH_PREFIX.unpack(await reader.readexactly(LENGTH_PREFIX.size))
                try:
                    check_length(length, self.max_frame_bytes)
                    body = await reader.readexactly(length)
                    message = decode_frame_body(body, await reader.readexactly(MAC_SIZE), self.secret)
                except FrameRejected as rejection:
                    self._count_drop(rejection.reason, str(rejection))
                    if rejection.fatal:
                        return
                    continue
                if message.recipient != self.node_id or message.sender not in self.peers:
                    self._count_drop("misaddressed", f"{message.sender} -> {message.recipient}")
                    continue
                self.frames_received += 1
                if self._deliver is not None:
                    self._deliver(message)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass  # the peer went away; it reconnects on its own
        finally:
            self._inbound.pop(handler, None)
            writer.close()

    async def stop(self) -> None:
        self._deliver = None
        self._closing = True
        pending = set(self._senders.values())
        while pending:
            # Python < 3.12's wait_for can swallow a cancellation that races with open_connection completing,
            # so keep cancelling until every sender has really finished.
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.1)
        self._senders.clear()
        if self._server is not None:
            self._server.close()
            handlers = list(self._inbound)
            for writer in self._inbound.values():
                writer.close()  # the handlers see EOF and return on their own
            await asyncio.gather(*handlers, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
