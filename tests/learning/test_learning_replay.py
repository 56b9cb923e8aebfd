import numpy as np
import pytest
import torch

from omnimind.learning import PrioritizedReplayBuffer, SumTree


def test_sumtree_batched_set_equals_sequential_set():
    rng = np.random.default_rng(0)
    a, b = SumTree(1000), SumTree(1000)
    idx = rng.integers(0, 1000, 5000)
    vals = rng.random(5000)
    a.set(idx, vals)
    for i, v in zip(idx.tolist(), vals.tolist()):
        b.set_one(i, v)
    assert np.array_equal(a.leaves, b.leaves)
    assert a.total == pytest.approx(b.total, rel=1e-12)
    assert a.total == pytest.approx(float(a.leaves.sum()), rel=1e-12)


@pytest.mark.parametrize("start, n", [(0, 1), (3, 200), (0, 1000), (999, 1), (517, 300)])
def test_sumtree_set_range_equals_set(start, n):
    rng = np.random.default_rng(start + n)
    a, b = SumTree(1000), SumTree(1000)
    base = rng.random(1000)
    a.set(np.arange(1000), base), b.set(np.arange(1000), base)
    values = rng.random(n)
    a.set_range(start, values)
    b.set(np.arange(start, start + n), values)
    assert np.array_equal(a.leaves, b.leaves)
    assert a.total == pytest.approx(float(base.sum() - base[start:start + n].sum() + values.sum()), rel=1e-12)
    prefix = rng.random(500) * a.total
    assert np.array_equal(a.find(prefix), b.find(prefix))


def test_sumtree_find_matches_cumulative_search():
    rng = np.random.default_rng(1)
    tree = SumTree(777)
    values = rng.random(777)
    values[::5] = 0.0  # zero leaves must never be found
    tree.set(np.arange(777), values)
    prefix = rng.random(10_000) * tree.total
    expected = np.searchsorted(np.cumsum(values), prefix, side="right")
    assert np.array_equal(tree.find(prefix), expected)
    assert not np.any(values[tree.find(prefix)] == 0.0)


def test_batched_add_equals_sequential_add():
    rng = np.random.default_rng(2)
    x, y, p = rng.random((50, 4)), rng.random((50, 1)), rng.random(50)
    a = PrioritizedReplayBuffer(capacity=32, rng=np.random.default_rng(0))
    b = PrioritizedReplayBuffer(capacity=32, rng=np.random.default_rng(0))
    a.add_batch(x[:20], y[:20], p[:20])
    a.add_batch(x[20:], y[20:], p[20:])
    for i in range(50):
        b.add(x[i], y[i], p[i])
    assert np.allclose(a.priorities, b.priorities)
    sa, sb = a.sample(16), b.sample(16)
    assert np.array_equal(sa.indices, sb.indices)
    assert np.array_equal(sa.inputs, sb.inputs) and np.array_equal(sa.weights, sb.weights)


def test_sampling_frequencies_match_priorities():
    buf = PrioritizedReplayBuffer(capacity=8, alpha=0.6, rng=np.random.default_rng(3))
    priorities = np.array([1.0, 2.0, 4.0, 8.0, 0.5, 3.0, 6.0, 1.5])
    buf.add_batch(np.arange(8.0)[:, None], np.zeros((8, 1)), priorities)
    counts = np.zeros(8)
    draws = 0
    for _ in range(2000):
        batch = buf.sample(32)
        counts += np.bincount(batch.indices, minlength=8)
        draws += 32
    expected = (priorities + buf.epsilon) ** 0.6
    expected /= expected.sum()
    observed = counts / draws
    # Stratified sampling has lower variance than multinomial; a multinomial 5σ bound is safe.
    sigma = np.sqrt(expected * (1 - expected) / draws)
    assert np.all(np.abs(observed - expected) < 5 * sigma)


def test_importance_weights_formula_and_beta_annealing():
    buf = PrioritizedReplayBuffer(capacity=4, alpha=0.6, beta_start=0.4, beta_annealing_steps=10,
                                  rng=np.random.default_rng(4))
    priorities = np.array([1.0, 2.0, 3.0, 4.0])
    buf.add_batch(np.zeros((4, 2)), np.zeros((4, 1)), priorities)
    assert buf.beta == pytest.approx(0.4)
    batch = buf.sample(64)
    p_alpha = (priorities + buf.epsilon) ** 0.6
    probs = p_alpha / p_alpha.sum()
    w = (4 * probs[batch.indices]) ** -0.4
    assert np.allclose(batch.weights, w / w.max(), rtol=1e-5)
    assert batch.weights.max() == pytest.approx(1.0)
    for _ in range(4):
        buf.sample(1)
    assert buf.beta == pytest.approx(0.4 + 0.6 * 5 / 10)
    for _ in range(20):
        buf.sample(1)
    assert buf.beta == 1.0


def test_new_items_get_the_current_max_priority():
    buf = PrioritizedReplayBuffer(capacity=10)
    buf.add_batch(np.zeros((2, 1)), np.zeros((2, 1)), [0.5, 7.0])
    buf.add(np.zeros(1), np.zeros(1))
    buf.add_batch(np.zeros((1, 1)), np.zeros((1, 1)))
    assert buf.max_priority == 7.0
    assert np.allclose(buf.priorities[2:], 7.0)
    buf.update_priorities([0], [9.0])
    buf.add(np.zeros(1), np.zeros(1))
    assert buf.priorities[-1] == pytest.approx(9.0)


def test_capacity_wraps_around_and_overwrites_oldest():
    buf = PrioritizedReplayBuffer(capacity=5, rng=np.random.default_rng(5))
    slots = buf.add_batch(np.arange(7.0)[:, None], np.arange(7.0)[:, None], np.ones(7))
    assert slots.tolist() == [2, 3, 4, 0, 1]  # where 7 sequential adds would leave them
    assert len(buf) == 5
    assert sorted(buf.sample(200).inputs.ravel().tolist())[0] >= 2.0
    buf.add(np.array([100.0]), np.array([0.0]), 1.0)
    assert len(buf) == 5
    stored = set(np.unique(buf.sample(500).inputs).tolist())
    assert stored == {3.0, 4.0, 5.0, 6.0, 100.0}


def test_update_priorities_changes_sampling():
    buf = PrioritizedReplayBuffer(capacity=4, rng=np.random.default_rng(6))
    buf.add_batch(np.arange(4.0)[:, None], np.zeros((4, 1)), np.ones(4))
    buf.update_priorities([0, 1, 2, 3], [0.0, 0.0, 0.0, 1.0])
    counts = np.bincount(buf.sample(1000).indices, minlength=4)
    assert counts[3] > 950
    with pytest.raises(ValueError):
        buf.update_priorities([0], [np.nan])
    with pytest.raises(IndexError):
        buf.update_priorities([7], [1.0])


def test_seed_transition_form_and_batch_update_compatibility():
    buf = PrioritizedReplayBuffer(capacity=100, rng=np.random.default_rng(7))
    for i in range(20):
        x = torch.full((3,), float(i))
        buf.add(state=x, action=0, reward=-float(i), next_state=x, done=False, priority=1.0 + i)
    assert buf.record_form == "transition"
    samples = buf.sample(16)
    states, rewards = samples[0], samples[1]
    assert len(states) == 16 and isinstance(states[0], torch.Tensor) and states[0].shape == (3,)
    assert all(float(r) == -float(s[0]) for s, r in zip(states, rewards))
    with pytest.raises(TypeError):
        buf.add(np.zeros(3), np.zeros(1))  # a supervised record into a transition buffer


def test_supervised_sample_feeds_the_seed_stack_expression():
    buf = PrioritizedReplayBuffer(capacity=100)
    for i in range(40):
        buf.add(torch.randn(4), torch.randn(1), priority=0.1 * i)
    batch = [(torch.randn(4), torch.randn(1)) for _ in range(32)]
    replay_samples = buf.sample(16)
    all_inputs = torch.stack([b[0] for b in batch] + replay_samples[0])
    all_targets = torch.stack([b[1] for b in batch] + replay_samples[1])
    assert all_inputs.shape == (48, 4) and all_targets.shape == (48, 1)


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(8)
    a = PrioritizedReplayBuffer(capacity=64, rng=np.random.default_rng(1))
    a.add_batch(rng.random((100, 3)), rng.random((100, 1)), rng.random(100))
    a.sample(8)
    b = PrioritizedReplayBuffer(capacity=2)
    b.load_state_dict(a.state_dict())
    assert b.capacity == 64 and len(b) == 64
    sa, sb = a.sample(32), b.sample(32)
    assert np.array_equal(sa.indices, sb.indices) and np.allclose(sa.weights, sb.weights)
    assert np.array_equal(a.add_batch(np.zeros((3, 3)), np.zeros((3, 1))),
                          b.add_batch(np.zeros((3, 3)), np.zeros((3, 1))))


def test_empty_buffer_cannot_be_sampled():
    with pytest.raises(ValueError):
        PrioritizedReplayBuffer().sample(4)
