"""OmniMind's keys behind a real Redis Sentinel: clients follow a failover."""
from __future__ import annotations

import redis

from omnimind.redis_client import redis_client
from tests.helpers import wait_until
from tests.redis.conftest import MASTER_NAME


def until_ok(call):
    """``call()`` once the client reaches the promoted master (ConnectionError meanwhile)."""
    def attempt():
        try:
            return (call(),)
        except redis.ConnectionError:
            return None

    return wait_until(attempt, timeout=30, message="the client to reach the new master")[0]


def test_a_sentinel_url_gives_a_client_that_follows_the_failover(sentinel_cluster):
    client = redis_client(sentinel_cluster.url, MASTER_NAME)
    client.set("omnimind:test:before", "1")
    assert client.wait(1, 2000) == 1
    sentinel_cluster.kill(sentinel_cluster.first_master)
    promoted = sentinel_cluster.wait_failover(sentinel_cluster.first_master)
    assert promoted == sentinel_cluster.first_replica
    assert until_ok(lambda: client.get("omnimind:test:before")) == b"1"
    client.set("omnimind:test:after", "2")  # writable: the promoted replica is the master now
    assert client.connection_pool.get_master_address() == ("127.0.0.1", promoted)
