"""Bad input from producers that are not OmniMind's: each is refused with a log line and
a counter (``omnimind_messages_refused_total{reason}``), acknowledged (Redis) or rejected
without requeue (RabbitMQ) rather than redelivered forever, and the worker keeps serving."""
from __future__ import annotations

from kombu import Connection, Exchange, Producer

from tests.client.test_client_plain import GOOD, step
from tests.helpers import free_port, metric_value, scrape, wait_until

LIMIT = 4096
TOO_LARGE = step("tasks.inference.predict", "inference", inputs=[[0.123456789] * 16] * 40)  # ~8 KB of JSON
UNKNOWN = step("tasks.inference.no_such_task", "inference", timeout=30, inputs=GOOD)


def refused(port: int, reason: str) -> float:
    return metric_value(scrape(port), "omnimind_messages_refused_total", reason=reason)


def publish_pickle(url: str) -> None:
    with Connection(url) as conn:
        Producer(conn).publish({"inputs": GOOD}, serializer="pickle", exchange=Exchange("inference", type="direct"),
                               routing_key="inference",
                               headers={"lang": "py", "task": "tasks.inference.predict", "id": "pickled-1",
                                        "argsrepr": "", "kwargsrepr": ""})


def publish_not_celery(url: str) -> None:
    """JSON through kombu, but no Celery message: no task header, no protocol-1 body."""
    with Connection(url) as conn:
        Producer(conn).publish({"hello": "world"}, serializer="json", exchange=Exchange("inference", type="direct"),
                               routing_key="inference")


def test_bad_messages_from_plain_producers_on_redis(start_worker, redis_server, redis_client, plain_client):
    port = free_port()
    worker = start_worker("inf-refuse", concurrency=2, OMNIMIND_METRICS_PORT=port, OMNIMIND_MAX_MESSAGE_BYTES=LIMIT)
    unknown, too_large = plain_client(redis_server.url, redis_server.url, [UNKNOWN, TOO_LARGE])
    assert unknown["error"] == "NotRegistered" and "no_such_task" in unknown["message"], unknown
    assert too_large["error"] == "InvalidInput" and "message_too_large" in too_large["message"], too_large
    publish_pickle(redis_server.url)
    publish_not_celery(redis_server.url)
    redis_client.lpush("inference", b"not json at all", b'{"hello": "no envelope"}')  # raw pushes, not even kombu's
    wait_until(lambda: refused(port, "ContentDisallowed") == 1 and refused(port, "unknown") == 1
               and refused(port, "not_an_envelope") == 2, timeout=30, message="every refusal counted")
    assert refused(port, "unknown_task") == 1 and refused(port, "too_large") == 1
    # Acknowledged, not waiting to be redelivered: nothing left in the queue or held unacked.
    wait_until(lambda: redis_client.llen("inference") == 0 and redis_client.hlen("unacked") == 0, timeout=10,
               message="nothing left in the queue or unacked")
    output = worker.output()
    assert "over OMNIMIND_MAX_MESSAGE_BYTES" in output and "not a kombu message" in output
    # ...and the worker keeps serving a plain client.
    (served,) = plain_client(redis_server.url, redis_server.url, [step("tasks.inference.predict", "inference",
                                                                        inputs=GOOD)])
    assert served["result"]["node_id"] == worker.hostname


def test_bad_messages_from_plain_producers_on_rabbitmq(rabbitmq_url, start_worker, redis_server, plain_client):
    from omnimind.queue_depths import BrokerQueueDepths

    port = free_port()
    worker = start_worker("inf-refuse-mq", concurrency=2, OMNIMIND_METRICS_PORT=port, OMNIMIND_MAX_MESSAGE_BYTES=LIMIT,
                          OMNIMIND_BROKER_URL=rabbitmq_url)
    unknown, too_large = plain_client(rabbitmq_url, redis_server.url, [UNKNOWN, TOO_LARGE])
    assert unknown["error"] == "NotRegistered", unknown
    assert too_large["error"] == "InvalidInput" and "message_too_large" in too_large["message"], too_large
    publish_pickle(rabbitmq_url)
    publish_not_celery(rabbitmq_url)
    wait_until(lambda: refused(port, "ContentDisallowed") == 1 and refused(port, "unknown") == 1, timeout=30,
               message="every refusal counted")
    assert refused(port, "unknown_task") == 1 and refused(port, "too_large") == 1
    (served,) = plain_client(rabbitmq_url, redis_server.url, [step("tasks.inference.predict", "inference",
                                                                    inputs=GOOD)])
    assert served["result"]["node_id"] == worker.hostname
    # Rejected without requeue: none is waiting to come back.
    with BrokerQueueDepths(rabbitmq_url) as broker:
        assert broker.read()["inference"] == 0


