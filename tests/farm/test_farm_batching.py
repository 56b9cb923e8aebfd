"""Dynamic batching through a real threads-pool worker and real Redis."""
import threading
from dataclasses import replace

import numpy as np
import pytest

from omnimind.config import get_settings
from omnimind.errors import InvalidInput
from omnimind.models.factory import build_model
from omnimind.models.store import ModelStore
from tests.helpers import free_port, metric_value, scrape, wait_until

PREDICT = "tasks.inference.predict"
PACED = "tests.farm.slow_model:build_paced"
#: A model whose every pass takes 5 ms and a wide batching window, so that batches form
#: even on a busy 2-core machine.
BATCHING = {"OMNIMIND_BATCH_MAX_SIZE": 16, "OMNIMIND_BATCH_MAX_DELAY_MS": 20, "OMNIMIND_MODEL_FACTORY": PACED}


def send(app, inputs):
    return app.send_task(PREDICT, kwargs={"inputs": inputs})


def marker_weights(marker: float) -> dict:
    """Weights of the paced model whose output on any input is ``marker``."""
    state = {k: v.clone() for k, v in build_model(replace(get_settings(), model_factory=PACED)).state_dict().items()}
    last = sorted(k for k in state if k.endswith(".weight"))[-1]
    state[last].zero_()
    state[last.replace("weight", "bias")].fill_(marker)
    return state


def test_burst_outputs_equal_lone_outputs_and_a_bad_request_fails_alone(start_worker, celery_app):
    port = free_port()
    start_worker("batch-burst", concurrency=16, OMNIMIND_METRICS_PORT=port, **BATCHING)
    rng = np.random.default_rng(12)
    inputs = [rng.normal(size=16).round(4).tolist() for _ in range(40)]
    inputs[7] = rng.normal(size=(3, 16)).round(4).tolist()  # a batch request among single examples
    bad_at = 20
    burst = [send(celery_app, [1.0, 2.0, 3.0] if i == bad_at else x) for i, x in enumerate(inputs)]
    burst_results = {}
    for i, result in enumerate(burst):
        if i == bad_at:
            with pytest.raises(InvalidInput, match="shape"):
                result.get(timeout=60)
        else:
            burst_results[i] = result.get(timeout=60)
    merged = [r for r in burst_results.values() if r["batch"]["examples"] > 1]
    assert merged, "no batch formed under a 40-request burst"
    lone = {i: send(celery_app, inputs[i]).get(timeout=30) for i in burst_results}  # one at a time
    for i, out in burst_results.items():
        assert np.allclose(out["outputs"], lone[i]["outputs"], rtol=0, atol=1e-5), i
    # The batch-size histogram counts exactly the passes the results name, and their examples.
    passes = {}
    for out in list(burst_results.values()) + list(lone.values()):
        passes[out["batch"]["id"]] = out["batch"]["examples"]
    text = wait_until(lambda: scrape(port), message="metrics")
    assert metric_value(text, "omnimind_batch_size_count") == len(passes)
    assert metric_value(text, "omnimind_batch_size_sum") == sum(passes.values())
    assert sum(passes.values()) == 2 * (39 + 2)  # 39 valid requests, one of 3 examples, sent twice
    assert metric_value(text, "omnimind_batch_queue_delay_seconds_count") == 2 * 39


def test_a_swap_under_batched_load_loses_nothing_and_never_mixes_versions(start_worker, celery_app, redis_client):
    start_worker("batch-swap", concurrency=16, **BATCHING)
    store = ModelStore(redis_client)
    published, errors = threading.Event(), []

    def publisher():
        try:
            for version in range(1, 6):
                store.publish(marker_weights(float(version)), {"validation_loss": 0.1}, fence=(1, version))
                wait_until(lambda: store.active_version() == version, message=f"v{version} active")
                wait_until(lambda: any(a["model_version"] == version for a in list(answers)), timeout=60,
                           message=f"answers from v{version}")
        except Exception as exc:
            errors.append(exc)
        finally:
            published.set()

    answers = []
    thread = threading.Thread(target=publisher)
    thread.start()
    sent = 0
    while not published.is_set():  # bursts of 32 until every version has answered
        burst = [send(celery_app, [0.5] * 16) for _ in range(32)]
        sent += len(burst)
        answers += [result.get(timeout=60) for result in burst]  # any failure fails the test
    thread.join(60)
    assert not errors, errors
    assert len(answers) == sent
    by_batch = {}
    for answer in answers:
        by_batch.setdefault(answer["batch"]["id"], set()).add(answer["model_version"])
        # Every answer came from exactly the version it names.
        assert answer["model_version"] == 0 or answer["outputs"][0] == pytest.approx(answer["model_version"])
    assert all(len(versions) == 1 for versions in by_batch.values())
    assert {a["model_version"] for a in answers} >= {1, 2, 3, 4, 5}
    assert any(a["batch"]["examples"] > 1 for a in answers), "no batch formed under load"


def test_batches_wait_under_a_backlog_but_a_lone_request_after_it_does_not(start_worker, celery_app):
    """A 200 ms window: a burst's batches fill while the queue holds more, and a lone
    predict right after the burst runs at once (nothing is received behind it)."""
    port = free_port()
    start_worker("batch-lone", concurrency=16, OMNIMIND_METRICS_PORT=port,
                 **{**BATCHING, "OMNIMIND_BATCH_MAX_DELAY_MS": 200})
    burst = [send(celery_app, [0.5] * 16) for _ in range(48)]
    answers = [result.get(timeout=60) for result in burst]
    assert max(a["batch"]["examples"] for a in answers) >= 4, "no batch filled under a backlog of 48"
    text = wait_until(lambda: scrape(port), message="metrics")
    before = (metric_value(text, "omnimind_batch_queue_delay_seconds_bucket", le="0.05"),
              metric_value(text, "omnimind_batch_queue_delay_seconds_count"))
    lone = [send(celery_app, [0.5] * 16).get(timeout=30) for _ in range(10)]  # one at a time
    assert all(a["batch"]["examples"] == 1 for a in lone)
    text = scrape(port)
    fast = metric_value(text, "omnimind_batch_queue_delay_seconds_bucket", le="0.05") - before[0]
    assert metric_value(text, "omnimind_batch_queue_delay_seconds_count") - before[1] == 10
    assert fast == 10, f"{10 - fast} lone request(s) waited 50 ms or more in the batcher (the window is 200 ms)"
