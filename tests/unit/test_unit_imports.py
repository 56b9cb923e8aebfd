"""Importing a module has no side effects: no app built, no connection, no environment read.

Each check runs in a fresh interpreter (``subprocess``), since this one has imported
half the project already.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("omnimind", "workers", "tasks")
#: What no pure core may load, directly or through a parent package.
TRANSPORT_PACKAGES = ("celery", "kombu", "redis", "amqp", "billiard", "vine")
PURE_CORES = ("omnimind.learning", "omnimind.scaling.raft.core", "omnimind.validation")


def all_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            names.append(".".join(parts))
    return names


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any OMNIMIND_* variable, with ``extra`` added."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIMIND_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**env, **extra}


@pytest.mark.parametrize("core", PURE_CORES)
def test_a_pure_core_imports_no_broker_or_transport(core):
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({core!r})\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = run_python(code, clean_env())
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.splitlines()[-1])
    banned = [m for m in loaded if m.split(".")[0] in TRANSPORT_PACKAGES]
    runners = [m for m in loaded if m.startswith(("omnimind.scaling.raft.transport", "omnimind.scaling.raft.storage",
                                                  "omnimind.scaling.raft.node", "omnimind.app", "workers", "tasks"))]
    assert banned == [] and runners == [], f"{core} loads {banned + runners}"


def test_every_module_imports_with_a_broken_environment_and_no_redis():
    """A setting that cannot be read (``OMNIMIND_HEARTBEAT_INTERVAL=0`` is below its minimum) and
    URLs where nothing listens: importing still succeeds, and builds no Celery app."""
    modules = all_modules()
    assert "tasks.inference" in modules and "workers.bootsteps" in modules and "omnimind.app" in modules
    code = (
        "import importlib, json, sys\n"
        f"modules = {modules!r}\n"
        "failed = {}\n"
        "for name in modules:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except BaseException as exc:\n"
        "        failed[name] = f'{type(exc).__name__}: {exc}'\n"
        "import omnimind.app, omnimind.config\n"
        "print(json.dumps({'failed': failed, 'app_built': omnimind.app._app is not None,\n"
        "                  'settings_read': omnimind.config._settings is not None}))\n"
    )
    nowhere = "redis://127.0.0.1:1/0"
    env = clean_env(OMNIMIND_HEARTBEAT_INTERVAL="0", OMNIMIND_BROKER_URL=nowhere, OMNIMIND_REDIS_URL=nowhere)
    result = run_python(code, env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report == {"failed": {}, "app_built": False, "settings_read": False}


def test_the_app_is_built_on_first_use_and_the_broken_setting_is_reported_then():
    code = (
        "import omnimind\n"
        "from omnimind.errors import ConfigError\n"
        "try:\n"
        "    omnimind.celery\n"
        "except ConfigError as exc:\n"
        "    print('ConfigError', exc)\n"
    )
    result = run_python(code, clean_env(OMNIMIND_HEARTBEAT_INTERVAL="0"))
    assert result.returncode == 0, result.stderr
    assert "ConfigError OMNIMIND_HEARTBEAT_INTERVAL must be at least" in result.stdout


def test_settings_are_read_once_and_reset_reads_them_again(monkeypatch):
    from omnimind import config

    before = config.get_settings()
    try:
        assert config.get_settings() is before and config.settings.broker_url == before.broker_url
        monkeypatch.setenv("OMNIMIND_MODEL_SEED", str(before.model_seed + 1))
        assert config.get_settings().model_seed == before.model_seed  # cached: the environment is read once
        config.reset_settings()
        assert config.get_settings().model_seed == before.model_seed + 1
        assert config.settings.model_seed == before.model_seed + 1
    finally:
        monkeypatch.undo()
        config.reset_settings()
