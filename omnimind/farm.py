"""Run a local farm from the Procfile: the processes ``omnimind up`` supervises.

The Procfile stays usable by foreman/honcho; ``omnimind up`` adds what those
lack: an embedded Redis on a free port when no broker URL is configured, a
Flower password generated once into ``<data dir>/flower-password`` (0600) when
none is set (Flower reads it from its environment, never from its command line:
``omnimind flower``), workers' /metrics on loopback, a Raft secret generated once and
kept under the data dir (the training worker is a one-member Raft group, so its
data dir must stay usable across restarts), a free Raft port, prefixed output,
and a clean shutdown of every process group on Ctrl-C, Redis last.

>>> parse_procfile("# comment\\nweb: run --port=1\\nworker: celery -A omnimind worker\\n")
[ProcessSpec(name='web', command='run --port=1'), ProcessSpec(name='worker', command='celery -A omnimind worker')]
"""
from __future__ import annotations

import fcntl
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
from typing import IO, Mapping

from omnimind.config import MIN_RAFT_SECRET_BYTES, Settings, given, is_amqp_url, variable
from omnimind.embedded_redis import free_port, wait_for_redis
from omnimind.errors import ConfigError

_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
REDIS_PROCESS = "redis"
#: The generated Raft secret, under the data dir (mode 0600).
RAFT_SECRET_FILE = "raft-secret"
#: The generated Flower password, under the data dir (mode 0600).
FLOWER_PASSWORD_FILE = "flower-password"
#: Held (flock) by the running farm.
LOCK_FILE = "up.lock"


@dataclass(frozen=True)
class ProcessSpec:
    """One Procfile line.

    >>> ProcessSpec("redis", "omnimind redis").name
    'redis'
    """

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
    broker = given(env, "broker_url")
    # No broker: Redis is the broker too. A RabbitMQ broker: Redis still holds OmniMind's
    # keys and the results, embedded unless OMNIMIND_REDIS_URL names one.
    embedded = not broker or (is_amqp_url(broker) and not given(env, "redis_url"))
    if embedded:
        port = free_port()
        url = f"redis://127.0.0.1:{port}/0"
        env[variable("redis_port")] = str(port)
        env[variable("broker_url")] = broker or url
        env.setdefault(variable("result_backend"), url)
        env.setdefault(variable("redis_url"), url)
    # A local farm's /metrics answer on loopback only (workers default to every interface).
    env.setdefault(variable("metrics_address"), "127.0.0.1")
    settings = Settings.from_env(env)  # the farm's settings, checked before anything starts
    if not settings.flower_password and not settings.flower_password_file:
        # A path, not the password: only the Flower process reads it (omnimind flower).
        path = stored_flower_password(Path(settings.data_dir))
        env[variable("flower_password_file")] = str(path.resolve())
    if not settings.raft_secret:
        env[variable("raft_secret")] = stored_raft_secret(Path(settings.data_dir))
    if not settings.raft_port:
        # Free, so that two farms on one machine do not collide; one member
        # keeps no peer address in its data dir, so it may change each time.
        taken = {given(env, "redis_port")}
        port = free_port()
        while str(port) in taken:
            port = free_port()
        env[variable("raft_port")] = str(port)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env, embedded


def stored_raft_secret(data_dir: Path) -> str:
    """The farm's Raft secret: read from ``<data_dir>/raft-secret``, created there
    (0600) on first use, so a restarted farm's members authenticate as before."""
    path = data_dir / RAFT_SECRET_FILE
    secret = _stored_secret(path, secrets.token_hex(16))
    if len(secret.encode()) < MIN_RAFT_SECRET_BYTES:
        raise ConfigError(
            f"{path} holds no Raft secret of {MIN_RAFT_SECRET_BYTES}+ bytes: delete it to have a new one made, "
            "or set OMNIMIND_RAFT_SECRET"
        )
    return secret


def stored_flower_password(data_dir: Path) -> Path:
    """``<data_dir>/flower-password``, holding a password made there (0600) on first use."""
    path = data_dir / FLOWER_PASSWORD_FILE
    if not _stored_secret(path, secrets.token_urlsafe(16)):
        raise ConfigError(f"{path} is empty: delete it to have a new password made, or set OMNIMIND_FLOWER_PASSWORD")
    return path


def _stored_secret(path: Path, new: str) -> str:
    """The secret in ``path`` (stripped), after writing ``new`` there (0600, fsynced) if it did not exist."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(new + "\n")
        out.flush()
        os.fsync(out.fileno())
    return new


def flower_basic_auth(settings: Settings) -> str:
    """Flower's ``user:password`` from ``OMNIMIND_FLOWER_USER`` (default admin) and
    ``OMNIMIND_FLOWER_PASSWORD`` or the file ``OMNIMIND_FLOWER_PASSWORD_FILE`` names.

    >>> flower_basic_auth(Settings.from_env({"OMNIMIND_FLOWER_PASSWORD": "s3cret"}))
    'admin:s3cret'
    >>> flower_basic_auth(Settings.from_env({}))
    Traceback (most recent call last):
    ...
    omnimind.errors.ConfigError: Flower needs a password: set OMNIMIND_FLOWER_PASSWORD or OMNIMIND_FLOWER_PASSWORD_FILE (`omnimind up` makes one)
    """
    user = settings.flower_user or "admin"
    password = settings.flower_password
    file = settings.flower_password_file
    if not password and file:
        try:
            password = Path(file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"OMNIMIND_FLOWER_PASSWORD_FILE: cannot read {file}: {exc.strerror}") from None
    if not password:
        raise ConfigError("Flower needs a password: set OMNIMIND_FLOWER_PASSWORD or OMNIMIND_FLOWER_PASSWORD_FILE "
                          "(`omnimind up` makes one)")
    # Flower splits FLOWER_BASIC_AUTH at commas (several users), and a user at its first colon.
    if "," in user + password or ":" in user:
        raise ConfigError("the Flower user may not contain ',' or ':', nor its password ','")
    return f"{user}:{password}"


class Farm:
    """Starts the Procfile's processes and stops them all together.

    >>> import io, tempfile
    >>> env = {**os.environ, "OMNIMIND_DATA_DIR": tempfile.mkdtemp()}
    >>> farm = Farm([ProcessSpec("hello", "echo hi")], env, out=io.StringIO())
    >>> farm.start(); farm.processes["hello"].wait(); farm.stop()
    0
    """

    def __init__(self, specs: list[ProcessSpec], env: dict[str, str], out: IO[str] = sys.stdout) -> None:
        self.specs = specs
        self.env = env
        self.out = out
        self.processes: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._data_dir_lock: IO | None = None

    def start(self) -> None:
        self._lock_data_dir()
        # Redis first: every other process needs it.
        ordered = sorted(self.specs, key=lambda s: s.name != REDIS_PROCESS)
        for spec in ordered:
            self._spawn(spec)
            if spec.name == REDIS_PROCESS:
                wait_for_redis(Settings.from_env(self.env).redis_port, timeout=15)

    def _lock_data_dir(self) -> None:
        """One farm per data dir: two would share an AOF, a Raft log, a checkpoint
        and embedded Qdrant files, and corrupt them."""
        data_dir = Path(Settings.from_env(self.env).data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(data_dir / LOCK_FILE, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ConfigError(
                f"another `omnimind up` runs on the data dir {data_dir.resolve()}: stop it, "
                "or give this farm its own OMNIMIND_DATA_DIR"
            ) from None
        self._data_dir_lock = handle

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
        """SIGTERM (warm shutdown) to every group, Redis last, so that it records
        what the workers wrote as they stopped; SIGKILL stragglers."""
        # A second Ctrl-C must not cut this short: it would leave the process
        # groups running (they are not in our terminal's group) and Redis unsaved.
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
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
        finally:
            if main and previous is not None:
                signal.signal(signal.SIGINT, previous)
        if self._data_dir_lock is not None:
            self._data_dir_lock.close()  # releases the flock
            self._data_dir_lock = None


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def worker_nodenames(specs: list) -> list[str]:
    """The Celery node names (``-n``, with ``%h`` and friends expanded as Celery
    expands them) of the farm's ``celery ... worker`` processes.

    >>> import socket
    >>> spec = ProcessSpec("inference", "celery -A omnimind worker -Q inference -n inference@%h --pool=threads")
    >>> worker_nodenames([spec, ProcessSpec("redis", "omnimind redis")]) == [f"inference@{socket.gethostname()}"]
    True
    """
    from celery.utils.nodenames import host_format

    names = []
    for spec in specs:
        found = re.search(r"(?:^|\s)(?:-n|--hostname)[= ]?(\S+)", spec.command)
        if found and re.search(r"\bworker\b", spec.command):
            names.append(host_format(found.group(1)))
    return names


def wait_until_answering(env: Mapping[str, str], names: list[str], timeout: float, stop) -> list[str]:
    """Ping the workers ``names`` through the farm's broker until each has answered
    (or ``timeout`` s, or ``stop()`` is true); returns those that never did."""
    from celery import Celery

    from omnimind.sentinel import transport_options

    settings = Settings.from_env(env)
    app = Celery("omnimind-up", broker=settings.broker_url, set_as_current=False)
    # A sentinel:// broker also needs the master's name.
    app.conf.broker_transport_options = transport_options(settings.broker_url, settings.sentinel_master)
    missing = set(names)
    deadline = time.monotonic() + timeout
    try:
        while missing and time.monotonic() < deadline and not stop():
            try:
                replies = app.control.ping(destination=sorted(missing), timeout=1.0)
            except Exception:  # the broker is still starting
                replies = []
                time.sleep(0.5)
            for reply in replies:
                missing -= set(reply)
    finally:
        app.close()
    return sorted(missing)
