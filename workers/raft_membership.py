"""Membership changes on the member that leads: the requests ``omnimind raft add|remove`` queue in Redis.

Runs on the member's event loop (:mod:`workers.raft_member`) next to its status publisher. Only the leader
pops a request (:mod:`omnimind.scaling.membership_requests` has the protocol); it handles one at a time, as
single-server changes must follow one another anyway, and writes the outcome for the CLI. A request that
needs the next leader (removing this one, or leadership lost meanwhile) goes back to the head of the list.
"""
from __future__ import annotations

import asyncio
import logging

import redis

from omnimind import keys
from omnimind.observability import metrics
from omnimind.scaling.membership_requests import MembershipRequest, RequestRefused, write_result
from omnimind.scaling.raft import NotLeader, RaftError, add_member, remove_member

logger = logging.getLogger(__name__)

#: How often the leader looks for requests.
POLL_S = 0.25
#: Longest one change may take (for an add: the learner's catch-up included).
CHANGE_TIMEOUT_S = 60.0


async def serve_membership_requests(member) -> None:
    """Forever: while ``member`` (a ``CoordinatorMember``) leads, carry out queued membership requests."""
    for outcome in metrics.RAFT_MEMBERSHIP_OUTCOMES:
        metrics.raft_membership_requests.labels(outcome=outcome)  # at 0, so the first event is an increase
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(POLL_S)
        if not member.node.is_leader:
            continue
        try:
            raw = await loop.run_in_executor(None, member.redis.lpop, keys.RAFT_MEMBERSHIP_REQUESTS)
        except redis.RedisError as exc:
            logger.debug("Raft membership requests not read: %s", exc)
            continue
        if raw is None:
            continue
        try:
            outcome = await carry_out(member, raw)
        except Exception:  # e.g. Redis gone while reporting: this loop must outlive any one request
            logger.exception("Raft member %s: a membership request failed", member.config.member_id)
            outcome = "failed"
        metrics.raft_membership_requests.labels(outcome=outcome).inc()


async def carry_out(member, raw: bytes) -> str:
    """Verify and carry out one request; returns the outcome label."""
    loop = asyncio.get_running_loop()
    try:
        request = MembershipRequest.verified(raw, member.config.secret)
    except RequestRefused as exc:
        logger.warning("Raft member %s refused a membership request: %s", member.config.member_id, exc)
        return "refused"
    node = member.node
    try:
        if request.op == "add":
            config = await add_member(node, request.member, request.address, timeout=CHANGE_TIMEOUT_S)
        else:
            config = await remove_member(node, request.member, timeout=CHANGE_TIMEOUT_S)
    except NotLeader as exc:
        logger.info("Raft member %s hands %s %s to the next leader (%s)", member.config.member_id, request.op,
                    request.member, exc)
        await loop.run_in_executor(None, member.redis.lpush, keys.RAFT_MEMBERSHIP_REQUESTS, raw)
        return "handed_over"
    except (RaftError, asyncio.TimeoutError) as exc:
        detail = f"{request.op} {request.member} failed: {type(exc).__name__}: {exc}"
        logger.warning("Raft member %s: %s", member.config.member_id, detail)
        await loop.run_in_executor(None, lambda: write_result(member.redis, request.request_id, False, detail))
        return "failed"
    detail = f"{request.op} {request.member}: voters {', '.join(config.voters)}"
    if config.learners:
        detail += f"; learners {', '.join(config.learners)}"
    logger.info("Raft member %s: %s", member.config.member_id, detail)
    await loop.run_in_executor(None, lambda: write_result(
        member.redis, request.request_id, True, detail, voters=list(config.voters), learners=list(config.learners),
        leader=member.config.member_id))
    return "done"
