"""The redelivery transport (:mod:`omnimind.redelivery`) on a broker behind Redis Sentinel.

For a ``sentinel://`` broker URL kombu uses its ``SentinelChannel``, which asks the
sentinels for the master and, after a failover, reconnects to the promoted replica. The
channel here is that one *and* OmniMind's redelivery channel: messages are taken with
``broker_take.lua`` and recorded under their holder, so a dead worker's messages come
back in seconds on Sentinel too. ``broker_transport_options`` must carry ``master_name``
(``omnimind.app`` passes ``OMNIMIND_SENTINEL_MASTER``).

A failover loses what the old master had not yet sent to the replica (README, "Redis
Sentinel"): a message published just before it, or the unacked record of one taken
just before it. A lost unacked record of a message still in its queue on the replica
means that message is delivered again (at-least-once, as after any worker death); a
lost publish is gone, and its client's ``get`` times out.

>>> from kombu.transport import redis as kombu_redis
>>> SentinelChannel.__mro__[1:3] == (Channel, kombu_redis.SentinelChannel)
True
>>> SentinelTransport.default_port, SentinelTransport.Channel is SentinelChannel
(26379, True)
"""
from __future__ import annotations

import redis
from kombu.transport import redis as kombu_redis

from omnimind.redelivery import Channel, HolderQoS, Poller

__all__ = ["SentinelChannel", "SentinelHolderQoS", "SentinelTransport"]


class SentinelHolderQoS(HolderQoS):
    """:class:`~omnimind.redelivery.HolderQoS` whose late acks and restores (after its channel
    closed) go through the channel's own sentinel-managed pool, kept alive here: a plain pool
    made from that pool's connection class and arguments would find the master only through
    the closed pool's proxy, which refers back to it weakly."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._sentinel_pool = self.channel.pool

    def _client_after_close(self):
        if self._late_client is None:
            self._late_client = redis.Redis(connection_pool=self._sentinel_pool)
        return self._late_client


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel taking and recording messages as :class:`omnimind.redelivery.Channel` does."""

    QoS = SentinelHolderQoS
    from_transport_options = kombu_redis.SentinelChannel.from_transport_options + ("keyspace_wake",)


class SentinelTransport(kombu_redis.SentinelTransport):
    """``sentinel://`` with holder records (see the module docstring)."""

    Channel = SentinelChannel

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cycle = Poller()
