"""Fixtures: a real redis-server on a free loopback port, and real worker processes.

The environment is set here, at import: the settings are read once, on first use
(``omnimind.config.get_settings``), and the app is built from them on first use, so
setting it before any test module or doctest runs gives every test the same farm.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_until

#: Skip reasons tagged with their suite, and the failure of a required suite's skip (tests/suites.py).
pytest_plugins = ["tests.suites"]


# Idempotent: this module may be imported twice (as conftest and as tests.conftest).
REDIS_PORT = int(os.environ.setdefault("OMNIMIND_TEST_REDIS_PORT", str(free_port())))
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"
TEST_ENV = {
    "OMNIMIND_BROKER_URL": REDIS_URL,
    "OMNIMIND_RESULT_BACKEND": REDIS_URL,
    "OMNIMIND_REDIS_URL": REDIS_URL,
    "OMNIMIND_HEARTBEAT_INTERVAL": "0.5",
    # Redelivery runs on the defaults (visibility timeout 1 h): a dead worker's messages
    # come back through omnimind.redelivery, never by waiting the timeout out.
    "OMNIMIND_INFERENCE_TIME_LIMIT": "6",
    "OMNIMIND_TRAINING_TIME_LIMIT": "7",
    "OMNIMIND_MEMORY_TIME_LIMIT": "6",
    "OMNIMIND_AGENTS_TIME_LIMIT": "6",
    "OMNIMIND_MAX_BATCH_SIZE": "64",
    "OMNIMIND_TASK_EVENTS": "0",
}
os.environ.update(TEST_ENV)

ROOT = Path(__file__).resolve().parent.parent


class RedisServer:
    """A redis-server process on a fixed port that tests may stop and restart."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        from omnimind.embedded_redis import start_redis

        self.proc = start_redis(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer(REDIS_PORT)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


class Worker:
    """A real ``celery -A omnimind worker`` subprocess."""

    def __init__(self, name: str, queues: str, pool: str, concurrency: int, env: dict, log: Path) -> None:
        self.name = name
        self.hostname = f"{name}@{socket.gethostname()}"
        self.log = log
        cmd = [
            sys.executable, "-m", "celery", "-A", "omnimind", "worker",
            "-Q", queues, "-n", self.hostname, "--pool", pool, "--concurrency", str(concurrency),
            "--loglevel", "INFO", "--without-mingle", "--without-gossip",
        ]
        self._log_file = open(log, "wb")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env={**os.environ, **env}, stdout=self._log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the worker and every process it started (prefork children)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> int:
        """Warm shutdown (SIGTERM), as an operator would do it."""
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
                self.proc.terminate()
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log_file.close()
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_worker(redis_client, tmp_path):
    """Start workers; each is registered (heartbeating in Redis) when returned."""
    from omnimind.scaling.registry import ServiceRegistry
    from omnimind.config import settings

    started: list[Worker] = []
    registry = ServiceRegistry.from_settings(settings, client=redis_client)
    clients: dict[str, object] = {}  # broker URL -> client app, for workers on another broker

    def start(name: str, queues: str = "inference", pool: str = "threads", concurrency: int = 2, **env) -> Worker:
        worker = Worker(name, queues, pool, concurrency, {k: str(v) for k, v in env.items()}, tmp_path / f"{name}.log")
        started.append(worker)

        def registered():
            if worker.proc.poll() is not None:
                raise AssertionError(f"worker {name} exited early:\n{worker.output()[-3000:]}")
            return worker.hostname in {n.node_id for n in registry.store.snapshot()[1]}

        wait_until(registered, timeout=60, message=f"worker {name} to register")
        # Registered happens before the consumer starts; a ping through the broker
        # (the worker's own: OMNIMIND_BROKER_URL may name RabbitMQ) proves it is consuming.
        from omnimind.app import app

        broker = str(env.get("OMNIMIND_BROKER_URL") or app.conf.broker_url)
        if broker != app.conf.broker_url:
            if broker not in clients:
                clients[broker] = client_app(broker)
            app = clients[broker]

        def pong():
            try:
                return app.control.ping(destination=[worker.hostname], timeout=0.5)
            except Exception:  # a pooled connection from before a Redis restart
                return False

        wait_until(
            pong,
            timeout=30,
            message=f"worker {name} to answer a ping",
        )
        return worker

    yield start
    for worker in started:
        worker.stop()
    for client in clients.values():
        client.close()


@pytest.fixture
def celery_app(redis_server):
    from omnimind.app import app

    return app


#: What a client needs of ``omnimind.app``'s configuration besides the broker.
CLIENT_SETTINGS = (
    "result_backend", "result_backend_transport_options", "result_expires", "task_serializer",
    "result_serializer", "accept_content", "result_accept_content", "task_default_queue",
    "task_default_exchange", "task_default_routing_key", "task_routes", "task_send_sent_event",
)


def client_app(broker_url: str):
    """A client-only Celery app configured like ``omnimind.app`` but on ``broker_url``
    (``omnimind.app`` is built from this process's settings: the test Redis),
    with the queues declared as a farm on that broker declares them. Close it after use."""
    from celery import Celery

    from omnimind.app import app, capability_queues

    client = Celery("omnimind-client", set_as_current=False)
    client.conf.update(
        {key: app.conf[key] for key in CLIENT_SETTINGS},
        broker_url=broker_url,
        task_queues=capability_queues(broker_url),
    )
    return client


RABBITMQ_HOST, RABBITMQ_PORT = "127.0.0.1", 5672


def rabbitmqctl(*args: str) -> str:
    """Runs ``rabbitmqctl -q ARGS`` (root or the rabbitmq user); its output."""
    try:
        done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise RuntimeError(f"RabbitMQ answers on {RABBITMQ_HOST}:{RABBITMQ_PORT} but rabbitmqctl is not on PATH") from None
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed ({done.returncode}): {done.stderr or done.stdout}")
    return done.stdout


@pytest.fixture
def rabbitmq_url():
    """``amqp://guest:guest@127.0.0.1:5672/<vhost>`` on a vhost of its own, deleted
    afterwards (with its queues). Skips only when no RabbitMQ answers on 127.0.0.1:5672."""
    import secrets

    try:
        socket.create_connection((RABBITMQ_HOST, RABBITMQ_PORT), timeout=2).close()
    except OSError as exc:
        from tests.suites import skip_suite

        skip_suite("rabbitmq", f"no RabbitMQ answers on {RABBITMQ_HOST}:{RABBITMQ_PORT} ({exc}); .ci/run installs and starts one")
    vhost = f"omnimind-test-{secrets.token_hex(4)}"
    # As README "Sending work" sets a farm's vhost up: a stock Celery client's queue declaration
    # (no x-queue-type) then equals the farm's quorum queues.
    rabbitmqctl("add_vhost", vhost, "--default-queue-type", "quorum")
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
def rabbitmq_app(rabbitmq_url, redis_server):
    """A client app (see :func:`client_app`) on the ``rabbitmq_url`` broker, results in the test Redis."""
    client = client_app(rabbitmq_url)
    yield client
    # Celery subscribes to the members of a group found in a result's children (an
    # agent's subtasks) and keeps them until fulfilled again: unsubscribe now, while
    # the test Redis runs, not when the collector finds them after it has stopped.
    for waiters in [w for mapping in client.backend._pending_results for w in mapping.values()]:
        for result in list(waiters.values()):
            client.backend.remove_pending_result(result)
    client.close()
