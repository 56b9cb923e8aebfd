"""The freshness path in real workers: the served model follows the feedback stream.

A farm in the Procfile's shape (a training worker that is a one-member Raft
group, an inference worker), default learning and publication settings.
"""
import json
import uuid

import numpy as np
import pytest
import torch

from omnimind import keys
from tests.helpers import free_port, wait_until

SECRET = "test-secret-0123456789abcdef"
W_OLD = np.linspace(-1, 1, 16)
W_NEW = -np.linspace(1, -0.5, 16)[::-1] * 1.5
OFFSET_NEW = 3.0


def concept(x, new):
    return x @ W_NEW + OFFSET_NEW if new else x @ W_OLD


@pytest.fixture
def farm(start_worker, tmp_path):
    trainer = start_worker(
        "fresh-train", queues="training", pool="solo", concurrency=1, OMNIMIND_DATA_DIR=tmp_path / "t",
        OMNIMIND_RAFT_ID="c1", OMNIMIND_RAFT_PEERS=f"c1=127.0.0.1:{free_port()}", OMNIMIND_RAFT_SECRET=SECRET,
    )
    server = start_worker("fresh-serve", queues="inference", pool="threads", concurrency=2,
                          OMNIMIND_DATA_DIR=tmp_path / "i")
    return trainer, server


def feed(app, rng, new, batches=1):
    for _ in range(batches):
        x = rng.normal(size=(32, 16))
        app.send_task("tasks.training.learn", kwargs={"inputs": x.tolist(), "targets": concept(x, new).tolist()}
                      ).get(timeout=30)


def served(app, probe):
    out = app.send_task("tasks.inference.predict", kwargs={"inputs": probe.tolist()}).get(timeout=30)
    return np.asarray(out["outputs"]).reshape(-1), out["model_version"]


def mse(pred, target):
    return float(np.mean((pred - target) ** 2))


def versions(redis_client):
    from omnimind.models.store import ModelStore

    return ModelStore(redis_client).list_versions()


def test_served_model_follows_an_abrupt_change(farm, celery_app, redis_client):
    rng = np.random.default_rng(7)
    probe = rng.normal(size=(64, 16))
    untrained, _ = served(celery_app, probe)

    # Stationary feedback: the default farm publishes the learner without any flag.
    def caught_up():
        feed(celery_app, rng, new=False)
        pred, version = served(celery_app, probe)
        return version >= 1 and mse(pred, concept(probe, False)) < 0.25 * mse(untrained, concept(probe, False))

    wait_until(caught_up, timeout=120, interval=0, message="a published version that fits the first concept")
    pre_change, pre_version = served(celery_app, probe)
    pre_mse = mse(pre_change, concept(probe, False))
    reasons = {v.extras.get("reason") for v in versions(redis_client)}
    assert "challenger" in reasons, reasons

    # The world changes. The served version changes and fits the new concept,
    # within a deadline that bounds correctness, not speed (see benchmarks/freshness.py).
    def follows():
        feed(celery_app, rng, new=True)
        pred, version = served(celery_app, probe)
        return version > pre_version and mse(pred, concept(probe, True)) < max(4 * pre_mse, 0.5)

    wait_until(follows, timeout=180, interval=0, message="the served model to fit the new concept")
    pred, _ = served(celery_app, probe)
    assert mse(pred, concept(probe, True)) < mse(pred, concept(probe, False))

    # Every publication after the change fits the new concept better than the old one.
    from omnimind.config import settings
    from omnimind.models.factory import build_model
    from omnimind.models.store import ModelStore
    from omnimind.models.serialization import load_into
    from omnimind.learning.preprocessing import decode_regression

    store = ModelStore(redis_client)
    after = [v for v in store.list_versions() if v.version > pre_version]
    # The learner's challenger or the scheduled retrain (whose window starts at the
    # drift marker) may be first; either way the publication knows it follows a drift.
    assert any(v.extras.get("reason") in ("challenger_drift", "retrain_drift") for v in after), \
        [v.extras for v in after]
    for meta in after:
        model = build_model(settings)
        load_into(model, store.fetch(meta.version)[1])
        with torch.no_grad():  # outputs in target units: each version carries its own target scaling
            out = decode_regression(model, model(torch.from_numpy(probe.astype(np.float32)))).numpy().reshape(-1)
        assert mse(out, concept(probe, True)) < mse(out, concept(probe, False)), (meta.version, meta.extras)
    status = json.loads(redis_client.get(keys.learner_status(farm[0].hostname)))
    assert status["freshness"]["publishing"] and status["freshness"]["last_publication"]["version"] >= 2


def test_noise_feedback_is_refused_and_the_champion_keeps_serving(farm, celery_app, redis_client):
    rng = np.random.default_rng(3)
    probe = rng.normal(size=(64, 16))
    wait_until(lambda: (feed(celery_app, rng, new=False), served(celery_app, probe)[1] >= 1)[1], timeout=120,
               interval=0, message="a first publication")
    # Let the learner settle, then take the version serving now as the champion.
    feed(celery_app, rng, new=False, batches=40)
    from omnimind.models.store import ModelStore

    store = ModelStore(redis_client)
    champion = store.active_version()
    before, _ = served(celery_app, probe)
    # Adversarial feedback: labels that are pure noise, far larger than the signal.
    for _ in range(40):
        x = rng.normal(size=(32, 16))
        noise = rng.normal(scale=100.0, size=32)
        celery_app.send_task("tasks.training.learn", kwargs={"inputs": x.tolist(), "targets": noise.tolist()}
                             ).get(timeout=30)
    status = json.loads(redis_client.get(keys.learner_status(farm[0].hostname)))
    refusals = status["freshness"]["refusals"]
    assert refusals.get("not_better", 0) + refusals.get("diverged", 0) >= 3, refusals
    assert store.active_version() == champion, [(v.version, v.extras, v.validation_loss) for v in store.list_versions()]
    pred, version = served(celery_app, probe)
    assert version == champion and np.allclose(pred, before)


def test_a_redelivered_learn_is_answered_not_learned_again(farm, celery_app, redis_client):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(32, 16))
    kwargs = {"inputs": x.tolist(), "targets": concept(x, False).tolist()}
    task_id = str(uuid.uuid4())
    first = celery_app.send_task("tasks.training.learn", kwargs=kwargs, task_id=task_id).get(timeout=30)
    length = redis_client.xlen(keys.EXPERIENCE)
    samples = json.loads(redis_client.get(keys.learner_status(farm[0].hostname)))["samples"]
    # The same message again (what the broker does when the ack was lost). Its result
    # is the first run's (the backend keeps a stored success), so watch the worker.
    celery_app.send_task("tasks.training.learn", kwargs=kwargs, task_id=task_id)
    wait_until(lambda: f"learn {task_id} was learned and recorded before" in farm[0].output(), timeout=30,
               message="the redelivery to be answered")
    assert first["duplicate"] is False and first["accepted"] == 32
    assert redis_client.xlen(keys.EXPERIENCE) == length == 32
    assert json.loads(redis_client.get(keys.learner_status(farm[0].hostname)))["samples"] == samples
    feed(celery_app, rng, new=False)
    assert json.loads(redis_client.get(keys.learner_status(farm[0].hostname)))["samples"] == samples + 32
