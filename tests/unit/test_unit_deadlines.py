"""DeadlineWatchdog and TimeLimitedTask, in process (no Redis, no worker)."""
import threading
import time

import pytest
from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from omnimind.deadlines import DeadlineWatchdog, disarm_surely
from omnimind.observability import metrics
from workers import services, time_limits


@pytest.fixture
def watchdog():
    dog = DeadlineWatchdog()
    dog.start()
    yield dog
    dog.stop()


def spin(seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        time.sleep(0.001)
    return time.monotonic() - started


def test_each_thread_is_interrupted_at_its_own_deadline(watchdog):
    caught = {}

    def work(name, limit):
        ticket = watchdog.arm([(limit, TimeoutError)])
        started = time.monotonic()
        try:
            spin(10)
        except TimeoutError:
            caught[name] = time.monotonic() - started
        finally:
            watchdog.disarm(ticket)

    threads = [threading.Thread(target=work, args=(n, limit)) for n, limit in (("short", 0.05), ("long", 0.3))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert set(caught) == {"short", "long"}
    assert caught["short"] < caught["long"]
    assert caught["short"] >= 0.05 and caught["long"] >= 0.3


def test_a_disarmed_deadline_never_fires(watchdog):
    ticket = watchdog.arm([(0.05, TimeoutError)])
    watchdog.disarm(ticket)
    assert spin(0.2) >= 0.2  # past the deadline: nothing raised
    assert ticket.fired == []


def test_an_earlier_deadline_armed_later_wakes_the_watchdog(watchdog):
    far = watchdog.arm([(60, TimeoutError)])
    near = watchdog.arm([(0.05, TimeoutError)])
    with pytest.raises(TimeoutError):
        spin(5)
    watchdog.disarm(near)
    watchdog.disarm(far)
    assert far.fired == []


@pytest.fixture
def limited_app(watchdog, monkeypatch):
    monkeypatch.setattr(services, "_watchdog", watchdog)
    app = Celery("limits-test", broker="memory://", task_cls=time_limits.TimeLimitedTask, set_as_current=False)
    yield app
    app.close()


def test_soft_then_hard_limit(limited_app):
    @limited_app.task(name="limits.stubborn", soft_time_limit=0.05, time_limit=0.2)
    def stubborn():
        try:
            spin(10)
        except SoftTimeLimitExceeded:
            spin(10)  # ignores the soft limit: the hard one ends it

    hard = metrics.task_time_limits.labels(task="limits.stubborn", kind="hard")
    soft = metrics.task_time_limits.labels(task="limits.stubborn", kind="soft")
    before = (soft._value.get(), hard._value.get())
    result = stubborn.apply()
    assert result.failed() and isinstance(result.result, TimeLimitExceeded)
    assert (soft._value.get(), hard._value.get()) == (before[0] + 1, before[1] + 1)


def test_per_call_limits_win_and_a_fast_task_is_untouched(limited_app):
    @limited_app.task(name="limits.quick", soft_time_limit=60, time_limit=120)
    def quick(seconds):
        return spin(seconds)

    assert time_limits.task_limits(quick) == (60, 120)
    # A worker's request carries apply_async(soft_time_limit=..., time_limit=...) as [hard, soft].
    quick.push_request(timelimit=[1, 0.05])
    try:
        assert time_limits.task_limits(quick) == (0.05, 1)
    finally:
        quick.pop_request()
    assert quick.apply(args=(0.01,)).get() >= 0.01
    assert spin(0.1) >= 0.1  # nothing left pending in this thread


def test_without_a_watchdog_tasks_run_unlimited(monkeypatch):
    monkeypatch.setattr(services, "_watchdog", None)
    app = Celery("limits-off", broker="memory://", task_cls=time_limits.TimeLimitedTask, set_as_current=False)

    @app.task(name="limits.off", soft_time_limit=0.01)
    def sleepy():
        return spin(0.1)

    assert sleepy.apply().get() >= 0.1
    app.close()


def test_disarmed_deadlines_do_not_pile_up(watchdog):
    live = watchdog.arm([(3600, TimeoutError)])
    for _ in range(20_000):  # a busy threads worker: each task arms soft + hard, then ends
        watchdog.disarm(watchdog.arm([(30, TimeoutError), (60, TimeoutError)]))
    assert watchdog.queued <= 2 * 1024 + 3
    watchdog.disarm(live)
    ticket = watchdog.arm([(0.05, TimeoutError)])  # still serves deadlines after rebuilding its heap
    with pytest.raises(TimeoutError):
        spin(5)
    watchdog.disarm(ticket)


def test_a_limit_landing_inside_disarm_still_disarms():
    class InterruptedOnce(DeadlineWatchdog):
        calls = 0

        def disarm(self, ticket):
            self.calls += 1
            if self.calls == 1:  # the soft limit raised at disarm's first bytecode
                raise SoftTimeLimitExceeded()
            super().disarm(ticket)

    dog = InterruptedOnce()
    dog.start()
    try:
        ticket = dog.arm([(0.05, TimeLimitExceeded)])
        disarm_surely(dog, ticket, (SoftTimeLimitExceeded, TimeLimitExceeded))
        assert ticket.done and dog.calls == 2
        assert spin(0.15) >= 0.15  # the later deadline never reaches this thread
    finally:
        dog.stop()
