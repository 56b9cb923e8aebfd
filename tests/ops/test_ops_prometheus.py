"""promtool accepts the Prometheus config and the alert rules, and the rules'
unit tests (ops/prometheus/alerts_test.yml) pass. Every alert carries a
severity, a summary, a description and a runbook hint, and has both a firing
and a not-firing unit test.

promtool comes with Debian's `prometheus` package (apt-get install prometheus).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.suites import suite_reason

OPS = Path(__file__).resolve().parents[2] / "ops"
PROM = OPS / "prometheus"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason=suite_reason("prometheus", "promtool not installed (apt-get install prometheus); Prometheus config/rule checks skipped"),
)

REQUIRED_ALERTS = {
    "OmniMindWorkerDown",
    "OmniMindTaskFailureRatioHigh",
    "OmniMindQueueBacklogGrowing",
    "OmniMindNoRaftLeader",
    "OmniMindRaftLeaderFlapping",
    "OmniMindModelValidationRejections",
    "OmniMindModelSwapRejected",
    "OmniMindDriftStorm",
    "OmniMindInferenceLatencyP95High",
    "OmniMindRedisUnreachable",
    "OmniMindStaleFenceWrites",
}


def promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def alert_rules() -> list[dict]:
    doc = yaml.safe_load((PROM / "alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


@needs_promtool
def test_promtool_check_config():
    r = promtool("check", "config", "prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_promtool_check_compose_config(tmp_path):
    # docker-compose mounts alerts.yml beside this config; check them the same way.
    shutil.copy(OPS / "deploy" / "prometheus-compose.yml", tmp_path / "prometheus.yml")
    shutil.copy(PROM / "alerts.yml", tmp_path / "alerts.yml")
    r = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_promtool_check_rules():
    r = promtool("check", "rules", "alerts.yml")
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_promtool_test_rules():
    r = promtool("test", "rules", "alerts_test.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_required_alerts_exist():
    assert REQUIRED_ALERTS <= {r["alert"] for r in alert_rules()}


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_has_severity_summary_description_runbook(rule):
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    for key in ("summary", "description", "runbook"):
        assert rule["annotations"].get(key, "").strip(), f"{rule['alert']} lacks annotation {key}"


def test_every_alert_has_firing_and_quiet_unit_tests():
    doc = yaml.safe_load((PROM / "alerts_test.yml").read_text())
    assert doc["rule_files"] == ["alerts.yml"]
    firing, quiet = set(), set()
    for test in doc["tests"]:
        for case in test["alert_rule_test"]:
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert not names - firing, f"alerts without a firing test: {sorted(names - firing)}"
    assert not names - quiet, f"alerts without a not-firing test: {sorted(names - quiet)}"


def test_scrape_jobs_match_the_rules():
    # The rules select job="omnimind-workers" / job="omnimind-flower".
    for path in (PROM / "prometheus.yml", OPS / "deploy" / "prometheus-compose.yml"):
        cfg = yaml.safe_load(path.read_text())
        jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
        assert {"omnimind-workers", "omnimind-flower"} <= jobs.keys(), path
        assert cfg["rule_files"] == ["alerts.yml"], path
        # "No Raft leader for 10s" needs samples at least every 5s.
        assert cfg["global"]["scrape_interval"] == "5s" and cfg["global"]["evaluation_interval"] == "5s", path
    local = yaml.safe_load((PROM / "prometheus.yml").read_text())
    targets = {
        t for j in local["scrape_configs"] for sc in j.get("static_configs", []) for t in sc["targets"]
    }
    assert {"127.0.0.1:9101", "127.0.0.1:9102", "127.0.0.1:9103", "127.0.0.1:9104", "127.0.0.1:5555"} <= targets


def test_worker_targets_carry_their_capability():
    # One memory worker (embedded Qdrant: one process) and one agents worker, not a combined "cpu" one.
    expected = {
        PROM / "prometheus.yml": {"127.0.0.1:9101": "inference", "127.0.0.1:9102": "training",
                                  "127.0.0.1:9103": "memory", "127.0.0.1:9104": "agents"},
        OPS / "deploy" / "prometheus-compose.yml": {"inference:9101": "inference", "training:9102": "training",
                                                    "memory:9103": "memory", "agents:9104": "agents"},
    }
    for path, want in expected.items():
        cfg = yaml.safe_load(path.read_text())
        (job,) = [j for j in cfg["scrape_configs"] if j["job_name"] == "omnimind-workers"]
        got = {t: sc.get("labels", {}).get("capability") for sc in job["static_configs"] for t in sc["targets"]}
        assert got == want, path
