"""Counts recorded in prefork pool children add up on the worker's /metrics."""
from __future__ import annotations

import re

from tests.helpers import free_port, metric_value, scrape, wait_until

PREDICT = "tasks.inference.predict"
GOOD = [0.25] * 16


def _send(app, n):
    results = [app.send_task(PREDICT, kwargs={"inputs": GOOD}) for _ in range(n)]
    return [r.get(timeout=60) for r in results]


def _pids_with_counters(folder):
    return {int(m.group(1)) for p in folder.glob("counter_*.db") if (m := re.match(r"counter_(\d+)\.db", p.name))}


def test_prefork_children_add_up_and_restart_starts_at_zero(start_worker, celery_app, tmp_path):
    port = free_port()
    metrics_root = tmp_path / "metrics"
    env = {"OMNIMIND_METRICS_PORT": port, "OMNIMIND_METRICS_DIR": metrics_root}
    worker = start_worker("pf", pool="prefork", concurrency=2, **env)
    node = worker.hostname
    folder = metrics_root / node

    # Known series exist at 0 before the first task (increase() sees the first event).
    text = scrape(port)
    assert f'omnimind_tasks_total{{state="succeeded",task="{PREDICT}"}} 0.0' in text
    assert f'omnimind_cluster_requests_total{{node_id="{node}",status="error"}} 0.0' in text
    assert 'omnimind_model_swap_rejections_total{reason="checksum"} 0.0' in text

    sent = 40
    assert len(_send(celery_app, sent)) == sent

    def counted():
        text = scrape(port)
        return text if metric_value(text, "omnimind_tasks_total", task=PREDICT, state="succeeded") >= sent else None

    text = wait_until(counted, timeout=20, message="40 succeeded tasks on /metrics")
    assert metric_value(text, "omnimind_cluster_requests_total", node_id=node, status="success") == sent
    assert metric_value(text, "omnimind_cluster_requests_total", node_id=node, status="error") == 0
    assert metric_value(text, "omnimind_tasks_total", task=PREDICT, state="succeeded") == sent
    assert metric_value(text, "omnimind_tasks_total", task=PREDICT, state="started") == sent
    # "received" is counted by the main process, "started"/"succeeded" by the children.
    assert metric_value(text, "omnimind_tasks_total", task=PREDICT, state="received") == sent
    assert metric_value(text, "omnimind_cluster_latency_seconds_count", node_id=node) == sent
    assert metric_value(text, "omnimind_task_runtime_seconds_count", task=PREDICT) == sent
    # Both pool children counted (plus the main process): the sum above really is a sum.
    assert len(_pids_with_counters(folder) - {worker.pid}) >= 2, sorted(p.name for p in folder.iterdir())
    # Gauges set in the children (the served model version) come through too.
    assert f'omnimind_model_version{{node_id="{node}"}} 0.0' in text

    old_files = {p.name for p in folder.glob("*.db")}
    worker.stop()
    worker = start_worker("pf", pool="prefork", concurrency=2, **env)
    text = scrape(port)
    assert metric_value(text, "omnimind_tasks_total", task=PREDICT, state="succeeded") == 0
    assert metric_value(text, "omnimind_cluster_requests_total", node_id=node) == 0
    assert not (old_files & {p.name for p in folder.glob("*.db")}), "the previous run's files survived"

    assert len(_send(celery_app, 5)) == 5
    wait_until(
        lambda: metric_value(scrape(port), "omnimind_cluster_requests_total", node_id=node, status="success") == 5,
        timeout=20,
        message="5 requests counted after the restart",
    )
