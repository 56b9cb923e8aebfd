"""The README's first command: `omnimind up` runs the whole farm on an embedded
Redis, answers a predict, guards Flower with a password, and stops cleanly."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import psutil

from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
OMNIMIND = [sys.executable, "-m", "omnimind.cli"]


def http_status(url, auth=None):
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def test_omnimind_up_serves_and_stops_cleanly(tmp_path):
    # A user's shell: no OmniMind settings at all, so the farm embeds its Redis.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIMIND_")}
    proc = subprocess.Popen(
        [*OMNIMIND, "up"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    try:
        wait_until(lambda: any("farm is up" in l for l in lines) or proc.poll() is not None, timeout=90,
                   message="omnimind up to start")
        text = "".join(lines)
        assert proc.poll() is None, text
        broker = re.search(r"broker (redis://\S+)", text).group(1)
        user, password = re.search(r"user (\S+) password (\S+)", text).groups()
        assert "metrics of inference on http://127.0.0.1:9101/metrics" in text
        client_env = {**env, "OMNIMIND_BROKER_URL": broker}

        def ready():
            status = subprocess.run([*OMNIMIND, "status", "--json"], env=client_env, capture_output=True, text=True)
            nodes = json.loads(status.stdout)["nodes"] if status.returncode == 0 else []
            healthy = {n["node_id"].split("@")[0] for n in nodes if n["status"] == "healthy"}
            return healthy >= {"inference", "training", "memory", "agents"}

        wait_until(ready, timeout=60, interval=0.5, message="four healthy workers")
        out = subprocess.run(
            [*OMNIMIND, "submit", "predict", "--inputs", json.dumps([0.5] * 16)],
            env=client_env, capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["model_version"] == 0
        bad = subprocess.run(
            [*OMNIMIND, "submit", "predict", "--inputs", "[1, 2]"], env=client_env, capture_output=True, text=True, timeout=60
        )
        assert bad.returncode == 1 and "InvalidInput: shape" in bad.stderr

        wait_until(lambda: http_status("http://127.0.0.1:5555/") is not None, timeout=30, message="flower")
        assert http_status("http://127.0.0.1:5555/") == 401
        assert http_status("http://127.0.0.1:5555/", (user, password)) == 200
        assert http_status("http://127.0.0.1:5555/", (user, "wrong")) == 401

        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 6
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    assert code == 0
    assert "omnimind up: stopped" in "".join(lines)
    wait_until(lambda: not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE],
               timeout=10, message="no process left behind")
