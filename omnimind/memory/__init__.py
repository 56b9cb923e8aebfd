"""Vector memory: the contract (``base``), Qdrant (``qdrant``) and an in-memory
twin for tests (``inmemory``), plus the one backend of this process."""
from __future__ import annotations

import threading

from omnimind.memory.base import DISTANCES, CollectionInfo, Hit, VectorMemory
from omnimind.memory.inmemory import InMemoryVectorMemory

__all__ = ["DISTANCES", "CollectionInfo", "Hit", "VectorMemory", "InMemoryVectorMemory", "get_memory", "close_memory"]

_memory: VectorMemory | None = None
_lock = threading.Lock()


def get_memory(settings) -> VectorMemory:
    """This process's backend, built on first use (a worker's first memory task)."""
    global _memory
    if _memory is None:
        with _lock:
            if _memory is None:
                from omnimind.memory.qdrant import QdrantMemory

                _memory = QdrantMemory.from_settings(settings)
    return _memory


def close_memory() -> None:
    """Close this process's backend if it was built (worker shutdown)."""
    global _memory
    with _lock:
        if _memory is not None:
            _memory.close()
            _memory = None
