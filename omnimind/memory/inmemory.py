"""Vector memory in a Python dict, searched by NumPy brute force.

Same semantics as the Qdrant backend (distances, filters, id rules, errors), so
unit tests and examples run without files or a server. Not for production: one
process, nothing persisted.

>>> memory = InMemoryVectorMemory()
>>> memory.create_collection("facts", dim=3)
True
>>> memory.upsert("facts", [7, 8], [[1, 0, 0], [0, 1, 0]], [{"lang": "en"}, {"lang": "pt"}])
2
>>> [hit.id for hit in memory.search("facts", [1, 0.2, 0], k=2)]
[7, 8]
>>> [hit.id for hit in memory.search("facts", [1, 0.2, 0], k=2, filter={"lang": "pt"})]
[8]
"""
from __future__ import annotations

import copy
import threading

import numpy as np

from omnimind.memory.base import CollectionInfo, Hit, VectorMemory, matches


class _Collection:
    def __init__(self, info: CollectionInfo) -> None:
        self.info = info
        self.points: dict = {}  # id -> (vector float32, payload)


class InMemoryVectorMemory(VectorMemory):
    """See the module docstring."""

    def __init__(self, **limits) -> None:
        super().__init__(**limits)
        self._collections: dict[str, _Collection] = {}
        self._lock = threading.Lock()

    def _info(self, name):
        found = self._collections.get(name)
        return found.info if found else None

    def _create(self, info):
        with self._lock:
            self._collections.setdefault(info.name, _Collection(info))

    def _upsert(self, info, ids, vectors, payloads):
        vectors = vectors.astype(np.float32)
        if info.distance == "cosine":  # as Qdrant does: store unit vectors
            vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        with self._lock:
            points = self._collections[info.name].points
            for point_id, vector, payload in zip(ids, vectors, payloads):
                points[point_id] = (vector, copy.deepcopy(payload))

    def _search(self, info, vector, k, filter):
        with self._lock:
            items = [(i, v, p) for i, (v, p) in self._collections[info.name].points.items() if matches(p, filter)]
        if not items:
            return []
        matrix = np.stack([v for _, v, _ in items]).astype(np.float64)
        query = vector.astype(np.float64)
        if info.distance == "euclid":
            scores = np.sqrt(((matrix - query) ** 2).sum(axis=1))
            order = np.argsort(scores, kind="stable")
        else:
            if info.distance == "cosine":
                query = query / np.linalg.norm(query)
            scores = matrix @ query
            order = np.argsort(-scores, kind="stable")
        return [Hit(items[i][0], float(scores[i]), copy.deepcopy(items[i][2])) for i in order[:k]]

    def _delete(self, info, ids):
        with self._lock:
            points = self._collections[info.name].points
            for point_id in ids:
                points.pop(point_id, None)

    def _count(self, info):
        return len(self._collections[info.name].points)
