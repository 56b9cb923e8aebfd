"""Agents through the farm: an agents worker (threads pool), a memory worker and
an inference worker, all real processes; agents come from the in-repo registry and
from an installed entry-point plugin."""
import asyncio
import os

import pytest

from omnimind.errors import AgentError, AgentTimeout, InvalidInput
from omnimind.scaling import ClusterLoadBalancer, ServiceRegistry, WorkloadType
from tests.agents.agent_plugin import write_plugin


def run(app, agent, payload=None, timeout=30):
    return app.send_task("tasks.agents.run", kwargs={"agent": agent, "payload": payload}).get(timeout=timeout)


def agents_worker(start_worker, tmp_path, name="agents1"):
    plugin = write_plugin(tmp_path / "plugin")
    path = os.pathsep.join(p for p in (str(plugin), os.environ.get("PYTHONPATH", "")) if p)
    return start_worker(name, queues="agents", pool="threads", concurrency=4, PYTHONPATH=path)


def test_example_agent_end_to_end(start_worker, celery_app, tmp_path):
    memory = start_worker("mem-ag", queues="memory", pool="solo", concurrency=1, OMNIMIND_DATA_DIR=tmp_path / "data")
    inference = start_worker("inf-ag", queues="inference", pool="threads", concurrency=2)
    agents = agents_worker(start_worker, tmp_path)
    balancer = ClusterLoadBalancer(ServiceRegistry(), app=celery_app)
    inputs = [0.25] * 8 + [0.5] * 8

    def submit(payload):
        result = asyncio.run(balancer.submit(WorkloadType.AGENT_EXECUTION, {"agent": "recall_predict_store", "payload": payload}))
        return result.get(timeout=30)

    first = submit({"inputs": inputs, "k": 2, "collection": "episodes", "tag": "first"})
    assert first["agent"] == "recall_predict_store" and first["node_id"] == agents.hostname
    assert first["subtasks"] == ["tasks.memory.create_collection", "tasks.memory.search",
                                 "tasks.inference.predict", "tasks.memory.upsert"]
    out = first["output"]
    assert out["recalled"] == [] and out["model_version"] == 0
    direct = celery_app.send_task("tasks.inference.predict", kwargs={"inputs": inputs}).get(timeout=20)
    assert out["outputs"] == pytest.approx(direct["outputs"], rel=1e-5)

    second = submit({"inputs": [0.26] * 8 + [0.5] * 8, "k": 2, "collection": "episodes"})["output"]
    assert [h["id"] for h in second["recalled"]] == [out["stored_id"]]
    assert second["recalled"][0]["payload"]["tag"] == "first"
    # Both outcomes are in the memory worker's store, nearest first.
    hits = celery_app.send_task("tasks.memory.search", kwargs={"collection": "episodes", "vector": inputs, "k": 5}).get(timeout=20)
    assert [h["id"] for h in hits["hits"]] == [out["stored_id"], second["stored_id"]]
    assert hits["node_id"] == memory.hostname and inference.proc.poll() is None


def test_agent_failures_are_typed_and_the_worker_keeps_serving(start_worker, celery_app, tmp_path):
    start_worker("mem-fail", queues="memory", pool="solo", concurrency=1, OMNIMIND_DATA_DIR=tmp_path / "data")
    agents_worker(start_worker, tmp_path, "agents-fail")
    assert run(celery_app, "echo", {"hello": 1})["output"] == {"echo": {"hello": 1}}
    cases = [
        ("boom", AgentError, "exception", "ZeroDivisionError"),
        ("spin", AgentTimeout, "timeout", "time limit of 1s"),
        ("ghost_memory", AgentError, "subtask_failed", "unknown_collection"),
        ("not_json", AgentError, "bad_result", "not plain JSON"),
        ("nested", AgentError, "forbidden_subtask", "tasks.agents.run"),
        ("broken", AgentError, "load_failed", "ModuleNotFoundError"),
    ]
    for name, cls, reason, detail in cases:
        with pytest.raises(cls) as caught:
            run(celery_app, name, {})
        assert (caught.value.agent, caught.value.reason) == (name, reason), caught.value
        assert detail in caught.value.detail
        assert run(celery_app, "echo", {"after": name})["output"] == {"echo": {"after": name}}
    for agent, payload, reason in (("nobody", {}, "unknown_agent"), (None, {}, "missing_field"), ("echo", [1], "type")):
        with pytest.raises(InvalidInput) as caught:
            run(celery_app, agent, payload)
        assert caught.value.reason == reason
    # Several spinning agents at once are all interrupted; the pool's threads come back.
    results = [celery_app.send_task("tasks.agents.run", kwargs={"agent": "spin"}) for _ in range(4)]
    for result in results:
        with pytest.raises(AgentTimeout):
            result.get(timeout=20)
    assert run(celery_app, "echo", {"done": True})["output"] == {"echo": {"done": True}}
