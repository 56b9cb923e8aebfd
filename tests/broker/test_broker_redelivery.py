"""omnimind.redelivery against a real redis-server, without workers: the holder
records kombu's unacked writes carry, and the sweep that gives a dead holder's
messages back exactly once."""
import socket
import threading

import pytest
from kombu import Connection, Exchange, Queue

from omnimind import keys
from omnimind.redelivery import TRANSPORT_PATH, Redelivery, set_holder
from tests.helpers import wait_until

QUEUE = Queue("rq", Exchange("rq", type="direct"), routing_key="rq")


@pytest.fixture
def broker(redis_server, redis_client):
    connections = []

    def connect():
        conn = Connection(redis_server.url, transport=TRANSPORT_PATH)
        connections.append(conn)
        return conn

    yield connect
    set_holder(None)
    for conn in connections:
        conn.release()


def publish(conn, count):
    producer = conn.Producer()
    for i in range(count):
        producer.publish({"n": i}, exchange=QUEUE.exchange, routing_key="rq", declare=[QUEUE], serializer="json")


def take(conn, holder, count):
    """``count`` messages taken (not acked) by ``holder``, as a worker's consumer would."""
    set_holder(holder)
    try:
        channel = conn.channel()
        QUEUE(channel).declare()
        return channel, [channel.basic_get("rq", no_ack=False) for _ in range(count)]
    finally:
        set_holder(None)


def held(redis_client, holder):
    return {t.decode() for t in redis_client.smembers(keys.broker_held(holder))}


def waiting(redis_client):
    return redis_client.llen("rq")


def test_held_tags_follow_kombus_unacked_entries(broker, redis_client):
    conn = broker()
    publish(conn, 3)
    channel, messages = take(conn, "w@h/aaa", 2)
    tags = {m.delivery_tag for m in messages}
    assert held(redis_client, "w@h/aaa") == tags == {t.decode() for t in redis_client.hkeys("unacked")}
    set_holder("w@h/aaa")
    channel.basic_ack(messages[0].delivery_tag)
    assert held(redis_client, "w@h/aaa") == {messages[1].delivery_tag}
    assert waiting(redis_client) == 1


def test_a_replaced_incarnation_is_restored_once_even_by_two_sweepers(broker, redis_client):
    conn = broker()
    publish(conn, 3)
    _, messages = take(conn, "w@h/old", 2)
    Redelivery(broker().default_channel, "w@h/old", heartbeat_interval=20).beat()
    assert waiting(redis_client) == 1
    # Two sweepers at once: the new incarnation of w@h and another worker.
    sweepers = [Redelivery(broker().default_channel, "w@h/new", heartbeat_interval=0.2),
                Redelivery(broker().default_channel, "x@h/1", heartbeat_interval=20)]
    sweepers[0].beat()
    assert sweepers[0].dead_holders() == []  # too young to judge: a live twin may not have stamped yet
    twin = Redelivery(broker().default_channel, "w@h/twin", heartbeat_interval=0.2)

    def judged():
        # Both keep beating, as workers do; the old incarnation stays silent.
        sweepers[0].beat()
        twin.beat()  # started after w@h/new, by mistake under the same name, and alive
        return sweepers[0].dead_holders()

    assert wait_until(lambda: judged() or None, timeout=10, message="a judgement") == ["w@h/old"]
    assert sweepers[1].dead_holders() == []  # stamped a moment ago: not dead to anyone else
    barrier = threading.Barrier(2)

    def restore(sweeper):
        barrier.wait()
        sweeper.restore("w@h/old")

    threads = [threading.Thread(target=restore, args=(s,)) for s in sweepers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(s.restored for s in sweepers) == 2
    assert waiting(redis_client) == 3 and redis_client.hlen("unacked") == 0
    assert not redis_client.exists(keys.broker_held("w@h/old"))
    assert redis_client.zscore(keys.BROKER_HOLDERS, "w@h/old") is None
    # Again: nothing left to give back.
    assert sweepers[0].sweep() == 0 and waiting(redis_client) == 3
    # The restored messages are marked redelivered, as kombu marks its own restores.
    channel = broker().channel()
    bodies = [channel.basic_get("rq", no_ack=True) for _ in range(3)]
    assert sorted(m.payload["n"] for m in bodies) == [0, 1, 2]
    assert sum(bool(m.delivery_info.get("redelivered")) for m in bodies) == 2


def test_a_silent_holder_is_dead_after_dead_after_and_acked_messages_stay_acked(broker, redis_client):
    conn = broker()
    publish(conn, 2)
    channel, messages = take(conn, "w@h/quiet", 2)
    Redelivery(broker().default_channel, "w@h/quiet", heartbeat_interval=20).beat()
    set_holder("w@h/quiet")
    channel.basic_ack(messages[0].delivery_tag)  # done before it died
    set_holder(None)
    sweeper = Redelivery(broker().default_channel, "y@h/1", heartbeat_interval=0.1)
    assert sweeper.dead_holders() == []
    wait_until(lambda: sweeper.dead_holders() == ["w@h/quiet"], timeout=5, message="the holder to be dead")
    assert sweeper.sweep() == 1
    assert waiting(redis_client) == 1
    assert channel.basic_get("rq", no_ack=True).payload == {"n": 1}


def consume_one(conn, holder, deadline_s=5.0):
    """One message through a consumer of ``holder``, the way a worker takes it (not acked)."""
    got = []
    set_holder(holder)
    try:
        with conn.Consumer(QUEUE, callbacks=[lambda body, message: got.append(message)], accept=["json"]):
            wait_until(lambda: _drain(conn) or got, timeout=deadline_s, message="a message")
    finally:
        set_holder(None)
    return got[0]


def _drain(conn):
    try:
        conn.drain_events(timeout=0.2)
    except TimeoutError:
        pass
    return False


def test_a_consumer_takes_and_records_in_one_step_woken_by_the_doorbell(broker, redis_client):
    publish(broker(), 1)
    assert redis_client.llen(keys.broker_doorbell("rq")) == 1  # rung with the message
    message = consume_one(broker(), "w@h/take")
    assert held(redis_client, "w@h/take") == {message.delivery_tag}
    assert {t.decode() for t in redis_client.hkeys("unacked")} == {message.delivery_tag}
    assert waiting(redis_client) == 0 and message.payload == {"n": 0}


def test_takes_report_the_backlog_and_the_last_one_clears_stale_doorbell_tokens(broker, redis_client):
    publish(broker(), 3)
    assert redis_client.llen(keys.broker_doorbell("rq")) == 3
    conn, got, backlogs = broker(), [], []

    def on_message(body, message):
        got.append(message)
        backlogs.append(conn.default_channel.backlog)

    set_holder("w@h/burst")
    try:
        with conn.Consumer(QUEUE, callbacks=[on_message], accept=["json"]):
            wait_until(lambda: _drain(conn) or len(got) == 3, timeout=5, message="3 messages")
            assert backlogs == [2, 1, 0]
            # The last take found the queue empty: no token is left to wake a worker for nothing.
            assert redis_client.llen(keys.broker_doorbell("rq")) == 0
            publish(broker(), 1)  # the next message still wakes the consumer
            wait_until(lambda: _drain(conn) or len(got) == 4, timeout=5, message="the 4th message")
    finally:
        set_holder(None)
    assert [m.payload["n"] for m in got] == [0, 1, 2, 0]
    assert held(redis_client, "w@h/burst") == {m.delivery_tag for m in got}


def test_a_producer_without_doorbells_is_served_too(broker, redis_server, redis_client):
    with Connection(redis_server.url) as plain:  # kombu's own transport: no doorbell
        publish(plain, 1)
    assert redis_client.llen(keys.broker_doorbell("rq")) == 0
    message = consume_one(broker(), "w@h/plain", deadline_s=10)
    assert held(redis_client, "w@h/plain") == {message.delivery_tag}


def test_an_ack_after_the_channel_closed_still_lands(broker, redis_client):
    # A task that outlives its channel (Redis went away and came back meanwhile): kombu's
    # QoS raised AttributeError here, which Celery reports as "Unrecoverable error".
    conn = broker()
    publish(conn, 1)
    channel, (message,) = take(conn, "w@h/late", 1)
    qos = channel.qos
    channel.close()
    conn.release()
    channel._disconnect_pools()  # what the worker's channel is left with: no pool, no connection
    set_holder("w@h/late")
    qos.ack(message.delivery_tag)
    assert held(redis_client, "w@h/late") == set() and redis_client.hlen("unacked") == 0


def test_a_channel_closed_after_its_connection_went_gives_back_what_it_held(broker, redis_client):
    # A worker whose broker vanished (a master failover) closes its consumer's channel
    # after kombu dropped the connection's client: kombu's QoS raised AttributeError while
    # restoring the held messages, and Celery stopped the worker ("Unrecoverable error").
    conn = broker()
    publish(conn, 1)
    channel, _ = take(conn, "w@h/gone", 1)
    assert waiting(redis_client) == 0
    channel._disconnect_pools()
    channel.connection.client = None  # what the closing kombu Connection leaves
    channel.close()
    assert waiting(redis_client) == 1 and redis_client.hlen("unacked") == 0


def idle_consumer(conn, holder, got):
    """A worker-like consumer of ``holder`` on ``conn``, idle and subscribed to its keyspace
    events once returned (the caller exits the returned consumer)."""
    set_holder(holder)
    consumer = conn.Consumer(QUEUE, callbacks=[lambda body, message: got.append(message)], accept=["json"])
    consumer.__enter__()
    channel = conn.default_channel
    wait_until(lambda: _drain(conn) or channel._notify_live, timeout=10, message="the keyspace subscription")
    return consumer


@pytest.mark.parametrize("producer_transport", [None, TRANSPORT_PATH], ids=["plain-kombu", "omnimind"])
def test_an_idle_consumer_is_woken_by_any_producers_push_not_by_its_timer(broker, redis_server, redis_client,
                                                                            producer_transport):
    # The safety-net take runs every brpop_timeout: made 60 s here, so only the keyspace
    # event can have woken the consumer within the deadline.
    conn = Connection(redis_server.url, transport=TRANSPORT_PATH, transport_options={"polling_interval": 60})
    got = []
    consumer = idle_consumer(conn, "w@h/events", got)
    try:
        flags = redis_client.config_get("notify-keyspace-events")["notify-keyspace-events"]
        assert "K" in str(flags) and "l" in str(flags)
        for n in range(3):
            with Connection(redis_server.url, transport=producer_transport) as producer:
                publish(producer, 1)
            wait_until(lambda n=n: _drain(conn) or len(got) == n + 1, timeout=20, message=f"message {n + 1}")
        assert held(redis_client, "w@h/events") == {m.delivery_tag for m in got}
        assert waiting(redis_client) == 0
    finally:
        consumer.__exit__(None, None, None)
        set_holder(None)
        conn.release()


def test_without_config_the_consumer_falls_back_to_doorbells(broker, redis_server, redis_client):
    # A Redis that refuses CONFIG (a managed one, an ACL): OmniMind's producers still wake
    # the consumer at once through their doorbells.
    redis_client.execute_command("ACL", "SETUSER", "noconfig", "on", ">pw", "~*", "&*", "+@all", "-config")
    url = f"redis://noconfig:pw@127.0.0.1:{redis_server.port}/0"
    conn = Connection(url, transport=TRANSPORT_PATH, transport_options={"polling_interval": 60})
    got = []
    set_holder("w@h/bells")
    try:
        with conn.Consumer(QUEUE, callbacks=[lambda body, message: got.append(message)], accept=["json"]):
            channel = conn.default_channel
            wait_until(lambda: _drain(conn) or channel._keyspace_refused, timeout=10, message="CONFIG refused")
            with Connection(url, transport=TRANSPORT_PATH) as producer:
                publish(producer, 1)
            wait_until(lambda: _drain(conn) or got, timeout=20, message="the message, by its doorbell")
            assert not channel._notify_live
    finally:
        set_holder(None)
        conn.release()
        redis_client.execute_command("ACL", "DELUSER", "noconfig")


def assert_taken_by_its_event(conn, url, got, subscribed, timeout):
    """Once the consumer listens to its keyspace events again, a stock producer's message is taken by its event."""
    wait_until(lambda: _drain(conn) or conn.default_channel._notify_live, timeout=timeout, message=subscribed)
    with Connection(url) as producer:
        publish(producer, 1)
    wait_until(lambda: _drain(conn) or got, timeout=20, message="the message, by its keyspace event")


def test_an_idle_consumer_restores_keyspace_flags_reset_under_it(broker, redis_server, redis_client):
    # An operator (or a restart without them in redis.conf) resets notify-keyspace-events while
    # the consumer idles: it sets them again on its next check, counts it, and a plain producer's
    # message is then taken by its event (the safety-net take is 60 s away).
    from omnimind.observability import metrics

    conn = Connection(redis_server.url, transport=TRANSPORT_PATH,
                      transport_options={"polling_interval": 60, "keyspace_check_interval": 0.5})
    got = []
    consumer = idle_consumer(conn, "w@h/flags", got)
    restored_before = metrics.broker_keyspace_flags_restored._value.get()
    try:
        redis_client.config_set("notify-keyspace-events", "")

        def flags_back():
            flags = str(redis_client.config_get("notify-keyspace-events")["notify-keyspace-events"])
            return "K" in flags and "l" in flags

        wait_until(lambda: _drain(conn) or flags_back(), timeout=20, message="the flags set again")
        assert metrics.broker_keyspace_flags_restored._value.get() == restored_before + 1
        assert_taken_by_its_event(conn, redis_server.url, got, subscribed="idle again", timeout=10)
    finally:
        consumer.__exit__(None, None, None)
        set_holder(None)
        conn.release()


def notify_client_info(redis_client, channel):
    """The consumer's keyspace-event connection, as the server's CLIENT LIST shows it."""
    port = channel._notify.connection._sock.getsockname()[1]
    return next(c for c in redis_client.client_list() if c["addr"].endswith(f":{port}"))


def test_a_busy_consumer_lets_no_events_pile_up_in_redis(broker, redis_server, redis_client):
    # Each message brings two keyspace events; a busy consumer does not read its events, so
    # it unsubscribes while its backlog lasts (else Redis buffers them: its output buffer grows
    # until the pub/sub limit disconnects it), and subscribes again once idle.
    conn = Connection(redis_server.url, transport=TRANSPORT_PATH, transport_options={"polling_interval": 60})
    got = []
    consumer = idle_consumer(conn, "w@h/busy", got)
    channel = conn.default_channel
    try:
        assert int(notify_client_info(redis_client, channel)["sub"]) > 0
        total = 2000
        with Connection(redis_server.url) as producer:  # a plain producer: events, no doorbells
            publish(producer, total)
        samples = []

        def drained():
            _drain(conn)
            if channel.backlog > 100 and len(got) % 50 == 0:  # busy: what the server holds for the events client
                info = notify_client_info(redis_client, channel)
                samples.append((int(info["sub"]), int(info["omem"])))
            return len(got) == total

        wait_until(drained, timeout=120, interval=0, message="the backlog taken")
        assert samples, "the consumer was never seen busy"
        assert all(sub == 0 for sub, _ in samples), samples[:20]
        assert max(omem for _, omem in samples) < 64 * 1024, samples
        wait_until(lambda: _drain(conn) or channel._notify_live, timeout=20, message="subscribed again when idle")
        assert int(notify_client_info(redis_client, channel)["sub"]) > 0
        with Connection(redis_server.url) as producer:
            publish(producer, 1)
        wait_until(lambda: _drain(conn) or len(got) == total + 1, timeout=20, message="the next message, by its event")
    finally:
        consumer.__exit__(None, None, None)
        set_holder(None)
        conn.release()



class SubscriberFreezingProxy:
    """A TCP proxy to the test Redis whose :meth:`freeze` stops carrying the traffic of the
    connections that have subscribed so far (their sockets stay open): a half-open keyspace-event
    connection, while the consumer's other connections, and any new one, keep working."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        self.sockets = []
        self.links = []  # per connection: {"subscriber": bool, "frozen": bool}
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> int:
        frozen = [link for link in self.links if link["subscriber"]]
        for link in frozen:
            link["frozen"] = True
        return len(frozen)

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.port))
            self.sockets += [client, server]
            link = {"subscriber": False, "frozen": False}
            self.links.append(link)
            threading.Thread(target=self._pipe, args=(client, server, link, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, link, False), daemon=True).start()

    def _pipe(self, source, dest, link, upstream):
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            if upstream and b"SUBSCRIBE" in data.upper():
                link["subscriber"] = True
            if link["frozen"]:
                continue  # swallowed: neither an error nor an answer
            try:
                dest.sendall(data)
            except OSError:
                return

    def close(self):
        self.listener.close()
        for sock in self.sockets:
            sock.close()


def test_a_silent_keyspace_connection_is_dropped_and_made_again(broker, redis_server, redis_client):
    # A half-open connection accepts the pings and never answers (no error either): the idle
    # consumer drops it after missed pings and subscribes again; events then wake it once more.
    proxy = SubscriberFreezingProxy(redis_server.port)
    conn = Connection(proxy.url, transport=TRANSPORT_PATH,
                      transport_options={"polling_interval": 60, "health_check_interval": 0.3})
    got = []
    consumer = idle_consumer(conn, "w@h/silent", got)
    channel = conn.default_channel
    try:
        first = channel._notify.connection._sock
        assert proxy.freeze() == 1
        wait_until(lambda: _drain(conn) or channel._notify.connection._sock is not first, timeout=30,
                   message="the silent connection dropped")
        assert_taken_by_its_event(conn, redis_server.url, got, subscribed="subscribed again", timeout=30)
    finally:
        consumer.__exit__(None, None, None)
        set_holder(None)
        conn.release()
        proxy.close()
