"""DispatchGuard against a real redis-server: fences, slots, redelivery, forgeries."""
import pytest
from prometheus_client import REGISTRY

from omnimind import keys
from omnimind.fence import sign_dispatch
from omnimind.scaling.dispatch import DispatchGuard

SECRET = "test-secret-0123456789abcdef"


def signed(guard, fence, slot, task_id):
    """``guard.accept`` with headers signed as the coordinator signs them."""
    return guard.accept(fence, slot, task_id, sign_dispatch(SECRET, slot[0], slot[1], fence))


def test_each_slot_runs_once_and_stale_leaders_are_refused(redis_client):
    guard = DispatchGuard(redis_client, SECRET)
    assert guard.accept(None, None, "manual").outcome == "unscheduled"
    assert signed(guard, [2, 10], ["retrain", 1], "t1").outcome == "accepted"
    # The same message redelivered after its worker died may run the slot again...
    assert signed(guard, [2, 10], ["retrain", 1], "t1").outcome == "accepted"
    # ...another message for the same slot (a new leader's resend) may not.
    assert signed(guard, [3, 4], ["retrain", 1], "t2").outcome == "duplicate"
    assert signed(guard, [3, 5], ["retrain", 2], "t3").outcome == "accepted"
    # A deposed leader (older term) is refused even for a new slot.
    stale = signed(guard, [2, 11], ["retrain", 3], "t4")
    assert stale.outcome == "stale" and not stale.accepted
    # The leader of term 3 re-sent slot 4 (index 6), and a stalled consumer runs it
    # after slot 5 (index 8): same term, lower index, still accepted.
    assert signed(guard, [3, 8], ["retrain", 5], "t5").outcome == "accepted"
    assert signed(guard, [3, 6], ["retrain", 4], "t6").outcome == "accepted"
    assert redis_client.hmget(keys.schedule_fence("retrain"), "term", "index") == [b"3", b"8"]
    slots = [int(f[b"slot"]) for _, f in redis_client.xrange(keys.schedule_accepted("retrain"))]
    assert slots == [1, 2, 5, 4]  # each accepted slot recorded once


def refusals(reason):
    return REGISTRY.get_sample_value("omnimind_dispatch_refusals_total", {"reason": reason}) or 0.0


def schedule_keys(redis_client):
    return sorted(redis_client.scan_iter(match="omnimind:*schedule*"))


GOOD_FENCE, GOOD_SLOT = [3, 8], ["retrain", 5]
GOOD_SIGNATURE = sign_dispatch(SECRET, "retrain", 5, (3, 8))


@pytest.mark.parametrize(
    "fence, slot, signature, outcome",
    [
        # The attack: a huge term on the next slot, signed with another key or not at all.
        ([3 + 1_000_000, 1], ["retrain", 6], sign_dispatch("not-the-raft-secret-0123", "retrain", 6, (1_000_003, 1)),
         "forged"),
        ([3 + 1_000_000, 1], ["retrain", 6], None, "unsigned"),
        # A real signature replayed onto another slot, entry or fence, or corrupted.
        (GOOD_FENCE, ["retrain", 6], GOOD_SIGNATURE, "forged"),
        (GOOD_FENCE, ["other", 5], GOOD_SIGNATURE, "forged"),
        ([1_000_003, 8], GOOD_SLOT, GOOD_SIGNATURE, "forged"),
        (GOOD_FENCE, GOOD_SLOT, GOOD_SIGNATURE[:-1] + ("0" if GOOD_SIGNATURE[-1] != "0" else "1"), "forged"),
        # Malformed: wrong types, lengths, non-integers, partial headers.
        (GOOD_FENCE, ["retrain"], GOOD_SIGNATURE, "malformed"),
        (GOOD_FENCE, [], GOOD_SIGNATURE, "malformed"),
        (GOOD_FENCE, "retrain:5", GOOD_SIGNATURE, "malformed"),
        (GOOD_FENCE, [5, "retrain"], GOOD_SIGNATURE, "malformed"),
        (GOOD_FENCE, ["retrain", "5"], GOOD_SIGNATURE, "malformed"),
        (GOOD_FENCE, ["retrain", 5.0], GOOD_SIGNATURE, "malformed"),
        (GOOD_FENCE, ["retrain", True], GOOD_SIGNATURE, "malformed"),
        (GOOD_FENCE, ["retrain", 0], GOOD_SIGNATURE, "malformed"),
        (GOOD_FENCE, ["retrain", 5, 6], GOOD_SIGNATURE, "malformed"),
        ([3], GOOD_SLOT, GOOD_SIGNATURE, "malformed"),
        (["3", "8"], GOOD_SLOT, GOOD_SIGNATURE, "malformed"),
        ([3, -1], GOOD_SLOT, GOOD_SIGNATURE, "malformed"),
        ([2**53, 8], GOOD_SLOT, GOOD_SIGNATURE, "malformed"),
        ({"term": 3, "index": 8}, GOOD_SLOT, GOOD_SIGNATURE, "malformed"),
        (None, GOOD_SLOT, GOOD_SIGNATURE, "malformed"),
        (GOOD_FENCE, None, GOOD_SIGNATURE, "malformed"),
        (None, None, GOOD_SIGNATURE, "malformed"),
        (GOOD_FENCE, GOOD_SLOT, GOOD_SIGNATURE.upper(), "malformed"),
        (GOOD_FENCE, GOOD_SLOT, GOOD_SIGNATURE[:32], "malformed"),
        (GOOD_FENCE, GOOD_SLOT, "é" * 64, "malformed"),
        (GOOD_FENCE, GOOD_SLOT, 12345, "malformed"),
    ],
)
def test_forged_and_malformed_dispatches_change_no_fence_and_no_slot(redis_client, fence, slot, signature, outcome):
    guard = DispatchGuard(redis_client, SECRET)
    assert signed(guard, GOOD_FENCE, GOOD_SLOT, "real-5").outcome == "accepted"
    before = schedule_keys(redis_client), redis_client.hgetall(keys.schedule_fence("retrain"))
    counted = refusals(outcome)
    verdict = guard.accept(fence, slot, "attacker", signature)
    assert verdict.outcome == outcome and not verdict.accepted
    assert refusals(outcome) == counted + 1
    assert (schedule_keys(redis_client), redis_client.hgetall(keys.schedule_fence("retrain"))) == before
    # The real leader carries on: its next slot is accepted.
    assert signed(guard, [3, 9], ["retrain", 6], "real-6").outcome == "accepted"
    slots = [int(f[b"slot"]) for _, f in redis_client.xrange(keys.schedule_accepted("retrain"))]
    assert slots == [5, 6]


def test_a_consumer_without_the_secret_refuses_fenced_dispatches_and_runs_manual_ones(redis_client):
    for secret in (None, ""):
        guard = DispatchGuard(redis_client, secret)
        counted = refusals("unverifiable")
        verdict = guard.accept(GOOD_FENCE, GOOD_SLOT, "t1", GOOD_SIGNATURE)
        assert verdict.outcome == "unverifiable" and not verdict.accepted
        assert refusals("unverifiable") == counted + 1
        assert guard.accept(None, None, "manual").outcome == "unscheduled"
    assert schedule_keys(redis_client) == []
