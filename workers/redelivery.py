"""The worker's side of fast redelivery on a Redis broker (``omnimind.redelivery``).

``RedeliveryStep`` names this worker incarnation's holder before the consumer
starts, so every message it takes is recorded as held by it; a thread of its own
then stamps the holder alive and sweeps for dead holders every heartbeat
interval. On a broker other than Redis (RabbitMQ redelivers by itself when a
consumer's connection drops) the step does nothing.

>>> RedeliveryStep.label
'OmniMind redelivery'
"""
from __future__ import annotations

import logging
import threading

from celery import bootsteps

from omnimind import keys
from omnimind.config import settings
from omnimind.redelivery import HOLDER_TRANSPORTS, Redelivery, new_holder, set_holder
from workers.bootsteps import RegistryStep
from workers import context

logger = logging.getLogger(__name__)


class RedeliveryStep(bootsteps.StartStopStep):
    label = "OmniMind redelivery"
    requires = (RegistryStep,)

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.enabled = worker.app.conf.broker_transport in HOLDER_TRANSPORTS
        self.holder = new_holder(context.node_id()) if self.enabled else None
        # Now, before any step starts: the consumer records its first message under it.
        set_holder(self.holder)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection = None
        self._service: Redelivery | None = None

    def start(self, worker):
        if not self.enabled:
            return
        self._thread = threading.Thread(target=self._loop, args=(worker.app,), name="omnimind-redelivery",
                                        daemon=True)
        self._thread.start()

    def stop(self, worker):
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=settings.heartbeat_interval + 5)
        self._thread = None
        try:
            # A warm shutdown acked or gave back everything it held: forget this holder.
            # Anything still held stays recorded, for a sweeper to restore.
            client = self._service.channel.client if self._service else None
            if client is not None and client.scard(keys.broker_held(self.holder)) == 0:
                client.zrem(keys.BROKER_HOLDERS, self.holder)
        except Exception as exc:  # broker gone at shutdown: a sweeper forgets the holder later
            logger.info("Redelivery: could not forget holder %s at shutdown: %s", self.holder, exc)
        self._close()

    shutdown = stop

    def _loop(self, app) -> None:
        while True:
            try:
                if self._service is None:
                    self._connection = app.connection_for_write()
                    self._service = Redelivery(self._connection.default_channel, self.holder, settings.heartbeat_interval)
                if not self._service.beat():
                    logger.info("Redelivery: holder %s stamped alive", self.holder)
                self._service.sweep()
            except Exception as exc:  # the broker is away: try again next round, on a new connection
                logger.warning("Redelivery sweep failed (will retry): %s", exc)
                self._close()
            if self._stop.wait(settings.heartbeat_interval):
                return

    def _close(self) -> None:
        self._service = None
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:
                pass
            self._connection = None
