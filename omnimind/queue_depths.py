"""How many messages wait in each capability queue, on either broker: the Redis
lists kombu keeps per queue and priority, or RabbitMQ's own count (a passive
``queue.declare``). ``omnimind status``, the workers' queue gauges and the
autoscaling signal (``omnimind.scaling.autoscale``) read it here.
"""
from __future__ import annotations

import redis
from kombu import Connection

from omnimind import keys
from omnimind.config import QUEUES
from omnimind.redis_client import redis_client


def queue_depths(broker: redis.Redis | Connection) -> dict[str, int]:
    """Messages waiting per capability queue (delivered, unacknowledged ones not counted).

    ``broker``: a Redis client on a Redis broker (one round trip over the lists
    kombu keeps per queue and priority), or a kombu ``Connection`` to any other
    broker, such as RabbitMQ: a passive ``queue.declare`` per queue, whose message
    count is what waits. A queue nobody has declared yet holds nothing.

    >>> with Connection("memory://") as conn, conn.SimpleQueue("training") as training:
    ...     _ = training.clear(), training.put({"samples": 1})
    ...     queue_depths(conn)
    {'inference': 0, 'training': 1, 'memory': 0, 'agents': 0}
    """
    if not isinstance(broker, redis.Redis):
        return _declared_depths(broker)
    pipe = broker.pipeline(transaction=False)
    for queue in QUEUES:
        for name in keys.broker_queue_lists(queue):
            pipe.llen(name)
    lengths = pipe.execute()
    steps = len(keys.broker_queue_lists(QUEUES[0]))
    return {queue: sum(lengths[i * steps : (i + 1) * steps]) for i, queue in enumerate(QUEUES)}


def _declared_depths(connection: Connection) -> dict[str, int]:
    depths: dict[str, int] = {}
    channel = None
    try:
        for queue in QUEUES:
            channel = channel or connection.channel()
            try:
                depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
            except connection.channel_errors as exc:
                if str(getattr(exc, "reply_code", "")) != "404":
                    raise
                depths[queue] = 0
                channel = None  # the broker closed it with the error
    finally:
        if channel is not None:
            try:
                channel.close()
            except Exception:  # the connection is gone too: the next read reconnects
                pass
    return depths


class BrokerQueueDepths:
    """Reads :func:`queue_depths` from the broker at ``url``, again and again: from
    the process's client of a Redis broker, or on one kombu connection to any other
    (opened at the first read, and again after a failed one). Close it when done.

    >>> with BrokerQueueDepths("memory://") as broker:
    ...     broker.read()["inference"]
    0
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._connection: Connection | None = None

    def read(self) -> dict[str, int]:
        if self.url.partition("://")[0].lower() in ("redis", "rediss", "sentinel"):
            return queue_depths(redis_client(self.url))
        if self._connection is None:
            self._connection = Connection(self.url, connect_timeout=5)
        try:
            return queue_depths(self._connection)
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # already broken
                pass

    def __enter__(self) -> "BrokerQueueDepths":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
