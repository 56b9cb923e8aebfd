"""Where the node registry keeps its records: in memory, or in Redis for a farm."""
from omnimind.scaling.registry_store.base import RegistryStore
from omnimind.scaling.registry_store.memory import MemoryRegistryStore
from omnimind.scaling.registry_store.redis import RedisRegistryStore

__all__ = ["RegistryStore", "MemoryRegistryStore", "RedisRegistryStore"]
