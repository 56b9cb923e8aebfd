"""Telling the outside world about a member's state changes: leadership listeners and condition waiters."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: Called with ``(leader_id, term)``; ``leader_id`` is ``None`` while no leader is known.
LeadershipListener = Callable[[str | None, int], None]


class StateChangeNotifier:
    """Calls leadership listeners and wakes coroutines waiting for a condition on the member's state.

    >>> async def demo():
    ...     notifier, state = StateChangeNotifier(), {"leader": None}
    ...     waiting = asyncio.ensure_future(notifier.wait_until(lambda: state["leader"] == "n2"))
    ...     await asyncio.sleep(0)
    ...     state["leader"] = "n2"; notifier.state_changed()
    ...     await waiting
    ...     return waiting.done()
    >>> asyncio.run(demo())
    True
    """

    def __init__(self) -> None:
        self._listeners: list[LeadershipListener] = []
        self._waiters: list[asyncio.Future[None]] = []

    def add_leadership_listener(self, listener: LeadershipListener) -> Callable[[], None]:
        """Register ``listener``; returns a function that unregisters it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def leadership_changed(self, leader_id: str | None, term: int) -> None:
        for listener in list(self._listeners):
            try:
                listener(leader_id, term)
            except Exception:  # one broken listener must not stop the member or the other listeners
                logger.exception("raft leadership listener %r failed", listener)

    def state_changed(self) -> None:
        """Wake every waiter so it re-checks its condition."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_until(self, predicate: Callable[[], bool],
                         give_up: Callable[[], Exception | None] = lambda: None) -> None:
        """Return once ``predicate()`` holds; raise what ``give_up()`` returns as soon as it returns an error."""
        while not predicate():
            error = give_up()
            if error is not None:
                raise error
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
