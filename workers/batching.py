"""Announces each received ``predict`` to this process's batcher.

A threads-pool worker receives a message in its consumer (the main thread), and a
task thread submits the request to the :class:`~omnimind.models.batching.DynamicBatcher`
a moment later. Announced at receipt, the request is one a forming batch may wait
for (``OMNIMIND_BATCH_MAX_DELAY_MS`` at most); a lone request has nothing announced
behind it and never waits. A predict revoked before it ran withdraws its announcement;
one refused by validation withdraws in the runtime.

The solo pool runs one task at a time, and under prefork a child serves what its
parent received: neither announces, so their batches never wait (:class:`ModelWarmupStep
<workers.bootsteps.ModelWarmupStep>` calls :func:`start` for the threads pool only).
"""
from __future__ import annotations

from typing import Callable

from celery import signals
from celery.worker import state as worker_state

PREDICT = "tasks.inference.predict"

_batcher = None


def _on_received(request=None, **_):
    if request is not None and request.name == PREDICT:
        _batcher.announce()


def _on_revoked(request=None, **_):
    if getattr(request, "name", None) == PREDICT:
        _batcher.withdraw()


_HANDLERS = ((signals.task_received, _on_received), (signals.task_revoked, _on_revoked))


def more_coming(consumer) -> Callable[[], bool]:
    """Whether ``consumer`` is about to receive more: its last take left messages in its
    queues (``omnimind.redelivery``'s backlog; unknown on other brokers) and it has room for
    another unacknowledged one (its prefetch limit)."""

    def coming() -> bool:
        try:
            backlog = consumer.task_consumer.channel.backlog
            limit = consumer.qos.value
        except AttributeError:  # not consuming yet, or a broker that tells no backlog
            return False
        return backlog > 0 and (not limit or len(worker_state.reserved_requests) < limit)

    return coming


def start(batcher, consumer=None) -> None:
    """Announce this worker's received predicts to ``batcher`` (None: batching is off), and
    let it wait for what ``consumer`` is about to receive."""
    global _batcher
    stop()
    if batcher is None:
        return
    _batcher = batcher
    if consumer is not None:
        batcher.more_coming = more_coming(consumer)
    for signal, receiver in _HANDLERS:
        signal.connect(receiver, weak=False, dispatch_uid=f"omnimind.batching.{receiver.__name__}")


def stop() -> None:
    global _batcher
    if _batcher is not None:
        _batcher.more_coming = None
    for signal, receiver in _HANDLERS:
        signal.disconnect(receiver, dispatch_uid=f"omnimind.batching.{receiver.__name__}")
    _batcher = None
