"""What a Raft member tells the outside: its status key in Redis and its metrics.

Runs on the member's event loop (:mod:`workers.raft_member`), every ``STATUS_EVERY_S``;
``omnimind status`` reads the key, Prometheus scrapes the gauges and counters.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os

import redis

from omnimind import keys
from omnimind.observability import metrics

logger = logging.getLogger(__name__)

STATUS_EVERY_S = 0.25


class _Counted:
    """Turns the node's running totals into counter increments."""

    def __init__(self) -> None:
        self.seen: dict = {"leader_changes": 0, "elections": 0, "dropped": {}}

    def count(self, name: str, total: int, counter) -> None:
        if total > self.seen[name]:
            counter.inc(total - self.seen[name])
            self.seen[name] = total

    def count_dropped(self, dropped: dict) -> None:
        for reason, total in dropped.items():
            seen = self.seen["dropped"].get(reason, 0)
            if total > seen:
                metrics.raft_dropped_frames.labels(reason=reason).inc(total - seen)
                self.seen["dropped"][reason] = total


async def publish_status(member) -> None:
    """Forever: publish ``member``'s (a ``CoordinatorMember``) status and metrics."""
    member_id = member.config.member_id
    counted = _Counted()
    loop = asyncio.get_running_loop()
    while True:
        node = member.node
        status = {
            "member_id": member_id,
            "state": node.state.value,
            "term": node.current_term,
            "leader_id": node.leader_id,
            "commit_index": node.commit_index,
            "last_applied": node.last_applied,
            "sending": member.sending,
            "leader_since": member.leader_since,
            "pid": os.getpid(),
            "voters": list(node.core.voters),
            "learners": list(node.core.learners),
        }
        for role, members in (("voter", node.core.voters), ("learner", node.core.learners)):
            metrics.raft_members.labels(node_id=member_id, role=role).set(len(members))
        metrics.raft_term.labels(node_id=member_id).set(node.current_term)
        metrics.raft_is_leader.labels(node_id=member_id).set(1 if node.is_leader else 0)
        metrics.raft_commit_index.labels(node_id=member_id).set(node.commit_index)
        counted.count("leader_changes", node.leader_changes, metrics.raft_leader_changes.labels(node_id=member_id))
        counted.count("elections", node.elections_started, metrics.raft_elections.labels(node_id=member_id))
        counted.count_dropped(node.dropped_frames)
        try:
            await loop.run_in_executor(
                None, lambda: member.redis.set(keys.raft_member(member_id), json.dumps(status), ex=5)
            )
        except redis.RedisError as exc:
            logger.debug("Raft status not published: %s", exc)
        await asyncio.sleep(STATUS_EVERY_S)
