"""A worker on RabbitMQ says at start when a stock Celery client could not send to it
(``omnimind.queue_types``): once, as an error naming the two fixes. It serves either way:
OmniMind's own clients declare the queues quorum.

>>> VhostCheckStep.label
'OmniMind RabbitMQ vhost check'
"""
from __future__ import annotations

import logging

from celery import bootsteps

from omnimind.config import is_amqp_url
from omnimind.queue_types import FIX, vhost_default_is_quorum

logger = logging.getLogger(__name__)


class VhostCheckStep(bootsteps.StartStopStep):
    label = "OmniMind RabbitMQ vhost check"

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.enabled = is_amqp_url(worker.app.conf.broker_url or "")

    def start(self, worker):
        if not self.enabled:
            return
        try:
            with worker.app.connection_for_write() as connection:
                if not vhost_default_is_quorum(connection):
                    logger.error(FIX.format(vhost=connection.virtual_host))
        except Exception as exc:  # the broker is away now: the consumer reports that itself
            logger.warning("Could not check the RabbitMQ vhost's default queue type: %s", exc)
