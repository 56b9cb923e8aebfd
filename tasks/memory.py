"""Tasks on the ``memory`` queue: vector memory (``omnimind.memory``), JSON in and out.

The backend is built once per worker process, on its first memory task. In
embedded mode (no ``OMNIMIND_QDRANT_URL``) exactly one process may consume this
queue; ``workers.memory.MemoryLockStep`` enforces that when the worker starts.
"""
from __future__ import annotations

from typing import Any

from omnimind.app import task
from omnimind.config import settings
from omnimind.errors import InvalidInput
from omnimind.memory import get_memory
from workers.context import node_id

_options = dict(throws=(InvalidInput,))


@task(name="tasks.memory.create_collection", **_options)
def create_collection(name: Any = None, dim: Any = None, distance: Any = "cosine") -> dict:
    """Create a collection (idempotent for the same ``dim`` and ``distance``).

    Returns ``{"collection", "dim", "distance", "created": bool, "node_id"}``.
    """
    if dim is None:
        raise InvalidInput("missing_field", "'dim' is required")
    memory = get_memory(settings)
    created = memory.create_collection(name, dim, distance)
    info = memory.info(name)
    return {"collection": info.name, "dim": info.dim, "distance": info.distance, "created": created,
            "node_id": node_id()}


@task(name="tasks.memory.upsert", **_options)
def upsert(collection: Any = None, id: Any = None, vector: Any = None, payload: Any = None,
           ids: Any = None, vectors: Any = None, payloads: Any = None) -> dict:
    """Insert or replace one point (``id``, ``vector``, ``payload``) or a batch
    (``ids``, ``vectors``, ``payloads`` lists). Returns ``{"collection", "upserted", "node_id"}``."""
    single = id is not None or vector is not None or payload is not None
    batch = ids is not None or vectors is not None or payloads is not None
    if single and batch:
        raise InvalidInput("type", "give either id/vector/payload or ids/vectors/payloads, not both")
    if single:
        if id is None or vector is None:
            raise InvalidInput("missing_field", "'id' and 'vector' are required")
        ids, vectors, payloads = [id], [vector], [payload]
    elif ids is None or vectors is None:
        raise InvalidInput("missing_field", "'id' and 'vector' (or 'ids' and 'vectors') are required")
    count = get_memory(settings).upsert(collection, ids, vectors, payloads)
    return {"collection": collection, "upserted": count, "node_id": node_id()}


@task(name="tasks.memory.search", **_options)
def search(collection: Any = None, vector: Any = None, k: Any = 10, filter: Any = None) -> dict:
    """The ``k`` nearest points, nearest first: ``{"collection", "hits": [{"id",
    "score", "payload"}], "distance", "node_id"}`` (``score``: similarity for
    cosine/dot, distance for euclid)."""
    memory = get_memory(settings)
    hits = memory.search(collection, vector, k, filter)
    return {"collection": collection, "hits": [h.to_json() for h in hits],
            "distance": memory.info(collection).distance, "node_id": node_id()}


@task(name="tasks.memory.delete", **_options)
def delete(collection: Any = None, ids: Any = None) -> dict:
    """Delete points by id; unknown ids are ignored. Returns ``{"collection", "deleted", "node_id"}``
    (``deleted``: how many ids were asked)."""
    count = get_memory(settings).delete(collection, ids)
    return {"collection": collection, "deleted": count, "node_id": node_id()}


@task(name="tasks.memory.count", **_options)
def count(collection: Any = None) -> dict:
    """Number of points in a collection: ``{"collection", "count", "node_id"}``."""
    return {"collection": collection, "count": get_memory(settings).count(collection), "node_id": node_id()}
