"""workers.message_limits: an oversized message is rejected without requeue, whatever the
result backend does (a backend that is down must not make it come back forever)."""
import logging
from types import SimpleNamespace

from celery import Celery

from workers.message_limits import size_limited


class Message:
    """What the strategy reads of a kombu message, and what it does to it."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.headers = {"id": "t-1", "task": "tasks.x"}
        self.rejected = []

    def reject_log_error(self, logger, errors, requeue=False):
        self.rejected.append(requeue)


def strategy(app):
    def x():
        return None

    task = app.task(name="tasks.x")(x)
    consumer = SimpleNamespace(hostname="w@h", event_dispatcher=SimpleNamespace(enabled=False, send=None),
                               connection_errors=(), app=app, controller=SimpleNamespace(state=SimpleNamespace(revoked=set())),
                               disable_rate_limits=True, task_buckets={}, _limit_order=0, timer=SimpleNamespace(call_at=None),
                               pool=SimpleNamespace(apply_async=None), on_task_request=None, apply_eta_task=None,
                               _limit_post_eta=None, _limit_task=None, qos=None)
    return size_limited(task, app, consumer)


def test_an_oversized_message_is_rejected_even_when_the_backend_is_down(monkeypatch, caplog):
    app = Celery("limits", backend="cache+memory://", set_as_current=False)

    def down(*args, **kwargs):
        raise ConnectionError("backend down")

    monkeypatch.setattr(app.backend, "mark_as_failure", down)
    monkeypatch.setattr("workers.message_limits.settings", SimpleNamespace(max_message_bytes=1024))
    message = Message(b"x" * 2048)
    with caplog.at_level(logging.ERROR, logger="workers.message_limits"):
        strategy(app)(message, None, None, None, [])
    assert message.rejected == [False]
    assert "Could not store the refusal" in caplog.text


def test_an_oversized_message_gets_its_typed_error_and_is_rejected(monkeypatch):
    app = Celery("limits", backend="cache+memory://", set_as_current=False)
    monkeypatch.setattr("workers.message_limits.settings", SimpleNamespace(max_message_bytes=1024))
    message = Message(b"x" * 2048)
    strategy(app)(message, None, None, None, [])
    assert message.rejected == [False]
    result = app.AsyncResult("t-1")
    assert result.state == "FAILURE" and "message_too_large" in str(result.result)
