"""One Redis client (one connection pool) per URL in a process.

redis-py's pools are thread-safe and notice a fork (a child gets fresh
connections), so every part of a worker can share one client per URL instead
of each opening its own.

>>> redis_client("redis://127.0.0.1:1/0") is redis_client("redis://127.0.0.1:1/0")
True
"""
from __future__ import annotations

import threading

import redis

_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def redis_client(url: str) -> redis.Redis:
    client = _clients.get(url)
    if client is None:
        with _lock:
            client = _clients.setdefault(url, redis.Redis.from_url(url))
    return client
