"""The autoscaling signal (issue 13 item 5): a burst of slow predicts shows up as backlog
and utilisation, on a worker's /metrics and in ``omnimind status --json``, and goes back
to 0 when the burst is done."""
from __future__ import annotations

from tests.farm.slow_model import SLOW_MARKER
from tests.farm.test_farm_status_serving import status_json
from tests.helpers import free_port, metric_value, scrape, wait_until

SLOW_INPUT = [SLOW_MARKER] + [0.0] * 15
BURST = 8


def test_backlog_and_utilisation_follow_a_burst(start_worker, celery_app, redis_client, tmp_path):
    port = free_port()
    start_worker("scale", pool="threads", concurrency=2, OMNIMIND_METRICS_PORT=port,
                 OMNIMIND_HEARTBEAT_INTERVAL=0.2, OMNIMIND_MODEL_FACTORY="tests.farm.slow_model:build",
                 OMNIMIND_TEST_SLOW_SECONDS="1.5")

    def gauges():
        text = scrape(port)
        return (metric_value(text, "omnimind_queue_backlog", queue="inference"),
                metric_value(text, "omnimind_queue_utilisation", queue="inference"),
                metric_value(text, "omnimind_queue_capacity", queue="inference"))

    wait_until(lambda: gauges() == (0.0, 0.0, 2.0), timeout=20, message="an idle queue with 2 slots")
    results = [celery_app.send_task("tasks.inference.predict", kwargs={"inputs": SLOW_INPUT}) for _ in range(BURST)]

    # Two run, the rest wait (in Redis or prefetched): backlog >= 3, utilisation >= 1.
    backlog, utilisation, capacity = wait_until(lambda: (lambda g: g if g[0] >= 3 and g[1] >= 1.0 else None)(gauges()),
                                                timeout=20, interval=0.1, message="backlog and utilisation to rise")
    assert backlog <= BURST and capacity == 2.0

    def busy_status():
        scaling = status_json()["scaling"]["inference"]
        return scaling if scaling["backlog"] >= 1 and scaling["active"] >= 1 else None

    scaling = wait_until(busy_status, timeout=20, interval=0.2, message="status --json to show the burst")
    assert scaling["capacity"] == 2 and scaling["backlog"] == scaling["queued"] + scaling["reserved"]
    assert scaling["utilisation"] == (scaling["active"] + scaling["reserved"]) / 2

    for result in results:
        result.get(timeout=60)
    wait_until(lambda: gauges() == (0.0, 0.0, 2.0), timeout=20, message="the signal back to 0 after the burst")
    idle = status_json()["scaling"]["inference"]
    assert (idle["backlog"], idle["active"], idle["utilisation"], idle["capacity"]) == (0, 0, 0.0, 2)
