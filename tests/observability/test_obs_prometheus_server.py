"""A real Prometheus server scrapes a running two-worker farm and answers the
queries the dashboard and the alerts are built on."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import urllib.parse
import urllib.request

import pytest

from tests.helpers import free_port, wait_until
from tests.suites import skip_suite

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
P95 = "histogram_quantile(0.95, sum by (le) (rate(omnimind_cluster_latency_seconds_bucket[1m])))"


class Prometheus:
    """A prometheus server process on a loopback port, with its data in tmp."""

    def __init__(self, tmp_path, targets):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = tmp_path / "prometheus.yml"
        # JSON is YAML: no YAML writer needed.
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
            "scrape_configs": [{
                "job_name": "omnimind-workers",
                "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in targets]}],
            }],
        }))
        self.log_path = tmp_path / "prometheus.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def get(self, path, **params):
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.log_path.read_text(errors='replace')[-2000:]}")
        try:
            self.get("/-/ready")
            return True
        except OSError:
            return False

    def query(self, expr):
        body = json.loads(self.get("/api/v1/query", query=expr))
        assert body["status"] == "success", body
        return body["data"]["result"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture
def prometheus(tmp_path):
    if not (os.path.isfile(PROMETHEUS) and os.access(PROMETHEUS, os.X_OK)):
        skip_suite("prometheus", "the prometheus binary is not installed (Debian: apt-get install prometheus); "
                   "this test runs a real Prometheus server against the workers")
    servers = []

    def start(targets):
        server = Prometheus(tmp_path, targets)
        servers.append(server)
        wait_until(server.ready, timeout=30, message="prometheus to be ready")
        return server

    yield start
    for server in servers:
        server.stop()


def test_prometheus_scrapes_a_two_worker_farm(start_worker, celery_app, prometheus, tmp_path):
    ports = [free_port(), free_port()]
    workers = [
        start_worker("prom-a", pool="threads", concurrency=2, OMNIMIND_METRICS_PORT=ports[0],
                     OMNIMIND_METRICS_DIR=tmp_path / "metrics"),
        start_worker("prom-b", pool="prefork", concurrency=2, OMNIMIND_METRICS_PORT=ports[1],
                     OMNIMIND_METRICS_DIR=tmp_path / "metrics"),
    ]
    server = prometheus(ports)

    def both_up():
        return {r["metric"]["instance"] for r in server.query('up{job="omnimind-workers"} == 1')} == {
            f"127.0.0.1:{p}" for p in ports
        }

    wait_until(both_up, timeout=30, message="both workers up in prometheus")

    state = {}

    def answered():
        # Keep traffic flowing so that rate() over the last minute has increases.
        for r in [celery_app.send_task("tasks.inference.predict", kwargs={"inputs": [0.5] * 16}) for _ in range(20)]:
            r.get(timeout=30)
        nodes = server.query("omnimind_cluster_nodes_total")
        p95 = server.query(P95)
        state.update(nodes=nodes, p95=p95)
        if {r["metric"]["instance"] for r in nodes if float(r["value"][1]) == 2} != {f"127.0.0.1:{p}" for p in ports}:
            return False
        return len(p95) == 1 and math.isfinite(float(p95[0]["value"][1])) and float(p95[0]["value"][1]) > 0

    try:
        wait_until(answered, timeout=60, interval=0.2, message="node count and p95 latency from prometheus")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last answers: {state}") from None

    # Requests from both workers (one of them prefork: its children's counts) reach Prometheus.
    served = server.query('sum by (node_id) (omnimind_cluster_requests_total{status="success"})')
    assert {r["metric"]["node_id"] for r in served} == {w.hostname for w in workers}
    total = sum(float(r["value"][1]) for r in served)
    assert total > 0
    # Every worker serves under ~50 ms here: the p95 is a latency, not a bucket bound at infinity.
    assert float(state["p95"][0]["value"][1]) < 1.0
