"""Sentinel URLs and the settings that follow them (no server needed)."""
import pytest

from omnimind.app import capability_queues
from omnimind.config import Settings
from omnimind.redelivery import SENTINEL_TRANSPORT_PATH, transport_for
from omnimind.replication import ReplicaQuorum
from omnimind.sentinel import SentinelURL, transport_options

SENTINELS = "sentinel://:p%40ss@10.0.0.1:26380/3;sentinel://10.0.0.2;sentinel://user:x@10.0.0.3:26381/9"


def test_the_first_address_carries_the_database_and_the_masters_credentials():
    url = SentinelURL.parse(SENTINELS)
    assert url.sentinels == [("10.0.0.1", 26380), ("10.0.0.2", 26379), ("10.0.0.3", 26381)]
    assert (url.db, url.username, url.password) == (3, None, "p@ss")


@pytest.mark.parametrize("bad", ["redis://10.0.0.1:6379/0", "sentinel://10.0.0.1;redis://10.0.0.2", "sentinel://", ";"])
def test_anything_but_sentinel_addresses_is_refused(bad):
    with pytest.raises(ValueError, match="sentinel"):
        SentinelURL.parse(bad)


def test_one_sentinel_url_configures_the_broker_the_results_and_the_keys():
    s = Settings.from_env({"OMNIMIND_BROKER_URL": SENTINELS, "OMNIMIND_SENTINEL_MASTER": "farm"})
    assert s.redis_url == s.result_backend == SENTINELS and s.sentinel_master == "farm"
    assert transport_for(s.broker_url) == SENTINEL_TRANSPORT_PATH
    assert transport_options(s.broker_url, s.sentinel_master) == {"master_name": "farm"}
    assert {q.queue_arguments for q in capability_queues(s.broker_url)} == {None}  # Redis lists, not quorum queues
    # Fence-advancing writes wait for one replica behind Sentinel, for none on a lone Redis,
    # and as many as asked either way.
    assert ReplicaQuorum.from_settings(s) == ReplicaQuorum(1, 1.0)
    assert Settings.from_env({"OMNIMIND_BROKER_URL": "redis://r:6379/0"}).redis_min_replicas == 0
    s = Settings.from_env({"OMNIMIND_BROKER_URL": SENTINELS, "OMNIMIND_REDIS_MIN_REPLICAS": "2",
                           "OMNIMIND_REDIS_WAIT_TIMEOUT": "0.25"})
    assert ReplicaQuorum.from_settings(s).wait_args() == ("WAIT", 2, 250)
    # A RabbitMQ broker with OmniMind's keys behind Sentinel.
    s = Settings.from_env({"OMNIMIND_BROKER_URL": "amqp://rabbit//", "OMNIMIND_REDIS_URL": SENTINELS})
    assert s.result_backend == SENTINELS and s.redis_min_replicas == 1
