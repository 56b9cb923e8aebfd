"""The reconnect schedule every broker and result-backend client of the app follows
(omnimind.reconnect): an attempt at once, then at most OMNIMIND_RECONNECT_INTERVAL apart."""
import pytest
from kombu.exceptions import OperationalError

from omnimind.app import app
from omnimind.config import settings
from omnimind.reconnect import Connection
from tests.helpers import free_port


def refused_url():
    return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there


def test_the_workers_consumer_retries_at_once_then_every_half_second():
    conn = app.connection_for_read(refused_url())
    assert isinstance(conn, Connection)
    waits = []
    # As celery.worker.consumer.Consumer.ensure_connected calls it: errback and max_retries only.
    with pytest.raises(OperationalError):
        conn.ensure_connection(lambda exc, interval: waits.append(interval), 4)
    assert waits == [0, 0.25, 0.5, 0.5] and settings.reconnect_interval == 0.5
    assert app.conf.broker_connection_max_retries >= 5000  # about 45 minutes, as Celery's 100 at 2..30 s


def test_intervals_a_caller_passes_win():
    conn = app.connection_for_write(refused_url())
    waits = []
    with pytest.raises(OperationalError):
        conn.ensure_connection(lambda exc, interval: waits.append(interval), 2, 0.01, 0.01, 0.05)
    assert waits == [0.01, 0.02]
    with pytest.raises(OperationalError):
        conn.ensure_connection(lambda exc, interval: waits.append(interval), 1, interval_start=0.03)
    assert waits[2:] == [0.03]


def test_the_result_backend_retries_on_the_same_schedule():
    policy = app.backend.retry_policy
    assert (policy["interval_start"], policy["interval_step"], policy["interval_max"]) == (0, 0.25, 0.5)
    assert app.backend.always_retry and app.backend.max_sleep_between_retries_ms == 500
