"""Every private (or undocumented) name of kombu, Celery and redis-py that OmniMind's broker
code relies on (omnimind.redelivery, omnimind.sentinel_broker, workers.message_limits). kombu
renames such things between minor releases; pyproject.toml pins the ranges tested, and this
test says which name a new release dropped, instead of an AttributeError at the first take.
"""
from __future__ import annotations

import importlib

import celery
import kombu
import pytest
import redis
from kombu import Connection

#: (module, attribute path) of names that exist on classes or modules.
CLASS_NAMES = [
    ("kombu.transport.redis", "Channel._brpop_start"),
    ("kombu.transport.redis", "Channel._brpop_read"),
    ("kombu.transport.redis", "Channel._put"),
    ("kombu.transport.redis", "Channel._q_for_pri"),
    ("kombu.transport.redis", "Channel._get_message_priority"),
    ("kombu.transport.redis", "Channel._flush_brpop_reauth"),
    ("kombu.transport.redis", "Channel._create_client"),
    ("kombu.transport.redis", "Channel._on_connection_disconnect"),
    ("kombu.transport.redis", "Channel._poll_error"),
    ("kombu.transport.redis", "Channel.conn_or_acquire"),
    ("kombu.transport.redis", "Channel.from_transport_options"),
    ("kombu.transport.redis", "Channel.priority_steps"),
    ("kombu.transport.redis", "Channel.sep"),
    ("kombu.transport.redis", "Channel.unacked_key"),
    ("kombu.transport.redis", "Channel.unacked_index_key"),
    ("kombu.transport.redis", "QoS.append"),
    ("kombu.transport.redis", "QoS.pipe_or_acquire"),
    ("kombu.transport.redis", "QoS._remove_from_indices"),
    ("kombu.transport.redis", "QoS.restore_by_tag"),
    ("kombu.transport.redis", "virtual.QoS.append"),
    ("kombu.transport.redis", "MultiChannelPoller.on_poll_start"),
    ("kombu.transport.redis", "MultiChannelPoller.on_readable"),
    ("kombu.transport.redis", "MultiChannelPoller._client_registered"),
    ("kombu.transport.redis", "MultiChannelPoller._register"),
    ("kombu.transport.redis", "MultiChannelPoller._unregister_from_poll"),
    ("kombu.transport.redis", "MultiChannelPoller._on_connection_disconnect"),
    ("kombu.transport.redis", "MultiChannelPoller.eventflags"),
    ("kombu.transport.redis", "MultiChannelPoller.fds"),
    ("kombu.transport.redis", "Channel.health_check_interval"),
    ("kombu.transport.redis", "SentinelChannel.from_transport_options"),
    ("kombu.transport.redis", "SentinelTransport"),
    ("kombu.transport.redis", "Transport.brpop_timeout"),
    ("celery.worker.strategy", "default"),
    ("kombu.message", "Message.reject_log_error"),
    ("celery.signals", "task_unknown"),
    ("redis.client", "PubSub.parse_response"),
    ("redis.client", "PubSub.check_health"),
    ("redis.connection", "Connection.can_read"),
    ("redis.connection", "Connection.disconnect"),
    ("redis.connection", "Connection.send_command"),
]

#: Names a live channel, its QoS and its poller carry (set in ``__init__``).
CHANNEL_NAMES = ["_queue_cycle", "brpop_timeout", "_in_poll", "_brpop_sent_at", "_expires", "global_keyprefix",
                 "active_queues", "_pool", "_qos", "ResponseError", "connection_errors"]
QUEUE_CYCLE_NAMES = ["consume", "rotate"]
POLLER_NAMES = ["_channels", "_fd_to_chan", "_paused_brpop", "_chan_to_sock", "poller"]
#: Names a redis-py PubSub carries (the keyspace-event subscription, its health checks).
PUBSUB_NAMES = ["connection", "health_check_response_counter"]
TRANSPORT_NAMES = ["cycle", "_deliver"]


def missing(owner, names):
    return [name for name in names if not hasattr(owner, name)]


def versions() -> str:
    return f"kombu {kombu.__version__}, celery {celery.__version__}, redis-py {redis.__version__}"


def test_every_private_class_name_still_exists():
    gone = []
    for module_name, path in CLASS_NAMES:
        owner = importlib.import_module(module_name)
        for part in path.split("."):
            if not hasattr(owner, part):
                gone.append(f"{module_name}.{path}")
                break
            owner = getattr(owner, part)
    assert not gone, (f"{versions()} lacks {gone}, which OmniMind's broker code uses: pin the versions "
                      f"pyproject.toml allows to a tested range, or adapt omnimind/redelivery.py")


def test_every_private_instance_name_still_exists(redis_server):
    from omnimind.redelivery import TRANSPORT_PATH

    with Connection(redis_server.url, transport=TRANSPORT_PATH) as conn:
        channel = conn.channel()
        try:
            gone = {
                "Channel": missing(channel, CHANNEL_NAMES),
                "Channel._queue_cycle": missing(channel._queue_cycle, QUEUE_CYCLE_NAMES)
                if hasattr(channel, "_queue_cycle") else QUEUE_CYCLE_NAMES,
                "MultiChannelPoller": missing(conn.transport.cycle, POLLER_NAMES),
                "Connection": missing(channel.connection, TRANSPORT_NAMES),
                "PubSub": missing(channel._create_client(asynchronous=True).pubsub(), PUBSUB_NAMES),
            }
        finally:
            channel.close()
    gone = {owner: names for owner, names in gone.items() if names}
    assert not gone, (f"{versions()}: {gone} no longer exist, and OmniMind's broker code uses them: pin the "
                      f"versions pyproject.toml allows to a tested range, or adapt omnimind/redelivery.py")


@pytest.mark.parametrize("package", [kombu, celery])
def test_the_installed_versions_are_within_the_pins(package):
    """The versions under test are ones pyproject.toml allows (CI also runs the broker tests on the
    lowest it allows, .ci/run)."""
    from pathlib import Path

    import tomllib
    from packaging.requirements import Requirement

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    pins = {Requirement(r).name: Requirement(r).specifier for r in project["dependencies"]}
    name = package.__name__
    assert package.__version__ in pins[name], f"{name} {package.__version__} is outside the tested pins {pins[name]}"
