"""DynamicBatcher without I/O: task threads, a controllable fake forward pass."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from omnimind.models.batching import DynamicBatcher
from tests.helpers import wait_until


class Gate:
    """A forward pass that records its calls and blocks until opened."""

    def __init__(self, blocked: bool = True) -> None:
        self.calls = []
        self.entered = threading.Event()
        self.open = threading.Event()
        if not blocked:
            self.open.set()

    def __call__(self, key, rows):
        self.calls.append((key, rows.copy()))
        self.entered.set()
        assert self.open.wait(10), "gate never opened"
        return rows * 10.0


def rows(value, n=1, width=3):
    return np.full((n, width), float(value), dtype=np.float32)


def test_lone_request_runs_at_once_without_the_delay():
    gate = Gate(blocked=False)
    batcher = DynamicBatcher(gate, max_size=8, max_delay=30.0)
    out = batcher.submit("v0", rows(1))
    assert (out.batch_examples, out.batch_requests) == (1, 1)
    assert out.queue_delay < 5.0  # far below the 30 s it would have waited
    assert out.rows.tolist() == [[10.0, 10.0, 10.0]]


def test_arrivals_during_a_pass_form_the_next_batch_and_get_their_own_rows():
    gate = Gate()
    batcher = DynamicBatcher(gate, max_size=64, max_delay=0.0)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(batcher.submit, "v0", rows(0))
        assert gate.entered.wait(10)
        others = [pool.submit(batcher.submit, "v0", rows(i, n=i)) for i in range(1, 6)]
        wait_until(lambda: batcher.pending() == 5, timeout=10, message="5 pending")
        gate.open.set()
        results = [f.result(10) for f in others]
    assert first.result().batch_requests == 1
    assert {r.batch_id for r in results} == {results[0].batch_id}
    assert results[0].batch_examples == 15 and results[0].batch_requests == 5
    for i, result in enumerate(results, start=1):
        assert result.rows.tolist() == rows(i * 10, n=i).tolist()
    assert len(gate.calls) == 2


def test_keys_never_share_a_batch_and_the_oldest_bucket_goes_first():
    gate = Gate()
    batcher = DynamicBatcher(gate, max_size=64, max_delay=0.0)
    with ThreadPoolExecutor(8) as pool:
        pool.submit(batcher.submit, "v1", rows(0))
        assert gate.entered.wait(10)
        keys = ["v1", "v2", "v1", "v2", "v1"]
        futures = [pool.submit(batcher.submit, k, rows(i)) for i, k in enumerate(keys)]
        wait_until(lambda: batcher.pending() == 5, timeout=10, message="5 pending")
        gate.open.set()
        results = [f.result(10) for f in futures]
    assert [key for key, _ in gate.calls] == ["v1", "v1", "v2"]
    assert [len(r) for _, r in gate.calls] == [1, 3, 2]
    by_batch = {}
    for key, result in zip(keys, results):
        by_batch.setdefault(result.batch_id, set()).add(key)
    assert all(len(k) == 1 for k in by_batch.values())


def test_max_size_splits_batches_and_an_oversized_request_runs_alone():
    gate = Gate()
    batcher = DynamicBatcher(gate, max_size=4, max_delay=0.0)
    with ThreadPoolExecutor(8) as pool:
        pool.submit(batcher.submit, "v0", rows(0))
        assert gate.entered.wait(10)
        big = pool.submit(batcher.submit, "v0", rows(9, n=10))
        wait_until(lambda: batcher.pending() == 1, timeout=10, message="big pending")
        small = [pool.submit(batcher.submit, "v0", rows(i, n=2)) for i in range(3)]
        wait_until(lambda: batcher.pending() == 4, timeout=10, message="4 pending")
        gate.open.set()
        assert big.result(10).rows.shape == (10, 3) and big.result().batch_requests == 1
        sizes = sorted(f.result(10).batch_examples for f in small)
    assert [len(r) for _, r in gate.calls] == [1, 10, 4, 2]
    assert sizes == [2, 4, 4]


def test_a_failed_check_fails_only_its_own_request():
    def check(part):
        if not np.isfinite(part).all():
            raise ValueError("non-finite row")

    gate = Gate()
    batcher = DynamicBatcher(gate, max_size=64, max_delay=0.0, check=check)
    with ThreadPoolExecutor(8) as pool:
        pool.submit(batcher.submit, "v0", rows(0))
        assert gate.entered.wait(10)
        good = [pool.submit(batcher.submit, "v0", rows(1)) for _ in range(3)]
        bad = pool.submit(batcher.submit, "v0", rows(np.inf))
        wait_until(lambda: batcher.pending() == 4, timeout=10, message="4 pending")
        gate.open.set()
        with pytest.raises(ValueError, match="non-finite"):
            bad.result(10)
        assert all(f.result(10).batch_requests == 4 for f in good)


def test_a_failed_pass_fails_its_batch_and_the_batcher_keeps_serving():
    calls = []

    def run(key, batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("device error")
        return batch

    batcher = DynamicBatcher(run, max_size=8, max_delay=0.0)
    with pytest.raises(RuntimeError, match="device error"):
        batcher.submit("v0", rows(1))
    assert batcher.submit("v0", rows(2)).rows.tolist() == rows(2).tolist()


def test_the_runner_waits_for_announced_requests_and_no_longer():
    gate = Gate(blocked=False)
    seen = []
    batcher = DynamicBatcher(gate, max_size=8, max_delay=30.0, observe=lambda e, r, d: seen.append((e, r)))
    with ThreadPoolExecutor(4) as pool:
        batcher.announce()
        batcher.announce()
        first = pool.submit(batcher.submit, "v0", rows(1))
        wait_until(lambda: batcher.pending() == 1 and batcher.announced == 1, timeout=10, message="first waiting")
        assert not first.done() and not gate.calls  # one more is announced: the batch waits for it
        second = pool.submit(batcher.submit, "v0", rows(2))
        assert first.result(10).batch_id == second.result(10).batch_id
        # Nothing announced: a lone request runs at once, whatever ran before.
        t0 = time.monotonic()
        assert batcher.submit("v0", rows(3)).batch_requests == 1
        assert time.monotonic() - t0 < 5.0
    assert seen == [(2, 2), (1, 1)]


def test_the_runner_waits_while_more_are_coming_and_runs_once_they_stop():
    gate = Gate(blocked=False)
    coming = threading.Event()
    coming.set()
    batcher = DynamicBatcher(gate, max_size=8, max_delay=30.0, more_coming=coming.is_set)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(batcher.submit, "v0", rows(i)) for i in range(3)]
        wait_until(lambda: batcher.pending() == 3, timeout=10, message="all waiting")
        assert not gate.calls  # the queue still holds more: the batch keeps filling
        coming.clear()
        batcher.withdraw()  # nothing was announced: it only wakes the runner, which stops waiting
        assert {f.result(10).batch_id for f in futures} == {1}
    assert [len(r) for _, r in gate.calls] == [3]


def test_a_withdrawn_or_lapsed_announcement_holds_no_batch_back():
    now = [0.0]
    gate = Gate(blocked=False)
    batcher = DynamicBatcher(gate, max_size=8, max_delay=30.0, announce_ttl=1.0, clock=lambda: now[0])
    batcher.announce()
    batcher.announce()
    batcher.withdraw()
    assert batcher.announced == 1
    now[0] = 5.0  # the other one lapsed
    assert batcher.announced == 0
    assert batcher.submit("v0", rows(1)).batch_requests == 1  # no wait: with this clock it would last forever
    batcher.withdraw()  # nothing to withdraw: no harm
    assert batcher.announced == 0


def test_a_withdrawal_wakes_a_runner_waiting_for_it():
    gate = Gate(blocked=False)
    batcher = DynamicBatcher(gate, max_size=8, max_delay=30.0)
    with ThreadPoolExecutor(2) as pool:
        batcher.announce()
        batcher.announce()
        lone = pool.submit(batcher.submit, "v0", rows(1))
        wait_until(lambda: batcher.pending() == 1, timeout=10, message="waiting for the announced one")
        batcher.withdraw()  # e.g. it failed validation
        assert lone.result(10).batch_requests == 1


def test_many_waiters_are_served_in_order_by_handing_the_runner_on():
    """Each request waits on a condition of its own: a pass wakes the requests it
    served and the oldest waiter, which runs the next batch."""
    gate = Gate()
    batcher = DynamicBatcher(gate, max_size=4, max_delay=0.0)
    with ThreadPoolExecutor(16) as pool:
        pool.submit(batcher.submit, "v0", rows(0))
        assert gate.entered.wait(10)
        futures = [pool.submit(batcher.submit, "v0", rows(i)) for i in range(12)]
        wait_until(lambda: batcher.pending() == 12, timeout=10, message="12 pending")
        gate.open.set()
        results = [f.result(10) for f in futures]
    assert [len(r) for _, r in gate.calls] == [1, 4, 4, 4]
    assert sorted({r.batch_id for r in results}) == [2, 3, 4]
    for i, result in enumerate(results):
        assert result.rows.tolist() == rows(i * 10).tolist()


def test_max_size_must_be_positive():
    with pytest.raises(ValueError):
        DynamicBatcher(lambda k, r: r, max_size=0)
