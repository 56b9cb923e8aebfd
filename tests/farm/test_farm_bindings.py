"""Each capability queue has its own exchange: a raw publish stays in its capability.

Workers of every kind declare their queues (and bindings) in the broker, as in a
farm; a raw kombu producer then publishes Celery task messages to each
capability's exchange, and to each worker's direct queue.
"""
import uuid

from celery.utils.nodenames import worker_direct
from kombu import Connection

from omnimind import keys
from omnimind.config import QUEUES
from tests.helpers import wait_until

GOOD = [0.25] * 16


def publish(app, url, exchange, routing_key, name="tasks.inference.predict", kwargs=None):
    """A Celery (protocol 2) task message, published with a bare kombu producer."""
    task_id = f"raw-{uuid.uuid4().hex[:12]}"
    message = app.amqp.as_task_v2(task_id, name, args=(), kwargs=kwargs if kwargs is not None else {"inputs": GOOD})
    with Connection(url) as conn:
        conn.Producer().publish(
            message.body, exchange=exchange, routing_key=routing_key, headers=message.headers,
            serializer="json", retry=True, **message.properties,
        )
    return task_id


def lengths(redis_client, queues):
    return {queue: sum(redis_client.llen(name) for name in keys.broker_queue_lists(queue)) for queue in queues}


def test_a_publish_to_one_capability_exchange_reaches_only_its_queue(start_worker, celery_app, redis_server,
                                                                     redis_client, tmp_path):
    workers = {
        "inference": start_worker("bind-inf"),
        "training": start_worker("bind-train", queues="training", pool="solo", concurrency=1,
                                 OMNIMIND_DATA_DIR=tmp_path / "train"),
        "memory": start_worker("bind-mem", queues="memory", pool="solo", concurrency=1,
                               OMNIMIND_DATA_DIR=tmp_path / "mem"),
        "agents": start_worker("bind-agents", queues="agents"),
    }
    # While all four run: a predict published to the inference exchange is served by
    # the inference worker (and, below, by nobody else).
    task_id = publish(celery_app, redis_server.url, "inference", "inference")
    assert celery_app.AsyncResult(task_id).get(timeout=20)["node_id"] == workers["inference"].hostname
    for worker in workers.values():
        assert worker.stop() == 0  # warm: whatever a worker reserved, it finished
    for capability, worker in workers.items():
        ran = [line for line in worker.output().splitlines() if f"[{task_id}]" in line and "received" in line]
        assert bool(ran) == (capability == "inference"), (capability, ran)

    # Nobody consumes now, and the bindings the workers declared are still in the broker.
    direct = {capability: worker_direct(worker.hostname) for capability, worker in workers.items()}
    watched = list(QUEUES) + [queue.name for queue in direct.values()]
    assert lengths(redis_client, watched) == dict.fromkeys(watched, 0)
    for capability in QUEUES:
        publish(celery_app, redis_server.url, capability, capability)
        expected = {**dict.fromkeys(watched, 0), capability: 1}
        wait_until(lambda: lengths(redis_client, watched) == expected, timeout=5,
                   message=f"one message in {capability} only, got {lengths(redis_client, watched)}")
        # Another capability's routing key on this exchange reaches no queue at all.
        for other in QUEUES:
            if other != capability:
                publish(celery_app, redis_server.url, capability, other)
        assert lengths(redis_client, watched) == expected
        redis_client.delete(*keys.broker_queue_lists(capability))
    # Per-worker direct queues (the balancer's): Celery's C.dq2 exchange, keyed by node name.
    for capability, queue in direct.items():
        publish(celery_app, redis_server.url, queue.exchange.name, queue.routing_key)
        expected = {**dict.fromkeys(watched, 0), queue.name: 1}
        assert lengths(redis_client, watched) == expected, capability
        redis_client.delete(*keys.broker_queue_lists(queue.name))
