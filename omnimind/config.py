"""Typed settings, read once from ``OMNIMIND_*`` environment variables.

Every knob of the farm lives here so that a Procfile line, a systemd unit and a
test fixture all configure OmniMind the same way.

>>> s = Settings.from_env({"OMNIMIND_BROKER_URL": "redis://10.0.0.5:6379/0"})
>>> s.broker_url, s.redis_url
('redis://10.0.0.5:6379/0', 'redis://10.0.0.5:6379/0')
>>> s.limits["inference"].hard < s.visibility_timeout
True

On a RabbitMQ broker OmniMind's own keys (and, by default, the results) live in
the Redis named by ``OMNIMIND_REDIS_URL``, which must then be set:

>>> s = Settings.from_env({"OMNIMIND_BROKER_URL": "amqp://guest:guest@rabbit:5672//",
...                        "OMNIMIND_REDIS_URL": "redis://10.0.0.5:6379/2"})
>>> s.broker_is_amqp, s.result_backend
(True, 'redis://10.0.0.5:6379/2')
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

from omnimind.errors import ConfigError

#: Capability queues. A worker's ``-Q`` list is its capability list.
QUEUES = ("inference", "training", "memory", "agents")

#: Drift detectors of ``omnimind.learning`` (named here so settings need no torch import).
DRIFT_METHODS = ("cusum", "adwin", "page_hinkley", "kswin")

#: Worker log formats (``OMNIMIND_LOG_FORMAT``).
LOG_FORMATS = ("console", "json")

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
#: URL schemes of a RabbitMQ (AMQP 0-9-1) broker, as kombu names them.
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp", "librabbitmq")
#: URL schemes ``redis.Redis.from_url`` accepts: OmniMind's own keys need one.
REDIS_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_MODEL_FACTORY = "omnimind.models.factory:default_mlp"


@dataclass(frozen=True)
class TimeLimit:
    """Soft and hard time limits (seconds) of the tasks of one queue."""

    soft: float
    hard: float


_DEFAULT_LIMITS = {
    "inference": TimeLimit(soft=30, hard=60),
    "training": TimeLimit(soft=1500, hard=1800),
    "memory": TimeLimit(soft=60, hard=120),
    "agents": TimeLimit(soft=300, hard=600),
}


@dataclass(frozen=True)
class Settings:
    broker_url: str = DEFAULT_BROKER_URL
    result_backend: str = DEFAULT_BROKER_URL
    #: Redis holding OmniMind's own keys (registry, experience, models).
    redis_url: str = DEFAULT_BROKER_URL
    #: Overrides the Celery node name as the registry id when set.
    node_id: str | None = None
    #: Extra capabilities advertised besides the consumed queues (e.g. "coordinator").
    extra_capabilities: tuple[str, ...] = ()
    model_factory: str = DEFAULT_MODEL_FACTORY
    model_input_size: int = 16
    model_seed: int = 0
    #: "auto" (CUDA when present), "cpu" or "cuda[:N]".
    device: str = "auto"
    max_batch_size: int = 1024
    #: Dynamic batching of concurrent predicts in one process (``OMNIMIND_BATCHING``): at most
    #: ``batch_max_size`` examples per forward pass, waiting at most ``batch_max_delay_ms`` for a
    #: batch to fill, and only under load (a lone request runs at once). Off: one pass per request.
    batching: bool = True
    batch_max_size: int = 64
    batch_max_delay_ms: float = 2.0
    heartbeat_interval: float = 2.0
    #: Longest wait (s) between two attempts to reach the broker or Redis again after losing
    #: it: the worker's consumer, the result backend, OmniMind's clients (omnimind.reconnect).
    reconnect_interval: float = 0.5
    #: Load factor at or above which a node reports DEGRADED.
    degraded_load: float = 0.9
    #: Seconds before an unacknowledged message is redelivered. Must exceed every hard limit.
    visibility_timeout: float = 3600.0
    #: Seconds between sweeps that redeliver messages of workers that died.
    restore_interval: float = 10.0
    result_expires: float = 86400.0
    limits: Mapping[str, TimeLimit] = field(default_factory=lambda: dict(_DEFAULT_LIMITS))
    #: Maximum length of the experience stream (approximate trimming).
    experience_maxlen: int = 100_000
    #: Online learner (training workers): SGD learning rate, loss ("mse" or
    #: "cross_entropy"), drift method, replay capacity, checkpoint period in batches.
    learning_rate: float = 0.01
    learning_loss: str = "mse"
    drift_method: str = "cusum"
    replay_capacity: int = 10_000
    checkpoint_every: int = 20
    #: The freshness path: the learner (challenger) replaces the served model (champion)
    #: when it is better on the newest ``challenger_window`` samples of live feedback
    #: (loss <= ``challenger_tolerance`` x the champion's), checked every
    #: ``challenger_check_every`` samples and at once after a drift, at most once per
    #: ``challenger_min_interval`` seconds. "leader": a learner publishes when its worker
    #: leads the Raft group; "off": only retrains publish.
    challenger_publish: str = "leader"
    #: Torch intra-op threads of a training worker: its mini-batches are small, and on a
    #: busy machine more threads than one only contend (6x slower measured on 2 loaded cores).
    learner_torch_threads: int = 1
    challenger_window: int = 256
    challenger_check_every: int = 128
    challenger_tolerance: float = 0.98
    challenger_min_interval: float = 1.0
    #: Raft coordinator membership (all empty: this worker is not a member).
    #: ``raft_peers`` is ``id=host:port,...`` including this member.
    raft_id: str = ""
    raft_peers: str = ""
    raft_secret: str = ""
    #: Where this member's term, vote and log live; empty: ``<data_dir>/raft/<raft_id>``.
    raft_data_dir: str = ""
    #: Seconds between scheduled retrains (the seed's 300 s).
    retrain_interval: float = 300.0
    #: Schedule entry dispatched early when a learner reports concept drift ("" turns
    #: that off), and the least time between two of its runs when drifts come in storms.
    drift_retrain_entry: str = "retrain"
    drift_retrain_min_gap: float = 30.0
    #: Samples of the experience window a retrain reads (newest first).
    retrain_window: int = 10_000
    #: Longest a worker goes without re-reading the active model version (pub/sub may drop notices).
    model_poll_interval: float = 1.0
    #: Model versions kept in the store for rollback.
    model_keep_versions: int = 10
    task_events: bool = True
    metrics_port: int = 0
    #: Interface the workers' /metrics servers bind ("0.0.0.0": every interface, for a
    #: Prometheus on another host; ``omnimind up`` binds its farm's to 127.0.0.1).
    metrics_address: str = "0.0.0.0"
    data_dir: str = ".omnimind"
    flower_user: str = "admin"
    flower_password: str = ""
    #: A file holding the Flower password (``omnimind flower``; ``omnimind up`` makes one).
    flower_password_file: str = ""
    #: Qdrant server URL for vector memory; empty: embedded local mode under ``qdrant_path``.
    qdrant_url: str = ""
    qdrant_api_key: str = ""
    #: Embedded Qdrant storage folder; empty: ``<data_dir>/qdrant``.
    qdrant_path: str = ""
    #: Largest JSON-encoded payload (bytes) one memory point may carry.
    memory_max_payload_bytes: int = 65536
    #: Seconds an agent waits for one memory/inference subtask (capped by its own deadline).
    agent_subtask_timeout: float = 30.0
    #: Record per-task metrics in workers (signal handlers) and serve /metrics; 0 turns both off.
    metrics_enabled: bool = True
    #: Parent of the per-worker prometheus-client multiprocess folders; empty: ``<data_dir>/metrics``.
    metrics_dir: str = ""
    #: Worker log lines: "console" (human-readable) or "json" (one object per line).
    log_format: str = "console"

    @property
    def broker_is_amqp(self) -> bool:
        """Whether the broker is RabbitMQ (AMQP): quorum queues, no Redis broker lists."""
        return is_amqp_url(self.broker_url)

    @property
    def memory_path(self) -> str:
        """Where embedded (local mode) Qdrant keeps its files."""
        return self.qdrant_path or os.path.join(self.data_dir, "qdrant")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        get = _Reader(env)
        broker = get.str("BROKER_URL", DEFAULT_BROKER_URL)
        limits = {}
        for queue, default in _DEFAULT_LIMITS.items():
            hard = get.float(f"{queue.upper()}_TIME_LIMIT", default.hard, minimum=0.001)
            soft = get.float(f"{queue.upper()}_SOFT_TIME_LIMIT", min(default.soft, hard * 0.9), minimum=0.001)
            if soft >= hard:
                raise ConfigError(f"OMNIMIND_{queue.upper()}_SOFT_TIME_LIMIT ({soft}) must be below the hard limit ({hard})")
            limits[queue] = TimeLimit(soft=soft, hard=hard)
        settings = cls(
            broker_url=broker,
            # A Redis broker keeps the results too; with RabbitMQ they go to OmniMind's Redis.
            result_backend=get.str("RESULT_BACKEND", broker if _scheme(broker) in REDIS_SCHEMES else get.str("REDIS_URL", broker)),
            redis_url=get.str("REDIS_URL", broker),
            node_id=get.str("NODE_ID", "") or None,
            extra_capabilities=tuple(c for c in get.str("CAPABILITIES", "").split(",") if c.strip()),
            model_factory=get.str("MODEL_FACTORY", DEFAULT_MODEL_FACTORY),
            model_input_size=get.int("MODEL_INPUT_SIZE", 16, minimum=1),
            model_seed=get.int("MODEL_SEED", 0),
            device=get.str("DEVICE", "auto"),
            max_batch_size=get.int("MAX_BATCH_SIZE", 1024, minimum=1),
            batching=get.bool("BATCHING", True),
            batch_max_size=get.int("BATCH_MAX_SIZE", 64, minimum=1),
            batch_max_delay_ms=get.float("BATCH_MAX_DELAY_MS", 2.0, minimum=0.0),
            heartbeat_interval=get.float("HEARTBEAT_INTERVAL", 2.0, minimum=0.05),
            reconnect_interval=get.float("RECONNECT_INTERVAL", 0.5, minimum=0.01),
            degraded_load=get.float("DEGRADED_LOAD", 0.9, minimum=0.0),
            visibility_timeout=get.float("VISIBILITY_TIMEOUT", 3600.0, minimum=1.0),
            restore_interval=get.float("RESTORE_INTERVAL", 10.0, minimum=0.1),
            result_expires=get.float("RESULT_EXPIRES", 86400.0, minimum=1.0),
            limits=limits,
            experience_maxlen=get.int("EXPERIENCE_MAXLEN", 100_000, minimum=1),
            learning_rate=get.float("LEARNING_RATE", 0.01, minimum=0.0),
            learning_loss=get.str("LEARNING_LOSS", "mse"),
            drift_method=get.str("DRIFT_METHOD", "cusum"),
            replay_capacity=get.int("REPLAY_CAPACITY", 10_000, minimum=16),
            checkpoint_every=get.int("CHECKPOINT_EVERY", 20, minimum=1),
            challenger_publish=get.str("CHALLENGER_PUBLISH", "leader"),
            learner_torch_threads=get.int("LEARNER_TORCH_THREADS", 1, minimum=1),
            challenger_window=get.int("CHALLENGER_WINDOW", 256, minimum=1),
            challenger_check_every=get.int("CHALLENGER_CHECK_EVERY", 128, minimum=1),
            challenger_tolerance=get.float("CHALLENGER_TOLERANCE", 0.98, minimum=0.0),
            challenger_min_interval=get.float("CHALLENGER_MIN_INTERVAL", 1.0, minimum=0.0),
            raft_id=get.str("RAFT_ID", ""),
            raft_peers=get.str("RAFT_PEERS", ""),
            raft_secret=get.str("RAFT_SECRET", ""),
            raft_data_dir=get.str("RAFT_DATA_DIR", ""),
            retrain_interval=get.float("RETRAIN_INTERVAL", 300.0, minimum=0.1),
            retrain_window=get.int("RETRAIN_WINDOW", 10_000, minimum=1),
            drift_retrain_entry=get.str("DRIFT_RETRAIN_ENTRY", "retrain"),
            drift_retrain_min_gap=get.float("DRIFT_RETRAIN_MIN_GAP", 30.0, minimum=0.0),
            model_poll_interval=get.float("MODEL_POLL_INTERVAL", 1.0, minimum=0.01),
            model_keep_versions=get.int("MODEL_KEEP_VERSIONS", 10, minimum=1),
            task_events=get.bool("TASK_EVENTS", True),
            metrics_port=get.int("METRICS_PORT", 0, minimum=0),
            metrics_address=get.str("METRICS_ADDRESS", "0.0.0.0"),
            data_dir=get.str("DATA_DIR", ".omnimind"),
            flower_user=get.str("FLOWER_USER", "admin"),
            flower_password=get.str("FLOWER_PASSWORD", ""),
            flower_password_file=get.str("FLOWER_PASSWORD_FILE", ""),
            qdrant_url=get.str("QDRANT_URL", ""),
            qdrant_api_key=get.str("QDRANT_API_KEY", ""),
            qdrant_path=get.str("QDRANT_PATH", ""),
            memory_max_payload_bytes=get.int("MEMORY_MAX_PAYLOAD_BYTES", 65536, minimum=1),
            agent_subtask_timeout=get.float("AGENT_SUBTASK_TIMEOUT", 30.0, minimum=0.01),
            metrics_enabled=get.bool("METRICS", True),
            metrics_dir=get.str("METRICS_DIR", ""),
            log_format=get.str("LOG_FORMAT", "console").lower(),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        if _scheme(self.redis_url) not in REDIS_SCHEMES:
            # The registry, experience, models and fences are Redis keys, whatever the broker.
            raise ConfigError(
                f"OMNIMIND_REDIS_URL must be a redis://, rediss:// or unix:// URL, not {_scheme(self.redis_url)}://... "
                "(it defaults to OMNIMIND_BROKER_URL: with a RabbitMQ broker, set it to the Redis for OmniMind's keys)"
            )
        longest = max(limit.hard for limit in self.limits.values())
        if self.visibility_timeout <= longest:
            # Otherwise Redis hands a still-running task to a second worker.
            raise ConfigError(
                f"OMNIMIND_VISIBILITY_TIMEOUT ({self.visibility_timeout}s) must exceed the longest "
                f"hard time limit ({longest}s)"
            )
        if self.learning_loss not in ("mse", "cross_entropy"):
            raise ConfigError(f"OMNIMIND_LEARNING_LOSS must be mse or cross_entropy, not {self.learning_loss!r}")
        if self.challenger_publish not in ("leader", "off"):
            raise ConfigError(f"OMNIMIND_CHALLENGER_PUBLISH must be 'leader' or 'off', not {self.challenger_publish!r}")
        if self.drift_method not in DRIFT_METHODS:
            raise ConfigError(f"OMNIMIND_DRIFT_METHOD must be one of {list(DRIFT_METHODS)}, not {self.drift_method!r}")
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"OMNIMIND_DEVICE must be auto, cpu or cuda[:N], not {self.device!r}")
        if self.qdrant_url and not self.qdrant_url.startswith(("http://", "https://")):
            raise ConfigError(f"OMNIMIND_QDRANT_URL must be an http:// or https:// URL, not {self.qdrant_url!r}")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"OMNIMIND_LOG_FORMAT must be one of {list(LOG_FORMATS)}, not {self.log_format!r}")


def _scheme(url: str) -> str:
    return url.partition("://")[0].lower()


def is_amqp_url(url: str) -> bool:
    """Whether a broker URL names RabbitMQ (the first one of a ``;`` failover list).

    >>> is_amqp_url("amqp://guest@rabbit//"), is_amqp_url("redis://127.0.0.1:6379/0")
    (True, False)
    """
    return _scheme(url) in AMQP_SCHEMES


class _Reader:
    """Reads ``OMNIMIND_<NAME>`` with a typed error naming the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def str(self, name: str, default: str) -> str:
        return self.env.get(f"OMNIMIND_{name}", default).strip()

    def int(self, name: str, default: int, minimum: int | None = None) -> int:
        return self._number(name, default, int, minimum)

    def float(self, name: str, default: float, minimum: float | None = None) -> float:
        return self._number(name, default, float, minimum)

    def bool(self, name: str, default: bool) -> bool:
        raw = self.env.get(f"OMNIMIND_{name}")
        if raw is None or raw.strip() == "":
            return default
        value = raw.strip().lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"OMNIMIND_{name} must be a boolean (1/0, true/false), not {raw!r}")

    def _number(self, name, default, kind, minimum):
        raw = self.env.get(f"OMNIMIND_{name}")
        if raw is None or raw.strip() == "":
            return default
        try:
            value = kind(raw)
        except ValueError:
            raise ConfigError(f"OMNIMIND_{name} must be a{'n integer' if kind is int else ' number'}, not {raw!r}") from None
        if minimum is not None and value < minimum:
            raise ConfigError(f"OMNIMIND_{name} must be at least {minimum}, not {value}")
        return value
