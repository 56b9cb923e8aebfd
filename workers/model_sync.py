"""Hot swap: every process that serves a model follows the store's active version.

The active-version key is the source of truth; pub/sub notices only say "look
now". The follower re-reads the key on every notice, after every reconnect and
at least every ``OMNIMIND_MODEL_POLL_INTERVAL`` seconds, so a lost notice delays
a swap by one interval at most. A new version is fetched (SHA-256 verified),
loaded into a fresh module built by the model factory, warmed up, and only then
swapped in with one reference assignment. A version that fails any step is
refused and counted; the process keeps serving what it had.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

import redis

from omnimind.config import Settings
from omnimind.models.errors import ModelStoreError
from omnimind.models.runtime import ModelRuntime, get_runtime
from omnimind.models.store import ModelStore
from omnimind.observability import metrics
from omnimind.redis_client import redis_client
from workers import context

logger = logging.getLogger(__name__)

#: Longest wait before retrying after Redis errors.
MAX_BACKOFF_S = 5.0


class ModelFollower:
    """Keeps one process's runtime on the store's active version."""

    def __init__(
        self,
        runtime: ModelRuntime,
        store: ModelStore,
        poll_interval: float,
        on_swap: Callable[[int, dict], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.poll_interval = poll_interval
        self.on_swap = on_swap
        self._refused: int | None = None  # the version last refused, not retried until the pointer moves
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def sync(self) -> int:
        """Swap to the active version if it differs from the served one; returns the served version."""
        with self._lock:
            active = self.store.active_version()
            served = self.runtime.model_version
            if active is None or active == served or active == self._refused:
                return served
            try:
                meta, state_dict = self.store.fetch(active)
                candidate = self.runtime.prepare(state_dict, meta.version)
            except (redis.RedisError, OSError):
                raise  # Redis trouble: retried by the follower loop, not a verdict on the version
            except Exception as exc:  # a bad blob, misfit weights, a factory or device error
                self._refused = active
                reason = exc.reason if isinstance(exc, ModelStoreError) else "load"
                metrics.model_swap_rejections.labels(reason=reason).inc()
                logger.error("Refusing model v%d (%s: %s); still serving v%d", active, reason, exc, served)
                return served
            self.runtime.swap(candidate)
            self._refused = None
            node = context.node_id()
            metrics.model_swaps.labels(node_id=node).inc()
            metrics.model_version.labels(node_id=node).set(meta.version)
            logger.info("Swapped model v%d -> v%d", served, meta.version)
            if self.on_swap is not None:
                self.on_swap(meta.version, state_dict)
            return meta.version

    def start(self) -> None:
        threading.Thread(target=self._follow, name="omnimind-model-follower", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _follow(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self.store.subscribe()
                self.sync()  # after every (re)subscribe: notices sent meanwhile were lost
                backoff = 0.1
                while not self._stop.is_set():
                    pubsub.get_message(timeout=self.poll_interval)  # a notice, or a quiet interval
                    self.sync()
            except (redis.RedisError, OSError) as exc:
                logger.warning("Model follower lost Redis (%s); retrying in %.1fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            except Exception:
                logger.exception("Model follower error; retrying in %.1fs", backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:
                        pass


_follower: ModelFollower | None = None
_follower_lock = threading.Lock()


def serving_runtime(settings: Settings) -> ModelRuntime:
    """This process's runtime, on the active version before it serves its first
    request, with a follower thread keeping it there."""
    global _follower
    runtime = get_runtime(settings)
    if _follower is not None and _follower.runtime is runtime:
        return runtime
    with _follower_lock:
        if _follower is None or _follower.runtime is not runtime:  # first use, or a new process after fork
            store = ModelStore(redis_client(settings.redis_url), producer=context.node_id())
            follower = ModelFollower(runtime, store, settings.model_poll_interval, on_swap=_tell_learner)
            try:
                follower.sync()
            except Exception as exc:  # serve what we have; the follower thread catches up
                logger.warning("Could not load the active model version at start: %s", exc)
            follower.start()
            _follower = follower
    return runtime


def stop_following() -> None:
    """Stop this process's follower thread (warm shutdown)."""
    if _follower is not None:
        _follower.stop()


def _tell_learner(version: int, state_dict: dict) -> None:
    from workers.learner import current_learner

    learner = current_learner()
    if learner is not None:
        learner.adopt(version, state_dict)
