"""``omnimind raft status | add ID=HOST:PORT | remove ID``: the coordinator group's members and changes to them.

``omnimind/cli.py`` wires these in with ``add_raft_commands(sub)``. ``status`` reads what the members publish;
``add`` and ``remove`` queue a request signed with ``OMNIMIND_RAFT_SECRET`` that the leading member carries
out (see :mod:`omnimind.scaling.membership_requests`), and wait for its outcome. Exit codes: 0 done, 1 refused
or no outcome in time (the request may still be carried out: it stays queued until a leader takes it), 2 bad
input (no secret, a malformed ``ID=HOST:PORT``).

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="omnimind")
>>> _ = add_raft_commands(parser.add_subparsers(dest="command"))
>>> args = parser.parse_args(["raft", "add", "n4=10.0.0.4:7001"])
>>> args.member, args.func.__name__
('n4=10.0.0.4:7001', 'cmd_raft_add')
"""
from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_raft_commands"]


def add_raft_commands(subparsers) -> argparse.ArgumentParser:
    """Add ``raft status | add | remove`` to an argparse subparsers object."""
    raft = subparsers.add_parser("raft", help="the Raft coordinator group: status, add or remove a member")
    commands = raft.add_subparsers(dest="raft_command", required=True)
    status = commands.add_parser("status", help="members, roles, terms and the configuration in effect")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_raft_status)
    add = commands.add_parser(
        "add", help="add a member (started with OMNIMIND_RAFT_JOIN=1): a learner first, a voter once caught up")
    add.add_argument("member", metavar="ID=HOST:PORT", help="the new member's id and Raft address")
    add.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the outcome")
    add.set_defaults(func=cmd_raft_add)
    remove = commands.add_parser("remove", help="remove a member (the leader hands leadership over first)")
    remove.add_argument("member", metavar="ID")
    remove.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the outcome")
    remove.set_defaults(func=cmd_raft_remove)
    return raft


def cmd_raft_status(args) -> int:
    from omnimind.status import newest_leader, raft_members

    members = raft_members(_client(_settings()))
    leader = newest_leader(members.values())
    config = leader or max(members.values(), key=lambda m: m["term"], default=None)
    voters, learners = (config.get("voters", []), config.get("learners", [])) if config else ([], [])
    if args.json:
        print(json.dumps({"leader": leader["member_id"] if leader else None, "voters": voters,
                          "learners": learners, "members": members}, indent=2))
        return 0
    print(f"leader {leader['member_id']} term {leader['term']}" if leader else "no leader")
    print(f"voters   {' '.join(voters) or '-'}")
    print(f"learners {' '.join(learners) or '-'}")
    for member_id in sorted(set(members) | set(voters) | set(learners)):
        status = members.get(member_id)
        role = "voter" if member_id in voters else "learner" if member_id in learners else "not a member"
        if status is None:
            print(f"  {member_id:<10} {role:<12} no status (down?)")
        else:
            print(f"  {member_id:<10} {role:<12} {status['state']:<9} term {status['term']} "
                  f"commit {status['commit_index']} applied {status['last_applied']}")
    return 0


def cmd_raft_add(args) -> int:
    member, _, address = args.member.partition("=")
    from omnimind.scaling.raft import RaftConfigError, parse_peer_addresses

    try:
        parse_peer_addresses(args.member)
    except RaftConfigError as exc:
        print(f"omnimind: {exc}", file=sys.stderr)
        return 2
    from omnimind.scaling.membership_requests import MembershipRequest

    return _request(MembershipRequest.add(member, address), args.timeout)


def cmd_raft_remove(args) -> int:
    from omnimind.scaling.membership_requests import MembershipRequest

    return _request(MembershipRequest.remove(args.member), args.timeout)


def _request(request, timeout: float) -> int:
    from omnimind.scaling.membership_requests import submit, wait_result

    settings = _settings()
    if not settings.raft_secret:
        print("omnimind: set OMNIMIND_RAFT_SECRET to the group's shared secret: requests are signed with it",
              file=sys.stderr)
        return 2
    client = _client(settings)
    submit(client, request, settings.raft_secret)
    outcome = wait_result(client, request.request_id, timeout)
    if outcome is None:
        print(f"omnimind: no outcome within {timeout:.0f} s (is a leader up?); the request stays queued",
              file=sys.stderr)
        return 1
    print(outcome["detail"], file=sys.stdout if outcome["ok"] else sys.stderr)
    return 0 if outcome["ok"] else 1


def _settings():
    from omnimind.config import Settings

    return Settings.from_env()


def _client(settings):
    """OmniMind's Redis, also behind Sentinel (``omnimind.redis_client``)."""
    from omnimind.redis_client import redis_client

    return redis_client(settings.redis_url, settings.sentinel_master)
