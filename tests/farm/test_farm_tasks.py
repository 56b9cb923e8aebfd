"""predict/learn through real workers: results, routing, bad input, refused pickle."""
import json

import pytest
from celery.exceptions import TimeoutError as CeleryTimeout
from kombu import Connection, Exchange, Producer

from omnimind import keys
from omnimind.errors import InvalidInput
from omnimind.scaling import ClusterLoadBalancer, ServiceRegistry, WorkloadType
from tests.helpers import free_port, metric_value, scrape, wait_until

GOOD = [0.25] * 16


def predict(app, inputs, **options):
    return app.send_task("tasks.inference.predict", kwargs={"inputs": inputs}, **options)


def test_predict_single_and_batch(start_worker, celery_app):
    worker = start_worker("inf1")
    single = predict(celery_app, GOOD).get(timeout=20)
    assert single["model_version"] == 0 and single["node_id"] == worker.hostname
    assert isinstance(single["outputs"], list) and len(single["outputs"]) == 1
    batch = predict(celery_app, [GOOD, [0.5] * 16, GOOD]).get(timeout=20)
    assert len(batch["outputs"]) == 3
    # Same input, same answer: in a batch and alone (the model is seeded identically everywhere).
    assert batch["outputs"][0] == pytest.approx(single["outputs"], rel=1e-5)
    assert batch["outputs"][0] == pytest.approx(batch["outputs"][2], rel=1e-6)


BAD_INPUTS = [
    (None, "missing_field"),
    ("sixteen numbers", "type"),
    ({"x": 1}, "type"),
    ([0.1] * 3, "shape"),
    ([[0.1] * 16, [0.1] * 15], "shape"),
    ([float("nan")] * 16, "non_finite"),
    ([float("inf")] + [0.0] * 15, "non_finite"),
    ([["a"] * 16], "type"),
    ([GOOD] * 65, "batch_too_large"),
    ([], "empty"),
]


def test_bad_inputs_get_typed_errors_and_worker_keeps_serving(start_worker, celery_app):
    port = free_port()
    start_worker("inf-bad", OMNIMIND_METRICS_PORT=port)
    for payload, reason in BAD_INPUTS:
        with pytest.raises(InvalidInput) as caught:
            predict(celery_app, payload).get(timeout=20)
        assert caught.value.reason == reason, (payload, caught.value)
        # ...and the very next good request is served.
        assert predict(celery_app, GOOD).get(timeout=20)["model_version"] == 0
    text = scrape(port)
    for reason in {r for _, r in BAD_INPUTS}:
        expected = sum(1 for _, r in BAD_INPUTS if r == reason)
        assert metric_value(text, "omnimind_bad_inputs_total", task="tasks.inference.predict", reason=reason) == expected
    # A missing kwarg entirely is the same typed error, not a TypeError.
    with pytest.raises(InvalidInput):
        celery_app.send_task("tasks.inference.predict", kwargs={}).get(timeout=20)


def test_pickled_message_is_refused(start_worker, celery_app, redis_server):
    port = free_port()
    start_worker("inf-pickle", OMNIMIND_METRICS_PORT=port)
    task_id = "pickled-0001"
    with Connection(redis_server.url) as conn:
        Producer(conn).publish(
            {"inputs": GOOD},
            serializer="pickle",
            exchange=Exchange("inference", type="direct"),
            routing_key="inference",
            headers={"lang": "py", "task": "tasks.inference.predict", "id": task_id, "argsrepr": "", "kwargsrepr": ""},
        )
    wait_until(lambda: metric_value(scrape(port), "omnimind_messages_refused_total") >= 1, message="refusal counted")
    # Never executed, so no result ever appears...
    with pytest.raises(CeleryTimeout):
        celery_app.AsyncResult(task_id).get(timeout=1)
    # ...and the worker still serves.
    assert predict(celery_app, GOOD).get(timeout=20)["model_version"] == 0


def test_routing_by_capability_and_direct_queue(start_worker, celery_app, redis_client):
    inf_a = start_worker("inf-a")
    inf_b = start_worker("inf-b")
    memory = start_worker("mem", queues="memory", pool="solo", concurrency=1)
    results = [predict(celery_app, GOOD) for _ in range(20)]
    served_by = {r.get(timeout=30)["node_id"] for r in results}
    assert served_by <= {inf_a.hostname, inf_b.hostname}
    assert "Task tasks.inference.predict[" not in memory.output()

    from omnimind.config import settings

    registry = ServiceRegistry.from_settings(settings, client=redis_client)
    balancer = ClusterLoadBalancer(registry, app=celery_app)
    import asyncio

    async def submit_to(node_id):
        result = await balancer.submit(WorkloadType.INFERENCE, {"inputs": GOOD}, requirements={"node_id": node_id})
        return result

    for target in (inf_b, inf_a, inf_b):
        result = asyncio.run(submit_to(target.hostname))
        assert result.get(timeout=20)["node_id"] == target.hostname
    # The memory worker is not an inference node, so it cannot be chosen.
    from omnimind.errors import NoNodeAvailable

    with pytest.raises(NoNodeAvailable):
        asyncio.run(submit_to(memory.hostname))


def test_learn_validates_and_records_bounded_experience(start_worker, celery_app, redis_client, tmp_path):
    worker = start_worker("learner", queues="training", pool="solo", concurrency=1, OMNIMIND_EXPERIENCE_MAXLEN=50,
                          OMNIMIND_DATA_DIR=tmp_path)
    result = celery_app.send_task("tasks.training.learn", kwargs={"inputs": GOOD, "targets": 1.5}).get(timeout=20)
    # One sample: accepted and learned at once (a step on every call).
    assert result.pop("loss") > 0 and result.pop("updates") >= 1
    assert result == {"accepted": 1, "drift": False, "duplicate": False, "model_version": 0,
                      "node_id": worker.hostname}
    entries = redis_client.xrange(keys.EXPERIENCE)
    assert len(entries) == 1
    fields = entries[0][1]
    assert json.loads(fields[b"x"]) == pytest.approx(GOOD) and json.loads(fields[b"y"]) == [1.5]

    batch = celery_app.send_task(
        "tasks.training.learn", kwargs={"inputs": [GOOD] * 10, "targets": list(range(10))}
    ).get(timeout=20)
    assert batch["accepted"] == 10
    for bad_inputs, bad_targets, reason in [
        ([GOOD] * 3, [1.0, 2.0], "shape"),
        (GOOD, float("nan"), "non_finite"),
        (GOOD, None, "missing_field"),
        ([GOOD] * 2, "x", "type"),
    ]:
        with pytest.raises(InvalidInput) as caught:
            celery_app.send_task("tasks.training.learn", kwargs={"inputs": bad_inputs, "targets": bad_targets}).get(timeout=20)
        assert caught.value.reason == reason
    assert redis_client.xlen(keys.EXPERIENCE) == 11
    for _ in range(20):
        celery_app.send_task("tasks.training.learn", kwargs={"inputs": [GOOD] * 50, "targets": [0.0] * 50}).get(timeout=20)
    # MAXLEN ~ trims whole stream nodes (100 entries each), so the bound is approximate.
    assert redis_client.xlen(keys.EXPERIENCE) <= 50 + 100
