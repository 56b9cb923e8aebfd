"""Fixtures: a real redis-server on a free loopback port, and real worker processes.

The environment is set here, at import, because ``omnimind.app`` reads its
settings once when first imported, and pytest imports this file before any test
module or doctest.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_until


# Idempotent: this module may be imported twice (as conftest and as tests.conftest).
REDIS_PORT = int(os.environ.setdefault("OMNIMIND_TEST_REDIS_PORT", str(free_port())))
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"
TEST_ENV = {
    "OMNIMIND_BROKER_URL": REDIS_URL,
    "OMNIMIND_RESULT_BACKEND": REDIS_URL,
    "OMNIMIND_REDIS_URL": REDIS_URL,
    "OMNIMIND_HEARTBEAT_INTERVAL": "0.5",
    # Short limits so that redelivery after a worker dies is quick to observe.
    "OMNIMIND_VISIBILITY_TIMEOUT": "8",
    "OMNIMIND_RESTORE_INTERVAL": "1",
    "OMNIMIND_INFERENCE_TIME_LIMIT": "6",
    "OMNIMIND_TRAINING_TIME_LIMIT": "7",
    "OMNIMIND_MEMORY_TIME_LIMIT": "6",
    "OMNIMIND_AGENTS_TIME_LIMIT": "6",
    "OMNIMIND_MAX_BATCH_SIZE": "64",
    "OMNIMIND_TASK_EVENTS": "0",
}
os.environ.update(TEST_ENV)

# The Celery app first: worker modules import it, and it imports them back.
import omnimind  # noqa: E402,F401

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
    from omnimind.app import settings

    started: list[Worker] = []
    registry = ServiceRegistry.from_settings(settings, client=redis_client)

    def start(name: str, queues: str = "inference", pool: str = "threads", concurrency: int = 2, **env) -> Worker:
        worker = Worker(name, queues, pool, concurrency, {k: str(v) for k, v in env.items()}, tmp_path / f"{name}.log")
        started.append(worker)

        def registered():
            if worker.proc.poll() is not None:
                raise AssertionError(f"worker {name} exited early:\n{worker.output()[-3000:]}")
            return worker.hostname in {n.node_id for n in registry.store.snapshot()[1]}

        wait_until(registered, timeout=60, message=f"worker {name} to register")
        # Registered happens before the consumer starts; a ping through the broker
        # proves it is consuming.
        from omnimind.app import app

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


@pytest.fixture
def celery_app(redis_server):
    from omnimind.app import app

    return app
