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
from omnimind.lua import source
from omnimind.scaling.node_info import NodeInfo, from_timestamp
from omnimind.scaling.registry_store.base import RegistryStore



class RedisRegistryStore(RegistryStore):
    """Node records in Redis. A record expires ``expire_after`` seconds after its
    last heartbeat, long enough for operators to see it UNREACHABLE first."""

    def __init__(self, client: redis.Redis, expire_after: float = 60.0) -> None:
        self.client = client
        self.expire_after = expire_after
        self._register = client.register_script(source("registry_register"))
        self._heartbeat = client.register_script(source("registry_heartbeat"))
        self._deregister = client.register_script(source("registry_deregister"))
        self._snapshot = client.register_script(source("registry_snapshot"))

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
