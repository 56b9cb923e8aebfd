"""The provisioned Grafana dashboard and provisioning files are well formed:
every panel has a datasource and a query, the seed's cluster overview is there,
and the provisioning points at the dashboard and the datasource it uses."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.suites import suite_reason

OPS = Path(__file__).resolve().parents[2] / "ops"
GRAFANA = OPS / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "omnimind-cluster.json"
DS_UID = "omnimind-prometheus"


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out += p.get("panels", [])
    return out


def exprs(dash: dict) -> str:
    return "\n".join(t["expr"] for p in panels(dash) for t in p.get("targets", []))


def test_dashboard_metadata(dashboard):
    assert dashboard["uid"] and dashboard["title"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    ds_vars = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert [v["name"] for v in ds_vars] == ["DS_PROMETHEUS"]
    assert ds_vars[0]["query"] == "prometheus"
    assert ds_vars[0]["current"]["value"] == DS_UID


def test_every_panel_has_a_datasource_and_a_query(dashboard):
    data_panels = [p for p in panels(dashboard) if p["type"] != "row"]
    assert len(data_panels) >= 20
    for p in data_panels:
        assert p["datasource"] in ({"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, {"type": "prometheus", "uid": DS_UID}), p["title"]
        assert p.get("targets"), f"panel {p['title']!r} has no target"
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), p["title"]
        for t in p["targets"]:
            assert t["expr"].strip(), p["title"]
            assert t.get("datasource", p["datasource"]) == p["datasource"], p["title"]


def test_panel_ids_unique_and_layout_fits(dashboard):
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for p in panels(dashboard):
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]


def test_seed_cluster_overview_panels(dashboard):
    by_title = {p["title"]: p for p in panels(dashboard)}
    seed = {
        "Cluster Nodes": "omnimind_cluster_nodes_total",
        "Request Rate": "sum by (node_id, status) (rate(omnimind_cluster_requests_total[5m]))",
        "P95 Latency": "histogram_quantile(0.95, sum by (le, node_id) (rate(omnimind_cluster_latency_seconds_bucket[5m])))",
        "Model Version": "omnimind_model_version",
    }
    for title, query in seed.items():
        assert title in by_title, title
        assert query in by_title[title]["targets"][0]["expr"], title


@pytest.mark.parametrize(
    "metric",
    [
        "omnimind_learning_loss",
        "omnimind_learning_drift_detections_total",
        "omnimind_raft_is_leader",
        "omnimind_raft_term",
        "omnimind_queue_length",
        "omnimind_model_swaps_total",
        "omnimind_model_swap_rejections_total",
        "omnimind_bad_inputs_total",
        'omnimind_tasks_total{state="failed"}',
        "omnimind_batch_size_bucket",
        "omnimind_batch_size_sum[5m])) / sum(rate(omnimind_batch_size_count",
        "omnimind_batch_queue_delay_seconds_bucket",
    ],
)
def test_dashboard_covers(dashboard, metric):
    assert metric in exprs(dashboard)


def test_datasource_provisioning():
    doc = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["type"] == "prometheus" and ds["uid"] == DS_UID and ds["access"] == "proxy"
    assert ds["url"] == "${OMNIMIND_PROMETHEUS_URL}"


def test_dashboard_provisioning_matches_compose_mounts():
    doc = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "omnimind.yml").read_text())
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((OPS / "deploy" / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    assert mounts["../grafana/dashboards"] == provider["options"]["path"]
    assert mounts["../grafana/provisioning"] == "/etc/grafana/provisioning"
    assert grafana["environment"]["OMNIMIND_PROMETHEUS_URL"] == "http://prometheus:9090"


@pytest.mark.skipif(shutil.which("promtool") is None, reason=suite_reason(
    "prometheus", "promtool not installed (apt-get install prometheus); PromQL syntax of panels unchecked"))
def test_panel_queries_are_valid_promql(dashboard, tmp_path):
    # promtool parses recording rules: wrap every panel query in one.
    rules = [
        {"record": f"dashboard:panel_{p['id']}:{t['refId']}", "expr": t["expr"]}
        for p in panels(dashboard)
        for t in p.get("targets", [])
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
