"""Signing and verifying the coordinator's dispatch headers: pure, no Redis, no broker."""
import hashlib
import hmac
import json
import random

import pytest

from omnimind.fence import Fence, Verdict, authenticate, parse_headers, sign_dispatch

SECRET = "test-secret-0123456789abcdef"


def test_signature_is_deterministic_hex_and_covers_every_field():
    base = sign_dispatch(SECRET, "retrain", 7, (3, 21))
    assert base == sign_dispatch(SECRET, "retrain", 7, Fence(3, 21)) == sign_dispatch(SECRET, "retrain", 7, [3, 21])
    assert len(base) == 64 and int(base, 16) >= 0 and base == base.lower()
    variants = [
        sign_dispatch(SECRET, "retrain2", 7, (3, 21)),
        sign_dispatch(SECRET, "retrain", 8, (3, 21)),
        sign_dispatch(SECRET, "retrain", 7, (4, 21)),
        sign_dispatch(SECRET, "retrain", 7, (3, 22)),
        sign_dispatch(SECRET + "x", "retrain", 7, (3, 21)),
    ]
    assert base not in variants and len(set(variants)) == len(variants)


def test_fields_cannot_be_shifted_into_one_another():
    # A naive "entry|slot|term|index" string would let these collide; the JSON array does not.
    assert sign_dispatch(SECRET, "a", 12, (3, 4)) != sign_dispatch(SECRET, "a1", 2, (3, 4))
    assert sign_dispatch(SECRET, "a,1", 2, (3, 4)) != sign_dispatch(SECRET, "a", 1, (2, 3))


def test_the_key_is_derived_from_the_secret_not_the_secret_itself():
    message = json.dumps(["retrain", 7, 3, 21], separators=(",", ":")).encode()
    plain = hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()
    assert sign_dispatch(SECRET, "retrain", 7, (3, 21)) != plain


def test_signing_needs_a_secret():
    for secret in ("", None):
        with pytest.raises(ValueError):
            sign_dispatch(secret, "retrain", 1, (1, 1))


def test_authenticate_outcomes():
    good = sign_dispatch(SECRET, "retrain", 7, (3, 21))
    assert authenticate(SECRET, None, None, None) == Verdict("unscheduled")
    authentic = authenticate(SECRET, [3, 21], ["retrain", 7], good)
    assert (authentic.outcome, authentic.entry, authentic.slot) == ("authentic", "retrain", 7)
    assert authentic.fence == Fence(3, 21)
    assert authenticate(SECRET, (3, 21), ("retrain", 7), good).outcome == "authentic"  # tuples as well as lists
    assert authenticate(SECRET, [1_000_003, 1], ["retrain", 8], good).outcome == "forged"
    assert authenticate("another-secret-0123456789", [3, 21], ["retrain", 7], good).outcome == "forged"
    assert authenticate(SECRET, [3, 21], ["retrain", 7], None).outcome == "unsigned"
    for secret in (None, ""):
        assert authenticate(secret, [3, 21], ["retrain", 7], good).outcome == "unverifiable"
        assert authenticate(secret, None, None, None).outcome == "unscheduled"
    malformed = authenticate(SECRET, [3, 21], ["retrain"], good)
    assert malformed.outcome == "malformed" and malformed.entry is None and "slot header" in malformed.detail
    for bad in (None, "0" * 64, good.upper()):
        assert not authenticate(SECRET, [3, 21], ["retrain", 7], bad).accepted


@pytest.mark.parametrize("fence, slot", [
    ([1, 2], ["x" * 201, 1]), ([1, 2], ["", 1]), ([1, 2], [None, 1]), ([1, 2], ["retrain", None]),
    ([1.0, 2], ["retrain", 1]), ([1, False], ["retrain", 1]), ([1, 2, 3], ["retrain", 1]), ("1:2", ["retrain", 1]),
    ([1, 2], ["retrain", 2**53]), ([1, 2], ["retrain", -1]), ([1, 2], {"retrain": 1}),
])
def test_parse_headers_rejects_anything_but_the_coordinator_shape(fence, slot):
    with pytest.raises(ValueError):
        parse_headers(fence, slot)


def test_random_garbage_is_always_a_refusal_never_an_exception():
    rng = random.Random(11)
    atoms = [None, 0, 1, -1, 2**53, 2**64, 1.5, float("nan"), True, "", "retrain", "7", [], {}, [1], ["retrain"],
             [1, 2], ["retrain", 3], [[1], 2], "é" * 64, "0" * 64, b"bytes"]
    for _ in range(3000):
        fence, slot, signature = (rng.choice(atoms) for _ in range(3))
        verdict = authenticate(SECRET, fence, slot, signature)
        if (fence, slot, signature) == (None, None, None):
            assert verdict.outcome == "unscheduled"
        else:
            assert verdict.outcome in ("malformed", "unsigned", "forged"), (fence, slot, signature, verdict)
