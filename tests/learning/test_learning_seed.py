"""The seed's example tests (design notes, part 4.2), kept as close to the original as possible."""

import numpy as np
import pytest
import torch
from torch import nn

from omnimind.learning import ConceptDriftDetector, ModelVersionManager


def create_test_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))


def _training_data():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(64, 4, generator=generator)
    return x, x.sum(dim=1, keepdim=True)


training_data = _training_data()


def train_model(model: nn.Module, data) -> None:
    x, y = data
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(20):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()


class TestOnlineLearningIntegration:
    """Testes de aprendizado online"""

    @pytest.mark.asyncio
    async def test_concept_drift_detection(self):
        """Testa detecção de drift"""

        detector = ConceptDriftDetector(window_size=100)

        # Dados estáveis
        for _ in range(100):
            pred = np.random.normal(0, 1)
            actual = np.random.normal(0, 1)
            drift = detector.update(pred, actual)
            assert not drift

        # Muda distribuição
        drift_detected = False
        for _ in range(200):
            pred = np.random.normal(0, 1)
            actual = np.random.normal(5, 1)  # Shift
            drift = detector.update(pred, actual)
            if drift:
                drift_detected = True
                break

        assert drift_detected

    @pytest.mark.asyncio
    async def test_hot_model_swapping(self):
        """Testa swap de modelos"""

        model = create_test_model()
        manager = ModelVersionManager(model)

        original_version = manager.version_counter

        # Cria shadow
        shadow = manager.create_shadow_copy()
        train_model(shadow, training_data)

        # Swap
        manager.swap_models()

        assert manager.version_counter == original_version + 1
        assert manager.get_active_model() is shadow


@pytest.mark.parametrize("seed", range(200))
def test_seed_drift_scenario_over_many_seeds(seed):
    """The seed's drift test, with the global RNG pinned, for 200 different streams."""
    rng = np.random.default_rng(seed)
    detector = ConceptDriftDetector(window_size=100)
    stable = rng.normal(0, 1, (100, 2))
    assert not any(detector.update(p, a) for p, a in stable.tolist())
    shifted = np.column_stack([rng.normal(0, 1, 200), rng.normal(5, 1, 200)])
    assert any(detector.update(p, a) for p, a in shifted.tolist())
