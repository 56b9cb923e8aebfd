"""The vector memory contract: collections of (id, vector, payload) points.

``VectorMemory`` validates every untrusted argument (JSON from the broker) and
turns it into a typed ``InvalidInput`` before an implementation sees it; an
implementation only stores and searches. Semantics shared by all of them:

* distances: ``cosine`` (score = cosine similarity, higher is nearer; vectors
  are normalised on upsert), ``dot`` (score = dot product, higher is nearer),
  ``euclid`` (score = Euclidean distance, lower is nearer). ``search`` returns
  the nearest first.
* ids: non-negative integers or UUID strings (Qdrant's rule).
* upsert replaces a point (vector and payload) as a whole.
* filter: ``{"key": value}`` (match a str/int/bool), ``{"key": [v1, v2]}``
  (match any), ``{"key": {"gte": 1, "lt": 5}}`` (range on numbers); several
  keys must all hold; ``a.b`` reaches into nested payloads; when a payload value
  is a list, a condition holds if any element satisfies it.

>>> from omnimind.memory.inmemory import InMemoryVectorMemory
>>> memory = InMemoryVectorMemory()
>>> memory.create_collection("notes", dim=2, distance="euclid")
True
>>> memory.upsert("notes", [1, 2], [[0.0, 0.0], [1.0, 0.0]], [{"tag": "a"}, {"tag": "b"}])
2
>>> [(hit.id, round(hit.score, 3)) for hit in memory.search("notes", [0.9, 0.0], k=2)]
[(2, 0.1), (1, 0.9)]
>>> memory.search("notes", [1.0, 0.0, 0.0], k=1)
Traceback (most recent call last):
...
omnimind.errors.InvalidInput: shape: collection 'notes' holds vectors of dimension 2, got shape (3,)
"""
from __future__ import annotations

import json
import math
import re
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from omnimind.errors import InvalidInput
from omnimind.validation import as_array

DISTANCES = ("cosine", "dot", "euclid")
#: Distances whose score grows as points get nearer.
SIMILARITIES = ("cosine", "dot")
RANGE_OPS = ("gt", "gte", "lt", "lte")
_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_MAX_INT_ID = 2**64 - 1


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    dim: int
    distance: str


@dataclass(frozen=True)
class Hit:
    """One search result."""

    id: int | str
    score: float
    payload: dict

    def to_json(self) -> dict:
        return {"id": self.id, "score": self.score, "payload": self.payload}


class VectorMemory(ABC):
    """Validating front of a vector store; see the module docstring.

    ``max_payload_bytes``: largest JSON-encoded payload of one point.
    ``max_batch``: most points one upsert/delete call may carry.
    ``max_k``: most hits one search may ask for.
    """

    def __init__(self, max_payload_bytes: int = 65536, max_batch: int = 1024, max_k: int = 1024) -> None:
        self.max_payload_bytes = max_payload_bytes
        self.max_batch = max_batch
        self.max_k = max_k

    # -- public, validating API ------------------------------------------------
    def create_collection(self, name: Any, dim: Any, distance: Any = "cosine") -> bool:
        """Create a collection; True if created, False if it already existed with
        the same parameters (``InvalidInput("conflict")`` if with others)."""
        name = check_name(name)
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise InvalidInput("type", f"'dim' must be an integer, not {type(dim).__name__}")
        if not 1 <= dim <= 65536:
            raise InvalidInput("bad_value", f"'dim' must be between 1 and 65536, got {dim}")
        if not isinstance(distance, str) or distance.lower() not in DISTANCES:
            raise InvalidInput("bad_value", f"'distance' must be one of {list(DISTANCES)}, got {distance!r}")
        distance = distance.lower()
        existing = self._info(name)
        if existing is not None:
            if (existing.dim, existing.distance) != (dim, distance):
                raise InvalidInput(
                    "conflict",
                    f"collection {name!r} exists with dim={existing.dim}, distance={existing.distance}; "
                    f"asked for dim={dim}, distance={distance}",
                )
            return False
        self._create(CollectionInfo(name, dim, distance))
        return True

    def upsert(self, collection: Any, ids: Any, vectors: Any, payloads: Any = None) -> int:
        """Insert or replace points; returns how many."""
        info = self.info(collection)
        ids = check_ids(ids, self.max_batch)
        matrix = self._vectors(info, vectors, len(ids))
        if payloads is None:
            payloads = [{} for _ in ids]
        if not isinstance(payloads, (list, tuple)):
            raise InvalidInput("type", f"'payloads' must be a list of objects, not {type(payloads).__name__}")
        if len(payloads) != len(ids):
            raise InvalidInput("shape", f"got {len(ids)} id(s) but {len(payloads)} payload(s)")
        payloads = [self._payload(p, i) for p, i in zip(payloads, ids)]
        if len(set(ids)) != len(ids):
            raise InvalidInput("bad_id", "the same id appears twice in one upsert")
        self._upsert(info, ids, matrix, payloads)
        return len(ids)

    def search(self, collection: Any, vector: Any, k: Any = 10, filter: Any = None) -> list[Hit]:
        """The ``k`` nearest points matching ``filter``, nearest first."""
        info = self.info(collection)
        if isinstance(k, bool) or not isinstance(k, int):
            raise InvalidInput("type", f"'k' must be an integer, not {type(k).__name__}")
        if not 1 <= k <= self.max_k:
            raise InvalidInput("bad_value", f"'k' must be between 1 and {self.max_k}, got {k}")
        query = as_array(vector, "vector")
        if query.shape != (info.dim,):
            raise InvalidInput(
                "shape", f"collection {info.name!r} holds vectors of dimension {info.dim}, got shape {query.shape}"
            )
        if info.distance == "cosine" and not np.any(query):
            raise InvalidInput("bad_value", "a zero vector has no cosine similarity")
        return self._search(info, query, k, check_filter(filter))

    def delete(self, collection: Any, ids: Any) -> int:
        """Delete points by id (unknown ids are ignored); returns how many were asked."""
        info = self.info(collection)
        ids = check_ids(ids, self.max_batch)
        self._delete(info, ids)
        return len(ids)

    def count(self, collection: Any) -> int:
        return self._count(self.info(collection))

    def info(self, collection: Any) -> CollectionInfo:
        name = check_name(collection, "collection")
        info = self._info(name)
        if info is None:
            raise InvalidInput("unknown_collection", f"no collection named {name!r}; create it first")
        return info

    def close(self) -> None:  # noqa: B027 (a no-op unless the backend holds something)
        """Release files and connections."""

    # -- what an implementation provides ------------------------------------
    @abstractmethod
    def _info(self, name: str) -> CollectionInfo | None: ...

    @abstractmethod
    def _create(self, info: CollectionInfo) -> None: ...

    @abstractmethod
    def _upsert(self, info: CollectionInfo, ids: list, vectors: np.ndarray, payloads: list[dict]) -> None: ...

    @abstractmethod
    def _search(self, info: CollectionInfo, vector: np.ndarray, k: int, filter: dict) -> list[Hit]: ...

    @abstractmethod
    def _delete(self, info: CollectionInfo, ids: list) -> None: ...

    @abstractmethod
    def _count(self, info: CollectionInfo) -> int: ...

    # -- helpers ---------------------------------------------------------------
    def _vectors(self, info: CollectionInfo, vectors: Any, n: int) -> np.ndarray:
        matrix = as_array(vectors, "vectors")
        if matrix.ndim != 2 or matrix.shape[1] != info.dim:
            raise InvalidInput(
                "shape",
                f"collection {info.name!r} holds vectors of dimension {info.dim}, got shape {matrix.shape}",
            )
        if matrix.shape[0] != n:
            raise InvalidInput("shape", f"got {n} id(s) but {matrix.shape[0]} vector(s)")
        if info.distance == "cosine" and not np.all(np.any(matrix, axis=1)):
            raise InvalidInput("bad_value", "a zero vector has no cosine similarity")
        return matrix

    def _payload(self, payload: Any, point_id) -> dict:
        if payload is None:
            return {}
        if not isinstance(payload, dict):
            raise InvalidInput("type", f"payload of point {point_id!r} must be an object, not {type(payload).__name__}")
        try:
            size = len(json.dumps(payload, allow_nan=False).encode())
        except (TypeError, ValueError) as exc:
            raise InvalidInput("type", f"payload of point {point_id!r} is not plain JSON: {exc}") from None
        if size > self.max_payload_bytes:
            raise InvalidInput(
                "payload_too_large",
                f"payload of point {point_id!r} is {size} bytes; the limit is {self.max_payload_bytes}",
            )
        return payload


def check_name(name: Any, field: str = "name") -> str:
    if name is None:
        raise InvalidInput("missing_field", f"'{field}' is required")
    if not isinstance(name, str):
        raise InvalidInput("type", f"'{field}' must be a string, not {type(name).__name__}")
    if not _NAME.match(name):
        raise InvalidInput("bad_value", f"'{field}' must be 1-64 letters, digits, '_' or '-', got {name!r}")
    return name


def check_id(value: Any) -> int | str:
    """A point id: a non-negative integer or a UUID string (canonical form)."""
    if isinstance(value, bool):
        raise InvalidInput("bad_id", f"id must be a non-negative integer or a UUID string, not {value!r}")
    if isinstance(value, int):
        if 0 <= value <= _MAX_INT_ID:
            return value
        raise InvalidInput("bad_id", f"integer id {value} is out of range 0..2**64-1")
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise InvalidInput("bad_id", f"id must be a non-negative integer or a UUID string, not {value!r}")


def check_ids(ids: Any, max_batch: int) -> list:
    if ids is None:
        raise InvalidInput("missing_field", "'ids' is required")
    if not isinstance(ids, (list, tuple)):
        ids = [ids]
    if not ids:
        raise InvalidInput("empty", "no ids given")
    if len(ids) > max_batch:
        raise InvalidInput("batch_too_large", f"batch of {len(ids)} exceeds the limit of {max_batch}")
    return [check_id(i) for i in ids]


def check_filter(filter: Any) -> dict:
    """The filter in its normal form: key -> ("match", v) | ("any", [..]) | ("range", {op: x})."""
    if filter is None:
        return {}
    if not isinstance(filter, dict):
        raise InvalidInput("bad_filter", f"filter must be an object, not {type(filter).__name__}")
    normal = {}
    for key, cond in filter.items():
        if not isinstance(key, str) or not key:
            raise InvalidInput("bad_filter", f"filter keys must be non-empty strings, got {key!r}")
        if isinstance(cond, dict):
            if not cond or set(cond) - set(RANGE_OPS):
                raise InvalidInput("bad_filter", f"range on {key!r} takes only {list(RANGE_OPS)}, got {sorted(cond)}")
            for op, bound in cond.items():
                if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
                    raise InvalidInput("bad_filter", f"range bound {key}.{op} must be a finite number, got {bound!r}")
            normal[key] = ("range", dict(cond))
        elif isinstance(cond, list):
            if not cond or not (all(_is_int(v) for v in cond) or all(isinstance(v, str) for v in cond)):
                raise InvalidInput("bad_filter", f"match-any on {key!r} needs a non-empty list of ints or of strings")
            normal[key] = ("any", list(cond))
        elif isinstance(cond, (str, bool)) or _is_int(cond):
            normal[key] = ("match", cond)
        else:
            raise InvalidInput("bad_filter", f"cannot match {key!r} against {cond!r} (use str, int, bool, list or range)")
    return normal


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def field_values(payload: dict, key: str) -> Iterable:
    """Values under a dotted key, lists flattened (Qdrant's reading of a payload)."""
    values = [payload]
    for part in key.split("."):
        values = [v[part] for v in values if isinstance(v, dict) and part in v]
        values = [x for v in values for x in (v if isinstance(v, list) else [v])]
    return values


def matches(payload: dict, filter: dict) -> bool:
    """Whether ``payload`` satisfies a normalised filter (see ``check_filter``)."""
    for key, (kind, arg) in filter.items():
        values = field_values(payload, key)
        if kind == "match":
            ok = any(_same(v, arg) for v in values)
        elif kind == "any":
            ok = any(_same(v, a) for v in values for a in arg)
        else:
            ok = any(_in_range(v, arg) for v in values)
        if not ok:
            return False
    return True


def _same(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(wanted, bool) and value == wanted
    if isinstance(wanted, str):
        return isinstance(value, str) and value == wanted
    return _is_int(value) and value == wanted


def _in_range(value: Any, bounds: dict) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return (
        ("gt" not in bounds or value > bounds["gt"])
        and ("gte" not in bounds or value >= bounds["gte"])
        and ("lt" not in bounds or value < bounds["lt"])
        and ("lte" not in bounds or value <= bounds["lte"])
    )
