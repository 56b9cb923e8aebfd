"""Quick recovery from a broker or Redis restart: every client retries at least
every ``OMNIMIND_RECONNECT_INTERVAL`` seconds (0.5 by default).

Out of the box the waits after a lost connection are long for a Redis that
restarts in a second: Celery's worker consumer reconnects through kombu's
``Connection.ensure_connection`` with kombu's defaults (2 s, then 4, 6 … up to
30 s between attempts), so a 0.3 s Redis restart stopped every worker for 2 s;
the Redis result backend retries after 0, 1, 1, … s (a client's
``AsyncResult.get`` re-subscribes with the same policy); the model follower
backed off up to 5 s. Here each of them gets one schedule: an attempt at once, then at most
``interval`` seconds apart, with about the same total budget as before (the
worker's consumer gives up after ~45 minutes, as it did):

* :class:`Connection` is kombu's connection whose ``ensure_connection`` takes
  the ``interval_start``/``interval_step``/``interval_max`` that the caller
  leaves out from the ``broker_transport_options`` (kombu already reads them
  there when a channel reconnects). Celery's consumer passes none, so this is
  where its reconnect schedule is set; it reaches Celery through the app's
  ``amqp`` class (:class:`AMQP`), a constructor argument of ``Celery``.
* :func:`backend_retry_policy` is the result backend's ``retry_policy``
  (``result_backend_transport_options``): storing a result, and a client's
  ``AsyncResult.get`` re-subscribing to its result; :func:`backend_always_retry`
  makes the rest of storing a result (and reading one) retry too.
* The model follower (``workers.model_sync``) backs off up to ``interval``.

OmniMind's own Redis clients (``omnimind.redis_client``) need nothing: they do
not retry (a retried INCR or Lua publish could run twice), and their pools
replace a connection the server closed when it is next checked out.

>>> broker_options(0.5)
{'interval_start': 0, 'interval_step': 0.25, 'interval_max': 0.5}
>>> backend_retry_policy(0.5)["interval_max"], backend_retry_policy(0.5)["max_retries"]
(0.5, 38)
>>> broker_max_retries(0.5) >= 5000, broker_max_retries(30.0)
(True, 100)
"""
from __future__ import annotations

import math

from celery.app.amqp import AMQP as CeleryAMQP
from kombu import Connection as KombuConnection

__all__ = ["AMQP", "Connection", "broker_options", "backend_always_retry", "backend_retry_policy", "broker_max_retries"]

#: Seconds a worker keeps trying to reach its broker before its consumer gives up:
#: what Celery's 100 attempts at kombu's 2 s … 30 s intervals add up to.
BROKER_RETRY_BUDGET_S = 2700.0
#: Seconds the result backend keeps retrying one operation: Celery's 20 attempts at 0, 1, 1 … s.
BACKEND_RETRY_BUDGET_S = 19.0
_INTERVAL_KEYS = ("interval_start", "interval_step", "interval_max")


def broker_options(interval: float) -> dict:
    """``broker_transport_options`` entries: retry at once, then at most ``interval`` s apart."""
    return {"interval_start": 0, "interval_step": interval / 2, "interval_max": interval}


def broker_max_retries(interval: float) -> int:
    """``broker_connection_max_retries`` that keeps the old time budget at ``interval`` s apart."""
    return max(100, math.ceil(BROKER_RETRY_BUDGET_S / interval))


def backend_always_retry(interval: float) -> dict:
    """Settings that make a worker retry storing a result (and a client reading one) on a
    connection error, with a full-jitter backoff from 10 ms up to ``interval``: without them
    the GET that ``store_result`` begins with fails at once, and the client waits its timeout.

    >>> backend_always_retry(0.5)["result_backend_max_sleep_between_retries_ms"]
    500
    """
    return {
        "result_backend_always_retry": True,
        "result_backend_base_sleep_between_retries_ms": 10,
        "result_backend_max_sleep_between_retries_ms": max(10, round(interval * 1000)),
        # Full jitter sleeps interval/2 on average: about BACKEND_RETRY_BUDGET_S in all.
        "result_backend_max_retries": max(20, math.ceil(2 * BACKEND_RETRY_BUDGET_S / interval)),
    }


def backend_retry_policy(interval: float) -> dict:
    """The Redis result backend's ``retry_policy``: the same schedule, Celery's old budget."""
    return {"max_retries": max(20, math.ceil(BACKEND_RETRY_BUDGET_S / interval)),
            **broker_options(interval)}


class Connection(KombuConnection):
    """A kombu connection whose ``ensure_connection`` defaults to the transport
    options' retry intervals, as its ``default_channel`` and ``ensure`` already do."""

    def ensure_connection(self, *args, **kwargs):
        options = self.transport_options or {}
        # After (errback, max_retries) come the three intervals, positionally.
        for position, key in enumerate(_INTERVAL_KEYS, start=2):
            if key in options and len(args) <= position:
                kwargs.setdefault(key, options[key])
        return super().ensure_connection(*args, **kwargs)


class AMQP(CeleryAMQP):
    """Celery's AMQP helper, making its connections with :class:`Connection`."""

    Connection = Connection
    BrokerConnection = Connection
