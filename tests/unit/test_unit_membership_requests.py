"""Signed membership change requests: what the leading member accepts and refuses."""
import json

import pytest

from omnimind.scaling import membership_requests
from omnimind.scaling.membership_requests import MAX_REQUEST_AGE_S, MembershipRequest, RequestRefused

SECRET = "group-secret-0123456789"


def test_a_signed_request_round_trips():
    request = MembershipRequest.add("n4", "10.0.0.4:7001", issued_at=1000.0)
    assert MembershipRequest.verified(request.signed(SECRET), SECRET, now=1001.0) == request


def test_an_old_request_is_refused():
    request = MembershipRequest.remove("n3", issued_at=1000.0)
    with pytest.raises(RequestRefused, match="old"):
        MembershipRequest.verified(request.signed(SECRET), SECRET, now=1000.0 + MAX_REQUEST_AGE_S + 1)


def test_a_tampered_request_is_refused():
    envelope = json.loads(MembershipRequest.remove("n3", issued_at=1000.0).signed(SECRET))
    envelope["body"] = envelope["body"].replace("n3", "n1")
    with pytest.raises(RequestRefused, match="signature"):
        MembershipRequest.verified(json.dumps(envelope), SECRET, now=1001.0)


@pytest.mark.parametrize("fields", [
    {"op": "promote", "member": "n3", "address": "", "request_id": "x", "issued_at": 1.0},
    {"op": "add", "member": "n4", "address": "", "request_id": "x", "issued_at": 1.0},
    {"op": "remove", "member": "n3", "address": "", "request_id": "x", "issued_at": "soon"},
    {"op": "remove", "member": 3, "address": "", "request_id": "x", "issued_at": 1.0},
    {"op": "remove", "member": "n3", "address": "", "request_id": "x", "issued_at": 1.0, "extra": 1},
])
def test_malformed_requests_are_refused_even_when_signed(fields):
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    envelope = {"body": body, "mac": membership_requests._mac(body, SECRET)}  # signed as the CLI signs
    with pytest.raises(RequestRefused, match="malformed"):
        MembershipRequest.verified(json.dumps(envelope), SECRET, now=2.0)
    with pytest.raises(RequestRefused, match="malformed"):
        MembershipRequest.verified(b"not json", SECRET)
