"""An in-process network with fault injection, for tests and simulations.

The network decides the fate of every message (:meth:`InProcessNetwork.route`): dropped, or delivered after a
delay. It holds no clock itself, so the same fault model serves both the asyncio transport below (delays
become ``loop.call_later``) and the tick-driven :mod:`~omnimind.scaling.raft.simulation`.
"""

from __future__ import annotations

import asyncio
import random
import weakref

from ..core.errors import RaftConfigError
from ..core.messages import Message, MessageType  # noqa: F401  (MessageType: doctest)
from .base import DeliverCallback, RaftTransport


class InProcessNetwork:
    """Links between in-process members, with seeded random faults.

    >>> network = InProcessNetwork(rng=random.Random(1))
    >>> hello = Message(MessageType.HEARTBEAT, sender="a", recipient="b", term=1)
    >>> network.route(hello)
    0.0
    >>> network.cut("a", "b"); network.route(hello) is None
    True
    >>> network.recover(); network.delay(0.01, 0.02); 0.01 <= network.route(hello) <= 0.02
    True
    >>> network.dropped_messages
    1
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random(0)
        self._isolated: set[str] = set()
        self._cut_links: set[frozenset[str]] = set()
        self._drop_probability = 0.0
        self._delay = (0.0, 0.0)
        self._endpoints: dict[str, InProcessTransport] = {}
        self._dropped_messages = 0

    # -- faults ------------------------------------------------------------------------------------------------
    def isolate(self, node_id: str) -> None:
        """Cut ``node_id`` off from every other member, both directions."""
        self._isolated.add(node_id)

    def cut(self, a: str, b: str) -> None:
        """Break the link between ``a`` and ``b``, both directions."""
        self._cut_links.add(frozenset((a, b)))

    def drop(self, probability: float) -> None:
        """Lose each message independently with ``probability``."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"drop probability must be within [0, 1], got {probability}")
        self._drop_probability = probability

    def delay(self, minimum: float, maximum: float | None = None) -> None:
        """Deliver each message after a uniform random delay in seconds (which reorders messages)."""
        maximum = minimum if maximum is None else maximum
        if not 0.0 <= minimum <= maximum:
            raise ValueError(f"need 0 <= minimum <= maximum, got {minimum}, {maximum}")
        self._delay = (minimum, maximum)

    def recover(self) -> None:
        """Heal every fault: no isolation, cuts, drops or delays."""
        self._isolated.clear()
        self._cut_links.clear()
        self._drop_probability = 0.0
        self._delay = (0.0, 0.0)

    @property
    def dropped_messages(self) -> int:
        return self._dropped_messages

    def route(self, message: Message) -> float | None:
        """The delivery delay in seconds for ``message``, or ``None`` if the faults drop it."""
        sender, recipient = message.sender, message.recipient
        if (sender in self._isolated or recipient in self._isolated
                or frozenset((sender, recipient)) in self._cut_links
                or (self._drop_probability and self.rng.random() < self._drop_probability)):
            self._dropped_messages += 1
            return None
        low, high = self._delay
        return low if low == high else self.rng.uniform(low, high)

    # -- asyncio endpoints -------------------------------------------------------------------------------------
    def transport(self, node_id: str) -> InProcessTransport:
        """An asyncio endpoint for ``node_id`` on this network."""
        return InProcessTransport(self, node_id)

    def _attach(self, endpoint: InProcessTransport) -> None:
        if endpoint.node_id in self._endpoints:
            raise RaftConfigError(f"member id {endpoint.node_id!r} is already attached to this network")
        self._endpoints[endpoint.node_id] = endpoint

    def _detach(self, endpoint: InProcessTransport) -> None:
        if self._endpoints.get(endpoint.node_id) is endpoint:
            del self._endpoints[endpoint.node_id]

    def _deliver(self, message: Message) -> None:
        endpoint = self._endpoints.get(message.recipient)
        if endpoint is None:
            self._dropped_messages += 1  # the recipient is down
        else:
            endpoint._receive(message)

    @classmethod
    def for_running_loop(cls) -> InProcessNetwork:
        """The default network of the running event loop: members created without a transport meet here, and
        each loop (each test) gets its own, so member ids never collide across tests."""
        loop = asyncio.get_running_loop()
        network = _networks_by_loop.get(loop)
        if network is None:
            network = _networks_by_loop[loop] = cls()
        return network


_networks_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, InProcessNetwork] = (
    weakref.WeakKeyDictionary())


class InProcessTransport(RaftTransport):
    """An asyncio endpoint on an :class:`InProcessNetwork`.

    >>> async def exchange():
    ...     network, inbox = InProcessNetwork(), []
    ...     a, b = network.transport("a"), network.transport("b")
    ...     await a.start(inbox.append); await b.start(inbox.append)
    ...     a.send(Message(MessageType.HEARTBEAT, sender="a", recipient="b", term=1))
    ...     await asyncio.sleep(0)
    ...     await a.stop(); await b.stop()
    ...     return [message.recipient for message in inbox]
    >>> asyncio.run(exchange())
    ['b']
    """

    def __init__(self, network: InProcessNetwork, node_id: str) -> None:
        self.network = network
        self.node_id = node_id
        self._deliver: DeliverCallback | None = None

    async def start(self, deliver: DeliverCallback) -> None:
        self._deliver = deliver
        self.network._attach(self)

    def send(self, message: Message) -> None:
        delay = self.network.route(message)
        if delay is None:
            return
        loop = asyncio.get_running_loop()
        if delay:
            loop.call_later(delay, self.network._deliver, message)
        else:
            loop.call_soon(self.network._deliver, message)

    def _receive(self, message: Message) -> None:
        if self._deliver is not None:
            self._deliver(message)

    async def stop(self) -> None:
        self.network._detach(self)
        self._deliver = None

    @property
    def dropped_frames(self) -> dict[str, int]:
        return {}
