"""The farm on a RabbitMQ broker: real workers with ``OMNIMIND_BROKER_URL=amqp://…``,
OmniMind's keys and the results in the test Redis.

Each test gets a vhost of its own (``rabbitmq_url``), so queues start empty and go
away with it; tasks are sent through a client app on that broker (``rabbitmq_app``),
since this process's ``omnimind.app`` talks to the test Redis.
"""
import os
import time

import pytest

from omnimind import keys
from omnimind.config import QUEUES, Settings
from omnimind.queue_depths import BrokerQueueDepths
from omnimind.status import read_status
from tests.conftest import rabbitmqctl
from tests.helpers import free_port, metric_value, scrape, wait_until

GOOD = [0.25] * 16
SLOW_INPUT = [999.0] + [0.0] * 15
SECRET = "test-secret-0123456789abcdef"


@pytest.fixture
def amqp_worker(rabbitmq_url, start_worker):
    """Starts workers on the vhost's broker. Set up after ``rabbitmq_url``, so its
    workers stop before the vhost is deleted."""

    def start(name, **kwargs):
        return start_worker(name, OMNIMIND_BROKER_URL=rabbitmq_url, **kwargs)

    return start


def queue_types(vhost_url):
    vhost = vhost_url.rsplit("/", 1)[1]
    rows = (line.split("\t") for line in rabbitmqctl("list_queues", "-p", vhost, "--no-table-headers", "name", "type").splitlines())
    return {row[0]: row[1] for row in rows if len(row) == 2}


def test_every_task_runs_on_quorum_queues(amqp_worker, rabbitmq_app, rabbitmq_url, tmp_path):
    port = free_port()
    inference = amqp_worker("inf-mq", queues="inference", pool="threads", concurrency=2, OMNIMIND_METRICS_PORT=port)
    training = amqp_worker("train-mq", queues="training", pool="solo", concurrency=1, OMNIMIND_DATA_DIR=tmp_path / "train")
    memory = amqp_worker("mem-mq", queues="memory", pool="solo", concurrency=1, OMNIMIND_DATA_DIR=tmp_path / "mem")
    agents = amqp_worker("agents-mq", queues="agents", pool="threads", concurrency=2)
    send = rabbitmq_app.send_task

    predicted = send("tasks.inference.predict", kwargs={"inputs": [GOOD, GOOD]}).get(timeout=30)
    assert predicted["node_id"] == inference.hostname and len(predicted["outputs"]) == 2

    learned = send("tasks.training.learn", kwargs={"inputs": [GOOD] * 4, "targets": [1.0] * 4}).get(timeout=30)
    assert learned["node_id"] == training.hostname and learned["accepted"] == 4
    retrained = send("tasks.training.retrain").get(timeout=60)
    assert retrained["node_id"] == training.hostname and retrained["outcome"]

    assert send("tasks.memory.create_collection", kwargs={"name": "mq", "dim": 16}).get(timeout=30)
    send("tasks.memory.upsert", kwargs={"collection": "mq", "id": 7, "vector": GOOD, "payload": {"k": 1}}).get(timeout=30)
    hits = send("tasks.memory.search", kwargs={"collection": "mq", "vector": GOOD, "k": 1}).get(timeout=30)
    assert [h["id"] for h in hits["hits"]] == [7] and hits["node_id"] == memory.hostname

    ran = send("tasks.agents.run", kwargs={"agent": "recall_predict_store", "payload": {"inputs": GOOD}}).get(timeout=60)
    assert ran["node_id"] == agents.hostname and ran["output"]["model_version"] == 0
    assert ran["subtasks"] == ["tasks.memory.create_collection", "tasks.memory.search",
                               "tasks.inference.predict", "tasks.memory.upsert"]

    types = queue_types(rabbitmq_url)
    assert {q: types.get(q) for q in QUEUES} == {q: "quorum" for q in QUEUES}
    # worker_direct's queues are declared with no type: they get the vhost's default, quorum on
    # a vhost set up as README "Sending work" says (pidbox and event queues are exclusive or
    # auto-delete, which stay classic).
    direct = {name: kind for name, kind in types.items() if name.endswith(".dq2")}
    assert len(direct) == 4 and set(direct.values()) == {"quorum"}, types

    # The workers' cluster gauges read the depths through AMQP (passive declares).
    wait_until(lambda: "omnimind_queue_length{" in scrape(port), timeout=30, message="the queue-length gauges")
    assert metric_value(scrape(port), "omnimind_queue_length", queue="inference") == 0
    for worker in (inference, training, memory, agents):
        assert "Heartbeat of" not in worker.output(), worker.output()[-2000:]


def test_raft_leader_schedule_is_accepted_on_rabbitmq(amqp_worker, redis_client, tmp_path):
    # A one-member group leads at once. The interval is 1 s instead of 300 s only so
    # that several slots pass within the test: dispatch, fence and acceptance are the same.
    peers = f"c1=127.0.0.1:{free_port()}"
    worker = amqp_worker(
        "raft-mq", queues="training", pool="solo", concurrency=1, OMNIMIND_RAFT_ID="c1", OMNIMIND_RAFT_PEERS=peers,
        OMNIMIND_RAFT_SECRET=SECRET, OMNIMIND_DATA_DIR=tmp_path / "c1", OMNIMIND_RETRAIN_INTERVAL="1",
    )

    def accepted():
        return [int(fields[b"slot"]) for _, fields in redis_client.xrange(keys.schedule_accepted("retrain"))]

    wait_until(lambda: len(accepted()) >= 3, timeout=60, message="3 scheduled retrains accepted")
    slots = accepted()
    assert sorted(slots) == list(range(1, len(slots) + 1)), slots
    assert "Refusing retrain dispatch" not in worker.output()


def test_held_tasks_of_a_killed_worker_run_elsewhere_at_once(amqp_worker, rabbitmq_app, rabbitmq_url, redis_client):
    """RabbitMQ requeues a consumer's unacknowledged messages when its connection
    drops: no visibility timeout, no sweep. So with the default visibility timeout
    (1 h) and restore interval (10 s), the tasks a SIGKILLed worker held finish on
    the other worker within 2 s. That worker is started before the kill, because
    starting one takes longer than that."""
    defaults = {"OMNIMIND_VISIBILITY_TIMEOUT": "3600", "OMNIMIND_RESTORE_INTERVAL": "10",
                "OMNIMIND_HEARTBEAT_INTERVAL": "2.0", "OMNIMIND_MODEL_FACTORY": "tests.farm.slow_model:build"}
    # Its slow examples outlast the test, and so do its time limits.
    victim = amqp_worker("victim-mq", pool="threads", concurrency=2, OMNIMIND_TEST_SLOW_SECONDS="600",
                         OMNIMIND_INFERENCE_TIME_LIMIT="900", OMNIMIND_INFERENCE_SOFT_TIME_LIMIT="800", **defaults)
    send = rabbitmq_app.send_task
    held = [send("tasks.inference.predict", kwargs={"inputs": SLOW_INPUT}) for _ in range(2)]

    def running_on_victim():
        active = rabbitmq_app.control.inspect([victim.hostname], timeout=1).active() or {}
        return {task["id"] for task in active.get(victim.hostname, [])}

    wait_until(lambda: running_on_victim() == {r.id for r in held}, timeout=30, message="the victim to hold both")
    # Its prefetch is its concurrency (quorum queues: per-consumer QoS), so these wait in the queue.
    waiting = [send("tasks.inference.predict", kwargs={"inputs": GOOD}) for _ in range(6)]
    with BrokerQueueDepths(rabbitmq_url) as broker:
        wait_until(lambda: broker.read()["inference"] == 6, timeout=10, message="6 messages waiting")
    settings = Settings.from_env({**os.environ, "OMNIMIND_BROKER_URL": rabbitmq_url})
    assert read_status(settings, client=redis_client).queue_depths["inference"] == 6

    survivor = amqp_worker("survivor-mq", pool="threads", concurrency=2, OMNIMIND_TEST_SLOW_SECONDS="0.1", **defaults)
    assert {r.get(timeout=30)["node_id"] for r in waiting} == {survivor.hostname}
    assert not any(r.ready() for r in held)

    victim.kill()
    killed_at = time.monotonic()
    outcomes = [r.get(timeout=30) for r in held]
    elapsed = time.monotonic() - killed_at
    assert {o["node_id"] for o in outcomes} == {survivor.hostname}
    assert elapsed < 2.0, f"held tasks finished {elapsed:.2f}s after the kill"
