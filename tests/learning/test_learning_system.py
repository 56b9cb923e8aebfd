import math

import numpy as np
import pytest
import torch
from torch import nn

from omnimind.learning import InvalidFeedback, OnlineLearningSystem, OnlineSGDConfig


def _model(in_features=4, seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(in_features, 16), nn.ReLU(), nn.Linear(16, 1))


def _data(n, in_features=4, seed=0, shift=0.0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, in_features, generator=gen)
    return x, x.sum(dim=1, keepdim=True) * 0.5 + shift


def _spy_steps(system):
    calls = []
    step = system.online_learner.step

    def spy(x, y, weights=None):
        calls.append({"x": x.clone(), "weights": None if weights is None else weights.clone(),
                      "lr": system.config.learning_rate})
        return step(x, y, weights)

    system.online_learner.step = spy
    return calls


async def _aiter(pairs):
    for pair in pairs:
        yield pair


async def test_stream_updates_every_32_new_samples_plus_16_replayed():
    system = OnlineLearningSystem(_model(), rng=np.random.default_rng(0))
    calls = _spy_steps(system)
    x, y = _data(100)
    accepted = await system.learn_from_stream(_aiter(zip(x, y)))
    assert accepted == 100 and system.samples_seen == 100
    assert len(calls) == 3 and system.batches == 3 and system.pending == 4
    for k, call in enumerate(calls):
        assert call["x"].shape == (48, 4)
        assert torch.equal(call["x"][:32], x[32 * k : 32 * (k + 1)])  # the new samples, in order
        assert torch.all(call["weights"][:32] == 1.0)  # new samples are not IS-weighted
        replay_w = call["weights"][32:]
        assert replay_w.shape == (16,) and replay_w.max() == 1.0 and replay_w.min() > 0
    assert len(system.replay_buffer) == 100


def test_observe_batches_carry_over_the_remainder():
    system = OnlineLearningSystem(_model(), rng=np.random.default_rng(0))
    x, y = _data(70)
    result = system.observe(x, y)
    assert (result.accepted, result.updates, system.pending) == (70, 2, 6)
    result = system.observe(*_data(26, seed=1))
    assert (result.updates, system.pending) == (1, 0)


def test_replay_priorities_follow_the_errors_of_the_update():
    system = OnlineLearningSystem(_model(), rng=np.random.default_rng(0), replay_batch_size=0)
    calls = []
    step = system.online_learner.step

    def spy(x, y, weights=None):
        result = step(x, y, weights)
        calls.append(result)
        return result

    system.online_learner.step = spy
    system.observe(*_data(32))
    expected = calls[0].per_sample_loss.sqrt().numpy()
    assert np.allclose(system.replay_buffer.priorities, expected, rtol=1e-4, atol=1e-6)


def test_learning_rate_is_doubled_for_exactly_10_batches_after_drift():
    events = []
    system = OnlineLearningSystem(_model(), config=OnlineSGDConfig(learning_rate=0.01),
                                  rng=np.random.default_rng(0), on_drift=events.append)
    calls = _spy_steps(system)
    fire_at = {40}
    update_error = system.drift_detector.update_error
    system.drift_detector.update_error = lambda e: update_error(e) or system.drift_detector.samples_seen in fire_at
    for k in range(16):
        system.observe(*_data(32, seed=k))
    lrs = [c["lr"] for c in calls]
    # Drift at sample 40 (during the 2nd observe, before its update): updates 2..11 boosted.
    assert lrs[:1] == [0.01]
    assert lrs[1:11] == [0.02] * 10
    assert lrs[11:] == [0.01] * 5
    assert system.config.learning_rate == 0.01 and system.lr_boost_remaining == 0
    assert len(events) == 1 and events[0].sample_index == 40 and events[0].batch_index == 1
    assert system.drift_events == tuple(events)
    assert system.drain_drift_events() == events and system.drift_events == ()


def test_drift_during_boost_extends_it_without_doubling_again():
    system = OnlineLearningSystem(_model(), config=OnlineSGDConfig(learning_rate=0.01),
                                  rng=np.random.default_rng(0))
    calls = _spy_steps(system)
    fire_at = {10, 100}
    update_error = system.drift_detector.update_error
    system.drift_detector.update_error = lambda e: update_error(e) or system.drift_detector.samples_seen in fire_at
    for k in range(16):
        system.observe(*_data(32, seed=k))
    lrs = [c["lr"] for c in calls]
    assert max(lrs) == 0.02
    assert lrs == [0.02] * 13 + [0.01] * 3  # 2nd drift (batch 3) restarts the count of 10


def test_real_drift_in_the_stream_is_detected_and_reported():
    events = []
    system = OnlineLearningSystem(_model(), config=OnlineSGDConfig(learning_rate=0.05),
                                  rng=np.random.default_rng(0), on_drift=events.append)
    for k in range(40):
        system.observe(*_data(32, seed=k))
    assert events == []
    for k in range(40, 50):
        system.observe(*_data(32, seed=k, shift=5.0))
    assert len(events) >= 1 and 40 * 32 < events[0].sample_index <= 40 * 32 + 64


def test_divergence_guard_skips_and_restores_in_the_loop():
    system = OnlineLearningSystem(_model(), config=OnlineSGDConfig(learning_rate=0.01),
                                  rng=np.random.default_rng(0))
    system.observe(*_data(64))
    system.config.learning_rate = 1e30
    x, y = _data(32, seed=1)
    before = [p.detach().clone() for p in system.model.parameters()]
    system.observe(x, y)  # a step this large blows the weights up: undone at once
    assert system.diverged_steps == 1
    assert all(torch.equal(a, b) for a, b in zip(before, system.model.parameters()))
    system.config.learning_rate = 0.01
    # A non-finite loss (forced here through the loss function) is skipped as well.
    per_sample_loss = system.online_learner.per_sample_loss
    system.online_learner.per_sample_loss = lambda out, tgt: per_sample_loss(out, tgt) * math.nan
    system.online_learner.step(*_data(8, seed=2))
    system.online_learner.per_sample_loss = per_sample_loss
    assert system.diverged_steps == 2
    assert all(torch.equal(a, b) for a, b in zip(before, system.model.parameters()))
    result = system.observe(*_data(32, seed=3))
    assert math.isfinite(result.losses[0]) and system.diverged_steps == 2
    assert np.all(np.isfinite(system.replay_buffer.priorities))


def test_inputs_that_overflow_the_model_are_rejected():
    system = OnlineLearningSystem(_model(), rng=np.random.default_rng(0))
    system.observe(*_data(40))
    with pytest.raises(InvalidFeedback) as err:
        system.observe(torch.full((2, 4), 1e38), torch.zeros(2, 1))
    assert err.value.reason == "non_finite_output" and system.rejected_batches == 1
    assert len(system.replay_buffer) == 40


@pytest.mark.parametrize(
    "inputs, targets",
    [
        (torch.zeros(0, 4), torch.zeros(0, 1)),
        (torch.zeros(5, 4), torch.zeros(4, 1)),
        (torch.zeros(5, 3), torch.zeros(5, 1)),
        (torch.tensor([[0.0, math.nan, 0.0, 0.0]]), torch.zeros(1, 1)),
        (torch.zeros(1, 4), torch.tensor([[math.inf]])),
    ],
)
def test_bad_feedback_is_rejected_and_state_is_untouched(inputs, targets):
    system = OnlineLearningSystem(_model(), rng=np.random.default_rng(0))
    system.observe(*_data(40))
    before = (system.samples_seen, system.pending, len(system.replay_buffer),
              system.drift_detector.samples_seen, system.metrics.count)
    params = [p.detach().clone() for p in system.model.parameters()]
    with pytest.raises(InvalidFeedback):
        system.observe(inputs, targets)
    assert (system.samples_seen, system.pending, len(system.replay_buffer),
            system.drift_detector.samples_seen, system.metrics.count) == before
    assert all(torch.equal(a, b) for a, b in zip(params, system.model.parameters()))
    assert system.rejected_batches == 1
    assert system.observe(*_data(24, seed=5)).updates == 1


async def test_stream_skips_bad_items_and_keeps_learning():
    system = OnlineLearningSystem(_model(), rng=np.random.default_rng(0))
    x, y = _data(64)
    pairs = list(zip(x, y))
    pairs.insert(10, (torch.full((4,), math.nan), torch.zeros(1)))
    assert await system.learn_from_stream(_aiter(pairs)) == 64
    assert system.rejected_batches == 1 and system.batches == 2


def test_prequential_loss_goes_down_on_a_learnable_stream():
    system = OnlineLearningSystem(_model(), config=OnlineSGDConfig(learning_rate=0.05),
                                  rng=np.random.default_rng(0), metrics_window=320)
    system.observe(*_data(320, seed=0))
    early = system.metrics.loss
    for k in range(1, 40):
        system.observe(*_data(32, seed=k))
    assert system.metrics.loss < 0.2 * early
    assert system.metrics.count == 320 + 39 * 32


def test_classifier_system_tracks_accuracy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    system = OnlineLearningSystem(model, config=OnlineSGDConfig(learning_rate=0.2, loss="cross_entropy"),
                                  rng=np.random.default_rng(0), metrics_window=200)
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        labels = torch.randint(0, 2, (32,), generator=gen)
        x = torch.randn(32, 2, generator=gen) + (labels[:, None] * 2 - 1) * 2.0
        system.observe(x, labels)
    assert system.metrics.accuracy > 0.9


async def test_seed_batch_update_hook_accepts_a_list_of_pairs():
    system = OnlineLearningSystem(_model(), rng=np.random.default_rng(0))
    system.observe(*_data(8))
    x, y = _data(32, seed=1)
    loss = await system._batch_update(list(zip(x, y)))
    assert math.isfinite(loss) and system.batches == 1
    await system._handle_drift()
    assert system.lr_boost_remaining == 10


def test_a_converging_model_is_not_reported_as_drift():
    # Biased targets: a fresh model starts far off and its errors shrink as it
    # learns; a shrinking error is not a concept drift.
    events = []
    system = OnlineLearningSystem(_model(), config=OnlineSGDConfig(learning_rate=0.02),
                                  rng=np.random.default_rng(0), on_drift=events.append)
    for k in range(150):
        x, y = _data(32, seed=k)
        system.observe(x, y + 10.0)
    assert events == []
    assert system.metrics.loss < 0.5


def _spec_system(spec, lr=0.0):
    from omnimind.learning import preprocessing

    model = preprocessing.attach(_model(), spec, input_width=4, output_width=1)
    return OnlineLearningSystem(model, config=OnlineSGDConfig(learning_rate=lr), rng=np.random.default_rng(0),
                                step_every_observe=True, spec=spec)


def test_a_batch_is_scored_with_the_statistics_from_before_it_and_moves_them_only_when_accepted():
    from omnimind.learning import preprocessing
    from omnimind.learning.spec import ModelSpec

    spec = ModelSpec()
    system, twin = _spec_system(spec), _spec_system(spec)
    x, y = _data(64)
    system.observe(x, y)
    preprocessing.observe(twin.model, spec, x, y)
    shifted = y + 40.0  # the targets move: a batch must not see its own targets in the scaling
    with torch.no_grad():
        expected = preprocessing.decode_regression(twin.model, twin.model(x))
    losses = system.observe(x, shifted).sample_losses
    assert losses == pytest.approx(((expected - shifted) ** 2).squeeze(1).tolist(), rel=1e-5)

    with torch.no_grad():
        system.model[-1].weight.fill_(1e30)  # outputs overflow: the batch is refused
    before = {k: v.clone() for k, v in system.model.state_dict().items() if preprocessing.is_state_key(k)}
    assert before
    with pytest.raises(InvalidFeedback) as refused:
        system.observe(x * 1e5, shifted)
    assert refused.value.reason == "non_finite_output"
    for key, value in before.items():
        assert torch.equal(system.model.state_dict()[key], value), key


def test_integer_inputs_are_float_features_unless_the_model_declares_token_ids():
    system = OnlineLearningSystem(nn.Linear(4, 1), batch_size=8)
    result = system.observe([[1, 2, 3, 4]] * 8, [[1.0]] * 8)
    assert result.accepted == 8 and result.updates == 1
    tokens = nn.Sequential(nn.Embedding(10, 3), nn.Flatten(), nn.Linear(6, 1))
    tokens.omnimind_input_dtype = torch.int64
    system = OnlineLearningSystem(tokens, batch_size=2)
    assert system.observe([[1, 9], [0, 3]], [[1.0], [0.0]]).accepted == 2
    with pytest.raises(InvalidFeedback) as refused:
        system.observe([[1.0, 9.0]], [[1.0]])
    assert refused.value.reason == "dtype"
