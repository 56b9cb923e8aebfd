"""``omnimind status``: one screen describing the farm, read from Redis (and the
queue depths from the broker, Redis or RabbitMQ)."""
from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass
from typing import Iterable

import redis

from omnimind import keys
from omnimind.config import Settings
from omnimind.queue_depths import BrokerQueueDepths, queue_depths
from omnimind.redis_client import redis_client
from omnimind.models.metadata import ServedVersion
from omnimind.scaling.autoscale import queue_signals
from omnimind.scaling.node_info import NodeInfo, NodeStatus
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
    #: Who serves which model version (:func:`read_serving`); None: not read.
    serving: dict | None = None

    def scaling(self) -> dict:
        """Backlog and utilisation per capability queue (:func:`omnimind.scaling.autoscale.queue_signals`)."""
        return queue_signals(self.queue_depths, self.nodes)

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
                    "queue_load": n.queue_load,
                    "last_heartbeat": n.last_heartbeat.isoformat(),
                }
                for n in self.nodes
            ],
            "queues": self.queue_depths,
            # The autoscaling signal per capability queue (omnimind.scaling.autoscale).
            "scaling": {q: s.as_dict() for q, s in self.scaling().items()},
            "experience_samples": self.experience_samples,
            "learners": self.learners,
            "raft": self.raft_members,
            "serving": self.serving,
        }


def read_status(settings: Settings, client: redis.Redis | None = None) -> FarmStatus:
    """Registry, queue depths and experience size; ``client`` talks to OmniMind's Redis."""
    client = client if client is not None else redis_client(settings.redis_url, settings.sentinel_master)
    if settings.broker_url == settings.redis_url:
        depths = queue_depths(client)
    else:
        with BrokerQueueDepths(settings.broker_url) as broker:
            depths = broker.read()
    nodes = asyncio.run(ServiceRegistry.from_settings(settings, client=client).refresh())
    return FarmStatus(
        sorted(nodes.values(), key=lambda n: n.node_id),
        depths,
        client.xlen(keys.EXPERIENCE),
        _json_values(client, keys.learner_status_pattern()),
        list(raft_members(client).values()),
    )


def raft_members(client: redis.Redis) -> dict[str, dict]:
    """The status each running Raft member last published (``workers/raft_status.py``), by member id."""
    return {status["member_id"]: status for status in _json_values(client, keys.raft_member_pattern())}


def newest_leader(statuses: Iterable[dict]) -> dict | None:
    """Of members' published statuses, the one that leads in the newest term (None: none leads).

    >>> newest_leader([{"member_id": "n1", "state": "leader", "term": 3},
    ...                {"member_id": "n2", "state": "leader", "term": 4}])["member_id"]
    'n2'
    """
    leaders = [s for s in statuses if s["state"] == "leader"]
    return max(leaders, key=lambda s: s["term"]) if leaders else None


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
    busy = [s for s in status.scaling().values() if s.capacity or s.backlog]
    if busy:
        lines.append("SCALING  " + "  ".join(f"{s.queue}: backlog {s.backlog}, utilisation {s.utilisation:.2f} "
                                             f"of {s.capacity} slots" for s in busy))
    lines.append(f"EXPERIENCE  {status.experience_samples} samples")
    if status.serving:
        lines.extend(render_serving(status.serving))
    if status.raft_members:
        head = newest_leader(status.raft_members)
        lines.append(
            f"RAFT  leader {head['member_id']} term {head['term']} commit {head['commit_index']}"
            f" voters {','.join(head.get('voters', []))}"
            + (f" learners {','.join(head['learners'])}" if head.get("learners") else "") if head
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


#: A served-version report older than this is left out: a serving process re-reports every
#: 10 s when nothing changes (workers.model_sync.REPORT_EVERY_S), so it missed three.
SERVING_MAX_AGE_S = 30.0


def read_serving(client: redis.Redis, nodes: list[NodeInfo], model: str = "default",
                 now: float | None = None) -> dict:
    """What each serving process reports serving (``keys.model_served``), and the active version."""
    raw = client.hgetall(keys.model_served(model))
    active = client.get(keys.model_active(model))
    reports = [r for r in (ServedVersion.from_json(v) for v in raw.values()) if r is not None]
    return model_serving(reports, None if active is None else int(active), nodes, model,
                         time.time() if now is None else now)


def model_serving(reports: list[ServedVersion], active: int | None, nodes: list[NodeInfo], model: str = "default",
                  now: float = 0.0, max_age: float = SERVING_MAX_AGE_S) -> dict:
    """The reports of registered, reachable nodes younger than ``max_age``, and whether they disagree.

    >>> node = lambda n: NodeInfo(n, "127.0.0.1", 0, ["inference"])
    >>> reports = [ServedVersion("a@h", 7, 7, at=99.0), ServedVersion("b@h", 6, 7, refused=7, reason="checksum", at=99.0),
    ...            ServedVersion("gone@h", 5, 7, at=99.0), ServedVersion("c@h", 4, 7, at=10.0)]
    >>> serving = model_serving(reports, 7, [node("a@h"), node("b@h"), node("c@h")], now=100.0)
    >>> serving["versions"], serving["mixed"]
    ({'6': ['b@h'], '7': ['a@h']}, True)
    """
    live = {n.node_id for n in nodes if n.status != NodeStatus.UNREACHABLE}
    current = sorted((r for r in reports if r.node_id in live and now - r.at <= max_age), key=lambda r: r.node_id)
    versions: dict[str, list[str]] = {}
    for report in sorted(current, key=lambda r: r.version):
        versions.setdefault(str(report.version), []).append(report.node_id)
    return {
        "model": model,
        "active": active,
        "versions": versions,
        "mixed": len(versions) > 1,
        "nodes": [
            {"node_id": r.node_id, "version": r.version, "active": r.active, "refused": r.refused,
             "reason": r.reason or None, "fallback": r.fallback, "age_s": round(max(0.0, now - r.at), 1)}
            for r in current
        ],
    }


def render_serving(serving: dict) -> list[str]:
    """The MODEL line: the versions served and by whom; MIXED when serving processes disagree.

    >>> render_serving({"model": "default", "active": 7, "versions": {"7": ["a@h", "b@h"]}, "mixed": False, "nodes": []})
    ['MODEL default  serving v7 on 2 nodes (active v7)']
    >>> render_serving({"model": "default", "active": 7, "versions": {"6": ["b@h"], "7": ["a@h"]}, "mixed": True,
    ...     "nodes": [{"node_id": "b@h", "version": 6, "refused": 7, "reason": "checksum"}]})
    ['MODEL default  MIXED: v6 on b@h (refused v7: checksum) | v7 on a@h (active v7)']
    """
    active = serving.get("active")
    tail = f" (active v{active})" if active is not None else ""
    versions = serving.get("versions") or {}
    head = f"MODEL {serving.get('model', 'default')}  "
    if not versions:
        return [head + "no serving process has reported" + tail] if active is not None else []
    if not serving.get("mixed"):
        ((version, nodes),) = versions.items()
        return [head + f"serving v{version} on {len(nodes)} node{'s' if len(nodes) != 1 else ''}" + tail]
    refusals = {n["node_id"]: n for n in serving.get("nodes", []) if n.get("refused") is not None}

    def who(node_id):
        refused = refusals.get(node_id)
        if refused is None:
            return node_id
        return f"{node_id} (refused v{refused['refused']}" + (f": {refused['reason']}" if refused.get("reason") else "") + ")"

    groups = [f"v{version} on {', '.join(who(n) for n in nodes)}" for version, nodes in versions.items()]
    return [head + "MIXED: " + " | ".join(groups) + tail]


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
