"""ContinuousTrainer's gate and the seed's ModelUpdateManager loop."""
import asyncio

import numpy as np
import torch
from torch import nn

from omnimind.learning import ContinuousTrainer, ModelUpdateManager, ModelVersionManager


def data(n=400, seed=0, invert=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x.sum(dim=1, keepdim=True) * (-3.0 if invert else 1.0)
    return x, y


def model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))


def test_gate_accepts_an_improvement_and_rejects_a_wrong_concept():
    manager = ModelVersionManager(model())
    trainer = ContinuousTrainer(manager, rng=np.random.default_rng(0))
    good = trainer.retrain(*data())
    assert good.accepted and good.val_loss <= 1.05 * good.current_loss and good.shadow is manager.shadow_model
    # Trained on an inverted concept, judged on the true one (newest slice).
    x_bad, y_bad = data(320, seed=1, invert=True)
    x_true, y_true = data(80, seed=2)
    bad = trainer.retrain(torch.cat([x_bad, x_true]), torch.cat([y_bad, y_true]))
    assert not bad.accepted and bad.shadow is not None and "validation loss" in bad.reason
    assert manager.version_counter == 0  # nothing was swapped by the trainer itself


def test_too_few_samples_skip_without_training():
    trainer = ContinuousTrainer(ModelVersionManager(model()), min_samples=100)
    outcome = trainer.retrain(*data(99))
    assert not outcome.accepted and outcome.shadow is None and "only 99 samples" in outcome.reason


def test_tolerance_is_a_public_knob():
    trainer = ContinuousTrainer(ModelVersionManager(model()), rng=np.random.default_rng(0), epochs=0, tolerance=1.0)
    # Zero epochs: the shadow equals the active model, so val == current and 1.0x accepts.
    outcome = trainer.retrain(*data())
    assert outcome.accepted and outcome.val_loss == outcome.current_loss


def test_update_manager_swaps_only_validated_shadows():
    sleeps = []

    async def no_wait(seconds):
        sleeps.append(seconds)

    batches = iter([data(400, seed=3), (torch.randn(50, 4), torch.randn(50, 1)), data(400, seed=4)])
    manager = ModelUpdateManager(model(), collect=lambda: next(batches), sleep=no_wait,
                                 trainer_options={"rng": np.random.default_rng(0)})
    asyncio.run(manager.start_continuous_training(rounds=3))
    assert sleeps == [300.0] * 3  # the seed's 5-minute interval
    assert [o.accepted for o in manager.outcomes] == [True, False, True]
    assert manager.version_manager.version_counter == 2
