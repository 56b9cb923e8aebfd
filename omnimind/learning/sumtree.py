"""A vectorised sum-tree over one flat NumPy array.

The tree is a 1-indexed binary heap: node ``i`` has children ``2i`` and
``2i + 1``; leaves live at ``[leaf_base, 2 * leaf_base)``. All operations walk
the tree level by level with whole-array NumPy operations, so a batch of ``n``
queries costs ``O(depth)`` NumPy calls instead of ``O(n * depth)`` Python steps,
and there are no per-node Python objects.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SumTree"]


class SumTree:
    """Sum-tree with batched ``set`` and batched prefix-sum ``find``.

    >>> tree = SumTree(4)
    >>> tree.set(np.array([0, 1, 2, 3]), np.array([1.0, 2.0, 3.0, 4.0]))
    >>> tree.total
    10.0
    >>> tree.find(np.array([0.5, 1.5, 9.9])).tolist()
    [0, 1, 3]
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._reset()

    def _reset(self) -> None:
        leaf_base = 1
        while leaf_base < self.capacity:
            leaf_base *= 2
        self._leaf_base = leaf_base
        self._depth = leaf_base.bit_length() - 1
        # float64: sums over 1M leaves stay exact enough that prefix search never
        # lands on a zero-priority leaf because of rounding.
        self._nodes = np.zeros(2 * leaf_base, dtype=np.float64)
        # node >> shifts lists a node and all its ancestors up to the root (node 1).
        self._shifts = np.arange(self._depth + 1, dtype=np.int64)
        self._writes_since_rebuild = 0

    @property
    def total(self) -> float:
        """Sum of all leaf values."""
        return float(self._nodes[1])

    @property
    def leaves(self) -> np.ndarray:
        """Read-only view of the ``capacity`` leaf values."""
        view = self._nodes[self._leaf_base : self._leaf_base + self.capacity]
        view = view.view()
        view.flags.writeable = False
        return view

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Leaf values at ``indices``."""
        return self._nodes[np.asarray(indices) + self._leaf_base]

    def set_one(self, index: int, value: float) -> None:
        """Set one leaf by adding the change to its root path (one fancy-indexed add)."""
        node = int(index) + self._leaf_base
        nodes = self._nodes
        nodes[node >> self._shifts] += value - nodes[node]
        nodes[node] = value  # exact leaf, whatever the rounding of the add above
        self._note_updates(1)

    def set(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Set leaves ``indices`` to ``values`` (last write wins on duplicates)."""
        node = np.asarray(indices, dtype=np.int64) + self._leaf_base
        values = np.asarray(values, dtype=np.float64)
        if node.size > 1:
            # Deltas are computed against the old leaf value, so a leaf must appear
            # once: keep the last write for each index.
            order = np.argsort(node, kind="stable")
            node, values = node[order], values[order]
            last = np.empty(node.size, dtype=bool)
            last[-1] = True
            np.not_equal(node[1:], node[:-1], out=last[:-1])
            node, values = node[last], values[last]
        nodes = self._nodes
        delta = values - nodes[node]
        ancestors = (node[:, None] >> self._shifts).ravel()
        np.add.at(nodes, ancestors, np.repeat(delta, self._shifts.size))
        nodes[node] = values
        self._note_updates(node.size)

    def set_range(self, start: int, values: np.ndarray) -> None:
        """Set the contiguous leaves ``[start, start + len(values))`` (no wrap-around).

        Parents of a contiguous range form a contiguous range, so each level is
        one slice operation and the sums are recomputed exactly.
        """
        n = len(values)
        if n == 0:
            return
        nodes = self._nodes
        lo = start + self._leaf_base
        hi = lo + n - 1
        nodes[lo : hi + 1] = values
        while lo > 1:
            lo, hi = lo >> 1, hi >> 1
            nodes[lo : hi + 1] = nodes[2 * lo : 2 * hi + 2 : 2] + nodes[2 * lo + 1 : 2 * hi + 2 : 2]

    def _note_updates(self, count: int) -> None:
        # Propagating deltas accumulates rounding error in inner nodes; an exact
        # rebuild once per ``capacity`` leaf writes keeps it bounded at O(1) amortised.
        self._writes_since_rebuild += count
        if self._writes_since_rebuild >= max(self.capacity, 1024):
            self.rebuild(self.leaves.copy())

    def rebuild(self, values: np.ndarray) -> None:
        """Replace every leaf at once (``O(capacity)``), used when restoring a checkpoint."""
        self._nodes[:] = 0.0
        self._writes_since_rebuild = 0
        base = self._leaf_base
        self._nodes[base : base + len(values)] = values
        for level in range(self._depth - 1, -1, -1):
            lo, hi = 1 << level, 1 << (level + 1)
            self._nodes[lo:hi] = self._nodes[2 * lo : 2 * hi : 2] + self._nodes[2 * lo + 1 : 2 * hi : 2]

    def find(self, prefix_sums: np.ndarray) -> np.ndarray:
        """Leaf index whose cumulative range contains each prefix sum (vectorised descent)."""
        nodes = self._nodes
        remaining = np.array(prefix_sums, dtype=np.float64)
        node = np.ones(remaining.shape, dtype=np.int64)
        for _ in range(self._depth):
            node <<= 1
            left_sum = nodes[node]
            go_right = remaining >= left_sum
            remaining -= left_sum * go_right
            node += go_right
        return node - self._leaf_base
