"""The online learner inside a real training worker."""
import json
import os
import subprocess
import sys

import numpy as np

from omnimind import keys
from tests.helpers import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def linear_stream(rng, n, shift=0.0):
    w = np.linspace(-1, 1, 16)
    x = rng.normal(size=(n, 16))
    return x.tolist(), (x @ w + shift).tolist()


def learn(app, x, y):
    return app.send_task("tasks.training.learn", kwargs={"inputs": x, "targets": y}).get(timeout=30)


def status(redis_client, worker):
    raw = redis_client.get(keys.learner_status(worker.hostname))
    return json.loads(raw) if raw else None


def test_learner_loss_goes_down_and_drift_is_reported(start_worker, celery_app, redis_client, tmp_path):
    worker = start_worker("learn1", queues="training", pool="solo", concurrency=1, OMNIMIND_DATA_DIR=tmp_path,
                          OMNIMIND_LEARNING_RATE="0.02")
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(60):
        out = learn(celery_app, *linear_stream(rng, 32))
        # A step on every call, more while the stream leaves time (OMNIMIND_LEARNING_MAX_PASSES).
        assert 1 <= out["updates"] <= 8 and out["model_version"] == 0
        losses.append(out["loss"])
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10]), losses
    summary = status(redis_client, worker)
    assert summary["samples"] == 60 * 32 and 60 <= summary["batches"] <= 60 * 8
    assert summary["prequential"]["0"]["count"] > 0
    from omnimind.config import settings
    from omnimind.status import read_status, render

    screen = render(read_status(settings))
    assert f"LEARNER {worker.hostname}  samples=1920 batches={summary['batches']}" in screen
    assert "v0: prequential loss" in screen

    # The world shifts: targets move by +5. The learner must notice.
    drifted = False
    for _ in range(20):
        drifted |= learn(celery_app, *linear_stream(rng, 32, shift=5.0))["drift"]
    assert drifted
    events = redis_client.xrange(keys.DRIFT_EVENTS)
    assert events and events[0][1][b"node_id"].decode() == worker.hostname
    assert status(redis_client, worker)["drift_events"] >= 1


def test_killed_training_worker_resumes_from_checkpoint(start_worker, celery_app, redis_client, tmp_path):
    # One step per call, so that checkpoints (every 5 steps) fall on known calls.
    env = dict(queues="training", pool="solo", concurrency=1, OMNIMIND_DATA_DIR=tmp_path, OMNIMIND_CHECKPOINT_EVERY=5,
               OMNIMIND_LEARNING_MAX_PASSES=1)
    worker = start_worker("learn2", **env)
    rng = np.random.default_rng(1)
    for _ in range(12):
        learn(celery_app, *linear_stream(rng, 32))
    # Checkpoints are taken every 5 batches: after 12, the one at 10 is on disk.
    worker.kill()
    # While it is down, a new version becomes active: the learner resumes its state
    # (samples, replay, detector) but learns on from the active weights.
    from omnimind.config import settings
    from omnimind.models.factory import build_model
    from omnimind.models.store import ModelStore

    ModelStore(redis_client).publish(build_model(settings).state_dict(), fence=(1, 1))
    restarted = start_worker("learn2", **env)
    assert "Learner resumed" in restarted.output()
    out = learn(celery_app, *linear_stream(rng, 32))
    assert out["updates"] == 1 and out["model_version"] == 1
    assert "Learner continues from model v1" in restarted.output()
    summary = status(redis_client, restarted)
    assert summary["samples"] == 11 * 32  # 10 checkpointed batches + this one
    assert summary["model_version"] == 1


def test_prefork_training_pool_is_refused(redis_server, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "omnimind", "worker", "-Q", "training", "--pool=prefork",
         "--concurrency=2", "-n", "refused@%h"],
        cwd=ROOT, env={**os.environ, "OMNIMIND_DATA_DIR": str(tmp_path)}, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "one online learner per worker" in proc.stdout + proc.stderr


def test_demo_drives_the_learner_and_plots(start_worker, tmp_path):
    start_worker("demo", queues="training", pool="solo", concurrency=1, OMNIMIND_DATA_DIR=tmp_path)
    out = tmp_path / "demo.png"
    proc = subprocess.run(
        [sys.executable, "-m", "omnimind.cli", "demo", "--stream", "mean_shift", "--batches", "60", "--out", str(out)],
        cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "batch 60/60" in proc.stdout and out.stat().st_size > 10_000
    detected = int(proc.stdout.split("omnimind demo: ")[1].split(" drift")[0])
    assert detected >= 1  # the mean shift halfway through is noticed


def test_river_streams_have_one_change_of_concept():
    from omnimind.demo import STREAMS, make_stream

    for name in STREAMS:
        stream = make_stream(name, n_features=16, total=400, seed=3)
        assert stream.x.shape == (400, 16) and stream.y.shape == (400,) and stream.drift_at == 200
        assert np.isfinite(stream.x).all() and np.isfinite(stream.y).all()


def test_learn_killed_between_result_and_ack_is_not_learned_twice(start_worker, celery_app, redis_client, tmp_path):
    """The failpoint SIGKILLs the worker after the result is stored, before the late
    ack: the broker redelivers the message, and the learner answers it from its record."""
    marker = tmp_path / "killed.json"
    env = dict(queues="training", pool="solo", concurrency=1, OMNIMIND_DATA_DIR=tmp_path)
    worker = start_worker("learn3", OMNIMIND_FAILPOINT_KILL_AFTER_RESULT=f"tasks.training.learn@{marker}", **env)
    rng = np.random.default_rng(4)
    first = learn(celery_app, *linear_stream(rng, 32))
    assert first["duplicate"] is False
    worker.proc.wait(30)
    assert worker.proc.returncode == -9 and marker.exists()
    task_id = json.loads(marker.read_text())["task_id"]
    assert redis_client.xlen(keys.EXPERIENCE) == 32
    restarted = start_worker("learn3", **env)
    wait_until(lambda: f"learn {task_id} was learned and recorded before" in restarted.output(), timeout=60,
               message="the redelivered learn to be answered")
    assert redis_client.xlen(keys.EXPERIENCE) == 32
    out = learn(celery_app, *linear_stream(rng, 32))
    assert out["duplicate"] is False
    assert status(redis_client, restarted)["samples"] == 32  # the killed process's state died with it
    assert redis_client.xlen(keys.EXPERIENCE) == 64
