"""Typed settings, read once from ``OMNIMIND_*`` environment variables.

Every knob of the farm lives here so that a Procfile line, a systemd unit and a
test fixture all configure OmniMind the same way. This is the one module that reads
``OMNIMIND_*`` variables (tests/unit/test_unit_config.py fails on a read elsewhere), and
it reads them only when asked: :func:`get_settings` reads the environment on its first
call and caches the result (:func:`reset_settings` forgets it); ``settings`` is a lazy
stand-in for it. Each vocabulary a setting chooses from (queues, drift methods, log
formats; the losses arrive with the learning rework) is defined here once.

Why a frozen dataclass with field metadata (:func:`setting`), not pydantic-settings:
the pure cores import this module (the learning core takes ``DRIFT_METHODS`` from it),
so it must stay light and dependency-free (pydantic would add its import to every core);
the rules that span fields (the result backend and the Redis follow the broker, the
visibility timeout must exceed every hard limit, the per-queue limit pairs) are plain
code in :meth:`Settings.from_env` and :meth:`Settings.validate`; and every error is a
``ConfigError`` that names the variable, which the CLI prints as is. One field, one
line: its variable, default, type and minimum.

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

Behind Redis Sentinel one ``sentinel://`` URL serves all three, and fence-advancing
writes then wait for one replica (``OMNIMIND_REDIS_MIN_REPLICAS``, omnimind.replication):

>>> s = Settings.from_env({"OMNIMIND_BROKER_URL": "sentinel://10.0.0.5:26379;sentinel://10.0.0.6:26379"})
>>> s.redis_url == s.result_backend == s.broker_url, s.sentinel_master, s.redis_min_replicas
(True, 'mymaster', 1)
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

from omnimind.errors import ConfigError

#: Capability queues. A worker's ``-Q`` list is its capability list.
QUEUES = ("inference", "training", "memory", "agents")

#: Drift detectors of ``omnimind.learning`` (their one home: settings validate them without importing torch).
DRIFT_METHODS = ("cusum", "adwin", "page_hinkley", "kswin")

#: Losses of ``omnimind.learning.losses`` (their one home, as for drift methods).
LOSSES = ("mse", "huber", "cross_entropy", "bce")
#: Model heads and the losses each takes, its default first (``omnimind.learning.spec``; their one home).
HEAD_LOSSES = {"regression": ("mse", "huber"), "binary": ("bce", "cross_entropy"), "multiclass": ("cross_entropy",)}
HEADS = tuple(HEAD_LOSSES)
#: What a classifier does with an unseen label (``OMNIMIND_MODEL_LABEL_POLICY``).
LABEL_POLICIES = ("refuse", "grow")
#: What the challenger gate compares (``OMNIMIND_CHALLENGER_METRIC``).
CHALLENGER_METRICS = ("loss", "error_rate")


def model_head(head: str, loss: str) -> str:
    """The head a farm declares: ``OMNIMIND_LEARNING_LOSS=cross_entropy`` (or ``bce``) alone,
    the way classifiers were declared before heads existed, still means a classifier head."""
    if head == "regression" and loss in ("cross_entropy", "bce"):
        return "multiclass" if loss == "cross_entropy" else "binary"
    return head


#: Optimizers of the online learner (``OMNIMIND_LEARNING_OPTIMIZER``).
OPTIMIZERS = ("sgd", "adam", "adamw")

#: Worker log formats (``OMNIMIND_LOG_FORMAT``).
LOG_FORMATS = ("console", "json")

#: The shortest Raft shared secret a member accepts (``OMNIMIND_RAFT_SECRET``; ``omnimind up`` makes one).
MIN_RAFT_SECRET_BYTES = 16

#: Raft timings (milliseconds), the defaults of both the settings and ``RaftNode``: a tick, a
#: leader's heartbeat period, and the least election timeout (drawn from ``[t, 2t)``).
RAFT_TICK_MS = 10.0
RAFT_HEARTBEAT_MS = 50.0
RAFT_ELECTION_TIMEOUT_MS = 150.0

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
#: URL schemes of a RabbitMQ (AMQP 0-9-1) broker, as kombu names them.
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp", "librabbitmq")
#: URL schemes of a Redis for OmniMind's own keys: ``redis.Redis.from_url``'s, and
#: ``sentinel://`` (the sentinels of a master, omnimind.sentinel).
REDIS_SCHEMES = ("redis", "rediss", "unix", "sentinel")
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


def setting(env: str, default: Any, *, minimum: float | None = None, kind: type | None = None,
            convert: Callable[[Any], Any] | None = None) -> Any:
    """A settings field read from ``OMNIMIND_<env>``: its one default, its type (that of the
    default unless given), the least value a number may take, and a conversion of the read value."""
    return field(default=default, metadata={
        "env": env, "kind": kind or type(default), "minimum": minimum, "convert": convert,
    })


def _empty_is_none(value: str) -> str | None:
    return value or None


def _comma_list(value: str) -> tuple[str, ...]:
    return tuple(c for c in value.split(",") if c.strip())


def _labels(value: str) -> tuple[str | int | bool, ...]:
    """Class labels: a JSON list (strings, integers or booleans) or comma-separated strings."""
    value = value.strip()
    if value.startswith("["):
        try:
            labels = json.loads(value)
        except ValueError as exc:
            raise ConfigError(f"OMNIMIND_MODEL_LABELS is not a JSON list: {exc}") from None
        if not isinstance(labels, list) or not all(isinstance(v, (str, int)) for v in labels):
            raise ConfigError("OMNIMIND_MODEL_LABELS must list strings or integers")
        return tuple(labels)
    return tuple(c.strip() for c in value.split(",") if c.strip())


@dataclass(frozen=True)
class Settings:
    broker_url: str = setting("BROKER_URL", DEFAULT_BROKER_URL)
    result_backend: str = setting("RESULT_BACKEND", DEFAULT_BROKER_URL)
    #: Redis holding OmniMind's own keys (registry, experience, models).
    redis_url: str = setting("REDIS_URL", DEFAULT_BROKER_URL)
    #: The master's name that ``sentinel://`` URLs (broker, results, keys) are monitored under.
    sentinel_master: str = setting("SENTINEL_MASTER", "mymaster")
    #: Replicas that must hold a fence-advancing write (a dispatch accepted, a model published
    #: or rolled back) before it counts (Redis WAIT): 1 by default on a ``sentinel://``
    #: OMNIMIND_REDIS_URL, else 0. The wait is ``redis_wait_timeout`` seconds at most.
    redis_min_replicas: int = setting("REDIS_MIN_REPLICAS", 0, minimum=0)
    redis_wait_timeout: float = setting("REDIS_WAIT_TIMEOUT", 1.0, minimum=0.001)
    #: Overrides the Celery node name as the registry id when set.
    node_id: str | None = setting("NODE_ID", None, kind=str, convert=_empty_is_none)
    #: Extra capabilities advertised besides the consumed queues (e.g. "coordinator").
    extra_capabilities: tuple[str, ...] = setting("CAPABILITIES", (), kind=str, convert=_comma_list)
    model_factory: str = setting("MODEL_FACTORY", DEFAULT_MODEL_FACTORY)
    model_input_size: int = setting("MODEL_INPUT_SIZE", 16, minimum=1)
    model_seed: int = setting("MODEL_SEED", 0)
    #: "auto" (CUDA when present), "cpu" or "cuda[:N]".
    device: str = setting("DEVICE", "auto")
    max_batch_size: int = setting("MAX_BATCH_SIZE", 1024, minimum=1)
    #: Dynamic batching of concurrent predicts in one process (``OMNIMIND_BATCHING``): at most
    #: ``batch_max_size`` examples per forward pass; a forming batch waits at most
    #: ``batch_max_delay_ms`` for predicts the worker has received but not yet handed over
    #: (a lone request runs at once). Off: one pass per request.
    batching: bool = setting("BATCHING", True)
    batch_max_size: int = setting("BATCH_MAX_SIZE", 64, minimum=1)
    batch_max_delay_ms: float = setting("BATCH_MAX_DELAY_MS", 10.0, minimum=0.0)
    heartbeat_interval: float = setting("HEARTBEAT_INTERVAL", 2.0, minimum=0.05)
    #: Longest wait (s) between two attempts to reach the broker or Redis again after losing
    #: it: the worker's consumer, the result backend, OmniMind's clients (omnimind.reconnect).
    reconnect_interval: float = setting("RECONNECT_INTERVAL", 0.5, minimum=0.01)
    #: Load factor at or above which a node reports DEGRADED.
    degraded_load: float = setting("DEGRADED_LOAD", 0.9, minimum=0.0)
    #: Seconds before an unacknowledged message is redelivered. Must exceed every hard limit.
    visibility_timeout: float = setting("VISIBILITY_TIMEOUT", 3600.0, minimum=1.0)
    #: Seconds between sweeps that redeliver messages of workers that died.
    restore_interval: float = setting("RESTORE_INTERVAL", 10.0, minimum=0.1)
    #: Redis broker: idle workers wake on Redis keyspace events of their queue lists, so a
    #: message from any producer (a plain Celery client, ``celery call``) is taken at once. The
    #: worker adds ``Kl`` to the server's ``notify-keyspace-events`` (CONFIG SET); off, or where
    #: CONFIG is refused, only OmniMind's own producers wake it at once (others within 1 s).
    broker_keyspace_wake: bool = setting("BROKER_KEYSPACE_WAKE", True)
    #: Largest task message body (bytes, as the broker carries it: base64 on Redis) a worker
    #: runs; a larger one is refused with ``InvalidInput("message_too_large")`` before Celery
    #: decodes its body (on Redis the take script has parsed its envelope already; workers.message_limits).
    max_message_bytes: int = setting("MAX_MESSAGE_BYTES", 8 * 1024 * 1024, minimum=1024)
    result_expires: float = setting("RESULT_EXPIRES", 86400.0, minimum=1.0)
    limits: Mapping[str, TimeLimit] = field(default_factory=lambda: dict(_DEFAULT_LIMITS))
    #: Maximum length of the experience stream (approximate trimming).
    experience_maxlen: int = setting("EXPERIENCE_MAXLEN", 100_000, minimum=1)
    #: The served model's spec (``omnimind.learning.spec.ModelSpec``): its head ("regression",
    #: "binary" or "multiclass"), class labels (a JSON list, or comma-separated strings; empty:
    #: learned from the feedback), what an unseen label does ("refuse" or "grow"; empty: refuse
    #: when labels are declared), online standardization of inputs and of regression targets,
    #: and how many labels a classifier's ``top_k`` lists.
    model_head: str = setting("MODEL_HEAD", "regression")
    model_labels: tuple[str | int | bool, ...] = setting("MODEL_LABELS", (), kind=str, convert=_labels)
    model_label_policy: str = setting("MODEL_LABEL_POLICY", "")
    model_standardize: bool = setting("MODEL_STANDARDIZE", True)
    model_scale_target: bool = setting("MODEL_SCALE_TARGET", True)
    model_top_k: int = setting("MODEL_TOP_K", 3, minimum=1)
    #: Named inputs (JSON, see omnimind.signature), e.g. ``{"inputs": [{"name": "age", "dtype":
    #: "float32"}, {"name": "city", "dtype": "string", "values": ["Oslo", "Lima"]}]}``; empty: one
    #: float vector of ``model_input_size``.
    model_signature: str = setting("MODEL_SIGNATURE", "")
    #: Online learner (training workers): optimizer ("sgd", "adam", "adamw"; empty: adam for a
    #: classifier, sgd for a regressor), learning rate (unset: 0.003 for adam/adamw, 0.01 for
    #: sgd), weight decay, gradient clipping (max global norm; 0: off), loss (empty: the head's
    #: own, mse, bce or cross_entropy; or one of ``LOSSES``), drift method, replay capacity,
    #: checkpoint period in batches.
    learning_optimizer: str = setting("LEARNING_OPTIMIZER", "")
    learning_rate: float | None = setting("LEARNING_RATE", None, kind=float, minimum=0.0)
    learning_weight_decay: float = setting("LEARNING_WEIGHT_DECAY", 0.0, minimum=0.0)
    learning_grad_clip: float = setting("LEARNING_GRAD_CLIP", 10.0, minimum=0.0)
    learning_loss: str = setting("LEARNING_LOSS", "")
    #: A detected drift multiplies the learning rate by this for the next 10 learn calls.
    learning_drift_boost: float = setting("LEARNING_DRIFT_BOOST", 2.0, minimum=1.0)
    #: The update schedule: every ``learn`` takes a step on its new samples (at most
    #: ``learning_batch_size`` per step) plus ``learning_replay_size`` replayed ones; while
    #: the stream leaves time, up to ``learning_max_passes`` steps per call, spending at most
    #: ``learning_time_budget`` of the time between calls.
    learning_batch_size: int = setting("LEARNING_BATCH_SIZE", 32, minimum=1)
    learning_replay_size: int = setting("LEARNING_REPLAY_SIZE", 16, minimum=0)
    learning_max_passes: int = setting("LEARNING_MAX_PASSES", 8, minimum=1)
    learning_time_budget: float = setting("LEARNING_TIME_BUDGET", 0.5, minimum=0.0)
    drift_method: str = setting("DRIFT_METHOD", "cusum")
    replay_capacity: int = setting("REPLAY_CAPACITY", 10_000, minimum=16)
    checkpoint_every: int = setting("CHECKPOINT_EVERY", 20, minimum=1)
    #: The freshness path: the learner (challenger) replaces the served model (champion)
    #: when it is better on the newest ``challenger_window`` samples of live feedback
    #: (loss <= ``challenger_tolerance`` x the champion's), checked every
    #: ``challenger_check_every`` samples and at once after a drift, at most once per
    #: ``challenger_min_interval`` seconds. "leader": a learner publishes when its worker
    #: leads the Raft group; "off": only retrains publish.
    challenger_publish: str = setting("CHALLENGER_PUBLISH", "leader")
    #: Torch intra-op threads of a training worker: its mini-batches are small, and on a
    #: busy machine more threads than one only contend (6x slower measured on 2 loaded cores).
    learner_torch_threads: int = setting("LEARNER_TORCH_THREADS", 1, minimum=1)
    challenger_window: int = setting("CHALLENGER_WINDOW", 256, minimum=1)
    challenger_check_every: int = setting("CHALLENGER_CHECK_EVERY", 128, minimum=1)
    #: What the gate compares champion and challenger on: "loss" (the model's own loss: squared
    #: error, or log loss for a classifier, which also judges its probabilities) or
    #: "error_rate" (a classifier's mistakes, 0/1 per sample).
    challenger_metric: str = setting("CHALLENGER_METRIC", "loss")
    #: Paired samples the gate needs before its first verdict on a champion.
    challenger_min_samples: int = setting("CHALLENGER_MIN_SAMPLES", 32, minimum=2)
    challenger_tolerance: float = setting("CHALLENGER_TOLERANCE", 0.98, minimum=0.0)
    challenger_min_interval: float = setting("CHALLENGER_MIN_INTERVAL", 1.0, minimum=0.0)
    #: Raft coordinator membership (all empty: this worker is not a member).
    #: ``raft_peers`` is ``id=host:port,...`` including this member.
    raft_id: str = setting("RAFT_ID", "")
    raft_peers: str = setting("RAFT_PEERS", "")
    raft_secret: str = setting("RAFT_SECRET", "")
    #: Where this member's term, vote and log live; empty: ``<data_dir>/raft/<raft_id>``.
    raft_data_dir: str = setting("RAFT_DATA_DIR", "")
    #: Start as a new member outside the group's configuration (``raft_peers`` then names the members to
    #: contact, and this one); ``omnimind raft add`` makes it a learner, then a voter. A restarted member
    #: takes its configuration from its log either way.
    raft_join: bool = setting("RAFT_JOIN", False)
    #: Raft timings in milliseconds (see :data:`RAFT_TICK_MS`); every member of a group should agree.
    raft_tick_ms: float = setting("RAFT_TICK_MS", RAFT_TICK_MS, minimum=1.0)
    raft_heartbeat_ms: float = setting("RAFT_HEARTBEAT_MS", RAFT_HEARTBEAT_MS, minimum=1.0)
    raft_election_timeout_ms: float = setting("RAFT_ELECTION_TIMEOUT_MS", RAFT_ELECTION_TIMEOUT_MS, minimum=1.0)
    #: Port of the farm's own redis-server (``omnimind redis``; ``omnimind up`` picks a free one).
    redis_port: int = setting("REDIS_PORT", 6379, minimum=1)
    #: The Procfile's training worker's Raft port (``--raft-peers c1=127.0.0.1:$OMNIMIND_RAFT_PORT``);
    #: 0: ``omnimind up`` picks a free one.
    raft_port: int = setting("RAFT_PORT", 0, minimum=0)
    #: Seconds between scheduled retrains (the seed's 300 s).
    retrain_interval: float = setting("RETRAIN_INTERVAL", 300.0, minimum=0.1)
    #: Schedule entry dispatched early when a learner reports concept drift ("" turns
    #: that off), and the least time between two of its runs when drifts come in storms.
    drift_retrain_entry: str = setting("DRIFT_RETRAIN_ENTRY", "retrain")
    drift_retrain_min_gap: float = setting("DRIFT_RETRAIN_MIN_GAP", 30.0, minimum=0.0)
    #: Samples of the experience window a retrain reads (newest first).
    retrain_window: int = setting("RETRAIN_WINDOW", 10_000, minimum=1)
    #: Longest a worker goes without re-reading the active model version (pub/sub may drop notices).
    model_poll_interval: float = setting("MODEL_POLL_INTERVAL", 1.0, minimum=0.01)
    #: Model versions kept in the store for rollback.
    model_keep_versions: int = setting("MODEL_KEEP_VERSIONS", 10, minimum=1)
    #: Celery task events, off as in Celery (a quarter of a worker's CPU per task); Flower turns
    #: them on while it runs (every 5 s), as does ``celery -A omnimind control enable_events``.
    task_events: bool = setting("TASK_EVENTS", False)
    metrics_port: int = setting("METRICS_PORT", 0, minimum=0)
    #: Interface the workers' /metrics servers bind ("0.0.0.0": every interface, for a
    #: Prometheus on another host; ``omnimind up`` binds its farm's to 127.0.0.1).
    metrics_address: str = setting("METRICS_ADDRESS", "0.0.0.0")
    data_dir: str = setting("DATA_DIR", ".omnimind")
    flower_user: str = setting("FLOWER_USER", "admin")
    flower_password: str = setting("FLOWER_PASSWORD", "")
    #: A file holding the Flower password (``omnimind flower``; ``omnimind up`` makes one).
    flower_password_file: str = setting("FLOWER_PASSWORD_FILE", "")
    #: Qdrant server URL for vector memory; empty: embedded local mode under ``qdrant_path``.
    qdrant_url: str = setting("QDRANT_URL", "")
    qdrant_api_key: str = setting("QDRANT_API_KEY", "")
    #: Embedded Qdrant storage folder; empty: ``<data_dir>/qdrant``.
    qdrant_path: str = setting("QDRANT_PATH", "")
    #: Largest JSON-encoded payload (bytes) one memory point may carry.
    memory_max_payload_bytes: int = setting("MEMORY_MAX_PAYLOAD_BYTES", 65536, minimum=1)
    #: Seconds an agent waits for one memory/inference subtask (capped by its own deadline).
    agent_subtask_timeout: float = setting("AGENT_SUBTASK_TIMEOUT", 30.0, minimum=0.01)
    #: Record per-task metrics in workers (signal handlers) and serve /metrics; 0 turns both off.
    metrics_enabled: bool = setting("METRICS", True)
    #: Parent of the per-worker prometheus-client multiprocess folders; empty: ``<data_dir>/metrics``.
    metrics_dir: str = setting("METRICS_DIR", "")
    #: Worker log lines: "console" (human-readable) or "json" (one object per line).
    log_format: str = setting("LOG_FORMAT", "console", convert=str.lower)
    #: Test failpoints (workers.failpoints), never set in production: "TASK_NAME@PATH" kills a
    #: worker between a task's result and its ack; "SLOT@PATH" pauses a Raft coordinator
    #: between a dispatch's commit and its send.
    failpoint_kill_after_result: str = setting("FAILPOINT_KILL_AFTER_RESULT", "")
    raft_failpoint_pause_before_send: str = setting("RAFT_FAILPOINT_PAUSE_BEFORE_SEND", "")

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
        """Settings from ``OMNIMIND_*`` variables: each field's metadata names its variable,
        type and minimum (see :func:`setting`); an unset variable keeps the field's default."""
        env = os.environ if env is None else env
        get = _Reader(env)
        values = {}
        # The URL defaults follow the broker: a Redis broker keeps OmniMind's keys and the
        # results too; with RabbitMQ the results go to OmniMind's Redis.
        broker = get.value(_FIELDS["broker_url"], DEFAULT_BROKER_URL)
        redis_url = get.value(_FIELDS["redis_url"], broker)
        defaults = {
            "broker_url": broker,
            "redis_url": redis_url,
            "result_backend": broker if _scheme(broker) in REDIS_SCHEMES else redis_url,
            "redis_min_replicas": 1 if _scheme(redis_url) == "sentinel" else 0,
        }
        for name, f in _FIELDS.items():
            values[name] = get.value(f, defaults.get(name, f.default))
        values["limits"] = _limits_from_env(get)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if _scheme(self.redis_url) not in REDIS_SCHEMES:
            # The registry, experience, models and fences are Redis keys, whatever the broker.
            raise ConfigError(
                f"OMNIMIND_REDIS_URL must be a redis://, rediss://, unix:// or sentinel:// URL, not {_scheme(self.redis_url)}://... "
                "(it defaults to OMNIMIND_BROKER_URL: with a RabbitMQ broker, set it to the Redis for OmniMind's keys)"
            )
        longest = max(limit.hard for limit in self.limits.values())
        if self.visibility_timeout <= longest:
            # Otherwise Redis hands a still-running task to a second worker.
            raise ConfigError(
                f"OMNIMIND_VISIBILITY_TIMEOUT ({self.visibility_timeout}s) must exceed the longest "
                f"hard time limit ({longest}s)"
            )
        if self.learning_loss and self.learning_loss not in LOSSES:
            raise ConfigError(f"OMNIMIND_LEARNING_LOSS must be one of {list(LOSSES)}, not {self.learning_loss!r}")
        if self.learning_optimizer and self.learning_optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"OMNIMIND_LEARNING_OPTIMIZER must be one of {list(OPTIMIZERS)}, not {self.learning_optimizer!r}")
        if self.model_head not in HEADS:
            raise ConfigError(f"OMNIMIND_MODEL_HEAD must be one of {list(HEADS)}, not {self.model_head!r}")
        head = model_head(self.model_head, self.learning_loss)
        if self.learning_loss and self.learning_loss not in HEAD_LOSSES[head]:
            raise ConfigError(f"OMNIMIND_LEARNING_LOSS {self.learning_loss!r} does not fit a {head} head "
                              f"(use one of {list(HEAD_LOSSES[head])})")
        if head == "binary" and len(self.model_labels) > 2:
            raise ConfigError(f"a binary head has two labels, OMNIMIND_MODEL_LABELS names {len(self.model_labels)}")
        if head == "regression" and self.challenger_metric == "error_rate":
            raise ConfigError("OMNIMIND_CHALLENGER_METRIC=error_rate counts a classifier's mistakes; "
                              "a regression head has none (use loss)")
        if self.model_signature:
            from omnimind.signature import Signature  # pure, no torch

            try:
                Signature.from_json(self.model_signature)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"OMNIMIND_MODEL_SIGNATURE is not a usable signature: {exc}") from None
        if self.model_label_policy and self.model_label_policy not in LABEL_POLICIES:
            raise ConfigError(f"OMNIMIND_MODEL_LABEL_POLICY must be one of {list(LABEL_POLICIES)}, "
                              f"not {self.model_label_policy!r}")
        if self.challenger_metric not in CHALLENGER_METRICS:
            raise ConfigError(f"OMNIMIND_CHALLENGER_METRIC must be one of {list(CHALLENGER_METRICS)}, "
                              f"not {self.challenger_metric!r}")
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
        if self.raft_heartbeat_ms < self.raft_tick_ms or self.raft_election_timeout_ms < 2 * self.raft_heartbeat_ms:
            raise ConfigError("OMNIMIND_RAFT_ timings must satisfy tick <= heartbeat and 2 x heartbeat <= election "
                              f"timeout, not {self.raft_tick_ms}, {self.raft_heartbeat_ms}, {self.raft_election_timeout_ms} ms")


#: The fields read from one variable each, in declaration order (``limits`` has one pair per queue).
_FIELDS = {f.name: f for f in fields(Settings) if "env" in f.metadata}


def _limits_from_env(get: "_Reader") -> dict[str, TimeLimit]:
    limits = {}
    for queue, default in _DEFAULT_LIMITS.items():
        hard = get.number(f"{queue.upper()}_TIME_LIMIT", default.hard, minimum=0.001)
        soft = get.number(f"{queue.upper()}_SOFT_TIME_LIMIT", min(default.soft, hard * 0.9), minimum=0.001)
        if soft >= hard:
            raise ConfigError(f"OMNIMIND_{queue.upper()}_SOFT_TIME_LIMIT ({soft}) must be below the hard limit ({hard})")
        limits[queue] = TimeLimit(soft=soft, hard=hard)
    return limits

def variable(field_name: str) -> str:
    """The environment variable of a settings field, for a launcher that sets it for its children.

    >>> variable("broker_url")
    'OMNIMIND_BROKER_URL'
    """
    return f"OMNIMIND_{_FIELDS[field_name].metadata['env']}"


def given(env: Mapping[str, str], field_name: str) -> str:
    """What ``env`` sets a field's variable to (stripped; "" when unset): for a launcher that must
    tell a value given from a default (``omnimind up`` starts a Redis unless a broker is given).

    >>> given({"OMNIMIND_BROKER_URL": " amqp://rabbit// "}, "broker_url"), given({}, "redis_url")
    ('amqp://rabbit//', '')
    """
    return env.get(variable(field_name), "").strip()


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

    def value(self, f: Any, default: Any) -> Any:
        """The value of settings field ``f`` (see :func:`setting`), ``default`` when unset."""
        meta = f.metadata
        name, kind = meta["env"], meta["kind"]
        if kind is bool:
            return self.flag(name, default)
        if kind in (int, float):
            return self._number(name, default, kind, meta["minimum"])
        if f"OMNIMIND_{name}" not in self.env:
            return default
        value = self.text(name, "")
        return meta["convert"](value) if meta["convert"] else value

    def text(self, name: str, default: str) -> str:
        return self.env.get(f"OMNIMIND_{name}", default).strip()

    def number(self, name: str, default: float, minimum: float | None = None) -> float:
        return float(self._number(name, default, float, minimum))

    def flag(self, name: str, default: bool) -> bool:
        raw = self.env.get(f"OMNIMIND_{name}")
        if raw is None or raw.strip() == "":
            return default
        value = raw.strip().lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"OMNIMIND_{name} must be a boolean (1/0, true/false), not {raw!r}")

    def _number(self, name: str, default: Any, kind: type[int] | type[float], minimum: float | None) -> Any:
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


_settings: Settings | None = None


def get_settings() -> Settings:
    """The process's settings: read from the environment on the first call, the same object ever after.

    Nothing reads the environment at import; every module asks here, when it needs a value.
    """
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def reset_settings() -> None:
    """Forget the cached settings, so that the next :func:`get_settings` reads the environment again (tests)."""
    global _settings
    _settings = None


class LazySettings:
    """``omnimind.config.settings``: attribute reads go to :func:`get_settings`, so that
    ``from omnimind.config import settings`` at module level reads nothing at import (as
    Django's ``django.conf.settings``). Pass ``get_settings()`` where a :class:`Settings` is
    wanted (``dataclasses.replace``, ``isinstance``).

    >>> settings.heartbeat_interval == get_settings().heartbeat_interval
    True
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        return getattr(get_settings(), name)

    def __repr__(self) -> str:
        return f"<lazy {get_settings()!r}>"


settings = LazySettings()
