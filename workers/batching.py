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

from celery import signals

PREDICT = "tasks.inference.predict"

_batcher = None


def _on_received(request=None, **_):
    if request is not None and request.name == PREDICT:
        _batcher.announce()


def _on_revoked(request=None, **_):
    if getattr(request, "name", None) == PREDICT:
        _batcher.withdraw()


_HANDLERS = ((signals.task_received, _on_received), (signals.task_revoked, _on_revoked))


def start(batcher) -> None:
    """Announce this worker's received predicts to ``batcher`` (None: batching is off)."""
    global _batcher
    stop()
    if batcher is None:
        return
    _batcher = batcher
    for signal, receiver in _HANDLERS:
        signal.connect(receiver, weak=False, dispatch_uid=f"omnimind.batching.{receiver.__name__}")


def stop() -> None:
    global _batcher
    for signal, receiver in _HANDLERS:
        signal.disconnect(receiver, dispatch_uid=f"omnimind.batching.{receiver.__name__}")
    _batcher = None
