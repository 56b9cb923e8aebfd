"""Every Prometheus metric OmniMind exports, defined once.

The seed's six names are kept exactly. Label sets are small and fixed: task
names, queue names, node ids and a handful of reasons — never payload values.
Other modules only record values (``metrics.model_swaps.inc()``).

Gauges carry a ``multiprocess_mode`` so that they aggregate sensibly when a
prefork worker runs prometheus-client in multiprocess mode.

>>> from omnimind.observability import metrics
>>> metrics.bad_inputs.labels(task="tasks.inference.predict", reason="shape").inc()
>>> metrics.ALL_METRIC_NAMES >= {"omnimind_cluster_nodes_total", "omnimind_model_version"}
True
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Request latencies of a small model on loopback are sub-millisecond; keep
# resolution there and still cover slow GPU batches.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# --- the seed's cluster metrics -------------------------------------------------
cluster_nodes_total = Gauge(
    "omnimind_cluster_nodes_total", "Nodes registered in the cluster (any status)", multiprocess_mode="max"
)
cluster_requests_total = Counter(
    "omnimind_cluster_requests_total", "Requests executed by a node, by outcome", ["node_id", "status"]
)
cluster_latency_seconds = Histogram(
    "omnimind_cluster_latency_seconds", "Task execution latency on a node", ["node_id"], buckets=LATENCY_BUCKETS
)

# --- the seed's learning metrics -----------------------------------------------
learning_batches_total = Counter("omnimind_learning_batches_total", "Online SGD mini-batches applied")
learning_loss = Gauge("omnimind_learning_loss", "Loss of the latest online SGD mini-batch", multiprocess_mode="mostrecent")
model_version = Gauge("omnimind_model_version", "Model version a worker serves", ["node_id"], multiprocess_mode="max")

# --- Celery task lifecycle (what celery-exporter users expect) -----------------
TASK_STATES = ("received", "started", "succeeded", "failed", "retried", "rejected", "revoked")
tasks_total = Counter("omnimind_tasks_total", "Task lifecycle events seen by workers", ["task", "state"])
task_runtime_seconds = Histogram(
    "omnimind_task_runtime_seconds", "Task runtime in the worker", ["task"], buckets=LATENCY_BUCKETS
)
task_queue_wait_seconds = Histogram(
    "omnimind_task_queue_wait_seconds",
    "Time from publish to start of execution",
    ["queue"],
    buckets=LATENCY_BUCKETS,
)
TIME_LIMIT_KINDS = ("soft", "hard")
task_time_limits = Counter(
    "omnimind_task_time_limits_total",
    "Tasks interrupted at their time limit on a solo/threads pool (prefork: Celery's own)",
    ["task", "kind"],
)
queue_length = Gauge("omnimind_queue_length", "Messages waiting in a queue", ["queue"], multiprocess_mode="max")
worker_up = Gauge("omnimind_worker_up", "1 while a worker process is serving", ["node_id"], multiprocess_mode="max")
worker_load_factor = Gauge(
    "omnimind_worker_load_factor", "Busy slots / concurrency of a worker", ["node_id"], multiprocess_mode="max"
)

# --- autoscaling signal (omnimind.scaling.autoscale) ----------------------------
#: Per capability queue, read by every worker from the broker and the registry heartbeats
#: (each worker exports the farm's value: aggregate with ``max by (queue)``).
queue_backlog = Gauge(
    "omnimind_queue_backlog",
    "Tasks of a capability queue not started yet: waiting in the broker + reserved (prefetched) by workers",
    ["queue"],
    multiprocess_mode="max",
)
queue_utilisation = Gauge(
    "omnimind_queue_utilisation",
    "(active + reserved tasks) / capacity (concurrency of the live workers consuming the queue); 0 without workers",
    ["queue"],
    multiprocess_mode="max",
)
queue_capacity = Gauge(
    "omnimind_queue_capacity",
    "Task slots (concurrency) of the live workers consuming a capability queue",
    ["queue"],
    multiprocess_mode="max",
)

# --- dynamic batching (omnimind.models.batching) -------------------------------
#: Examples per forward pass; ``_sum / _count`` is Triton's average batch (inferences / executions).
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
batch_size = Histogram(
    "omnimind_batch_size", "Examples per batched forward pass of the served model", buckets=BATCH_SIZE_BUCKETS
)
batch_queue_delay_seconds = Histogram(
    "omnimind_batch_queue_delay_seconds",
    "Time a predict request waited in the batcher before its forward pass started",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)

# --- bad input ---------------------------------------------------------------
bad_inputs = Counter(
    "omnimind_bad_inputs_total", "Requests rejected before reaching the model", ["task", "reason"]
)
#: ``omnimind_messages_refused_total{reason}``: messages a worker acknowledged (Redis) or rejected
#: without requeue (RabbitMQ: dead-lettered where the queue has a dead-letter exchange) instead of
#: running them: ContentDisallowed (a pickled message), unknown (JSON that is no Celery message),
#: unknown_task, too_large (over OMNIMIND_MAX_MESSAGE_BYTES), not_an_envelope (a Redis list item
#: that is not a kombu message at all).
messages_refused = Counter(
    "omnimind_messages_refused_total", "Broker messages refused instead of run (see the reason label)", ["reason"]
)

# --- Raft coordinator --------------------------------------------------------
raft_term = Gauge("omnimind_raft_term", "Current Raft term of this member", ["node_id"], multiprocess_mode="max")
raft_is_leader = Gauge("omnimind_raft_is_leader", "1 if this member is the Raft leader", ["node_id"], multiprocess_mode="max")
raft_commit_index = Gauge("omnimind_raft_commit_index", "Raft commit index", ["node_id"], multiprocess_mode="max")
raft_leader_changes = Counter("omnimind_raft_leader_changes_total", "Leader changes observed", ["node_id"])
raft_elections = Counter("omnimind_raft_elections_total", "Elections started by this member", ["node_id"])
raft_dropped_frames = Counter(
    "omnimind_raft_dropped_frames_total", "Raft frames dropped (bad HMAC, malformed, oversized)", ["reason"]
)
raft_members = Gauge(
    "omnimind_raft_members", "Members of the Raft configuration this member follows, by role", ["node_id", "role"],
    multiprocess_mode="max",
)
raft_membership_requests = Counter(
    "omnimind_raft_membership_requests_total", "Membership change requests handled by the leader", ["outcome"]
)
schedule_dispatches = Counter(
    "omnimind_schedule_dispatches_total", "Periodic tasks dispatched by the coordinator", ["entry"]
)
fence_rejections = Counter("omnimind_fence_rejections_total", "Writes refused for carrying a stale fencing token")
#: omnimind.replication: a fence-advancing write the master took but too few replicas confirmed in time.
unreplicated_writes = Counter(
    "omnimind_redis_unreplicated_writes_total",
    "Fence-advancing writes not confirmed by OMNIMIND_REDIS_MIN_REPLICAS replicas in time (not counted as done)",
    ["operation"],
)

# --- online learning ---------------------------------------------------------
drift_detections = Counter("omnimind_learning_drift_detections_total", "Concept drifts detected")
replay_size = Gauge("omnimind_learning_replay_size", "Samples in the prioritized replay buffer", multiprocess_mode="max")
learning_divergences = Counter(
    "omnimind_learning_divergences_total", "Mini-batches skipped for a non-finite loss (weights restored)"
)
feedback_samples = Counter("omnimind_learning_feedback_samples_total", "Feedback samples accepted")

# --- model lifecycle ---------------------------------------------------------
model_swaps = Counter("omnimind_model_swaps_total", "Model versions swapped in by a worker", ["node_id"])
model_swap_rejections = Counter(
    "omnimind_model_swap_rejections_total", "Published versions a worker refused to load", ["reason"]
)
model_validation_rejections = Counter(
    "omnimind_model_validation_rejections_total", "Shadow models that failed the validation gate"
)
model_publications = Counter("omnimind_model_publications_total", "Model versions published")
publications_by_reason = Counter(
    "omnimind_model_publications_by_reason_total",
    "Model versions published, by what triggered them (see PUBLICATION_REASONS)",
    ["reason"],
)
publication_refusals = Counter(
    "omnimind_model_publication_refusals_total",
    "Candidate models not published, by reason (see PUBLICATION_REFUSAL_REASONS)",
    ["reason"],
)
live_window_loss = Gauge(
    "omnimind_live_window_loss",
    "Prequential loss on the learner's most recent feedback window (champion = served, challenger = learner)",
    ["model"],
    multiprocess_mode="mostrecent",
)
freshness_lag = Gauge(
    "omnimind_model_freshness_lag_seconds",
    "Seconds the learner has been learning feedback that no published version contains (0 right after a publish)",
    multiprocess_mode="max",
)
learn_duplicates = Counter(
    "omnimind_learn_duplicates_total", "Redelivered learn tasks (same task id) neither learned nor recorded again"
)
#: Readiness (``/readyz``, omnimind.health): the least over a worker's live pool processes is
#: what counts, so one process not (yet) on the active version makes the worker not ready.
model_at_active = Gauge(
    "omnimind_model_at_active",
    "1 while a serving process serves the store's active version (or none is published), 0 while it does not",
    ["node_id"],
    multiprocess_mode="livemin",
)
model_rollbacks = Counter("omnimind_model_rollbacks_total", "Active-version pointer moves by explicit rollback")

# --- authenticated dispatch fences (omnimind.scaling.dispatch) ------------------
#: ``omnimind_dispatch_refusals_total{reason}``: scheduled dispatches refused before their fence
#: reached Redis: headers of the wrong shape or types, fence headers without a signature, a
#: signature that does not match (forged, replayed onto another slot, corrupted), or a consumer
#: without ``OMNIMIND_RAFT_SECRET`` that cannot verify one.
DISPATCH_REFUSAL_REASONS = ("malformed", "unsigned", "forged", "unverifiable")
dispatch_refusals = Counter(
    "omnimind_dispatch_refusals_total",
    "Scheduled dispatches refused before their fence was checked (see DISPATCH_REFUSAL_REASONS)",
    ["reason"],
)

# --- last known good (workers.model_sync) ---------------------------------------
#: Unlabelled, so that it exists at 0 from the start and the first fallback is an increase.
model_fallbacks = Counter(
    "omnimind_model_fallbacks_total",
    "Times a worker refused the active model version and served the newest older one that loads (last known good)",
)

# --- redelivery on a Redis broker (omnimind.redelivery) -------------------------
broker_redelivered = Counter(
    "omnimind_broker_redelivered_total",
    "Messages of a dead worker put back on their queue by a surviving one (Redis broker), before the visibility timeout",
)
#: Times a worker found the server's ``notify-keyspace-events`` without the flags it set (an operator's
#: CONFIG SET, a restart without them in redis.conf) and set them again.
broker_keyspace_flags_restored = Counter(
    "omnimind_broker_keyspace_flags_restored_total",
    "Times a worker restored Redis's notify-keyspace-events flags (Kl) that were reset under it",
)


def _exported_name(metric) -> str:
    # prometheus-client stores counters without their "_total" suffix.
    return metric._name + "_total" if isinstance(metric, Counter) else metric._name


#: Names as Prometheus sees them (histograms add _bucket/_sum/_count series).
ALL_METRIC_NAMES = frozenset(
    _exported_name(m) for m in list(globals().values()) if isinstance(m, (Counter, Gauge, Histogram))
)

#: The metric objects themselves, in definition order (``omnimind.observability.multiprocess``
#: re-binds their storage when a worker switches to multiprocess mode).
ALL_METRICS = tuple(m for m in list(globals().values()) if isinstance(m, (Counter, Gauge, Histogram)))

# --- known label values --------------------------------------------------------
# Workers create these series at 0 when they start, so that the first real event
# is an increase Prometheus can see (a labelled counter otherwise appears at 1).
# Record only these values for the labels below.

#: ``omnimind_raft_dropped_frames_total{reason}``: inbound, then outbound reasons of the TCP transport.
RAFT_DROP_REASONS = (
    "oversized", "unauthenticated", "malformed", "misaddressed", "send_queue_full", "unknown_peer", "unencodable",
)
#: ``omnimind_raft_members{role}``.
RAFT_MEMBER_ROLES = ("voter", "learner")
#: ``omnimind_raft_membership_requests_total{outcome}``: changed (or already so), failed (refused by Raft or
#: timed out), refused (bad signature, malformed, too old), handed over (to the next leader).
RAFT_MEMBERSHIP_OUTCOMES = ("done", "failed", "refused", "handed_over")
#: ``omnimind_model_swap_rejections_total{reason}``: why a worker refused a published version
#: (sha256 mismatch, blob or metadata unreadable, shape/architecture mismatch, over the size limit,
#: blob missing, version or fencing token not newer than the served one).
MODEL_SWAP_REJECTION_REASONS = ("checksum", "unreadable", "incompatible", "too_large", "missing", "stale", "load")
#: ``omnimind_cluster_requests_total{status}``.
REQUEST_STATUSES = ("success", "error")
#: ``omnimind_model_publications_by_reason_total{reason}``: the learner's champion/challenger
#: check (periodic, or at once after a drift), a scheduled deep retrain, a manual retrain.
PUBLICATION_REASONS = ("challenger", "challenger_drift", "retrain", "retrain_drift", "manual")
#: ``omnimind_model_publication_refusals_total{reason}``: candidate no better than the champion on
#: the live window, non-finite or exploding loss, too few samples (after a drift: too few post-change
#: samples), publishing too often, a stale fence, a newer version active meanwhile, not the coordinator,
#: a challenger after a drift that still fits the samples from before it better than those since.
PUBLICATION_REFUSAL_REASONS = (
    "not_better", "diverged", "too_few_samples", "rate_limited", "stale_fence", "superseded", "not_leader",
    "old_concept",
)
#: ``omnimind_live_window_loss{model}``.
LIVE_WINDOW_MODELS = ("champion", "challenger")
