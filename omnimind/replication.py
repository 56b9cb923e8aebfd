"""Fence-advancing writes that a Sentinel failover cannot undo: Redis ``WAIT``.

Redis replicates asynchronously: the master answers a write before any replica has
it, and a replica promoted after the master died lacks whatever had not reached it.
For most of OmniMind's keys that costs a few heartbeats or experience samples (see
README, "Redis Sentinel"). For a fence it would cost safety: a dispatch accepted at
term 5 and then lost leaves the new master at term 4, where a deposed leader of term 4
is accepted again, after a term-5 action already ran.

So a write that advances a fence (``DispatchGuard.accept``, ``ModelStore.publish`` and
``rollback``) sends ``WAIT <replicas> <timeout ms>`` on the same connection, in the same
pipeline, and counts as done only when enough replicas confirmed it: the consumer runs
the dispatch, the publisher reports the version. Otherwise the dispatch is refused as
``unreplicated`` (its slot is skipped: the next one runs) and a publish or rollback
raises :class:`NotReplicated`; a failover may then undo the write, but nothing acted on
it. Replication is one ordered stream, so a replica that has this write has every
earlier one, the fence's current value included. Sentinel promotes the replica with
the largest replication offset among those it can reach: with one replica, or with
``replicas`` equal to the number of replicas, a confirmed fence survives any single
failover.

>>> quorum = ReplicaQuorum(replicas=1, timeout=0.25)
>>> quorum.wait_args()
('WAIT', 1, 250)
>>> quorum.check(1, "dispatch")
>>> quorum.check(0, "dispatch")
Traceback (most recent call last):
...
omnimind.replication.NotReplicated: dispatch: confirmed by 0 of the 1 replica(s) required within 0.25 s
"""
from __future__ import annotations

from dataclasses import dataclass

import redis

from omnimind.observability import metrics

__all__ = ["NotReplicated", "ReplicaQuorum"]


class NotReplicated(redis.exceptions.RedisError):
    """The master took a fence-advancing write, but too few replicas confirmed it in time:
    a failover may undo it, so it does not count. A RedisError, so callers that retry
    on a Redis hiccup (the learner's next publish, the next retrain) retry this too.

    >>> isinstance(NotReplicated("publish", 0, 1, 1.0), redis.exceptions.RedisError)
    True
    """

    def __init__(self, operation: str, confirmed: int, required: int, timeout: float) -> None:
        super().__init__(f"{operation}: confirmed by {confirmed} of the {required} replica(s) required "
                         f"within {timeout:g} s")
        self.operation, self.confirmed, self.required = operation, confirmed, required


@dataclass(frozen=True)
class ReplicaQuorum:
    """How many replicas must confirm a fence-advancing write, and how long to wait for them
    (``OMNIMIND_REDIS_MIN_REPLICAS``, ``OMNIMIND_REDIS_WAIT_TIMEOUT``). With ``replicas=0``
    (a lone Redis) nothing waits.

    >>> ReplicaQuorum().wait_args() is None, ReplicaQuorum(2, 1.0).timeout_ms
    (True, 1000)
    """

    replicas: int = 0
    timeout: float = 1.0

    @classmethod
    def from_settings(cls, settings=None) -> "ReplicaQuorum":
        if settings is None:
            from omnimind.config import get_settings

            settings = get_settings()
        return cls(settings.redis_min_replicas, settings.redis_wait_timeout)

    @property
    def timeout_ms(self) -> int:
        return max(1, round(self.timeout * 1000))

    def wait_args(self) -> tuple | None:
        """The WAIT command to append to the write's pipeline, or None when nothing waits."""
        return ("WAIT", self.replicas, self.timeout_ms) if self.replicas > 0 else None

    def wait_on(self, pipe) -> None:
        """Append the WAIT to the write's own pipeline (WAIT waits for what its connection wrote)."""
        if self.wait_args():
            pipe.execute_command(*self.wait_args())

    def check(self, confirmed: int, operation: str) -> None:
        """Raise :class:`NotReplicated` (and count it) if WAIT's reply is short of the quorum."""
        if self.replicas and int(confirmed) < self.replicas:
            metrics.unreplicated_writes.labels(operation=operation).inc()
            raise NotReplicated(operation, int(confirmed), self.replicas, self.timeout)
