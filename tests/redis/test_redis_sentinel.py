"""OmniMind's keys behind a real Redis Sentinel: clients follow a failover, and a fence
lost with an unreplicated write never lets a deposed leader act after a newer one."""
from __future__ import annotations

import pytest
import redis
import torch

from omnimind import keys
from omnimind.fence import Fence, sign_dispatch
from omnimind.models.errors import StaleFence
from omnimind.models.store import ModelStore
from omnimind.redis_client import redis_client
from omnimind.replication import NotReplicated, ReplicaQuorum
from omnimind.scaling.dispatch import DispatchGuard
from tests.helpers import wait_until
from tests.redis.conftest import MASTER_NAME

SECRET = "test-secret-0123456789abcdef"
WAITS = ReplicaQuorum(replicas=1, timeout=0.3)


def dispatch(guard, entry, term, slot, task_id):
    """``guard.accept`` of a signed dispatch of ``entry``'s ``slot`` at fence ``term:slot``."""
    return guard.accept([term, slot], [entry, slot], task_id, sign_dispatch(SECRET, entry, slot, (term, slot))).outcome


def until_ok(call):
    """``call()`` once the client reaches the promoted master (ConnectionError meanwhile)."""
    def attempt():
        try:
            return (call(),)
        except redis.ConnectionError:
            return None

    return wait_until(attempt, timeout=30, message="the client to reach the new master")[0]


def weights(value: float) -> dict:
    return {"weight": torch.full((1, 2), value), "bias": torch.zeros(1)}


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


def test_a_lost_fence_never_lets_a_deposed_leader_act_after_a_newer_one(sentinel_cluster):
    cluster = sentinel_cluster
    client = redis_client(cluster.url, MASTER_NAME)
    waiting = DispatchGuard(client, SECRET, replicas=WAITS)  # OMNIMIND_REDIS_MIN_REPLICAS=1
    blind = DispatchGuard(client, SECRET, replicas=ReplicaQuorum(0))  # async replication only
    store = ModelStore(client, "sentinel", replicas=WAITS)

    # Term 4 leads, then term 5 takes over; everything so far reached the replica.
    for entry in ("waits", "blind"):
        assert dispatch(waiting, entry, 4, 1, f"{entry}-1") == "accepted"
    assert dispatch(waiting, "waits", 5, 2, "waits-2") == "accepted"
    store.publish(weights(1.0), fence=Fence(5, 2))

    # A partition between master and replica: term 5's next writes live on the master only.
    cluster.link.hold()
    assert dispatch(blind, "blind", 5, 2, "blind-2") == "accepted"  # ...and its task would run
    assert dispatch(waiting, "waits", 5, 3, "waits-3") == "unreplicated"  # ...its task does not run
    with pytest.raises(NotReplicated):
        store.publish(weights(2.0), fence=Fence(5, 3))

    cluster.kill(cluster.first_master)
    cluster.link.cut()
    cluster.wait_failover(cluster.first_master)

    # Without WAIT the promoted replica lost term 5's fence: the deposed leader of term 4
    # is accepted after a term-5 dispatch already ran. This is the hazard.
    assert until_ok(lambda: client.hget(keys.schedule_fence("blind"), "term")) == b"4"
    assert dispatch(blind, "blind", 4, 3, "blind-stale") == "accepted"
    # With WAIT every acceptance that ran was confirmed on the replica, so the promoted
    # master still refuses term 4; the unconfirmed slot 3 lost nothing that ran.
    assert dispatch(waiting, "waits", 4, 4, "waits-stale") == "stale"
    assert client.exists(keys.schedule_slot("waits", 3)) == 0
    assert dispatch(waiting, "waits", 5, 4, "waits-4") == "unreplicated"  # no replica left to confirm
    # The model store: version 1 (confirmed) survived, version 2 (refused) was lost with its
    # master, and a term-4 publish is still stale.
    assert store.active_version() == 1 and store.fence() == Fence(5, 2)
    with pytest.raises(StaleFence):
        store.publish(weights(3.0), fence=Fence(4, 9))

    # The old master comes back empty; the sentinel makes it a replica of the new master, and
    # fenced work is confirmed again: slot 4's message, redelivered, now counts.
    cluster.rejoin(cluster.first_master)
    # Redelivered until confirmed, as a worker's unconfirmed dispatch is: the first WAIT after a
    # full resync can miss its 0.3 s on a loaded machine (about 1 run in 10 here).
    assert wait_until(lambda: dispatch(waiting, "waits", 5, 4, "waits-4") == "accepted", timeout=10, interval=0.2,
                      message="slot 4 confirmed by the rejoined replica")
    assert store.publish(weights(4.0), fence=Fence(5, 5)).version == 2


def test_without_replicas_nothing_waits(redis_client):
    """A lone Redis (OMNIMIND_REDIS_MIN_REPLICAS=0, the default off Sentinel) sends no WAIT."""
    guard = DispatchGuard(redis_client, SECRET, replicas=ReplicaQuorum(0))
    assert dispatch(guard, "retrain", 3, 1, "t1") == "accepted"
    # With a quorum no replica can meet, the write happens but does not count.
    assert dispatch(DispatchGuard(redis_client, SECRET, replicas=ReplicaQuorum(1, 0.05)), "retrain", 3, 2, "t2") \
        == "unreplicated"
    assert redis_client.get(keys.schedule_slot("retrain", 2)) == b"t2"
