"""A required suite's skip fails the run (tests/suites.py), in a pytest run of its own."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SKIPPING = '''
from tests.suites import skip_suite, suite_reason
import pytest

def test_needs_rabbitmq():
    skip_suite("rabbitmq", "no RabbitMQ here")

@pytest.mark.skipif(True, reason=suite_reason("prometheus", "no promtool here"))
def test_needs_promtool():
    pass

def test_plain_skip():
    pytest.skip("nothing required")
'''


def run_pytest(tmp_path: Path, required: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    env = {k: v for k, v in os.environ.items() if k != "OMNIMIND_REQUIRE_SUITES"}
    env["PYTHONPATH"] = str(ROOT)
    if required is not None:
        env["OMNIMIND_REQUIRE_SUITES"] = required
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.suites", "-p", "no:cacheprovider", "-rs", "-q",
         "-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path / "test_skipping.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )


def test_skips_pass_and_print_their_reasons_when_no_suite_is_required(tmp_path):
    run = run_pytest(tmp_path, None)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 skipped" in run.stdout and "[suite rabbitmq] no RabbitMQ here" in run.stdout


def test_a_required_suite_skipped_fails_the_run(tmp_path):
    run = run_pytest(tmp_path, "rabbitmq,prometheus")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "2 errors" in run.stdout or "2 failed" in run.stdout or ("1 failed" in run.stdout and "1 error" in run.stdout), run.stdout
    assert "1 skipped" in run.stdout  # the untagged skip stays a skip
    assert "OMNIMIND_REQUIRE_SUITES names the rabbitmq suite" in run.stdout


def test_an_unknown_suite_is_a_usage_error(tmp_path):
    run = run_pytest(tmp_path, "rabbitmq,kafka")
    assert run.returncode == 4, run.stdout + run.stderr
    assert "unknown suite(s) ['kafka']" in run.stdout + run.stderr


@pytest.mark.parametrize("suite", ["multihost", "rabbitmq", "prometheus"])
def test_ci_requires_each_suite(suite):
    assert suite in (ROOT / ".ci" / "run").read_text()
