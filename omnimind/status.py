"""``omnimind status``: one screen describing the farm, read from Redis."""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import redis

from omnimind import keys
from omnimind.config import QUEUES, Settings
from omnimind.scaling.node import NodeInfo
from omnimind.scaling.registry import ServiceRegistry


@dataclass
class FarmStatus:
    nodes: list[NodeInfo]
    queue_depths: dict[str, int]
    experience_samples: int
    learners: list[dict]
    raft_members: list[dict]

    def as_dict(self) -> dict:
        return {
            "nodes": [
                {
                    "node_id": n.node_id,
                    "status": n.status.value,
                    "capabilities": n.capabilities,
                    "hardware": n.hardware,
                    "load_factor": n.load_factor,
                    "latency_ms": n.latency_ms,
                    "concurrency": n.concurrency,
                    "last_heartbeat": n.last_heartbeat.isoformat(),
                }
                for n in self.nodes
            ],
            "queues": self.queue_depths,
            "experience_samples": self.experience_samples,
            "learners": self.learners,
            "raft": self.raft_members,
        }


def read_status(settings: Settings, client: redis.Redis | None = None) -> FarmStatus:
    """Registry, queue depths and experience size; ``client`` talks to OmniMind's Redis."""
    client = client if client is not None else redis.Redis.from_url(settings.redis_url)
    broker = client if settings.broker_url == settings.redis_url else redis.Redis.from_url(settings.broker_url)
    nodes = asyncio.run(ServiceRegistry.from_settings(settings, client=client).refresh())
    return FarmStatus(
        sorted(nodes.values(), key=lambda n: n.node_id),
        queue_depths(broker),
        client.xlen(keys.EXPERIENCE),
        _json_values(client, keys.learner_status_pattern()),
        _json_values(client, keys.raft_member_pattern()),
    )


def queue_depths(broker: redis.Redis) -> dict[str, int]:
    """Messages waiting per capability queue (one round trip)."""
    pipe = broker.pipeline(transaction=False)
    for queue in QUEUES:
        for name in keys.broker_queue_lists(queue):
            pipe.llen(name)
    lengths = pipe.execute()
    steps = len(keys.broker_queue_lists(QUEUES[0]))
    return {queue: sum(lengths[i * steps : (i + 1) * steps]) for i, queue in enumerate(QUEUES)}


def _json_values(client: redis.Redis, pattern: str) -> list[dict]:
    names = sorted(client.scan_iter(match=pattern, count=100))
    return [json.loads(raw) for raw in client.mget(names) if raw] if names else []


def render(status: FarmStatus) -> str:
    lines = [f"{'NODE':<28} {'STATUS':<12} {'LOAD':>5} {'LAT ms':>7}  {'CAPABILITIES':<24} HARDWARE"]
    for n in status.nodes:
        hw = f"{n.hardware.get('cpu_count', '?')} cpu, {n.hardware.get('memory_gb', '?')} GB"
        gpu = n.hardware.get("gpu")
        if gpu:
            hw += f", {gpu['name']} {gpu['free_gb']:.1f}/{gpu['total_gb']:.1f} GB free"
        lines.append(
            f"{n.node_id:<28} {n.status.value:<12} {n.load_factor:>5.2f} {n.latency_ms:>7.1f}  "
            f"{','.join(n.capabilities):<24} {hw}"
        )
    if not status.nodes:
        lines.append("(no nodes registered)")
    lines.append("")
    lines.append("QUEUES  " + "  ".join(f"{q}={d}" for q, d in status.queue_depths.items()))
    lines.append(f"EXPERIENCE  {status.experience_samples} samples")
    if status.raft_members:
        leaders = [m for m in status.raft_members if m["state"] == "leader"]
        head = max(leaders, key=lambda m: m["term"]) if leaders else None
        lines.append(
            f"RAFT  leader {head['member_id']} term {head['term']} commit {head['commit_index']}" if head
            else "RAFT  no leader"
        )
        for m in status.raft_members:
            lines.append(
                f"  {m['member_id']:<8} {m['state']:<10} term {m['term']:<5} commit {m['commit_index']:<7} "
                f"applied {m['last_applied']}"
            )
    for learner in status.learners:
        lines.append(
            f"LEARNER {learner['node_id']}  samples={learner['samples']} batches={learner['batches']} "
            f"lr={learner['learning_rate']:g} drifts={learner['drift_events']} replay={learner['replay_size']}"
        )
        for version, window in learner["prequential"].items():
            acc = window.get("accuracy")
            lines.append(
                f"  v{version}: prequential loss {window['loss']:.4f} over {window['count']} samples"
                + (f", accuracy {acc:.3f}" if acc is not None else "")
            )
    return "\n".join(lines)
