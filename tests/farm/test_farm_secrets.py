"""No secret on a command line: Flower, run from the Procfile line as ``omnimind up``
runs it, takes its password from its environment (a generated file under the data
dir), and the workers' /metrics bind the address they are told."""
import io
import os
import re
import stat
import urllib.request

import psutil
import pytest

from omnimind.errors import ConfigError
from omnimind.config import Settings
from omnimind.farm import FLOWER_PASSWORD_FILE, Farm, farm_environment, find_procfile, flower_basic_auth, parse_procfile
from tests.helpers import free_port, http_status, metric_value, wait_until


def user_env(**extra):
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("OMNIMIND_", "FLOWER_"))}, **extra}


def test_flower_password_stays_out_of_argv(tmp_path, redis_server):
    (spec,) = [s for s in parse_procfile(find_procfile().read_text()) if s.name == "flower"]
    port = free_port()
    # The Procfile's line, on a free port so that it cannot meet another farm's Flower.
    spec = type(spec)(spec.name, re.sub(r"--port=\d+", f"--port={port}", spec.command))
    env, embedded = farm_environment(user_env(OMNIMIND_BROKER_URL=redis_server.url, OMNIMIND_DATA_DIR=str(tmp_path)))
    assert not embedded
    path = tmp_path / FLOWER_PASSWORD_FILE
    assert env["OMNIMIND_FLOWER_PASSWORD_FILE"] == str(path.resolve())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    password = path.read_text().strip()
    assert len(password) >= 16 and password not in "".join(env.values())
    assert farm_environment(user_env(OMNIMIND_DATA_DIR=str(tmp_path)))[0]["OMNIMIND_FLOWER_PASSWORD_FILE"] == str(path.resolve())
    assert path.read_text().strip() == password  # kept for the next `up`

    farm = Farm([spec], env, out=io.StringIO())
    farm.start()
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until(lambda: farm.exited() or http_status(url) is not None, timeout=60, message="flower to listen")
        assert not farm.exited(), farm.out.getvalue()
        assert http_status(url) == 401
        assert http_status(url, ("admin", password)) == 200
        assert http_status(url, ("admin", "wrong")) == 401
        # The process that serves it: `sh -c exec omnimind flower` became Python running Flower.
        flower = psutil.Process(farm.processes["flower"].pid)
        with open(f"/proc/{flower.pid}/cmdline", "rb") as proc_cmdline:
            cmdline = proc_cmdline.read()
        assert b"flower" in cmdline and b"celery" in cmdline, cmdline
        assert password.encode() not in cmdline and b"basic-auth" not in cmdline
        for child in flower.children(recursive=True):
            assert password not in " ".join(child.cmdline())
    finally:
        farm.stop()


def test_user_password_wins_and_none_refuses(tmp_path):
    env = farm_environment(user_env(OMNIMIND_DATA_DIR=str(tmp_path), OMNIMIND_FLOWER_PASSWORD="mine-1234"))[0]
    assert "OMNIMIND_FLOWER_PASSWORD_FILE" not in env and not (tmp_path / FLOWER_PASSWORD_FILE).exists()
    assert flower_basic_auth(Settings.from_env(env)) == "admin:mine-1234"
    with pytest.raises(ConfigError, match="needs a password"):
        flower_basic_auth(Settings.from_env({"OMNIMIND_FLOWER_USER": "ops"}))
    with pytest.raises(ConfigError, match="cannot read"):
        flower_basic_auth(Settings.from_env({"OMNIMIND_FLOWER_PASSWORD_FILE": str(tmp_path / "nope")}))
    with pytest.raises(ConfigError, match="may not contain"):
        flower_basic_auth(Settings.from_env({"OMNIMIND_FLOWER_PASSWORD": "a,b"}))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="needs a password"):
        flower_basic_auth(Settings.from_env({"OMNIMIND_FLOWER_PASSWORD_FILE": str(tmp_path / "empty")}))


def test_metrics_bind_the_configured_address(start_worker):
    port = free_port()
    start_worker("metrics-addr", OMNIMIND_METRICS_PORT=port, OMNIMIND_METRICS_ADDRESS="127.0.0.2")

    def scrape(host):
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
                return response.read().decode()
        except OSError:
            return None

    text = wait_until(lambda: scrape("127.0.0.2"), timeout=30, message="/metrics on 127.0.0.2")
    assert metric_value(text, "omnimind_worker_up") == 1
    assert scrape("127.0.0.1") is None  # bound to 127.0.0.2 only
    listening = {c.laddr for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    assert listening == {("127.0.0.2", port)}, listening
