import json

import numpy as np
import torch
from torch import nn

from omnimind.learning import (
    OnlineLearningSystem,
    OnlineSGDConfig,
    PrequentialMetrics,
    flatten_state,
    load_checkpoint,
    save_checkpoint,
)


def _model(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))


def _batches(n, seed=0, shift_after=None):
    gen = torch.Generator().manual_seed(seed)
    for k in range(n):
        x = torch.randn(20, 4, generator=gen)
        shift = 4.0 if shift_after is not None and k >= shift_after else 0.0
        yield x, x.sum(dim=1, keepdim=True) + shift


def _system(seed, method="cusum"):
    return OnlineLearningSystem(_model(seed), config=OnlineSGDConfig(learning_rate=0.01, optimizer="adam"),
                                rng=np.random.default_rng(seed), drift_method=method, drift_window=50)


def test_system_round_trip_through_one_safetensors_file(tmp_path):
    data = list(_batches(60, shift_after=30))
    original = _system(0)
    for x, y in data[:35]:
        original.observe(x, y)
    assert original.pending > 0 and original.drift_detector.drift_count >= 1
    save_checkpoint(tmp_path, original.state_dict())
    assert [p.name for p in tmp_path.iterdir()] == ["learner.safetensors"]
    from safetensors import safe_open

    with safe_open(str(tmp_path / "learner.safetensors"), framework="pt") as fh:
        # Plain JSON skeleton in the header, tensors in the body: no pickle anywhere.
        assert "learner" in json.loads(fh.metadata()["omnimind_state"])

    restored = _system(99)  # different init, rng and optimizer state
    restored.load_state_dict(load_checkpoint(tmp_path))
    assert restored.samples_seen == original.samples_seen and restored.pending == original.pending
    assert restored.drift_events == original.drift_events
    assert restored.lr_boost_remaining == original.lr_boost_remaining
    for x, y in data[35:]:
        a, b = original.observe(x, y), restored.observe(x, y)
        assert a.losses == b.losses and a.drift_events == b.drift_events
    for pa, pb in zip(original.model.parameters(), restored.model.parameters()):
        assert torch.equal(pa, pb)
    assert original.metrics.snapshot() == restored.metrics.snapshot()


def test_river_detector_state_survives_a_checkpoint(tmp_path):
    original = _system(0, method="page_hinkley")
    for x, y in _batches(10):
        original.observe(x, y)
    save_checkpoint(tmp_path, original.state_dict(), name="ph")
    restored = _system(1, method="adwin")
    restored.load_state_dict(load_checkpoint(tmp_path, name="ph"))
    assert restored.drift_detector.method == "page_hinkley"
    assert restored.drift_detector.samples_seen == 200


def test_flatten_rejects_objects_that_would_need_pickle():
    import pytest

    with pytest.raises(TypeError):
        flatten_state({"fn": object()})


def test_prequential_window_round_trip():
    m = PrequentialMetrics(window_size=5)
    m.update(np.arange(8.0), np.array([1, 0, 1, 1, 0, 1, 1, 1]))
    tensors, meta = flatten_state(m.state_dict())
    n = PrequentialMetrics(window_size=1)
    from omnimind.learning import unflatten_state

    n.load_state_dict(unflatten_state(tensors, meta))
    assert n.snapshot() == m.snapshot()
    m.update([100.0], [0]), n.update([100.0], [0])
    assert n.snapshot() == m.snapshot()
