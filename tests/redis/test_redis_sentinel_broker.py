"""omnimind.sentinel_broker against a real sentinel, without workers: messages are taken
and recorded under their holder on the master, a late ack and the restore at close go
through the sentinel-managed pool, and a consumer follows a failover."""
from __future__ import annotations

import pytest
from kombu import Connection

from omnimind import keys
from omnimind.redelivery import SENTINEL_TRANSPORT_PATH, set_holder
from omnimind.redis_client import redis_client
from tests.broker.test_broker_redelivery import consume_one, held, publish, take
from tests.redis.conftest import MASTER_NAME


@pytest.fixture
def sentinel_broker(sentinel_cluster):
    connections = []

    def connect():
        conn = Connection(sentinel_cluster.url, transport=SENTINEL_TRANSPORT_PATH,
                          transport_options={"master_name": MASTER_NAME})
        connections.append(conn)
        return conn

    yield connect, redis_client(sentinel_cluster.url, MASTER_NAME)
    set_holder(None)
    for conn in connections:
        conn.release()


def test_a_consumer_on_sentinel_takes_and_records_in_one_step(sentinel_broker):
    connect, master = sentinel_broker
    publish(connect(), 1)
    assert master.llen(keys.broker_doorbell("rq")) == 1
    message = consume_one(connect(), "w@h/sentinel")
    assert held(master, "w@h/sentinel") == {message.delivery_tag} == {t.decode() for t in master.hkeys("unacked")}


def test_a_closed_sentinel_channel_still_acks_and_restores(sentinel_broker):
    connect, master = sentinel_broker
    conn = connect()
    publish(conn, 2)
    channel, (first, second) = take(conn, "w@h/late", 2)
    qos = channel.qos
    channel._disconnect_pools()
    channel.connection.client = None  # what a kombu Connection closed after losing the broker leaves
    set_holder("w@h/late")
    qos.ack(first.delivery_tag)  # a task that finished after its channel went
    channel.close()  # gives back what it still held
    assert held(master, "w@h/late") == set() and master.hlen("unacked") == 0
    assert master.llen("rq") == 1


def test_a_sentinel_consumer_follows_the_failover(sentinel_cluster, sentinel_broker):
    connect, master = sentinel_broker
    conn = connect()
    publish(conn, 1)
    assert consume_one(conn, "w@h/before").payload == {"n": 0}
    assert master.wait(1, 2000) == 1
    sentinel_cluster.kill(sentinel_cluster.first_master)
    sentinel_cluster.wait_failover(sentinel_cluster.first_master)
    after = connect()  # a new connection, as a worker's consumer makes after losing the broker
    publish(after, 1)
    assert consume_one(after, "w@h/after", deadline_s=15).payload == {"n": 0}
    assert held(master, "w@h/after") and held(master, "w@h/before")  # the replica had the first record
