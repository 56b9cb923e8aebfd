"""The README's first command: `omnimind up` runs the whole farm on an embedded
Redis, answers a predict, guards Flower with a password, runs the schedule as a
one-member Raft group, keeps its data across a restart, and stops cleanly."""
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import psutil
import pytest
from celery import Celery
import redis

from omnimind import keys
from omnimind.errors import ConfigError
from omnimind.farm import FLOWER_PASSWORD_FILE, RAFT_SECRET_FILE, farm_environment
from tests.helpers import free_port, http_json, http_status, wait_until

ROOT = Path(__file__).resolve().parents[2]
OMNIMIND = [sys.executable, "-m", "omnimind.cli"]
WORKERS = {"inference", "training", "memory", "agents"}


def user_env(**extra):
    """A user's shell: no OmniMind settings at all, so the farm embeds its Redis."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("OMNIMIND_")}, **extra}


def flower_tasks(user: str, password: str) -> str:
    """The task names Flower's API knows (``/api/tasks``), as one text."""
    tasks = http_json("http://127.0.0.1:5555/api/tasks", (user, password))
    return " ".join(task.get("name") or "" for task in tasks.values())


class Up:
    """One ``omnimind up`` in ``cwd``; its output collects in ``lines``."""

    def __init__(self, cwd, env):
        self.env = env
        self.proc = subprocess.Popen(
            [*OMNIMIND, "up"], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()
        self.children: list[psutil.Process] = []

    def text(self) -> str:
        return "".join(self.lines)

    def wait_up(self) -> str:
        """The broker URL, once the farm says it is up."""
        wait_until(lambda: "farm is up" in self.text() or self.proc.poll() is not None, timeout=180,
                   message="omnimind up to start")
        assert self.proc.poll() is None, self.text()
        self.broker = re.search(r"broker (redis://\S+)", self.text()).group(1)
        self.client_env = {**self.env, "OMNIMIND_BROKER_URL": self.broker}
        # "Up" means answering: every worker pings back at once.
        client = Celery("up-check", broker=self.broker, set_as_current=False)
        try:
            replies = client.control.ping(timeout=2.0)
        finally:
            client.close()
        assert {name.split("@")[0] for reply in replies for name in reply} >= WORKERS, replies
        return self.broker

    def cli(self, *args, timeout=60):
        return subprocess.run([*OMNIMIND, *args], env=self.client_env, capture_output=True, text=True, timeout=timeout)

    def status(self) -> dict:
        """What ``omnimind status --json`` prints, read in-process (polled: no interpreter start per poll)."""
        from omnimind.config import Settings
        from omnimind.status import read_status

        client = redis.Redis.from_url(self.broker)
        try:
            return read_status(Settings.from_env(self.client_env), client=client).as_dict()
        finally:
            client.close()

    def wait_healthy(self):
        def ready():
            nodes = self.status()["nodes"]
            return {n["node_id"].split("@")[0] for n in nodes if n["status"] == "healthy"} >= WORKERS

        wait_until(ready, timeout=60, interval=0.5, message="four healthy workers")

    def wait_leader(self, above_term: int = 0) -> dict:
        """The training worker's Raft status, once it leads a term above ``above_term``."""
        def leading():
            for member in self.status()["raft"]:
                if member["member_id"] == "c1" and member["state"] == "leader" and member["term"] > above_term:
                    return member
            return None

        return wait_until(leading, timeout=30, interval=0.5, message=f"c1 to lead a term above {above_term}")

    def stop(self, twice: bool = False) -> int:
        """Ctrl-C, as a user stops it; ``twice``: again once the workers are stopping."""
        if self.proc.poll() is None:
            self.children = psutil.Process(self.proc.pid).children(recursive=True)
            self.proc.send_signal(signal.SIGINT)
            if twice:
                wait_until(lambda: "Warm shutdown" in self.text(), timeout=30, message="the workers to stop")
                self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise
        wait_until(lambda: not [c for c in self.children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE],
                   timeout=10, message="no process left behind")
        return code


@pytest.fixture
def omnimind_up():
    started: list[Up] = []

    def start(cwd, env) -> Up:
        started.append(Up(cwd, env))
        return started[-1]

    yield start
    for up in started:
        up.stop()


def test_omnimind_up_serves_and_stops_cleanly(tmp_path, omnimind_up):
    up = omnimind_up(tmp_path, user_env())
    up.wait_up()
    text = up.text()
    # The password is made once into the data dir and never printed, only where it is.
    user, password_file = re.search(r"user (\S+) password in (\S+)", text).groups()
    assert Path(password_file) == (tmp_path / ".omnimind" / FLOWER_PASSWORD_FILE).resolve()
    assert stat.S_IMODE(Path(password_file).stat().st_mode) == 0o600
    password = Path(password_file).read_text().strip()
    assert "metrics of inference on http://127.0.0.1:9101/metrics" in text
    up.wait_healthy()
    out = up.cli("submit", "predict", "--inputs", json.dumps([0.5] * 16))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["model_version"] == 0
    bad = up.cli("submit", "predict", "--inputs", "[1, 2]")
    assert bad.returncode == 1 and "InvalidInput: shape" in bad.stderr

    wait_until(lambda: http_status("http://127.0.0.1:5555/") is not None, timeout=30, message="flower")
    assert http_status("http://127.0.0.1:5555/") == 401
    assert http_status("http://127.0.0.1:5555/", (user, password)) == 200
    assert http_status("http://127.0.0.1:5555/", (user, "wrong")) == 401
    # Task events are off by default; Flower turns them on, and so sees the predicts sent after.
    wait_until(lambda: up.cli("submit", "predict", "--inputs", json.dumps([0.25] * 16)).returncode == 0
               and "tasks.inference.predict" in flower_tasks(user, password), timeout=60, interval=1,
               message="Flower to see a predict")
    # No secret on any command line (`ps`): Flower gets its password through its environment.
    processes = psutil.Process(up.proc.pid).children(recursive=True)
    assert any("flower" in p.cmdline() for p in processes)
    for process in processes:
        assert password not in (Path(f"/proc/{process.pid}/cmdline").read_bytes().decode(errors="replace"))
    assert password not in up.text()

    # With default settings the training worker is the coordinator: a one-member
    # Raft group, led by itself, with a secret that `up` made and never printed.
    up.wait_leader()
    screen = up.cli("status")
    assert "RAFT  leader c1" in screen.stdout, screen.stdout + screen.stderr
    assert json.loads(up.cli("status", "--json").stdout)["raft"][0]["member_id"] == "c1"
    secret_file = tmp_path / ".omnimind" / RAFT_SECRET_FILE
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert secret_file.read_text().strip() not in up.text()

    assert len(psutil.Process(up.proc.pid).children(recursive=True)) >= 6
    assert up.stop() == 0
    assert "omnimind up: stopped" in up.text()


def test_default_farm_schedule_dispatches_retrains(tmp_path, omnimind_up):
    # Only the interval is shortened, so that a scheduled retrain comes within the deadline.
    up = omnimind_up(tmp_path, user_env(OMNIMIND_RETRAIN_INTERVAL="1"))
    client = redis.Redis.from_url(up.wait_up())
    up.wait_leader()
    wait_until(lambda: client.xlen(keys.schedule_accepted("retrain")) >= 2, timeout=60, interval=0.2,
               message="two scheduled retrains accepted by the training worker")
    assert up.stop() == 0


def learn_batch(up, rng, n=32):
    x = rng.normal(size=(n, 16))
    out = up.cli("submit", "learn", "--inputs", json.dumps(x.tolist()),
                 "--targets", json.dumps((x @ np.linspace(-1, 1, 16)).tolist()))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_restarted_farm_keeps_versions_experience_and_fences(tmp_path, omnimind_up):
    from omnimind.config import settings
    from omnimind.models.factory import build_model
    from omnimind.models.store import ModelStore

    rng = np.random.default_rng(0)
    first = omnimind_up(tmp_path, user_env())
    client = redis.Redis.from_url(first.wait_up())
    first.wait_healthy()
    leader = first.wait_leader()
    learn_batch(first, rng)
    # As a dispatch of the coordinator's current term would be fenced.
    ModelStore(client).publish(build_model(settings).state_dict(), fence=(leader["term"], leader["commit_index"]))
    # The learner follows (and checkpoints what it follows on shutdown).
    wait_until(lambda: learn_batch(first, rng)["model_version"] >= 1, timeout=30, interval=0.5,
               message="the learner to continue from v1")
    store = ModelStore(client)
    active, versions, fence = store.active_version(), [v.version for v in store.list_versions()], store.fence()
    samples = client.xlen(keys.EXPERIENCE)
    assert active >= 1 and 1 in versions and samples >= 64
    secret = (tmp_path / ".omnimind" / RAFT_SECRET_FILE).read_text()
    client.close()
    # An impatient second Ctrl-C does not cut the shutdown short.
    assert first.stop(twice=True) == 0
    assert "omnimind up: stopped" in first.text()
    assert "ready to exit" in first.text()  # Redis shut down on SIGTERM, not SIGKILL

    second = omnimind_up(tmp_path, user_env())
    client = redis.Redis.from_url(second.wait_up())
    store = ModelStore(client)  # what `omnimind model list` reads
    assert store.active_version() == active
    assert [v.version for v in store.list_versions()] == versions
    assert store.fence() == fence
    assert client.xlen(keys.EXPERIENCE) >= samples
    assert (tmp_path / ".omnimind" / RAFT_SECRET_FILE).read_text() == secret
    # Same secret, same Raft data dir: the member goes on from its old term.
    second.wait_leader(above_term=leader["term"])
    second.wait_healthy()
    assert learn_batch(second, rng)["model_version"] >= active
    screen = second.cli("status").stdout
    assert re.search(r"v\d+: prequential loss \d", screen), screen
    assert not re.search(r"over 0 samples|loss nan", screen), screen
    client.close()
    assert second.stop() == 0


def test_embedded_redis_persists_only_when_asked(tmp_path):
    from omnimind.embedded_redis import start_redis

    for persist, survives in ((True, True), (False, False)):
        port, folder = free_port(), tmp_path / str(persist)
        folder.mkdir()
        for run in range(2):
            proc = start_redis(port, str(folder), persist=persist)
            client = redis.Redis(port=port)
            try:
                if run == 0:
                    client.set("k", "v")
                else:
                    assert (client.get("k") == b"v") is survives
            finally:
                client.close()
                proc.terminate()  # SIGTERM: what `omnimind up` sends it, after the workers
                assert proc.wait(10) == 0


def test_farm_environment_makes_one_raft_secret_and_a_free_port(tmp_path):
    env = {"OMNIMIND_DATA_DIR": str(tmp_path / "data")}
    first, embedded = farm_environment(env)
    assert embedded
    secret = first["OMNIMIND_RAFT_SECRET"]
    assert len(secret.encode()) >= 16
    assert first["OMNIMIND_RAFT_PORT"].isdigit() and first["OMNIMIND_RAFT_PORT"] != first["OMNIMIND_REDIS_PORT"]
    assert farm_environment(env)[0]["OMNIMIND_RAFT_SECRET"] == secret  # kept for the next `up`
    path = tmp_path / "data" / RAFT_SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    # The user's own settings win, and nothing is written for them.
    mine = {"OMNIMIND_DATA_DIR": str(tmp_path / "other"), "OMNIMIND_RAFT_SECRET": "s" * 16,
            "OMNIMIND_RAFT_PORT": "7100"}
    theirs = farm_environment(mine)[0]
    assert theirs["OMNIMIND_RAFT_SECRET"] == "s" * 16 and theirs["OMNIMIND_RAFT_PORT"] == "7100"
    assert not (tmp_path / "other" / RAFT_SECRET_FILE).exists()

    path.write_text("short\n")
    with pytest.raises(ConfigError, match="delete it"):
        farm_environment(env)


def test_farm_environment_embeds_redis_for_omnimind_keys_beside_rabbitmq(tmp_path):
    amqp = "amqp://guest:guest@127.0.0.1:5672/farm"
    env, embedded = farm_environment({"OMNIMIND_DATA_DIR": str(tmp_path), "OMNIMIND_BROKER_URL": amqp})
    redis_url = f"redis://127.0.0.1:{env['OMNIMIND_REDIS_PORT']}/0"
    assert embedded and env["OMNIMIND_BROKER_URL"] == amqp
    assert env["OMNIMIND_REDIS_URL"] == env["OMNIMIND_RESULT_BACKEND"] == redis_url
    # A Redis of the user's own: nothing embedded.
    theirs = {"OMNIMIND_DATA_DIR": str(tmp_path), "OMNIMIND_BROKER_URL": amqp, "OMNIMIND_REDIS_URL": "redis://r:6379/0"}
    env, embedded = farm_environment(theirs)
    assert not embedded and env["OMNIMIND_REDIS_URL"] == "redis://r:6379/0" and "OMNIMIND_REDIS_PORT" not in env


def test_one_farm_per_data_dir(tmp_path):
    from omnimind.farm import Farm, ProcessSpec

    env = {**user_env(), "OMNIMIND_DATA_DIR": str(tmp_path)}
    first = Farm([ProcessSpec("idle", "sleep 60")], env, out=io.StringIO())
    first.start()
    try:
        with pytest.raises(ConfigError, match="another `omnimind up` runs on the data dir"):
            Farm([ProcessSpec("idle", "sleep 60")], env, out=io.StringIO()).start()
    finally:
        first.stop()
    again = Farm([ProcessSpec("done", "true")], env, out=io.StringIO())
    again.start()  # the stopped farm let go of the data dir
    again.stop()
