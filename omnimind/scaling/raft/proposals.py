"""Client proposals waiting for their entry to be committed and applied."""

from __future__ import annotations

import asyncio

from .core.errors import NotLeader
from .core.messages import LogEntry


class PendingProposals:
    """Futures of proposed entries, keyed by log index. An entry applied at that index with the proposal's term
    resolves it; a different term there means a newer leader overwrote it.

    >>> async def demo():
    ...     pending = PendingProposals()
    ...     future = pending.add(LogEntry(term=2, index=5, command="x"))
    ...     pending.resolve(LogEntry(term=2, index=5, command="x"), leader_hint="n1")
    ...     return (await future).index
    >>> asyncio.run(demo())
    5
    """

    def __init__(self) -> None:
        self._futures: dict[int, tuple[int, asyncio.Future[LogEntry]]] = {}

    def __len__(self) -> int:
        return len(self._futures)

    def add(self, entry: LogEntry) -> asyncio.Future[LogEntry]:
        future: asyncio.Future[LogEntry] = asyncio.get_running_loop().create_future()
        self._futures[entry.index] = (entry.term, future)
        return future

    def resolve(self, applied: LogEntry, leader_hint: str | None) -> None:
        term, future = self._futures.pop(applied.index, (None, None))
        if future is None or future.done():
            return
        if term == applied.term:
            future.set_result(applied)
        else:
            future.set_exception(NotLeader("the proposal was overwritten by a newer leader", leader_hint))

    def fail(self, error: Exception, up_to: int | None = None) -> None:
        """Fail every proposal (or those at indices up to ``up_to``) with ``error``."""
        for index in [index for index in self._futures if up_to is None or index <= up_to]:
            _, future = self._futures.pop(index)
            if not future.done():
                future.set_exception(error)
