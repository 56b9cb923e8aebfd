"""omnimind.queue_types against a real RabbitMQ: the vhost probe's queue cannot outlive a
worker that dies mid-check (it expires unused)."""
from kombu import Connection

from omnimind.queue_types import PROBE_EXPIRES_S, vhost_default_is_quorum
from tests.conftest import rabbitmqctl


def probe_queues(vhost_url):
    vhost = vhost_url.rsplit("/", 1)[1]
    out = rabbitmqctl("list_queues", "-p", vhost, "--no-table-headers", "name", "arguments")
    return [line for line in out.splitlines() if line.startswith("omnimind.queue-type-probe.")]


def test_a_probe_left_behind_expires(rabbitmq_url, monkeypatch):
    # The worker "dies" between the probe's declaration and its deletion: no delete is sent.
    from kombu.transport.pyamqp import Channel

    monkeypatch.setattr(Channel, "queue_delete", lambda self, *args, **kwargs: None)
    with Connection(rabbitmq_url) as conn:
        assert vhost_default_is_quorum(conn) is True  # the fixture's vhost defaults to quorum
    left = probe_queues(rabbitmq_url)
    assert len(left) == 1 and "x-expires" in left[0] and str(PROBE_EXPIRES_S * 1000) in left[0], left


def test_the_probe_cleans_up_after_itself(rabbitmq_url):
    with Connection(rabbitmq_url) as conn:
        assert vhost_default_is_quorum(conn) is True
    assert probe_queues(rabbitmq_url) == []
