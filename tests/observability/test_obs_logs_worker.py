"""A real worker with OMNIMIND_LOG_FORMAT=json writes one JSON object per line,
and a task's lines carry the node, the task and the queue."""
from __future__ import annotations

import json
import re

import pytest

from tests.helpers import wait_until

PREDICT = "tasks.inference.predict"


def _json_lines(text):
    """The JSON objects of a worker's output.

    Every line Celery's logging writes is JSON. Celery also prints a few lines
    itself, outside logging (a SecurityWarning before logging is set up when run
    as root, "worker: Warm shutdown (MainProcess)"); those may stay plain, but
    no log line may.
    """
    parsed = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("{"):
            parsed.append(json.loads(line))  # a broken JSON line fails here
        else:
            assert not re.match(r"^\[\d{4}-\d\d-\d\d ", line), f"a console-format log line: {line!r}"
            assert not re.search(r"\b(INFO|WARNING|ERROR|DEBUG)/", line), f"a console-format log line: {line!r}"
    return parsed


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_json_worker_log_lines_carry_task_context(start_worker, celery_app, pool):
    worker = start_worker(f"js-{pool}", pool=pool, concurrency=2, OMNIMIND_LOG_FORMAT="json")
    result = celery_app.send_task(PREDICT, kwargs={"inputs": [0.5] * 16})
    assert result.get(timeout=30)["model_version"] == 0

    def task_lines():
        lines = [obj for obj in _json_lines(worker.output()) if obj.get("task_id") == result.id]
        return lines if {"task_received", "task_succeeded"} <= {obj["event"] for obj in lines} else None

    lines = wait_until(task_lines, timeout=20, message="the task's received and succeeded log lines")
    assert all(result.id not in line for line in worker.output().splitlines() if not line.startswith("{"))
    for obj in lines:
        assert obj["node_id"] == worker.hostname
        assert obj["task_name"] == PREDICT
        assert obj["level"] == "INFO" and obj["ts"].endswith("Z")
        assert result.id in obj["message"]
    succeeded = next(obj for obj in lines if obj["event"] == "task_succeeded")
    # Logged where the task ran (a pool child under prefork), inside the task's context.
    assert succeeded["queue"] == "inference"
    assert succeeded["model_version"] == 0
    assert succeeded["runtime_s"] >= 0
    assert succeeded["logger"] == "celery.app.trace"

    worker.stop()
    all_lines = _json_lines(worker.output())
    # The worker's own lines (startup, registry, shutdown) are JSON too and name the node.
    assert any(obj["event"] == "Registered %s with capabilities %s" for obj in all_lines)
    assert all(obj["node_id"] == worker.hostname for obj in all_lines if obj["logger"].startswith("workers."))
