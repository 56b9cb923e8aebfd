import math

import numpy as np
import pytest
import torch
from torch import nn

from omnimind.learning import InvalidFeedback, OnlineSGDConfig, OnlineSGDLearner


def _mlp(in_features=8, out=1, seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(in_features, 32), nn.ReLU(), nn.Linear(32, out))


def _stream(n_batches, batch=48, in_features=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(in_features, 1, generator=gen)
    for _ in range(n_batches):
        x = torch.randn(batch, in_features, generator=gen)
        yield x, x @ w + 0.01 * torch.randn(batch, 1, generator=gen)


def test_loss_decreases_on_a_learnable_stream():
    learner = OnlineSGDLearner(_mlp(), OnlineSGDConfig(learning_rate=0.05))
    losses = [learner.update_batch(x, y) for x, y in _stream(300)]
    assert np.mean(losses[-30:]) < 0.1 * np.mean(losses[:30])
    assert learner.steps == 300 and learner.diverged_steps == 0


def test_adam_optimizer_also_learns():
    learner = OnlineSGDLearner(_mlp(), OnlineSGDConfig(learning_rate=0.01, optimizer="adam"))
    losses = [learner.update_batch(x, y) for x, y in _stream(200)]
    assert np.mean(losses[-20:]) < 0.1 * np.mean(losses[:20])


def test_weights_multiply_the_per_sample_loss():
    x, y = next(_stream(1, batch=6))
    weights = torch.tensor([0.0, 1.0, 2.0, 0.5, 0.0, 3.0])
    model = _mlp()
    learner = OnlineSGDLearner(model, OnlineSGDConfig(learning_rate=0.0))
    with torch.no_grad():
        per_sample = ((model(x) - y) ** 2).squeeze(1)
    loss = learner.update_batch(x, y, weights=weights)
    assert loss == pytest.approx(float((per_sample * weights).mean()), rel=1e-5)


def test_weighted_gradient_equals_duplicated_samples():
    # Weight 2 on a sample == that sample appearing twice (same mean denominator).
    x, y = next(_stream(1, batch=3))
    a, b = _mlp(seed=1), _mlp(seed=1)
    la = OnlineSGDLearner(a, OnlineSGDConfig(learning_rate=0.1))
    lb = OnlineSGDLearner(b, OnlineSGDConfig(learning_rate=0.1))
    la.update_batch(x, y, weights=torch.tensor([2.0, 0.5, 0.5]))
    lb.update_batch(torch.cat([x[:1], x[:1], x[1:2], x[2:]]), torch.cat([y[:1], y[:1], y[1:2], y[2:]]),
                    weights=torch.tensor([1.0, 1.0, 0.5, 0.5]) * 4 / 3)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_cross_entropy_classifier_learns():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
    learner = OnlineSGDLearner(model, OnlineSGDConfig(learning_rate=0.2, loss="cross_entropy"))
    gen = torch.Generator().manual_seed(3)
    centers = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    losses = []
    for _ in range(200):
        labels = torch.randint(0, 3, (48,), generator=gen)
        x = centers[labels] + 0.5 * torch.randn(48, 2, generator=gen)
        losses.append(learner.update_batch(x, labels))
    assert np.mean(losses[-20:]) < 0.2 * np.mean(losses[:20])
    with pytest.raises(InvalidFeedback) as err:
        learner.update_batch(torch.zeros(2, 2), torch.tensor([0, 3]))
    assert err.value.reason == "label_range"


def test_learning_rate_write_takes_effect_immediately():
    x, y = next(_stream(1))
    model = _mlp()
    learner = OnlineSGDLearner(model, OnlineSGDConfig(learning_rate=0.1))
    learner.config.learning_rate = 0.0
    before = [p.detach().clone() for p in model.parameters()]
    learner.update_batch(x, y)
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))
    learner.config.learning_rate = 0.1
    learner.update_batch(x, y)
    assert learner.optimizer.param_groups[0]["lr"] == 0.1
    assert not all(torch.equal(b, p) for b, p in zip(before, model.parameters()))


@pytest.mark.parametrize(
    "inputs, targets, reason",
    [
        (torch.zeros(0, 8), torch.zeros(0, 1), "empty"),
        (torch.zeros(4, 8), torch.zeros(3, 1), "length_mismatch"),
        (torch.zeros(4, 7), torch.zeros(4, 1), "shape"),
        (torch.zeros(4, 8), torch.zeros(4, 2), "shape"),
        (torch.full((4, 8), math.nan), torch.zeros(4, 1), "non_finite"),
        (torch.zeros(4, 8), torch.tensor([[0.0], [math.inf], [0.0], [0.0]]), "non_finite"),
        ([["a"] * 8] * 4, [[0.0]] * 4, "dtype"),
    ],
)
def test_bad_feedback_is_rejected_before_touching_the_model(inputs, targets, reason):
    model = _mlp()
    learner = OnlineSGDLearner(model)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(InvalidFeedback) as err:
        learner.update_batch(inputs, targets)
    assert err.value.reason == reason
    assert learner.rejected_batches == 1 and learner.steps == 0
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))
    x, y = next(_stream(1))
    assert math.isfinite(learner.update_batch(x, y))  # still usable


def test_single_sample_and_flat_targets_are_accepted():
    learner = OnlineSGDLearner(_mlp())
    assert math.isfinite(learner.update_batch(torch.zeros(8), torch.tensor(1.0)))
    assert math.isfinite(learner.update_batch(np.zeros((5, 8)), np.ones(5)))


def test_divergence_guard_undoes_an_overflowing_step():
    model = _mlp()
    learner = OnlineSGDLearner(model, OnlineSGDConfig(learning_rate=0.05, momentum=0.9))
    x, y = next(_stream(1))
    learner.update_batch(x, y)
    good = [p.detach().clone() for p in model.parameters()]
    learner.config.learning_rate = 1e30  # this step would blow the weights up
    learner.update_batch(x, y * 1e10)
    assert learner.diverged_steps == 1 and learner.steps == 1
    assert all(torch.equal(a, b) for a, b in zip(good, model.parameters()))
    assert learner.optimizer.state == {} or all(not s for s in learner.optimizer.state.values())
    learner.config.learning_rate = 0.05
    assert math.isfinite(learner.update_batch(x, y)) and learner.steps == 2


def test_divergence_guard_skips_a_non_finite_loss_and_restores_weights():
    model = _mlp()
    learner = OnlineSGDLearner(model, OnlineSGDConfig(learning_rate=0.05))
    x, y = next(_stream(1))
    learner.update_batch(x, y)
    good = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():  # weights corrupted behind the learner's back
        next(model.parameters()).fill_(math.nan)
    loss = learner.update_batch(x, y)
    assert not math.isfinite(loss) and learner.diverged_steps == 1
    assert all(torch.equal(a, b) for a, b in zip(good, model.parameters()))
    assert math.isfinite(learner.update_batch(x, y))
