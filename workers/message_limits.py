"""Refusing a task message too large to run, before Celery decodes its body.

A plain client can put anything on a queue; a body over ``OMNIMIND_MAX_MESSAGE_BYTES``
would cost the worker its memory and CPU to decode and run. (On Redis the take script
has already parsed the message's envelope inside Redis: the limit protects Celery's
decode of the body, and the task, not that.) :func:`size_limited` is Celery's
default task strategy (``Task.Strategy``, its extension point for how a received
message becomes a request) with a size check first: an oversized message is logged,
counted (``omnimind_messages_refused_total{reason="too_large"}``), its result set to
``InvalidInput("message_too_large")`` so that its client gets a typed error, and
rejected without requeue (Redis: removed; RabbitMQ: dead-lettered or dropped), never
redelivered, even when the result backend is down (the failure is then only logged).

>>> body_size(type("M", (), {"body": b"x" * 10})())
10
"""
from __future__ import annotations

import logging

from celery.worker.strategy import default

from omnimind.config import settings
from omnimind.errors import InvalidInput
from omnimind.observability import metrics

logger = logging.getLogger(__name__)


def body_size(message) -> int:
    """The size of a message's body as the broker carried it."""
    body = message.body
    return len(body) if isinstance(body, (bytes, bytearray, str)) else 0


def size_limited(task, app, consumer, **kwargs):
    """Celery's default strategy for ``task``, refusing bodies over the limit first."""
    run = default(task, app, consumer, **kwargs)
    limit = settings.max_message_bytes

    def task_message_handler(message, body, ack, reject, callbacks, **options):
        size = body_size(message)
        if size <= limit:
            return run(message, body, ack, reject, callbacks, **options)
        task_id = (message.headers or {}).get("id")
        logger.error("Refused task %s[%s]: its message is %d bytes, over OMNIMIND_MAX_MESSAGE_BYTES (%d)",
                     task.name, task_id, size, limit)
        metrics.messages_refused.labels(reason="too_large").inc()
        try:
            if task_id:
                error = InvalidInput("message_too_large", f"the message is {size} bytes, over the limit of {limit}")
                app.backend.mark_as_failure(task_id, error, request=None, store_result=True)
        except Exception:  # the backend is down: the message must still go, or it comes back forever
            logger.exception("Could not store the refusal of task %s[%s] in the result backend", task.name, task_id)
        finally:
            message.reject_log_error(logger, consumer.connection_errors, requeue=False)

    return task_message_handler
