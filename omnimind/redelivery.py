"""Redelivery of a dead worker's messages on a Redis broker, in seconds, not at
the visibility timeout.

kombu's Redis transport emulates acks: a taken message moves into the ``unacked``
hash, and only a sweep for entries older than the visibility timeout (an hour by
default) puts it back; nothing says *which* worker holds it.

:class:`Transport` is kombu's Redis transport whose QoS also records the
*holder* of each unacked message: ``keys.broker_held(holder)`` gets the
delivery tag in the same pipeline as kombu's own unacked write, and loses it
in the same pipeline as the ack. A holder is one worker incarnation (``<node
id>/<random>``); it stamps ``keys.BROKER_HOLDERS`` with the Redis server's clock
every heartbeat (:meth:`Redelivery.beat`).

:meth:`Redelivery.sweep`, run by every worker every heartbeat, finds holders
that are dead: silent for three heartbeats and a second, or replaced by a newer
incarnation of the same node. One sweeper at a time takes a holder's lease
(``SET NX PX``), puts each of its messages back on its queue with kombu's own
``restore_by_tag`` (a WATCH/MULTI transaction: a message acked or restored
meanwhile is skipped, so a restore is idempotent), then forgets the holder.

kombu pops (BRPOP), then writes ``unacked``: a kill in between lost the message.
:class:`Channel` takes it with one script that pops and records it at once. The pop
is never a blocking one, so an idle worker needs a wake-up that takes nothing: Redis
keyspace events of its queue lists (any producer's LPUSH, a plain Celery client's
included), else the doorbells OmniMind's own producers ring (see :class:`Channel`).

>>> holder = new_holder("inference@gpu-1")
>>> node_of(holder)
'inference@gpu-1'
>>> node_of(new_holder("inference@gpu-1")) == node_of(holder) and new_holder("a") != new_holder("a")
True
"""
from __future__ import annotations

import logging
import uuid
from queue import Empty
from time import monotonic, time

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

from omnimind import keys
from omnimind.lua import source
from omnimind.observability import metrics

logger = logging.getLogger(__name__)

#: Where Celery finds this transport (``broker_transport``) for ``redis://`` URLs, and its
#: Sentinel variant for ``sentinel://`` ones (omnimind.sentinel_broker).
TRANSPORT_PATH = "omnimind.redelivery:Transport"
SENTINEL_TRANSPORT_PATH = "omnimind.sentinel_broker:SentinelTransport"
HOLDER_TRANSPORTS = (TRANSPORT_PATH, SENTINEL_TRANSPORT_PATH)
#: A sweeper holds a dead holder's lease this long (ms) at most, should it die mid-restore.
LEASE_MS = 30_000

_holder: str | None = None


def new_holder(node_id: str) -> str:
    """A fresh holder id for one incarnation of the worker ``node_id``."""
    return f"{node_id}/{uuid.uuid4().hex[:12]}"


def node_of(holder: str) -> str:
    return holder.rpartition("/")[0]


def set_holder(holder: str | None) -> None:
    """Make this process record the messages it takes as held by ``holder``
    (a worker's main process, before its consumer starts; None: stop)."""
    global _holder
    _holder = holder


class HolderQoS(kombu_redis.QoS):
    """kombu's Redis ack emulation, plus the holder's set of delivery tags.

    A task that finishes after its channel was closed (the broker went away) still
    acks, and the closing channel restores what it held: kombu's own QoS would raise
    AttributeError there (no pool, no connection) and stop the worker as an
    "Unrecoverable error"; here :meth:`Channel.conn_or_acquire` then hands out a client
    of the QoS's own, made like the channel's.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        pool = self.channel.pool  # the channel is open now: remember how it connects
        self._pool_args = (pool.connection_class, dict(pool.connection_kwargs))
        self._late_client = None

    def _channel_closed(self) -> bool:
        channel = self.channel
        return channel._pool is None and getattr(channel.connection, "client", None) is None

    def _client_after_close(self):
        if self._late_client is None:
            import redis

            connection_class, kwargs = self._pool_args
            self._late_client = redis.Redis(connection_pool=redis.ConnectionPool(
                connection_class=connection_class, **kwargs))
        return self._late_client

    def append(self, message, delivery_tag):
        holder = _holder
        if holder is None:  # a client process: plain kombu
            return super().append(message, delivery_tag)
        if delivery_tag is not None and delivery_tag == self.channel._taken_tag:
            # The take script recorded it already (and atomically with the pop).
            return kombu_redis.virtual.QoS.append(self, message, delivery_tag)
        delivery = message.delivery_info
        raw = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time()}).hset(
                self.unacked_key, delivery_tag, raw
            ).sadd(keys.broker_held(holder), delivery_tag).execute()
            # kombu's in-memory bookkeeping, skipping the Redis QoS's own write above.
            kombu_redis.virtual.QoS.append(self, message, delivery_tag)

    def _remove_from_indices(self, delivery_tag, pipe=None):
        pipe = super()._remove_from_indices(delivery_tag, pipe)
        holder = _holder
        return pipe.srem(keys.broker_held(holder), delivery_tag) if holder else pipe


#: Keyspace events of a list that add to it (a pop, a trim or a delete only takes away).
_ADDING_EVENTS = frozenset({b"lpush", b"rpush", b"linsert", b"lset", b"lpushx", b"rpushx", b"rename_to", b"restore"})


def keyspace_flags(current: str) -> str:
    """``notify-keyspace-events`` flags that keep ``current`` and add keyspace (``K``) events of
    list commands (``l``); ``current`` itself when it has them already.

    >>> keyspace_flags(""), keyspace_flags("Ex"), keyspace_flags("AK"), keyspace_flags("Kl")
    ('Kl', 'ExKl', 'AK', 'Kl')
    """
    missing = ("" if "K" in current else "K") + ("" if "l" in current or "A" in current else "l")
    return current + missing


class Channel(kombu_redis.Channel):
    """kombu's Redis channel, taking messages with ``broker_take.lua`` instead of BRPOP.

    kombu's BRPOP removes a message from its queue, and only the reply's reader
    writes it to ``unacked``: a worker killed in between loses it. Here a worker
    (a process with a holder) sends the take script on kombu's BRPOP connection:
    it pops and records in one step, and tells how many messages are left
    (:attr:`backlog`). With none left the worker waits for a wake-up that takes
    nothing, so that no message is ever outside both its queue and ``unacked``:

    - keyspace events (``keyspace_wake``, on by default): the channel subscribes, on a
      connection of its own, to ``__keyspace@<db>__:<list>`` of each of its queue lists
      (every priority step), after adding ``Kl`` to the server's ``notify-keyspace-events``.
      Any LPUSH wakes it, whoever the producer: a plain Celery client, ``celery call``,
      Flower, another language. While waiting it sends nothing; a take runs at least every
      ``brpop_timeout`` (1 s) still, should an event be lost (pub/sub is at most once).
    - else (CONFIG refused, or turned off) it blocks on the queues' doorbells
      (``keys.broker_doorbell``, rung by this transport's ``_put``; the take cleared their
      stale tokens) for ``brpop_timeout`` at most, which also catches the messages of a
      producer that rings no doorbell, a second late.
    """

    QoS = HolderQoS
    from_transport_options = kombu_redis.Channel.from_transport_options + ("keyspace_wake", "keyspace_check_interval")
    #: Wake on keyspace events of the queue lists (see above).
    keyspace_wake = True
    _keyspace_refused = False  # CONFIG SET was refused: doorbells only
    _flags_reset_warned = False  # (on the class) a reset of the server's flags was logged as a warning
    _notify = None  # the keyspace-event subscription (a redis PubSub), once made
    _notify_channels: frozenset = frozenset()  # what it subscribed to
    _notify_for = None  # the active queues those are for
    _in_notify = False  # its SUBSCRIBE was sent on its current connection
    _notify_live = False  # ... and confirmed for every channel: events now wake this channel
    _woken = False  # an event came since the last take was sent: take next
    _notify_watched = False  # the poller reads the subscription's socket (not while busy)
    #: Seconds between two checks, while idle, that the server's ``notify-keyspace-events`` still
    #: has the flags this channel needs (an operator or a restart may reset them: events stop).
    keyspace_check_interval = 10.0
    _keyspace_checked_at: float | None = None  # when the flags were last checked (None: not since a reconnect)
    _notify_pinged_at = 0.0  # when the subscription's health was last checked
    #: Health checks of the subscription left unanswered before its connection is dropped (and made again).
    notify_max_missed_pings = 2
    _last_take_at = 0.0
    #: At most this many tokens wait on a doorbell (a farm with no worker for a while).
    doorbell_max = 1024
    #: A doorbell nobody waits on (a control command's reply queue) expires: tokens are only
    #: wake-ups, and the worker's 1 s timeout finds any message whose token is gone.
    doorbell_ttl_ms = 60_000
    _take_next = True  # the next command: a take (else: wait on the doorbells)
    _waiting = False  # the outstanding command is the doorbell wait
    _taken_tag = None  # recorded by the take script: the QoS need not write it again
    #: After the last take: messages left in the first of this worker's queues that has any (0: none has).
    backlog = 0

    def conn_or_acquire(self, client=None):
        # Every Redis use of a channel kombu closed (a late ack, the restore at close, its
        # exchange lookup) goes through the QoS's own client (see HolderQoS).
        if client is None and self._qos is not None and self._qos._channel_closed():
            client = self._qos._client_after_close()
        return super().conn_or_acquire(client)

    def _put(self, queue, message, **kwargs):
        bell = keys.broker_doorbell(queue)
        batch = kwargs.get("_publish_batch")
        if batch is not None:
            super()._put(queue, message, **kwargs)
            batch.add("lpush", bell, 1)
            batch.add("ltrim", bell, 0, self.doorbell_max - 1)
            batch.add("pexpire", bell, self.doorbell_ttl_ms)
            return
        expiring = bool(self._expires and queue in self._expires)
        if expiring:
            super()._put(queue, message, **kwargs)
        with self.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)
            if not expiring:  # the message and its doorbell in one round trip
                pipe.lpush(self._q_for_pri(queue, self._get_message_priority(message, reverse=False)), dumps(message))
            pipe.lpush(bell, 1).ltrim(bell, 0, self.doorbell_max - 1).pexpire(bell, self.doorbell_ttl_ms).execute()

    def _brpop_start(self, timeout=None):
        holder = _holder
        if holder is None or self.global_keyprefix:
            self._waiting = None  # kombu's own BRPOP
            return super()._brpop_start(timeout)
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        now = monotonic()
        take = self._take_next or self._woken
        if not take and (self._notify_live or self._in_notify):
            if now - self._last_take_at < self.brpop_timeout:
                # Idle: the poller watches the keyspace events (Poller.on_poll_start), or the
                # confirmation of their subscription, which asks for a take itself.
                return
            take = True  # the safety net, should an event have been lost
        self._in_poll = self.client.connection
        self._brpop_sent_at = now
        if take:
            lists = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
            names = [*lists, *map(keys.broker_doorbell, queues), self.unacked_key, self.unacked_index_key,
                     keys.broker_held(holder)]
            self._waiting = False
            self._woken = False  # an event from now on may be for a message this take misses
            self._last_take_at = now
            self.client.connection.send_command("EVAL", source("broker_take"), len(names), *names, time(), len(lists))
        else:
            timeout = self.brpop_timeout if timeout is None else timeout
            self._waiting = True
            self.client.connection.send_command("BRPOP", *map(keys.broker_doorbell, queues), timeout or 0)

    def _brpop_read(self, **options):
        if self._waiting is None:
            return super()._brpop_read(**options)
        try:
            command = "BRPOP" if self._waiting else "EVAL"
            try:
                reply = self.client.parse_response(self.client.connection, command, **options)
            except self.connection_errors:
                self.client.connection.disconnect()  # the next round reconnects
                raise
            if self._waiting or not reply:
                # A doorbell or the timeout: take next. Nothing to take: wait next.
                self._take_next = bool(self._waiting)
                if not self._waiting:
                    self.backlog = 0
                raise Empty()
            dest, item, left = reply
            # None left: wait on the doorbells, not a take that would find nothing.
            self.backlog = int(left)
            self._take_next = self.backlog > 0
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            message = envelope(item)
            if message is None:
                # Not a kombu message (a raw LPUSH): the take script handed it over unrecorded,
                # so dropping it here is its one and only acknowledgement.
                metrics.messages_refused.labels(reason="not_an_envelope").inc()
                logger.error("Refused an item of queue %s that is not a kombu message (dropped): %.200r",
                             dest, item)
                raise Empty()
            self._taken_tag = message.get("properties", {}).get("delivery_tag")
            try:
                self.connection._deliver(message, dest)
            finally:
                self._taken_tag = None
            return True
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()

    # --- keyspace events -------------------------------------------------------------------

    def wants_keyspace_events(self) -> bool:
        """Whether this channel waits on keyspace events (a worker's, consuming, allowed to)."""
        return bool(_holder is not None and self.keyspace_wake and not self._keyspace_refused
                    and not self.global_keyprefix and self.active_queues)

    @property
    def notify_client(self):
        """The keyspace-event subscription, on a connection of its own."""
        if self._notify is None:
            self._notify = self._create_client(asynchronous=True).pubsub()
        return self._notify

    def _keyspace_channels(self) -> frozenset:
        db = self.client.connection_pool.connection_kwargs.get("db", 0) or 0
        return frozenset(keys.keyspace_channel(db, self._q_for_pri(queue, pri))
                         for queue in self.active_queues for pri in self.priority_steps)

    def _enable_keyspace_events(self) -> bool:
        """Add ``Kl`` to the server's ``notify-keyspace-events`` (after a restart too); False,
        with a warning, where the server refuses CONFIG (a managed Redis, an ACL)."""
        try:
            self._set_keyspace_flags()
            return True
        except self.ResponseError as exc:
            self._refuse_keyspace(exc)
            return False

    def _set_keyspace_flags(self) -> bool:
        """Make the server's flags include ``Kl``; True if they had to be set."""
        self._keyspace_checked_at = monotonic()
        with self.conn_or_acquire() as client:
            current = bytes_to_str(client.config_get("notify-keyspace-events").get("notify-keyspace-events", ""))
            wanted = keyspace_flags(current)
            if wanted != current:
                client.config_set("notify-keyspace-events", wanted)
                return True
        return False

    def _refuse_keyspace(self, exc) -> None:
        self._keyspace_refused = True
        logger.warning(
            "Redis broker refused CONFIG SET notify-keyspace-events (%s): messages from producers other "
            "than OmniMind's own (a plain Celery client, celery call) are taken within %s s, not at once. "
            "Set notify-keyspace-events to include 'Kl' on the server, or OMNIMIND_BROKER_KEYSPACE_WAKE=0 "
            "to silence this.", exc, self.brpop_timeout)

    def check_keyspace_wake(self, now: float) -> None:
        """While idle on keyspace events: every ``keyspace_check_interval`` s, that the server
        still sends them (flags reset at runtime: set again, counted, a warning the first time),
        and every ``health_check_interval`` s that the subscription's connection answers (a
        half-open one is silent, not an error: dropped after missed pings, and made again)."""
        if not self._in_notify:
            return
        if self._keyspace_checked_at is None or now - self._keyspace_checked_at >= self.keyspace_check_interval:
            try:
                if self._set_keyspace_flags():
                    metrics.broker_keyspace_flags_restored.inc()
                    log = logger.warning if not Channel._flags_reset_warned else logger.info
                    Channel._flags_reset_warned = True
                    log("Redis broker: notify-keyspace-events had lost the flags 'Kl' (reset by CONFIG SET, or a "
                        "restart without them in redis.conf): set them again. Idle workers missed the messages "
                        "sent meanwhile until their next take; keep 'Kl' in the server's configuration.")
                    self._woken = True  # events were missed: a take at once
            except self.ResponseError as exc:
                self._refuse_keyspace(exc)
                return
            except self.connection_errors:
                return  # the broker is away: the consumer's own connection handles that
        interval = self.health_check_interval
        pubsub = self._notify
        if not interval or pubsub is None or pubsub.connection is None or now - self._notify_pinged_at < interval:
            return
        self._notify_pinged_at = now
        if pubsub.health_check_response_counter >= self.notify_max_missed_pings:
            logger.warning("Redis broker: the keyspace-event connection missed %d health checks; reconnecting",
                           pubsub.health_check_response_counter)
            pubsub.health_check_response_counter = 0
            pubsub.connection.disconnect()  # Channel._on_connection_disconnect: resubscribes
            return
        try:
            pubsub.check_health()
        except self.connection_errors as exc:
            logger.info("Redis broker: keyspace-event connection lost (%s); resubscribing", exc)
            pubsub.connection.disconnect()

    def _notify_subscribe(self) -> None:
        """(Re)subscribe to the keyspace events of the current queue lists; the confirmation
        (read by :meth:`_notify_read`) makes them live and asks for a take, for whatever came
        before the server had subscribed."""
        wanted = self._keyspace_channels()
        self._notify_for = frozenset(self.active_queues)
        # The flags: once per connection (a lost one may be a restarted server); the idle check keeps them.
        if self._keyspace_checked_at is None and not self._enable_keyspace_events():
            return
        pubsub = self.notify_client
        stale = self._notify_channels - wanted if self._in_notify else frozenset()
        if stale:
            pubsub.unsubscribe(*stale)
        new = wanted if not self._in_notify else wanted - self._notify_channels
        if new:
            self._notify_live = False
            pubsub.subscribe(*sorted(new))
        self._notify_channels = wanted
        self._in_notify = True

    def _notify_read(self):
        """Read what the subscription has: an adding event wakes this channel (a take next)."""
        pubsub = self._notify
        if pubsub is None or pubsub.connection is None:
            raise Empty()
        try:
            while pubsub.connection is not None and pubsub.connection.can_read(timeout=0):
                reply = pubsub.parse_response(block=False, timeout=0)
                if reply is None:  # a health check's answer
                    continue
                kind = reply[0]
                if kind == b"message":
                    if reply[2] in _ADDING_EVENTS:
                        self._woken = True
                elif kind == b"subscribe" and int(reply[2]) >= len(self._notify_channels) and self._in_notify:
                    if not self._notify_live:
                        logger.info("Redis broker: idle, this channel waits on the keyspace events of "
                                    "%d queue lists", len(self._notify_channels))
                    self._notify_live = True
                    self._woken = True  # what was pushed before the server subscribed
        except self.connection_errors as exc:
            logger.info("Redis broker: keyspace-event connection lost (%s); resubscribing", exc)
            self._notify_lost()
            if pubsub.connection is not None:
                pubsub.connection.disconnect()
        raise Empty()

    def _notify_lost(self) -> None:
        self._in_notify = False
        self._notify_live = False
        self._notify_channels = frozenset()
        self._keyspace_checked_at = None  # a restarted server has its flags from redis.conf
        self._woken = True  # a take at once: events may have been missed

    def notify_pause(self) -> None:
        """Unsubscribe while busy: a channel with a backlog takes again anyway, and the events
        it would not read meanwhile (two per message, farm-wide) would pile up in Redis, in this
        client's pub/sub output buffer. Subscribing again when idle asks for a take (see
        :meth:`_notify_read`), so nothing pushed meanwhile waits."""
        if not self._in_notify:
            return
        channels, pubsub = self._notify_channels, self._notify
        self._in_notify = False
        self._notify_live = False
        self._notify_channels = frozenset()
        if channels and pubsub is not None and pubsub.connection is not None:
            try:
                pubsub.unsubscribe(*channels)
            except self.connection_errors:
                pubsub.connection.disconnect()

    def _on_connection_disconnect(self, connection):
        if self._notify is not None and self._notify.connection is connection:
            self._notify_lost()
        super()._on_connection_disconnect(connection)

    def _poll_error(self, type, **options):
        if type == "NOTIFY":
            return self._notify_read()
        return super()._poll_error(type, **options)

    def close(self):
        super().close()
        pubsub, self._notify = self._notify, None
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:  # the broker is gone already
                pass


class Poller(kombu_redis.MultiChannelPoller):
    """kombu's poller, watching each idle channel's keyspace events too (``NOTIFY``).

    A channel with a backlog takes again anyway: it unsubscribes meanwhile (each message
    brings two events, its push and its pop: reading them one by one cost a quarter of a
    burst's throughput, and leaving them unread piles them up in Redis), and subscribes again
    once idle. An idle channel also checks its subscription (:meth:`Channel.check_keyspace_wake`).
    An event is read even while the channel may take nothing more (its prefetch is full):
    it only marks the channel for a take, and an unread one would spin the event loop.

    >>> isinstance(Transport.__new__(Transport), kombu_redis.Transport), issubclass(Poller, kombu_redis.MultiChannelPoller)
    (True, True)
    """

    def on_poll_start(self):
        now = monotonic()
        for channel in self._channels:
            if getattr(channel, "wants_keyspace_events", None) and channel.wants_keyspace_events():
                busy = channel._take_next
                self._register_NOTIFY(channel, busy)
                self._watch_NOTIFY(channel, not busy)
                if not busy:
                    channel.check_keyspace_wake(now)
        super().on_poll_start()

    def _watch_NOTIFY(self, channel, watch: bool) -> None:
        if watch == channel._notify_watched:
            return
        sock = self._chan_to_sock.get((channel, channel.notify_client, "NOTIFY"))
        if sock is None:
            return
        if watch:
            self.poller.register(sock, self.eventflags)
        else:
            self._unregister_from_poll(sock.fileno())
        channel._notify_watched = watch

    @property
    def fds(self):
        return {fd: chan for fd, chan in super().fds.items() if chan[1] != "NOTIFY" or chan[0]._notify_watched}

    def _register_NOTIFY(self, channel, busy: bool):
        pubsub = channel.notify_client
        if not self._client_registered(channel, pubsub, "NOTIFY"):
            channel._in_notify = False
            self._register(channel, pubsub, "NOTIFY")
            channel._notify_watched = True
        if busy:
            channel.notify_pause()
        elif not channel._in_notify or channel._notify_for != frozenset(channel.active_queues):
            channel._notify_subscribe()

    def on_readable(self, fileno):
        chan_type = self._fd_to_chan.get(fileno)
        if chan_type is not None and chan_type[1] == "NOTIFY" and fileno not in self._paused_brpop:
            return chan_type[0]._notify_read()
        return super().on_readable(fileno)


def envelope(item):
    """A Redis list item as kombu's message envelope, or None when it is not one.

    >>> envelope(b'{"body": "e30=", "properties": {"delivery_tag": "t"}}')["properties"]
    {'delivery_tag': 't'}
    >>> envelope(b'not json'), envelope(b'{"hello": 1}'), envelope(b'[1, 2]')
    (None, None, None)
    """
    try:
        message = loads(bytes_to_str(item))
    except (ValueError, TypeError, UnicodeDecodeError):
        return None
    if isinstance(message, dict) and "body" in message and isinstance(message.get("properties"), dict):
        return message
    return None


class Transport(kombu_redis.Transport):
    """``redis://`` with holder records (see the module docstring)."""

    Channel = Channel

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cycle = Poller()


def transport_for(broker_url: str) -> str | None:
    """``broker_transport`` for a broker URL: this module's transport (or its Sentinel
    variant), None (kombu's choice) for anything else.

    >>> transport_for("redis://127.0.0.1:6379/0"), transport_for("amqp://guest@rabbit//")
    ('omnimind.redelivery:Transport', None)
    >>> transport_for("sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26379")
    'omnimind.sentinel_broker:SentinelTransport'
    """
    scheme = broker_url.partition("://")[0].lower()
    return {"redis": TRANSPORT_PATH, "rediss": TRANSPORT_PATH, "sentinel": SENTINEL_TRANSPORT_PATH}.get(scheme)


class Redelivery:
    """One worker's part in redelivery: stamp its own holder, and restore the
    messages of dead holders.

    ``channel`` is a channel of :class:`Transport` on the broker (its ``client``
    is the broker's Redis); ``heartbeat_interval`` is how often :meth:`beat` and
    :meth:`sweep` run. A holder is dead when silent for ``dead_after`` seconds,
    just past the registry's UNREACHABLE (three missed heartbeats), or when this
    holder has run for ``replaced_after`` and the other, of the same node, has not
    stamped since this one started: a worker restarted under the same name gives
    back what its last life held within two heartbeats, while a twin started under
    the same name by mistake, which keeps stamping, is never taken for dead.

    >>> r = Redelivery.__new__(Redelivery); r.heartbeat_interval = 2.0
    >>> r.dead_after, r.replaced_after
    (7.0, 3.0)
    """

    def __init__(self, channel, holder: str, heartbeat_interval: float) -> None:
        self.channel = channel
        self.holder = holder
        self.heartbeat_interval = heartbeat_interval
        client = channel.client
        self._beat = client.register_script(source("broker_holder_beat"))
        self._dead = client.register_script(source("broker_dead_holders"))
        self._restored = 0
        self._born: float | None = None  # the server time of this holder's first stamp
        self._now: float | None = None  # ... and of its latest

    @property
    def dead_after(self) -> float:
        return 3 * self.heartbeat_interval + 1.0

    @property
    def replaced_after(self) -> float:
        return 1.5 * self.heartbeat_interval

    @property
    def restored(self) -> int:
        """Messages this worker put back on their queues so far."""
        return self._restored

    def beat(self) -> bool:
        """Stamp this holder alive (Redis server time); False if it was unknown
        (just started, or swept as dead while it was stalled)."""
        known, now = self._beat(keys=[keys.BROKER_HOLDERS], args=[self.holder])
        self._now = float(now)
        if self._born is None:
            self._born = self._now
        return bool(known)

    def dead_holders(self) -> list[str]:
        """Holders silent for ``dead_after`` s, and replaced older incarnations of this node."""
        raw = self._dead(keys=[keys.BROKER_HOLDERS], args=[self.dead_after])
        dead = {_text(h) for h in raw}
        if self._born is not None and self._now - self._born >= self.replaced_after:
            prefix = node_of(self.holder) + "/"
            stamps = self.channel.client.zrange(keys.BROKER_HOLDERS, 0, -1, withscores=True)
            dead.update(h for h, stamp in ((_text(h), s) for h, s in stamps) if h.startswith(prefix) and stamp < self._born)
        dead.discard(self.holder)
        return sorted(dead)

    def sweep(self) -> int:
        """Restore the messages of every dead holder; returns how many were restored."""
        total = 0
        for holder in self.dead_holders():
            total += self.restore(holder)
        return total

    def restore(self, holder: str) -> int:
        """Put ``holder``'s unacked messages back on their queues, once: under a
        lease, each through kombu's transactional ``restore_by_tag``."""
        client = self.channel.client
        lease = keys.broker_restore_lease(holder)
        if not client.set(lease, self.holder, nx=True, px=LEASE_MS):
            return 0  # another worker is on it
        try:
            held = keys.broker_held(holder)
            tags = [_text(t) for t in client.smembers(held)]
            restored = 0
            qos = self.channel.qos
            for tag in tags:
                if client.hexists(qos.unacked_key, tag):
                    qos.restore_by_tag(tag, client=client, leftmost=False)
                    restored += 1
            pipe = client.pipeline()
            pipe.delete(held).zrem(keys.BROKER_HOLDERS, holder).execute()
        finally:
            client.delete(lease)
        if restored:
            metrics.broker_redelivered.inc(restored)
            logger.warning("Redelivered %d message(s) held by %s, which is gone", restored, holder)
        self._restored += restored
        return restored


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value
