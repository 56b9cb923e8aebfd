"""The transport contract between a Raft runner and its peers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping

from ..core.messages import Message

#: Called with every message that arrives for this member, on the event loop thread.
DeliverCallback = Callable[[Message], None]


class RaftTransport(ABC):
    """One member's endpoint. Delivery is best effort — Raft tolerates loss, duplication and reordering — but
    :meth:`send` must never block, so one dead peer cannot stall the others.

    >>> from omnimind.scaling.raft.transport import InProcessNetwork
    >>> isinstance(InProcessNetwork().transport("n1"), RaftTransport)
    True
    """

    node_id: str

    @abstractmethod
    async def start(self, deliver: DeliverCallback) -> None:
        """Start accepting messages, handing each to ``deliver``."""

    @abstractmethod
    def send(self, message: Message) -> None:
        """Queue ``message`` for ``message.recipient``; may drop it."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop sending and receiving and release resources."""

    def update_peers(self, peers: Mapping[str, tuple[str, int]]) -> None:  # noqa: B027  (an optional hook)
        """Follow a membership change (``peers``: every member's address); the default reaches anyone."""

    @property
    def dropped_frames(self) -> dict[str, int]:
        """Messages dropped by this endpoint, by reason (for metrics)."""
        return {}
