"""Worker-side wiring, attached to the Celery app only through its extension
points: bootsteps, worker CLI options and signals."""
from __future__ import annotations

from click import Option


def install(app) -> None:
    """Attach OmniMind's bootsteps, options and signal handlers to ``app``."""
    from workers import observability, signals  # noqa: F401  (they connect signal handlers)

    app.user_options["worker"].add(
        Option(
            ["--metrics-port"],
            type=int,
            default=None,
            help="Serve Prometheus /metrics on this port (0: off). Default: $OMNIMIND_METRICS_PORT.",
        )
    )
    for flags, help_text in (
        (["--raft-id"], "Join the Raft coordinator group as this member id. Default: $OMNIMIND_RAFT_ID."),
        (["--raft-peers"], "Every member as id=host:port,... (this one included). Default: $OMNIMIND_RAFT_PEERS."),
        (["--raft-data-dir"], "Where term, vote and log are kept. Default: $OMNIMIND_RAFT_DATA_DIR."),
    ):
        app.user_options["worker"].add(Option(flags, default=None, help=help_text))
    # By name: Celery imports them when a worker starts (they import the app back).
    for step in (
        "workers.observability:MetricsServerStep",
        "workers.bootsteps:RegistryStep",
        "workers.redelivery:RedeliveryStep",  # a no-op unless the broker is Redis
        "workers.bootsteps:ModelWarmupStep",
        "workers.memory:MemoryLockStep",  # embedded vector memory: one process
        "workers.bootsteps:LearnerStep",
        "workers.raft:RaftStep",  # a no-op unless --raft-id is given
        "workers.time_limits:TimeLimitStep",  # a no-op under prefork
    ):
        app.steps["worker"].add(step)
    # Readiness (/readyz) follows the consumer blueprint: started once it consumes, stopped on a restart.
    app.steps["consumer"].add("workers.health:ConsumingStep")
