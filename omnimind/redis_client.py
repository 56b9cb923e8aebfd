"""One Redis client (one connection pool) per URL in a process.

redis-py's pools are thread-safe and notice a fork (a child gets fresh
connections), so every part of a worker can share one client per URL instead
of each opening its own.

>>> redis_client("redis://127.0.0.1:1/0") is redis_client("redis://127.0.0.1:1/0")
True

A ``sentinel://`` URL (:mod:`omnimind.sentinel`) gives a client of the master the
sentinels monitor as ``master_name`` (default ``OMNIMIND_SENTINEL_MASTER``), which
follows failovers:

>>> redis_client("sentinel://127.0.0.1:1", "mymaster").connection_pool.service_name
'mymaster'
"""
from __future__ import annotations

import threading

import redis

from omnimind import config
from omnimind.sentinel import is_sentinel_url, master_client

_clients: dict[tuple[str, str | None], redis.Redis] = {}
_lock = threading.Lock()


def redis_client(url: str, master_name: str | None = None) -> redis.Redis:
    if is_sentinel_url(url) and master_name is None:
        master_name = config.settings.sentinel_master
    key = (url, master_name if is_sentinel_url(url) else None)
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = master_client(url, master_name) if key[1] else redis.Redis.from_url(url)
    return client
