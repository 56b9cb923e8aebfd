import threading

import pytest
import torch
from torch import nn

from omnimind.learning import ModelVersionManager


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))


def test_shadow_is_an_independent_copy():
    manager = ModelVersionManager(_model())
    shadow = manager.create_shadow_copy()
    assert shadow is not manager.active_model
    with torch.no_grad():
        for p in shadow.parameters():
            p.add_(1.0)
    active_params = list(manager.active_model.parameters())
    assert not torch.equal(active_params[0], list(shadow.parameters())[0])


def test_reference_to_old_model_is_unaffected_by_swap():
    manager = ModelVersionManager(_model())
    in_flight = manager.get_active_model()
    before = [p.detach().clone() for p in in_flight.parameters()]
    shadow = manager.create_shadow_copy()
    with torch.no_grad():
        for p in shadow.parameters():
            p.mul_(-3.0)
    manager.swap_models()
    assert manager.get_active_model() is shadow
    assert in_flight is not shadow
    for old, now in zip(before, in_flight.parameters()):
        assert torch.equal(old, now)


def test_rollback_restores_previous_and_keeps_counter_monotonic():
    base = _model()
    manager = ModelVersionManager(base)
    manager.create_shadow_copy()
    assert manager.swap_models() == 1
    manager.create_shadow_copy()
    assert manager.swap_models() == 2
    v1 = manager.rollback()
    assert manager.active_version == 1 and manager.version_counter == 2
    assert manager.get_active_model() is v1
    with pytest.raises(RuntimeError):
        manager.rollback()  # history_size=1 keeps only one previous version
    manager.create_shadow_copy()
    assert manager.swap_models() == 3  # numbers are never reused


def test_history_size_allows_deeper_rollback():
    base = _model()
    manager = ModelVersionManager(base, history_size=3)
    for _ in range(3):
        manager.swap_models(_model())
    assert manager.previous_versions == (0, 1, 2)
    manager.rollback(), manager.rollback()
    assert manager.rollback() is base and manager.active_version == 0


def test_swap_without_shadow_raises():
    with pytest.raises(RuntimeError):
        ModelVersionManager(_model()).swap_models()


def test_readers_always_see_a_consistent_model_during_swaps():
    manager = ModelVersionManager(_model())
    models = [_model() for _ in range(50)]
    seen = []
    stop = threading.Event()

    def reader():
        x = torch.randn(2, 3)
        while not stop.is_set():
            model = manager.get_active_model()
            seen.append(model(x).shape)

    thread = threading.Thread(target=reader)
    thread.start()
    for m in models:
        manager.swap_models(m)
    stop.set()
    thread.join()
    assert manager.version_counter == 50 and all(s == (2, 1) for s in seen)
