"""The farm's update schedule, the loss vocabulary and the gate on small streams (pure, no I/O)."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from omnimind.learning import (
    ChallengerGate,
    OnlineLearningSystem,
    OnlineSGDConfig,
    preprocessing,
)
from omnimind.learning.budget import UpdateBudget
from omnimind.learning.losses import per_sample_loss
from omnimind.learning.spec import ModelSpec


@pytest.fixture(autouse=True)
def one_torch_thread():
    # Small steps, as in a training worker (OMNIMIND_LEARNER_TORCH_THREADS=1): more threads only contend.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _mlp(width=16, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(width, 32), nn.ReLU(), nn.Linear(32, 1))


def test_the_seed_schedule_is_unchanged_and_the_farm_schedule_steps_on_every_call():
    x, y = torch.randn(1, 4), torch.randn(1, 1)
    seed = OnlineLearningSystem(nn.Linear(4, 1), rng=np.random.default_rng(0))
    assert seed.observe(x, y).updates == 0 and seed.batch_size == 32 and seed.replay_batch_size == 16
    assert seed.config.learning_rate == 0.01 and seed.config.optimizer == "sgd"
    farm = OnlineLearningSystem(nn.Linear(4, 1), rng=np.random.default_rng(0), step_every_observe=True)
    assert farm.observe(x, y).updates == 1
    assert farm.observe(x, y, passes=4).updates == 4
    assert farm.observe(torch.randn(70, 4), torch.randn(70, 1)).updates == 3  # 32 + 32 + 6


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_each_optimizer_learns_with_clipping(optimizer):
    config = OnlineSGDConfig(learning_rate=0.05 if optimizer == "sgd" else 0.01, optimizer=optimizer,
                             weight_decay=1e-4, grad_clip_norm=1.0)
    system = OnlineLearningSystem(_mlp(4), config=config, rng=np.random.default_rng(0), step_every_observe=True)
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4, 1, generator=gen)
    losses = []
    for _ in range(200):
        x = torch.randn(8, 4, generator=gen)
        losses.append(np.mean(system.observe(x, x @ w).sample_losses))
    assert np.mean(losses[-20:]) < 0.2 * np.mean(losses[:20])


def _scaled_stream(gen, n):
    x = torch.cat([torch.randn(n, 8, generator=gen) * 1e5, torch.randn(n, 8, generator=gen)], dim=1)
    y = 3e-5 * x[:, :8].sum(dim=1, keepdim=True) + x[:, 8:].sum(dim=1, keepdim=True) + 500.0
    return x, y


def test_features_1e5_apart_learn_with_the_spec_and_not_without():
    def run(spec):
        model = _mlp()
        if spec is not None:
            preprocessing.attach(model, spec, input_width=16, output_width=1)
        system = OnlineLearningSystem(model, config=OnlineSGDConfig(learning_rate=0.003, optimizer="adam",
                                                                    grad_clip_norm=10.0),
                                      rng=np.random.default_rng(0), step_every_observe=True, spec=spec)
        gen = torch.Generator().manual_seed(1)
        errors = []
        for _ in range(300):
            x, y = _scaled_stream(gen, 8)
            with torch.no_grad():
                out = system.model(x)
                if spec is not None:
                    out = preprocessing.decode_regression(system.model, out)
            errors.append(float((out - y).abs().mean()))
            system.observe(x, y, passes=4)
        return np.mean(errors[-50:]), system.diverged_steps

    with_spec, diverged = run(ModelSpec())
    without, _ = run(None)
    assert diverged == 0 and math.isfinite(with_spec)
    assert with_spec < 2.0  # the target's own spread is about 9 (sd of y - 500)
    assert with_spec < 0.1 * without


def test_losses_are_per_sample_in_one_vocabulary():
    out, target = torch.tensor([[0.0], [3.0]]), torch.tensor([[2.0], [3.0]])
    assert per_sample_loss("mse", out, target).tolist() == [4.0, 0.0]
    assert per_sample_loss("huber", out, target).tolist() == [1.5, 0.0]
    assert per_sample_loss("cross_entropy", torch.zeros(2, 4), torch.tensor([0, 3])).tolist() == \
        pytest.approx([math.log(4)] * 2)
    with pytest.raises(ValueError):
        per_sample_loss("hinge", out, target)


def test_the_gate_publishes_early_on_a_small_stream_and_not_on_noise():
    rng = np.random.default_rng(0)
    gate = ChallengerGate(min_samples=32, check_every=128)
    published_at, seen = None, 0
    while published_at is None and seen < 400:
        champion = rng.normal(1.0, 0.3, 4).clip(0)
        challenger = (champion * 0.6 + rng.normal(0, 0.05, 4)).clip(0)
        gate.observe(challenger, champion)
        seen += 4
        decision = gate.decide(now=seen)
        if decision is not None and decision.publish:
            published_at = seen
    assert published_at is not None and published_at <= 64

    false_publications, checks = 0, 0
    for trial in range(50):
        gate = ChallengerGate(min_samples=32, check_every=128)
        noise = np.random.default_rng(100 + trial)
        for step in range(0, 256, 4):
            both = noise.exponential(1.0, (2, 4))
            gate.observe(both[0], both[1])
            decision = gate.decide(now=step)
            if decision is not None:
                checks += 1
                false_publications += decision.publish
                if decision.publish:
                    break
    assert checks > 50 * 4 and false_publications <= 3


def test_the_budget_caps_passes_and_adapts_to_the_pace():
    budget = UpdateBudget(max_passes=5, share=0.5)
    passes = [budget.passes(now=i * 1.0) for i in range(3)]
    budget.spent(seconds=0.001, steps=1)
    assert passes == [1, 1, 1] and budget.passes(now=3.0) == 5
    for i in range(20):  # calls every 4 ms, passes of 1 ms: 0.5 * 4 / 1 = 2
        n = budget.passes(now=3.0 + (i + 1) * 0.004)
        budget.spent(seconds=0.001 * n, steps=n)
    assert n == 2
