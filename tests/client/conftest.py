"""A user's own Celery client in a subprocess (tests/client/plain_client.py): a stock
Celery app from the broker URL and the result backend, JSON, importing nothing of
OmniMind's, run from a folder outside the project with no PYTHONPATH."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLAIN_CLIENT = Path(__file__).with_name("plain_client.py")


def run_plain_client(broker: str, backend: str, steps: list[dict], cwd: Path, timeout: float = 240) -> list[dict]:
    """The outcome of each step (see plain_client.py), asserting the client imported nothing of ours."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("OMNIMIND_")}
    done = subprocess.run([sys.executable, str(PLAIN_CLIENT), broker, backend], input=json.dumps(steps),
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["project_modules_imported"] == [], report["project_modules_imported"]
    return report["outcomes"]


@pytest.fixture
def plain_client(tmp_path):
    """``plain_client(broker, backend, steps)`` -> outcomes."""
    folder = tmp_path / "a-users-service"
    folder.mkdir()

    def run(broker: str, backend: str, steps: list[dict], timeout: float = 240) -> list[dict]:
        return run_plain_client(broker, backend, steps, folder, timeout)

    return run
