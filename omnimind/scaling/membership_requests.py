"""Membership change requests from ``omnimind raft add|remove`` to whichever member leads the Raft group.

The CLI cannot know which member leads at the moment its request lands, and the lead may move meanwhile, so
requests go through Redis: the CLI pushes a request signed with the group's shared secret
(``OMNIMIND_RAFT_SECRET``, HMAC-SHA256 under a key derived for requests) onto a list; the member that leads pops it,
checks the signature and age, proposes the change and writes the outcome where the CLI waits for it. A leader
that has to hand leadership over (removing itself) pushes the request back for its successor. Requests are
idempotent (adding a voter or removing a non-member changes nothing), so a redelivery is harmless.

>>> request = MembershipRequest.add("n4", "10.0.0.4:7001", issued_at=100.0)
>>> signed = request.signed("a-shared-secret-of-16+ bytes")
>>> MembershipRequest.verified(signed, "a-shared-secret-of-16+ bytes", now=101.0) == request
True
>>> MembershipRequest.verified(signed, "another secret", now=101.0)
Traceback (most recent call last):
...
omnimind.scaling.membership_requests.RequestRefused: bad signature: not signed with this group's secret
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import asdict, dataclass

from omnimind import keys
from omnimind.errors import OmniMindError

#: A request older than this is refused (a replayed or long-forgotten one).
MAX_REQUEST_AGE_S = 300.0
#: How long an outcome stays readable.
RESULT_TTL_S = 600
OPERATIONS = ("add", "remove")
_KEY_CONTEXT = b"omnimind raft membership request v1"


class RequestRefused(OmniMindError):
    """A membership request is malformed, unsigned, wrongly signed or too old.

    >>> str(RequestRefused("too old"))
    'too old'
    """


@dataclass(frozen=True)
class MembershipRequest:
    """One change: ``op`` ``add`` (with ``address`` ``host:port``) or ``remove`` of ``member``.

    >>> MembershipRequest.remove("n3", issued_at=5.0).op
    'remove'
    """

    op: str
    member: str
    address: str
    request_id: str
    issued_at: float

    @classmethod
    def add(cls, member: str, address: str, issued_at: float | None = None) -> MembershipRequest:
        return cls("add", member, address, uuid.uuid4().hex, time.time() if issued_at is None else issued_at)

    @classmethod
    def remove(cls, member: str, issued_at: float | None = None) -> MembershipRequest:
        return cls("remove", member, "", uuid.uuid4().hex, time.time() if issued_at is None else issued_at)

    def signed(self, secret: str) -> str:
        body = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return json.dumps({"body": body, "mac": _mac(body, secret)})

    @classmethod
    def verified(cls, raw: str | bytes, secret: str, now: float | None = None) -> MembershipRequest:
        """The request in ``raw`` if it is well formed, signed with ``secret`` and recent; else
        :class:`RequestRefused`."""
        try:
            envelope = json.loads(raw)
            body, mac = envelope["body"], envelope["mac"]
        except (ValueError, TypeError, KeyError):
            raise RequestRefused("malformed request") from None
        if not isinstance(body, str) or not isinstance(mac, str) or not hmac.compare_digest(_mac(body, secret), mac):
            raise RequestRefused("bad signature: not signed with this group's secret")
        try:
            request = cls(**json.loads(body))
        except (ValueError, TypeError):
            raise RequestRefused("malformed request body") from None
        texts = (request.op, request.member, request.address, request.request_id)
        if (not all(isinstance(text, str) for text in texts) or isinstance(request.issued_at, bool)
                or not isinstance(request.issued_at, (int, float)) or request.op not in OPERATIONS
                or not request.member or (request.op == "add" and not request.address)):
            raise RequestRefused(f"malformed request {request}")
        age = (time.time() if now is None else now) - request.issued_at
        if age > MAX_REQUEST_AGE_S:
            raise RequestRefused(f"request {request.request_id} is {age:.0f} s old")
        return request


def _mac(body: str, secret: str) -> str:
    # A key of its own, derived from the group's secret: nothing else signed with that
    # secret (Raft frames, dispatch fences) can pass for a membership request.
    key = hmac.new(secret.encode(), _KEY_CONTEXT, hashlib.sha256).digest()
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def submit(client, request: MembershipRequest, secret: str) -> None:
    """Queue ``request`` for the leader."""
    client.rpush(keys.RAFT_MEMBERSHIP_REQUESTS, request.signed(secret))


def write_result(client, request_id: str, ok: bool, detail: str, **extra) -> None:
    outcome = {"ok": ok, "detail": detail, **extra}
    client.set(keys.raft_membership_result(request_id), json.dumps(outcome), ex=RESULT_TTL_S)


def wait_result(client, request_id: str, timeout: float, interval: float = 0.1) -> dict | None:
    """The outcome of ``request_id`` once written; ``None`` if none came within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        raw = client.get(keys.raft_membership_result(request_id))
        if raw is not None:
            return json.loads(raw)
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)
