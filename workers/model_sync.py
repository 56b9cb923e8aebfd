"""Hot swap: every process that serves a model follows the store's active version.

The active-version key is the source of truth; pub/sub notices only say "look
now". The follower re-reads the key on every notice, after every reconnect and
at least every ``OMNIMIND_MODEL_POLL_INTERVAL`` seconds, so a lost notice delays
a swap by one interval at most. A new version is fetched (SHA-256 verified),
loaded into a fresh module built by the model factory, warmed up, and only then
swapped in with one reference assignment.

A version that fails any step is refused and counted. The process then serves
the newest older retained version that passes the same steps (last known good,
counted in ``omnimind_model_fallbacks_total``), or keeps what it serves when that
is it or nothing older loads, so that every worker lands on the same version:
never v0 while a valid version exists. A refused active version is tried again
when the pointer moves, or after :data:`REFUSED_RETRY_S` (doubling up to
:data:`REFUSED_RETRY_MAX_S`) while it stays. Each process reports what it serves
to the store (:meth:`ModelStore.report_served`) for ``omnimind status``.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import redis

from omnimind.models.errors import ModelStoreError
from omnimind.models.metadata import ServedVersion
from omnimind.models.runtime import ModelRuntime
from omnimind.models.store import ModelStore
from omnimind.observability import metrics
from workers import context

logger = logging.getLogger(__name__)

#: Longest wait before retrying after Redis errors (``OMNIMIND_RECONNECT_INTERVAL`` in a worker):
#: once Redis answers again, the follower is back within this long.
MAX_BACKOFF_S = 0.5
#: A refused active version is tried again after this long (a transient refusal such as CUDA
#: out of memory heals), doubling per refusal up to REFUSED_RETRY_MAX_S.
REFUSED_RETRY_S = 60.0
REFUSED_RETRY_MAX_S = 900.0
#: Seconds between two reports of an unchanged served version.
REPORT_EVERY_S = 10.0


class _Refused(Exception):
    """A version that failed verification, loading or warm-up on this process."""

    def __init__(self, version: int, reason: str, cause: BaseException) -> None:
        super().__init__(version, reason, cause)
        self.version, self.reason, self.cause = version, reason, cause


class ModelFollower:
    """Keeps one process's runtime on the store's active version, or on the newest
    older version that loads when the active one does not (last known good).

    >>> ModelFollower.fallback_candidates([1, 2, 3, 5, 6], active=5)
    [3, 2, 1]
    """

    def __init__(
        self,
        runtime: ModelRuntime,
        store: ModelStore,
        poll_interval: float,
        on_swap: Callable[[int, dict], None] | None = None,
        max_backoff: float = MAX_BACKOFF_S,
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.on_swap = on_swap
        # The active version refused: (version, reason, retry at (monotonic), refusals so far).
        self._refused: tuple[int, str, float, int] | None = None
        self._reported: tuple | None = None
        self._reported_at = float("-inf")
        self._lock = threading.Lock()
        self._stop = threading.Event()

    @staticmethod
    def fallback_candidates(versions, active: int) -> list[int]:
        """The versions to try when ``active`` is refused: the retained ones below it, newest first."""
        return sorted((int(v) for v in versions if int(v) < active), reverse=True)

    def sync(self) -> int:
        """Serve the active version if it loads, else the last known good one; returns the served version."""
        with self._lock:
            active = self.store.active_version()
            served = self.runtime.model_version
            refused = self._refused
            if active is None or active == served:
                self._refused = None
            elif refused is None or refused[0] != active or time.monotonic() >= refused[2]:
                served = self._try_active(active, served, refused)
            # Readiness (/readyz): this process is on the active version, or nothing is published.
            metrics.model_at_active.labels(node_id=context.node_id()).set(1 if active in (None, served) else 0)
            self._report(served, active)
            return served

    def _try_active(self, active: int, served: int, refused) -> int:
        try:
            loaded = self._load(active)
        except _Refused as refusal:
            return self._fall_back(active, served, refusal, refused[3] if refused and refused[0] == active else 0)
        self._swap(*loaded)
        self._refused = None
        logger.info("Swapped model v%d -> v%d", served, active)
        return active

    def _fall_back(self, active: int, served: int, refusal: _Refused, refusals: int) -> int:
        target, loaded = None, None
        for version in self.fallback_candidates(self.store.version_numbers(), active):
            if version == served:
                target = served  # what this process serves is the newest older version that loads
                break
            try:
                loaded = self._load(version)
            except _Refused as older:
                logger.warning("Refusing older model v%d as well (%s: %s)", version, older.reason, older.cause)
                continue
            target = version
            break
        delay = min(REFUSED_RETRY_S * 2 ** refusals, REFUSED_RETRY_MAX_S)
        self._refused = (active, refusal.reason, time.monotonic() + delay, refusals + 1)
        what = f"Refusing model v{active} ({refusal.reason}: {refusal.cause})"
        if target is None:
            logger.error("%s; no older version loads either: still serving v%d", what, served)
            return served
        if loaded is not None:
            self._swap(*loaded)
        metrics.model_fallbacks.inc()
        logger.warning("%s; serving v%d, the newest older version that loads (last known good), instead of "
                       "v%d (tried again when the active version changes, or in %.0fs)", what, target, active, delay)
        return target

    def _load(self, version: int):
        """Fetch, verify, load and warm up ``version``; raises :class:`_Refused` for a verdict on it."""
        try:
            meta, state_dict = self.store.fetch(version)
            return meta, state_dict, self.runtime.prepare(state_dict, meta.version)
        except (redis.RedisError, OSError):
            raise  # Redis trouble: retried by the follower loop, not a verdict on the version
        except Exception as exc:  # a bad blob, misfit weights, a factory or device error
            reason = exc.reason if isinstance(exc, ModelStoreError) else "load"
            metrics.model_swap_rejections.labels(reason=reason).inc()
            raise _Refused(version, reason, exc) from exc

    def _swap(self, meta, state_dict, candidate) -> None:
        self.runtime.swap(candidate)
        node = context.node_id()
        metrics.model_swaps.labels(node_id=node).inc()
        metrics.model_version.labels(node_id=node).set(meta.version)
        if self.on_swap is not None:
            self.on_swap(meta.version, state_dict)

    def _report(self, served: int, active: int | None) -> None:
        refused = self._refused
        state = (served, active, None if refused is None else refused[0], "" if refused is None else refused[1])
        if state == self._reported and time.monotonic() - self._reported_at < REPORT_EVERY_S:
            return
        self.store.report_served(ServedVersion(context.node_id(), *state, at=time.time()))
        self._reported, self._reported_at = state, time.monotonic()

    def start(self) -> None:
        threading.Thread(target=self._follow, name="omnimind-model-follower", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        try:
            self.store.forget_served(context.node_id())
        except (redis.RedisError, OSError):
            pass  # the report ages out

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
                backoff = min(backoff * 2, self.max_backoff)
            except Exception:
                logger.exception("Model follower error; retrying in %.1fs", backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:
                        pass
