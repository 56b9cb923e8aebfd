"""A farm whose broker, results and keys all go through one ``sentinel://`` URL (three
sentinels) keeps serving when its Redis master is SIGKILLed: the sentinels promote the replica, the
workers and the client follow, predicts and learns succeed again, every worker
heartbeats into the new master's registry, and the model store still serves."""
from __future__ import annotations

import time

import pytest
from celery import Celery

from omnimind.app import app, capability_queues
from omnimind.config import settings
from omnimind.farm import wait_until_answering
from omnimind.models.factory import build_model
from omnimind.models.store import ModelStore
from omnimind.redelivery import transport_for
from omnimind.redis_client import redis_client
from omnimind.replication import ReplicaQuorum
from omnimind.scaling.registry import ServiceRegistry
from tests.conftest import CLIENT_SETTINGS, Worker
from tests.helpers import wait_until
from tests.redis.conftest import MASTER_NAME, SentinelCluster

GOOD = [0.25] * 16


def sentinel_app(url: str) -> Celery:
    """A client app configured like ``omnimind.app``, with broker and results on ``url``."""
    client = Celery("omnimind-sentinel-client", set_as_current=False)
    client.conf.update(
        {key: app.conf[key] for key in CLIENT_SETTINGS},
        broker_url=url, result_backend=url, broker_transport=transport_for(url),
        broker_transport_options={"master_name": MASTER_NAME},
        result_backend_transport_options={**app.conf.result_backend_transport_options, "master_name": MASTER_NAME},
        task_queues=capability_queues(url),
    )
    return client


def answered(call, timeout: float = 5.0):
    """``call().get(timeout)``, or None when it failed or timed out (the farm is failing over)."""
    try:
        return call().get(timeout=timeout)
    except Exception:
        return None


@pytest.fixture
def sentinel_trio(tmp_path):
    """A master, its replica and three sentinels (quorum 2), as a production set-up has them."""
    (tmp_path / "redis").mkdir()
    cluster = SentinelCluster(tmp_path / "redis", sentinels=3).start()
    yield cluster
    cluster.close()


@pytest.fixture
def farm(sentinel_trio, tmp_path):
    url = sentinel_trio.url
    env = {"OMNIMIND_BROKER_URL": url, "OMNIMIND_RESULT_BACKEND": url, "OMNIMIND_REDIS_URL": url,
           "OMNIMIND_SENTINEL_MASTER": MASTER_NAME, "OMNIMIND_DATA_DIR": str(tmp_path / "data")}
    client = sentinel_app(url)
    registry = ServiceRegistry.from_settings(settings, client=redis_client(url, MASTER_NAME))
    workers = [
        Worker("sent-inf", "inference", "threads", 2, env, tmp_path / "sent-inf.log"),
        Worker("sent-learn", "training", "solo", 1, env, tmp_path / "sent-learn.log"),
    ]
    try:
        for worker in workers:
            def ready(worker=worker):
                if worker.proc.poll() is not None:
                    raise AssertionError(f"{worker.name} exited early:\n{worker.output()[-3000:]}")
                if worker.hostname not in {n.node_id for n in registry.store.snapshot()[1]}:
                    return False
                return client.control.ping(destination=[worker.hostname], timeout=0.5)

            wait_until(ready, timeout=90, message=f"{worker.name} to register and answer a ping")
        yield client, registry, workers
    finally:
        for worker in workers:
            worker.stop()
        client.close()


def test_the_farm_serves_through_a_master_failover(sentinel_trio, farm):
    cluster = sentinel_trio
    client, registry, (inference, learner) = farm
    keys_client = redis_client(cluster.url, MASTER_NAME)
    predict = lambda: client.send_task("tasks.inference.predict", kwargs={"inputs": GOOD})  # noqa: E731
    learn = lambda: client.send_task("tasks.training.learn", kwargs={"inputs": [GOOD] * 4, "targets": [[0.5]] * 4})  # noqa: E731
    # A published version (confirmed on the replica), which the inference worker picks up.
    served = ModelStore(keys_client, replicas=ReplicaQuorum(1, 5.0)).publish(build_model(settings).state_dict()).version
    wait_until(lambda: predict().get(timeout=30)["model_version"] == served, timeout=30,
               message="the worker to serve the published version")
    before = [predict().get(timeout=30) for _ in range(5)]
    assert {(r["node_id"], r["model_version"]) for r in before} == {(inference.hostname, served)}
    assert learn().get(timeout=60)["node_id"] == learner.hostname
    assert keys_client.wait(1, 5000) == 1  # everything so far reached the replica

    killed = time.monotonic()
    cluster.kill(cluster.first_master)
    promoted = cluster.wait_failover(cluster.first_master)
    assert promoted == cluster.first_replica

    first = wait_until(lambda: answered(predict), timeout=60, interval=0.2, message="a predict after the failover")
    recovered = time.monotonic() - killed
    assert first["node_id"] == inference.hostname and first["model_version"] == served
    for _ in range(10):
        assert predict().get(timeout=10)["model_version"] == served
    assert wait_until(lambda: answered(learn, 10), timeout=60, interval=0.2,
                      message="a learn after the failover")["node_id"] == learner.hostname

    # Both workers heartbeat into the new master's registry (its own clock, after the promotion).
    promoted_at = float(wait_until(lambda: answered_time(keys_client), timeout=30, message="the new master's clock"))
    def heartbeating():
        nodes = {n.node_id: n.last_heartbeat.timestamp() for n in registry.store.snapshot()[1]}
        return all(nodes.get(w.hostname, 0) > promoted_at for w in (inference, learner))

    wait_until(heartbeating, timeout=30, message="both workers to heartbeat after the failover")
    meta, tensors = ModelStore(keys_client).fetch()
    assert meta.version == served and tensors
    assert inference.proc.poll() is None and learner.proc.poll() is None
    # `omnimind up`'s readiness ping reaches them through the sentinel URL too.
    env = {"OMNIMIND_BROKER_URL": cluster.url, "OMNIMIND_SENTINEL_MASTER": MASTER_NAME}
    assert wait_until_answering(env, [inference.hostname, learner.hostname], 30, lambda: False) == []
    print(f"failover: kill -> first predict answered {recovered:.1f}s")


def answered_time(client) -> float | None:
    try:
        seconds, micros = client.time()
        return seconds + micros / 1e6
    except Exception:
        return None
