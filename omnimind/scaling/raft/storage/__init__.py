"""Durable state of a Raft member: the :class:`RaftStorage` contract and its implementations."""

from .base import PersistedState, RaftStorage
from .file import FileStorage
from .memory import MemoryStorage

__all__ = ["FileStorage", "MemoryStorage", "PersistedState", "RaftStorage"]
