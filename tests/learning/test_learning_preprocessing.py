"""Online preprocessing, labels and the classifier heads' outputs (pure, no I/O)."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from omnimind.learning import InvalidFeedback, preprocessing
from omnimind.learning.spec import ModelSpec
from omnimind.models.serialization import (
    decode_state_dict,
    encode_state_dict,
    load_into,
)


@pytest.fixture(autouse=True)
def one_torch_thread():
    # Small steps, as in a training worker (OMNIMIND_LEARNER_TORCH_THREADS=1): more threads only contend.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _regressor(spec=None, width=4, out=1):
    spec = spec or ModelSpec()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(width, 8), nn.ReLU(), nn.Linear(8, out))
    return preprocessing.attach(model, spec, input_width=width, output_width=out)


def test_running_statistics_match_the_whole_stream_batch_by_batch():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (500, 4)) * np.array([1e5, 1.0, 1e-3, 10.0]) + np.array([3e5, -2.0, 0.0, 7.0])
    model = _regressor()
    for start in range(0, 500, 37):  # uneven batches
        preprocessing.observe(model, ModelSpec(), torch.tensor(x[start:start + 37], dtype=torch.float32))
    np.testing.assert_allclose(model.omnimind_x_mean.numpy(), x.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose((model.omnimind_x_m2 / model.omnimind_x_count).numpy(), x.var(axis=0), rtol=1e-4)
    z = preprocessing.standardize(model, torch.tensor(x, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(z.std(axis=0), 1.0, rtol=1e-3)


def test_fresh_state_is_the_identity_and_a_constant_feature_is_only_centred():
    model = _regressor()
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert torch.equal(preprocessing.standardize(model, x), x)
    preprocessing.observe(model, ModelSpec(), torch.tensor([[5.0, 1.0, 1.0, 1.0], [5.0, 3.0, 1.0, 1.0]]))
    assert preprocessing.standardize(model, torch.tensor([[6.0, 2.0, 1.0, 1.0]])).tolist() == [[1.0, 0.0, 0.0, 0.0]]


def test_state_travels_in_the_safetensors_blob_and_an_old_blob_loads_with_identity_transforms():
    spec = ModelSpec()
    trained = _regressor(spec)
    preprocessing.observe(trained, spec, torch.randn(64, 4) * 1e4, torch.randn(64, 1) * 50 + 3)
    blob = encode_state_dict(trained.state_dict())
    fresh = load_into(_regressor(spec), decode_state_dict(blob))
    x = torch.randn(8, 4) * 1e4
    assert torch.equal(fresh(x), trained(x))
    assert torch.equal(preprocessing.encode_targets(fresh, torch.ones(2, 1)),
                       preprocessing.encode_targets(trained, torch.ones(2, 1)))
    legacy = {k: v for k, v in trained.state_dict().items() if not preprocessing.is_state_key(k)}
    loaded = load_into(_regressor(spec), legacy)
    assert float(loaded.omnimind_x_count) == 0 and torch.equal(preprocessing.standardize(loaded, x), x)


def test_target_scaling_round_trips():
    spec = ModelSpec()
    model = _regressor(spec, out=2)
    y = torch.tensor([[1e6, -3.0], [3e6, 5.0], [2e6, 1.0]])
    preprocessing.observe(model, spec, torch.zeros(3, 4), y)
    encoded = preprocessing.encode_targets(model, y)
    assert encoded.abs().max() < 2
    torch.testing.assert_close(preprocessing.decode_regression(model, encoded), y)


def test_a_closed_label_set_refuses_an_unseen_label_and_changes_nothing():
    spec = ModelSpec(head="multiclass", labels=("a", "b"))
    model = preprocessing.attach(nn.Linear(2, 3), spec, input_width=2, output_width=3)
    assert preprocessing.label_indices(model, spec, ["b", "a"]).tolist() == [1, 0]
    with pytest.raises(InvalidFeedback) as caught:
        preprocessing.label_indices(model, spec, ["a", "c"])
    assert caught.value.reason == "label_range" and preprocessing.labels_of(model) == ["a", "b"]


def test_grow_fills_free_outputs_in_order_of_first_sight_then_refuses():
    spec = ModelSpec(head="multiclass")
    model = preprocessing.attach(nn.Linear(2, 3), spec, input_width=2, output_width=3)
    assert preprocessing.label_indices(model, spec, [7, "x", 7.0]).tolist() == [0, 1, 0]
    assert preprocessing.label_indices(model, spec, ["y"]).tolist() == [2]
    with pytest.raises(InvalidFeedback, match="free outputs"):
        preprocessing.label_indices(model, spec, ["z"])
    assert preprocessing.labels_of(model) == [7, "x", "y"]
    with pytest.raises(InvalidFeedback) as caught:
        preprocessing.label_indices(model, spec, ["x" * 100])
    assert caught.value.reason == "label_too_long"


def test_classifier_outputs_carry_probabilities_and_top_k_with_labels():
    spec = ModelSpec(head="multiclass", labels=("cat", "dog", "emu"), top_k=2)
    model = preprocessing.attach(nn.Linear(2, 3), spec, input_width=2, output_width=3)
    rows, labels = preprocessing.decode_outputs(model, spec, np.array([[0.0, 2.0, 1.0]], dtype=np.float32))
    assert labels == ["cat", "dog", "emu"]
    assert rows[0]["label"] == "dog" and [label for label, _ in rows[0]["top_k"]] == ["dog", "emu"]
    assert abs(sum(rows[0]["probabilities"]) - 1.0) < 1e-9
    binary = ModelSpec(head="binary", labels=("no", "yes"))
    model = preprocessing.attach(nn.Linear(2, 1), binary, input_width=2, output_width=1)
    rows, labels = preprocessing.decode_outputs(model, binary, np.array([[0.0], [3.0]], dtype=np.float32))
    assert [r["label"] for r in rows] == ["no", "yes"] or rows[0]["probabilities"] == [0.5, 0.5]
    assert rows[1]["label"] == "yes" and rows[1]["probabilities"][1] > 0.95


def test_a_classifier_without_labels_yet_names_no_class():
    spec = ModelSpec(head="multiclass")
    model = preprocessing.attach(nn.Linear(2, 3), spec, input_width=2, output_width=3)
    rows, labels = preprocessing.decode_outputs(model, spec, np.zeros((1, 3), dtype=np.float32))
    assert labels == [] and rows == [{"label": None, "probabilities": [], "top_k": []}]


def test_spec_refuses_a_loss_that_does_not_fit_its_head_and_reads_the_old_classifier_setting():
    from omnimind.config import Settings

    with pytest.raises(ValueError, match="does not fit"):
        ModelSpec(head="multiclass", loss="mse")
    assert ModelSpec.from_settings(Settings(learning_loss="cross_entropy")).head == "multiclass"
    assert ModelSpec.from_settings(Settings()).loss == "mse"
    assert ModelSpec.from_settings(Settings(model_head="regression", learning_loss="huber")).loss == "huber"


def test_boolean_labels_stay_apart_from_0_and_1():
    spec = ModelSpec(head="binary")
    model = preprocessing.attach(nn.Linear(2, 1), spec, input_width=2, output_width=1)
    assert preprocessing.label_indices(model, spec, [True, False, True]).tolist() == [0, 1, 0]
    assert preprocessing.labels_of(model) == [True, False]
    with pytest.raises(InvalidFeedback):  # the head has two labels, and 1 is neither
        preprocessing.label_indices(model, spec, [1])


def _classifier(labels=(), outputs=5):
    spec = ModelSpec(head="multiclass", label_policy="grow", labels=labels)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, outputs))
    return spec, preprocessing.attach(model, spec, input_width=4, output_width=outputs)


def test_loading_a_version_keeps_the_learners_label_table_when_the_versions_is_a_prefix_of_it():
    from omnimind.learning import OnlineLearningSystem, OnlineSGDConfig

    spec, model = _classifier()
    system = OnlineLearningSystem(model, config=OnlineSGDConfig(loss="cross_entropy"), rng=np.random.default_rng(0),
                                  step_every_observe=True, spec=spec)
    x = torch.randn(3, 4)
    system.observe(x, preprocessing.label_indices(model, spec, ["cat", "dog", "bird"]))
    _, champion = _classifier(("cat", "dog"))
    assert system.load_weights(champion.state_dict()) is False
    assert preprocessing.labels_of(model) == ["cat", "dog", "bird"]
    assert preprocessing.label_indices(model, spec, ["fish", "bird"]).tolist() == [3, 2]
    assert len(system.replay_buffer) == 3
    # A version that knows more labels, the learner's among them in the same places: taken.
    _, ahead = _classifier(("cat", "dog", "bird", "fish", "owl"))
    assert system.load_weights(ahead.state_dict()) is False
    assert preprocessing.labels_of(model) == ["cat", "dog", "bird", "fish", "owl"]


def test_loading_a_version_that_numbers_labels_differently_forgets_the_stored_targets():
    from omnimind.learning import OnlineLearningSystem, OnlineSGDConfig

    spec, model = _classifier()
    system = OnlineLearningSystem(model, config=OnlineSGDConfig(loss="cross_entropy"), rng=np.random.default_rng(0),
                                  step_every_observe=True, spec=spec)
    system.observe(torch.randn(3, 4), preprocessing.label_indices(model, spec, ["cat", "dog", "bird"]))
    _, other = _classifier(("cat", "fish"))
    assert system.load_weights(other.state_dict()) is True
    assert preprocessing.labels_of(model) == ["cat", "fish"]
    assert len(system.replay_buffer) == 0 and system.pending == 0


def test_a_binary_head_with_cross_entropy_serves_the_softmax_of_its_two_logits():
    from omnimind.errors import ConfigError
    from omnimind.models.factory import output_width

    spec = ModelSpec(head="binary", loss="cross_entropy", labels=("no", "yes"))
    model = preprocessing.attach(nn.Linear(2, 2), spec, input_width=2, output_width=2)
    rows, _ = preprocessing.decode_outputs(model, spec, np.array([[0.0, 3.0], [2.0, 0.0]], dtype=np.float32))
    assert [row["label"] for row in rows] == ["yes", "no"]
    assert rows[0]["probabilities"] == pytest.approx([1 / (1 + math.exp(3)), 1 / (1 + math.exp(-3))])
    with pytest.raises(ConfigError, match="needs 2 outputs"):
        output_width(nn.Linear(2, 1), spec, (2,))


def test_a_version_published_before_preprocessing_state_loads_into_the_learner_as_serving_loads_it():
    from omnimind.learning import OnlineSGDLearner

    spec = ModelSpec()
    learner = OnlineSGDLearner(_regressor(spec))
    preprocessing.observe(learner.model, spec, torch.randn(64, 4) * 1e4, torch.randn(64, 1) * 50 + 3)
    old = {k: v for k, v in _regressor(spec).state_dict().items() if not preprocessing.is_state_key(k)}
    learner.load_weights(old)
    served = load_into(_regressor(spec), old)
    x = torch.randn(8, 4) * 1e4
    assert torch.equal(learner.model(x), served(x))
    assert torch.equal(preprocessing.decode_regression(learner.model, learner.model(x)),
                       preprocessing.decode_regression(served, served(x)))
