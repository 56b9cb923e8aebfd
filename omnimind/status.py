"""``omnimind status``: one screen describing the farm, read from Redis."""
from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass

import redis

from omnimind import keys
from omnimind.config import QUEUES, Settings
from omnimind.scaling.node import NodeInfo
from omnimind.scaling.registry import ServiceRegistry


@dataclass
class FarmStatus:
    """What ``omnimind status`` shows; :func:`read_status` fills it, :func:`render` prints it.

    >>> status = FarmStatus([], {"inference": 0}, 0, [{"node_id": "t@h", "samples": 32, "prequential":
    ...     {"0": {"count": 32, "loss": 0.5}, "1": {"count": 0, "loss": float("nan")}}}], [])
    >>> render(status).splitlines()[-1]  # v1, not scored yet, is left out
    '  v0: prequential loss 0.5000 over 32 samples'
    """

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


def render(status: FarmStatus, now: float | None = None) -> str:
    """The status screen; ``now`` (unix seconds) dates the learners' "… ago" (default: the clock)."""
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
        lines.extend(render_learner(learner, now))
    return "\n".join(lines)


def render_learner(learner: dict, now: float | None = None) -> list[str]:
    """A learner's lines. Fields may be missing (an older or newer learner wrote
    them): what is absent is left out, never guessed."""
    get = learner.get
    rate = _num(get("learning_rate"))
    lines = [
        f"LEARNER {get('node_id', '?')}  samples={get('samples', '?')} batches={get('batches', '?')} "
        f"lr={'?' if rate is None else format(rate, 'g')} drifts={get('drift_events', '?')} "
        f"replay={get('replay_size', '?')}"
    ]
    prequential = get("prequential")
    for version, window in (prequential.items() if isinstance(prequential, dict) else ()):
        if not isinstance(window, dict):
            continue
        count, loss = _num(window.get("count")), _num(window.get("loss"))
        # A version the learner has not scored yet (fresh after a restart or a swap)
        # has no loss to show: a "nan over 0 samples" line would be a phantom.
        if not count or loss is None:
            continue
        acc = _num(window.get("accuracy"))
        lines.append(
            f"  v{version}: prequential loss {loss:.4f} over {int(count)} samples"
            + (f", accuracy {acc:.3f}" if acc is not None else "")
        )
    freshness = get("freshness")
    if isinstance(freshness, dict):
        lines.extend(_freshness_lines(freshness, time.time() if now is None else now))
    return lines


def _freshness_lines(f: dict, now: float) -> list[str]:
    parts = []
    version, loss = _int(f.get("champion_version")), _num(f.get("champion_loss"))
    if version is not None or loss is not None:
        parts.append(
            "champion" + (f" v{version}" if version is not None else "") + (f" loss {loss:.4f}" if loss is not None else "")
        )
    challenger, samples = _num(f.get("challenger_loss")), _int(f.get("window_samples"))
    window = f"({samples} samples)" if samples is not None else ""
    if challenger is not None:
        parts.append(f"challenger loss {challenger:.4f}" + (f" {window}" if window else ""))
    elif window:
        parts.append(window)
    publication = f.get("last_publication")
    if isinstance(publication, dict):
        version, reason = _int(publication.get("version")), publication.get("reason")
        text = "last publication" + (f" v{version}" if version is not None else "")
        text += f" ({reason})" if isinstance(reason, str) and reason else ""
        text += _ago(publication.get("at"), now)
        parts.append(text)
    lag = _num(f.get("lag_s"))
    if lag is not None:
        parts.append(f"lag {lag:.1f}s")
    drift_at = _int(f.get("drift_at_sample"))
    if drift_at is not None:
        parts.append(f"drift at sample {drift_at}")
    if f.get("publishing") is False:
        parts.append("publishing off")
    lines = ["  live window: " + " | ".join(parts)] if parts else []
    refusals = f.get("refusals")
    counts = {str(k): _int(v) for k, v in refusals.items()} if isinstance(refusals, dict) else {}
    counts = {k: v for k, v in counts.items() if v}
    last = f.get("last_refusal")
    if counts or isinstance(last, dict):
        text = "  refusals: " + (", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none counted")
        if isinstance(last, dict) and isinstance(last.get("reason"), str):
            text += f" (last: {last['reason']}{_ago(last.get('at'), now)})"
        lines.append(text)
    return lines


def _num(value) -> float | None:
    """A JSON number as a float; None for null, a missing field, bools and strings."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _int(value) -> int | None:
    number = _num(value)
    return int(number) if number is not None and math.isfinite(number) else None


def _ago(at, now: float) -> str:
    """`` 2.1s ago`` (or minutes, hours) for a unix time; empty when there is none."""
    at = _num(at)
    if at is None or not math.isfinite(at):
        return ""
    age = max(0.0, now - at)
    if age < 60:
        return f" {age:.1f}s ago"
    if age < 3600:
        return f" {age / 60:.0f}m ago"
    return f" {age / 3600:.1f}h ago"
