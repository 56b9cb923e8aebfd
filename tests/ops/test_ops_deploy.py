"""The deployment examples under ops/deploy parse and agree with each other:
worker commands, metrics ports, Flower auth, GPU request, systemd syntax."""
from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

OPS = Path(__file__).resolve().parents[2] / "ops"
DEPLOY = OPS / "deploy"

WORKER_COMMANDS = {
    "inference": "celery -A omnimind worker -Q inference -n inference@%h --pool=threads --concurrency=16",
    "training": "celery -A omnimind worker -Q training -n training@%h --pool=solo",
    "memory": "celery -A omnimind worker -Q memory -n memory@%h --pool=solo",
    "agents": "celery -A omnimind worker -Q agents -n agents@%h --pool=threads --concurrency=4",
}
METRICS_PORTS = {"inference": "9101", "training": "9102", "memory": "9103", "agents": "9104"}
PROCFILE = OPS.parent / "Procfile"


def single_process(command: str) -> bool:
    """One worker process with one execution slot: embedded Qdrant allows no more."""
    args = command.split()
    return "--pool=solo" in args or "--concurrency=1" in args
YAML_FILES = sorted(p for ext in ("*.yml", "*.yaml") for p in DEPLOY.rglob(ext))


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs)


def test_there_are_deploy_examples():
    names = {str(p.relative_to(DEPLOY)) for p in YAML_FILES}
    assert {"docker-compose.yml", "prometheus-compose.yml", "k8s/omnimind.yaml"} <= names
    assert (DEPLOY / "systemd" / "omnimind-worker@.service").is_file()
    assert (DEPLOY / "Dockerfile").is_file()


# --- docker compose ----------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_compose_services(compose):
    assert {"redis", "inference", "training", "memory", "agents", "flower", "prometheus", "grafana"} <= compose["services"].keys()
    assert "cpu" not in compose["services"]


@pytest.mark.parametrize("name", sorted(WORKER_COMMANDS))
def test_compose_worker(compose, name):
    svc = compose["services"][name]
    assert " ".join(svc["command"]) == WORKER_COMMANDS[name]
    assert svc["environment"]["OMNIMIND_BROKER_URL"] == "redis://redis:6379/0"
    assert svc["environment"]["OMNIMIND_METRICS_PORT"] == METRICS_PORTS[name]


def test_compose_prometheus_scrapes_the_compose_workers(compose):
    cfg = yaml.safe_load((DEPLOY / "prometheus-compose.yml").read_text())
    targets = {t for j in cfg["scrape_configs"] for sc in j["static_configs"] for t in sc["targets"]}
    assert {f"{name}:{port}" for name, port in METRICS_PORTS.items()} | {"flower:5555"} <= targets



def test_compose_memory_worker_is_one_process_with_persistent_data(compose):
    # Embedded Qdrant: exactly one process may open the data dir.
    svc = compose["services"]["memory"]
    cmd = " ".join(svc["command"])
    assert "-Q memory " in cmd and "agents" not in cmd
    assert single_process(cmd)
    assert svc.get("deploy", {}).get("replicas", 1) == 1
    data_dir = svc["environment"].get("OMNIMIND_DATA_DIR", "/var/lib/omnimind")
    named = [v.split(":") for v in svc.get("volumes", [])]
    assert any(src in compose["volumes"] and dst == data_dir for src, dst, *_ in named), svc.get("volumes")


def test_compose_agents_worker_is_separate(compose):
    svc = compose["services"]["agents"]
    cmd = svc["command"]
    assert cmd[cmd.index("-Q") + 1] == "agents"
    assert not any("memory" in q for q in cmd[cmd.index("-Q") + 1].split(","))

def test_compose_flower_requires_auth(compose):
    flower = compose["services"]["flower"]
    cmd = " ".join(flower["command"])
    # `omnimind flower`: credentials through the environment, none on the command line.
    assert cmd.startswith("omnimind flower") and "basic-auth" not in cmd and "PASSWORD" not in cmd
    # No default password: compose refuses to start without one.
    assert flower["environment"]["OMNIMIND_FLOWER_PASSWORD"].startswith("${OMNIMIND_FLOWER_PASSWORD:?")


def test_compose_mounted_paths_exist(compose):
    for svc in compose["services"].values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), volume
    build = compose["x-omnimind"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()


# --- kubernetes --------------------------------------------------------------

@pytest.fixture(scope="module")
def k8s() -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "omnimind.yaml").read_text()) if d]


def test_k8s_objects_are_well_formed(k8s):
    for doc in k8s:
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"], doc
        if doc["kind"] == "Deployment":
            template = doc["spec"]["template"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
            for c in template["spec"]["containers"]:
                assert c["image"] and c["name"]


@pytest.mark.parametrize("name", sorted(WORKER_COMMANDS))
def test_k8s_worker_deployment(k8s, name):
    (dep,) = [d for d in k8s if d["kind"] == "Deployment" and d["metadata"]["name"] == f"omnimind-{name}"]
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert " ".join(container["args"]) == WORKER_COMMANDS[name]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OMNIMIND_METRICS_PORT"] == METRICS_PORTS[name]
    assert [p["containerPort"] for p in container["ports"]] == [int(METRICS_PORTS[name])]
    gpu = container["resources"].get("limits", {}).get("nvidia.com/gpu")
    assert (gpu == 1) == (name == "inference")



@pytest.mark.parametrize("name", sorted(WORKER_COMMANDS))
def test_k8s_worker_probes_use_healthz_and_readyz(k8s, name):
    (dep,) = [d for d in k8s if d["kind"] == "Deployment" and d["metadata"]["name"] == f"omnimind-{name}"]
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert [p["name"] for p in container["ports"]] == ["metrics"]


def test_keda_scales_inference_on_the_autoscaling_signal(k8s):
    from omnimind.observability import metrics

    (scaled,) = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "keda-scaledobject.yaml").read_text()) if d]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1" and scaled["kind"] == "ScaledObject"
    target = scaled["spec"]["scaleTargetRef"]["name"]
    assert target == "omnimind-inference" and target in {d["metadata"]["name"] for d in k8s if d["kind"] == "Deployment"}
    # The workers export the signal: no inference pod, no series to scale up from.
    assert scaled["spec"]["minReplicaCount"] >= 1 and scaled["spec"]["maxReplicaCount"] > scaled["spec"]["minReplicaCount"]
    queries = {t["metadata"]["query"]: t for t in scaled["spec"]["triggers"]}
    assert all(t["type"] == "prometheus" and float(t["metadata"]["threshold"]) > 0 for t in queries.values())
    names = {name for q in queries for name in ("omnimind_queue_backlog", "omnimind_queue_utilisation") if name in q}
    assert names == {"omnimind_queue_backlog", "omnimind_queue_utilisation"} <= metrics.ALL_METRIC_NAMES
    assert all('queue="inference"' in q and q.startswith("max(") for q in queries)


def test_k8s_memory_is_a_single_process_with_a_volume(k8s):
    (dep,) = [d for d in k8s if d["kind"] == "Deployment" and d["metadata"]["name"] == "omnimind-memory"]
    assert dep["spec"]["replicas"] == 1
    # A rolling update would run the new pod beside the old one on the same data.
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert single_process(" ".join(container["args"]))
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    data_mounts = [name for name, path in mounts.items() if path == env["OMNIMIND_DATA_DIR"]]
    assert data_mounts and data_mounts[0] in claims
    pvcs = {d["metadata"]["name"]: d for d in k8s if d["kind"] == "PersistentVolumeClaim"}
    assert pvcs[claims[data_mounts[0]]]["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_k8s_agents_deployment_exists_apart_from_memory(k8s):
    names = {d["metadata"]["name"] for d in k8s if d["kind"] == "Deployment"}
    assert {"omnimind-memory", "omnimind-agents"} <= names
    assert "omnimind-cpu" not in names

def test_k8s_flower_uses_secret_credentials(k8s):
    (dep,) = [d for d in k8s if d["kind"] == "Deployment" and d["metadata"]["name"] == "omnimind-flower"]
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    command = " ".join(container["command"] + container.get("args", []))
    assert command.startswith("omnimind flower") and "basic-auth" not in command and "PASSWORD" not in command
    secret_env = {e["name"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert secret_env == {"OMNIMIND_FLOWER_USER", "OMNIMIND_FLOWER_PASSWORD"}


# --- systemd -----------------------------------------------------------------

def unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False)  # systemd repeats keys (Environment=)
    parser.optionxform = str
    parser.read_string((DEPLOY / "systemd" / name).read_text())
    return parser


def test_worker_unit_template():
    u = unit("omnimind-worker@.service")
    exec_start = u["Service"]["ExecStart"]
    assert "celery -A omnimind worker -Q %I " in exec_start
    # %h is systemd's home directory; Celery must receive a literal %h.
    assert "@%%h" in exec_start
    assert "--pool=${OMNIMIND_POOL}" in exec_start
    assert u["Service"]["KillMode"] == "mixed"
    assert u["Install"]["WantedBy"] == "multi-user.target"
    # Started means ready: ExecStartPost waits for /readyz on the worker's metrics port.
    post = u["Service"]["ExecStartPost"]
    assert post.startswith("-/opt/omnimind/.venv/bin/python -m omnimind.health ")
    assert "--port ${OMNIMIND_METRICS_PORT}" in post and "--path /readyz" in post
    wait = float(post.split("--wait ")[1].split()[0])
    assert wait < float(u["Service"]["TimeoutStartSec"])


def test_health_command_waits_for_readyz(tmp_path):
    """``python -m omnimind.health`` (the unit's ExecStartPost): 1 with nothing listening, 0 on a 200."""
    import sys
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from tests.helpers import free_port

    command = [sys.executable, "-m", "omnimind.health", "--port"]
    assert subprocess.run(command + [str(free_port())], capture_output=True, timeout=60).returncode == 1

    class Ready(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"ready": true}' if self.path == "/readyz" else b"{}"
            self.send_response(200 if self.path == "/readyz" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        out = subprocess.run(command + [str(server.server_address[1]), "--wait", "5"], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0 and '"ready": true' in out.stdout
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "env_file, pool, port",
    [
        ("worker-inference.env", "threads", "9101"),
        ("worker-training.env", "solo", "9102"),
        ("worker-memory.env", "solo", "9103"),
        ("worker-agents.env", "threads", "9104"),
    ],
)
def test_worker_instance_env(env_file, pool, port):
    env = instance_env(env_file)
    assert env["OMNIMIND_POOL"] == pool and env["OMNIMIND_METRICS_PORT"] == port


def instance_env(env_file: str) -> dict[str, str]:
    lines = (DEPLOY / "systemd" / env_file).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_systemd_memory_instance_is_one_process():
    env = instance_env("worker-memory.env")
    assert env["OMNIMIND_POOL"] == "solo" and env["OMNIMIND_CONCURRENCY"] == "1"
    assert not (DEPLOY / "systemd" / "worker-memory,agents.env").exists()


def test_metrics_ports_agree_with_the_procfile():
    if not PROCFILE.is_file():
        pytest.skip("no Procfile")
    procs = dict(line.split(":", 1) for line in PROCFILE.read_text().splitlines() if line and not line.startswith("#"))
    for name, port in METRICS_PORTS.items():
        assert f"--metrics-port={port}" in procs[name], name
        assert procs[name].strip().startswith(WORKER_COMMANDS[name]), name


def test_flower_unit_uses_basic_auth():
    exec_start = unit("omnimind-flower.service")["Service"]["ExecStart"]
    # `omnimind flower` hands Flower the credentials of omnimind.env through its environment.
    assert exec_start.startswith("/opt/omnimind/.venv/bin/omnimind flower")
    assert "basic-auth" not in exec_start and "PASSWORD" not in exec_start


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("name", ["omnimind-worker@.service", "omnimind-flower.service"])
def test_systemd_analyze_verify(tmp_path, name):
    # Only syntax counts here: the celery binary does not exist on this machine.
    shutil.copy(DEPLOY / "systemd" / name, tmp_path / name)
    r = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / name)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line for line in (r.stdout + r.stderr).splitlines()
        if any(word in line for word in ("Unknown key", "Unknown section", "Failed to parse", "Invalid", "bad-setting"))
    ]
    assert not problems, r.stdout + r.stderr
