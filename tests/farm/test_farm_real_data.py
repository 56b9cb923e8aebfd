"""Learning on real-shaped data in real workers: typed inputs, classifier heads, preprocessing.

Each farm is in the Procfile's shape: a training worker that is a one-member Raft
group (so its learner publishes) and inference workers, all on one model spec
declared through settings (``OMNIMIND_MODEL_HEAD``, ``OMNIMIND_MODEL_SIGNATURE``,
``OMNIMIND_MODEL_LABELS``).
"""
import json

import numpy as np
import pytest

from tests.farm.real_data_models import VOCAB
from tests.helpers import free_port, metric_value, scrape, wait_until

SECRET = "test-secret-0123456789abcdef"
TOPICS = ["sports", "politics", "weather"]
TEXT_SIGNATURE = json.dumps({"inputs": [{"name": "tokens", "dtype": "int64", "shape": [-1], "max_len": 12,
                                         "vocab": VOCAB, "mask": True}]})
TABULAR_SIGNATURE = json.dumps({"inputs": [
    {"name": "income", "dtype": "float32"},
    {"name": "age", "dtype": "int64"},
    {"name": "member", "dtype": "bool"},
    {"name": "plan", "dtype": "string", "values": ["free", "pro", "team"]},
    {"name": "city", "dtype": "string", "encoder": "hash", "buckets": 8, "max_length": 32},
]})


def trainer_env(tmp_path, **extra):
    return dict(queues="training", pool="solo", concurrency=1, OMNIMIND_DATA_DIR=tmp_path / "t",
                OMNIMIND_RAFT_ID="c1", OMNIMIND_RAFT_PEERS=f"c1=127.0.0.1:{free_port()}", OMNIMIND_RAFT_SECRET=SECRET,
                **extra)


def predict(app, inputs):
    return app.send_task("tasks.inference.predict", kwargs={"inputs": inputs}).get(timeout=30)


def learn(app, inputs, targets):
    return app.send_task("tasks.training.learn", kwargs={"inputs": inputs, "targets": targets}).get(timeout=30)


def refused(app, task, **kwargs):
    from omnimind.errors import InvalidInput

    with pytest.raises(InvalidInput) as caught:
        app.send_task(task, kwargs=kwargs).get(timeout=30)
    return caught.value.reason


# --------------------------------------------------------------------------- text
def document(rng, topic):
    """Token ids of a short document: words of its topic (12 per topic), and shared filler words."""
    length = int(rng.integers(3, 13))
    own = rng.integers(1 + 12 * topic, 13 + 12 * topic, size=length)
    filler = rng.integers(37, VOCAB, size=length)
    return np.where(rng.random(length) < 0.6, own, filler).tolist()


def corpus(rng, n):
    topics = rng.integers(0, 3, size=n)
    return [document(rng, t) for t in topics], [TOPICS[t] for t in topics]


def test_embedding_text_classifier_learns_from_token_ids_and_serves_labels(start_worker, celery_app, tmp_path):
    spec = dict(OMNIMIND_MODEL_FACTORY="tests.farm.real_data_models:text_classifier",
                OMNIMIND_MODEL_SIGNATURE=TEXT_SIGNATURE, OMNIMIND_MODEL_HEAD="multiclass",
                OMNIMIND_MODEL_LABELS=",".join(TOPICS))
    metrics_port = free_port()
    start_worker("text-train", **trainer_env(tmp_path, **spec))
    start_worker("text-serve", queues="inference", pool="threads", concurrency=2, OMNIMIND_DATA_DIR=tmp_path / "i",
                 OMNIMIND_METRICS_PORT=metrics_port, **spec)
    rng = np.random.default_rng(3)
    probe, probe_topics = corpus(np.random.default_rng(99), 60)

    def accurate():
        docs, topics = corpus(rng, 16)
        learn(celery_app, docs, topics)
        out = predict(celery_app, probe)
        hits = sum(row["label"] == topic for row, topic in zip(out["outputs"], probe_topics))
        return out["model_version"] >= 1 and hits >= 0.9 * len(probe)

    wait_until(accurate, timeout=120, interval=0, message="a published text classifier that is 90% accurate")
    one = predict(celery_app, {"tokens": probe[0]})
    assert one["labels"] == TOPICS
    row = one["outputs"]
    assert row["label"] in TOPICS and abs(sum(row["probabilities"]) - 1.0) < 1e-5
    assert [label for label, _ in row["top_k"]][0] == row["label"] and len(row["top_k"]) == 3

    # Bad input: typed, counted, and the worker keeps serving.
    assert refused(celery_app, "tasks.inference.predict", inputs=[[1, VOCAB]]) == "out_of_range"
    assert refused(celery_app, "tasks.inference.predict", inputs=[[-1, 2]]) == "out_of_range"
    assert refused(celery_app, "tasks.inference.predict", inputs=[[1] * 13]) == "too_long"
    assert refused(celery_app, "tasks.inference.predict", inputs=[[1.5, 2.0]]) == "type"
    assert refused(celery_app, "tasks.inference.predict", inputs={"words": [1, 2]}) == "unknown_feature"
    assert refused(celery_app, "tasks.training.learn", inputs=[[1, 2]], targets=["music"]) == "unknown_label"
    text = scrape(metrics_port)
    for reason in ("out_of_range", "too_long", "type", "unknown_feature"):
        assert metric_value(text, "omnimind_bad_inputs_total", task="tasks.inference.predict", reason=reason) >= 1
    assert predict(celery_app, probe[:2])["model_version"] >= 1


# ------------------------------------------------------------------------ tabular
def customer(rng):
    """A customer and its tier: the tier follows income (thousands) and plan; age and city are noise."""
    plan = ["free", "pro", "team"][int(rng.integers(0, 3))]
    income = float(rng.normal(60_000, 20_000))
    row = {"income": income, "age": int(rng.integers(18, 80)), "member": bool(rng.random() < 0.5), "plan": plan,
           "city": ["Oslo", "Lima", "Pune", "Kyiv"][int(rng.integers(0, 4))]}
    tier = "gold" if plan == "team" else ("silver" if income > 60_000 else "bronze")
    return row, tier


def test_tabular_classifier_takes_named_features_and_string_labels(start_worker, celery_app, tmp_path):
    spec = dict(OMNIMIND_MODEL_FACTORY="tests.farm.real_data_models:tabular_classifier",
                OMNIMIND_MODEL_SIGNATURE=TABULAR_SIGNATURE, OMNIMIND_MODEL_HEAD="multiclass")
    # The tuned case: the gate judges this classifier on its error rate (the text test: log loss).
    start_worker("tab-train", **trainer_env(tmp_path, OMNIMIND_CHALLENGER_METRIC="error_rate", **spec))
    start_worker("tab-serve", queues="inference", pool="threads", concurrency=2, OMNIMIND_DATA_DIR=tmp_path / "i",
                 **spec)
    rng = np.random.default_rng(5)
    probe = [customer(np.random.default_rng(1000 + i)) for i in range(60)]

    def accurate():
        rows, tiers = zip(*(customer(rng) for _ in range(16)))
        learn(celery_app, list(rows), list(tiers))
        out = predict(celery_app, [row for row, _ in probe])
        hits = sum(o["label"] == tier for o, (_, tier) in zip(out["outputs"], probe))
        return out["model_version"] >= 1 and hits >= 0.85 * len(probe)

    wait_until(accurate, timeout=120, interval=0, message="a published tabular classifier that is 85% accurate")
    # A positional example (declaration order) is the same example as the dict.
    row, _ = probe[0]
    named = predict(celery_app, row)
    positional = predict(celery_app, [row["income"], row["age"], row["member"], row["plan"], row["city"]])
    assert named["outputs"] == positional["outputs"]
    # Labels grew from the feedback (no declared set): strings, in order of first sight.
    assert sorted(named["labels"]) == ["bronze", "gold", "silver"]
    probabilities = dict(zip(named["labels"], named["outputs"]["probabilities"]))
    assert named["outputs"]["top_k"][0] == [named["outputs"]["label"], max(probabilities.values())]

    bad = dict(row)
    assert refused(celery_app, "tasks.inference.predict", inputs={**bad, "colour": "red"}) == "unknown_feature"
    assert refused(celery_app, "tasks.inference.predict", inputs={k: v for k, v in bad.items() if k != "plan"}) \
        == "missing_feature"
    assert refused(celery_app, "tasks.inference.predict", inputs={**bad, "city": "x" * 33}) == "too_long"
    assert refused(celery_app, "tasks.inference.predict", inputs={**bad, "income": "a lot"}) == "type"
    assert refused(celery_app, "tasks.inference.predict", inputs={**bad, "plan": "enterprise"}) == "bad_value"
    assert refused(celery_app, "tasks.training.learn", inputs=[row], targets=[{"tier": 1}]) == "type"
    # The head has 3 outputs, all taken: a fourth label cannot grow it.
    assert refused(celery_app, "tasks.training.learn", inputs=[row], targets=["platinum"]) == "unknown_label"
    assert predict(celery_app, row)["model_version"] >= 1


# --------------------------------------------------------------------- regression
def scaled_rows(rng, n):
    """Features five orders of magnitude apart; the target depends on both."""
    x = np.concatenate([rng.normal(0, 1e5, (n, 8)), rng.normal(0, 1.0, (n, 8))], axis=1)
    y = 3e-5 * x[:, :8].sum(axis=1) + x[:, 8:].sum(axis=1) + 500.0
    return x, y


def test_features_1e5_apart_learn_publish_and_preprocessing_travels_with_the_version(
        start_worker, celery_app, redis_client, tmp_path):
    from omnimind.config import settings
    from omnimind.learning.preprocessing import decode_regression
    from omnimind.models.factory import build_model
    from omnimind.models.serialization import load_into
    from omnimind.models.store import ModelStore

    start_worker("reg-train", **trainer_env(tmp_path))
    servers = [start_worker(f"reg-serve{i}", queues="inference", pool="threads", concurrency=2,
                            OMNIMIND_DATA_DIR=tmp_path / f"i{i}") for i in range(2)]
    rng = np.random.default_rng(11)
    probe, probe_y = scaled_rows(np.random.default_rng(12), 64)
    variance = float(np.var(probe_y))

    def fits():
        x, y = scaled_rows(rng, 32)
        out = learn(celery_app, x.tolist(), y.tolist())
        assert out["loss"] is None or np.isfinite(out["loss"])
        served = predict(celery_app, probe.tolist())
        mse = float(np.mean((np.asarray(served["outputs"]).reshape(-1) - probe_y) ** 2))
        return served["model_version"] >= 2 and mse < 0.2 * variance

    wait_until(fits, timeout=150, interval=0, message="published versions that fit a stream with features 1e5 apart")

    store = ModelStore(redis_client)
    versions = [v.version for v in store.list_versions()]
    first, newest = versions[0], versions[-1]

    def served_by_all(version):
        outs = [predict(celery_app, probe.tolist()) for _ in range(8)]
        by_node = {o["node_id"]: o for o in outs if o["model_version"] == version}
        return by_node if len(by_node) == 2 else None

    def expected(version):
        model = build_model(settings)
        load_into(model, store.fetch(version)[1])
        import torch
        with torch.no_grad():
            return decode_regression(model, model(torch.from_numpy(probe.astype(np.float32)))).numpy().reshape(-1)

    # Publish: the blob carries the statistics, every worker applies them identically.
    state = store.fetch(newest)[1]
    assert float(state["omnimind_x_count"]) > 0 and float(state["omnimind_y_count"]) > 0
    assert float(state["omnimind_x_m2"][0] / state["omnimind_x_count"]) > 1e8  # the 1e5-scale features' variance
    wait_until(lambda: served_by_all(newest) or served_by_all(store.active_version()), timeout=30,
               message="both workers serving the newest version")
    # Roll back to the first publication: its own statistics come back with its weights.
    store.rollback(first, fence=store.fence())
    by_node = wait_until(lambda: served_by_all(first), timeout=30, message="both workers serving the rolled-back version")
    outputs = [np.asarray(o["outputs"]).reshape(-1) for o in by_node.values()]
    assert np.array_equal(outputs[0], outputs[1])
    np.testing.assert_allclose(outputs[0], expected(first), rtol=1e-5, atol=1e-3)
    # A restarted worker loads the same version with the same statistics.
    servers[0].stop()
    start_worker("reg-serve0", queues="inference", pool="threads", concurrency=2, OMNIMIND_DATA_DIR=tmp_path / "i0")
    by_node = wait_until(lambda: served_by_all(first), timeout=30, message="the restarted worker serving it too")
    again = [np.asarray(o["outputs"]).reshape(-1) for o in by_node.values()]
    assert np.array_equal(again[0], again[1]) and np.array_equal(again[0], outputs[0])
