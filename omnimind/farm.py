"""Run a local farm from the Procfile: the processes ``omnimind up`` supervises.

The Procfile stays usable by foreman/honcho; ``omnimind up`` adds what those
lack: an embedded Redis on a free port when no broker URL is configured, a
generated Flower password when none is set, prefixed output, and a clean
shutdown of every process group on Ctrl-C.

>>> parse_procfile("# comment\\nweb: run --port=1\\nworker: celery -A omnimind worker\\n")
[ProcessSpec(name='web', command='run --port=1'), ProcessSpec(name='worker', command='celery -A omnimind worker')]
"""
from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from omnimind.embedded_redis import free_port, wait_for_redis
from omnimind.errors import ConfigError

_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
REDIS_PROCESS = "redis"


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    command: str


def parse_procfile(text: str) -> list[ProcessSpec]:
    specs = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise ConfigError(f"Procfile line {number} is not 'name: command': {raw!r}")
        specs.append(ProcessSpec(match.group(1), match.group(2)))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"Procfile has duplicate process names: {names}")
    return specs


def find_procfile() -> Path:
    """The Procfile next to the installed package (a source checkout), or in cwd."""
    for candidate in (Path.cwd() / "Procfile", Path(__file__).resolve().parent.parent / "Procfile"):
        if candidate.is_file():
            return candidate
    raise ConfigError("no Procfile found in the current directory or the OmniMind checkout")


def farm_environment(env: dict[str, str]) -> tuple[dict[str, str], bool]:
    """The environment of the farm's processes, and whether it needs its own Redis."""
    env = dict(env)
    # The Procfile's `celery` and `omnimind` must be this installation's, even
    # when its virtual environment is not activated.
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    embedded = not env.get("OMNIMIND_BROKER_URL")
    if embedded:
        port = free_port()
        url = f"redis://127.0.0.1:{port}/0"
        env["OMNIMIND_REDIS_PORT"] = str(port)
        env["OMNIMIND_BROKER_URL"] = url
        env.setdefault("OMNIMIND_RESULT_BACKEND", url)
        env.setdefault("OMNIMIND_REDIS_URL", url)
    env.setdefault("OMNIMIND_FLOWER_USER", "admin")
    if not env.get("OMNIMIND_FLOWER_PASSWORD"):
        env["OMNIMIND_FLOWER_PASSWORD"] = secrets.token_urlsafe(12)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env, embedded


class Farm:
    """Starts the Procfile's processes and stops them all together."""

    def __init__(self, specs: list[ProcessSpec], env: dict[str, str], out: IO[str] = sys.stdout) -> None:
        self.specs = specs
        self.env = env
        self.out = out
        self.processes: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        # Redis first: every other process needs it.
        ordered = sorted(self.specs, key=lambda s: s.name != REDIS_PROCESS)
        for spec in ordered:
            self._spawn(spec)
            if spec.name == REDIS_PROCESS:
                wait_for_redis(int(self.env["OMNIMIND_REDIS_PORT"]), timeout=15)

    def _spawn(self, spec: ProcessSpec) -> None:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {spec.command}"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # its own process group: Ctrl-C is ours to relay
        )
        self.processes[spec.name] = proc
        threading.Thread(target=self._relay, args=(spec.name, proc), daemon=True).start()

    def _relay(self, name: str, proc: subprocess.Popen) -> None:
        width = max(len(s.name) for s in self.specs)
        for line in proc.stdout:
            with self._lock:
                self.out.write(f"{name:<{width}} | {line}")
                self.out.flush()

    def exited(self) -> dict[str, int]:
        return {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (warm shutdown) to every group, Redis last; SIGKILL stragglers."""
        workers = [(n, p) for n, p in self.processes.items() if n != REDIS_PROCESS]
        redis_proc = [(n, p) for n, p in self.processes.items() if n == REDIS_PROCESS]
        for group in (workers, redis_proc):
            for _, proc in group:
                _signal_group(proc, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for _, proc in group:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait(5)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
