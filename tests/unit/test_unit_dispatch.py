"""DispatchGuard against a real redis-server: fences, slots, redelivery."""
from omnimind import keys
from omnimind.scaling.dispatch import DispatchGuard


def test_each_slot_runs_once_and_stale_leaders_are_refused(redis_client):
    guard = DispatchGuard(redis_client)
    assert guard.accept(None, None, "manual").outcome == "unscheduled"
    assert guard.accept([2, 10], ["retrain", 1], "t1").outcome == "accepted"
    # The same message redelivered after its worker died may run the slot again...
    assert guard.accept([2, 10], ["retrain", 1], "t1").outcome == "accepted"
    # ...another message for the same slot (a new leader's resend) may not.
    assert guard.accept([3, 4], ["retrain", 1], "t2").outcome == "duplicate"
    assert guard.accept([3, 5], ["retrain", 2], "t3").outcome == "accepted"
    # A deposed leader (older term) is refused even for a new slot.
    stale = guard.accept([2, 11], ["retrain", 3], "t4")
    assert stale.outcome == "stale" and not stale.accepted
    # The leader of term 3 re-sent slot 4 (index 6), and a stalled consumer runs it
    # after slot 5 (index 8): same term, lower index, still accepted.
    assert guard.accept([3, 8], ["retrain", 5], "t5").outcome == "accepted"
    assert guard.accept([3, 6], ["retrain", 4], "t6").outcome == "accepted"
    assert redis_client.hmget(keys.schedule_fence("retrain"), "term", "index") == [b"3", b"8"]
    slots = [int(f[b"slot"]) for _, f in redis_client.xrange(keys.schedule_accepted("retrain"))]
    assert slots == [1, 2, 5, 4]  # each accepted slot recorded once
