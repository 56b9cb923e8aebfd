"""Time limits in the pools Celery does not police (threads, solo): a runaway
task fails with SoftTimeLimitExceeded, is counted, and frees its slot."""
import pytest
from celery.exceptions import SoftTimeLimitExceeded

from tests.farm.slow_model import SLOW_MARKER
from tests.helpers import free_port, metric_value, scrape, wait_until

RUNAWAY = {"OMNIMIND_MODEL_FACTORY": "tests.farm.slow_model:build", "OMNIMIND_TEST_SLOW_SECONDS": "600",
           "OMNIMIND_INFERENCE_SOFT_TIME_LIMIT": "1", "OMNIMIND_INFERENCE_TIME_LIMIT": "3"}


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_runaway_predict_is_interrupted_and_the_worker_keeps_serving(start_worker, celery_app, pool):
    port = free_port()
    worker = start_worker(f"limits-{pool}", pool=pool, concurrency=1, OMNIMIND_METRICS_PORT=port, **RUNAWAY)
    # No limits in the message (explicit None: otherwise send_task copies those of the
    # client's registered task), so the worker's queue limits apply.
    runaway = celery_app.send_task("tasks.inference.predict", kwargs={"inputs": [SLOW_MARKER] + [0.0] * 15},
                                   soft_time_limit=None, time_limit=None)
    # One slot: this request waits behind the runaway and is served once it is interrupted.
    after = celery_app.send_task("tasks.inference.predict", kwargs={"inputs": [0.0] * 16})
    with pytest.raises(SoftTimeLimitExceeded):
        runaway.get(timeout=30)
    assert after.get(timeout=30)["node_id"] == worker.hostname
    text = scrape(port)
    assert metric_value(text, "omnimind_task_time_limits_total", task="tasks.inference.predict", kind="soft") == 1
    assert metric_value(text, "omnimind_task_time_limits_total", task="tasks.inference.predict", kind="hard") == 0
    wait_until(lambda: "exceeded its soft time limit (1.0s)" in worker.output(), timeout=10, message="the log line")
    # A per-call limit wins over the queue's.
    with pytest.raises(SoftTimeLimitExceeded):
        celery_app.send_task("tasks.inference.predict", kwargs={"inputs": [SLOW_MARKER] + [0.0] * 15},
                             soft_time_limit=0.3, time_limit=5).get(timeout=30)
    wait_until(lambda: "exceeded its soft time limit (0.3s)" in worker.output(), timeout=10, message="the log line")
