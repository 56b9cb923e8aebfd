"""The kill-after-result failpoint (workers/failpoints.py): a worker dies between a
task's stored result and its late ack, and the message is redelivered.

This is the failure that makes a ``learn`` run twice (issue 10); here it is shown
on ``predict``, which has no side effect to deduplicate.
"""
import json
import signal
import types
from datetime import datetime

from workers import failpoints
from tests.helpers import wait_until

GOOD = [0.25] * 16
TASK = "tasks.inference.predict"


def result_meta(redis_client, task_id):
    raw = redis_client.get(f"celery-task-meta-{task_id}")
    return json.loads(raw) if raw else None


def test_killed_between_result_and_ack_the_task_is_redelivered(start_worker, celery_app, redis_client, tmp_path):
    marker = tmp_path / "killed-after-result.json"
    worker = start_worker("fp", pool="solo", concurrency=1,
                          OMNIMIND_FAILPOINT_KILL_AFTER_RESULT=f"{TASK}@{marker}")
    result = celery_app.send_task(TASK, kwargs={"inputs": GOOD})

    # The client has its result: it was stored before the worker died.
    first = result.get(timeout=30)
    assert first["model_version"] == 0 and first["node_id"] == worker.hostname
    assert worker.proc.wait(timeout=30) == -signal.SIGKILL
    record = json.loads(marker.read_text())
    assert record == {"task_id": result.id, "task": TASK, "pid": worker.pid}
    first_done = datetime.fromisoformat(result_meta(redis_client, result.id)["date_done"])
    log = worker.output()
    assert f"{TASK}[{result.id}] received" in log
    assert "Failpoint OMNIMIND_FAILPOINT_KILL_AFTER_RESULT: SIGKILL" in log
    # Killed inside the tracer: Celery's "succeeded" line (after task_success) never came.
    assert f"{TASK}[{result.id}] succeeded" not in log, log[-3000:]
    worker.stop()

    # The same worker, restarted without the failpoint: the unacked message comes
    # back at once (the new incarnation restores what the old one held) and runs again.
    restarted = start_worker("fp", pool="solo", concurrency=1)

    def ran_again():
        if restarted.proc.poll() is not None:
            raise AssertionError(f"restarted worker exited:\n{restarted.output()[-3000:]}")
        text = restarted.output()
        return f"{TASK}[{result.id}] received" in text and f"{TASK}[{result.id}] succeeded" in text

    wait_until(ran_again, timeout=60, interval=0.2, message=f"{result.id} to be redelivered and run again")
    # Celery's key-value backends never overwrite a stored SUCCESS (backends/base.py
    # _store_result), so the second run leaves the first result as it was.
    meta = result_meta(redis_client, result.id)
    assert meta["status"] == "SUCCESS" and meta["result"] == first
    assert datetime.fromisoformat(meta["date_done"]) == first_done
    # Fired once: the marker still names the first run, and the worker serves on.
    assert json.loads(marker.read_text()) == record
    assert celery_app.send_task(TASK, kwargs={"inputs": GOOD}).get(timeout=20)["node_id"] == restarted.hostname


def test_failpoint_fires_once_and_only_for_its_task(tmp_path, monkeypatch):
    # In this process: an existing marker or another task name must never kill it.
    marker = tmp_path / "marker.json"
    marker.write_text("{}")
    killed = []
    monkeypatch.setattr(failpoints.os, "kill", lambda pid, sig: killed.append((pid, sig)))
    try:
        assert failpoints.connect(f"{TASK}@{marker}") == (TASK, marker)
        task = types.SimpleNamespace(name=TASK, request=types.SimpleNamespace(id="t-1"))
        failpoints._kill_after_result(sender=task)
        assert killed == [] and marker.read_text() == "{}"
        marker.unlink()
        failpoints._kill_after_result(sender=types.SimpleNamespace(name="tasks.training.learn", request=task.request))
        assert killed == [] and not marker.exists()
        failpoints._kill_after_result(sender=task)  # creates the marker, then "kills"
        assert killed == [(failpoints.os.getpid(), signal.SIGKILL)]
        assert json.loads(marker.read_text())["task_id"] == "t-1"
    finally:
        failpoints.connect("")
    assert failpoints._armed is None
