"""Proportional prioritized experience replay (Schaul et al., 2016) on a vectorised sum-tree.

Item ``i`` is sampled with probability ``p_i**alpha / sum_k p_k**alpha``; its
importance-sampling weight is ``(N * P(i)) ** -beta`` divided by the largest
weight of the sampled batch, with ``beta`` annealed linearly from
``beta_start`` to 1 over ``beta_annealing_steps`` calls to :meth:`sample`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .sumtree import SumTree

__all__ = ["PrioritizedReplayBuffer", "ReplayBatch"]

_TRANSITION_FIELDS = ("state", "action", "reward", "next_state", "done")
_SUPERVISED_FIELDS = ("inputs", "target")


def _as_array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor without importing torch here
        value = value.detach().cpu().numpy()
    return np.asarray(value)


@dataclass(frozen=True)
class ReplayBatch:
    """Sampled items: ``fields`` (arrays, one row per item), ``indices`` and IS ``weights``.

    ``batch[0]`` / ``batch[1]`` give lists of tensors (inputs/states, then
    targets/rewards) so the seed's ``torch.stack([...] + replay_samples[0])`` works.

    >>> b = ReplayBatch({"inputs": np.zeros((2, 3)), "target": np.ones((2, 1))},
    ...                 np.array([4, 7]), np.array([1.0, 0.5]))
    >>> len(b), b[1][0].tolist()
    (2, [1.0])
    """

    fields: Mapping[str, np.ndarray]
    indices: np.ndarray
    weights: np.ndarray

    @property
    def inputs(self) -> np.ndarray:
        """Inputs (supervised form) or states (transition form)."""
        return self.fields["inputs"] if "inputs" in self.fields else self.fields["state"]

    @property
    def targets(self) -> np.ndarray:
        """Targets (supervised form) or rewards (transition form)."""
        return self.fields["target"] if "target" in self.fields else self.fields["reward"]

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, position: int) -> list:
        import torch

        column = (self.inputs, self.targets)[position]
        return list(torch.from_numpy(np.ascontiguousarray(column)))


class PrioritizedReplayBuffer:
    """Bounded prioritized replay memory; oldest items are overwritten first.

    Two record forms, fixed by the first add: the seed's transition
    ``add(state, action, reward, next_state, done, priority)`` and a supervised
    ``add(inputs, target, priority=None)`` (plus :meth:`add_batch`). A missing
    priority means "the current maximum", so new items are replayed at least once soon.

    >>> import numpy as np
    >>> buf = PrioritizedReplayBuffer(capacity=8, rng=np.random.default_rng(0))
    >>> buf.add_batch(np.arange(6.0).reshape(3, 2), np.array([[0.0], [1.0], [2.0]]))
    array([0, 1, 2])
    >>> batch = buf.sample(4)
    >>> batch.inputs.shape, float(batch.weights.max())
    ((4, 2), 1.0)
    >>> buf.update_priorities(batch.indices, np.full(4, 0.5))
    >>> len(buf)
    3
    """

    def __init__(
        self,
        capacity: int = 10_000,
        *,
        alpha: float = 0.6,
        beta_start: float = 0.4,
        beta_annealing_steps: int = 100_000,
        epsilon: float = 1e-6,
        rng: np.random.Generator | int | None = None,
    ) -> None:
        self.capacity = int(capacity)
        self.alpha = float(alpha)
        self.beta_start = float(beta_start)
        self.beta_annealing_steps = int(beta_annealing_steps)
        # Keeps zero-error items sampleable: p = |error| + epsilon.
        self.epsilon = float(epsilon)
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng or 0)
        self._reset()

    def _reset(self) -> None:
        self._tree = SumTree(self.capacity)
        self._fields: dict[str, np.ndarray] = {}
        self._next = 0
        self._size = 0
        self._max_priority = 1.0
        self._sample_calls = 0

    def clear(self) -> None:
        """Forget every stored item; the annealing of ``beta`` goes on."""
        calls = self._sample_calls
        self._reset()
        self._sample_calls = calls

    # ----------------------------------------------------------------- results
    def __len__(self) -> int:
        return self._size

    @property
    def beta(self) -> float:
        """Current IS exponent, annealed linearly from ``beta_start`` to 1."""
        if self.beta_annealing_steps <= 0:
            return 1.0
        frac = min(1.0, self._sample_calls / self.beta_annealing_steps)
        return self.beta_start + (1.0 - self.beta_start) * frac

    @property
    def max_priority(self) -> float:
        """Largest raw priority seen; new items without a priority get this one."""
        return self._max_priority

    @property
    def priorities(self) -> np.ndarray:
        """Raw priorities of the stored items (read-only copy)."""
        return self._tree.leaves[: self._size] ** (1.0 / self.alpha) - self.epsilon

    @property
    def record_form(self) -> str | None:
        """``"supervised"``, ``"transition"`` or ``None`` before the first add."""
        if not self._fields:
            return None
        return "supervised" if "inputs" in self._fields else "transition"

    # -------------------------------------------------------------------- add
    def add(self, *args: Any, **kwargs: Any) -> int:
        """Add one item; returns its slot index.

        ``add(state, action, reward, next_state, done, priority=None)`` or
        ``add(inputs, target, priority=None)`` (positional or keyword).
        """
        if len(args) >= 5 or any(k in kwargs for k in _TRANSITION_FIELDS):
            names = _TRANSITION_FIELDS
        else:
            names = _SUPERVISED_FIELDS
        values = dict(zip(names + ("priority",), args))
        values.update(kwargs)
        priority = values.pop("priority", None)
        missing = [n for n in names if n not in values]
        if missing or set(values) - set(names):
            raise TypeError(f"add() expects {names} (+ priority); got {sorted(values)}")
        row = {name: _as_array(values[name]) for name in names}
        self._ensure_storage(row)
        slot = self._next
        for name, value in row.items():
            self._fields[name][slot] = value
        self._advance(1)
        self._tree.set_one(slot, self._leaf_value(priority))
        return slot

    def add_batch(self, inputs: Any, targets: Any, priorities: Any = None) -> np.ndarray:
        """Add ``n`` supervised items at once; returns their slot indices."""
        inputs, targets = _as_array(inputs), _as_array(targets)
        n = inputs.shape[0]
        if targets.shape[0] != n:
            raise ValueError(f"{n} inputs but {targets.shape[0]} targets")
        raw = None
        if priorities is not None:
            raw = np.abs(_as_array(priorities).astype(np.float64).reshape(n))
            self._max_priority = max(self._max_priority, float(raw.max(initial=0.0)))
        start, kept = self._next, n
        if n > self.capacity:
            # Only the newest ``capacity`` items would survive; place them exactly where
            # ``n`` sequential adds would have left them.
            kept = self.capacity
            start = (self._next + n - kept) % self.capacity
            inputs, targets = inputs[-kept:], targets[-kept:]
            raw = None if raw is None else raw[-kept:]
        self._ensure_storage({"inputs": inputs[0], "target": targets[0]})
        slots = (start + np.arange(kept)) % self.capacity
        self._fields["inputs"][slots] = inputs
        self._fields["target"][slots] = targets
        self._advance(n)
        if raw is None:
            leaf = np.full(kept, (self._max_priority + self.epsilon) ** self.alpha)
        else:
            leaf = (raw + self.epsilon) ** self.alpha
        first = min(kept, self.capacity - start)  # the part before the wrap-around
        self._tree.set_range(start, leaf[:first])
        self._tree.set_range(0, leaf[first:])
        return slots

    def _ensure_storage(self, row: Mapping[str, np.ndarray]) -> None:
        if not self._fields:
            for name, value in row.items():
                dtype = np.float32 if value.dtype.kind == "f" else value.dtype
                self._fields[name] = np.zeros((self.capacity,) + value.shape, dtype=dtype)
        elif set(row) != set(self._fields):
            raise TypeError(f"buffer holds {self.record_form} records; cannot add {sorted(row)}")

    def _advance(self, n: int) -> None:
        self._next = (self._next + n) % self.capacity
        self._size = min(self.capacity, self._size + n)

    def _leaf_value(self, priority: float | None) -> float:
        if priority is None:
            priority = self._max_priority
        else:
            priority = abs(float(priority))
            if priority > self._max_priority:
                self._max_priority = priority
        return (priority + self.epsilon) ** self.alpha

    # --------------------------------------------------------- sample / update
    def sample(self, batch_size: int, beta: float | None = None) -> ReplayBatch:
        """Draw ``batch_size`` items (with replacement, stratified over the priority mass)."""
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        beta = self.beta if beta is None else float(beta)
        self._sample_calls += 1
        total = self._tree.total
        # Stratified: one uniform draw per equal slice of the mass, which lowers the
        # variance of the batch composition without biasing P(i).
        segment = total / batch_size
        prefix = (np.arange(batch_size) + self.rng.random(batch_size)) * segment
        np.minimum(prefix, np.nextafter(total, 0.0), out=prefix)
        indices = self._tree.find(prefix)
        # Rounding in inner nodes can point one past the filled region; clamp.
        np.minimum(indices, self._size - 1, out=indices)
        probs = self._tree.get(indices) / total
        weights = (self._size * probs) ** (-beta)
        weights /= weights.max()
        fields = {name: arr[indices] for name, arr in self._fields.items()}
        return ReplayBatch(fields, indices, weights.astype(np.float32))

    def update_priorities(self, indices: Any, priorities: Any) -> None:
        """Set raw priorities (e.g. ``|error|``) for previously sampled ``indices``."""
        indices = np.asarray(indices, dtype=np.int64).ravel()
        raw = np.abs(np.asarray(_as_array(priorities), dtype=np.float64).ravel())
        if indices.size != raw.size:
            raise ValueError(f"{indices.size} indices but {raw.size} priorities")
        if indices.size == 0:
            return
        if not np.all(np.isfinite(raw)):
            raise ValueError("priorities must be finite")
        if indices.min() < 0 or indices.max() >= self._size:
            raise IndexError("priority index outside the filled part of the buffer")
        self._max_priority = max(self._max_priority, float(raw.max()))
        self._tree.set(indices, (raw + self.epsilon) ** self.alpha)

    # ------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        """Arrays and JSON scalars only (no pickle); see :func:`omnimind.learning.checkpoint`."""
        return {
            "config": {
                "capacity": self.capacity,
                "alpha": self.alpha,
                "beta_start": self.beta_start,
                "beta_annealing_steps": self.beta_annealing_steps,
                "epsilon": self.epsilon,
            },
            "fields": {name: arr[: self._size].copy() for name, arr in self._fields.items()},
            "leaves": self._tree.leaves[: self._size].copy(),
            "next": self._next,
            "size": self._size,
            "max_priority": self._max_priority,
            "sample_calls": self._sample_calls,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` (capacity and exponents are restored too)."""
        for key, value in state["config"].items():
            setattr(self, key, type(getattr(self, key))(value))
        self._reset()
        size = int(state["size"])
        for name, arr in state["fields"].items():
            arr = np.asarray(arr)
            self._fields[name] = np.zeros((self.capacity,) + arr.shape[1:], dtype=arr.dtype)
            self._fields[name][:size] = arr[:size]
        self._tree.rebuild(np.asarray(state["leaves"], dtype=np.float64)[:size])
        self._next, self._size = int(state["next"]), size
        self._max_priority = float(state["max_priority"])
        self._sample_calls = int(state["sample_calls"])
        self.rng.bit_generator.state = dict(state["rng"])
