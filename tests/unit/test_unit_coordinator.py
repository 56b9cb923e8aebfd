"""FencedScheduler on Celery's beat machinery: what a leader commits is what it sends.

The Raft log is replaced by an in-memory commit function (``propose``) and the
broker by kombu's in-memory transport, so these run without Redis; the real
three-member cluster is in tests/farm/test_farm_raft.py.
"""
import time
import uuid

import pytest
from celery import Celery
from celery.schedules import crontab

from omnimind.fence import AUTH_HEADER, FENCE_HEADER, SLOT_HEADER, authenticate
from omnimind.scaling.coordinator import FencedScheduler, NotCoordinator, ScheduleStateMachine
from omnimind.scaling.raft import LogEntry
from tests.helpers import wait_until

SECRET = "test-secret-0123456789abcdef"


class CommitLog:
    """Commits every proposal at ``term`` and applies it, as a Raft leader would."""

    def __init__(self, machine: ScheduleStateMachine, term: int, first_index: int = 1) -> None:
        self.machine, self.term, self.next_index = machine, term, first_index
        self.deposed = False

    def propose(self, command):
        if self.deposed:
            raise NotCoordinator("leadership lost")
        entry = LogEntry(self.term, self.next_index, command)
        self.next_index += 1
        self.machine.apply(entry)
        return entry


@pytest.fixture
def make_app():
    apps = []

    def build(schedule):
        queue = f"jobs-{uuid.uuid4().hex[:8]}"  # the memory transport is process-wide
        app = Celery("coordinator-test", broker="memory://", set_as_current=False)
        app.conf.beat_schedule = schedule
        app.conf.task_routes = {"jobs.*": {"queue": queue}}
        app.queue_name = queue
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.close()


@pytest.fixture
def schedulers():
    """Builds FencedSchedulers and closes them (their broker connections) at teardown."""
    built = []

    def build(app, **kwargs):
        built.append(FencedScheduler(app, secret=SECRET, **kwargs))
        return built[-1]

    yield build
    for scheduler in built:
        scheduler.close()


def sent_messages(app, expect: int):
    """The task messages on the app's queue (headers only), waiting for ``expect``;
    every one must carry a valid signature of its fence and slot."""
    out = []
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue(app.queue_name)
        while True:
            try:
                message = queue.get(timeout=0.2 if len(out) >= expect else 5)
            except queue.Empty:
                break
            headers = message.headers
            out.append((headers["task"], headers.get(FENCE_HEADER), headers.get(SLOT_HEADER)))
            verdict = authenticate(SECRET, *(headers.get(h) for h in (FENCE_HEADER, SLOT_HEADER, AUTH_HEADER)))
            assert verdict.outcome == "authentic", (out[-1], verdict)
            message.ack()
        queue.close()
    return out


def test_crontab_entry_continues_from_the_replicated_state(make_app, schedulers):
    app = make_app({"nightly": {"task": "jobs.nightly", "schedule": crontab(minute="*")}})
    machine = ScheduleStateMachine()
    # A previous leader ran slot 4 two minutes ago: a per-minute crontab is due now.
    machine.restore({"entries": {"nightly": {"slot": 4, "at": time.time() - 120, "index": 9, "sent": True}}})
    log = CommitLog(machine, term=3, first_index=10)
    scheduler = schedulers(app, propose=log.propose, state_machine=machine, max_interval=1.0)
    scheduler.tick()
    assert sent_messages(app, 1) == [("jobs.nightly", [3, 10], ["nightly", 5])]
    assert machine.entry("nightly")["sent"] is True  # the send was confirmed through the log
    assert 0 < scheduler.tick() <= 1.0  # the next minute is not due yet: nothing sent
    assert sent_messages(app, 0) == []


def test_interval_entry_sends_consecutive_slots_with_fresh_fences(make_app, schedulers):
    app = make_app({"every": {"task": "jobs.every", "schedule": 0.05}})
    machine = ScheduleStateMachine()
    log = CommitLog(machine, term=2)
    scheduler = schedulers(app, propose=log.propose, state_machine=machine, max_interval=0.05)

    def two_slots_sent():
        scheduler.tick()
        return (machine.entry("every") or {}).get("slot", 0) >= 2

    wait_until(two_slots_sent, timeout=10, message="two slots")
    messages = sent_messages(app, 2)
    assert [slot for _, _, slot in messages[:2]] == [["every", 1], ["every", 2]]
    fences = [fence for _, fence, _ in messages]
    assert all(term == 2 for term, _ in fences) and fences == sorted(fences)


def test_new_leader_resends_a_committed_but_unsent_slot(make_app, schedulers):
    app = make_app({"retrain": {"task": "jobs.retrain", "schedule": 3600}})
    machine = ScheduleStateMachine()
    # The old leader (term 4) committed slot 7 and died before confirming the send.
    machine.restore({"entries": {"retrain": {"slot": 7, "at": time.time(), "index": 20, "sent": False}}})
    log = CommitLog(machine, term=5, first_index=21)
    scheduler = schedulers(app, propose=log.propose, state_machine=machine)
    scheduler.resend_unsent()
    assert sent_messages(app, 1) == [("jobs.retrain", [5, 21], ["retrain", 7])]  # same slot, newer fence
    assert machine.unsent() == []


def deposed(machine):
    log = CommitLog(machine, term=2, first_index=2)
    log.deposed = True
    return log.propose


def a_rival_commits_first(machine):
    def propose(command):
        # A rival's slot 2 lands first; ours is then refused by the state machine.
        machine.apply(LogEntry(3, 2, {"op": "dispatch", "entry": "every", "slot": 2, "at": time.time()}))
        entry = LogEntry(2, 3, command)
        machine.apply(entry)
        return entry

    return propose


@pytest.mark.parametrize("proposer", [deposed, a_rival_commits_first])
def test_a_leader_that_cannot_commit_its_slot_sends_nothing(make_app, schedulers, proposer):
    app = make_app({"every": {"task": "jobs.every", "schedule": 0.01}})
    machine = ScheduleStateMachine()
    machine.restore({"entries": {"every": {"slot": 1, "at": time.time() - 60, "index": 1, "sent": True}}})
    scheduler = schedulers(app, propose=proposer(machine), state_machine=machine)
    with pytest.raises(NotCoordinator):
        scheduler.tick()
    assert sent_messages(app, 0) == []


def test_drift_dispatches_early_once_per_event_and_gap(make_app, schedulers):
    app = make_app({"retrain": {"task": "jobs.retrain", "schedule": 3600}})
    machine = ScheduleStateMachine()
    log = CommitLog(machine, term=1)
    scheduler = schedulers(app, propose=log.propose, state_machine=machine)
    assert scheduler.dispatch_early("retrain", "1700000000000-0", min_gap=60) is True
    assert scheduler.dispatch_early("retrain", "1700000000000-0", min_gap=60) is False  # answered already
    assert scheduler.dispatch_early("retrain", "1700000000005-0", min_gap=60) is False  # inside the gap
    assert scheduler.dispatch_early("unknown", "1700000000009-0", min_gap=0) is False
    assert [slot for _, _, slot in sent_messages(app, 1)] == [["retrain", 1]]
    assert machine.drift_seen == "1700000000000-0"
    assert scheduler.dispatch_early("retrain", "1700000000005-0", min_gap=0) is True  # gap over
    assert [slot for _, _, slot in sent_messages(app, 1)] == [["retrain", 2]]


def test_a_rebuilt_cluster_fences_above_the_old_one_and_continues_its_slots(make_app, schedulers):
    app = make_app({"retrain": {"task": "jobs.retrain", "schedule": 3600}})
    machine = ScheduleStateMachine()
    log = CommitLog(machine, term=1)  # a new log: term 1 again
    # What the leader read from Redis: fences up to term 9, slot 41 ran last.
    log.propose({"op": "genesis", "fence_base": 9, "slots": {"retrain": 41}})
    log.propose({"op": "genesis", "fence_base": 0, "slots": {}})
    assert machine.fence_base == 9  # the first genesis counts, later ones are ignored
    scheduler = schedulers(app, propose=log.propose, state_machine=machine)
    assert scheduler.dispatch_early("retrain", "1700000000000-0", min_gap=0) is True
    assert sent_messages(app, 1) == [("jobs.retrain", [10, 3], ["retrain", 42])]


def test_a_scheduler_without_the_raft_secret_refuses_to_start(make_app):
    app = make_app({"retrain": {"task": "jobs.retrain", "schedule": 3600}})
    machine = ScheduleStateMachine()
    for secret in ("", None):
        with pytest.raises(ValueError, match="Raft secret"):
            FencedScheduler(app, propose=CommitLog(machine, term=1).propose, state_machine=machine, secret=secret)
