"""Whether a stock Celery client can send to the farm's quorum queues on a RabbitMQ vhost.

The farm declares its capability queues quorum (``omnimind.app.capability_queues``). A
stock Celery client declares the queue it sends to with no ``x-queue-type``; RabbitMQ
(3.10 and later) fills that in from the vhost's default queue type. On a vhost whose
default is quorum the two declarations are equal and the stock client just works; on
any other vhost RabbitMQ refuses the client's declaration (``PRECONDITION_FAILED -
inequivalent arg 'x-queue-type'``), unless the client sets
``task_create_missing_queue_type="quorum"`` (Celery 5.5 and later).

:func:`vhost_default_is_quorum` finds out with a probe queue; a worker on RabbitMQ
logs :data:`FIX` when it is not (``workers.vhost_check``).

>>> print(FIX.format(vhost="farm"))  # doctest: +ELLIPSIS
RabbitMQ vhost 'farm' does not make queues quorum by default: ... task_create_missing_queue_type="quorum" ...
"""
from __future__ import annotations

import uuid

#: What a worker logs when a stock client's declaration would be refused, and the two fixes.
FIX = (
    "RabbitMQ vhost '{vhost}' does not make queues quorum by default: a stock Celery client sending to the "
    "farm fails with PRECONDITION_FAILED (inequivalent arg 'x-queue-type' ... received none but current is "
    "quorum). Either create the vhost with `rabbitmqctl add_vhost {vhost} --default-queue-type quorum` "
    "(RabbitMQ >= 3.11: `rabbitmqctl update_vhost_metadata {vhost} --default-queue-type quorum`), or set "
    "task_create_missing_queue_type=\"quorum\" in every client (Celery >= 5.5)."
)


#: A probe queue left by a worker that died mid-check is deleted after this long unused (s).
PROBE_EXPIRES_S = 60


def vhost_default_is_quorum(connection) -> bool:
    """Whether a queue declared with no type on ``connection``'s vhost (a kombu
    Connection to RabbitMQ) is a quorum queue: a probe queue, declared typeless, is
    declared again as quorum, which RabbitMQ accepts only if it is one already."""
    from kombu import Queue

    name = f"omnimind.queue-type-probe.{uuid.uuid4().hex[:12]}"
    channel = connection.channel()
    try:
        # x-expires: a worker that dies mid-check leaves no durable probe queue behind.
        Queue(name, durable=True, expires=PROBE_EXPIRES_S)(channel).declare()
        probe = connection.channel()
        try:
            Queue(name, durable=True, expires=PROBE_EXPIRES_S,
                  queue_arguments={"x-queue-type": "quorum"})(probe).declare()
            return True
        except connection.channel_errors:
            return False
        finally:
            try:
                probe.close()
            except Exception:  # already closed by the broker's refusal
                pass
    finally:
        channel = connection.channel()
        channel.queue_delete(name)
        channel.close()
