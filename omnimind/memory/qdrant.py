"""Vector memory on Qdrant through ``qdrant-client``.

Two modes: embedded local mode (``path``: a folder under OmniMind's data
directory, the default) and a Qdrant server (``url``, for production). Local
mode keeps its points in files that only one process may open at a time (the
client takes a lock on the folder), which is why the ``memory`` queue is
consumed by exactly one process then (``workers.memory``); with a server any
number of memory workers share it.

>>> import tempfile
>>> folder = tempfile.TemporaryDirectory()
>>> memory = QdrantMemory(path=folder.name)
>>> memory.create_collection("docs", dim=2, distance="cosine")
True
>>> memory.upsert("docs", [1, 2], [[1, 0], [0, 1]], [{"t": "x"}, {"t": "y"}])
2
>>> [hit.id for hit in memory.search("docs", [0.1, 1.0], k=2)]
[2, 1]
>>> memory.close(); folder.cleanup()
"""
from __future__ import annotations

import threading
from contextlib import nullcontext

from omnimind.errors import InvalidInput
from omnimind.memory.base import CollectionInfo, Hit, VectorMemory

_TO_QDRANT = {"cosine": "Cosine", "dot": "Dot", "euclid": "Euclid"}
_FROM_QDRANT = {v: k for k, v in _TO_QDRANT.items()}


class QdrantMemory(VectorMemory):
    """See the module docstring. ``upsert_batch_size``: points per request to Qdrant."""

    upsert_batch_size = 256

    def __init__(self, path: str | None = None, url: str | None = None, api_key: str | None = None,
                 timeout: float = 30.0, **limits) -> None:
        from qdrant_client import QdrantClient

        super().__init__(**limits)
        if (path is None) == (url is None):
            raise ValueError("give exactly one of path (embedded local mode) or url (Qdrant server)")
        self.local = path is not None
        self.location = path if self.local else url
        if self.local:
            self.client = QdrantClient(path=path)
        else:
            self.client = QdrantClient(url=url, api_key=api_key or None, timeout=int(timeout))
        # Local mode is plain Python state, not safe for concurrent threads; the
        # server client is.
        self._lock = threading.RLock() if self.local else nullcontext()
        self._known: dict[str, CollectionInfo] = {}

    @classmethod
    def from_settings(cls, settings) -> "QdrantMemory":
        import os

        limits = dict(max_payload_bytes=settings.memory_max_payload_bytes, max_batch=settings.max_batch_size,
                      max_k=settings.max_batch_size)
        if settings.qdrant_url:
            return cls(url=settings.qdrant_url, api_key=settings.qdrant_api_key, **limits)
        os.makedirs(settings.memory_path, exist_ok=True)
        return cls(path=settings.memory_path, **limits)

    def close(self) -> None:
        with self._lock:
            self.client.close()

    # -- implementation ----------------------------------------------------------
    def _info(self, name):
        known = self._known.get(name)
        if known is not None:
            return known
        with self._lock:
            if not self.client.collection_exists(name):
                return None
            vectors = self.client.get_collection(name).config.params.vectors
        if isinstance(vectors, dict):
            raise InvalidInput("conflict", f"collection {name!r} uses named vectors, which OmniMind does not")
        info = CollectionInfo(name, int(vectors.size), _FROM_QDRANT[_enum_value(vectors.distance)])
        self._known[name] = info
        return info

    def _create(self, info):
        from qdrant_client import models

        params = models.VectorParams(size=info.dim, distance=models.Distance(_TO_QDRANT[info.distance]))
        with self._lock:
            self.client.create_collection(info.name, vectors_config=params)
        self._known[info.name] = info

    def _upsert(self, info, ids, vectors, payloads):
        from qdrant_client import models

        step = self.upsert_batch_size
        for start in range(0, len(ids), step):
            batch = models.Batch(
                ids=ids[start:start + step],
                vectors=vectors[start:start + step].tolist(),
                payloads=payloads[start:start + step],
            )
            self._call(info, lambda: self.client.upsert(info.name, points=batch, wait=True))

    def _search(self, info, vector, k, filter):
        response = self._call(
            info,
            lambda: self.client.query_points(
                info.name, query=vector.tolist(), limit=k, query_filter=to_qdrant_filter(filter),
                with_payload=True, with_vectors=False,
            ),
        )
        return [Hit(p.id, float(p.score), dict(p.payload or {})) for p in response.points]

    def _delete(self, info, ids):
        from qdrant_client import models

        self._call(info, lambda: self.client.delete(info.name, points_selector=models.PointIdsList(points=ids)))

    def _count(self, info):
        return self._call(info, lambda: self.client.count(info.name, exact=True).count)

    def _call(self, info, operation):
        """Run a client call; a collection deleted behind our back is ``unknown_collection``."""
        from qdrant_client.http.exceptions import UnexpectedResponse

        try:
            with self._lock:
                return operation()
        except (ValueError, UnexpectedResponse) as exc:
            gone = getattr(exc, "status_code", None) == 404 or "not found" in str(exc).lower()
            if not gone:
                raise
            self._known.pop(info.name, None)
            raise InvalidInput("unknown_collection", f"no collection named {info.name!r}; create it first") from None


def _enum_value(value) -> str:
    return getattr(value, "value", value)


def to_qdrant_filter(filter: dict):
    """A normalised filter (``base.check_filter``) as a Qdrant ``Filter``, or None."""
    if not filter:
        return None
    from qdrant_client import models

    must = []
    for key, (kind, arg) in filter.items():
        if kind == "match":
            must.append(models.FieldCondition(key=key, match=models.MatchValue(value=arg)))
        elif kind == "any":
            must.append(models.FieldCondition(key=key, match=models.MatchAny(any=arg)))
        else:
            must.append(models.FieldCondition(key=key, range=models.Range(**arg)))
    return models.Filter(must=must)
