"""The farm's registry store: Redis hashes, stamped with Redis's own clock.

Heartbeat times come from the Redis server (``TIME`` inside the scripts), so
node health never depends on the clocks of the worker machines agreeing.
Each operation is one Lua script: multi-key changes are atomic.
"""
from __future__ import annotations

import json
from typing import Any

import redis

from omnimind import keys
from omnimind.scaling.node import NodeInfo, from_timestamp
from omnimind.scaling.registry_store.base import RegistryStore

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000 "

# KEYS: node hash, nodes zset, capabilities set
# ARGV: node id, ttl seconds, capability-key prefix, info json, hardware json, capability...
_REGISTER = _NOW + """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'info', ARGV[4], 'hardware', ARGV[5], 'registered_at', now,
           'heartbeat_at', now, 'load_factor', 0, 'latency_ms', 0)
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[1])
for _, cap in ipairs(redis.call('SMEMBERS', KEYS[3])) do redis.call('SREM', ARGV[3] .. cap, ARGV[1]) end
for i = 6, #ARGV do
  redis.call('SADD', KEYS[3], ARGV[i])
  redis.call('SADD', ARGV[3] .. ARGV[i], ARGV[1])
end
return tostring(now)
"""

# KEYS: node hash, nodes zset;  ARGV: node id, ttl, load, latency, hardware json or '', queue load json or ''
_HEARTBEAT = _NOW + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'heartbeat_at', now, 'load_factor', ARGV[3], 'latency_ms', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'hardware', ARGV[5]) end
if ARGV[6] and ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'queue_load', ARGV[6]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[1])
return 1
"""

# KEYS: node hash, nodes zset, capabilities set;  ARGV: node id, capability-key prefix
_DEREGISTER = """
for _, cap in ipairs(redis.call('SMEMBERS', KEYS[3])) do redis.call('SREM', ARGV[2] .. cap, ARGV[1]) end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS: nodes zset, capabilities set;  ARGV: node-key prefix, capability-key prefix
# Returns now, then 8 values per live node (id, then its fields); prunes ids whose hash expired.
_SNAPSHOT = _NOW + """
local out = {tostring(now)}
local caps = nil
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local h = redis.call('HMGET', ARGV[1] .. id, 'info', 'hardware', 'registered_at', 'heartbeat_at', 'load_factor',
                       'latency_ms', 'queue_load')
  if h[1] then
    table.insert(out, id)
    for i = 1, 7 do table.insert(out, h[i] or '') end
  else
    redis.call('ZREM', KEYS[1], id)
    caps = caps or redis.call('SMEMBERS', KEYS[2])
    for _, cap in ipairs(caps) do redis.call('SREM', ARGV[2] .. cap, id) end
  end
end
return out
"""


class RedisRegistryStore(RegistryStore):
    """Node records in Redis. A record expires ``expire_after`` seconds after its
    last heartbeat, long enough for operators to see it UNREACHABLE first."""

    def __init__(self, client: redis.Redis, expire_after: float = 60.0) -> None:
        self.client = client
        self.expire_after = expire_after
        self._register = client.register_script(_REGISTER)
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._deregister = client.register_script(_DEREGISTER)
        self._snapshot = client.register_script(_SNAPSHOT)

    @property
    def _ttl(self) -> int:
        return max(1, int(round(self.expire_after)))

    def register(self, record: NodeInfo) -> NodeInfo:
        info = {
            "ip_address": record.ip_address,
            "port": record.port,
            "capabilities": list(record.capabilities),
            "concurrency": record.concurrency,
            "pid": record.pid,
            "hostname": record.hostname,
        }
        now = float(
            self._register(
                keys=[keys.node(record.node_id), keys.NODES, keys.CAPABILITIES],
                args=[record.node_id, self._ttl, keys.capability(""), json.dumps(info), json.dumps(record.hardware),
                      *record.capabilities],
            )
        )
        record.registered_at = record.last_heartbeat = from_timestamp(now)
        record.load_factor = record.latency_ms = 0.0
        return record

    def heartbeat(self, node_id: str, load_factor: float, latency_ms: float, hardware: dict[str, Any] | None = None,
                  queue_load: dict[str, dict[str, int]] | None = None) -> bool:
        known = self._heartbeat(
            keys=[keys.node(node_id), keys.NODES],
            args=[node_id, self._ttl, repr(float(load_factor)), repr(float(latency_ms)),
                  json.dumps(hardware) if hardware is not None else "",
                  json.dumps(queue_load, separators=(",", ":")) if queue_load is not None else ""],
        )
        return bool(known)

    def deregister(self, node_id: str) -> None:
        self._deregister(keys=[keys.node(node_id), keys.NODES, keys.CAPABILITIES], args=[node_id, keys.capability("")])

    def snapshot(self) -> tuple[float, list[NodeInfo]]:
        raw = self._snapshot(keys=[keys.NODES, keys.CAPABILITIES], args=[keys.node(""), keys.capability("")])
        now = float(raw[0])
        records = []
        for i in range(1, len(raw), 8):
            node_id, info, hardware, registered_at, heartbeat_at, load, latency, queue_load = raw[i : i + 8]
            fields = json.loads(info)
            records.append(
                NodeInfo(
                    node_id=_text(node_id),
                    ip_address=fields["ip_address"],
                    port=int(fields["port"]),
                    capabilities=list(fields["capabilities"]),
                    hardware=json.loads(hardware) if hardware else {},
                    concurrency=int(fields.get("concurrency") or 1),
                    pid=fields.get("pid"),
                    hostname=fields.get("hostname") or "",
                    registered_at=from_timestamp(float(registered_at)),
                    last_heartbeat=from_timestamp(float(heartbeat_at)),
                    load_factor=float(load),
                    latency_ms=float(latency),
                    queue_load=_queue_load(queue_load),
                )
            )
        return now, records


def _queue_load(raw: bytes | str | None) -> dict[str, dict[str, int]]:
    """The heartbeat's per-queue counts; {} when absent (an older worker) or unreadable."""
    try:
        data = json.loads(raw) if raw else {}
        return {str(q): {"reserved": int(c.get("reserved", 0)), "active": int(c.get("active", 0))}
                for q, c in data.items()}
    except (ValueError, TypeError, AttributeError):
        return {}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
